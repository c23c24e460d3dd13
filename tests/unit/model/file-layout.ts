/**
 * Where things are in the model files, found by walking their bytes independently of the readers
 * under test: the fields a corruption test rewrites, and the regions a clean load may differ in.
 */

export type FieldSize = 1 | 4 | 8;

export interface Field {
  /** What the field is ("metadata general.name: value type", "tensor blk.0.attn_q.weight: offset"). */
  what: string;
  at: number;
  size: FieldSize;
}

export interface GgufTensorLayout {
  name: string;
  /** Byte of the tensor info's name length, its type field, its offset field. */
  infoAt: number;
  typeAt: number;
  offsetAt: number;
  offset: number;
  numBytes: number;
}

export interface GgufLayout {
  /** Structural fields and scalar values: counts, lengths, types, dims, offsets. */
  fields: Field[];
  /** Byte offsets where a piece of the header ends: every field's start and end. */
  boundaries: number[];
  /** Start of each metadata entry (its key length), by key. */
  keyAt: Map<string, number>;
  /** Start of each metadata entry's value (after the key and value type), by key. */
  valueAt: Map<string, number>;
  tensors: GgufTensorLayout[];
  /** Start of the tensor infos, and of the tensor data. */
  infosAt: number;
  dataOffset: number;
}

const scalarBytes: Record<number, FieldSize | 2> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };

/** Walks a well-formed GGUF file (F32 tensors). */
export function ggufLayout(bytes: Uint8Array): GgufLayout {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const fields: Field[] = [];
  const boundaries = new Set<number>();
  let o = 0;
  const field = (what: string, size: FieldSize): number => {
    fields.push({ what, at: o, size });
    boundaries.add(o);
    const v = size === 4 ? view.getUint32(o, true) : size === 8 ? Number(view.getBigUint64(o, true)) : bytes[o];
    o += size;
    boundaries.add(o);
    return v;
  };
  const string = (what: string, asField: boolean): string => {
    const len = asField ? field(`${what}: length`, 8) : Number(view.getBigUint64(o, true));
    if (!asField) o += 8;
    const s = new TextDecoder().decode(bytes.subarray(o, o + len));
    o += len;
    boundaries.add(o);
    return s;
  };
  field('magic', 4);
  field('version', 4);
  const numTensors = field('tensor count', 8);
  const numMetadata = field('metadata count', 8);
  const keyAt = new Map<string, number>();
  const valueAt = new Map<string, number>();
  let alignment = 32;
  for (let i = 0; i < numMetadata; i++) {
    const start = o;
    const key = string(`metadata #${i}`, true);
    keyAt.set(key, start);
    const type = field(`metadata ${key}: value type`, 4);
    valueAt.set(key, o);
    if (type === 8) {
      string(`metadata ${key}`, true);
    } else if (type === 9) {
      const itemType = field(`metadata ${key}: item type`, 4);
      const n = field(`metadata ${key}: array length`, 8);
      for (let j = 0; j < n; j++) {
        // The first and last few items' lengths are fields; the rest are skipped over.
        const asField = j < 4 || j >= n - 2;
        if (itemType === 8) string(`metadata ${key}[${j}]`, asField);
        else if (scalarBytes[itemType]) o += scalarBytes[itemType];
        else throw new Error(`ggufLayout: nested arrays are not expected in the fixture (${key})`);
      }
      boundaries.add(o);
    } else {
      const size = scalarBytes[type];
      if (size === 1 || size === 4 || size === 8) {
        if (key === 'general.alignment') alignment = view.getUint32(o, true);
        field(`metadata ${key}: value`, size);
      } else {
        o += size;
      }
    }
  }
  const infosAt = o;
  const infos: Omit<GgufTensorLayout, 'numBytes'>[] = [];
  const elements: number[] = [];
  for (let i = 0; i < numTensors; i++) {
    const infoAt = o;
    const name = string(`tensor #${i}`, true);
    const numDims = field(`tensor ${name}: dimension count`, 4);
    let n = 1;
    for (let d = 0; d < numDims; d++) n *= field(`tensor ${name}: dimension ${d}`, 8);
    const typeAt = o;
    const type = field(`tensor ${name}: type`, 4);
    if (type !== 0) throw new Error(`ggufLayout: the fixture's tensors are F32 (${name} is type ${type})`);
    const offsetAt = o;
    const offset = field(`tensor ${name}: offset`, 8);
    infos.push({ name, infoAt, typeAt, offsetAt, offset });
    elements.push(n);
  }
  const dataOffset = Math.ceil(o / alignment) * alignment;
  boundaries.add(dataOffset);
  const tensors = infos.map((t, i) => ({ ...t, numBytes: elements[i] * 4 }));
  for (const t of tensors) {
    boundaries.add(dataOffset + t.offset);
    boundaries.add(dataOffset + t.offset + t.numBytes);
  }
  return { fields, boundaries: [...boundaries].sort((a, b) => a - b), keyAt, valueAt, tensors, infosAt, dataOffset };
}

/** The seven int32 of a llama2.c header. */
export const llama2cHeaderFields: Field[] = ['dim', 'hidden_dim', 'n_layers', 'n_heads', 'n_kv_heads', 'vocab_size', 'seq_len'].map(
  (what, i) => ({ what, at: i * 4, size: 4 as const }),
);

/** Byte offsets where each tensor of a llama2.c checkpoint begins and ends (stories260K's shape). */
export function llama2cBoundaries(c: { dim: number; hiddenDim: number; numLayers: number; numHeads: number; numKvHeads: number; vocabSize: number; seqLen: number }): number[] {
  const kvDim = (c.dim / c.numHeads) * c.numKvHeads;
  const L = c.numLayers;
  const sizes = [
    c.vocabSize * c.dim,
    L * c.dim,
    L * c.dim * c.dim,
    L * kvDim * c.dim,
    L * kvDim * c.dim,
    L * c.dim * c.dim,
    L * c.dim,
    L * c.hiddenDim * c.dim,
    L * c.dim * c.hiddenDim,
    L * c.hiddenDim * c.dim,
    c.dim,
    c.seqLen * (c.dim / c.numHeads / 2),
    c.seqLen * (c.dim / c.numHeads / 2),
  ];
  const out = [0, 4, 8, 12, 16, 20, 24, 28];
  let o = 28;
  for (const n of sizes) out.push((o += n * 4));
  return out;
}

export interface TokenizerLayout {
  fields: Field[];
  boundaries: number[];
  /** Byte ranges [start, end) of the scores and the pieces' bytes: what a clean load may differ in. */
  payload: [number, number][];
}

/** Walks a llama2.c tokenizer file. */
export function tokenizerLayout(bytes: Uint8Array, vocabSize: number): TokenizerLayout {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const fields: Field[] = [{ what: 'max_token_length', at: 0, size: 4 }];
  const boundaries = [0, 4];
  const payload: [number, number][] = [];
  let o = 4;
  for (let i = 0; i < vocabSize; i++) {
    payload.push([o, o + 4]);
    fields.push({ what: `token ${i}: length`, at: o + 4, size: 4 });
    const len = view.getInt32(o + 4, true);
    payload.push([o + 8, o + 8 + len]);
    boundaries.push(o + 4, o + 8, o + 8 + len);
    o += 8 + len;
  }
  return { fields, boundaries, payload };
}
