/**
 * A model's shape from the start of its file, without reading the weights: enough to estimate
 * the GPU memory it needs before it is loaded. A llama2.c checkpoint says it in its first 28
 * bytes; a GGUF file in its metadata (which can hold a whole vocabulary, so it may need more).
 */
import { parseGguf } from './gguf.ts';
import { isGguf } from './load.ts';
import { ModelFormatError, type ModelConfig } from './types.ts';
import { validateConfig } from './validate.ts';

export const LLAMA2C_HEADER_BYTES = 28;

export type Peek = { ok: true; config: ModelConfig; format: 'llama2c' | 'gguf' } | { ok: false; needMoreBytes: boolean; reason: string };

export function peekModelConfig(head: Uint8Array, name = 'model'): Peek {
  try {
    if (isGguf(head)) return { ok: true, config: ggufConfig(head, name), format: 'gguf' };
    if (head.byteLength < LLAMA2C_HEADER_BYTES) return { ok: false, needMoreBytes: true, reason: `${name}: ${head.byteLength} bytes are too few for a llama2.c header` };
    const v = new DataView(head.buffer, head.byteOffset, LLAMA2C_HEADER_BYTES);
    const i = (k: number) => v.getInt32(k * 4, true);
    const config: ModelConfig = {
      dim: i(0),
      hiddenDim: i(1),
      numLayers: i(2),
      numHeads: i(3),
      numKvHeads: i(4),
      vocabSize: Math.abs(i(5)),
      seqLen: i(6),
      normEps: Math.fround(1e-5),
      ropeTheta: 10000,
      sharedClassifier: i(5) > 0,
    };
    validateConfig(config, `llama2.c checkpoint ${name}`);
    return { ok: true, config, format: 'llama2c' };
  } catch (e) {
    const truncated = e instanceof ModelFormatError && /truncated|needs \d+ more|past the end|beyond/i.test(e.message);
    return { ok: false, needMoreBytes: truncated && isGguf(head), reason: (e as Error).message };
  }
}

function ggufConfig(head: Uint8Array, name: string): ModelConfig {
  const file = parseGguf(head, name);
  const num = (key: string, fallback?: number): number => {
    const v = file.metadata.get(key);
    if (typeof v === 'number') return v;
    if (typeof v === 'bigint') return Number(v);
    if (fallback !== undefined) return fallback;
    throw new ModelFormatError(`GGUF file ${name}: metadata ${key} is missing`);
  };
  const embd = file.tensors.get('token_embd.weight');
  if (!embd) throw new ModelFormatError(`GGUF file ${name}: tensor token_embd.weight is missing`);
  const numHeads = num('llama.attention.head_count');
  const config: ModelConfig = {
    dim: num('llama.embedding_length'),
    hiddenDim: num('llama.feed_forward_length'),
    numLayers: num('llama.block_count'),
    numHeads,
    numKvHeads: num('llama.attention.head_count_kv', numHeads),
    vocabSize: embd.dims[1] ?? 0,
    seqLen: num('llama.context_length'),
    normEps: Math.fround(num('llama.attention.layer_norm_rms_epsilon', 1e-5)),
    ropeTheta: num('llama.rope.freq_base', 10000),
    sharedClassifier: !file.tensors.has('output.weight'),
  };
  validateConfig(config, `GGUF file ${name}`);
  return config;
}
