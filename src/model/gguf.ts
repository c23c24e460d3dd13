/**
 * Reader for GGUF v2/v3 files of the `llama` architecture: metadata, tensor infos, F32 tensors
 * (F16 and BF16 are widened to f32), and the tokenizer from metadata. Everything else gets an
 * error that names the unsupported tensor type or architecture.
 */
import { ByteReader } from './bytes.ts';
import { ModelFormatError, type LayerWeights, type Model, type ModelConfig, type Vocabulary } from './types.ts';
import { validateConfig } from './validate.ts';

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
  tensors: Map<string, GgufTensorInfo>;
  dataOffset: number;
}

/** ggml tensor type ids and names (for clear errors). */
const ggmlTypeNames: Record<number, string> = {
  0: 'F32', 1: 'F16', 2: 'Q4_0', 3: 'Q4_1', 6: 'Q5_0', 7: 'Q5_1', 8: 'Q8_0', 9: 'Q8_1', 10: 'Q2_K',
  11: 'Q3_K', 12: 'Q4_K', 13: 'Q5_K', 14: 'Q6_K', 15: 'Q8_K', 16: 'IQ2_XXS', 17: 'IQ2_XS', 18: 'IQ3_XXS',
  19: 'IQ1_S', 20: 'IQ4_NL', 21: 'IQ3_S', 22: 'IQ2_S', 23: 'IQ4_XS', 24: 'I8', 25: 'I16', 26: 'I32',
  27: 'I64', 28: 'F64', 29: 'IQ1_M', 30: 'BF16',
};
const supportedTypes = new Set([0, 1, 30]);
const bytesPerElement: Record<number, number> = { 0: 4, 1: 2, 30: 2 };

const maxMetadataEntries = 1 << 20;
const maxArrayLength = 1 << 26;
const maxStringBytes = 1 << 26;
const maxTensors = 1 << 16;

function readString(r: ByteReader, what: string): string {
  const len = r.u64(`length of ${what}`);
  if (len > maxStringBytes) throw new ModelFormatError(`GGUF: ${what} claims ${len} bytes: the file is corrupt`);
  return new TextDecoder().decode(r.raw(len, what));
}

function readValue(r: ByteReader, type: number, what: string, depth = 0): GgufValue {
  switch (type) {
    case 0: return r.u8(what);
    case 1: return r.i8(what);
    case 2: return r.u16(what);
    case 3: return r.i16(what);
    case 4: return r.u32(what);
    case 5: return r.i32(what);
    case 6: return r.f32(what);
    case 7: return r.u8(what) !== 0;
    case 8: return readString(r, what);
    case 9: {
      if (depth > 4) throw new ModelFormatError(`GGUF: ${what} nests arrays too deeply`);
      const itemType = r.u32(`item type of ${what}`);
      const n = r.u64(`length of ${what}`);
      if (n > maxArrayLength || n > r.remaining) {
        throw new ModelFormatError(`GGUF: ${what} claims ${n} items with ${r.remaining} bytes left: the file is truncated or corrupt`);
      }
      const out: GgufValue[] = new Array(n);
      for (let i = 0; i < n; i++) out[i] = readValue(r, itemType, what, depth + 1);
      return out;
    }
    case 10: return r.u64(what);
    case 11: return r.i64(what);
    case 12: return r.f64(what);
    default:
      throw new ModelFormatError(`GGUF: ${what} has unknown value type ${type}`);
  }
}

/** Parses the header, metadata and tensor infos (not the tensor data). */
export function parseGguf(bytes: Uint8Array, name = 'model.gguf'): GgufFile {
  const label = `GGUF file ${name}`;
  const r = new ByteReader(bytes, label);
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
  if (numTensors > maxTensors) throw new ModelFormatError(`${label}: tensor count ${numTensors} is absurd`);
  if (numMetadata > maxMetadataEntries) throw new ModelFormatError(`${label}: metadata count ${numMetadata} is absurd`);
  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < numMetadata; i++) {
    const key = readString(r, `metadata key #${i}`);
    const type = r.u32(`type of ${key}`);
    metadata.set(key, readValue(r, type, key));
  }
  const tensors = new Map<string, GgufTensorInfo>();
  for (let i = 0; i < numTensors; i++) {
    const tname = readString(r, `name of tensor #${i}`);
    const numDims = r.u32(`dimension count of ${tname}`);
    if (numDims === 0 || numDims > 4) throw new ModelFormatError(`${label}: tensor ${tname} has ${numDims} dimensions`);
    const dims: number[] = [];
    for (let d = 0; d < numDims; d++) dims.push(r.u64(`dimension ${d} of ${tname}`));
    const type = r.u32(`type of ${tname}`);
    const offset = r.u64(`offset of ${tname}`);
    tensors.set(tname, { name: tname, dims, type, offset });
  }
  const alignmentValue = metadata.get('general.alignment');
  const alignment = typeof alignmentValue === 'number' && alignmentValue > 0 ? alignmentValue : 32;
  const dataOffset = Math.ceil(r.offset / alignment) * alignment;
  return { version, metadata, tensors, dataOffset };
}

function metaNumber(file: GgufFile, key: string, label: string, fallback?: number): number {
  const v = file.metadata.get(key);
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  if (v === undefined && fallback !== undefined) return fallback;
  throw new ModelFormatError(`${label}: metadata ${key} is ${v === undefined ? 'missing' : 'not a number'}`);
}

function readTensor(bytes: Uint8Array, file: GgufFile, tname: string, expectedDims: number[], label: string): Float32Array {
  const info = file.tensors.get(tname);
  if (!info) throw new ModelFormatError(`${label}: tensor ${tname} is missing`);
  if (!supportedTypes.has(info.type)) {
    const typeName = ggmlTypeNames[info.type] ?? `unknown type ${info.type}`;
    throw new ModelFormatError(
      `${label}: tensor ${tname} has type ${typeName}, which servelab cannot read (supported: F32, F16, BF16)`,
    );
  }
  const same = info.dims.length === expectedDims.length && info.dims.every((d, i) => d === expectedDims[i]);
  if (!same) {
    throw new ModelFormatError(`${label}: tensor ${tname} has shape [${info.dims}], expected [${expectedDims}]`);
  }
  const count = expectedDims.reduce((a, b) => a * b, 1);
  const start = file.dataOffset + info.offset;
  const end = start + count * bytesPerElement[info.type];
  if (end > bytes.byteLength) {
    throw new ModelFormatError(`${label} is truncated: tensor ${tname} ends at byte ${end}, but the file has ${bytes.byteLength} bytes`);
  }
  const r = new ByteReader(bytes, label);
  r.offset = start;
  if (info.type === 0) return r.f32Array(count, tname);
  const raw = r.raw(count * bytesPerElement[info.type], tname);
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const out = new Float32Array(count);
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
  return out;
}

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * 2 ** -14 * (frac / 1024);
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * 2 ** (exp - 15) * (1 + frac / 1024);
}

const sentencePieceSpace = '\u2581';
/** llama2.c's tokenizer export writes BOS/EOS this way; GGUF writes the bare control text. */
const llama2cControlPieces: Record<string, string> = { '<s>': '\n<s>\n', '</s>': '\n</s>\n' };

function readVocabulary(file: GgufFile, vocabSize: number, label: string): Vocabulary {
  const tokens = file.metadata.get('tokenizer.ggml.tokens');
  const scores = file.metadata.get('tokenizer.ggml.scores');
  const types = file.metadata.get('tokenizer.ggml.token_type');
  const model = file.metadata.get('tokenizer.ggml.model');
  if (model !== undefined && model !== 'llama') {
    throw new ModelFormatError(`${label}: tokenizer model "${String(model)}" is not supported (only SentencePiece "llama")`);
  }
  if (!Array.isArray(tokens) || tokens.length !== vocabSize) {
    throw new ModelFormatError(`${label}: tokenizer.ggml.tokens is missing or does not have ${vocabSize} entries`);
  }
  const encoder = new TextEncoder();
  const pieces = tokens.map((t, i) => {
    if (typeof t !== 'string') throw new ModelFormatError(`${label}: token ${i} is not a string`);
    const isControl = Array.isArray(types) && types[i] === 3;
    const text = isControl && llama2cControlPieces[t] ? llama2cControlPieces[t] : t.replaceAll(sentencePieceSpace, ' ');
    return encoder.encode(text);
  });
  const scoreArray = new Float32Array(vocabSize);
  if (Array.isArray(scores)) {
    if (scores.length !== vocabSize) throw new ModelFormatError(`${label}: tokenizer.ggml.scores has ${scores.length} entries, expected ${vocabSize}`);
    scores.forEach((s, i) => (scoreArray[i] = Number(s)));
  }
  const maxTokenLength = pieces.reduce((m, p) => Math.max(m, p.length), 1);
  return {
    pieces,
    scores: scoreArray,
    maxTokenLength,
    bosId: metaNumber(file, 'tokenizer.ggml.bos_token_id', label, 1),
    eosId: metaNumber(file, 'tokenizer.ggml.eos_token_id', label, 2),
  };
}

function sameFloats(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return false;
  return true;
}

/** Reads a llama-architecture GGUF into the in-memory model, tokenizer included. */
export function readGgufModel(bytes: Uint8Array, name = 'model.gguf'): Model {
  const label = `GGUF file ${name}`;
  const file = parseGguf(bytes, name);
  const arch = file.metadata.get('general.architecture');
  if (arch !== 'llama') {
    throw new ModelFormatError(`${label}: architecture "${String(arch)}" is not supported (only "llama")`);
  }
  const embd = file.tensors.get('token_embd.weight');
  if (!embd) throw new ModelFormatError(`${label}: tensor token_embd.weight is missing`);
  const dim = metaNumber(file, 'llama.embedding_length', label);
  const numHeads = metaNumber(file, 'llama.attention.head_count', label);
  const config: ModelConfig = {
    dim,
    hiddenDim: metaNumber(file, 'llama.feed_forward_length', label),
    numLayers: metaNumber(file, 'llama.block_count', label),
    numHeads,
    numKvHeads: metaNumber(file, 'llama.attention.head_count_kv', label, numHeads),
    vocabSize: embd.dims[1] ?? 0,
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
  const kvDim = (dim / numHeads) * config.numKvHeads;
  const t = (tname: string, dims: number[]) => readTensor(bytes, file, tname, dims, label);
  const tokenEmbedding = t('token_embd.weight', [dim, vocabSize]);
  const layers: LayerWeights[] = [];
  for (let l = 0; l < numLayers; l++) {
    const p = `blk.${l}.`;
    layers.push({
      rmsAtt: t(`${p}attn_norm.weight`, [dim]),
      wq: t(`${p}attn_q.weight`, [dim, dim]),
      wk: t(`${p}attn_k.weight`, [dim, kvDim]),
      wv: t(`${p}attn_v.weight`, [dim, kvDim]),
      wo: t(`${p}attn_output.weight`, [dim, dim]),
      rmsFfn: t(`${p}ffn_norm.weight`, [dim]),
      w1: t(`${p}ffn_gate.weight`, [dim, hiddenDim]),
      w2: t(`${p}ffn_down.weight`, [hiddenDim, dim]),
      w3: t(`${p}ffn_up.weight`, [dim, hiddenDim]),
    });
  }
  const rmsFinal = t('output_norm.weight', [dim]);
  let wcls = tokenEmbedding;
  if (file.tensors.has('output.weight')) {
    const out = t('output.weight', [dim, vocabSize]);
    // A classifier stored but equal to the embedding is tied: share one array (as llama2.c does).
    if (!sameFloats(out, tokenEmbedding)) {
      wcls = out;
      config.sharedClassifier = false;
    }
  }
  const vocab = readVocabulary(file, vocabSize, label);
  return { config, weights: { tokenEmbedding, layers, rmsFinal, wcls }, vocab, source: { name, format: 'gguf' } };
}
