/**
 * Before loading a model: how much GPU memory it needs, and whether the adapter's limits allow it.
 * Every tensor is its own buffer and the KV pool is split per layer, so the binding that matters
 * is the largest single buffer (usually the embedding or classifier), not the total.
 */
import { bytesPerWeight, QK, type WeightType } from './quant.ts';
import { kvDim as kvDimOf, type ModelConfig } from './types.ts';
import { numWeightFloats } from './validate.ts';

export interface MemoryEstimate {
  weightBytes: number;
  /** K and V for every layer of the whole pool. */
  kvCacheBytes: number;
  /** Per-step activations at the largest batch. */
  activationBytes: number;
  totalBytes: number;
  /** The largest single GPU buffer (a tensor, or one layer's K or V pool). */
  largestBufferBytes: number;
  largestBufferName: string;
  /** KV bytes per token across all layers (K and V): 2 * layers * kvDim * 4. */
  kvBytesPerToken: number;
}

export interface KvPlan {
  numBlocks: number;
  blockSize: number;
  /** Most tokens in one step (the scheduler's token budget). */
  maxBatchTokens: number;
}

/**
 * `weights`: how the matrices are stored on the GPU (f32, or quantized on load to q8_0 / q4_0:
 * the matrices whose rows are a multiple of 32 take 34 or 18 bytes per 32 weights).
 */
export function estimateGpuMemory(c: ModelConfig, kv: KvPlan, weights: WeightType = 'f32'): MemoryEstimate {
  const f32 = 4;
  const kvDim = kvDimOf(c);
  const weightBytes = weights === 'f32' ? numWeightFloats(c) * f32 : weightBytesFor(c, weights);
  // Bytes of one rows x cols matrix as stored (quantized only when a row is whole blocks).
  const matrix = (rows: number, cols: number) => rows * cols * (weights !== 'f32' && cols % QK === 0 ? bytesPerWeight(weights) : f32);
  const kvBytesPerToken = 2 * c.numLayers * kvDim * f32;
  const numSlots = kv.numBlocks * kv.blockSize;
  const kvCacheBytes = numSlots * kvBytesPerToken;
  const t = kv.maxBatchTokens;
  // Residual, normed input, q, k, v, attention out, two FFN halves, logits rows (at most one per token).
  const activationBytes = t * (4 * c.dim + 2 * kvDim + 2 * c.hiddenDim + c.vocabSize) * f32;
  const candidates: [string, number][] = [
    ['token embedding', matrix(c.vocabSize, c.dim)],
    ['FFN matrix', Math.max(matrix(c.hiddenDim, c.dim), matrix(c.dim, c.hiddenDim))],
    ['attention matrix', matrix(c.dim, c.dim)],
    ['one layer of the KV pool (K or V)', numSlots * kvDim * f32],
    ['logits of one step', t * c.vocabSize * f32],
  ];
  const [largestBufferName, largestBufferBytes] = candidates.reduce((a, b) => (b[1] > a[1] ? b : a));
  return {
    weightBytes,
    kvCacheBytes,
    activationBytes,
    totalBytes: weightBytes + kvCacheBytes + activationBytes,
    largestBufferBytes,
    largestBufferName,
    kvBytesPerToken,
  };
}

export interface BufferLimits {
  maxBufferSize: number;
  maxStorageBufferBindingSize: number;
}

/** Problems that stop this model from running on an adapter with these limits (empty: it fits). */
export function checkLimits(e: MemoryEstimate, limits: BufferLimits, memoryBudgetBytes?: number): string[] {
  const problems: string[] = [];
  const bindingLimit = Math.min(limits.maxBufferSize, limits.maxStorageBufferBindingSize);
  if (e.largestBufferBytes > bindingLimit) {
    problems.push(
      `its ${e.largestBufferName} needs a ${mib(e.largestBufferBytes)} buffer, but this GPU binds at most ${mib(bindingLimit)}`,
    );
  }
  if (memoryBudgetBytes !== undefined && e.totalBytes > memoryBudgetBytes) {
    problems.push(`it needs about ${mib(e.totalBytes)} of GPU memory, more than the ${mib(memoryBudgetBytes)} budget`);
  }
  return problems;
}

const mib = (n: number) => `${(n / 1024 ** 2).toFixed(n < 10 * 1024 ** 2 ? 2 : 0)} MiB`;

/**
 * Bytes of a model's weights stored as `type`, from its shape alone: each matrix whose rows are a
 * multiple of 32 in blocks of that type (34 or 18 bytes per 32 weights), the others and the norms
 * f32, as quantizeModel stores them (equal to modelWeightBytes of the quantized model).
 */
export function weightBytesFor(c: ModelConfig, type: WeightType = 'f32'): number {
  const kvDim = kvDimOf(c);
  const matrix = (rows: number, cols: number) => rows * cols * (cols % QK === 0 ? bytesPerWeight(type) : 4);
  const perLayer = 2 * c.dim * 4 + 2 * matrix(c.dim, c.dim) + 2 * matrix(kvDim, c.dim) + 2 * matrix(c.hiddenDim, c.dim) + matrix(c.dim, c.hiddenDim);
  return matrix(c.vocabSize, c.dim) * (c.sharedClassifier ? 1 : 2) + c.numLayers * perLayer + c.dim * 4;
}

/** One GPU memory budget split between the weights and the KV cache. */
export interface BudgetSplit {
  weightBytes: number;
  /** K and V of every layer for one block of blockSize tokens (f32). */
  kvBytesPerBlock: number;
  /** Whole KV blocks that fit beside the weights (0 when the weights alone exceed the budget). */
  numBlocks: number;
  kvBytes: number;
  /** What is left: less than one block. */
  spareBytes: number;
}

/** How many KV blocks a budget of `budgetBytes` holds beside the weights stored as `type`. */
export function splitBudget(c: ModelConfig, budgetBytes: number, blockSize: number, type: WeightType): BudgetSplit {
  const weightBytes = weightBytesFor(c, type);
  const kvBytesPerBlock = 2 * c.numLayers * kvDimOf(c) * 4 * blockSize;
  const numBlocks = Math.max(0, Math.floor((budgetBytes - weightBytes) / kvBytesPerBlock));
  const kvBytes = numBlocks * kvBytesPerBlock;
  return { weightBytes, kvBytesPerBlock, numBlocks, kvBytes, spareBytes: Math.max(0, budgetBytes - weightBytes - kvBytes) };
}
