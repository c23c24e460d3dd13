/**
 * The engine's Web Worker: thin. It builds what the page asks for from src/ and exposes it with
 * comlink; the main thread never blocks on the model or the GPU.
 */
import * as Comlink from 'comlink';
import { probeAdapter, type AdapterProbe } from '../src/gpu/adapter.ts';
import { fetchBytes, type FetchProgress } from '../src/model/fetch.ts';
import { loadModel, type LoadedModel } from '../src/model/load.ts';
import { summarizeModel, type ModelSummary } from '../src/model/summary.ts';

export interface ModelSource {
  modelUrl: string;
  /** Needed for llama2.c checkpoints; GGUF files carry their tokenizer. */
  tokenizerUrl?: string;
  name: string;
}

let loaded: LoadedModel | null = null;

const api = {
  async probe(): Promise<AdapterProbe> {
    return probeAdapter((self.navigator as Navigator & { gpu?: GPU }).gpu);
  },

  async loadModel(source: ModelSource, onProgress?: (p: FetchProgress) => void): Promise<ModelSummary> {
    const modelBytes = await fetchBytes(source.modelUrl, onProgress);
    const tokenizerBytes = source.tokenizerUrl ? await fetchBytes(source.tokenizerUrl) : undefined;
    // Parse before replacing: a bad file leaves the previous model loaded.
    const next = loadModel(modelBytes, source.name, tokenizerBytes);
    loaded = next;
    return summarizeModel(next.model);
  },

  currentModel(): ModelSummary | null {
    return loaded ? summarizeModel(loaded.model) : null;
  },
};

export type EngineWorkerApi = typeof api;
Comlink.expose(api);
