/** The page's handle on the engine worker (comlink). */
import * as Comlink from 'comlink';
import type { EngineWorkerApi } from '../../workers/engine.worker.ts';

export type EngineClient = Comlink.Remote<EngineWorkerApi>;

export function startEngineWorker(): { client: EngineClient; worker: Worker } {
  const worker = new Worker(new URL('../../workers/engine.worker.ts', import.meta.url), { type: 'module', name: 'servelab-engine' });
  return { client: Comlink.wrap<EngineWorkerApi>(worker), worker };
}

export const builtinModel = {
  modelUrl: `${import.meta.env.BASE_URL}models/stories260K.bin`,
  tokenizerUrl: `${import.meta.env.BASE_URL}models/tok512.bin`,
  name: 'stories260K',
};
