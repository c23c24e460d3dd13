/**
 * The safetensors reader (Hugging Face's format, as PEFT writes adapter_model.safetensors):
 *
 *   u64 little-endian N | N bytes of UTF-8 JSON (may end in spaces) | tensor data
 *
 * The JSON is an object: an optional "__metadata__" (string -> string), and per tensor
 * { "dtype": "F32" | "F16" | "BF16" | ..., "shape": [d0, d1, ...], "data_offsets": [begin, end] },
 * offsets in bytes relative to the start of the data. Tensors are little-endian, row-major.
 * This reader is strict: every offset must lie inside the data, every span must be exactly
 * prod(shape) * element size, spans may not overlap, and only F32, F16 and BF16 are read
 * (F16/BF16 converted to float32 exactly). Anything else is a ModelFormatError naming the file.
 */
import { ModelFormatError } from './types.ts';

export type SafetensorsDtype = 'F32' | 'F16' | 'BF16';
const DTYPE_BYTES: Record<SafetensorsDtype, number> = { F32: 4, F16: 2, BF16: 2 };
/** Dtypes the format defines that this reader refuses (named in the error). */
const OTHER_DTYPES = new Set(['F64', 'F8_E4M3', 'F8_E5M2', 'I64', 'I32', 'I16', 'I8', 'U64', 'U32', 'U16', 'U8', 'BOOL']);

/** Largest JSON header accepted (the format's own readers use 100 MB). */
export const MAX_SAFETENSORS_HEADER_BYTES = 100 * 1024 * 1024;

export interface SafetensorsTensor {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** The values as float32, row-major [shape...]. */
  data: Float32Array;
}

export interface SafetensorsFile {
  metadata: Record<string, string>;
  /** Tensors in header order. */
  tensors: Map<string, SafetensorsTensor>;
}

/** float16 bits -> number (exact). */
function f16ToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac === 0 ? sign * Infinity : NaN;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

export function readSafetensors(bytes: Uint8Array, name = 'adapter_model.safetensors'): SafetensorsFile {
  const fail = (why: string): never => {
    throw new ModelFormatError(`safetensors file ${name}: ${why}`);
  };
  if (bytes.length < 8) fail(`it has ${bytes.length} bytes, fewer than the 8-byte header length`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = view.getBigUint64(0, true);
  if (n < 2n) fail(`the header length is ${n} bytes (a JSON object takes at least 2)`);
  if (n > BigInt(MAX_SAFETENSORS_HEADER_BYTES)) fail(`the header length ${n} exceeds the ${MAX_SAFETENSORS_HEADER_BYTES}-byte limit`);
  const headerLen = Number(n);
  if (8 + headerLen > bytes.length) fail(`the header length ${headerLen} runs past the end of the file (${bytes.length} bytes)`);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + headerLen));
  } catch {
    return fail('the header is not valid UTF-8');
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (e) {
    return fail(`the header is not valid JSON (${(e as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) fail('the header is not a JSON object');
  const dataStart = 8 + headerLen;
  const dataLen = bytes.length - dataStart;
  const metadata: Record<string, string> = {};
  const spans: [begin: number, end: number, name: string][] = [];
  const tensors = new Map<string, SafetensorsTensor>();
  for (const [key, value] of Object.entries(header as Record<string, unknown>)) {
    if (key === '__metadata__') {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) fail('__metadata__ is not an object');
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(`__metadata__.${k} is not a string`);
        metadata[k] = v as string;
      }
      continue;
    }
    const t = value as Record<string, unknown>;
    if (typeof t !== 'object' || t === null || Array.isArray(t)) fail(`tensor ${key}: its entry is not an object`);
    const dtype = t.dtype;
    if (typeof dtype !== 'string') fail(`tensor ${key}: dtype is missing`);
    if (!(dtype as string in DTYPE_BYTES)) {
      fail(`tensor ${key}: dtype ${String(dtype)} is ${OTHER_DTYPES.has(dtype as string) ? 'not supported' : 'unknown'} (this reader takes F32, F16 and BF16)`);
    }
    const shape = t.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) fail(`tensor ${key}: shape must be an array of integers >= 0`);
    const offsets = t.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && (o as number) >= 0)) {
      fail(`tensor ${key}: data_offsets must be [begin, end], integers >= 0`);
    }
    const [begin, end] = offsets as [number, number];
    if (begin > end) fail(`tensor ${key}: data_offsets [${begin}, ${end}] end before they begin`);
    if (end > dataLen) fail(`tensor ${key}: data_offsets [${begin}, ${end}] run past the ${dataLen} bytes of data (the file is truncated?)`);
    const size = DTYPE_BYTES[dtype as SafetensorsDtype];
    let count = 1;
    for (const d of shape as number[]) count *= d;
    if (count * size !== end - begin) fail(`tensor ${key}: shape [${(shape as number[]).join(', ')}] of ${dtype as string} takes ${count * size} bytes but its data_offsets span ${end - begin}`);
    spans.push([begin, end, key]);
    const data = new Float32Array(count);
    const at = dataStart + begin;
    if (dtype === 'F32') for (let i = 0; i < count; i++) data[i] = view.getFloat32(at + 4 * i, true);
    else if (dtype === 'F16') for (let i = 0; i < count; i++) data[i] = f16ToF32(view.getUint16(at + 2 * i, true));
    else for (let i = 0; i < count; i++) data[i] = new Float32Array(new Uint32Array([view.getUint16(at + 2 * i, true) << 16]).buffer)[0];
    tensors.set(key, { name: key, dtype: dtype as SafetensorsDtype, shape: (shape as number[]).slice(), data });
  }
  spans.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  for (let i = 1; i < spans.length; i++) {
    if (spans[i][0] < spans[i - 1][1]) fail(`tensors ${spans[i - 1][2]} and ${spans[i][2]} overlap in the data`);
  }
  return { metadata, tensors };
}

/** A safetensors file of float32 tensors (the writer scripts/make-adapters.ts and the tests use). */
export function writeSafetensors(tensors: readonly { name: string; shape: number[]; data: Float32Array }[], metadata: Record<string, string> = {}): Uint8Array {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + 4 * t.data.length] };
    offset += 4 * t.data.length;
  }
  const raw = new TextEncoder().encode(JSON.stringify(header));
  const jsonBytes = new Uint8Array(Math.ceil(raw.length / 8) * 8).fill(0x20); // padded with spaces: data aligned to 8 bytes
  jsonBytes.set(raw);
  const out = new Uint8Array(8 + jsonBytes.length + offset);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(jsonBytes.length), true);
  out.set(jsonBytes, 8);
  let at = 8 + jsonBytes.length;
  for (const t of tensors) {
    for (let i = 0; i < t.data.length; i++) view.setFloat32(at + 4 * i, t.data[i], true);
    at += 4 * t.data.length;
  }
  return out;
}
