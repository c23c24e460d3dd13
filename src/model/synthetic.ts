/**
 * Models with real shapes and seeded random weights, for speed measurements only (their text is
 * noise). Shapes of the llama2.c tinyllamas family, labelled "synthetic" wherever they are shown.
 */
import type { LayerWeights, Model, ModelConfig } from './types.ts';
import { kvDim as kvDimOf } from './types.ts';
import { validateConfig } from './validate.ts';
import { Rng } from '../engine/workload.ts';

const base = { normEps: Math.fround(1e-5), ropeTheta: 10000, sharedClassifier: true };

export const tinyllamaShapes: Record<string, ModelConfig> = {
  stories15M: { dim: 288, hiddenDim: 768, numLayers: 6, numHeads: 6, numKvHeads: 6, vocabSize: 32000, seqLen: 256, ...base },
  stories42M: { dim: 512, hiddenDim: 1376, numLayers: 8, numHeads: 8, numKvHeads: 8, vocabSize: 32000, seqLen: 1024, ...base },
  stories110M: { dim: 768, hiddenDim: 2048, numLayers: 12, numHeads: 12, numKvHeads: 12, vocabSize: 32000, seqLen: 1024, ...base },
};

export function syntheticModel(config: ModelConfig, seed: number, name = 'synthetic'): Model {
  validateConfig(config, name);
  const rng = new Rng(seed);
  const rand = () => rng.next();
  // Scaled like a trained model's weights so activations stay in a sane range.
  const matrix = (rows: number, cols: number) => {
    const a = new Float32Array(rows * cols);
    const scale = 1 / Math.sqrt(cols);
    for (let i = 0; i < a.length; i++) a[i] = (rand() * 2 - 1) * scale;
    return a;
  };
  const ones = (n: number) => new Float32Array(n).fill(1);
  const { dim, hiddenDim, numLayers, vocabSize } = config;
  const kvDim = kvDimOf(config);
  const tokenEmbedding = matrix(vocabSize, dim);
  const layers: LayerWeights[] = Array.from({ length: numLayers }, () => ({
    rmsAtt: ones(dim),
    wq: matrix(dim, dim),
    wk: matrix(kvDim, dim),
    wv: matrix(kvDim, dim),
    wo: matrix(dim, dim),
    rmsFfn: ones(dim),
    w1: matrix(hiddenDim, dim),
    w2: matrix(dim, hiddenDim),
    w3: matrix(hiddenDim, dim),
  }));
  const wcls = config.sharedClassifier ? tokenEmbedding : matrix(vocabSize, dim);
  return { config: { ...config }, weights: { tokenEmbedding, layers, rmsFinal: ones(dim), wcls }, source: { name: `${name} (synthetic weights)`, format: 'llama2c' } };
}
