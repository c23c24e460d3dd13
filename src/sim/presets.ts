/**
 * Model and hardware presets for the simulated executor. Model shapes are the published
 * configurations; hardware figures are vendor peak numbers (dense fp16/bf16, no sparsity).
 */

export interface ModelSpec {
  name: string;
  numLayers: number;
  hiddenSize: number;
  numHeads: number;
  /** Key/value heads: fewer than numHeads means grouped-query attention. */
  numKvHeads: number;
  headDim: number;
  intermediateSize: number;
  vocabSize: number;
  maxModelLen: number;
  /** Classifier shares the embedding matrix. */
  tiedEmbeddings: boolean;
}

export interface HardwareSpec {
  name: string;
  /** Peak dense fp16/bf16 tensor throughput per device. */
  peakFlopsPerS: number;
  memoryBandwidthBytesPerS: number;
  memoryBytes: number;
  /** Device-to-device bandwidth per direction (NVLink, or PCIe when there is none). */
  interconnectBytesPerS: number;
  /** Host link for swapping KV blocks to CPU memory. */
  hostLinkBytesPerS: number;
  /** Fractions of peak a well-tuned kernel reaches (model FLOPs utilisation, bandwidth). */
  computeEfficiency: number;
  bandwidthEfficiency: number;
  /** Fixed cost per engine step (launches, scheduling, sampling), ms. */
  stepOverheadMs: number;
  /** Latency of one collective (all-reduce or send), ms. */
  collectiveLatencyMs: number;
}

function llama(name: string, L: number, d: number, heads: number, kvHeads: number, ffn: number, vocab: number, ctx: number): ModelSpec {
  return { name, numLayers: L, hiddenSize: d, numHeads: heads, numKvHeads: kvHeads, headDim: d / heads, intermediateSize: ffn, vocabSize: vocab, maxModelLen: ctx, tiedEmbeddings: false };
}

export const MODEL_PRESETS: Record<string, ModelSpec> = {
  'llama-2-7b': llama('Llama-2 7B', 32, 4096, 32, 32, 11008, 32000, 4096),
  'llama-2-13b': llama('Llama-2 13B', 40, 5120, 40, 40, 13824, 32000, 4096),
  'llama-2-70b': llama('Llama-2 70B', 80, 8192, 64, 8, 28672, 32000, 4096),
  'llama-3-8b': llama('Llama-3 8B', 32, 4096, 32, 8, 14336, 128256, 8192),
  'llama-3-70b': llama('Llama-3 70B', 80, 8192, 64, 8, 28672, 128256, 8192),
  stories15M: { ...llama('stories15M', 6, 288, 6, 6, 768, 32000, 256), tiedEmbeddings: true },
  stories110M: { ...llama('stories110M', 12, 768, 12, 12, 2048, 32000, 1024), tiedEmbeddings: true },
};

const GB = 1e9;
const TB = 1e12;
const GiB = 1024 ** 3;

export const HARDWARE_PRESETS: Record<string, HardwareSpec> = {
  'h100-sxm': {
    name: 'H100 SXM',
    peakFlopsPerS: 989 * TB,
    memoryBandwidthBytesPerS: 3.35 * TB,
    memoryBytes: 80 * GiB,
    interconnectBytesPerS: 450 * GB,
    hostLinkBytesPerS: 64 * GB,
    computeEfficiency: 0.6,
    bandwidthEfficiency: 0.8,
    stepOverheadMs: 2,
    collectiveLatencyMs: 0.01,
  },
  'a100-80g': {
    name: 'A100 80GB SXM',
    peakFlopsPerS: 312 * TB,
    memoryBandwidthBytesPerS: 2.039 * TB,
    memoryBytes: 80 * GiB,
    interconnectBytesPerS: 300 * GB,
    hostLinkBytesPerS: 32 * GB,
    computeEfficiency: 0.6,
    bandwidthEfficiency: 0.8,
    stepOverheadMs: 2.5,
    collectiveLatencyMs: 0.015,
  },
  l4: {
    name: 'L4',
    peakFlopsPerS: 121 * TB,
    memoryBandwidthBytesPerS: 300 * GB,
    memoryBytes: 24 * GiB,
    interconnectBytesPerS: 32 * GB,
    hostLinkBytesPerS: 32 * GB,
    computeEfficiency: 0.5,
    bandwidthEfficiency: 0.8,
    stepOverheadMs: 3,
    collectiveLatencyMs: 0.03,
  },
  'rtx-4090': {
    name: 'RTX 4090',
    peakFlopsPerS: 165 * TB,
    memoryBandwidthBytesPerS: 1008 * GB,
    memoryBytes: 24 * GiB,
    interconnectBytesPerS: 32 * GB,
    hostLinkBytesPerS: 32 * GB,
    computeEfficiency: 0.5,
    bandwidthEfficiency: 0.8,
    stepOverheadMs: 2.5,
    collectiveLatencyMs: 0.03,
  },
  'apple-m2-max': {
    name: 'Apple M2 Max laptop (38-core GPU)',
    peakFlopsPerS: 13.6 * TB,
    memoryBandwidthBytesPerS: 400 * GB,
    memoryBytes: 64 * GiB,
    interconnectBytesPerS: 400 * GB,
    // Unified memory: "swapping" to CPU memory is a copy within the same DRAM.
    hostLinkBytesPerS: 200 * GB,
    computeEfficiency: 0.4,
    bandwidthEfficiency: 0.7,
    stepOverheadMs: 4,
    collectiveLatencyMs: 0.05,
  },
};
