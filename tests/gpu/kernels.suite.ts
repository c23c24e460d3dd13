/**
 * Every kernel of kernels/ against its CPU reference (src/model/ops.ts where it applies, else a
 * few plain loops here) on seeded random inputs, on real WebGPU. Run from
 * kernels.node.test.ts (Dawn for Node) and kernels.browser.test.ts (Chromium).
 *
 * Tolerances (f32 on the GPU vs references that accumulate in JS doubles):
 *   embedding, block_copy, argmax, KV slot writes of V: exact.
 *   rmsnorm: |gpu - ref| <= 1e-5 * max(1, |ref|).
 *   matmul (all variants): |gpu - ref| <= 1e-5 * sum_j |W_ij * x_j| + 1e-6, i.e. relative to the
 *     magnitude of the terms summed (what f32 rounding is proportional to).
 *   rope: |gpu - ref| <= 1e-6 * max(1, |ref|) (same cos/sin table; only FMA contraction differs).
 *   paged attention: |gpu - ref| <= 2e-5 (outputs are convex combinations of V rows in [-1, 1]).
 *   quantized weights (Q8_0, Q4_0): the embedding exact (dequantized rows of quant.ts); matmuls
 *     against ops.matvecQ with the f32 matmul's tolerance (dequantization is exact in f32), and
 *     bit for bit equal to the f32 kernel run on the dequantized matrix.
 *   lora_bgmv: |gpu - ref| <= 2e-5 * max(1, |ref|); base rows (no slot) exactly untouched.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as ops from '../../src/model/ops.ts';
import { createBufferFromData, createStorageBuffer, readFloat32 } from '../../src/gpu/buffers.ts';
import { acquireDevice, WebGpuUnavailableError, type GpuContext } from '../../src/gpu/device.ts';
import { KERNEL_NAMES, type KernelSources } from '../../src/gpu/kernel-names.ts';
import {
  encodeBlockCopy,
  encodeEmbedding,
  encodeLoraBgmv,
  encodeMatmul,
  encodePlan,
  encodeRopeKvWrite,
  planArgmax,
  planMatmul,
  planPagedAttention,
  planRmsNorm,
  planRopeKvWrite,
  warmUp,
  type MatmulArgs,
} from '../../src/gpu/kernels.ts';
import { buildRopeTable } from '../../src/gpu/rope-table.ts';
import { GpuRuntime, type StepEncoder } from '../../src/gpu/step.ts';
import { GPU_TUNING, SOFTWARE_TUNING, type KernelTuning } from '../../src/gpu/tuning.ts';
import { dequantize, dequantizeRow, quantizeMatrix, type QuantizedMatrix, type QuantType } from '../../src/model/quant.ts';
import { Prng } from './prng.ts';

const QUANT_TYPES: QuantType[] = ['q8_0', 'q4_0'];

interface CloseOptions {
  /** Allowed |actual - expected| per element. */
  tol: (i: number) => number;
  what: string;
}

function expectClose(actual: Float32Array, expected: ArrayLike<number>, o: CloseOptions): void {
  expect(actual.length, `${o.what}: length`).toBe(expected.length);
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < actual.length; i++) {
    const d = Math.abs(actual[i] - expected[i]);
    const excess = Number.isNaN(d) ? Infinity : d - o.tol(i);
    if (excess > worstExcess) {
      worstExcess = excess;
      worst = i;
    }
  }
  if (worst >= 0) {
    expect.fail(`${o.what}: element ${worst} is ${actual[worst]}, expected ${expected[worst]} (tolerance ${o.tol(worst)})`);
  }
}

const u32 = (values: ArrayLike<number>): Uint32Array => Uint32Array.from(values);

/** Both workgroup-sizing profiles, so every kernel runs at 64 threads and at 8-16 threads. */
const TUNINGS: { tuningName: string; tuning: Readonly<KernelTuning> }[] = [
  { tuningName: 'gpu tuning', tuning: GPU_TUNING },
  { tuningName: 'software tuning', tuning: SOFTWARE_TUNING },
];

export function kernelSuite(label: string, getGpu: () => GPU | undefined, sources: KernelSources): void {
  describe(`WebGPU kernels (${label})`, () => {
    let ctx: GpuContext;
    let runtime: GpuRuntime;
    let device: GPUDevice;
    const buffers: GPUBuffer[] = [];

    const upload = (data: Float32Array | Uint32Array | Uint8Array, name?: string): GPUBuffer => {
      const b = createBufferFromData(device, data, name);
      buffers.push(b);
      return b;
    };
    /** A quantized matrix's blocks, padded to 16 bytes as GpuWeights uploads them. */
    const uploadBlocks = (m: QuantizedMatrix): GPUBuffer => {
      const padded = new Uint8Array(Math.ceil(m.blocks.byteLength / 16) * 16);
      padded.set(m.blocks);
      return upload(padded, m.type);
    };
    const empty = (floats: number, name?: string): GPUBuffer => {
      const b = createStorageBuffer(device, floats * 4, name);
      buffers.push(b);
      return b;
    };
    /** Records `encode` into one validated step, reads `outputs` back as f32 / u32. */
    async function runStep(encode: (step: StepEncoder) => void, outputs: GPUBuffer[]): Promise<ArrayBuffer[]> {
      const step = runtime.beginStep({ validate: true, label });
      encode(step);
      for (const b of outputs) step.read(b);
      const result = await step.submit();
      return result.reads;
    }

    beforeAll(async () => {
      ctx = await acquireDevice(getGpu());
      device = ctx.device;
      runtime = GpuRuntime.fromContext(ctx, sources);
    });

    afterAll(() => {
      for (const b of buffers) b.destroy();
      runtime?.destroy();
      ctx?.destroy();
    });

    it('acquires a device and describes the adapter', () => {
      expect(ctx.adapter.features.length).toBeGreaterThan(0);
      expect(ctx.adapter.limits.maxStorageBufferBindingSize).toBeGreaterThanOrEqual(16 << 20);
      expect(device.limits.maxStorageBufferBindingSize).toBe(ctx.adapter.limits.maxStorageBufferBindingSize);
      expect(ctx.isLost).toBe(false);
    });

    it('compiles every kernel without WGSL errors', async () => {
      await runtime.registry.checkCompilation(KERNEL_NAMES);
      for (const name of KERNEL_NAMES) expect(runtime.registry.info(name).bindings.length).toBeGreaterThan(1);
    });

    it('embedding gathers rows exactly', async () => {
      const rng = new Prng(1);
      const vocab = 37;
      const dim = 24;
      const emb = rng.floats(vocab * dim);
      const ids = [5, 0, 36, 5, 12, 1, 36, 9, 2];
      const out = empty(ids.length * dim);
      const [got] = await runStep(
        (s) => encodeEmbedding(s, { tokenIds: upload(u32(ids)), embedding: upload(emb), out, numTokens: ids.length, dim }),
        [out],
      );
      const expected = new Float32Array(ids.length * dim);
      ids.forEach((id, t) => expected.set(emb.subarray(id * dim, (id + 1) * dim), t * dim));
      expect(Array.from(new Float32Array(got))).toEqual(Array.from(expected));
    });

    it.each(QUANT_TYPES)('embedding dequantizes %s rows exactly (quant.dequantizeRow)', async (type) => {
      const rng = new Prng(11);
      const vocab = 37;
      const dim = 96; // three blocks a row; an odd block count puts blocks at 2 mod 4 bytes
      const emb = quantizeMatrix(rng.floats(vocab * dim), vocab, dim, type);
      const ids = [5, 0, 36, 5, 12, 1, 36, 9, 2];
      const out = empty(ids.length * dim);
      const [got] = await runStep(
        (s) => encodeEmbedding(s, { tokenIds: upload(u32(ids)), embedding: uploadBlocks(emb), weightType: type, out, numTokens: ids.length, dim }),
        [out],
      );
      const expected = new Float32Array(ids.length * dim);
      ids.forEach((id, t) => dequantizeRow(emb, id, expected, t * dim));
      expect(expected.some((v) => v !== 0)).toBe(true);
      expect(Array.from(new Float32Array(got))).toEqual(Array.from(expected));
    });

    it.each([64, 172].flatMap((dim) => TUNINGS.map((t) => ({ dim, ...t }))))('rmsnorm matches ops.rmsnorm (dim $dim, $tuningName)', async ({ dim, tuning }) => {
      const rng = new Prng(2 + dim);
      const rows = 5;
      const x = rng.floats(rows * dim, -3, 3);
      const w = rng.floats(dim, 0.5, 1.5);
      const out = empty(rows * dim);
      const [got] = await runStep(
        (s) => encodePlan(s, planRmsNorm({ x: upload(x), weight: upload(w), out, numRows: rows, dim, eps: 1e-5 }, tuning)),
        [out],
      );
      const expected = new Float32Array(rows * dim);
      for (let r = 0; r < rows; r++) ops.rmsnorm(expected, x, w, dim, 1e-5, r * dim, r * dim);
      expectClose(new Float32Array(got), expected, { tol: (i) => 1e-5 * Math.max(1, Math.abs(expected[i])), what: 'rmsnorm' });
    });

    /**
     * The CPU reference of a matmul case: each output row's input built as ops.ts would (gathered,
     * rmsnorm-ed or swiglu-ed), then `matvec`; accumulating cases add to y0. `magnitude` is the sum
     * of |w·x| per output (the tolerance scale); `w` is the f32 (or dequantized) matrix.
     */
    function matmulReference(
      c: { rows: number; inDim: number; outDim: number; accumulate?: boolean; norm?: boolean; swiglu?: boolean; yStride?: number },
      d: { x: Float32Array; xStride: number; rowIds: number[] | null; normW: Float32Array; y0: Float32Array; yStride: number; w: Float32Array },
      matvec: (prod: Float32Array, xin: Float32Array) => void,
    ): { expected: Float32Array; magnitude: Float64Array } {
      const { x, xStride, rowIds, normW, y0, yStride, w } = d;
      const expected = c.accumulate || c.yStride ? Float32Array.from(y0) : new Float32Array(c.rows * yStride);
      const magnitude = new Float64Array(c.rows * yStride);
      const xin = new Float32Array(c.inDim);
      const prod = new Float32Array(c.outDim);
      for (let r = 0; r < c.rows; r++) {
        const src = (rowIds ? rowIds[r] : r) * xStride;
        if (c.swiglu) {
          const g = x.slice(src, src + c.inDim);
          ops.swiglu(g, x.subarray(src + c.inDim, src + 2 * c.inDim), c.inDim);
          xin.set(g);
        } else if (c.norm) {
          ops.rmsnorm(xin, x, normW, c.inDim, 1e-5, 0, src);
        } else {
          xin.set(x.subarray(src, src + c.inDim));
        }
        matvec(prod, xin);
        for (let o = 0; o < c.outDim; o++) {
          const idx = r * yStride + o;
          expected[idx] = (c.accumulate ? expected[idx] : 0) + prod[o];
          let m = c.accumulate ? Math.abs(y0[idx]) : 0;
          for (let j = 0; j < c.inDim; j++) m += Math.abs(w[o * c.inDim + j] * xin[j]);
          magnitude[idx] = m;
        }
      }
      return { expected, magnitude };
    }

    describe('matmul Y = X·Wᵀ', () => {
      interface Case {
        name: string;
        rows: number;
        inDim: number;
        outDim: number;
        strategy: 'gemv' | 'lanes' | 'tiled';
        accumulate?: boolean;
        norm?: boolean;
        swiglu?: boolean;
        /** Number of X rows to gather from (rowIds variant). */
        gatherFrom?: number;
        yStride?: number;
      }
      const cases: Case[] = [
        { name: 'gemv, 1 row (decode)', rows: 1, inDim: 64, outDim: 38, strategy: 'gemv' },
        { name: 'gemv, 3 rows, accumulate', rows: 3, inDim: 64, outDim: 64, strategy: 'gemv', accumulate: true },
        { name: 'gemv, 11 rows (2 row groups), fused rmsnorm (QKV)', rows: 11, inDim: 64, outDim: 128, strategy: 'gemv', norm: true },
        { name: 'gemv, 5 rows, swiglu input, accumulate (w2)', rows: 5, inDim: 172, outDim: 64, strategy: 'gemv', swiglu: true, accumulate: true },
        { name: 'gemv, gathered rows + rmsnorm (logits)', rows: 3, inDim: 64, outDim: 512, strategy: 'gemv', norm: true, gatherFrom: 7 },
        { name: 'gemv, y row stride', rows: 2, inDim: 32, outDim: 20, strategy: 'gemv', yStride: 28 },
        { name: 'lanes, 2 rows, accumulate', rows: 2, inDim: 64, outDim: 64, strategy: 'lanes', accumulate: true },
        { name: 'lanes, 13 rows (4 row groups, the last partial), fused rmsnorm (QKV), 70 columns', rows: 13, inDim: 64, outDim: 70, strategy: 'lanes', norm: true },
        { name: 'lanes, swiglu input, accumulate (w2)', rows: 6, inDim: 172, outDim: 64, strategy: 'lanes', swiglu: true, accumulate: true },
        { name: 'lanes, gathered rows + rmsnorm (logits), y row stride', rows: 5, inDim: 64, outDim: 512, strategy: 'lanes', norm: true, gatherFrom: 9, yStride: 516 },
        { name: 'tiled, 40×70 (partial tiles, K not a multiple of 16)', rows: 40, inDim: 44, outDim: 70, strategy: 'tiled' },
        { name: 'tiled, accumulate', rows: 33, inDim: 64, outDim: 64, strategy: 'tiled', accumulate: true },
        { name: 'tiled, fused rmsnorm', rows: 37, inDim: 64, outDim: 128, strategy: 'tiled', norm: true },
        { name: 'tiled, swiglu input, accumulate', rows: 20, inDim: 172, outDim: 64, strategy: 'tiled', swiglu: true, accumulate: true },
        { name: 'tiled, gathered rows + rmsnorm', rows: 34, inDim: 64, outDim: 100, strategy: 'tiled', norm: true, gatherFrom: 50 },
      ];

      const tuned = cases.flatMap((c) => TUNINGS.map((t) => ({ ...c, ...t })));
      it.each(tuned)('$name ($tuningName)', async (c) => {
        const rng = new Prng(100 + c.rows * 7 + c.outDim);
        const xRows = c.gatherFrom ?? c.rows;
        const xStride = c.swiglu ? 2 * c.inDim : c.inDim;
        const yStride = c.yStride ?? c.outDim;
        const x = rng.floats(xRows * xStride, -2, 2);
        const w = rng.floats(c.outDim * c.inDim);
        const normW = rng.floats(c.inDim, 0.5, 1.5);
        const y0 = rng.floats(c.rows * yStride);
        const rowIds = c.gatherFrom ? Array.from({ length: c.rows }, () => rng.int(xRows)) : null;
        const y = upload(c.accumulate || c.yStride ? y0 : new Float32Array(c.rows * yStride));
        const args: MatmulArgs = {
          x: upload(x),
          w: upload(w),
          y,
          rows: c.rows,
          inDim: c.inDim,
          outDim: c.outDim,
          yStride,
          accumulate: c.accumulate,
          norm: c.norm ? { weight: upload(normW), eps: 1e-5 } : undefined,
          swigluInput: c.swiglu,
          rowIds: rowIds ? upload(u32(rowIds)) : undefined,
          strategy: c.strategy,
        };
        const plan = planMatmul(args, c.tuning);
        expect(plan.kernel).toBe(`matmul_${c.strategy}`);
        const [got] = await runStep((s) => encodePlan(s, plan), [y]);

        // CPU reference: build the input row as ops.ts would, then ops.matvec.
        const { expected, magnitude } = matmulReference(c, { x, xStride, rowIds, normW, y0, yStride, w }, (prod, xin) => ops.matvec(prod, xin, w, c.inDim, c.outDim));
        expectClose(new Float32Array(got), expected, { tol: (i) => 1e-5 * magnitude[i] + 1e-6, what: c.name });
      });

      // The batch-invariance contract: the tiled and lanes kernels reduce every output in the gemv
      // kernel's order, so the same row gives the same bits whichever kernel (whatever the batch) ran it.
      // (Lanes of one vec4 each, as at 64 threads on IN = 64, sum in walk order either way; the
      // 8-thread tuning and IN = 520 give lanes of several, where a wrong split shows.)
      const invariance = [
        { variant: 'plain, K split in 16 or 8', inDim: 64, outDim: 70 },
        { variant: 'fused rmsnorm (QKV)', inDim: 64, outDim: 128, norm: true },
        { variant: 'swiglu input + accumulate (w2: 43 vec4s, lanes left empty at 64 threads)', inDim: 172, outDim: 64, swiglu: true, accumulate: true },
        { variant: 'gathered rows + rmsnorm (logits)', inDim: 64, outDim: 100, norm: true, gatherFrom: 50 },
        { variant: 'K of 8 vec4s', inDim: 32, outDim: 33 },
        { variant: 'K of 130 vec4s, lanes of unequal length', inDim: 520, outDim: 40, norm: true },
      ].flatMap((v) => TUNINGS.map((t) => ({ ...v, ...t })));
      it.each(invariance)('tiled = lanes = gemv bit for bit: $variant ($tuningName)', async (c) => {
        const rows = 37; // two row tiles, the second partial; gemv: five 8-row groups
        const rng = new Prng(500 + c.inDim + c.outDim);
        const xRows = c.gatherFrom ?? rows;
        const xStride = c.swiglu ? 2 * c.inDim : c.inDim;
        const x = rng.floats(xRows * xStride, -2, 2);
        const y0 = rng.floats(rows * c.outDim);
        const common = {
          x: upload(x),
          w: upload(rng.floats(c.outDim * c.inDim)),
          rows,
          inDim: c.inDim,
          outDim: c.outDim,
          accumulate: c.accumulate,
          norm: c.norm ? { weight: upload(rng.floats(c.inDim, 0.5, 1.5)), eps: 1e-5 } : undefined,
          swigluInput: c.swiglu,
          rowIds: c.gatherFrom ? upload(u32(Array.from({ length: rows }, () => rng.int(xRows)))) : undefined,
        };
        const yGemv = upload(Float32Array.from(y0));
        const yTiled = upload(Float32Array.from(y0));
        const yLanes = upload(Float32Array.from(y0));
        const gemv = planMatmul({ ...common, y: yGemv, strategy: 'gemv' }, c.tuning);
        const tiled = planMatmul({ ...common, y: yTiled, strategy: 'tiled' }, c.tuning);
        const lanes = planMatmul({ ...common, y: yLanes, strategy: 'lanes' }, c.tuning);
        expect(gemv.kernel).toBe('matmul_gemv');
        expect(tiled.kernel).toBe('matmul_tiled');
        expect(lanes.kernel).toBe('matmul_lanes');
        expect(tiled.overrides.LANES).toBe(gemv.overrides.WG);
        expect(lanes.overrides.LANES).toBe(gemv.overrides.WG);
        const [a, b, l] = await runStep((s) => {
          encodePlan(s, gemv);
          encodePlan(s, tiled);
          encodePlan(s, lanes);
        }, [yGemv, yTiled, yLanes]);
        const bitsA = new Uint32Array(a);
        for (const [name, other] of [['tiled', b], ['lanes', l]] as const) {
          const bitsB = new Uint32Array(other);
          let firstDiff = -1;
          for (let i = 0; i < bitsA.length && firstDiff < 0; i++) if (bitsA[i] !== bitsB[i]) firstDiff = i;
          if (firstDiff >= 0) {
            expect.fail(`element ${firstDiff} (row ${Math.floor(firstDiff / c.outDim)}): gemv ${new Float32Array(a)[firstDiff]}, ${name} ${new Float32Array(other)[firstDiff]}`);
          }
        }
        // And not trivially equal: the outputs were written.
        expect(new Float32Array(a).some((v, i) => v !== y0[i])).toBe(true);
      });

      // Quantized W (ggml Q8_0 / Q4_0 blocks): both kernels against ops.matvecQ, and bit for bit
      // against the f32 kernel on the dequantized matrix (the dequantized weights are exact).
      const quantCases = [
        { name: 'gemv, 1 row (decode)', rows: 1, inDim: 64, outDim: 38, strategy: 'gemv' as const },
        { name: 'gemv, 11 rows, fused rmsnorm (QKV), odd block count', rows: 11, inDim: 96, outDim: 40, strategy: 'gemv' as const, norm: true },
        { name: 'gemv, 5 rows, swiglu input, accumulate (w2)', rows: 5, inDim: 96, outDim: 64, strategy: 'gemv' as const, swiglu: true, accumulate: true },
        { name: 'gemv, gathered rows + rmsnorm (classifier)', rows: 3, inDim: 64, outDim: 512, strategy: 'gemv' as const, norm: true, gatherFrom: 7 },
        { name: 'lanes, 7 rows, fused rmsnorm (QKV), odd block count', rows: 7, inDim: 96, outDim: 40, strategy: 'lanes' as const, norm: true },
        { name: 'lanes, 6 rows, swiglu input, accumulate (w2)', rows: 6, inDim: 96, outDim: 64, strategy: 'lanes' as const, swiglu: true, accumulate: true },
        { name: 'tiled, 40×70, fused rmsnorm', rows: 40, inDim: 96, outDim: 70, strategy: 'tiled' as const, norm: true },
        { name: 'tiled, swiglu input, accumulate', rows: 33, inDim: 160, outDim: 64, strategy: 'tiled' as const, swiglu: true, accumulate: true },
        { name: 'tiled, gathered rows + rmsnorm', rows: 34, inDim: 64, outDim: 100, strategy: 'tiled' as const, norm: true, gatherFrom: 50 },
      ].flatMap((c) => QUANT_TYPES.flatMap((type) => TUNINGS.map((t) => ({ ...c, type, ...t }))));
      it.each(quantCases)('$type $name ($tuningName)', async (c) => {
        const rng = new Prng(900 + c.rows * 7 + c.outDim + c.inDim);
        const xRows = c.gatherFrom ?? c.rows;
        const xStride = c.swiglu ? 2 * c.inDim : c.inDim;
        const x = rng.floats(xRows * xStride, -2, 2);
        const q = quantizeMatrix(rng.floats(c.outDim * c.inDim), c.outDim, c.inDim, c.type);
        const wDeq = dequantize(q);
        const normW = rng.floats(c.inDim, 0.5, 1.5);
        const y0 = rng.floats(c.rows * c.outDim);
        const rowIds = c.gatherFrom ? Array.from({ length: c.rows }, () => rng.int(xRows)) : null;
        const yQ = upload(Float32Array.from(y0));
        const yF = upload(Float32Array.from(y0));
        const common = {
          x: upload(x),
          rows: c.rows,
          inDim: c.inDim,
          outDim: c.outDim,
          accumulate: c.accumulate,
          norm: c.norm ? { weight: upload(normW), eps: 1e-5 } : undefined,
          swigluInput: c.swiglu,
          rowIds: rowIds ? upload(u32(rowIds)) : undefined,
          strategy: c.strategy,
        };
        const planQ = planMatmul({ ...common, w: uploadBlocks(q), weightType: c.type, y: yQ }, c.tuning);
        const planF = planMatmul({ ...common, w: upload(wDeq), y: yF }, c.tuning);
        expect(planQ.kernel).toBe(`matmul_${c.strategy}`);
        const [got, gotF] = await runStep((s) => {
          encodePlan(s, planQ);
          encodePlan(s, planF);
        }, [yQ, yF]);

        const { expected, magnitude } = matmulReference(c, { x, xStride, rowIds, normW, y0, yStride: c.outDim, w: wDeq }, (prod, xin) => ops.matvecQ(prod, xin, q, c.inDim, c.outDim));
        expectClose(new Float32Array(got), expected, { tol: (i) => 1e-5 * magnitude[i] + 1e-6, what: `${c.type} ${c.name}` });
        const a = new Uint32Array(got);
        const b = new Uint32Array(gotF);
        const firstDiff = a.findIndex((v, i) => v !== b[i]);
        if (firstDiff >= 0) expect.fail(`element ${firstDiff}: ${c.type} ${new Float32Array(got)[firstDiff]}, f32 of the dequantized matrix ${new Float32Array(gotF)[firstDiff]}`);
      });

      // Batch invariance with quantized weights: the tiled and lanes kernels dequantize with
      // gemv's expressions and reduce in its order.
      const quantInvariance = [
        { variant: 'fused rmsnorm (QKV), 3 blocks a row', inDim: 96, outDim: 70, norm: true },
        { variant: 'swiglu input + accumulate (w2)', inDim: 160, outDim: 64, swiglu: true, accumulate: true },
        { variant: 'gathered rows + rmsnorm (classifier)', inDim: 64, outDim: 100, norm: true, gatherFrom: 50 },
        { variant: 'K of 136 vec4s (17 blocks), lanes of unequal length', inDim: 544, outDim: 40 },
      ].flatMap((v) => QUANT_TYPES.flatMap((type) => TUNINGS.map((t) => ({ ...v, type, ...t }))));
      it.each(quantInvariance)('tiled = lanes = gemv bit for bit, $type: $variant ($tuningName)', async (c) => {
        const rows = 37;
        const rng = new Prng(700 + c.inDim + c.outDim);
        const xRows = c.gatherFrom ?? rows;
        const xStride = c.swiglu ? 2 * c.inDim : c.inDim;
        const y0 = rng.floats(rows * c.outDim);
        const common = {
          x: upload(rng.floats(xRows * xStride, -2, 2)),
          w: uploadBlocks(quantizeMatrix(rng.floats(c.outDim * c.inDim), c.outDim, c.inDim, c.type)),
          weightType: c.type,
          rows,
          inDim: c.inDim,
          outDim: c.outDim,
          accumulate: c.accumulate,
          norm: c.norm ? { weight: upload(rng.floats(c.inDim, 0.5, 1.5)), eps: 1e-5 } : undefined,
          swigluInput: c.swiglu,
          rowIds: c.gatherFrom ? upload(u32(Array.from({ length: rows }, () => rng.int(xRows)))) : undefined,
        };
        const yGemv = upload(Float32Array.from(y0));
        const yTiled = upload(Float32Array.from(y0));
        const yLanes = upload(Float32Array.from(y0));
        const gemv = planMatmul({ ...common, y: yGemv, strategy: 'gemv' }, c.tuning);
        const tiled = planMatmul({ ...common, y: yTiled, strategy: 'tiled' }, c.tuning);
        const lanes = planMatmul({ ...common, y: yLanes, strategy: 'lanes' }, c.tuning);
        expect(tiled.overrides.WTYPE).toBe(gemv.overrides.WTYPE);
        expect(lanes.overrides.WTYPE).toBe(gemv.overrides.WTYPE);
        expect(gemv.overrides.WTYPE).not.toBe(0);
        const [a, b, l] = await runStep((s) => {
          encodePlan(s, gemv);
          encodePlan(s, tiled);
          encodePlan(s, lanes);
        }, [yGemv, yTiled, yLanes]);
        const bitsA = new Uint32Array(a);
        for (const [name, other] of [['tiled', b], ['lanes', l]] as const) {
          const bitsB = new Uint32Array(other);
          const firstDiff = bitsA.findIndex((v, i) => v !== bitsB[i]);
          if (firstDiff >= 0) {
            expect.fail(`element ${firstDiff}: gemv ${new Float32Array(a)[firstDiff]}, ${name} ${new Float32Array(other)[firstDiff]}`);
          }
        }
        expect(new Float32Array(a).some((v, i) => v !== y0[i])).toBe(true);
      });

      it('refuses quantized weights whose rows are not a multiple of 32', () => {
        const dummy = {} as GPUBuffer;
        expect(() => planMatmul({ x: dummy, w: dummy, y: dummy, rows: 1, inDim: 172, outDim: 64, weightType: 'q8_0' })).toThrow(/multiple of 32, got 172/);
      });

      it('chains 70 accumulating dispatches in one pass (parameter arena over one chunk)', async () => {
        const rng = new Prng(7);
        const inDim = 16;
        const outDim = 8;
        const x = rng.floats(2 * inDim);
        const w = rng.floats(outDim * inDim);
        const y = empty(2 * outDim);
        const xb = upload(x);
        const wb = upload(w);
        const step = runtime.beginStep({ validate: true, timestamps: true });
        for (let i = 0; i < 70; i++) {
          encodeMatmul(step, { x: xb, w: wb, y, rows: i % 2 === 0 ? 2 : 1, inDim, outDim, accumulate: true });
        }
        expect(step.numDispatches).toBe(70);
        const readIndex = step.read(y);
        const result = await step.submit();
        expect(result.numPasses).toBe(1);
        if (ctx.hasTimestampQuery) {
          expect(result.gpuTimeMs === null || result.gpuTimeMs >= 0).toBe(true);
        } else {
          expect(result.gpuTimeMs).toBeNull();
        }
        const got = new Float32Array(result.reads[readIndex]);
        const prod = new Float32Array(outDim);
        for (let r = 0; r < 2; r++) {
          ops.matvec(prod, x, w, inDim, outDim, 0, r * inDim);
          const times = r === 0 ? 70 : 35;
          for (let o = 0; o < outDim; o++) {
            expect(Math.abs(got[r * outDim + o] - times * prod[o])).toBeLessThanOrEqual(1e-4 * times);
          }
        }
      });

      it('reuses pipelines and bind groups across identical steps', async () => {
        const rng = new Prng(8);
        const xb = upload(rng.floats(4 * 32));
        const wb = upload(rng.floats(32 * 32));
        const y = empty(4 * 32);
        const args: MatmulArgs = { x: xb, w: wb, y, rows: 4, inDim: 32, outDim: 32 };
        await warmUp(runtime.registry, [planMatmul(args)]);
        await runStep((s) => encodeMatmul(s, args), []);
        const before = runtime.registry.stats;
        await runStep((s) => encodeMatmul(s, args), []);
        const after = runtime.registry.stats;
        expect(after.pipelines).toBe(before.pipelines);
        expect(after.bindGroupMisses).toBe(before.bindGroupMisses);
      });
    });

    it('rope_kv_write rotates q in place and writes rotated k and v into their slots', async () => {
      const rng = new Prng(3);
      const dim = 64;
      const kvDim = 32;
      const headSize = 8;
      const theta = 10000;
      const seqLen = 512;
      const numSlots = 40;
      const positions = [0, 1, 511, 37, 200, 5];
      const slots = [12, 3, 39, 0, 21, 7];
      const t = positions.length;
      const stride = dim + 2 * kvDim;
      const qkv = rng.floats(t * stride);
      const sentinel = new Float32Array(numSlots * kvDim).fill(-7);
      const qkvBuf = upload(qkv);
      const kCache = upload(sentinel);
      const vCache = upload(sentinel);
      const [gotQkv, gotK, gotV] = await runStep(
        (s) =>
          encodeRopeKvWrite(s, {
            qkv: qkvBuf,
            positions: upload(u32(positions)),
            slots: upload(u32(slots)),
            ropeTable: upload(buildRopeTable(seqLen, headSize, theta)),
            kCache,
            vCache,
            numTokens: t,
            dim,
            kvDim,
            headSize,
          }),
        [qkvBuf, kCache, vCache],
      );
      const expQkv = Float32Array.from(qkv);
      const expK = Float32Array.from(sentinel);
      const expV = Float32Array.from(sentinel);
      for (let i = 0; i < t; i++) {
        ops.rope(expQkv, i * stride, dim, headSize, positions[i], theta);
        const k = qkv.slice(i * stride + dim, i * stride + dim + kvDim);
        ops.rope(k, 0, kvDim, headSize, positions[i], theta);
        expK.set(k, slots[i] * kvDim);
        expV.set(qkv.subarray(i * stride + dim + kvDim, (i + 1) * stride), slots[i] * kvDim);
      }
      const tol = (e: Float32Array) => (i: number) => 1e-6 * Math.max(1, Math.abs(e[i]));
      expectClose(new Float32Array(gotQkv), expQkv, { tol: tol(expQkv), what: 'q (and untouched k, v) in qkv' });
      expectClose(new Float32Array(gotK), expK, { tol: tol(expK), what: 'kCache' });
      expect(Array.from(new Float32Array(gotV))).toEqual(Array.from(expV));
    });

    describe('paged attention', () => {
      interface AttnCase {
        name: string;
        numHeads: number;
        numKvHeads: number;
        headSize: number;
        blockSize: number;
        /** Context length of each sequence (positions 0 .. len-1 hold K/V). */
        seqLens: number[];
        /** Query tokens as [sequence, position], in batch order (sequences mixed). */
        queries: [number, number][];
        /** Read q straight out of a fused qkv buffer (row stride dim + 2 kvDim). */
        fromQkv?: boolean;
      }
      const cases: AttnCase[] = [
        {
          name: 'GQA 8/4 heads of 8, block 4, 4 sequences, shuffled blocks, multi-chunk context',
          numHeads: 8,
          numKvHeads: 4,
          headSize: 8,
          blockSize: 4,
          seqLens: [70, 13, 1, 33],
          queries: [
            [0, 65],
            [1, 12],
            [0, 66],
            [3, 30],
            [2, 0],
            [0, 67],
            [3, 31],
            [0, 68],
            [3, 32],
            [0, 69],
            [1, 3],
          ],
          fromQkv: true,
        },
        {
          name: 'MQA 4/1 heads of 48 (WG not a multiple of the head size), block 16, long context',
          numHeads: 4,
          numKvHeads: 1,
          headSize: 48,
          blockSize: 16,
          seqLens: [300, 17],
          queries: [
            [1, 16],
            [0, 299],
            [0, 128],
            [1, 0],
          ],
        },
      ];

      it.each(cases.flatMap((c) => TUNINGS.map((t) => ({ ...c, ...t }))))('$name ($tuningName)', async (c) => {
        const rng = new Prng(500 + c.headSize);
        const dim = c.numHeads * c.headSize;
        const kvDim = c.numKvHeads * c.headSize;
        const qStride = c.fromQkv ? dim + 2 * kvDim : dim;
        const blocksPerSeq = c.seqLens.map((n) => Math.ceil(n / c.blockSize));
        const numBlocks = blocksPerSeq.reduce((a, b) => a + b, 0) + 5; // a few blocks nobody owns
        const physical = rng.permutation(numBlocks);
        const tables: number[][] = [];
        let next = 0;
        for (const n of blocksPerSeq) tables.push(physical.slice(next, (next += n)));
        const tableOffsets: number[] = [];
        let off = 0;
        for (const table of tables) {
          tableOffsets.push(off);
          off += table.length;
        }

        // Contiguous per-sequence K/V (the reference's view) scattered into the paged cache;
        // unowned slots hold large values that would show up in any wrong read.
        const kCache = new Float32Array(numBlocks * c.blockSize * kvDim).fill(50);
        const vCache = new Float32Array(numBlocks * c.blockSize * kvDim).fill(50);
        const contiguousK = c.seqLens.map((n) => rng.floats(n * kvDim));
        const contiguousV = c.seqLens.map((n) => rng.floats(n * kvDim));
        c.seqLens.forEach((n, s) => {
          for (let p = 0; p < n; p++) {
            const slot = tables[s][Math.floor(p / c.blockSize)] * c.blockSize + (p % c.blockSize);
            kCache.set(contiguousK[s].subarray(p * kvDim, (p + 1) * kvDim), slot * kvDim);
            vCache.set(contiguousV[s].subarray(p * kvDim, (p + 1) * kvDim), slot * kvDim);
          }
        });
        const t = c.queries.length;
        const q = rng.floats(t * qStride, -2, 2);
        const out = empty(t * dim);
        const [got] = await runStep(
          (s) =>
            encodePlan(s, planPagedAttention({
              q: upload(q),
              kCache: upload(kCache),
              vCache: upload(vCache),
              blockTables: upload(u32(tables.flat())),
              blockTableOffsets: upload(u32(c.queries.map(([seq]) => tableOffsets[seq]))),
              positions: upload(u32(c.queries.map(([, pos]) => pos))),
              out,
              numTokens: t,
              numHeads: c.numHeads,
              numKvHeads: c.numKvHeads,
              headSize: c.headSize,
              blockSize: c.blockSize,
              qStride,
            }, c.tuning)),
          [out],
        );

        // Straightforward attention over contiguous K/V.
        const expected = new Float32Array(t * dim);
        c.queries.forEach(([seq, pos], i) => {
          for (let h = 0; h < c.numHeads; h++) {
            const kvOff = Math.floor(h / (c.numHeads / c.numKvHeads)) * c.headSize;
            const scores = new Float32Array(pos + 1);
            for (let p = 0; p <= pos; p++) {
              let s = 0;
              for (let d = 0; d < c.headSize; d++) s += q[i * qStride + h * c.headSize + d] * contiguousK[seq][p * kvDim + kvOff + d];
              scores[p] = s / Math.sqrt(c.headSize);
            }
            ops.softmax(scores, 0, pos + 1);
            for (let d = 0; d < c.headSize; d++) {
              let acc = 0;
              for (let p = 0; p <= pos; p++) acc += scores[p] * contiguousV[seq][p * kvDim + kvOff + d];
              expected[i * dim + h * c.headSize + d] = acc;
            }
          }
        });
        expectClose(new Float32Array(got), expected, { tol: () => 2e-5, what: 'attention output' });
      });

      // A decode step: each sequence's one token at its next position, in a shuffled batch order;
      // positions 0, 32 and 64 start a chunk of the loop (WG 8 or 64), 0 is the only position.
      it.each(
        [
          { name: 'GQA 8/4 heads of 8, block 4', numHeads: 8, numKvHeads: 4, headSize: 8, blockSize: 4, seqLens: [70, 13, 1, 33, 65], order: [2, 0, 4, 3, 1] },
          { name: 'MQA 4/1 heads of 48, block 16', numHeads: 4, numKvHeads: 1, headSize: 48, blockSize: 16, seqLens: [300, 17], order: [1, 0] },
        ].flatMap((c) => TUNINGS.map((t) => ({ ...c, ...t }))),
      )('with a rope table (ROPE_KV) it is rope_kv_write then paged_attention, bit for bit: $name ($tuningName)', async (c) => {
        const rng = new Prng(900 + c.headSize);
        const dim = c.numHeads * c.headSize;
        const kvDim = c.numKvHeads * c.headSize;
        const qkvStride = dim + 2 * kvDim;
        const numBlocks = c.seqLens.reduce((a, n) => a + Math.ceil(n / c.blockSize), 0) + 3;
        const physical = rng.permutation(numBlocks);
        const tables: number[][] = [];
        let next = 0;
        for (const n of c.seqLens) tables.push(physical.slice(next, (next += Math.ceil(n / c.blockSize))));
        const tableOffsets = tables.map((_, s) => tables.slice(0, s).reduce((a, tb) => a + tb.length, 0));
        // Positions 0 .. len-2 cached; each sequence's token at len-1 writes its own slot.
        const kInit = rng.floats(numBlocks * c.blockSize * kvDim);
        const vInit = rng.floats(numBlocks * c.blockSize * kvDim);
        const positions = c.order.map((s) => c.seqLens[s] - 1);
        const slots = c.order.map((s, i) => tables[s][Math.floor(positions[i] / c.blockSize)] * c.blockSize + (positions[i] % c.blockSize));
        const T = c.order.length;
        const qkv = rng.floats(T * qkvStride, -2, 2);
        const ropeTable = upload(buildRopeTable(512, c.headSize, 10000));
        const common = {
          blockTables: upload(u32(tables.flat())),
          blockTableOffsets: upload(u32(c.order.map((s) => tableOffsets[s]))),
          positions: upload(u32(positions)),
          numTokens: T,
          numHeads: c.numHeads,
          numKvHeads: c.numKvHeads,
          headSize: c.headSize,
          blockSize: c.blockSize,
          qStride: qkvStride,
        };
        const run = (fused: boolean) => {
          const q = upload(qkv);
          const kCache = upload(kInit);
          const vCache = upload(vInit);
          const out = empty(T * dim);
          return runStep((s) => {
            if (!fused) {
              encodePlan(s, planRopeKvWrite({ qkv: q, positions: common.positions, slots: upload(u32(slots)), ropeTable, kCache, vCache, numTokens: T, dim, kvDim, headSize: c.headSize }, c.tuning));
            }
            encodePlan(s, planPagedAttention({ ...common, q, kCache, vCache, out, ropeTable: fused ? ropeTable : undefined }, c.tuning));
          }, [out, kCache, vCache]);
        };
        const [twoKernels, fused] = [await run(false), await run(true)];
        const bits = (b: ArrayBuffer) => Array.from(new Uint32Array(b));
        expect(bits(fused[0]), 'attention output').toEqual(bits(twoKernels[0]));
        expect(bits(fused[1]), 'kCache').toEqual(bits(twoKernels[1]));
        expect(bits(fused[2]), 'vCache').toEqual(bits(twoKernels[2]));
        // The written slots changed (the comparison is not of two untouched caches).
        expect(bits(fused[1])).not.toEqual(bits(kInit.buffer as ArrayBuffer));
      });

      it('refuses a rope table unless q is the qkv buffer and the head size even', () => {
        const b = upload(new Float32Array(4));
        const args = { q: b, kCache: b, vCache: b, blockTables: b, blockTableOffsets: b, positions: b, out: b, numTokens: 1, numHeads: 2, numKvHeads: 1, headSize: 8, blockSize: 4, ropeTable: b };
        expect(() => planPagedAttention(args)).toThrow(/qStride = dim \+ 2 kvDim/);
        expect(() => planPagedAttention({ ...args, qStride: 32 })).not.toThrow();
        expect(() => planPagedAttention({ ...args, headSize: 7, qStride: 28 })).toThrow(/even/);
      });
    });

    it.each([
      { mode: 'plain (wo)', inDim: 64, outDim: 64, xStride: 64, yStride: 64, yOffset: 0 },
      { mode: 'norm (k of qkv)', inDim: 64, outDim: 32, xStride: 64, yStride: 128, yOffset: 64 },
      { mode: 'swiglu (w2)', inDim: 172, outDim: 64, xStride: 344, yStride: 64, yOffset: 0 },
    ])('lora_bgmv adds each row its own adapter\'s scale·B(A x), skips base rows ($mode)', async ({ mode, inDim, outDim, xStride, yStride, yOffset }) => {
      const rng = new Prng(77 + inDim + yOffset);
      const R = 8; // padded rank of every slot
      const ranks = [8, 3, 5]; // slot 1 and 2 hold smaller ranks, zero-padded
      const scales = [2, 0.5, -1.25];
      const aOffset = 4;
      const bOffset = aOffset + R * inDim;
      const slotStride = bOffset + outDim * R + 4;
      const lora = new Float32Array(3 * slotStride);
      const A: Float32Array[] = [];
      const B: Float32Array[] = [];
      ranks.forEach((r, s) => {
        A.push(rng.floats(r * inDim, -0.5, 0.5));
        B.push(rng.floats(outDim * r, -0.5, 0.5));
        lora[s * slotStride] = scales[s];
        lora.set(A[s], s * slotStride + aOffset);
        for (let i = 0; i < outDim; i++) for (let k = 0; k < r; k++) lora[s * slotStride + bOffset + i * R + k] = B[s][i * r + k];
      });
      const NO = 0xffffffff;
      const rowSlots = [0, NO, 1, 0, NO, 2, 2];
      const rows = rowSlots.length;
      const x = rng.floats(rows * xStride, -2, 2);
      const normW = rng.floats(inDim, 0.5, 1.5);
      const y0 = rng.floats(rows * yStride, -1, 1);
      const y = upload(y0.slice());
      const norm = mode.startsWith('norm') ? { weight: upload(normW), eps: 1e-5 } : undefined;
      const swigluInput = mode.startsWith('swiglu');
      const [got] = await runStep(
        (s) => encodeLoraBgmv(s, { x: upload(x), lora: upload(lora), rowSlots: upload(u32(rowSlots)), y, rows, inDim, outDim, rank: R, slotStride, aOffset, bOffset, yOffset, xStride, yStride, norm, swigluInput }),
        [y],
      );
      const expected = y0.slice();
      const xin = new Float32Array(inDim);
      const gate = new Float32Array(inDim);
      const u = new Float32Array(R);
      rowSlots.forEach((slot, t) => {
        if (slot === NO) return;
        if (norm) ops.rmsnorm(xin, x, normW, inDim, 1e-5, 0, t * xStride);
        else if (swigluInput) {
          gate.set(x.subarray(t * xStride, t * xStride + inDim));
          ops.swiglu(gate, x.subarray(t * xStride + inDim, t * xStride + 2 * inDim), inDim);
          xin.set(gate);
        } else xin.set(x.subarray(t * xStride, t * xStride + inDim));
        ops.loraAdd(expected, xin, A[slot], B[slot], ranks[slot], inDim, outDim, scales[slot], u, t * yStride + yOffset);
      });
      const actual = new Float32Array(got);
      expectClose(actual, expected, { tol: (i) => 2e-5 * Math.max(1, Math.abs(expected[i])), what: `lora_bgmv ${mode}` });
      for (let t = 0; t < rows; t++) {
        const row = (a: Float32Array) => Array.from(a.subarray(t * yStride, (t + 1) * yStride));
        if (rowSlots[t] === NO) expect(row(actual), `base row ${t} untouched`).toEqual(row(y0));
        else {
          expect(row(actual).some((v, i) => v !== y0[t * yStride + i]), `adapter row ${t} changed`).toBe(true);
          // columns outside yOffset..yOffset+outDim are untouched
          for (let i = 0; i < yStride; i++) if (i < yOffset || i >= yOffset + outDim) expect(actual[t * yStride + i]).toBe(y0[t * yStride + i]);
        }
      }
    });

    it('block_copy copies K and V of each (src, dst) block pair and nothing else', async () => {
      const rng = new Prng(4);
      const kvDim = 32;
      const blockSize = 4;
      const numBlocks = 10;
      const k = rng.floats(numBlocks * blockSize * kvDim);
      const v = rng.floats(numBlocks * blockSize * kvDim);
      const copies: [number, number][] = [
        [1, 7],
        [3, 2],
        [9, 0],
      ];
      const kb = upload(k);
      const vb = upload(v);
      const [gotK, gotV] = await runStep(
        (s) => encodeBlockCopy(s, { copies: upload(u32(copies.flat())), kCache: kb, vCache: vb, numCopies: copies.length, kvDim, blockSize }),
        [kb, vb],
      );
      const blockFloats = blockSize * kvDim;
      const expK = Float32Array.from(k);
      const expV = Float32Array.from(v);
      for (const [src, dst] of copies) {
        expK.set(k.subarray(src * blockFloats, (src + 1) * blockFloats), dst * blockFloats);
        expV.set(v.subarray(src * blockFloats, (src + 1) * blockFloats), dst * blockFloats);
      }
      expect(Array.from(new Float32Array(gotK))).toEqual(Array.from(expK));
      expect(Array.from(new Float32Array(gotV))).toEqual(Array.from(expV));
    });

    it.each(TUNINGS)('argmax picks the first maximum of each row ($tuningName)', async ({ tuning }) => {
      const rng = new Prng(5);
      const vocab = 517;
      const rows = 5;
      const logits = rng.floats(rows * vocab, -5, 5);
      logits[0 * vocab + 200] = 9;
      logits[0 * vocab + 100] = 9; // tie: 100 comes first
      logits.fill(0.25, 1 * vocab, 2 * vocab); // all equal: index 0
      logits[2 * vocab + vocab - 1] = 20; // the last index
      for (let i = 0; i < vocab; i++) logits[3 * vocab + i] = -100 - i; // all negative: index 0
      logits[4 * vocab + 63] = 7;
      logits[4 * vocab + 64] = 7; // tie across two threads' strides
      const out = empty(rows);
      const [got] = await runStep((s) => encodePlan(s, planArgmax({ logits: upload(logits), out, numRows: rows, vocabSize: vocab }, tuning)), [out]);
      const expected = Array.from({ length: rows }, (_, r) => ops.argmax(logits, r * vocab, vocab));
      expect(expected).toEqual([100, 0, vocab - 1, 0, 63]);
      expect(Array.from(new Uint32Array(got))).toEqual(expected);
    });

    it('refuses a missing GPU and insufficient limits with clear errors', async () => {
      await expect(acquireDevice(undefined)).rejects.toThrow(WebGpuUnavailableError);
      await expect(acquireDevice(getGpu(), { minLimits: { maxStorageBufferBindingSize: 2 ** 52 } })).rejects.toThrow(
        /maxStorageBufferBindingSize is .* needs/,
      );
    });

    it('reports device loss after destroy()', async () => {
      const other = await acquireDevice(getGpu(), { timestamps: false });
      const seen: string[] = [];
      other.onLost((loss) => seen.push(loss.reason));
      const probe = createStorageBuffer(other.device, 16);
      other.destroy();
      const loss = await other.lost;
      expect(loss.reason).toBe('destroyed');
      expect(seen).toEqual(['destroyed']);
      expect(other.isLost).toBe(true);
      const late: string[] = [];
      other.onLost((l) => late.push(l.reason));
      expect(late).toEqual(['destroyed']);
      probe.destroy();
    });

    it('reads buffers back outside a step', async () => {
      const data = new Float32Array([1.5, -2, 3.25, 4]);
      const b = upload(data);
      expect(Array.from(await readFloat32(device, b, 2, 1))).toEqual([-2, 3.25]);
    });
  });
}
