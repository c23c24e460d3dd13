import { numWeightFloats } from './validate.ts';
import { modelWeightBytes, modelWeightType, type WeightType } from './quant.ts';
import type { Model, ModelConfig } from './types.ts';

/** What the page shows about a loaded model (plain data; crosses the worker boundary). */
export interface ModelSummary {
  name: string;
  format: 'llama2c' | 'gguf';
  config: ModelConfig;
  numParams: number;
  /** The weights as the executor holds them (quantized matrices as their blocks). */
  weightBytes: number;
  /** How the matrices are stored: f32, Q8_0 or Q4_0 blocks (some may stay f32: see quant.ts), or mixed (a file's choice). */
  weights: WeightType | 'mixed';
}

export function summarizeModel(model: Model): ModelSummary {
  const numParams = numWeightFloats(model.config);
  return {
    name: model.source.name,
    format: model.source.format,
    config: { ...model.config },
    numParams,
    weightBytes: modelWeightBytes(model),
    weights: modelWeightType(model),
  };
}
