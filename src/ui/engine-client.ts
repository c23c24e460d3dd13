/** The page's raw handle on an engine worker (comlink); EngineSupervisor wraps it. */
import * as Comlink from 'comlink';
import type { EngineApi } from '../../workers/protocol.ts';

export type EngineClient = Comlink.Remote<EngineApi>;

export function startEngineWorker(): { client: EngineClient; worker: Worker } {
  const worker = new Worker(new URL('../../workers/engine.worker.ts', import.meta.url), { type: 'module', name: 'servelab-engine' });
  return { client: Comlink.wrap<EngineApi>(worker), worker };
}

export const builtinModel = {
  modelUrl: `${import.meta.env.BASE_URL}models/stories260K.bin`,
  tokenizerUrl: `${import.meta.env.BASE_URL}models/tok512.bin`,
  name: 'stories260K',
};
