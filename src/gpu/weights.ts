/**
 * GpuWeights owns the model's read-only tensors in GPU memory: it packs them (W_qkv = [wq; wk; wv]
 * and W_13 = [w1; w3] concatenated, so each is one matmul), uploads one buffer per tensor, plus
 * the RoPE (cos, sin) table, and destroys each of them exactly once. A tied classifier is the
 * embedding buffer itself, uploaded and destroyed once.
 *
 * A quantized matrix (Model.quantized: ggml Q8_0 / Q4_0 blocks) is uploaded as its blocks, as the
 * file stores them (padded to 16 bytes); the kernels dequantize in registers (GpuMatrix.type is
 * their WTYPE). Row-concatenating blocks is concatenating bytes, so W_qkv and W_13 stay quantized
 * when their parts share one type (else they are packed from the f32 values).
 */
import { LAYER_MATRICES, type QuantizedMatrix, type WeightType } from '../model/quant.ts';
import { headSize, type Model } from '../model/types.ts';
import { createBufferFromData } from './buffers.ts';
import { buildRopeTable } from './rope-table.ts';

/** A weight matrix on the GPU and how it is stored. */
export interface GpuMatrix {
  buffer: GPUBuffer; // [out, in] f32, or [out, in / 32] blocks of `type`
  type: WeightType;
}

/** One transformer layer's tensors, row-major [out, in]; norms f32. */
export interface GpuLayerWeights {
  rmsAtt: GPUBuffer; // [dim]
  wqkv: GpuMatrix; // [dim + 2 kvDim, dim] = [wq; wk; wv]
  wo: GpuMatrix; // [dim, dim]
  rmsFfn: GPUBuffer; // [dim]
  w13: GpuMatrix; // [2 hiddenDim, dim] = [w1 (gate); w3 (up)]
  w2: GpuMatrix; // [dim, hiddenDim]
}

export class GpuWeights {
  readonly embedding: GpuMatrix; // [vocab, dim]
  readonly layers: readonly GpuLayerWeights[]; // [numLayers]
  readonly rmsFinal: GPUBuffer; // [dim]
  readonly wcls: GpuMatrix; // [vocab, dim] (the embedding's buffer when tied)
  readonly ropeTable: GPUBuffer; // [seqLen, headSize / 2, 2] (cos, sin)
  /** Bytes of every weight buffer above (the RoPE table aside), as uploaded. */
  readonly weightBytes: number;
  /** Every buffer above, each once, in upload order. */
  private readonly owned: GPUBuffer[] = [];

  constructor(device: GPUDevice, model: Model) {
    const c = model.config;
    const w = model.weights;
    const q = model.quantized;
    let weightBytes = 0;
    const upload = (data: ArrayBufferView, label: string): GPUBuffer => {
      const buffer = createBufferFromData(device, data, label);
      this.owned.push(buffer);
      weightBytes += data.byteLength;
      return buffer;
    };
    /** Row-concatenated parts: their blocks when all share one quantized type, else f32. */
    const matrix = (parts: { f32: Float32Array; q: QuantizedMatrix | undefined }[], label: string): GpuMatrix => {
      const type = parts[0].q?.type;
      if (type && parts.every((p) => p.q?.type === type)) {
        const bytes = parts.reduce((n, p) => n + p.q!.blocks.byteLength, 0);
        const packed = new Uint8Array(Math.ceil(bytes / 16) * 16); // read as vec4<u32>
        let at = 0;
        for (const p of parts) {
          packed.set(p.q!.blocks, at);
          at += p.q!.blocks.byteLength;
        }
        const buffer = upload(packed, `${label} (${type})`);
        weightBytes -= packed.byteLength - bytes; // count the blocks, not the padding
        return { buffer, type };
      }
      if (parts.length === 1) return { buffer: upload(parts[0].f32, label), type: 'f32' };
      const packed = new Float32Array(parts.reduce((n, p) => n + p.f32.length, 0));
      let at = 0;
      for (const p of parts) {
        packed.set(p.f32, at);
        at += p.f32.length;
      }
      return { buffer: upload(packed, label), type: 'f32' };
    };
    this.layers = w.layers.map((lw, l) => {
      const ql = q?.layers[l] ?? {};
      const part = (name: (typeof LAYER_MATRICES)[number]) => ({ f32: lw[name], q: ql[name] });
      return {
        rmsAtt: upload(lw.rmsAtt, `layer ${l} rms_att`),
        wqkv: matrix([part('wq'), part('wk'), part('wv')], `layer ${l} wqkv`),
        wo: matrix([part('wo')], `layer ${l} wo`),
        rmsFfn: upload(lw.rmsFfn, `layer ${l} rms_ffn`),
        w13: matrix([part('w1'), part('w3')], `layer ${l} w13`),
        w2: matrix([part('w2')], `layer ${l} w2`),
      };
    });
    this.embedding = matrix([{ f32: w.tokenEmbedding, q: q?.tokenEmbedding }], 'token embedding');
    this.rmsFinal = upload(w.rmsFinal, 'rms_final');
    this.wcls = w.wcls === w.tokenEmbedding ? this.embedding : matrix([{ f32: w.wcls, q: q?.wcls }], 'classifier');
    this.weightBytes = weightBytes;
    this.ropeTable = upload(buildRopeTable(c.seqLen, headSize(c), c.ropeTheta), 'rope table');
  }

  destroy(): void {
    for (const b of this.owned) b.destroy();
    this.owned.length = 0;
  }
}
