/**
 * Reader for llama2.c checkpoints (the legacy "version 0" layout that run.c reads):
 * 7 little-endian int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len),
 * then float32 tensors in llama2.c's export order. A negative vocab_size means an untied
 * classifier follows the RoPE tables at the end.
 */
import { ByteReader } from './bytes.ts';
import { ModelFormatError, type LayerWeights, type Model, type ModelConfig } from './types.ts';
import { numWeightFloats, validateConfig } from './validate.ts';

const headerBytes = 7 * 4;
/** The magic of llama2.c's newer export versions ("ak42"). */
const exportMagic = 0x616b3432;

export function readLlama2cCheckpoint(bytes: Uint8Array, name = 'checkpoint'): Model {
  const label = `llama2.c checkpoint ${name}`;
  if (bytes.byteLength < headerBytes) {
    throw new ModelFormatError(`${label} is truncated: ${bytes.byteLength} bytes, the header alone needs ${headerBytes}`);
  }
  const r = new ByteReader(bytes, label);
  const first = r.i32('header');
  if (first === exportMagic) {
    throw new ModelFormatError(
      `${label} uses llama2.c's versioned export format ("ak42" magic); only the legacy version-0 layout ` +
        `(export with --version 0) and GGUF are supported`,
    );
  }
  if (bytes[0] === 0x47 && bytes[1] === 0x47 && bytes[2] === 0x55 && bytes[3] === 0x46) {
    throw new ModelFormatError(`${label} is a GGUF file, not a llama2.c checkpoint; open it as GGUF`);
  }
  const dim = first;
  const hiddenDim = r.i32('hidden_dim');
  const numLayers = r.i32('n_layers');
  const numHeads = r.i32('n_heads');
  const numKvHeads = r.i32('n_kv_heads');
  const rawVocab = r.i32('vocab_size');
  const seqLen = r.i32('seq_len');
  const config: ModelConfig = {
    dim,
    hiddenDim,
    numLayers,
    numHeads,
    numKvHeads,
    vocabSize: Math.abs(rawVocab),
    seqLen,
    normEps: Math.fround(1e-5), // run.c adds 1e-5f
    ropeTheta: 10000,
    sharedClassifier: rawVocab > 0,
  };
  validateConfig(config, label);

  const headSize = dim / numHeads;
  const kvDim = headSize * numKvHeads;
  const ropeTableFloats = seqLen * (headSize / 2) * 2;
  const expectedBytes = headerBytes + (numWeightFloats(config) + ropeTableFloats) * 4;
  if (bytes.byteLength < expectedBytes) {
    throw new ModelFormatError(
      `${label} is truncated or its header is wrong: dim ${dim}, hidden ${hiddenDim}, ${numLayers} layers, ` +
        `${numHeads} heads, ${numKvHeads} KV heads, vocab ${config.vocabSize}, seq_len ${seqLen} need ` +
        `${expectedBytes} bytes, the file has ${bytes.byteLength}`,
    );
  }

  const tokenEmbedding = r.f32Array(config.vocabSize * dim, 'token_embedding');
  const stacked = (rows: number, what: string) => {
    const all = r.f32Array(numLayers * rows, what);
    return Array.from({ length: numLayers }, (_, l) => all.subarray(l * rows, (l + 1) * rows));
  };
  const rmsAtt = stacked(dim, 'rms_att_weight');
  const wq = stacked(dim * dim, 'wq');
  const wk = stacked(kvDim * dim, 'wk');
  const wv = stacked(kvDim * dim, 'wv');
  const wo = stacked(dim * dim, 'wo');
  const rmsFfn = stacked(dim, 'rms_ffn_weight');
  const w1 = stacked(hiddenDim * dim, 'w1');
  const w2 = stacked(dim * hiddenDim, 'w2');
  const w3 = stacked(hiddenDim * dim, 'w3');
  const rmsFinal = r.f32Array(dim, 'rms_final_weight');
  r.raw(ropeTableFloats * 4, 'freq_cis tables');
  const wcls = config.sharedClassifier ? tokenEmbedding : r.f32Array(config.vocabSize * dim, 'wcls');

  const layers: LayerWeights[] = Array.from({ length: numLayers }, (_, l) => ({
    rmsAtt: rmsAtt[l],
    wq: wq[l],
    wk: wk[l],
    wv: wv[l],
    wo: wo[l],
    rmsFfn: rmsFfn[l],
    w1: w1[l],
    w2: w2[l],
    w3: w3[l],
  }));
  return { config, weights: { tokenEmbedding, layers, rmsFinal, wcls }, source: { name, format: 'llama2c' } };
}
