/**
 * Reader for GGUF v2/v3 files of the `llama` architecture: metadata, tensor infos, F32 tensors
 * (F16 and BF16 are widened to f32), Q8_0 and Q4_0 matrices (kept as blocks: Model.quantized,
 * with their dequantized values as the f32 weights), and the tokenizer from metadata. Everything
 * else gets an error that names the unsupported tensor type or architecture.
 */
import { ByteReader } from './bytes.ts';
import { dequantizeRow as dequantizeRowInto, halfToFloat, LAYER_MATRICES, QK, readQuantizedMatrix, type QuantizedMatrix, type QuantizedWeights, type QuantType } from './quant.ts';
import { ModelFormatError, type LayerWeights, type Model, type ModelConfig, type Vocabulary } from './types.ts';
import { checkFinite, validateConfig } from './validate.ts';

export type GgufValue = number | bigint | boolean | string | GgufValue[];

export interface GgufTensorInfo {
  name: string;
  /** Dimensions, fastest-varying first (a row-major [out, in] matrix is [in, out]). */
  dims: number[];
  type: number;
  /** Byte offset from the start of the tensor data section. */
  offset: number;
}

export interface GgufFile {
  version: number;
  metadata: Map<string, GgufValue>;
  /** In file order (the order of the tensor infos, which is also the order of their data). */
  tensors: Map<string, GgufTensorInfo>;
  /** `general.alignment`, 32 when absent. */
  alignment: number;
  dataOffset: number;
}

/** ggml tensor types: name, elements per block, bytes per block (gguf-py's GGML_QUANT_SIZES). */
const ggmlTypes: Record<number, { name: string; blockSize: number; blockBytes: number }> = {
  0: { name: 'F32', blockSize: 1, blockBytes: 4 },
  1: { name: 'F16', blockSize: 1, blockBytes: 2 },
  2: { name: 'Q4_0', blockSize: 32, blockBytes: 18 },
  3: { name: 'Q4_1', blockSize: 32, blockBytes: 20 },
  6: { name: 'Q5_0', blockSize: 32, blockBytes: 22 },
  7: { name: 'Q5_1', blockSize: 32, blockBytes: 24 },
  8: { name: 'Q8_0', blockSize: 32, blockBytes: 34 },
  9: { name: 'Q8_1', blockSize: 32, blockBytes: 36 },
  10: { name: 'Q2_K', blockSize: 256, blockBytes: 84 },
  11: { name: 'Q3_K', blockSize: 256, blockBytes: 110 },
  12: { name: 'Q4_K', blockSize: 256, blockBytes: 144 },
  13: { name: 'Q5_K', blockSize: 256, blockBytes: 176 },
  14: { name: 'Q6_K', blockSize: 256, blockBytes: 210 },
  15: { name: 'Q8_K', blockSize: 256, blockBytes: 292 },
  16: { name: 'IQ2_XXS', blockSize: 256, blockBytes: 66 },
  17: { name: 'IQ2_XS', blockSize: 256, blockBytes: 74 },
  18: { name: 'IQ3_XXS', blockSize: 256, blockBytes: 98 },
  19: { name: 'IQ1_S', blockSize: 256, blockBytes: 50 },
  20: { name: 'IQ4_NL', blockSize: 32, blockBytes: 18 },
  21: { name: 'IQ3_S', blockSize: 256, blockBytes: 110 },
  22: { name: 'IQ2_S', blockSize: 256, blockBytes: 82 },
  23: { name: 'IQ4_XS', blockSize: 256, blockBytes: 136 },
  24: { name: 'I8', blockSize: 1, blockBytes: 1 },
  25: { name: 'I16', blockSize: 1, blockBytes: 2 },
  26: { name: 'I32', blockSize: 1, blockBytes: 4 },
  27: { name: 'I64', blockSize: 1, blockBytes: 8 },
  28: { name: 'F64', blockSize: 1, blockBytes: 8 },
  29: { name: 'IQ1_M', blockSize: 256, blockBytes: 56 },
  30: { name: 'BF16', blockSize: 1, blockBytes: 2 },
  34: { name: 'TQ1_0', blockSize: 256, blockBytes: 54 },
  35: { name: 'TQ2_0', blockSize: 256, blockBytes: 66 },
  39: { name: 'MXFP4', blockSize: 32, blockBytes: 17 },
};
const supportedTypes = new Set([0, 1, 30, 2, 8]);
const SUPPORTED = 'F32, F16, BF16, Q8_0, Q4_0';
const quantTypes: Record<number, QuantType> = { 8: 'q8_0', 2: 'q4_0' };
const typeName = (type: number): string => ggmlTypes[type]?.name ?? `${type} (unknown to servelab)`;

/** GGUF metadata value types: name, and the fewest bytes one value takes. */
const valueTypes: Record<number, { name: string; minBytes: number }> = {
  0: { name: 'uint8', minBytes: 1 },
  1: { name: 'int8', minBytes: 1 },
  2: { name: 'uint16', minBytes: 2 },
  3: { name: 'int16', minBytes: 2 },
  4: { name: 'uint32', minBytes: 4 },
  5: { name: 'int32', minBytes: 4 },
  6: { name: 'float32', minBytes: 4 },
  7: { name: 'bool', minBytes: 1 },
  8: { name: 'string', minBytes: 8 },
  9: { name: 'array', minBytes: 12 },
  10: { name: 'uint64', minBytes: 8 },
  11: { name: 'int64', minBytes: 8 },
  12: { name: 'float64', minBytes: 8 },
};

const maxMetadataEntries = 1 << 20;
const maxArrayLength = 1 << 26;
const maxStringBytes = 1 << 26;
const maxTensors = 1 << 16;
/** ggml's limit on dimensions. */
const maxDims = 4;
/** Far beyond any model a browser can hold; keeps sizes exact in a double. */
const maxTensorElements = 2 ** 40;
const maxAlignment = 1 << 24;
/** Smallest metadata entry (empty key, a one-byte value) and tensor info (empty name, one dimension). */
const minEntryBytes = 8 + 4 + 1;
const minTensorInfoBytes = 8 + 4 + 8 + 4 + 8;

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The GGUF cursor: every error names the file and what was being read. */
class GgufReader {
  readonly r: ByteReader;

  constructor(
    bytes: Uint8Array,
    readonly label: string,
  ) {
    this.r = new ByteReader(bytes, label);
  }

  fail(message: string): never {
    throw new ModelFormatError(`${this.label}: ${message}`);
  }

  /** A GGUF string (u64 length, UTF-8 bytes), its length bounded by what is left of the file. */
  string(what: string): string {
    const at = this.r.offset;
    const len = this.r.u64(`the length of ${what} (at byte ${at})`);
    if (len > this.r.remaining || len > maxStringBytes) {
      this.fail(
        `${what} (at byte ${at}) claims ${len} bytes, but only ${this.r.remaining} remain; the file is truncated or corrupt`,
      );
    }
    try {
      return utf8.decode(this.r.raw(len, what));
    } catch {
      return this.fail(`${what} (at byte ${at}) is not valid UTF-8; the file is corrupt`);
    }
  }

  value(type: number, what: string, depth = 0): GgufValue {
    const r = this.r;
    switch (type) {
      case 0: return r.u8(what);
      case 1: return r.i8(what);
      case 2: return r.u16(what);
      case 3: return r.i16(what);
      case 4: return r.u32(what);
      case 5: return r.i32(what);
      case 6: return r.f32(what);
      case 7: {
        const at = r.offset;
        const b = r.u8(what);
        if (b > 1) this.fail(`${what} (at byte ${at}) is a bool holding ${b}, expected 0 or 1`);
        return b === 1;
      }
      case 8: return this.string(what);
      case 9: {
        if (depth >= 4) this.fail(`${what} nests arrays more than 4 deep`);
        const at = r.offset;
        const itemType = r.u32(`the item type of ${what}`);
        const item = valueTypes[itemType];
        if (!item) this.fail(`${what} (at byte ${at}) is an array of unknown value type ${itemType}`);
        const n = r.u64(`the length of ${what}`);
        if (n > maxArrayLength || n * item.minBytes > r.remaining) {
          this.fail(
            `${what} (at byte ${at}) claims ${n} ${item.name} items (at least ${n * item.minBytes} bytes), but only ` +
              `${r.remaining} bytes remain; the file is truncated or corrupt`,
          );
        }
        const out: GgufValue[] = new Array(n);
        for (let i = 0; i < n; i++) out[i] = this.value(itemType, `${what}[${i}]`, depth + 1);
        return out;
      }
      case 10: return r.u64(what);
      case 11: return r.i64(what);
      case 12: return r.f64(what);
      default:
        return this.fail(`${what} has unknown value type ${type}`);
    }
  }
}

/** Parses the header, metadata and tensor infos (not the tensor data, which may lie beyond `bytes`). */
export function parseGguf(bytes: Uint8Array, name = 'model.gguf'): GgufFile {
  const label = `GGUF file ${name}`;
  const g = new GgufReader(bytes, label);
  const r = g.r;
  r.need(4, 'magic');
  const magic = new TextDecoder().decode(bytes.subarray(0, 4));
  if (magic !== 'GGUF') {
    throw new ModelFormatError(`${label}: wrong magic ${JSON.stringify(magic)}, expected "GGUF"`);
  }
  r.offset = 4;
  const version = r.u32('version');
  if (version !== 2 && version !== 3) {
    throw new ModelFormatError(`${label}: GGUF version ${version} is not supported (only 2 and 3)`);
  }
  const numTensors = r.u64('tensor count');
  const numMetadata = r.u64('metadata count');
  if (numTensors > maxTensors) g.fail(`tensor count ${numTensors} is absurd`);
  if (numMetadata > maxMetadataEntries) g.fail(`metadata count ${numMetadata} is absurd`);
  const leastBytes = numMetadata * minEntryBytes + numTensors * minTensorInfoBytes;
  if (leastBytes > r.remaining) {
    g.fail(
      `${numMetadata} metadata entries and ${numTensors} tensor infos need at least ${leastBytes} bytes, but only ` +
        `${r.remaining} remain; the file is truncated or its counts are corrupt`,
    );
  }

  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < numMetadata; i++) {
    const at = r.offset;
    const keyWhat = `the key of metadata entry #${i}`;
    const key = g.string(keyWhat);
    if (key.length === 0) g.fail(`${keyWhat} (at byte ${at}) is empty; the file is corrupt`);
    if (metadata.has(key)) g.fail(`metadata key ${JSON.stringify(key)} (at byte ${at}) appears twice`);
    const what = `metadata ${JSON.stringify(key)}`;
    const typeAt = r.offset;
    const type = r.u32(`the value type of ${what}`);
    if (!valueTypes[type]) g.fail(`${what} (key at byte ${at}) has unknown value type ${type} (at byte ${typeAt})`);
    metadata.set(key, g.value(type, what));
  }

  const alignmentValue = metadata.get('general.alignment');
  let alignment = 32;
  if (alignmentValue !== undefined) {
    const a = typeof alignmentValue === 'number' ? alignmentValue : NaN;
    if (!Number.isInteger(a) || a < 1 || a > maxAlignment || (a & (a - 1)) !== 0) {
      g.fail(`general.alignment is ${describe(alignmentValue)}, expected a power of two from 1 to ${maxAlignment}`);
    }
    alignment = a;
  }

  const tensors = new Map<string, GgufTensorInfo>();
  for (let i = 0; i < numTensors; i++) {
    const at = r.offset;
    const tname = g.string(`the name of tensor #${i}`);
    if (tname.length === 0) g.fail(`the name of tensor #${i} (at byte ${at}) is empty; the file is corrupt`);
    if (tensors.has(tname)) g.fail(`tensor ${tname} (info at byte ${at}) appears twice`);
    const numDims = r.u32(`the dimension count of tensor ${tname}`);
    if (numDims === 0 || numDims > maxDims) g.fail(`tensor ${tname} (info at byte ${at}) has ${numDims} dimensions, expected 1 to ${maxDims}`);
    const dims: number[] = [];
    let elements = 1;
    for (let d = 0; d < numDims; d++) {
      const n = r.u64(`dimension ${d} of tensor ${tname}`);
      elements *= n;
      if (n === 0 || elements > maxTensorElements) {
        g.fail(`tensor ${tname} (info at byte ${at}) has dimension ${d} of ${n}: an empty or absurd shape`);
      }
      dims.push(n);
    }
    const type = r.u32(`the type of tensor ${tname}`);
    const offset = r.u64(`the data offset of tensor ${tname}`);
    if (offset % alignment !== 0) {
      g.fail(
        `tensor ${tname} has data offset ${offset}, which is not a multiple of general.alignment ${alignment}; ` +
          `the file is corrupt`,
      );
    }
    tensors.set(tname, { name: tname, dims, type, offset });
  }
  const dataOffset = Math.ceil(r.offset / alignment) * alignment;
  return { version, metadata, tensors, alignment, dataOffset };
}

/**
 * Checks where the tensor data lies, as llama.cpp's reader does: in the order of the tensor infos,
 * each tensor starts where the one before it ends (padded to the alignment), and the data section
 * fits the file and ends it. Every tensor's size must be known, so an unknown type is named here.
 */
export function checkGgufTensorData(file: GgufFile, byteLength: number, label: string): void {
  let expected = 0;
  for (const t of file.tensors.values()) {
    const type = ggmlTypes[t.type];
    if (!type) {
      throw new ModelFormatError(`${label}: tensor ${t.name} has type ${typeName(t.type)}, which servelab cannot read (supported: ${SUPPORTED})`);
    }
    if (t.dims[0] % type.blockSize !== 0) {
      throw new ModelFormatError(
        `${label}: tensor ${t.name} has type ${type.name}, whose blocks of ${type.blockSize} do not divide its rows of ${t.dims[0]}; the file is corrupt`,
      );
    }
    const numBytes = (t.dims.reduce((a, b) => a * b, 1) / type.blockSize) * type.blockBytes;
    if (t.offset !== expected) {
      throw new ModelFormatError(
        `${label}: tensor ${t.name} has data offset ${t.offset}, but the tensors before it end at ${expected} ` +
          `(each padded to general.alignment ${file.alignment}); the file is corrupt`,
      );
    }
    const end = file.dataOffset + t.offset + numBytes;
    if (end > byteLength) {
      throw new ModelFormatError(`${label} is truncated: tensor ${t.name} ends at byte ${end}, but the file has ${byteLength} bytes`);
    }
    expected += Math.ceil(numBytes / file.alignment) * file.alignment;
  }
  const dataEnd = file.dataOffset + expected;
  if (byteLength > dataEnd) {
    throw new ModelFormatError(
      `${label}: ${byteLength - dataEnd} bytes follow the end of the tensor data (byte ${dataEnd}); ` +
        `the file is corrupt or its tensor infos are`,
    );
  }
}

/** How a metadata value looks, for a message. */
function describe(v: GgufValue | undefined): string {
  if (v === undefined) return 'missing';
  if (Array.isArray(v)) return `an array of ${v.length} items`;
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v);
  return String(v);
}

function metaNumber(file: GgufFile, key: string, label: string, fallback?: number): number {
  const v = file.metadata.get(key);
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  if (v === undefined && fallback !== undefined) return fallback;
  throw new ModelFormatError(`${label}: metadata ${key} is ${v === undefined ? 'missing' : `${describe(v)}, not a number`}`);
}

interface ReadTensor {
  values: Float32Array;
  /** The tensor's blocks when it is Q8_0 or Q4_0 (values then holds them dequantized). */
  quantized?: QuantizedMatrix;
}

function readTensor(bytes: Uint8Array, file: GgufFile, tname: string, expectedDims: number[], label: string): ReadTensor {
  const info = file.tensors.get(tname);
  if (!info) throw new ModelFormatError(`${label}: tensor ${tname} is missing`);
  if (!supportedTypes.has(info.type)) {
    throw new ModelFormatError(
      `${label}: tensor ${tname} has type ${typeName(info.type)}, which servelab cannot read (supported: ${SUPPORTED})`,
    );
  }
  const same = info.dims.length === expectedDims.length && info.dims.every((d, i) => d === expectedDims[i]);
  if (!same) {
    throw new ModelFormatError(`${label}: tensor ${tname} has shape [${info.dims}], expected [${expectedDims}]`);
  }
  const count = expectedDims.reduce((a, b) => a * b, 1);
  const type = ggmlTypes[info.type];
  const numBytes = (count / type.blockSize) * type.blockBytes;
  const start = file.dataOffset + info.offset;
  const end = start + numBytes;
  if (end > bytes.byteLength) {
    throw new ModelFormatError(`${label} is truncated: tensor ${tname} ends at byte ${end}, but the file has ${bytes.byteLength} bytes`);
  }
  const r = new ByteReader(bytes, label);
  r.offset = start;
  const quant = quantTypes[info.type];
  if (quant) {
    // dims[0] is a multiple of QK (checkGgufTensorData); rows are the other dimensions.
    const cols = expectedDims[0];
    if (cols % QK !== 0) throw new ModelFormatError(`${label}: tensor ${tname} has type ${type.name} with rows of ${cols}, not a multiple of ${QK}`);
    const m = readQuantizedMatrix(r.raw(numBytes, tname), quant, count / cols, cols, label, tname);
    const values = new Float32Array(count);
    for (let row = 0; row < m.rows; row++) dequantizeRowInto(m, row, values);
    return { values, quantized: m };
  }
  const elementBytes = type.blockBytes;
  let out: Float32Array;
  if (info.type === 0) {
    out = r.f32Array(count, tname);
  } else {
    const raw = r.raw(count * elementBytes, tname);
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    out = new Float32Array(count);
    if (info.type === 30) {
      const u = new Uint32Array(1);
      const f = new Float32Array(u.buffer);
      for (let i = 0; i < count; i++) {
        u[0] = view.getUint16(i * 2, true) << 16;
        out[i] = f[0];
      }
    } else {
      for (let i = 0; i < count; i++) out[i] = halfToFloat(view.getUint16(i * 2, true));
    }
  }
  checkFinite(out, label, (i) => `element ${i} of tensor ${tname} (byte ${start + i * elementBytes})`);
  return { values: out };
}

const sentencePieceSpace = '\u2581';
/** llama2.c's tokenizer export writes BOS/EOS this way; GGUF writes the bare control text. */
const llama2cControlPieces: Record<string, string> = { '<s>': '\n<s>\n', '</s>': '\n</s>\n' };
/** llama.cpp's token types: 0 undefined, 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte. */
const maxTokenType = 6;
/** How a GGUF says "no such token" for an optional special token (-1, or -1 written as a uint32). */
const noToken = new Set([-1, 0xffffffff]);
const specialTokenKey = /^tokenizer\.ggml\.\w+_token_id$/;

/**
 * Every `tokenizer.ggml.*_token_id` must be a token of the vocabulary (an optional one may say
 * "none"); BOS and EOS are required, defaulting to llama's 1 and 2 when absent.
 */
function specialTokens(file: GgufFile, vocabSize: number, label: string): { bosId: number; eosId: number } {
  const required = new Set(['tokenizer.ggml.bos_token_id', 'tokenizer.ggml.eos_token_id']);
  for (const [key, v] of file.metadata) {
    if (!specialTokenKey.test(key)) continue;
    if (typeof v !== 'number' || !Number.isInteger(v)) {
      throw new ModelFormatError(`${label}: ${key} is ${describe(v)}, not a token id`);
    }
    if (v >= 0 && v < vocabSize) continue;
    if (noToken.has(v) && !required.has(key)) continue;
    throw new ModelFormatError(
      `${label}: ${key} is ${v}, outside the vocabulary of ${vocabSize} tokens (ids 0 to ${vocabSize - 1})` +
        (noToken.has(v) ? '; servelab needs a BOS and an EOS token' : ''),
    );
  }
  const id = (key: string, fallback: number) => {
    const v = file.metadata.get(key);
    return v === undefined ? fallback : (v as number);
  };
  return { bosId: id('tokenizer.ggml.bos_token_id', 1), eosId: id('tokenizer.ggml.eos_token_id', 2) };
}

function readVocabulary(file: GgufFile, vocabSize: number, label: string): Vocabulary {
  const tokens = file.metadata.get('tokenizer.ggml.tokens');
  const scores = file.metadata.get('tokenizer.ggml.scores');
  const types = file.metadata.get('tokenizer.ggml.token_type');
  const model = file.metadata.get('tokenizer.ggml.model');
  if (model !== undefined && model !== 'llama') {
    throw new ModelFormatError(`${label}: tokenizer model ${describe(model)} is not supported (only SentencePiece "llama")`);
  }
  if (!Array.isArray(tokens) || tokens.length !== vocabSize) {
    throw new ModelFormatError(
      `${label}: tokenizer.ggml.tokens is ${describe(tokens)}, expected the ${vocabSize} tokens of token_embd.weight`,
    );
  }
  if (types !== undefined) {
    if (!Array.isArray(types) || types.length !== vocabSize) {
      throw new ModelFormatError(`${label}: tokenizer.ggml.token_type is ${describe(types)}, expected ${vocabSize} token types`);
    }
    types.forEach((t, i) => {
      if (typeof t !== 'number' || !Number.isInteger(t) || t < 0 || t > maxTokenType) {
        throw new ModelFormatError(`${label}: tokenizer.ggml.token_type[${i}] is ${describe(t)}, expected a token type 0 to ${maxTokenType}`);
      }
    });
  }
  const encoder = new TextEncoder();
  const pieces = tokens.map((t, i) => {
    if (typeof t !== 'string') throw new ModelFormatError(`${label}: tokenizer.ggml.tokens[${i}] is ${describe(t)}, not a string`);
    const isControl = Array.isArray(types) && types[i] === 3;
    const text = isControl && llama2cControlPieces[t] ? llama2cControlPieces[t] : t.replaceAll(sentencePieceSpace, ' ');
    return encoder.encode(text);
  });
  const scoreArray = new Float32Array(vocabSize);
  if (scores !== undefined) {
    if (!Array.isArray(scores) || scores.length !== vocabSize) {
      throw new ModelFormatError(`${label}: tokenizer.ggml.scores is ${describe(scores)}, expected ${vocabSize} scores`);
    }
    scores.forEach((s, i) => {
      if (typeof s !== 'number' || !Number.isFinite(s)) {
        throw new ModelFormatError(`${label}: tokenizer.ggml.scores[${i}] is ${describe(s)}, not a finite number`);
      }
      scoreArray[i] = s;
    });
  }
  const maxTokenLength = pieces.reduce((m, p) => Math.max(m, p.length), 1);
  return { pieces, scores: scoreArray, maxTokenLength, ...specialTokens(file, vocabSize, label) };
}

function sameFloats(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return false;
  return true;
}

const layerTensors = [
  'attn_norm', 'attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_norm', 'ffn_gate', 'ffn_down', 'ffn_up',
] as const;

/** Reads a llama-architecture GGUF into the in-memory model, tokenizer included. */
export function readGgufModel(bytes: Uint8Array, name = 'model.gguf'): Model {
  const label = `GGUF file ${name}`;
  const file = parseGguf(bytes, name);
  const arch = file.metadata.get('general.architecture');
  if (arch !== 'llama') {
    throw new ModelFormatError(`${label}: architecture ${describe(arch)} is not supported (only "llama")`);
  }
  for (const info of file.tensors.values()) {
    if (!supportedTypes.has(info.type)) {
      throw new ModelFormatError(
        `${label}: tensor ${info.name} has type ${typeName(info.type)}, which servelab cannot read (supported: ${SUPPORTED})`,
      );
    }
  }
  checkGgufTensorData(file, bytes.byteLength, label);
  const embd = file.tensors.get('token_embd.weight');
  if (!embd) throw new ModelFormatError(`${label}: tensor token_embd.weight is missing`);
  if (embd.dims.length !== 2) {
    throw new ModelFormatError(`${label}: tensor token_embd.weight has shape [${embd.dims}], expected [embedding_length, vocab]`);
  }
  const dim = metaNumber(file, 'llama.embedding_length', label);
  const numHeads = metaNumber(file, 'llama.attention.head_count', label);
  const config: ModelConfig = {
    dim,
    hiddenDim: metaNumber(file, 'llama.feed_forward_length', label),
    numLayers: metaNumber(file, 'llama.block_count', label),
    numHeads,
    numKvHeads: metaNumber(file, 'llama.attention.head_count_kv', label, numHeads),
    vocabSize: embd.dims[1],
    seqLen: metaNumber(file, 'llama.context_length', label),
    normEps: Math.fround(metaNumber(file, 'llama.attention.layer_norm_rms_epsilon', label, 1e-5)),
    ropeTheta: metaNumber(file, 'llama.rope.freq_base', label, 10000),
    sharedClassifier: true,
  };
  validateConfig(config, label);
  const ropeDims = metaNumber(file, 'llama.rope.dimension_count', label, dim / numHeads);
  if (ropeDims !== dim / numHeads) {
    throw new ModelFormatError(`${label}: partial RoPE (${ropeDims} of ${dim / numHeads} head dimensions) is not supported`);
  }
  const { hiddenDim, numLayers, vocabSize } = config;
  // Every tensor in the file is part of the model: one left over means the metadata disagrees with
  // the tensors (llama.block_count 4 in a file of 5 blocks), and reading on would drop weights.
  const known = new Set(['token_embd.weight', 'output_norm.weight', 'output.weight']);
  for (let l = 0; l < numLayers; l++) for (const t of layerTensors) known.add(`blk.${l}.${t}.weight`);
  for (const tname of file.tensors.keys()) {
    if (!known.has(tname)) {
      throw new ModelFormatError(
        `${label}: tensor ${tname} is not part of a ${numLayers}-layer llama model (llama.block_count is ${numLayers}); ` +
          `servelab would leave it unused, so the file's metadata or tensors are wrong`,
      );
    }
  }
  const vocab = readVocabulary(file, vocabSize, label);
  const kvDim = (dim / numHeads) * config.numKvHeads;
  const t = (tname: string, dims: number[]) => readTensor(bytes, file, tname, dims, label);
  const quantized: QuantizedWeights = { layers: [] };
  const embedding = t('token_embd.weight', [dim, vocabSize]);
  const tokenEmbedding = embedding.values;
  quantized.tokenEmbedding = embedding.quantized;
  const layers: LayerWeights[] = [];
  const matrixNames = { wq: 'attn_q', wk: 'attn_k', wv: 'attn_v', wo: 'attn_output', w1: 'ffn_gate', w2: 'ffn_down', w3: 'ffn_up' } as const;
  const matrixDims = { wq: [dim, dim], wk: [dim, kvDim], wv: [dim, kvDim], wo: [dim, dim], w1: [dim, hiddenDim], w2: [hiddenDim, dim], w3: [dim, hiddenDim] } as const;
  for (let l = 0; l < numLayers; l++) {
    const p = `blk.${l}.`;
    const ql: QuantizedWeights['layers'][number] = {};
    const m = Object.fromEntries(
      LAYER_MATRICES.map((k) => {
        const r = t(`${p}${matrixNames[k]}.weight`, [...matrixDims[k]]);
        if (r.quantized) ql[k] = r.quantized;
        return [k, r.values];
      }),
    ) as Record<(typeof LAYER_MATRICES)[number], Float32Array>;
    quantized.layers.push(ql);
    layers.push({ rmsAtt: t(`${p}attn_norm.weight`, [dim]).values, rmsFfn: t(`${p}ffn_norm.weight`, [dim]).values, ...m });
  }
  const rmsFinal = t('output_norm.weight', [dim]).values;
  let wcls = tokenEmbedding;
  quantized.wcls = quantized.tokenEmbedding;
  if (file.tensors.has('output.weight')) {
    const out = t('output.weight', [dim, vocabSize]);
    // A classifier stored but equal to the embedding is tied: share one array (as llama2.c does).
    if (!sameFloats(out.values, tokenEmbedding)) {
      wcls = out.values;
      quantized.wcls = out.quantized;
      config.sharedClassifier = false;
    }
  }
  const anyQuantized = quantized.tokenEmbedding !== undefined || quantized.wcls !== undefined || quantized.layers.some((l) => Object.keys(l).length > 0);
  return {
    config,
    weights: { tokenEmbedding, layers, rmsFinal, wcls },
    vocab,
    source: { name, format: 'gguf' },
    ...(anyQuantized ? { quantized } : {}),
  };
}
