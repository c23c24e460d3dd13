/** Format sniffing: one entry point for a model file's bytes (and a tokenizer for llama2.c files). */
import { readGgufModel } from './gguf.ts';
import { readLlama2cCheckpoint } from './llama2c.ts';
import { quantizeModel, type WeightType } from './quant.ts';
import { readLlama2cTokenizer, Tokenizer } from './tokenizer.ts';
import { ModelFormatError, type Model } from './types.ts';

export function isGguf(bytes: Uint8Array): boolean {
  return bytes.length >= 4 && bytes[0] === 0x47 && bytes[1] === 0x47 && bytes[2] === 0x55 && bytes[3] === 0x46;
}

export interface LoadedModel {
  model: Model;
  tokenizer: Tokenizer;
}

/** How to load a model: the model options (not engine settings). */
export interface ModelOptions {
  /**
   * Quantize the f32 matrices on load (src/model/quant.ts): 'q8_0' or 'q4_0'; 'f32' or absent
   * keeps the file's weights. A file already quantized loads as it is and refuses another type.
   */
  quantize?: WeightType;
}

/**
 * Reads a model from its bytes: GGUF carries its tokenizer; a llama2.c checkpoint needs the
 * tokenizer file's bytes.
 */
export function loadModel(
  modelBytes: Uint8Array,
  modelName: string,
  tokenizerBytes?: Uint8Array,
  tokenizerName = 'tokenizer',
  options: ModelOptions = {},
): LoadedModel {
  const loaded = readModel(modelBytes, modelName, tokenizerBytes, tokenizerName);
  return { ...loaded, model: applyModelOptions(loaded.model, options) };
}

/** The model as the options ask: quantized on load, or as read. */
export function applyModelOptions(model: Model, options: ModelOptions): Model {
  const type = options.quantize ?? 'f32';
  if (type === 'f32') return model;
  if (model.quantized) {
    throw new ModelFormatError(`${model.source.name} is already quantized; it loads as it is (quantize to ${type} needs an f32 model)`);
  }
  return quantizeModel(model, type);
}

function readModel(modelBytes: Uint8Array, modelName: string, tokenizerBytes: Uint8Array | undefined, tokenizerName: string): LoadedModel {
  if (isGguf(modelBytes)) {
    const model = readGgufModel(modelBytes, modelName);
    return { model, tokenizer: new Tokenizer(model.vocab!) };
  }
  const model = readLlama2cCheckpoint(modelBytes, modelName);
  if (!tokenizerBytes) {
    throw new ModelFormatError(`${modelName} is a llama2.c checkpoint: it needs a tokenizer file (tok*.bin) beside it`);
  }
  if (isGguf(tokenizerBytes)) {
    throw new ModelFormatError(`${tokenizerName} is a GGUF file, not a llama2.c tokenizer (tok*.bin) for ${modelName}`);
  }
  const vocab = readLlama2cTokenizer(tokenizerBytes, model.config.vocabSize, tokenizerName);
  model.vocab = vocab;
  return { model, tokenizer: new Tokenizer(vocab) };
}
