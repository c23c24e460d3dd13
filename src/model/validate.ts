import { ModelFormatError, type ModelConfig } from './types.ts';

/** Limits far above any Llama-family checkpoint that fits a browser, far below what breaks the readers. */
const maxDim = 65536;
const maxLayers = 1024;
const maxVocab = 1 << 21;
const maxSeqLen = 1 << 20;

function checkRange(label: string, name: string, value: number, max: number): void {
  if (!Number.isInteger(value) || value <= 0 || value > max) {
    throw new ModelFormatError(`${label}: ${name} is ${value}, expected an integer between 1 and ${max}`);
  }
}

/** Rejects configurations no forward pass can run: zero or huge dimensions, heads that don't divide. */
export function validateConfig(c: ModelConfig, label: string): void {
  checkRange(label, 'dim', c.dim, maxDim);
  checkRange(label, 'hidden_dim', c.hiddenDim, maxDim * 8);
  checkRange(label, 'n_layers', c.numLayers, maxLayers);
  checkRange(label, 'n_heads', c.numHeads, c.dim);
  checkRange(label, 'n_kv_heads', c.numKvHeads, c.numHeads);
  checkRange(label, 'vocab_size', c.vocabSize, maxVocab);
  checkRange(label, 'seq_len', c.seqLen, maxSeqLen);
  if (c.dim % c.numHeads !== 0) {
    throw new ModelFormatError(`${label}: dim ${c.dim} is not divisible by n_heads ${c.numHeads}`);
  }
  if ((c.dim / c.numHeads) % 2 !== 0) {
    throw new ModelFormatError(`${label}: head size ${c.dim / c.numHeads} is odd; RoPE needs pairs`);
  }
  if (c.numHeads % c.numKvHeads !== 0) {
    throw new ModelFormatError(`${label}: n_heads ${c.numHeads} is not a multiple of n_kv_heads ${c.numKvHeads}`);
  }
  if (!(c.normEps > 0 && c.normEps < 1)) {
    throw new ModelFormatError(`${label}: RMSNorm epsilon ${c.normEps} is out of range`);
  }
  if (!(c.ropeTheta > 1 && Number.isFinite(c.ropeTheta))) {
    throw new ModelFormatError(`${label}: RoPE base ${c.ropeTheta} is out of range`);
  }
}

/** Number of float32 weights a configuration needs (the classifier counted only when separate). */
export function numWeightFloats(c: ModelConfig): number {
  const headSize = c.dim / c.numHeads;
  const kvDim = headSize * c.numKvHeads;
  const perLayer = 2 * c.dim + c.dim * c.dim * 2 + kvDim * c.dim * 2 + c.hiddenDim * c.dim * 3;
  return c.vocabSize * c.dim * (c.sharedClassifier ? 1 : 2) + c.numLayers * perLayer + c.dim;
}

/**
 * Refuses a tensor holding NaN or infinity: a trained model has none, a corrupt file may.
 * `where(i)` names element i for the message (tensor, layer, byte).
 */
export function checkFinite(values: Float32Array, label: string, where: (index: number) => string): void {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  for (let i = 0; i < bits.length; i++) {
    if ((bits[i] & 0x7f800000) === 0x7f800000) {
      throw new ModelFormatError(`${label}: ${where(i)} is ${values[i]}; the file is corrupt`);
    }
  }
}
