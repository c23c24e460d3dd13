/**
 * Roofline cost model of one engine step: time = max(FLOPs / achievable compute, bytes /
 * achievable bandwidth) + collectives + fixed overhead. Bytes moved are the weights (read once
 * per step, or once per micro-batch under pipeline parallelism), the K/V each sequence reads
 * (its whole context) and the K/V the step writes. Tensor parallelism splits FLOPs and bytes
 * over tp devices and adds two ring all-reduces per layer; pipeline parallelism splits layers
 * into stages and runs micro-batches through them, paying (pp - 1) stage times of bubble.
 */
import type { HardwareSpec, ModelSpec } from './presets.ts';
import { kvBytesPerToken, numParams } from './kvCalculator.ts';

export interface ParallelConfig {
  tensorParallel: number;
  pipelineParallel: number;
  /** Micro-batches per step under pipeline parallelism (default: pp, capped by the batch). */
  numMicroBatches?: number;
}

/** What a step computes, independent of who scheduled it. */
export interface StepShape {
  /** Every token the step computes, padding included. */
  numTokens: number;
  /** Rows that go through the classifier. */
  numLogitRows: number;
  /** Per sequence: query tokens this step and the position of the first one. */
  seqs: { numQueryTokens: number; startPosition: number }[];
  numCopiedBlocks: number;
  numSwappedBlocks: number;
  blockSize: number;
}

export interface StepCost {
  totalMs: number;
  computeMs: number;
  memoryMs: number;
  commMs: number;
  bubbleMs: number;
  swapMs: number;
  overheadMs: number;
  flops: number;
  bytes: number;
  bound: 'compute' | 'memory';
}

export interface CostOptions {
  bytesPerParam?: number;
  bytesPerKvElement?: number;
}

export function stepCost(shape: StepShape, model: ModelSpec, hw: HardwareSpec, parallel: ParallelConfig, o: CostOptions = {}): StepCost {
  const tp = Math.max(1, parallel.tensorParallel);
  const pp = Math.max(1, parallel.pipelineParallel);
  const bytesPerParam = o.bytesPerParam ?? 2;
  const kvPerToken = kvBytesPerToken(model, o.bytesPerKvElement ?? 2);
  const d = model.hiddenSize;
  const embeddingParams = model.vocabSize * d;
  const classifierParams = model.vocabSize * d;
  const P = numParams(model);
  // Parameters every token multiplies through (all but the embedding lookup and classifier).
  const bodyParams = P - embeddingParams * (model.tiedEmbeddings ? 1 : 2) - d;

  let attnFlops = 0;
  let kvReadTokens = 0;
  for (const s of shape.seqs) {
    const q = s.numQueryTokens;
    // QK^T and PV over a causal context: query k attends to startPosition + k + 1 positions.
    attnFlops += 4 * model.numLayers * model.numHeads * model.headDim * q * (s.startPosition + (q + 1) / 2);
    kvReadTokens += s.startPosition + q;
  }
  const flops = 2 * bodyParams * shape.numTokens + 2 * classifierParams * shape.numLogitRows + attnFlops;
  const weightBytes = (bodyParams + classifierParams) * bytesPerParam;
  const kvBytes = (kvReadTokens + shape.numTokens) * kvPerToken;

  const numMicro = pp === 1 ? 1 : Math.max(1, Math.min(parallel.numMicroBatches ?? pp, shape.seqs.length));
  const devices = tp * pp;
  const computeRate = hw.peakFlopsPerS * hw.computeEfficiency;
  const bandwidth = hw.memoryBandwidthBytesPerS * hw.bandwidthEfficiency;
  // One stage, one micro-batch, one device.
  const stageComputeMs = (flops / (devices * numMicro) / computeRate) * 1000;
  const stageMemoryMs = ((weightBytes / devices + kvBytes / (devices * numMicro)) / bandwidth) * 1000;
  let stageCommMs = 0;
  if (tp > 1) {
    // Two all-reduces per layer of the micro-batch's activations [tokens, d] in fp16 (ring).
    const bytes = (shape.numTokens / numMicro) * d * 2;
    const perAllReduceMs = ((2 * (tp - 1)) / tp) * (bytes / hw.interconnectBytesPerS) * 1000 + hw.collectiveLatencyMs;
    stageCommMs += (2 * model.numLayers * perAllReduceMs) / pp;
  }
  if (pp > 1) {
    // Activations to the next stage.
    stageCommMs += (((shape.numTokens / numMicro) * d * 2) / hw.interconnectBytesPerS) * 1000 + hw.collectiveLatencyMs;
  }
  const stageMs = Math.max(stageComputeMs, stageMemoryMs) + stageCommMs;
  const pipelineMs = (numMicro + pp - 1) * stageMs;
  const blockBytesPerDevice = (shape.blockSize * kvPerToken) / devices;
  const swapMs = ((shape.numSwappedBlocks * blockBytesPerDevice) / hw.hostLinkBytesPerS) * 1000;
  const copyMs = ((2 * shape.numCopiedBlocks * blockBytesPerDevice) / bandwidth) * 1000;
  const overheadMs = hw.stepOverheadMs;
  return {
    totalMs: pipelineMs + swapMs + copyMs + overheadMs,
    computeMs: numMicro * stageComputeMs,
    memoryMs: numMicro * stageMemoryMs,
    commMs: (numMicro + pp - 1) * stageCommMs,
    bubbleMs: (pp - 1) * stageMs,
    swapMs: swapMs + copyMs,
    overheadMs,
    flops,
    bytes: weightBytes * numMicro + kvBytes,
    bound: stageComputeMs >= stageMemoryMs ? 'compute' : 'memory',
  };
}
