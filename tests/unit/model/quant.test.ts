/**
 * ggml's Q8_0 / Q4_0 formats (src/model/quant.ts): the f16 conversion, the exact block layouts,
 * the CPU twin ops.matvecQ, quantize-on-load, and a quantized GGUF file (written by a small
 * writer from the model's f32 weights) loading as the same model and text as quantize-on-load.
 */
import { describe, expect, it } from 'vitest';
import * as ops from '../../../src/model/ops.ts';
import {
  dequantize,
  floatToHalf,
  halfToFloat,
  modelWeightBytes,
  modelWeightType,
  quantizeMatrix,
  quantizeModel,
  type QuantType,
} from '../../../src/model/quant.ts';
import { readGgufModel } from '../../../src/model/gguf.ts';
import { ReferenceModel } from '../../../src/model/reference.ts';
import { ModelFormatError, type Model } from '../../../src/model/types.ts';
import { Rng } from '../../../src/engine/workload.ts';
import { builtin, readModelFile } from './helpers.ts';
import { writeQuantizedGguf } from './gguf-writer.ts';

const rngFloats = (seed: number, n: number, scale = 1) => {
  const r = new Rng(seed);
  return Float32Array.from({ length: n }, () => (r.next() * 2 - 1) * scale);
};

describe('f16', () => {
  it('every finite half converts to float and back unchanged', () => {
    for (let h = 0; h < 0x10000; h++) {
      if ((h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0) continue; // NaN
      expect(floatToHalf(halfToFloat(h))).toBe(h);
    }
  });
  it('rounds to nearest, ties to even, overflow to infinity, tiny to zero', () => {
    expect(floatToHalf(1 + 2 ** -11)).toBe(0x3c00); // tie: 1.0 (even) wins over 1 + 2^-10
    expect(floatToHalf(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie between ...01 and ...10: even
    expect(floatToHalf(1 + 2 ** -11 + 2 ** -20)).toBe(0x3c01); // above the tie
    expect(floatToHalf(65520)).toBe(0x7c00);
    expect(floatToHalf(-1e9)).toBe(0xfc00);
    expect(floatToHalf(2 ** -25)).toBe(0); // tie between 0 and the smallest subnormal: even (0)
    expect(floatToHalf(2 ** -25 + 2 ** -35)).toBe(1);
    expect(floatToHalf(3 * 2 ** -25)).toBe(2); // tie between 1 and 2 subnormal units: 2
  });
});

describe('ggml block layouts', () => {
  it('Q8_0: f16 d then 32 int8, value q * d', () => {
    const d = 2 ** -7; // f16 0x2000
    const q = Array.from({ length: 32 }, (_, j) => (j === 0 ? -127 : j - 16));
    const m = quantizeMatrix(Float32Array.from(q, (v) => v * d), 1, 32, 'q8_0');
    expect(m.blocks.length).toBe(34);
    expect(Array.from(m.blocks)).toEqual([0x00, 0x20, ...q.map((v) => v & 0xff)]);
    expect(Array.from(dequantize(m))).toEqual(q.map((v) => v * d));
  });
  it('Q4_0: f16 d then 16 bytes, weight j in the low nibble of byte j, weight j + 16 in the high one, value (q - 8) * d', () => {
    // d = max / -8 with max the value of largest magnitude (-2): d = 0.25 (f16 0x3400).
    const q = Array.from({ length: 32 }, (_, j) => (j < 16 ? j : 31 - j));
    const m = quantizeMatrix(Float32Array.from(q, (v) => (v - 8) * 0.25), 1, 32, 'q4_0');
    expect(m.blocks.length).toBe(18);
    expect(Array.from(m.blocks)).toEqual([0x00, 0x34, ...Array.from({ length: 16 }, (_, j) => j | ((15 - j) << 4))]);
    expect(Array.from(dequantize(m))).toEqual(q.map((v) => (v - 8) * 0.25));
  });
  it.each(['q8_0', 'q4_0'] as QuantType[])('%s: an all-zero block has d = 0 (Q4_0: -0, as ggml\'s 0 / -8) and dequantizes to zeros', (type) => {
    const m = quantizeMatrix(new Float32Array(64), 2, 32, type);
    expect(m.blocks[1]).toBe(type === 'q8_0' ? 0 : 0x80);
    expect(dequantize(m).every((v) => v === 0)).toBe(true);
  });
  it.each([
    ['q8_0', 0.0045],
    ['q4_0', 0.13],
  ] as [QuantType, number][])('%s: the error of each weight is at most half a step of its block (Q8_0: max |w| / 127; Q4_0: max |w| / 8, a whole step at the clamped end)', (type, bound) => {
    const x = rngFloats(5, 64 * 96);
    const y = dequantize(quantizeMatrix(x, 64, 96, type));
    let worst = 0;
    for (let b = 0; b < x.length / 32; b++) {
      let amax = 0;
      for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b * 32 + j]));
      const step = type === 'q8_0' ? amax / 127 : amax / 8;
      for (let j = 0; j < 32; j++) {
        const err = Math.abs(x[b * 32 + j] - y[b * 32 + j]);
        // Half a step (Q4_0: a whole one where q = 16 is clamped to 15), plus the f16 rounding
        // of d (2^-11 relative) times the largest integer.
        expect(err).toBeLessThanOrEqual(step * ((type === 'q8_0' ? 0.5 : 1) + 2 ** -11 * 128) + 1e-7);
        worst = Math.max(worst, err);
      }
    }
    expect(worst).toBeLessThan(bound);
    expect(worst).toBeGreaterThan(0);
  });
  it('refuses rows that are not a multiple of 32', () => {
    expect(() => quantizeMatrix(new Float32Array(172 * 2), 2, 172, 'q8_0')).toThrow(/multiple of 32/);
  });
});

describe('ops.matvecQ (the CPU twin of the quantized matmuls)', () => {
  it.each(['q8_0', 'q4_0'] as QuantType[])('%s: equals ops.matvec over the dequantized matrix bit for bit', (type) => {
    const x = rngFloats(7, 96, 2);
    const q = quantizeMatrix(rngFloats(8, 40 * 96), 40, 96, type);
    const a = new Float32Array(40);
    const b = new Float32Array(40);
    ops.matvecQ(a, x, q, 96, 40);
    ops.matvec(b, x, dequantize(q), 96, 40);
    expect(Array.from(new Uint32Array(a.buffer))).toEqual(Array.from(new Uint32Array(b.buffer)));
    // rows from an offset (W_qkv's parts)
    const c = new Float32Array(10);
    ops.matvecQ(c, x, q, 96, 10, 0, 0, 30);
    expect(Array.from(c)).toEqual(Array.from(a.subarray(30)));
  });
});

describe('quantize on load', () => {
  const model = builtin().model;
  it.each(['q8_0', 'q4_0'] as QuantType[])('%s: every matrix with rows a multiple of 32 becomes blocks; w2 (rows of 172) stays f32', (type) => {
    const q = quantizeModel(model, type);
    expect(modelWeightType(q)).toBe(type);
    expect(q.quantized!.tokenEmbedding!.type).toBe(type);
    expect(q.quantized!.wcls).toBe(q.quantized!.tokenEmbedding); // tied stays tied
    expect(q.weights.wcls).toBe(q.weights.tokenEmbedding);
    for (const l of q.quantized!.layers) expect(Object.keys(l).sort()).toEqual(['w1', 'w3', 'wk', 'wo', 'wq', 'wv']);
    expect(q.weights.layers[0].w2).toBe(model.weights.layers[0].w2);
    expect(Array.from(q.weights.layers[0].wq)).toEqual(Array.from(dequantize(q.quantized!.layers[0].wq!)));
    // bytes: f32 1,056,512 for stories260K; the quantized matrices at 34/32 or 18/32 bytes a weight
    const f32Bytes = modelWeightBytes(model);
    const w2Bytes = model.config.numLayers * model.config.dim * model.config.hiddenDim * 4;
    const normBytes = (2 * model.config.numLayers + 1) * model.config.dim * 4;
    const quantWeights = (f32Bytes - w2Bytes - normBytes) / 4;
    expect(modelWeightBytes(q)).toBe(w2Bytes + normBytes + (quantWeights / 32) * (type === 'q8_0' ? 34 : 18));
    expect(model.quantized).toBeUndefined(); // the f32 model is untouched
    expect(() => quantizeModel(q, 'q4_0')).toThrow(/already quantized/);
  });
});

/** Greedy tokens of the CPU reference from BOS. */
function greedy(model: Model, n: number): number[] {
  const ref = new ReferenceModel(model);
  const out: number[] = [];
  let token = 1;
  for (let pos = 0; pos < n; pos++) {
    token = ops.argmax(ref.forward(token, pos));
    out.push(token);
  }
  return out;
}

describe('quantized GGUF files', () => {
  const gguf = readModelFile('stories260K.gguf');
  const f32 = readGgufModel(gguf, 'stories260K.gguf');
  it.each(['q8_0', 'q4_0'] as QuantType[])('a %s GGUF loads as quantize-on-load makes it: the same blocks, weights and greedy tokens', (type) => {
    const file = writeQuantizedGguf(gguf, type);
    expect(file.length).toBeLessThan(gguf.length);
    const loaded = readGgufModel(file, `stories260K.${type}.gguf`);
    const onLoad = quantizeModel(f32, type);
    expect(modelWeightType(loaded)).toBe(type);
    expect(modelWeightBytes(loaded)).toBe(modelWeightBytes(onLoad));
    expect(Buffer.from(loaded.quantized!.tokenEmbedding!.blocks).equals(Buffer.from(onLoad.quantized!.tokenEmbedding!.blocks))).toBe(true);
    loaded.quantized!.layers.forEach((l, i) => {
      for (const [k, m] of Object.entries(l)) {
        const other = onLoad.quantized!.layers[i][k as keyof typeof l]!;
        expect(Buffer.from(m.blocks).equals(Buffer.from(other.blocks)), `layer ${i} ${k}`).toBe(true);
      }
    });
    expect(loaded.weights.wcls).toBe(loaded.weights.tokenEmbedding);
    const tokens = greedy(loaded, 48);
    expect(tokens).toEqual(greedy(onLoad, 48));
    if (type === 'q4_0') expect(tokens).not.toEqual(greedy(f32, 48)); // and it is not the f32 model
  });
  it('a corrupt scale (f16 infinity) is refused naming the tensor and block', () => {
    const file = writeQuantizedGguf(gguf, 'q8_0');
    const file2 = file.slice();
    // The first tensor is token_embd.weight (Q8_0); the data starts at the 32-aligned end of the infos.
    const parsedAt = Buffer.from(file2).lastIndexOf(Buffer.from('output_norm.weight'));
    expect(parsedAt).toBeGreaterThan(0);
    const embd = readGgufModel(file, 'x.gguf');
    expect(embd.quantized).toBeDefined();
    // find the data offset through the reader's own parse
    return import('../../../src/model/gguf.ts').then(({ parseGguf }) => {
      const p = parseGguf(file2, 'x.gguf');
      const at = p.dataOffset + p.tensors.get('token_embd.weight')!.offset + 34 * 3; // block 3's d
      new DataView(file2.buffer).setUint16(at, 0x7c00, true);
      let caught: unknown;
      try {
        readGgufModel(file2, 'x.gguf');
      } catch (e) {
        caught = e;
      }
      expect(caught).toBeInstanceOf(ModelFormatError);
      expect((caught as Error).message).toMatch(/block 3 of tensor token_embd\.weight has scale Infinity/);
    });
  });
  it('other quantized types are still refused by name', () => {
    const file = writeQuantizedGguf(gguf, 'q4_0');
    const p = Buffer.from(file);
    const nameAt = p.indexOf(Buffer.from('blk.1.ffn_up.weight'));
    const typeAt = nameAt + 'blk.1.ffn_up.weight'.length + 4 + 16;
    expect(new DataView(file.buffer).getUint32(typeAt, true)).toBe(2);
    new DataView(file.buffer).setUint32(typeAt, 3, true); // Q4_1: same block size, other layout
    expect(() => readGgufModel(file, 'x.gguf')).toThrow(/blk\.1\.ffn_up\.weight has type Q4_1, which servelab cannot read \(supported: F32, F16, BF16, Q8_0, Q4_0\)/);
  });
});
