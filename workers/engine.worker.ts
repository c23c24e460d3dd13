/**
 * The engine's Web Worker: thin. It builds an EngineHost (src/ + workers/engine-host.ts) and
 * exposes it with comlink; the main thread never blocks on the model or the GPU.
 */
import * as Comlink from 'comlink';
import { probeAdapter, type AdapterProbe } from '../src/gpu/adapter.ts';
import { kernelSources } from '../src/gpu/kernel-sources.ts';
import { fetchBytes, type FetchProgress } from '../src/model/fetch.ts';
import { loadModel } from '../src/model/load.ts';
import type { ModelSummary } from '../src/model/summary.ts';
import type { EngineEvent } from '../src/engine/events.ts';
import type { RequestSpec } from '../src/engine/request.ts';
import { EngineHost } from './engine-host.ts';
import type { CompletionParams, EngineSettings, HostStatus, ModelSource, ScenarioRun, StreamEvent, ViewSnapshot } from './protocol.ts';

const gpu = (self.navigator as Navigator & { gpu?: GPU }).gpu;
const host = new EngineHost({ gpu, kernelSources });

const api = {
  probe(): Promise<AdapterProbe> {
    return probeAdapter(gpu);
  },

  /** Downloads and parses a model, then swaps it in; on any failure the previous model stays. */
  async loadModel(source: ModelSource, onProgress?: (p: FetchProgress) => void): Promise<ModelSummary> {
    const modelBytes = await fetchBytes(source.modelUrl, onProgress);
    const tokenizerBytes = source.tokenizerUrl ? await fetchBytes(source.tokenizerUrl) : undefined;
    const loaded = loadModel(modelBytes, source.name, tokenizerBytes);
    return host.setModel(loaded);
  },

  /**
   * Parses model bytes the page already has (a local file, the model cache) and swaps the model
   * in; on any failure the previous model stays. Pass the buffers with Comlink.transfer.
   */
  async loadModelBytes(modelBytes: Uint8Array, name: string, tokenizerBytes?: Uint8Array): Promise<ModelSummary> {
    const loaded = loadModel(modelBytes, name, tokenizerBytes);
    return host.setModel(loaded);
  },

  submit(params: CompletionParams, onEvent?: (e: StreamEvent) => void): string {
    return host.submit(params, onEvent);
  },
  cancel(requestId: string): void {
    host.cancel(requestId);
  },
  /** Submits an imported request trace (token ids), arrivals relative to now. */
  runTrace(requests: RequestSpec[]): string[] {
    return host.runTrace(requests);
  },
  runScenario(run: ScenarioRun): string[] {
    return host.runScenario(run);
  },
  /** Live where it can be (policy, budgets...); resolves true when the engine had to restart. */
  configure(settings: EngineSettings): Promise<boolean> {
    return host.configure(settings);
  },
  settings(): EngineSettings {
    return host.getSettings();
  },
  pause(): void {
    host.pause();
  },
  resume(): void {
    host.resume();
  },
  step(): Promise<void> {
    return host.stepOnce();
  },
  setMinStepInterval(ms: number): void {
    host.setMinStepInterval(ms);
  },
  reset(): Promise<void> {
    return host.reset();
  },
  status(): HostStatus {
    return { ...host.status };
  },
  /** The latest state for the views (with the steps after sinceStepIndex); typed arrays are transferred, not copied. */
  snapshot(sinceStepIndex = -1): ViewSnapshot | null {
    const s = host.snapshot(sinceStepIndex);
    if (!s) return null;
    return Comlink.transfer(s, [s.gpuBlocks.refCount.buffer, s.gpuBlocks.numFilled.buffer, s.gpuBlocks.ownerSeqId.buffer, s.gpuBlocks.cached.buffer, s.cpuBlocks.refCount.buffer, s.cpuBlocks.ownerSeqId.buffer, s.blockHashes.buffer] as Transferable[]);
  },
  prometheus(): string {
    return host.prometheus();
  },
  eventLog(): EngineEvent[] {
    return host.eventLog();
  },
  /** Fault injection: destroy the GPU device mid-run (the host recovers). */
  loseDevice(): void {
    host.loseDevice();
  },
};

export type EngineWorkerApi = typeof api;
Comlink.expose(api);
