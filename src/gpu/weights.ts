/**
 * GpuWeights owns the model's read-only tensors in GPU memory: it packs them (W_qkv = [wq; wk; wv]
 * and W_13 = [w1; w3] concatenated, so each is one matmul), uploads one buffer per tensor, plus
 * the RoPE (cos, sin) table, and destroys each of them exactly once. A tied classifier is the
 * embedding buffer itself, uploaded and destroyed once.
 */
import { headSize, kvDim as kvDimOf, type Model } from '../model/types.ts';
import { createBufferFromData } from './buffers.ts';
import { buildRopeTable } from './rope-table.ts';

/** One transformer layer's tensors, all f32, row-major [out, in]. */
export interface GpuLayerWeights {
  rmsAtt: GPUBuffer; // [dim]
  wqkv: GPUBuffer; // [dim + 2 kvDim, dim] = [wq; wk; wv]
  wo: GPUBuffer; // [dim, dim]
  rmsFfn: GPUBuffer; // [dim]
  w13: GPUBuffer; // [2 hiddenDim, dim] = [w1 (gate); w3 (up)]
  w2: GPUBuffer; // [dim, hiddenDim]
}

export class GpuWeights {
  readonly embedding: GPUBuffer; // [vocab, dim]
  readonly layers: readonly GpuLayerWeights[]; // [numLayers]
  readonly rmsFinal: GPUBuffer; // [dim]
  readonly wcls: GPUBuffer; // [vocab, dim] (the embedding buffer when tied)
  readonly ropeTable: GPUBuffer; // [seqLen, headSize / 2, 2] (cos, sin)
  /** Every buffer above, each once, in upload order. */
  private readonly owned: GPUBuffer[] = [];

  constructor(device: GPUDevice, model: Model) {
    const c = model.config;
    const w = model.weights;
    const dim = c.dim;
    const kvDim = kvDimOf(c);
    const upload = (data: Float32Array, label: string): GPUBuffer => {
      const buffer = createBufferFromData(device, data, label);
      this.owned.push(buffer);
      return buffer;
    };
    this.layers = w.layers.map((lw, l) => {
      const wqkv = new Float32Array((dim + 2 * kvDim) * dim);
      wqkv.set(lw.wq, 0);
      wqkv.set(lw.wk, dim * dim);
      wqkv.set(lw.wv, (dim + kvDim) * dim);
      const w13 = new Float32Array(2 * c.hiddenDim * dim);
      w13.set(lw.w1, 0);
      w13.set(lw.w3, c.hiddenDim * dim);
      return {
        rmsAtt: upload(lw.rmsAtt, `layer ${l} rms_att`),
        wqkv: upload(wqkv, `layer ${l} wqkv`),
        wo: upload(lw.wo, `layer ${l} wo`),
        rmsFfn: upload(lw.rmsFfn, `layer ${l} rms_ffn`),
        w13: upload(w13, `layer ${l} w13`),
        w2: upload(lw.w2, `layer ${l} w2`),
      };
    });
    this.embedding = upload(w.tokenEmbedding, 'token embedding');
    this.rmsFinal = upload(w.rmsFinal, 'rms_final');
    this.wcls = w.wcls === w.tokenEmbedding ? this.embedding : upload(w.wcls, 'classifier');
    this.ropeTable = upload(buildRopeTable(c.seqLen, headSize(c), c.ropeTheta), 'rope table');
  }

  destroy(): void {
    for (const b of this.owned) b.destroy();
    this.owned.length = 0;
  }
}
