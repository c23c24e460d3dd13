/**
 * The engine's Web Worker: thin. It builds an EngineHost (src/ + workers/engine-host.ts) and
 * exposes it with comlink as an EngineApi; the main thread never blocks on the model or the GPU.
 */
import * as Comlink from 'comlink';
import { probeAdapter } from '../src/gpu/adapter.ts';
import { kernelSources } from '../src/gpu/kernel-sources.ts';
import { fetchBytes } from '../src/model/fetch.ts';
import { loadModel } from '../src/model/load.ts';
import { EngineHost } from './engine-host.ts';
import { adapterOf } from '../src/serve/requests.ts';
import type { EngineApi } from './protocol.ts';

const gpu = (self.navigator as Navigator & { gpu?: GPU }).gpu;
/** The LoRA adapters shipped in public/adapters/ (made by scripts/make-adapters.ts), fetched when first named. */
async function readShippedAdapter(name: string): Promise<{ config: string; weights: Uint8Array } | null> {
  if (!/^[\w.-]+$/.test(name)) return null;
  const base = `${import.meta.env.BASE_URL}adapters/${name}/`;
  const config = await fetch(`${base}adapter_config.json`);
  // A static host may answer an unknown path with the app's HTML page: only JSON counts.
  if (!config.ok || !(config.headers.get('content-type') ?? '').includes('json')) return null;
  const weights = await fetch(`${base}adapter_model.safetensors`);
  if (!weights.ok) return null;
  return { config: await config.text(), weights: new Uint8Array(await weights.arrayBuffer()) };
}

// XGrammar (structured output) loads on the first request that needs it: its own chunk, WASM inlined.
const host = new EngineHost({ gpu, kernelSources, readShippedAdapter, xgrammar: () => import('@mlc-ai/web-xgrammar') });
// The device comes up while the page asks for the model and the model downloads.
host.prepare();

const api: EngineApi = {
  probe: () => probeAdapter(gpu),
  async loadModel(source, onProgress) {
    // Both downloads at once.
    const [modelBytes, tokenizerBytes] = await Promise.all([fetchBytes(source.modelUrl, onProgress), source.tokenizerUrl ? fetchBytes(source.tokenizerUrl) : undefined]);
    return host.setModel(loadModel(modelBytes, source.name, tokenizerBytes));
  },
  // The page passes the buffers with Comlink.transfer (they are not copied).
  loadModelBytes: async (modelBytes, name, tokenizerBytes) => host.setModel(loadModel(modelBytes, name, tokenizerBytes)),
  submit: async (params, onEvent) => {
    await host.ensureAdapters([adapterOf(params)]);
    return host.submitCompletion(params, onEvent);
  },
  cancel: async (requestId) => host.cancel(requestId),
  runScenario: async (run) => {
    await host.ensureAdapters((run.workload.tenants ?? []).map((t) => t.adapter));
    return host.runScenario(run);
  },
  runTrace: async (requests) => {
    await host.ensureAdapters(requests.map((r) => r.adapter));
    return host.runTrace(requests);
  },
  // The page passes the safetensors bytes with Comlink.transfer.
  loadAdapterBytes: async (name, configJson, weights) => host.addAdapter(name, configJson, weights),
  configure: (settings) => host.configure(settings),
  getSettings: async () => host.getSettings(),
  pause: () => host.pause(),
  resume: async () => host.resume(),
  step: () => host.stepOnce(),
  setMinStepInterval: async (ms) => host.setMinStepInterval(ms),
  reset: () => host.reset(),
  status: async () => host.status,
  async snapshot(sinceStepIndex = -1) {
    const s = host.snapshot(sinceStepIndex);
    if (!s) return null;
    // Typed arrays are transferred, not copied.
    return Comlink.transfer(s, [s.gpuBlocks.refCount.buffer, s.gpuBlocks.numFilled.buffer, s.gpuBlocks.ownerSeqId.buffer, s.gpuBlocks.cached.buffer, s.cpuBlocks.refCount.buffer, s.cpuBlocks.ownerSeqId.buffer, s.blockHashes.buffer] as Transferable[]);
  },
  prometheus: async () => host.prometheus(),
  eventLog: async () => host.eventLog(),
  benchPrompts: async (workload) => host.benchPrompts(workload),
  benchTextPrompts: async (requests) => host.benchTextPrompts(requests),
  loseDevice: async () => host.loseDevice(),
};

Comlink.expose(api);
