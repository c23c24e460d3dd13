/** The page's raw handle on an engine worker (comlink); EngineSupervisor wraps it. */
import * as Comlink from 'comlink';
import type { EngineApi } from '../../workers/protocol.ts';

export type EngineClient = Comlink.Remote<EngineApi>;

let prestarted: Worker | null = null;

/**
 * Starts the first engine worker at once, before the app's own modules run and mount (main.ts
 * imports this first), so the worker fetches its script and brings the GPU device up while the
 * page builds itself. The first startEngineWorker() takes it.
 */
export function prestartEngineWorker(): void {
  prestarted ??= newWorker();
}

function newWorker(): Worker {
  return new Worker(new URL('../../workers/engine.worker.ts', import.meta.url), { type: 'module', name: 'servelab-engine' });
}

export function startEngineWorker(): { client: EngineClient; worker: Worker } {
  const worker = prestarted ?? newWorker();
  prestarted = null;
  return { client: Comlink.wrap<EngineApi>(worker), worker };
}

export const builtinModel = {
  modelUrl: `${import.meta.env.BASE_URL}models/stories260K.bin`,
  tokenizerUrl: `${import.meta.env.BASE_URL}models/tok512.bin`,
  name: 'stories260K',
};
