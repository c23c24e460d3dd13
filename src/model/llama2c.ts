/**
 * Reader for llama2.c checkpoints (the legacy "version 0" layout that run.c reads):
 * 7 little-endian int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len),
 * then float32 tensors in llama2.c's export order. A negative vocab_size means an untied
 * classifier follows the RoPE tables at the end.
 */
import { ByteReader } from './bytes.ts';
import { ModelFormatError, type LayerWeights, type Model, type ModelConfig } from './types.ts';
import { checkFinite, validateConfig } from './validate.ts';

const headerBytes = 7 * 4;
/** The magic of llama2.c's newer export versions ("ak42"). */
const exportMagic = 0x616b3432;

/**
 * The exact size of a legacy llama2.c checkpoint with this configuration: the header, the weights
 * (the classifier only when separate) and the two RoPE tables run.c skips
 * (freq_cis_real and freq_cis_imag, [seq_len, head_size / 2] each). In BigInt, so no header can overflow it.
 */
export function llama2cFileBytes(c: ModelConfig): bigint {
  const B = BigInt;
  const headSize = B(c.dim) / B(c.numHeads);
  const kvDim = headSize * B(c.numKvHeads);
  const dim = B(c.dim);
  const perLayer = 2n * dim + 2n * dim * dim + 2n * kvDim * dim + 3n * B(c.hiddenDim) * dim;
  const classifiers = c.sharedClassifier ? 1n : 2n;
  const weights = classifiers * B(c.vocabSize) * dim + B(c.numLayers) * perLayer + dim;
  const ropeTables = 2n * B(c.seqLen) * (headSize / 2n);
  return B(headerBytes) + 4n * (weights + ropeTables);
}

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

  // The format has no checksum: the file must be exactly as long as its header says, else a header
  // changed in one field (5 layers read as 4) would load a model made of misplaced weights.
  const expectedBytes = llama2cFileBytes(config);
  if (BigInt(bytes.byteLength) !== expectedBytes) {
    const n = (v: number | bigint) => v.toLocaleString('en-US');
    const classifier = config.sharedClassifier ? 'shared classifier' : 'separate classifier (negative vocab_size)';
    const verdict =
      BigInt(bytes.byteLength) < expectedBytes
        ? 'the file is truncated or its header is wrong'
        : 'its header is wrong (or the file is not a llama2.c checkpoint)';
    throw new ModelFormatError(
      `${label}: the header (dim ${dim}, hidden_dim ${hiddenDim}, ${numLayers} layers, ${numHeads} heads, ` +
        `${numKvHeads} KV heads, vocab ${config.vocabSize}, seq_len ${seqLen}) implies ${n(expectedBytes)} bytes ` +
        `(${classifier}) but the file has ${n(bytes.byteLength)} bytes; ${verdict}`,
    );
  }

  const headSize = dim / numHeads;
  const kvDim = headSize * numKvHeads;
  const ropeTableFloats = seqLen * (headSize / 2) * 2;
  /** Reads `count` floats and refuses NaN or infinity (a trained model has none; a corrupt file may). */
  const floats = (count: number, what: string, rowsPerLayer = 0) => {
    const at = r.offset;
    const values = r.f32Array(count, what);
    checkFinite(values, label, (i) => {
      const where = rowsPerLayer > 0 ? `${what} of layer ${Math.floor(i / rowsPerLayer)}` : what;
      return `${where} (byte ${at + i * 4})`;
    });
    return values;
  };
  const tokenEmbedding = floats(config.vocabSize * dim, 'token_embedding');
  const stacked = (rows: number, what: string) => {
    const all = floats(numLayers * rows, what, rows);
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
  const rmsFinal = floats(dim, 'rms_final_weight');
  r.raw(ropeTableFloats * 4, 'freq_cis tables'); // unused: run.c computes RoPE instead
  const wcls = config.sharedClassifier ? tokenEmbedding : floats(config.vocabSize * dim, 'wcls');
  if (r.remaining !== 0) throw new ModelFormatError(`${label}: ${r.remaining} bytes were left unread`);

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
