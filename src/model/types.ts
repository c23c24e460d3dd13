import type { QuantizedWeights } from './quant.ts';

/**
 * The in-memory model every reader produces and every executor consumes.
 * Matrices are row-major [out, in]: y[i] = sum_j W[i * in + j] * x[j].
 */
export interface ModelConfig {
  /** Model width (embedding length). */
  dim: number;
  /** FFN inner width. */
  hiddenDim: number;
  numLayers: number;
  numHeads: number;
  /** Key/value heads (grouped-query attention when < numHeads). */
  numKvHeads: number;
  vocabSize: number;
  /** Maximum context length in positions. */
  seqLen: number;
  /** RMSNorm epsilon (1e-5 for llama2.c checkpoints). */
  normEps: number;
  /** RoPE base (10000 for this family). */
  ropeTheta: number;
  /** True when the classifier is the token embedding. */
  sharedClassifier: boolean;
}

export interface LayerWeights {
  rmsAtt: Float32Array; // [dim]
  wq: Float32Array; // [dim, dim]
  wk: Float32Array; // [kvDim, dim]
  wv: Float32Array; // [kvDim, dim]
  wo: Float32Array; // [dim, dim]
  rmsFfn: Float32Array; // [dim]
  w1: Float32Array; // [hiddenDim, dim] (gate)
  w2: Float32Array; // [dim, hiddenDim] (down)
  w3: Float32Array; // [hiddenDim, dim] (up)
}

export interface ModelWeights {
  tokenEmbedding: Float32Array; // [vocab, dim]
  layers: LayerWeights[];
  rmsFinal: Float32Array; // [dim]
  /** The classifier; the same array as tokenEmbedding when shared. */
  wcls: Float32Array; // [vocab, dim]
}

export interface Vocabulary {
  /** Token pieces as raw bytes (SentencePiece "▁" already turned into a space). */
  pieces: Uint8Array[];
  scores: Float32Array; // [vocab]
  maxTokenLength: number;
  bosId: number;
  eosId: number;
}

export interface Model {
  config: ModelConfig;
  weights: ModelWeights;
  /** Present when the file carried one (GGUF); llama2.c .bin needs a separate tokenizer file. */
  vocab?: Vocabulary;
  /** Where it came from, for display ("stories260K.bin", "llama2.c", ...). */
  source: { name: string; format: 'llama2c' | 'gguf' };
  /**
   * Matrices stored in ggml blocks (Q8_0 / Q4_0: src/model/quant.ts), read from a GGUF file or
   * made by quantizeModel. When present, `weights` holds the dequantized values of those
   * matrices, bit for bit, so every reader of `weights` sees the numbers the kernels use.
   */
  quantized?: QuantizedWeights;
}

export const headSize = (c: ModelConfig): number => c.dim / c.numHeads;
export const kvDim = (c: ModelConfig): number => (c.dim * c.numKvHeads) / c.numHeads;

/** Most bytes a KV pool kept in host memory may take (the CPU reference's pools, the GPU engine's swap space). */
export const MAX_HOST_KV_BYTES = 2 ** 30;

/**
 * Throws a RangeError naming the sizes when a host-memory KV pool of `numBlocks` blocks would
 * exceed MAX_HOST_KV_BYTES (a typo such as 1e9 blocks must not try to allocate terabytes).
 */
export function checkHostKvPool(c: ModelConfig, blockSize: number, numBlocks: number, what: string): void {
  const bytes = 2 * c.numLayers * numBlocks * blockSize * kvDim(c) * 4; // K and V, f32
  if (bytes > MAX_HOST_KV_BYTES) {
    const gib = (x: number) => `${(x / 2 ** 30).toFixed(x < 10 * 2 ** 30 ? 2 : 0)} GiB`;
    throw new RangeError(`KV geometry: ${numBlocks} ${what} blocks of ${blockSize} tokens need ${gib(bytes)} of host memory (limit ${gib(MAX_HOST_KV_BYTES)}); use fewer blocks`);
  }
}

/** A clear, user-facing error about a model or tokenizer file. */
export class ModelFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ModelFormatError';
  }
}
