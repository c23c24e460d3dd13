/**
 * The forward pass of one engine step, recorded into the step's single compute pass: every
 * scheduled token of every sequence is one row (prefill chunks and decode tokens mixed), and K/V
 * are read and written through each token's block table. Owns no buffers: it reads the weights
 * (GpuWeights), the KV pool (GpuKvPool) and the step's activations (ActivationArena).
 *
 *   [block_copy per layer, for copy-on-write]
 *   embedding
 *   per layer: matmul qkv (fused RMSNorm) · rope_kv_write · paged_attention · matmul wo (+= x)
 *              · matmul w1|w3 (fused RMSNorm) · matmul w2 (fused SwiGLU, += x)
 *   matmul logits for the rows that need them (gathered, fused final RMSNorm) · argmax
 */
import { headSize as headSizeOf, kvDim as kvDimOf, type ModelConfig } from '../model/types.ts';
import type { Activations } from './activations.ts';
import {
  encodeArgmax,
  encodeBlockCopy,
  encodeEmbedding,
  encodeMatmul,
  encodePagedAttention,
  encodeRopeKvWrite,
  type MatmulArgs,
} from './kernels.ts';
import type { GpuKvPool } from './kv-pool.ts';
import type { StepEncoder } from './step.ts';
import type { GpuWeights } from './weights.ts';

export interface ForwardStep {
  numTokens: number; // rows of x: every scheduled token
  numRows: number; // rows that need logits (gathered through act.logitRows)
  numCopies: number; // copy-on-write block copies (in act.copies)
}

/**
 * The matmul kernel for this shape. With batch invariance (the default) it is fixed per shape, so
 * a row's reduction order, and so its bits, never depend on how many rows share the step.
 */
function strategy(batchInvariant: boolean, inDim: number, xStride = inDim): MatmulArgs['strategy'] {
  if (!batchInvariant) return 'auto';
  return inDim % 4 === 0 && xStride % 4 === 0 ? 'gemv' : 'tiled';
}

/** Records the step; true when it recorded logits and argmax (numRows rows in a.logits, a.argmax). */
export function encodeForward(
  step: StepEncoder,
  c: ModelConfig,
  w: GpuWeights,
  kv: GpuKvPool,
  a: Activations,
  n: ForwardStep,
  batchInvariant: boolean,
): boolean {
  const dim = c.dim;
  const kvDim = kvDimOf(c);
  const headSize = headSizeOf(c);
  const blockSize = kv.geometry.blockSize;
  const qkvStride = dim + 2 * kvDim;
  const T = n.numTokens;

  // copy-on-write: each copied block's K and V, every layer, before anything writes into them
  if (n.numCopies > 0) {
    for (let l = 0; l < c.numLayers; l++) {
      encodeBlockCopy(step, { copies: a.copies, kCache: kv.k[l], vCache: kv.v[l], numCopies: n.numCopies, kvDim, blockSize });
    }
  }
  if (T === 0) return false;

  // x = embedding[token]
  encodeEmbedding(step, { tokenIds: a.tokenIds, embedding: w.embedding, out: a.x, numTokens: T, dim });

  for (let l = 0; l < c.numLayers; l++) {
    const lw = w.layers[l];
    // qkv = rmsnorm(x; rmsAtt) · [wq; wk; wv]ᵀ
    encodeMatmul(step, { x: a.x, w: lw.wqkv, y: a.qkv, rows: T, inDim: dim, outDim: qkvStride, norm: { weight: lw.rmsAtt, eps: c.normEps }, strategy: strategy(batchInvariant, dim) });
    // rotate q in place; write rotated k and v into this layer's cache at each token's slot
    encodeRopeKvWrite(step, { qkv: a.qkv, positions: a.positions, slots: a.slots, ropeTable: w.ropeTable, kCache: kv.k[l], vCache: kv.v[l], numTokens: T, dim, kvDim, headSize });
    // att = attention(q, this layer's cache), each token over its own positions via its block table
    encodePagedAttention(step, {
      q: a.qkv,
      kCache: kv.k[l],
      vCache: kv.v[l],
      blockTables: a.blockTables,
      blockTableOffsets: a.tableOffsets,
      positions: a.positions,
      out: a.att,
      numTokens: T,
      numHeads: c.numHeads,
      numKvHeads: c.numKvHeads,
      headSize,
      blockSize,
      qStride: qkvStride,
    });
    // x += att · woᵀ
    encodeMatmul(step, { x: a.att, w: lw.wo, y: a.x, rows: T, inDim: dim, outDim: dim, accumulate: true, strategy: strategy(batchInvariant, dim) });
    // gateUp = rmsnorm(x; rmsFfn) · [w1; w3]ᵀ
    encodeMatmul(step, { x: a.x, w: lw.w13, y: a.gateUp, rows: T, inDim: dim, outDim: 2 * c.hiddenDim, norm: { weight: lw.rmsFfn, eps: c.normEps }, strategy: strategy(batchInvariant, dim) });
    // x += (silu(gate) * up) · w2ᵀ
    encodeMatmul(step, { x: a.gateUp, w: lw.w2, y: a.x, rows: T, inDim: c.hiddenDim, outDim: dim, swigluInput: true, accumulate: true, strategy: strategy(batchInvariant, c.hiddenDim, 2 * c.hiddenDim) });
  }
  if (n.numRows === 0) return false;

  // logits = rmsnorm(x[logitRows]; rmsFinal) · wclsᵀ; argmax per row
  encodeMatmul(step, {
    x: a.x,
    w: w.wcls,
    y: a.logits,
    rows: n.numRows,
    inDim: dim,
    outDim: c.vocabSize,
    norm: { weight: w.rmsFinal, eps: c.normEps },
    rowIds: a.logitRows,
    strategy: strategy(batchInvariant, dim),
  });
  encodeArgmax(step, { logits: a.logits, out: a.argmax, numRows: n.numRows, vocabSize: c.vocabSize });
  return true;
}
