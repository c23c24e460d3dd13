/**
 * The executor's per-step host path on Dawn for Node (issue 16, item 2): block tables live on the
 * GPU between steps and only changed entries are written (GpuSeqTables); a steady decode step
 * replays its recorded program (no new pipeline, bind group or parameter slot) and sends its
 * inputs in one queue.writeBuffer, plus one for the tables when a sequence crossed into a new
 * block; the tokens are the same as with a fresh executor for every step.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { create, globals } from 'webgpu';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ScheduledSeq, StepPlan } from '../../src/engine/types.ts';
import { readUint32 } from '../../src/gpu/buffers.ts';
import { acquireDevice, type GpuContext } from '../../src/gpu/device.ts';
import { GpuExecutor } from '../../src/gpu/executor.ts';
import { loadKernelSources } from '../../src/gpu/kernel-sources.node.ts';
import { GpuSeqTables } from '../../src/gpu/seq-tables.ts';
import { GpuRuntime } from '../../src/gpu/step.ts';
import { firstTierTuning } from '../../src/gpu/tuning.ts';
import { loadModel, type LoadedModel } from '../../src/model/load.ts';

Object.assign(globalThis, globals);
const gpu = create([]);
const root = resolve(import.meta.dirname, '../..');
const read = (path: string) => new Uint8Array(readFileSync(resolve(root, path)));

const greedy = { temperature: 0, topP: 1, topK: 0, seed: 1 };

function seq(seqId: number, tokenIds: number[], startPosition: number, blockTable: number[], bs: number): ScheduledSeq {
  const slots = tokenIds.map((_, k) => blockTable[Math.floor((startPosition + k) / bs)] * bs + ((startPosition + k) % bs));
  return { seqId, requestId: `r${seqId}`, tokenIds, startPosition, slots, blockTable, needsLogits: true, sampling: greedy };
}
const plan = (stepIndex: number, seqs: ScheduledSeq[]): StepPlan => ({
  stepIndex,
  seqs,
  copies: [],
  swapOut: [],
  swapIn: [],
  numBatchedTokens: seqs.reduce((n, s) => n + s.tokenIds.length, 0),
});

describe('the executor host path (Dawn for Node)', () => {
  let ctx: GpuContext;
  let loaded: LoadedModel;

  beforeAll(async () => {
    ctx = await acquireDevice(gpu);
    loaded = loadModel(read('public/models/stories260K.bin'), 'stories260K.bin', read('public/models/tok512.bin'));
  });

  afterAll(() => ctx?.destroy());

  it('GpuSeqTables writes only what changed, recycles the least recently used row, grows when every row is in use', async () => {
    const device = ctx.device;
    const tables = new GpuSeqTables(device, 4, 64, 64); // 16 entries per row, 64 rows to start, a pool of 64 blocks
    const check = async (seqs: ScheduledSeq[], offsets: Uint32Array) => {
      const gpuRows = await readUint32(device, tables.buffer);
      seqs.forEach((s, i) => expect([...gpuRows.subarray(offsets[i], offsets[i] + s.blockTable.length)], `seq ${s.seqId}`).toEqual(s.blockTable));
    };
    const a = seq(1, [5], 0, [7, 8], 4);
    const b = seq(2, [6], 0, [9], 4);
    let offsets = tables.update([a, b]).slice(0, 2);
    expect(tables.lastWrittenEntries).toBe(3);
    expect(offsets[0]).not.toBe(offsets[1]);
    await check([a, b], offsets);
    // The same tables again: nothing written. One appended block, one replaced block (copy-on-write).
    tables.update([a, b]);
    expect(tables.lastWrittenEntries).toBe(0);
    const a2 = { ...a, blockTable: [7, 8, 11] };
    const b2 = { ...b, blockTable: [12] };
    const again = tables.update([b2, a2]).slice(0, 2);
    expect(tables.lastWrittenEntries).toBe(2);
    expect([again[1], again[0]]).toEqual([offsets[0], offsets[1]]); // each sequence keeps its row
    await check([b2, a2], again);

    // 64 rows: 62 newcomers fill them; the next one takes the least recently used row (a's, unused
    // since the step before last), and a coming back gets a row again with all of its table.
    const many = Array.from({ length: 62 }, (_, i) => seq(100 + i, [1], 0, [i % 40], 4));
    tables.update([b2, ...many]);
    const generation = tables.generation;
    const newcomer = seq(500, [1], 0, [33, 34], 4);
    offsets = tables.update([newcomer]).slice(0, 1);
    expect(offsets[0]).toBe(again[1]); // a's old row
    expect(tables.generation).toBe(generation);
    const back = tables.update([a2]).slice(0, 1);
    expect(tables.lastWrittenEntries).toBe(3);
    await check([a2], back);
    // Every row in one step, plus more: the buffer doubles and keeps every row.
    const all = [a2, b2, newcomer, ...many, seq(600, [1], 0, [2, 3, 4], 4), seq(601, [1], 0, [5], 4)];
    const grown = tables.update(all).slice(0, all.length);
    expect(tables.generation).toBe(generation + 1);
    expect(new Set(grown).size).toBe(all.length);
    await check(all, grown);
    // A block outside the pool is refused; what changed before it still reaches the GPU, and the
    // sequence's next step rewrites whatever its row is not known to hold.
    const bad = seq(700, [1], 0, [3, 64], 4);
    expect(() => tables.update([b2, bad])).toThrow(/sequence 700: block 64 is out of range \(64 blocks\)/);
    const fixed = { ...bad, blockTable: [3, 5] };
    const rows = tables.update([b2, fixed]).slice(0, 2);
    await check([b2, fixed], rows);
    tables.destroy();
  });

  it('LoRA: warm-up compiles the gather\'s pipelines, so steps with adapter rows compile none; base rows keep their bits beside adapter rows', async () => {
    const runtime = GpuRuntime.fromContext(ctx, loadKernelSources());
    const ex = new GpuExecutor(ctx, runtime, loaded.model, { validate: true });
    const bs = 4;
    ex.configure({ blockSize: bs, numGpuBlocks: 64, numCpuBlocks: 0, maxLoras: 2, maxLoraRank: 8 });
    await ex.warmUp({ maxTokens: 16, maxSeqs: 4 });
    await ex.warmedUp; // the LoRA gathers are compiled after warmUp() returns
    const compiled = runtime.registry.pipelinesOf('lora_bgmv');
    expect(compiled).toBe(5); // q, k|v, o, w1|w3, w2
    const c = loaded.model.config;
    const rank = 2;
    const layers = Array.from({ length: c.numLayers }, (_, l) => ({
      q: { a: new Float32Array(rank * c.dim).fill(0.01 * (l + 1)), b: new Float32Array(c.dim * rank).fill(0.02) },
      w2: { a: new Float32Array(rank * c.hiddenDim).fill(0.01), b: new Float32Array(c.dim * rank).fill(-0.03) },
    }));
    ex.registerAdapter({ name: 'x', rank, scale: 1.5, layers });
    const prompt = loaded.tokenizer.encode('Once upon a time');
    const logitsOf = async (withAdapter: boolean) => {
      const a = { ...seq(0, prompt, 0, [10, 11, 12, 13, 14], bs), sampling: { ...greedy, temperature: 1 } };
      const b = { ...seq(1, prompt, 0, [20, 21, 22, 23, 24], bs), sampling: { ...greedy, temperature: 1 }, ...(withAdapter ? { loraSlot: 1 } : {}) };
      const out = await ex.execute({ ...plan(1, [a, b]), ...(withAdapter ? { loraLoads: [{ slot: 1, adapter: 'x' }] } : {}) });
      return out.outputs.map((o) => Array.from(new Uint32Array(o.logits!.buffer, o.logits!.byteOffset, o.logits!.length)));
    };
    const [baseAlone, twinAlone] = await logitsOf(false);
    const [baseBeside, adapted] = await logitsOf(true);
    expect(baseBeside).toEqual(baseAlone); // bit for bit
    expect(adapted).not.toEqual(twinAlone); // the adapter row changed
    expect(runtime.registry.pipelinesOf('lora_bgmv')).toBe(compiled);
    ex.dispose();
    runtime.destroy();
  });

  it('warm-up in two tiers: steps use the smallest matmul row class until the rest is compiled, with the same tokens; a pipeline taken before its compile ends is the one kept', async () => {
    const runtime = GpuRuntime.fromContext(ctx, loadKernelSources());
    const ex = new GpuExecutor(ctx, runtime, loaded.model, { validate: true });
    const bs = 4;
    ex.configure({ blockSize: bs, numGpuBlocks: 64, numCpuBlocks: 0, maxLoras: 2, maxLoraRank: 8 });
    const registry = runtime.registry;
    const full = runtime.tuning;
    const first = firstTierTuning(full);
    // The first tier has fewer matmul specialisations: one gemv row class (a GPU's tuning has
    // four) and no lanes kernel (a software adapter's uses it from 2 rows).
    expect(first).not.toEqual(full);
    // The copy-on-write pipeline: warmUp() asks for it without waiting; taken synchronously below
    // while that compile may still run, as a step needing it that soon would.
    const copyOverrides = { KV_DIM: (loaded.model.config.dim * loaded.model.config.numKvHeads) / loaded.model.config.numHeads, BLOCK_SIZE: bs, WG: runtime.tuning.rowThreads };
    const warming = ex.warmUp({ maxTokens: 16, maxSeqs: 4 });
    // From the start of the warm-up, steps use the first tier.
    expect(runtime.tuning).toEqual(first);
    await warming;
    const syncCopy = registry.pipeline('block_copy', copyOverrides);
    await ex.warmedUp;
    expect(runtime.tuning).toBe(full);
    expect(registry.pipelinesOf('block_copy')).toBe(1);
    expect(registry.pipeline('block_copy', copyOverrides)).toBe(syncCopy); // the first one made is kept
    expect(registry.pipelinesOf('lora_bgmv')).toBe(5);
    const compiled = registry.stats.pipelines;
    const prompt = loaded.tokenizer.encode('Once upon a time');
    const prefill = async () => (await ex.execute(plan(1, [seq(0, prompt, 0, [10, 11, 12, 13, 14], bs)]))).outputs[0].argmax;
    const fullToken = await prefill();
    // The first tier again (as while the rest compiles): a prefill step of several rows compiles
    // nothing the warm-up did not, and gives the same token.
    const release = runtime.holdFirstTier();
    expect(runtime.tuning).toEqual(first);
    expect(await prefill()).toBe(fullToken);
    release();
    expect(runtime.tuning).toBe(full);
    expect(await prefill()).toBe(fullToken);
    expect(registry.stats.pipelines).toBe(compiled); // every tier's pipelines were warmed
    ex.dispose();
    runtime.destroy();
  });

  it('steady decode steps replay their program: no new pipelines, bind groups or parameter slots, one input write per step', async () => {
    const runtime = GpuRuntime.fromContext(ctx, loadKernelSources());
    const bs = 4;
    const prompts = [
      [1, 403, 407, 261, 378, 298, 29],
      [1, 365, 2, 44],
      [1, 9, 10, 11, 12, 13, 14, 15, 16, 17],
    ];
    const tableOf = (i: number) => Array.from({ length: 8 }, (_, k) => i * 10 + k); // room for 32 positions
    const run = async (numDecodes: number, observe: (step: number, executor: GpuExecutor) => void) => {
      const executor = new GpuExecutor(ctx, runtime, loaded.model, { validate: true });
      executor.configure({ blockSize: bs, numGpuBlocks: 64, numCpuBlocks: 0 });
      const tokens = prompts.map((p) => [...p]);
      let out = await executor.execute(plan(0, prompts.map((p, i) => seq(i, p, 0, tableOf(i).slice(0, Math.ceil(p.length / bs)), bs))));
      for (let d = 0; d < numDecodes; d++) {
        out.outputs.forEach((o) => tokens[o.seqId].push(o.argmax));
        const step = plan(d + 1, tokens.map((t, i) => seq(i, [t[t.length - 1]], t.length - 1, tableOf(i).slice(0, Math.ceil(t.length / bs)), bs)));
        observe(d, executor);
        out = await executor.execute(step);
      }
      out.outputs.forEach((o) => tokens[o.seqId].push(o.argmax));
      executor.dispose();
      return tokens;
    };

    const queue = ctx.device.queue;
    const writeBuffer = queue.writeBuffer;
    const writes: number[] = [];
    let stats = runtime.registry.stats;
    let generation = -1;
    const numDecodes = 8;
    let steady: number[] = [];
    try {
      queue.writeBuffer = function (this: GPUQueue, ...args: Parameters<GPUQueue['writeBuffer']>) {
        writes[writes.length - 1]++;
        return writeBuffer.apply(this, args);
      } as GPUQueue['writeBuffer'];
      steady = (
        await run(numDecodes, (d) => {
          if (d === 2) {
            // After two decode steps of this shape everything is recorded.
            stats = runtime.registry.stats;
            generation = runtime.paramsGeneration;
          }
          writes.push(0);
        })
      ).flat();
    } finally {
      queue.writeBuffer = writeBuffer;
    }
    expect(runtime.registry.stats).toEqual(stats);
    expect(runtime.paramsGeneration).toBe(generation);
    // Per decode step after the first (which records its program and writes its new parameter
    // slot): the inputs, and the tables only when a sequence's table grew by a block (its
    // position L + d reached a multiple of 4; L = 7, 4, 10).
    const crossing = (d: number) => prompts.some((p) => (p.length + d) % bs === 0);
    expect(writes).toHaveLength(numDecodes);
    writes.forEach((n, d) => d > 0 && expect(n, `decode step ${d}`).toBe(1 + (crossing(d) ? 1 : 0)));
    expect(writes.slice(1).some((n) => n === 1)).toBe(true);

    // The same tokens from an executor on a fresh runtime, the sequences in reverse order (other
    // token rows, other table rows).
    const fresh = GpuRuntime.fromContext(ctx, loadKernelSources());
    try {
      const executor = new GpuExecutor(ctx, fresh, loaded.model, { validate: true });
      executor.configure({ blockSize: bs, numGpuBlocks: 64, numCpuBlocks: 0 });
      const tokens = prompts.map((p) => [...p]);
      for (let d = 0; d <= numDecodes; d++) {
        const seqs = d === 0 ? prompts.map((p, i) => seq(i, p, 0, tableOf(i).slice(0, Math.ceil(p.length / bs)), bs)) : tokens.map((t, i) => seq(i, [t[t.length - 1]], t.length - 1, tableOf(i).slice(0, Math.ceil(t.length / bs)), bs));
        const out = await executor.execute(plan(d, seqs.reverse()));
        out.outputs.forEach((o) => tokens[o.seqId].push(o.argmax));
      }
      executor.dispose();
      expect(tokens.flat()).toEqual(steady);
    } finally {
      fresh.destroy();
      runtime.destroy();
    }
  });
});
