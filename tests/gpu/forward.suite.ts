/**
 * The kernels composed as kernels.ts documents (6 dispatches per layer, fused norms, fused QKV
 * and W1|W3, residual adds fused into wo / w2, logits only for selected rows, argmax), two engine
 * steps of mixed prefill chunks and decode tokens from several sequences, each step ONE compute
 * pass and ONE submit, against a per-token CPU forward pass built from src/model/ops.ts with
 * contiguous K/V. Random weights (2 layers, stories260K's widths). Tolerance on logits:
 * |gpu - ref| <= 1e-4 * max(1, |ref|); argmax equal wherever the top-2 gap of the reference exceeds that.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as ops from '../../src/model/ops.ts';
import { createBufferFromData, createStorageBuffer } from '../../src/gpu/buffers.ts';
import { acquireDevice, type GpuContext } from '../../src/gpu/device.ts';
import type { KernelSources } from '../../src/gpu/kernel-names.ts';
import {
  encodeArgmax,
  encodeEmbedding,
  encodeMatmul,
  encodePagedAttention,
  encodeRopeKvWrite,
} from '../../src/gpu/kernels.ts';
import { buildRopeTable } from '../../src/gpu/rope-table.ts';
import { GpuRuntime } from '../../src/gpu/step.ts';
import { GPU_TUNING, SOFTWARE_TUNING } from '../../src/gpu/tuning.ts';
import { Prng } from './prng.ts';

const dim = 64;
const hidden = 172;
const numHeads = 8;
const numKvHeads = 4;
const headSize = dim / numHeads;
const kvDim = numKvHeads * headSize;
const vocab = 96;
const numLayers = 2;
const seqLen = 64;
const blockSize = 4;
const numBlocks = 24;
const eps = 1e-5;
const theta = 10000;

interface Layer {
  rmsAtt: Float32Array;
  wq: Float32Array;
  wk: Float32Array;
  wv: Float32Array;
  wo: Float32Array;
  rmsFfn: Float32Array;
  w1: Float32Array;
  w2: Float32Array;
  w3: Float32Array;
}

/** Per-token CPU forward with a contiguous K/V cache per sequence (ops.ts arithmetic). */
class CpuModel {
  readonly kv = new Map<number, { k: Float32Array[]; v: Float32Array[] }>(); // per seq: [layer][pos * kvDim]
  constructor(
    readonly layers: Layer[],
    readonly emb: Float32Array,
    readonly rmsFinal: Float32Array,
  ) {}

  forward(seq: number, token: number, pos: number): Float32Array {
    let cache = this.kv.get(seq);
    if (!cache) {
      cache = { k: this.layers.map(() => new Float32Array(seqLen * kvDim)), v: this.layers.map(() => new Float32Array(seqLen * kvDim)) };
      this.kv.set(seq, cache);
    }
    const x = this.emb.slice(token * dim, (token + 1) * dim);
    const xb = new Float32Array(dim);
    const q = new Float32Array(dim);
    const att = new Float32Array(dim);
    const tmp = new Float32Array(dim);
    const hb = new Float32Array(hidden);
    const hb2 = new Float32Array(hidden);
    this.layers.forEach((l, li) => {
      ops.rmsnorm(xb, x, l.rmsAtt, dim, eps);
      ops.matvec(q, xb, l.wq, dim, dim);
      ops.matvec(cache.k[li], xb, l.wk, dim, kvDim, pos * kvDim);
      ops.matvec(cache.v[li], xb, l.wv, dim, kvDim, pos * kvDim);
      ops.rope(q, 0, dim, headSize, pos, theta);
      ops.rope(cache.k[li], pos * kvDim, kvDim, headSize, pos, theta);
      for (let h = 0; h < numHeads; h++) {
        const kvOff = Math.floor(h / (numHeads / numKvHeads)) * headSize;
        const scores = new Float32Array(pos + 1);
        for (let p = 0; p <= pos; p++) {
          let s = 0;
          for (let d = 0; d < headSize; d++) s += q[h * headSize + d] * cache.k[li][p * kvDim + kvOff + d];
          scores[p] = s / Math.sqrt(headSize);
        }
        ops.softmax(scores, 0, pos + 1);
        for (let d = 0; d < headSize; d++) {
          let a = 0;
          for (let p = 0; p <= pos; p++) a += scores[p] * cache.v[li][p * kvDim + kvOff + d];
          att[h * headSize + d] = a;
        }
      }
      ops.matvec(tmp, att, l.wo, dim, dim);
      for (let i = 0; i < dim; i++) x[i] += tmp[i];
      ops.rmsnorm(xb, x, l.rmsFfn, dim, eps);
      ops.matvec(hb, xb, l.w1, dim, hidden);
      ops.matvec(hb2, xb, l.w3, dim, hidden);
      ops.swiglu(hb, hb2, hidden);
      ops.matvec(tmp, hb, l.w2, hidden, dim);
      for (let i = 0; i < dim; i++) x[i] += tmp[i];
    });
    ops.rmsnorm(xb, x, this.rmsFinal, dim, eps);
    const logits = new Float32Array(vocab);
    ops.matvec(logits, xb, this.emb, dim, vocab);
    return logits;
  }
}

const concat = (...parts: Float32Array[]): Float32Array => {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
};

export function forwardSuite(label: string, getGpu: () => GPU | undefined, sources: KernelSources): void {
  describe(`forward pass composed from the kernels (${label})`, () => {
    let ctx: GpuContext;
    beforeAll(async () => {
      ctx = await acquireDevice(getGpu());
    });
    afterAll(() => ctx?.destroy());

    it.each([
      { tuningName: 'gpu tuning', tuning: GPU_TUNING },
      { tuningName: 'software tuning', tuning: SOFTWARE_TUNING },
    ])('two mixed steps and a decode step match the per-token CPU forward ($tuningName)', async ({ tuning }) => {
      const device = ctx.device;
      const runtime = new GpuRuntime(device, sources, { tuning });
      const rng = new Prng(42);
      const w = (n: number, scale = 0.3) => rng.floats(n, -scale, scale);
      const layers: Layer[] = Array.from({ length: numLayers }, () => ({
        rmsAtt: rng.floats(dim, 0.5, 1.5),
        wq: w(dim * dim),
        wk: w(kvDim * dim),
        wv: w(kvDim * dim),
        wo: w(dim * dim),
        rmsFfn: rng.floats(dim, 0.5, 1.5),
        w1: w(hidden * dim),
        w2: w(dim * hidden),
        w3: w(hidden * dim),
      }));
      const emb = w(vocab * dim, 1);
      const rmsFinal = rng.floats(dim, 0.5, 1.5);
      const cpu = new CpuModel(layers, emb, rmsFinal);

      const owned: GPUBuffer[] = [];
      const up = (data: Float32Array | Uint32Array) => {
        const b = createBufferFromData(device, data);
        owned.push(b);
        return b;
      };
      const zeros = (floats: number) => {
        const b = createStorageBuffer(device, floats * 4);
        owned.push(b);
        return b;
      };
      const gpuLayers = layers.map((l) => ({
        rmsAtt: up(l.rmsAtt),
        wqkv: up(concat(l.wq, l.wk, l.wv)), // [dim + 2 kvDim, dim]
        wo: up(l.wo),
        rmsFfn: up(l.rmsFfn),
        w13: up(concat(l.w1, l.w3)), // [2 hidden, dim]
        w2: up(l.w2),
        kCache: zeros(numBlocks * blockSize * kvDim), // [numBlocks * blockSize, kvDim]
        vCache: zeros(numBlocks * blockSize * kvDim),
      }));
      const embBuf = up(emb);
      const rmsFinalBuf = up(rmsFinal);
      const ropeTable = up(buildRopeTable(seqLen, headSize, theta));
      const maxTokens = 16;
      const x = zeros(maxTokens * dim); // [T, dim] residual stream
      const qkv = zeros(maxTokens * (dim + 2 * kvDim)); // [T, dim + 2 kvDim]
      const att = zeros(maxTokens * dim); // [T, dim]
      const gateUp = zeros(maxTokens * 2 * hidden); // [T, 2 hidden]
      const logits = zeros(maxTokens * vocab); // [numLogitRows, vocab]
      const argmax = zeros(maxTokens); // [numLogitRows] u32

      // Shuffled physical blocks for three sequences.
      const physical = rng.permutation(numBlocks);
      const tables = [physical.slice(0, 4), physical.slice(4, 8), physical.slice(8, 12)];
      const tableOffsets = [0, 4, 8];
      const tokens = [Array.from({ length: 9 }, () => rng.int(vocab)), Array.from({ length: 7 }, () => rng.int(vocab)), Array.from({ length: 5 }, () => rng.int(vocab))];
      // Each step: [seq, first position, count], in batch order (sequences mixed).
      const steps: [number, number, number][][] = [
        [
          [0, 0, 5],
          [1, 0, 3],
        ],
        [
          [1, 3, 3],
          [0, 5, 1],
          [2, 0, 4],
        ],
        // a decode step (each sequence one token): rope_kv_write's work done inside paged_attention
        [
          [2, 4, 1],
          [0, 6, 1],
          [1, 6, 1],
        ],
      ];

      for (const plan of steps) {
        const ids: number[] = [];
        const positions: number[] = [];
        const slots: number[] = [];
        const offsets: number[] = [];
        const logitRows: number[] = [];
        for (const [seq, start, count] of plan) {
          for (let k = 0; k < count; k++) {
            const pos = start + k;
            ids.push(tokens[seq][pos]);
            positions.push(pos);
            slots.push(tables[seq][Math.floor(pos / blockSize)] * blockSize + (pos % blockSize));
            offsets.push(tableOffsets[seq]);
          }
          logitRows.push(ids.length - 1);
        }
        const T = ids.length;
        const decode = plan.every(([, , count]) => count === 1);
        const idsBuf = up(Uint32Array.from(ids));
        const posBuf = up(Uint32Array.from(positions));
        const slotBuf = up(Uint32Array.from(slots));
        const offBuf = up(Uint32Array.from(offsets));
        const tableBuf = up(Uint32Array.from(tables.flat()));
        const rowBuf = up(Uint32Array.from(logitRows));

        const step = runtime.beginStep({ validate: true, timestamps: true });
        encodeEmbedding(step, { tokenIds: idsBuf, embedding: embBuf, out: x, numTokens: T, dim });
        for (const l of gpuLayers) {
          encodeMatmul(step, { x, w: l.wqkv, y: qkv, rows: T, inDim: dim, outDim: dim + 2 * kvDim, norm: { weight: l.rmsAtt, eps } });
          if (!decode) encodeRopeKvWrite(step, { qkv, positions: posBuf, slots: slotBuf, ropeTable, kCache: l.kCache, vCache: l.vCache, numTokens: T, dim, kvDim, headSize });
          encodePagedAttention(step, {
            ropeTable: decode ? ropeTable : undefined,
            q: qkv,
            qStride: dim + 2 * kvDim,
            kCache: l.kCache,
            vCache: l.vCache,
            blockTables: tableBuf,
            blockTableOffsets: offBuf,
            positions: posBuf,
            out: att,
            numTokens: T,
            numHeads,
            numKvHeads,
            headSize,
            blockSize,
          });
          encodeMatmul(step, { x: att, w: l.wo, y: x, rows: T, inDim: dim, outDim: dim, accumulate: true });
          encodeMatmul(step, { x, w: l.w13, y: gateUp, rows: T, inDim: dim, outDim: 2 * hidden, norm: { weight: l.rmsFfn, eps } });
          encodeMatmul(step, { x: gateUp, w: l.w2, y: x, rows: T, inDim: hidden, outDim: dim, swigluInput: true, accumulate: true });
        }
        const rows = logitRows.length;
        encodeMatmul(step, { x, w: embBuf, y: logits, rows, inDim: dim, outDim: vocab, norm: { weight: rmsFinalBuf, eps }, rowIds: rowBuf });
        encodeArgmax(step, { logits, out: argmax, numRows: rows, vocabSize: vocab });
        expect(step.numDispatches).toBe(1 + (decode ? 5 : 6) * numLayers + 2);
        const logitsRead = step.read(logits, rows * vocab * 4);
        const argmaxRead = step.read(argmax, rows * 4);
        const result = await step.submit();
        expect(result.numPasses).toBe(1);
        const gotLogits = new Float32Array(result.reads[logitsRead]);
        const gotArgmax = new Uint32Array(result.reads[argmaxRead]);

        let r = 0;
        for (const [seq, start, count] of plan) {
          let ref: Float32Array = new Float32Array(vocab);
          for (let k = 0; k < count; k++) ref = cpu.forward(seq, tokens[seq][start + k], start + k);
          const got = gotLogits.subarray(r * vocab, (r + 1) * vocab);
          for (let i = 0; i < vocab; i++) {
            const tol = 1e-4 * Math.max(1, Math.abs(ref[i]));
            if (!(Math.abs(got[i] - ref[i]) <= tol)) expect.fail(`seq ${seq} logit ${i}: ${got[i]} vs ${ref[i]}`);
          }
          const best = ops.argmax(ref);
          const sorted = Array.from(ref).sort((a, b) => b - a);
          if (sorted[0] - sorted[1] > 1e-3 * Math.max(1, Math.abs(sorted[0]))) expect(gotArgmax[r]).toBe(best);
          r++;
        }
      }
      runtime.destroy();
      for (const b of owned) b.destroy();
    });
  });
}
