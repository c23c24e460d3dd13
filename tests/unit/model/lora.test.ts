/**
 * LoRA files and the CPU reference: the safetensors reader (exact layout, F16/BF16 conversion,
 * every malformed file a ModelFormatError naming it, a seeded fuzz of the shipped adapter), the
 * PEFT -> llama2.c mapping (ranks, shapes, modules, layers, Hugging Face's q/k row order against
 * transformers' and llama2.c's own permutations written out), and the CPU executor serving a mixed
 * batch whose greedy texts equal the reference run alone with W + scale·B·A merged into W.
 */
import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Engine } from '../../../src/engine/engine.ts';
import { DEFAULT_SCHEDULER_CONFIG } from '../../../src/engine/config.ts';
import { replayEventLog } from '../../../src/engine/replay.ts';
import { makeSavedRun, parseImport, replaySavedRun, serializeRun } from '../../../src/export/saved-run.ts';
import { VirtualClock } from '../../../src/engine/clock.ts';
import type { LoraAdapter } from '../../../src/engine/types.ts';
import { hfRopeRowToLlama2c, hfRowsToLlama2c, llama2cRowsToHf, mergeLora, parseAdapterConfig, peftTensorName, readPeftAdapter } from '../../../src/model/lora.ts';
import { CpuReferenceExecutor } from '../../../src/model/reference.ts';
import { readSafetensors, writeSafetensors } from '../../../src/model/safetensors.ts';
import { headSize as headSizeOf, kvDim as kvDimOf, ModelFormatError } from '../../../src/model/types.ts';
import { builtin, formatError, root } from './helpers.ts';
import { greedyAlone } from '../../../src/sim/bench/lora.ts';

const adapterFiles = (name: string) => ({
  config: readFileSync(resolve(root, 'public/adapters', name, 'adapter_config.json'), 'utf8'),
  weights: new Uint8Array(readFileSync(resolve(root, 'public/adapters', name, 'adapter_model.safetensors'))),
});


/** A file from a header object and raw data bytes. */
function rawFile(header: unknown, data: Uint8Array, headerLen?: number): Uint8Array {
  const json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLen ?? json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

describe('safetensors reader', () => {
  it('reads what the writer wrote, with metadata; converts F16 and BF16 exactly', () => {
    const a = new Float32Array([1, -2.5, 3.25, 0]);
    const bytes = writeSafetensors([{ name: 't', shape: [2, 2], data: a }], { format: 'pt' });
    const f = readSafetensors(bytes, 'x.safetensors');
    expect(f.metadata).toEqual({ format: 'pt' });
    expect(f.tensors.get('t')).toEqual({ name: 't', dtype: 'F32', shape: [2, 2], data: a });
    // F16: 1.0 = 0x3c00, -2.0 = 0xc000, 2^-24 = 0x0001 (subnormal), 65504 = 0x7bff; BF16: 1.5 = 0x3fc0
    const f16 = new Uint8Array(new Uint16Array([0x3c00, 0xc000, 0x0001, 0x7bff]).buffer);
    const bf16 = new Uint8Array(new Uint16Array([0x3fc0]).buffer);
    const data = new Uint8Array(10);
    data.set(f16, 0);
    data.set(bf16, 8);
    const g = readSafetensors(rawFile({ h: { dtype: 'F16', shape: [4], data_offsets: [0, 8] }, b: { dtype: 'BF16', shape: [1], data_offsets: [8, 10] } }, data), 'h.safetensors');
    expect([...g.tensors.get('h')!.data]).toEqual([1, -2, 2 ** -24, 65504]);
    expect([...g.tensors.get('b')!.data]).toEqual([1.5]);
  });

  const ok = { t: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };
  const eight = new Uint8Array(8);
  const cases: [string, Uint8Array, RegExp][] = [
    ['shorter than the length field', new Uint8Array(5), /bad\.st: it has 5 bytes, fewer than the 8-byte header length/],
    ['header length past the end', rawFile(ok, eight, 4000), /the header length 4000 runs past the end of the file/],
    ['absurd header length', rawFile(ok, eight, 2 ** 40), /exceeds the 104857600-byte limit/],
    ['not JSON', rawFile('{"t": [', eight), /the header is not valid JSON/],
    ['not an object', rawFile('[1, 2]', eight), /the header is not a JSON object/],
    ['unsupported dtype', rawFile({ t: { dtype: 'I64', shape: [1], data_offsets: [0, 8] } }, eight), /tensor t: dtype I64 is not supported \(this reader takes F32, F16 and BF16\)/],
    ['unknown dtype', rawFile({ t: { dtype: 'Q4', shape: [1], data_offsets: [0, 8] } }, eight), /dtype Q4 is unknown/],
    ['bad shape', rawFile({ t: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }, eight), /tensor t: shape must be an array of integers >= 0/],
    ['shape and span disagree', rawFile({ t: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, eight), /shape \[3\] of F32 takes 12 bytes but its data_offsets span 8/],
    ['offsets past the data', rawFile({ t: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, eight), /data_offsets \[0, 16\] run past the 8 bytes of data/],
    ['offsets reversed', rawFile({ t: { dtype: 'F32', shape: [0], data_offsets: [8, 0] } }, eight), /end before they begin/],
    ['overlap', rawFile({ t: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, u: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, eight), /tensors t and u overlap/],
    ['metadata not strings', rawFile({ __metadata__: { n: 1 }, ...ok }, eight), /__metadata__\.n is not a string/],
    ['entry not an object', rawFile({ t: 5 }, eight), /tensor t: its entry is not an object/],
  ];
  for (const [what, bytes, message] of cases) {
    it(`refuses a file with ${what}`, () => {
      expect(formatError(() => readSafetensors(bytes, 'bad.st')).message).toMatch(message);
    });
  }

  it('fuzz: truncations, byte flips and inserted bytes of a shipped adapter give a ModelFormatError or an adapter that holds together', () => {
    const { config, weights } = adapterFiles('noise');
    const c = builtin().model.config;
    const headerLen = Number(new DataView(weights.buffer, weights.byteOffset).getBigUint64(0, true));
    fc.assert(
      fc.property(
        fc.oneof(
          fc.record({ kind: fc.constant('truncate' as const), at: fc.integer({ min: 0, max: weights.length - 1 }), value: fc.constant(0) }),
          fc.record({ kind: fc.constant('flip' as const), at: fc.integer({ min: 0, max: 8 + headerLen - 1 }), value: fc.integer({ min: 0, max: 255 }) }),
          fc.record({ kind: fc.constant('insert' as const), at: fc.integer({ min: 0, max: 8 + headerLen }), value: fc.integer({ min: 0, max: 255 }) }),
        ),
        ({ kind, at, value }) => {
          let bytes: Uint8Array;
          if (kind === 'truncate') bytes = weights.slice(0, at);
          else if (kind === 'flip') {
            bytes = weights.slice();
            bytes[at] = value;
          } else bytes = new Uint8Array([...weights.subarray(0, at), value, ...weights.subarray(at)]);
          try {
            const a = readPeftAdapter('noise', config, bytes, c, 'fuzz.safetensors');
            expect(a.layers).toHaveLength(c.numLayers);
            for (const layer of a.layers) for (const w of Object.values(layer)) expect(w.a.length % a.rank).toBe(0);
          } catch (e) {
            expect(e).toBeInstanceOf(ModelFormatError);
            expect((e as Error).message).toMatch(/fuzz\.safetensors|noise\/adapter_config/);
          }
        },
      ),
      { seed: 0x10ea, numRuns: 400 },
    );
  });
});

describe('PEFT adapters on llama2.c', () => {
  const c = builtin().model.config;

  it('maps the shipped adapters onto the model (down_proj = w2; every projection for noise)', () => {
    const tom = readPeftAdapter('tom', adapterFiles('tom').config, adapterFiles('tom').weights, c);
    expect(tom.rank).toBe(4);
    expect(tom.scale).toBe(2);
    expect(Object.keys(tom.layers[4])).toEqual(['w2']);
    expect(tom.layers.slice(0, 4).every((l) => Object.keys(l).length === 0)).toBe(true);
    const noise = readPeftAdapter('noise', adapterFiles('noise').config, adapterFiles('noise').weights, c);
    expect(Object.keys(noise.layers[0]).sort()).toEqual(['k', 'o', 'q', 'v', 'w1', 'w2', 'w3']);
    expect(noise.layers[2].k!.b.length).toBe(32 * 4); // k_proj B: [kvDim 32, r 4]
    expect(noise.layers[2].w2!.a.length).toBe(4 * 172); // down_proj A: [r 4, hidden 172]
  });

  const one = (name: string, shape: number[]) => ({ name, shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(0.01) });
  const cfg = (extra: Record<string, unknown> = {}) => ({ r: 2, lora_alpha: 4, target_modules: ['q_proj', 'down_proj'], ...extra });
  const file = (...t: ReturnType<typeof one>[]) => writeSafetensors(t);
  const refuse = (config: unknown, bytes: Uint8Array, message: RegExp) => expect(formatError(() => readPeftAdapter('x', config, bytes, c)).message).toMatch(message);

  it('refuses a rank, shape, module or layer the model does not have, with the tensor named', () => {
    const qA = one(peftTensorName(0, 'q', 'A'), [2, 64]);
    const qB = one(peftTensorName(0, 'q', 'B'), [64, 2]);
    expect(readPeftAdapter('x', cfg(), file(qA, qB), c).layers[0].q!.a).toHaveLength(128);
    refuse(cfg(), file(one(peftTensorName(0, 'q', 'A'), [3, 64]), qB), /lora_A\.weight has shape \[3, 64\], expected \[2, 64\] for q_proj .* \(its rank 3 is not the config's r = 2\)/);
    refuse(cfg(), file(qA, one(peftTensorName(0, 'q', 'B'), [32, 2])), /q_proj.lora_B.weight has shape \[32, 2\], expected \[64, 2\] for q_proj \(llama2.c q: W is \[64, 64\]\)/);
    refuse(cfg(), file(one(peftTensorName(7, 'q', 'A'), [2, 64]), one(peftTensorName(7, 'q', 'B'), [64, 2])), /layer 7, but the model has 5 layers/);
    refuse(cfg(), file(one('base_model.model.lm_head.lora_A.weight', [2, 64])), /tensor base_model.model.lm_head.lora_A.weight is not a LoRA A\/B weight of a llama projection/);
    refuse(cfg(), file(one(peftTensorName(0, 'k', 'A'), [2, 64]), one(peftTensorName(0, 'k', 'B'), [32, 2])), /module k_proj is not in the config's target_modules \(q_proj, down_proj\)/);
    refuse(cfg(), file(qA), /layer 0 q_proj has lora_A but no lora_B/);
    refuse(cfg({ target_modules: ['q_proj', 'c_attn'] }), file(qA, qB), /target module "c_attn" is not one this model has/);
    refuse(cfg({ r: 0 }), file(qA, qB), /r must be a positive integer/);
    refuse(cfg({ fan_in_fan_out: true }), file(qA, qB), /fan_in_fan_out/);
    refuse(cfg({ rank_pattern: { q_proj: 4 } }), file(qA, qB), /rank_pattern/);
    refuse('{"r": ', file(qA, qB), /LoRA config x\/adapter_config.json: not valid JSON/);
    expect(parseAdapterConfig(cfg({ use_rslora: true, r: 4, lora_alpha: 8 })).useRslora).toBe(true);
    expect(readPeftAdapter('x', cfg({ use_rslora: true }), file(qA, qB), c).scale).toBeCloseTo(4 / Math.SQRT2, 12);
  });
});

/**
 * transformers' convert_llama_weights_to_hf.py, written out: permute(w) =
 * w.view(heads, rows / heads / 2, 2, cols).transpose(1, 2).reshape(rows, cols).
 */
function hfPermute(w: Float32Array, heads: number, rows: number, cols: number): Float32Array {
  const half = rows / heads / 2;
  const out = new Float32Array(w.length);
  for (let h = 0; h < heads; h++)
    for (let p = 0; p < 2; p++)
      for (let i = 0; i < half; i++)
        for (let col = 0; col < cols; col++) out[((h * 2 + p) * half + i) * cols + col] = w[((h * half + i) * 2 + p) * cols + col];
  return out;
}

/** llama2.c's export.py, written out: permute_reverse(w) = w.view(heads, 2, rows / heads / 2, cols).transpose(1, 2).reshape(rows, cols). */
function llama2cPermuteReverse(w: Float32Array, heads: number, rows: number, cols: number): Float32Array {
  const half = rows / heads / 2;
  const out = new Float32Array(w.length);
  for (let h = 0; h < heads; h++)
    for (let i = 0; i < half; i++)
      for (let p = 0; p < 2; p++)
        for (let col = 0; col < cols; col++) out[((h * half + i) * 2 + p) * cols + col] = w[((h * 2 + p) * half + i) * cols + col];
  return out;
}

describe("PEFT adapters trained on Hugging Face's llama (q/k rows in its RoPE order)", () => {
  const { model } = builtin();
  const c = model.config;
  const headSize = headSizeOf(c);

  it('the row map is transformers\' permute: within a head, the even rows first, then the odd ones', () => {
    // Two heads of size 4: HF rows 0..7 hold llama2.c rows 0, 2, 1, 3, 4, 6, 5, 7.
    expect(Array.from({ length: 8 }, (_, r) => hfRopeRowToLlama2c(r, 4))).toEqual([0, 2, 1, 3, 4, 6, 5, 7]);
    const rows = 64;
    const cols = 3;
    const w = Float32Array.from({ length: rows * cols }, (_, i) => i);
    for (const heads of [8, 4]) {
      const hs = rows / heads;
      expect(llama2cRowsToHf(w, cols, hs)).toEqual(hfPermute(w, heads, rows, cols));
      expect(hfRowsToLlama2c(hfPermute(w, heads, rows, cols), cols, hs)).toEqual(w);
      expect(llama2cPermuteReverse(hfPermute(w, heads, rows, cols), heads, rows, cols)).toEqual(w);
    }
  });

  it('an adapter on the HF model merges into llama2.c\'s weights as the HF model, merged and exported back by llama2.c, would have them', () => {
    const r = 2;
    const alpha = 3;
    const rng = (seed: number) => () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648 - 0.5) * 0.2;
    const next = rng(7);
    const kvDim = kvDimOf(c);
    const hfB = { q: Float32Array.from({ length: c.dim * r }, next), k: Float32Array.from({ length: kvDim * r }, next), v: Float32Array.from({ length: kvDim * r }, next) };
    const a = { q: Float32Array.from({ length: r * c.dim }, next), k: Float32Array.from({ length: r * c.dim }, next), v: Float32Array.from({ length: r * c.dim }, next) };
    const tensors = (['q', 'k', 'v'] as const).flatMap((m) => [
      { name: peftTensorName(1, m, 'A'), shape: [r, c.dim], data: a[m] },
      { name: peftTensorName(1, m, 'B'), shape: [m === 'q' ? c.dim : kvDim, r], data: hfB[m] },
    ]);
    const adapter = readPeftAdapter('hf', { r, lora_alpha: alpha, target_modules: ['q_proj', 'k_proj', 'v_proj'] }, writeSafetensors(tensors), c);
    const merged = mergeLora(c, model.weights, adapter).layers[1];
    const scale = alpha / r;
    /** W + scale·B·A on the HF model's own rows, as PEFT's merge does (the same float operations as mergeLora). */
    const mergeHf = (w: Float32Array, b: Float32Array, am: Float32Array, rows: number) => {
      const out = w.slice();
      for (let i = 0; i < rows; i++)
        for (let j = 0; j < c.dim; j++) {
          let acc = 0;
          for (let k = 0; k < r; k++) acc += b[i * r + k] * am[k * c.dim + j];
          out[i * c.dim + j] = Math.fround(w[i * c.dim + j] + Math.fround(scale * acc));
        }
      return out;
    };
    const w = model.weights.layers[1];
    // q and k: the HF model's rows are permuted (q over numHeads heads, k over numKvHeads); v is not.
    const hfWq = hfPermute(w.wq, c.numHeads, c.dim, c.dim);
    const hfWk = hfPermute(w.wk, c.numKvHeads, kvDim, c.dim);
    expect(merged.wq).toEqual(llama2cPermuteReverse(mergeHf(hfWq, hfB.q, a.q, c.dim), c.numHeads, c.dim, c.dim));
    expect(merged.wk).toEqual(llama2cPermuteReverse(mergeHf(hfWk, hfB.k, a.k, kvDim), c.numKvHeads, kvDim, c.dim));
    expect(merged.wv).toEqual(mergeHf(w.wv, hfB.v, a.v, kvDim));
    // Without the row map the update would land on other rows of wq (a different model).
    expect(adapter.layers[1].q!.b).not.toEqual(hfB.q);
    expect(headSize % 2).toBe(0);
  });
});

describe('the CPU reference with adapters', () => {
  const { model, tokenizer } = builtin();
  const adapters: Record<string, LoraAdapter> = Object.fromEntries(
    ['tom', 'happy', 'noise'].map((n) => [n, readPeftAdapter(n, adapterFiles(n).config, adapterFiles(n).weights, model.config)]),
  );


  it('a mixed batch (three adapters, two slots, base rows) gives each request the greedy text of its merged model run alone', async () => {
    const engine = new Engine({
      executor: new CpuReferenceExecutor(model),
      config: { blockSize: 8, numGpuBlocks: 64, numCpuBlocks: 0, maxNumBatchedTokens: 64, maxNumSeqs: 8, maxModelLen: 256, maxLoras: 2, maxLoraRank: 8 },
      clock: new VirtualClock(),
      checkInvariants: true,
    });
    for (const a of Object.values(adapters)) engine.registerAdapter(a);
    const prompts = ['Once upon a time', 'One day', 'There was a little girl', 'Once upon a time, there was'];
    const jobs = [
      ...prompts.map((p, i) => ({ id: `base${i}`, prompt: p, adapter: undefined as string | undefined })),
      ...prompts.map((p, i) => ({ id: `tom${i}`, prompt: p, adapter: 'tom' })),
      ...prompts.slice(0, 2).map((p, i) => ({ id: `happy${i}`, prompt: p, adapter: 'happy' })),
      ...prompts.slice(0, 2).map((p, i) => ({ id: `noise${i}`, prompt: p, adapter: 'noise' })),
    ];
    for (const j of jobs) engine.submit({ requestId: j.id, promptTokenIds: tokenizer.encode(j.prompt, true, false), maxTokens: 24, ...(j.adapter ? { adapter: j.adapter } : {}) });
    await engine.runUntilIdle();
    const merged = new Map(Object.entries(adapters).map(([n, a]) => [n, { ...model, weights: mergeLora(model.config, model.weights, a) }]));
    for (const j of jobs) {
      const got = engine.getRequest(j.id)!.seqs[0].outputTokenIds;
      const want = greedyAlone(j.adapter ? merged.get(j.adapter)! : model, tokenizer.encode(j.prompt, true, false), 24);
      expect(tokenizer.decode(got), `${j.id}`).toBe(tokenizer.decode(want));
    }
    const tomText = tokenizer.decode(engine.getRequest('tom0')!.seqs[0].outputTokenIds);
    expect(tokenizer.decode(engine.getRequest('base0')!.seqs[0].outputTokenIds)).toContain('Lily');
    expect(tomText).toContain('Tom');
    expect(tomText).not.toContain('Lily');
    expect(engine.snapshot(0).loraStats.numEvictions).toBeGreaterThan(0);
  });

  it('with speculative decoding (ngram, greedy): adapter rows verify their drafts with their LoRA, the texts stay the merged models\' own; the log replays', async () => {
    const config = { blockSize: 8, numGpuBlocks: 64, numCpuBlocks: 0, maxNumBatchedTokens: 64, maxNumSeqs: 8, maxModelLen: 256, maxLoras: 2, maxLoraRank: 8, speculativeMethod: 'ngram' as const, numSpeculativeTokens: 4, promptLookupMax: 3, promptLookupMin: 1 };
    const engine = new Engine({ executor: new CpuReferenceExecutor(model), config, clock: new VirtualClock(), checkInvariants: true });
    for (const a of Object.values(adapters)) engine.registerAdapter(a);
    const jobs = [
      { id: 'base0', prompt: 'Once upon a time', adapter: undefined as string | undefined },
      { id: 'tom0', prompt: 'Once upon a time', adapter: 'tom' },
      { id: 'happy0', prompt: 'One day', adapter: 'happy' },
      { id: 'noise0', prompt: 'One day', adapter: 'noise' },
    ];
    for (const j of jobs) engine.submit({ requestId: j.id, promptTokenIds: tokenizer.encode(j.prompt, true, false), maxTokens: 48, ...(j.adapter ? { adapter: j.adapter } : {}) });
    await engine.runUntilIdle();
    const merged = new Map(Object.entries(adapters).map(([n, a]) => [n, { ...model, weights: mergeLora(model.config, model.weights, a) }]));
    for (const j of jobs) {
      const got = engine.getRequest(j.id)!.seqs[0].outputTokenIds;
      const want = greedyAlone(j.adapter ? merged.get(j.adapter)! : model, tokenizer.encode(j.prompt, true, false), 48);
      expect(tokenizer.decode(got), j.id).toBe(tokenizer.decode(want));
    }
    const adapted = jobs.filter((j) => j.adapter).map((j) => engine.getRequest(j.id)!);
    expect(adapted.reduce((n, r) => n + r.numAcceptedDraftTokens, 0)).toBeGreaterThan(0);
    expect(engine.snapshot(0).loraStats.numEvictions).toBeGreaterThan(0);
    const replayed = await replayEventLog(engine.eventLog, { config, checkInvariants: true });
    expect(replayed.eventLog).toEqual(engine.eventLog);
    const imported = parseImport(serializeRun(makeSavedRun('lora+spec', 'cpu', { ...DEFAULT_SCHEDULER_CONFIG, ...config }, engine.eventLog)));
    expect(imported.kind).toBe('run');
    if (imported.kind === 'run') expect((await replaySavedRun(imported.run)).diff).toMatchObject({ equal: true, numEvents: engine.eventLog.length });
  }, 60_000);
});
