/**
 * Quantized weights in ggml's block formats, bit-exact to ggml's reference code
 * (quantize_row_q8_0_ref / quantize_row_q4_0_ref, dequantize_row_*): blocks of 32 consecutive
 * weights of one matrix row, each with an f16 scale d.
 *
 *   Q8_0 block, 34 bytes: f16 d | 32 × int8 q              value = q * d
 *   Q4_0 block, 18 bytes: f16 d | 16 bytes of nibbles       value = (q - 8) * d
 *                         byte j holds weight j (low nibble) and weight j + 16 (high nibble)
 *
 * A matrix [rows, cols] (row-major, cols a multiple of 32) is rows * cols / 32 blocks, row by row:
 * exactly a GGUF tensor's data. A dequantized value is exact in f32 (an integer of at most 8 bits
 * times an 11-bit f16 mantissa), so `dequantize` gives the very numbers the kernels compute with.
 */
import { ModelFormatError, type LayerWeights, type Model } from './types.ts';

/** How a weight matrix is stored. */
export type WeightType = 'f32' | 'q8_0' | 'q4_0';
export type QuantType = Exclude<WeightType, 'f32'>;
export const WEIGHT_TYPES: readonly WeightType[] = ['f32', 'q8_0', 'q4_0'];
export const isWeightType = (v: unknown): v is WeightType => typeof v === 'string' && (WEIGHT_TYPES as readonly string[]).includes(v);

/** Weights per block. */
export const QK = 32;
/** Bytes per block of 32 weights. */
export const BLOCK_BYTES: Readonly<Record<QuantType, number>> = { q8_0: 34, q4_0: 18 };
/** Bytes per weight, for estimates: 4, 34/32, 18/32. */
export const bytesPerWeight = (t: WeightType): number => (t === 'f32' ? 4 : BLOCK_BYTES[t] / QK);
/** The names GGUF and ggml give these types. */
export const WEIGHT_TYPE_LABEL: Readonly<Record<WeightType, string>> = { f32: 'F32', q8_0: 'Q8_0', q4_0: 'Q4_0' };

/** A matrix in ggml blocks. */
export interface QuantizedMatrix {
  type: QuantType;
  rows: number;
  cols: number; // a multiple of 32
  blocks: Uint8Array; // [rows, cols / 32] blocks of BLOCK_BYTES[type] bytes
}

/** The matrices of a layer that may be quantized (the RMSNorm weights stay f32). */
export const LAYER_MATRICES = ['wq', 'wk', 'wv', 'wo', 'w1', 'w2', 'w3'] as const;
export type LayerMatrixName = (typeof LAYER_MATRICES)[number];

/**
 * The quantized matrices of a model, beside its f32 weights (which then hold the dequantized
 * values, bit for bit). A matrix absent here is stored as f32 (its rows are not a multiple of 32,
 * or the file stored it so).
 */
export interface QuantizedWeights {
  tokenEmbedding?: QuantizedMatrix; // [vocab, dim]
  layers: Partial<Record<LayerMatrixName, QuantizedMatrix>>[]; // [numLayers]
  /** The same object as tokenEmbedding when the classifier is shared. */
  wcls?: QuantizedMatrix; // [vocab, dim]
}

// ---------------------------------------------------------------------------------------------
// f16

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** IEEE half (bits) -> number; exact. */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * 2 ** -14 * (frac / 1024);
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * 2 ** (exp - 15) * (1 + frac / 1024);
}

/** float32 -> IEEE half bits, rounded to nearest even (as GGML_FP32_TO_FP16 / F16C). */
export function floatToHalf(v: number): number {
  f32Scratch[0] = v;
  const x = u32Scratch[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 112; // half's biased exponent
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    // subnormal half: value / 2^-24, rounded to nearest even
    const shift = 126 - exp;
    if (shift > 24) return sign;
    const m = mant | 0x800000;
    let h = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1) === 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1) === 1)) h++; // may carry into the exponent (to inf)
  return sign | h;
}

// ---------------------------------------------------------------------------------------------
// quantize / dequantize

const fr = Math.fround;
/** C's roundf: halves away from zero. */
const roundf = (v: number): number => (v < 0 ? -Math.round(-v) : Math.round(v));

/** Quantizes a row-major [rows, cols] f32 matrix (cols a multiple of 32) as ggml does. */
export function quantizeMatrix(values: Float32Array, rows: number, cols: number, type: QuantType): QuantizedMatrix {
  if (cols % QK !== 0) throw new RangeError(`quantize ${type}: rows of ${cols} are not a multiple of ${QK}`);
  if (values.length !== rows * cols) throw new RangeError(`quantize ${type}: ${values.length} values, expected ${rows} x ${cols}`);
  const numBlocks = (rows * cols) / QK;
  const bb = BLOCK_BYTES[type];
  const blocks = new Uint8Array(numBlocks * bb);
  const view = new DataView(blocks.buffer);
  for (let b = 0; b < numBlocks; b++) {
    const x = b * QK;
    const o = b * bb;
    if (type === 'q8_0') {
      let amax = 0;
      for (let j = 0; j < QK; j++) amax = Math.max(amax, Math.abs(values[x + j]));
      const d = fr(amax / 127);
      const id = d ? fr(1 / d) : 0;
      view.setUint16(o, floatToHalf(d), true);
      for (let j = 0; j < QK; j++) view.setInt8(o + 2 + j, roundf(fr(values[x + j] * id)));
    } else {
      let amax = 0;
      let max = 0;
      for (let j = 0; j < QK; j++) {
        const v = values[x + j];
        if (amax < Math.abs(v)) {
          amax = Math.abs(v);
          max = v;
        }
      }
      const d = fr(max / -8);
      const id = d ? fr(1 / d) : 0;
      view.setUint16(o, floatToHalf(d), true);
      for (let j = 0; j < QK / 2; j++) {
        // (int8_t)(x * id + 8.5f): truncation toward zero, then MIN(15, ...)
        const q0 = Math.min(15, Math.trunc(fr(fr(values[x + j] * id) + 8.5)));
        const q1 = Math.min(15, Math.trunc(fr(fr(values[x + QK / 2 + j] * id) + 8.5)));
        blocks[o + 2 + j] = q0 | (q1 << 4);
      }
    }
  }
  return { type, rows, cols, blocks };
}

/** The scale of block b. */
export function blockScale(m: QuantizedMatrix, b: number): number {
  const o = b * BLOCK_BYTES[m.type];
  return halfToFloat(m.blocks[o] | (m.blocks[o + 1] << 8));
}

/** The integer of weight j (0..31) of block b: q for Q8_0, q - 8 for Q4_0. */
export function blockInt(m: QuantizedMatrix, b: number, j: number): number {
  if (m.type === 'q8_0') return (m.blocks[b * 34 + 2 + j] << 24) >> 24;
  const byte = m.blocks[b * 18 + 2 + (j & 15)];
  return (j < 16 ? byte & 15 : byte >> 4) - 8;
}

/** out[outOffset + j] = weight j of row `row`, for the row's cols weights (the embedding's row lookup). */
export function dequantizeRow(m: QuantizedMatrix, row: number, out: Float32Array, outOffset = 0): void {
  const nb = m.cols / QK;
  for (let bi = 0; bi < nb; bi++) {
    const b = row * nb + bi;
    const d = blockScale(m, b);
    for (let j = 0; j < QK; j++) out[outOffset + bi * QK + j] = fr(blockInt(m, b, j) * d);
  }
}

/** Every weight as f32 (exact). */
export function dequantize(m: QuantizedMatrix): Float32Array {
  const out = new Float32Array(m.rows * m.cols);
  for (let r = 0; r < m.rows; r++) dequantizeRow(m, r, out, r * m.cols);
  return out;
}

/**
 * Reads a GGUF tensor's blocks (copied), checking each scale is finite. `label` names the file.
 */
export function readQuantizedMatrix(bytes: Uint8Array, type: QuantType, rows: number, cols: number, label: string, name: string): QuantizedMatrix {
  const m: QuantizedMatrix = { type, rows, cols, blocks: bytes.slice() };
  const numBlocks = (rows * cols) / QK;
  for (let b = 0; b < numBlocks; b++) {
    if (!Number.isFinite(blockScale(m, b))) {
      throw new ModelFormatError(`${label}: block ${b} of tensor ${name} has scale ${blockScale(m, b)}; the file is corrupt`);
    }
  }
  return m;
}

// ---------------------------------------------------------------------------------------------
// whole models

/** The storage type of each matrix group of a model: f32 unless quantized. */
export function matrixType(m: QuantizedMatrix | undefined): WeightType {
  return m?.type ?? 'f32';
}

/** The model's quantization as one word: 'f32', a type every quantized matrix shares, or 'mixed'. */
export function modelWeightType(model: Model): WeightType | 'mixed' {
  const q = model.quantized;
  if (!q) return 'f32';
  const types = new Set<WeightType>();
  if (q.tokenEmbedding) types.add(q.tokenEmbedding.type);
  if (q.wcls) types.add(q.wcls.type);
  for (const l of q.layers) for (const m of Object.values(l)) if (m) types.add(m.type);
  if (types.size === 0) return 'f32';
  return types.size === 1 ? [...types][0] : 'mixed';
}

/**
 * Bytes of the weights as the GPU holds them: each matrix in its own format (blocks or f32),
 * norms f32, a shared classifier counted once.
 */
export function modelWeightBytes(model: Model): number {
  const c = model.config;
  const w = model.weights;
  const q = model.quantized;
  const size = (f32: Float32Array, m: QuantizedMatrix | undefined) => (m ? m.blocks.byteLength : f32.byteLength);
  let total = size(w.tokenEmbedding, q?.tokenEmbedding) + w.rmsFinal.byteLength;
  if (!c.sharedClassifier) total += size(w.wcls, q?.wcls);
  w.layers.forEach((lw, l) => {
    total += lw.rmsAtt.byteLength + lw.rmsFfn.byteLength;
    for (const name of LAYER_MATRICES) total += size(lw[name], q?.layers[l]?.[name]);
  });
  return total;
}

/** Rows and columns of each layer matrix, [out, in]. */
function layerShapes(model: Model): Record<LayerMatrixName, [number, number]> {
  const c = model.config;
  const kvDim = (c.dim * c.numKvHeads) / c.numHeads;
  return {
    wq: [c.dim, c.dim],
    wk: [kvDim, c.dim],
    wv: [kvDim, c.dim],
    wo: [c.dim, c.dim],
    w1: [c.hiddenDim, c.dim],
    w2: [c.dim, c.hiddenDim],
    w3: [c.hiddenDim, c.dim],
  };
}

/**
 * Quantize-on-load: a new Model whose matrices are `type` blocks, each matrix whose rows are a
 * multiple of 32 (the others stay f32, as llama.cpp's converters fall back for such tensors:
 * stories260K's w2 has rows of 172); its f32 weights become the dequantized values. A model
 * already quantized is refused (quantizing twice would compound the error).
 */
export function quantizeModel(model: Model, type: QuantType): Model {
  if (model.quantized) throw new RangeError(`the model is already quantized (${modelWeightType(model)}); load its f32 weights to quantize to ${type}`);
  const c = model.config;
  const shapes = layerShapes(model);
  const quantized: QuantizedWeights = { layers: [] };
  const one = (values: Float32Array, rows: number, cols: number): { f32: Float32Array; q?: QuantizedMatrix } => {
    if (cols % QK !== 0) return { f32: values };
    const q = quantizeMatrix(values, rows, cols, type);
    return { f32: dequantize(q), q };
  };
  const emb = one(model.weights.tokenEmbedding, c.vocabSize, c.dim);
  quantized.tokenEmbedding = emb.q;
  let wcls = emb.f32;
  if (model.weights.wcls !== model.weights.tokenEmbedding) {
    const cls = one(model.weights.wcls, c.vocabSize, c.dim);
    wcls = cls.f32;
    quantized.wcls = cls.q;
  } else {
    quantized.wcls = emb.q;
  }
  const layers: LayerWeights[] = model.weights.layers.map((lw) => {
    const out: LayerWeights = { ...lw };
    const ql: Partial<Record<LayerMatrixName, QuantizedMatrix>> = {};
    for (const name of LAYER_MATRICES) {
      const [rows, cols] = shapes[name];
      const r = one(lw[name], rows, cols);
      out[name] = r.f32;
      if (r.q) ql[name] = r.q;
    }
    quantized.layers.push(ql);
    return out;
  });
  return {
    ...model,
    config: { ...c },
    weights: { tokenEmbedding: emb.f32, layers, rmsFinal: model.weights.rmsFinal, wcls },
    quantized,
  };
}
