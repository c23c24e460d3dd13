/** The page's raw handle on an engine worker (comlink); EngineSupervisor wraps it. */
import * as Comlink from 'comlink';
import type { FetchProgress } from '../model/fetch.ts';
import type { EngineApi, ModelSummary } from '../../workers/protocol.ts';

export type EngineClient = Comlink.Remote<EngineApi>;

/** The built-in model's load, asked of a worker as it started (see prestartEngineWorker). */
export interface PreloadedModel {
  summary: Promise<ModelSummary>;
  /** Calls `callback` with the download's progress (at once with the latest, if any). */
  onProgress(callback: (p: FetchProgress) => void): void;
}

export interface StartedWorker {
  client: EngineClient;
  worker: Worker;
  /** The built-in model, already being loaded into this worker (the prestarted one only). */
  builtin: PreloadedModel | null;
}

let prestarted: StartedWorker | null = null;

/**
 * Starts the first engine worker at once, before the app's own modules have loaded (main.ts
 * imports boot.ts first), and asks it for the built-in model, so the worker's script, the GPU
 * device, the model download and the kernels' compilation proceed while the page builds itself.
 * The first startEngineWorker() takes it (the supervisor then adopts the load in progress).
 */
export function prestartEngineWorker(): void {
  if (prestarted) return;
  const worker = newWorker();
  const client = Comlink.wrap<EngineApi>(worker);
  let latest: FetchProgress | null = null;
  let listener: ((p: FetchProgress) => void) | null = null;
  const summary = client.loadModel(
    builtinModel,
    Comlink.proxy((p: FetchProgress) => {
      latest = p;
      listener?.(p);
    }),
  );
  summary.catch(() => {}); // the supervisor reports a failure when it adopts the load
  const builtin: PreloadedModel = {
    summary,
    onProgress(callback) {
      listener = callback;
      if (latest) callback(latest);
    },
  };
  prestarted = { client, worker, builtin };
}

function newWorker(): Worker {
  return new Worker(new URL('../../workers/engine.worker.ts', import.meta.url), { type: 'module', name: 'servelab-engine' });
}

export function startEngineWorker(): StartedWorker {
  const started = prestarted;
  prestarted = null;
  if (started) return started;
  const worker = newWorker();
  return { client: Comlink.wrap<EngineApi>(worker), worker, builtin: null };
}

export const builtinModel = {
  modelUrl: `${import.meta.env.BASE_URL}models/stories260K.bin`,
  tokenizerUrl: `${import.meta.env.BASE_URL}models/tok512.bin`,
  name: 'stories260K',
};
