/**
 * LoRA adapters from disk for the Node CLIs: a PEFT directory (adapter_config.json +
 * adapter_model.safetensors) read with src/model/lora.ts, and the ones shipped in public/adapters/.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LoraAdapter } from '../src/engine/types.ts';
import { readPeftAdapter } from '../src/model/lora.ts';
import type { ModelConfig } from '../src/model/types.ts';

/** public/adapters/ of this repository. */
export const shippedAdaptersDir = resolve(fileURLToPath(new URL('../public/adapters/', import.meta.url)));

/** Reads the PEFT adapter in `dir`, to be called `name`. */
export function readAdapterDir(name: string, dir: string, model: ModelConfig): LoraAdapter {
  const configPath = join(dir, 'adapter_config.json');
  const weightsPath = join(dir, 'adapter_model.safetensors');
  for (const p of [configPath, weightsPath]) if (!existsSync(p)) throw new Error(`LoRA adapter ${name}: ${p} does not exist (a PEFT adapter directory holds adapter_config.json and adapter_model.safetensors)`);
  return readPeftAdapter(name, readFileSync(configPath, 'utf8'), new Uint8Array(readFileSync(weightsPath)), model, weightsPath);
}

/** Every adapter in public/adapters/, by folder name (sorted). */
export function readShippedAdapters(model: ModelConfig): LoraAdapter[] {
  return readdirSync(shippedAdaptersDir, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => d.name)
    .sort()
    .map((name) => readAdapterDir(name, join(shippedAdaptersDir, name), model));
}
