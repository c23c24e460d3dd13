import { numWeightFloats } from './validate.ts';
import type { Model, ModelConfig } from './types.ts';

/** What the page shows about a loaded model (plain data; crosses the worker boundary). */
export interface ModelSummary {
  name: string;
  format: 'llama2c' | 'gguf';
  config: ModelConfig;
  numParams: number;
  weightBytes: number;
}

export function summarizeModel(model: Model): ModelSummary {
  const numParams = numWeightFloats(model.config);
  return { name: model.source.name, format: model.source.format, config: { ...model.config }, numParams, weightBytes: numParams * 4 };
}
