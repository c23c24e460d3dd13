/**
 * A small GGUF writer for tests: rewrites a GGUF file of F32 tensors (stories260K.gguf) with its
 * matrices quantized to Q8_0 or Q4_0 from the model's own f32 weights, as llama.cpp's quantizer
 * lays them out: the header and metadata kept byte for byte, new tensor infos (type, offset),
 * each tensor's data padded to general.alignment. A matrix whose rows are not a multiple of 32
 * (and every 1-D tensor) stays F32, as llama.cpp's converters fall back for such tensors.
 * Independent of src/model/gguf.ts except for quantizeMatrix (the blocks under test elsewhere).
 */
import { quantizeMatrix, type QuantType } from '../../../src/model/quant.ts';
import { ggufLayout } from './file-layout.ts';

const GGML_TYPE: Record<QuantType | 'f32', number> = { f32: 0, q8_0: 8, q4_0: 2 };

export function writeQuantizedGguf(original: Uint8Array, type: QuantType): Uint8Array {
  const layout = ggufLayout(original);
  const view = new DataView(original.buffer, original.byteOffset, original.byteLength);
  // Tensor infos as the original states them: name, dims (fastest first), data.
  const tensors = layout.tensors.map((t) => {
    const nameLen = Number(view.getBigUint64(t.infoAt, true));
    const nDimsAt = t.infoAt + 8 + nameLen;
    const numDims = view.getUint32(nDimsAt, true);
    const dims = Array.from({ length: numDims }, (_, d) => Number(view.getBigUint64(nDimsAt + 4 + 8 * d, true)));
    const start = layout.dataOffset + t.offset;
    const f32 = new Float32Array(original.slice(start, start + t.numBytes).buffer);
    return { name: t.name, nameBytes: original.subarray(t.infoAt + 8, t.infoAt + 8 + nameLen), dims, f32 };
  });
  const alignment = 32; // stories260K.gguf states none: the default
  const pad = (n: number) => Math.ceil(n / alignment) * alignment;
  const datas = tensors.map((t) => {
    const quantizable = t.dims.length === 2 && t.dims[0] % 32 === 0;
    if (!quantizable) return { ggmlType: GGML_TYPE.f32, bytes: new Uint8Array(t.f32.buffer) };
    const q = quantizeMatrix(t.f32, t.dims[1], t.dims[0], type);
    return { ggmlType: GGML_TYPE[type], bytes: q.blocks };
  });
  const infoBytes = tensors.reduce((n, t) => n + 8 + t.nameBytes.length + 4 + 8 * t.dims.length + 4 + 8, 0);
  const dataOffset = pad(layout.infosAt + infoBytes);
  const dataBytes = datas.reduce((n, d) => n + pad(d.bytes.length), 0);
  const out = new Uint8Array(dataOffset + dataBytes);
  const w = new DataView(out.buffer);
  out.set(original.subarray(0, layout.infosAt)); // magic, version, counts, metadata
  let o = layout.infosAt;
  let offset = 0;
  tensors.forEach((t, i) => {
    w.setBigUint64(o, BigInt(t.nameBytes.length), true);
    out.set(t.nameBytes, o + 8);
    o += 8 + t.nameBytes.length;
    w.setUint32(o, t.dims.length, true);
    o += 4;
    for (const d of t.dims) {
      w.setBigUint64(o, BigInt(d), true);
      o += 8;
    }
    w.setUint32(o, datas[i].ggmlType, true);
    w.setBigUint64(o + 4, BigInt(offset), true);
    o += 12;
    out.set(datas[i].bytes, dataOffset + offset);
    offset += pad(datas[i].bytes.length);
  });
  return out;
}
