/**
 * KV-cache memory arithmetic. Per token, every layer stores one key and one value vector per KV
 * head: 2 * numLayers * numKvHeads * headDim * bytesPerElement. Grouped-query attention shrinks
 * it by numHeads / numKvHeads: Llama-2 70B (8 KV heads of 64) needs 0.3125 MiB per token in
 * fp16, not the 2.6 MB an all-heads assumption gives.
 */
import type { HardwareSpec, ModelSpec } from './presets.ts';

export function kvBytesPerToken(model: ModelSpec, bytesPerElement = 2): number {
  return 2 * model.numLayers * model.numKvHeads * model.headDim * bytesPerElement;
}

/** Parameters, from the shapes (embeddings, attention, SwiGLU FFN, norms, classifier). */
export function numParams(model: ModelSpec): number {
  const d = model.hiddenSize;
  const kvDim = model.numKvHeads * model.headDim;
  const qDim = model.numHeads * model.headDim;
  const perLayer = d * qDim + 2 * d * kvDim + qDim * d + 3 * d * model.intermediateSize + 2 * d;
  const embeddings = model.vocabSize * d * (model.tiedEmbeddings ? 1 : 2);
  return model.numLayers * perLayer + embeddings + d;
}

export interface KvCapacityOptions {
  bytesPerParam?: number;
  bytesPerKvElement?: number;
  /** Tensor-parallel degree: weights and KV heads are split across this many devices. */
  tensorParallel?: number;
  pipelineParallel?: number;
  /** Fraction of device memory the engine may use (vLLM's gpu_memory_utilization). */
  memoryUtilization?: number;
  /** Activations and workspace reserved per device. */
  activationReserveBytes?: number;
  blockSize?: number;
}

export interface KvCapacity {
  kvBytesPerToken: number;
  weightBytesPerDevice: number;
  kvBytesPerDevice: number;
  /** Tokens the whole deployment can hold in its KV cache. */
  numKvTokens: number;
  numBlocks: number;
  /** Full-context sequences that fit at once. */
  numMaxLenSeqs: number;
  fitsWeights: boolean;
}

export function kvCapacity(model: ModelSpec, hw: HardwareSpec, o: KvCapacityOptions = {}): KvCapacity {
  const tp = o.tensorParallel ?? 1;
  const pp = o.pipelineParallel ?? 1;
  const blockSize = o.blockSize ?? 16;
  const perToken = kvBytesPerToken(model, o.bytesPerKvElement ?? 2);
  const weightBytesPerDevice = (numParams(model) * (o.bytesPerParam ?? 2)) / (tp * pp);
  const usable = hw.memoryBytes * (o.memoryUtilization ?? 0.9) - (o.activationReserveBytes ?? 1e9);
  const kvBytesPerDevice = Math.max(0, usable - weightBytesPerDevice);
  // Each device holds 1/tp of the heads of 1/pp of the layers for every token.
  const numKvTokens = Math.floor((kvBytesPerDevice * tp * pp) / perToken);
  const numBlocks = Math.floor(numKvTokens / blockSize);
  return {
    kvBytesPerToken: perToken,
    weightBytesPerDevice,
    kvBytesPerDevice,
    numKvTokens,
    numBlocks,
    numMaxLenSeqs: Math.floor(numKvTokens / model.maxModelLen),
    fitsWeights: usable > weightBytesPerDevice,
  };
}
