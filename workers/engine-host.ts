/**
 * The engine host: what the worker serves, as a class that also runs in Node (tests,
 * benchmarks). It wires the parts and owns their lifetimes: the model, the executor factory
 * (WebGPU or the CPU reference, device recovery: src/gpu/executor-factory.ts), the engine, the
 * one run loop (src/serve/run-loop.ts) and a text streamer per request (src/serve/text-streamer.ts).
 * Requests are built and checked in src/serve/requests.ts, settings in src/engine/config.ts.
 */
import { Engine, type EngineSnapshot } from '../src/engine/engine.ts';
import { VirtualClock } from '../src/engine/clock.ts';
import { assertValidConfig, DEFAULT_HOST_SETTINGS, DEFAULT_SCHEDULER_CONFIG, LIVE_CONFIG_KEYS, type SchedulerConfig } from '../src/engine/config.ts';
import type { EngineEvent } from '../src/engine/events.ts';
import type { RequestSpec } from '../src/engine/request.ts';
import { listProblems } from '../src/engine/schema.ts';
import type { Executor } from '../src/engine/types.ts';
import { ExecutorFactory } from '../src/gpu/executor-factory.ts';
import type { KernelSources } from '../src/gpu/kernel-names.ts';
import { applyModelOptions, type LoadedModel } from '../src/model/load.ts';
import { summarizeModel, type ModelSummary } from '../src/model/summary.ts';
import { completionSpec, scenarioSpecs, traceSpecs, type CompletionParams, type ScenarioRun, type StreamEvent } from '../src/serve/requests.ts';
import { RunLoop } from '../src/serve/run-loop.ts';
import { TextStreamer } from '../src/serve/text-streamer.ts';
import { isWeightType, WEIGHT_TYPES, type WeightType } from '../src/model/quant.ts';
import type { EngineSettings, HostStatus, ViewSnapshot } from './protocol.ts';

const geometryOf = (c: SchedulerConfig) => ({ blockSize: c.blockSize, numGpuBlocks: c.numGpuBlocks, numCpuBlocks: c.numCpuBlocks });

/** A request the host streams text for. */
interface Tracked {
  requestId: string;
  prompt: string | null;
  text: TextStreamer;
  onEvent: ((e: StreamEvent) => void) | null;
  /** Finished, failed or rejected (the engine said so). */
  ended: boolean;
}

export interface HostOptions {
  /** The GPU object (navigator.gpu, or Dawn's in Node); undefined selects the CPU reference. */
  gpu: GPU | undefined;
  kernelSources: KernelSources;
  /** Engine settings to start with (the KV geometry, policy...). */
  settings?: EngineSettings;
  /** Called after every step (the page pulls snapshots instead) — for Node drivers. */
  onStep?: () => void;
}

/** Ended requests whose text is kept (older ones are forgotten in long sessions). */
const MAX_TRACKED = 2000;

export class EngineHost {
  /** The model as its file gave it (before model options): what `weights` quantizes from. */
  private original: LoadedModel | null = null;
  /** The model the engine runs: `original` with the model options applied. */
  private loaded: LoadedModel | null = null;
  private summary: ModelSummary | null = null;
  private readonly executors: ExecutorFactory;
  private engine: Engine | null = null;
  private settings: EngineSettings;
  private readonly tracked = new Map<string, Tracked>();
  private readonly loop: RunLoop;
  private nextRequestNumber = 0;
  private phase: HostStatus['phase'] = 'starting';
  private message: string | null = null;
  private numDeviceLosses = 0;
  /** Executors whose pipelines were compiled and run once (warm-up happens once per executor). */
  private readonly warmed = new WeakSet<Executor>();
  /** How long the last warm-up took (wall ms), for the status line. */
  private warmUpMs: number | null = null;

  constructor(options: HostOptions) {
    this.settings = { ...DEFAULT_HOST_SETTINGS, ...options.settings };
    this.executors = new ExecutorFactory(options.gpu, options.kernelSources);
    this.loop = new RunLoop({ onError: (e) => this.failAll(`the engine stopped: ${e.message}`), onStep: options.onStep });
  }

  get status(): HostStatus {
    return {
      phase: this.phase,
      backend: this.executors.backend,
      message: this.message,
      paused: this.loop.paused,
      minStepIntervalMs: this.loop.minStepIntervalMs,
      numDeviceLosses: this.numDeviceLosses,
      warmUpMs: this.warmUpMs,
    };
  }

  get currentEngine(): Engine | null {
    return this.engine;
  }

  get currentExecutor(): Executor | null {
    return this.executors.executor;
  }

  /**
   * Makes `original` the model, with the model options of the settings applied (quantized on
   * load when `weights` says so): builds an executor for it (the old model stays if this fails).
   */
  async setModel(original: LoadedModel): Promise<ModelSummary> {
    return this.useModel(original, this.settings.weights ?? 'f32');
  }

  private async useModel(original: LoadedModel, weights: WeightType): Promise<ModelSummary> {
    // A file already quantized loads as it is: asking for other weights changes nothing.
    const loaded = original.model.quantized ? original : { ...original, model: applyModelOptions(original.model, { quantize: weights }) };
    this.phase = 'loading';
    await this.loop.attach(null);
    try {
      await this.executors.create(loaded.model);
    } catch (e) {
      this.phase = 'ready';
      this.loop.kick();
      throw e;
    }
    this.message = this.executors.fallbackReason;
    this.stopEngine('the model was replaced');
    this.original = original;
    this.loaded = loaded;
    this.summary = summarizeModel(loaded.model);
    await this.startEngine();
    this.phase = 'ready';
    return this.summary;
  }

  /**
   * Applies engine settings. Policy, budgets, preemption mode and admission limits change live,
   * with requests in flight (Engine.reconfigure). The KV geometry, prefix caching, the context
   * and the batching mode are fixed per engine, so changing one of those starts a new engine:
   * requests in flight are then reported failed ('engine_restarted'), none silently.
   * Returns whether the engine was restarted.
   */
  async configure(settings: EngineSettings): Promise<boolean> {
    const next = { ...this.settings, ...settings };
    if (next.weights !== undefined && !isWeightType(next.weights)) throw new RangeError(`weights must be one of ${WEIGHT_TYPES.join(', ')}, got ${JSON.stringify(next.weights)}`);
    assertValidConfig(this.engineConfig(next));
    if ((next.weights ?? 'f32') !== (this.settings.weights ?? 'f32') && this.original) {
      // A model option: the model is rebuilt from its f32 weights and a new engine starts.
      this.executors.executor?.checkGeometry?.(geometryOf(this.engineConfig(next)));
      this.settings = next;
      await this.useModel(this.original, next.weights ?? 'f32');
      return true;
    }
    const changed = Object.fromEntries(
      Object.entries(settings).filter(([k, v]) => JSON.stringify(v) !== JSON.stringify(this.settings[k as keyof EngineSettings])),
    ) as EngineSettings;
    const live = Object.keys(changed).every((k) => LIVE_CONFIG_KEYS.has(k as keyof SchedulerConfig));
    if (this.engine && live) {
      this.engine.reconfigure(changed);
      this.settings = next;
      this.loop.kick();
      return false;
    }
    // Checked before anything stops: an executor that cannot take the geometry changes nothing.
    const config = this.engineConfig(next);
    this.executors.executor?.checkGeometry?.({ blockSize: config.blockSize, numGpuBlocks: config.numGpuBlocks, numCpuBlocks: config.numCpuBlocks });
    const previous = this.settings;
    this.settings = next;
    if (!this.loaded) return false;
    await this.loop.attach(null);
    this.stopEngine('the engine settings changed');
    try {
      await this.startEngine();
    } catch (e) {
      // The executor refused the new geometry (memory, device limits): the previous settings
      // come back on a fresh engine, so the lab is never left without one.
      this.settings = previous;
      await this.startEngine();
      throw new RangeError(`the settings were not applied (${(e as Error).message}); the engine runs with the previous settings`);
    }
    return true;
  }

  getSettings(): EngineSettings {
    return { ...this.settings };
  }

  submit(params: CompletionParams, onEvent?: (e: StreamEvent) => void): string {
    const { engine, loaded } = this.require();
    const spec = completionSpec(params, this.newRequestId(), loaded);
    const requestId = engine.submit(spec);
    this.track(requestId, params.prompt, spec, params.stop ?? [], onEvent ?? null);
    this.loop.kick();
    return requestId;
  }

  /** Submits a generated workload, its arrivals relative to now. Returns the request ids. */
  runScenario(run: ScenarioRun): string[] {
    const { engine, loaded } = this.require();
    return this.submitAll(scenarioSpecs(run, loaded, () => this.newRequestId(), engine.clock.nowMs()));
  }

  /** Submits recorded requests (an imported trace), their arrivals relative to now. Returns the request ids. */
  runTrace(requests: RequestSpec[]): string[] {
    const { engine, loaded } = this.require();
    return this.submitAll(traceSpecs(requests, loaded, () => this.newRequestId(), engine.clock.nowMs()));
  }

  cancel(requestId: string): void {
    this.engine?.cancel(requestId);
    this.loop.kick();
  }

  /** Stops stepping; resolves with the index of the last step once the step in flight has landed. */
  async pause(): Promise<number> {
    await this.loop.pause();
    return this.engine?.stepIndex ?? 0;
  }

  resume(): void {
    this.loop.resume();
  }

  setMinStepInterval(ms: number): void {
    this.loop.setMinStepInterval(ms);
  }

  /** Exactly one engine iteration (after the step in flight, if any); resolves with the last step's index. */
  async stepOnce(): Promise<number> {
    await this.loop.stepOnce();
    return this.engine?.stepIndex ?? 0;
  }

  /** Fails every request and starts a fresh engine with the same settings. */
  async reset(): Promise<void> {
    if (!this.loaded) return;
    await this.loop.attach(null);
    this.stopEngine('the engine was reset');
    await this.startEngine();
  }

  /** The views' state; `sinceStepIndex` selects which step records come along (-1: none). */
  snapshot(sinceStepIndex = -1): ViewSnapshot | null {
    if (!this.engine) return null;
    const snap: EngineSnapshot = this.engine.snapshot(sinceStepIndex);
    const texts: Record<string, string[]> = {};
    const prompts: Record<string, string> = {};
    for (const r of snap.requests) {
      const t = this.tracked.get(r.requestId);
      if (!t) continue;
      texts[r.requestId] = t.text.texts;
      if (t.prompt !== null) prompts[r.requestId] = t.prompt;
    }
    return { ...snap, texts, prompts, host: this.status, model: this.summary };
  }

  prometheus(): string {
    return this.engine?.prometheus() ?? '';
  }

  eventLog(): EngineEvent[] {
    return this.engine ? [...this.engine.eventLog] : [];
  }

  /** Fault injection: destroys the GPU device now; the run loop recovers on its next step. */
  loseDevice(): void {
    this.executors.loseDevice();
    this.loop.kick();
  }

  private require(): { engine: Engine; loaded: LoadedModel } {
    if (!this.engine || !this.loaded) throw new Error('no model is loaded yet');
    return { engine: this.engine, loaded: this.loaded };
  }

  private newRequestId(): string {
    return `r${++this.nextRequestNumber}`;
  }

  /** Submits all of `specs` or none: any problem refuses the whole set, listing each (first 10). */
  private submitAll(specs: RequestSpec[]): string[] {
    const engine = this.engine!;
    const problems = specs.flatMap((spec, i) => engine.check(spec).map((p) => ({ path: `request ${i}`, message: `request ${i}: ${p.message}` })));
    if (problems.length > 0) throw new RangeError(listProblems('nothing was submitted', problems));
    const ids = specs.map((spec) => {
      const id = engine.submit(spec);
      this.track(id, null, spec, [], null);
      return id;
    });
    this.loop.kick();
    return ids;
  }

  /** The engine's config for these settings: the context is the model's (or less). */
  private engineConfig(settings: EngineSettings): SchedulerConfig {
    const seqLen = this.loaded?.model.config.seqLen ?? DEFAULT_SCHEDULER_CONFIG.maxModelLen;
    const { weights: _modelOption, ...scheduler } = settings;
    return { ...DEFAULT_SCHEDULER_CONFIG, ...scheduler, maxModelLen: Math.min(settings.maxModelLen ?? Infinity, seqLen) };
  }

  /**
   * A new engine on the engine clock: a VirtualClock that advances by each step's own measured
   * time (the executor's: GPU timestamps, or the wall time around the step), never by pauses,
   * slow motion or the page. While nothing is in the system it waits for the next arrival in
   * real time (as a server would, so a scenario still unfolds at its pace) and then jumps to it:
   * an idle gap holds no request, so it changes no latency. Requests arrive on this clock.
   */
  private async startEngine(): Promise<void> {
    const executor = this.executors.executor!;
    const config = this.engineConfig(this.settings);
    const engine = new Engine({ executor, config, clock: new VirtualClock(), modelName: this.summary?.name });
    await engine.init();
    if (executor.warmUp && !this.warmed.has(executor)) {
      // Shaders compiled and first dispatches run before any run starts (out of every latency).
      const started = performance.now();
      await executor.warmUp({ maxTokens: config.maxNumBatchedTokens, maxSeqs: config.maxNumSeqs });
      this.warmed.add(executor);
      this.warmUpMs = performance.now() - started;
    }
    engine.on((e) => this.onEngineEvent(e));
    this.engine = engine;
    let idle: { arrivalMs: number; sinceRealMs: number } | null = null;
    /** Real ms still to wait before the next arrival, while nothing is in the system (0: due). */
    const idleWaitMs = (): number | null => {
      const next = engine.nextArrivalMs();
      if (next === null) return null;
      if (engine.hasAdmittedWork() || next <= engine.clock.nowMs()) {
        idle = null;
        return 0;
      }
      if (idle?.arrivalMs !== next) idle = { arrivalMs: next, sinceRealMs: performance.now() };
      return Math.max(0, next - engine.clock.nowMs() - (performance.now() - idle.sinceRealMs));
    };
    await this.loop.attach({
      step: async () => ((idleWaitMs() ?? 0) > 0 ? false : this.runStep(engine)),
      // A single step asked for: an idle engine jumps to the next arrival and runs that step.
      stepNow: async () => (await this.runStep(engine)) || (engine.hasWork() && this.runStep(engine)),
      hasWork: () => engine.hasWork(),
      msUntilNextArrival: idleWaitMs,
    });
  }

  /** Fails every tracked request of the current engine (they cannot move to a new one). */
  private stopEngine(reason: string): void {
    if (!this.engine) return;
    for (const t of this.tracked.values()) {
      // Pending requests (not yet admitted) count too: none is dropped silently.
      if (!t.ended) t.onEvent?.({ type: 'error', requestId: t.requestId, reason: 'engine_restarted', message: reason });
    }
    this.tracked.clear();
    this.engine = null;
  }

  private track(requestId: string, prompt: string | null, spec: RequestSpec, stop: string[], onEvent: ((e: StreamEvent) => void) | null): void {
    const text = new TextStreamer(this.loaded!.tokenizer, spec.promptTokenIds[spec.promptTokenIds.length - 1], spec.n ?? 1, stop);
    this.tracked.set(requestId, { requestId, prompt, text, onEvent, ended: false });
    // Keep memory bounded in long sessions: forget the oldest ended requests.
    if (this.tracked.size > MAX_TRACKED) {
      for (const [id, t] of this.tracked) {
        if (t.ended) this.tracked.delete(id);
        if (this.tracked.size <= (MAX_TRACKED * 3) / 4) break;
      }
    }
  }

  private onEngineEvent(e: EngineEvent): void {
    if (e.type === 'token') {
      const t = this.tracked.get(e.requestId);
      if (!t) return;
      const { delta, stopped } = t.text.push(e.seqIndex, e.tokenId);
      if (delta) t.onEvent?.({ type: 'text', requestId: e.requestId, seqIndex: e.seqIndex, delta });
      if (stopped && t.text.allStopped) this.engine?.cancel(e.requestId);
      return;
    }
    if (e.type !== 'finished' && e.type !== 'failed' && e.type !== 'rejected') return;
    const t = this.tracked.get(e.requestId);
    if (!t) return;
    t.ended = true;
    if (!t.onEvent) return;
    const stoppedAll = t.text.allStopped;
    if (e.type === 'finished' || (e.type === 'failed' && e.reason === 'cancelled' && stoppedAll)) {
      const n = t.text.texts.length;
      for (let i = 0; i < n; i++) {
        const rest = t.text.flush(i);
        if (rest) t.onEvent({ type: 'text', requestId: e.requestId, seqIndex: i, delta: rest });
      }
      const reasons = Array.from({ length: n }, (_, i) => (t.text.stoppedByString(i) || e.type !== 'finished' ? 'stop' : e.reasons[i]));
      t.onEvent({ type: 'done', requestId: e.requestId, texts: t.text.texts, reasons });
    } else if (e.type === 'rejected') {
      t.onEvent({ type: 'error', requestId: e.requestId, reason: e.reason, message: e.detail });
    } else {
      t.onEvent({ type: 'error', requestId: e.requestId, reason: e.reason, message: `the request ${e.reason === 'cancelled' ? 'was cancelled' : `failed: ${e.reason}`}` });
    }
  }

  /** The engine cannot go on: every request still in flight is reported failed, none silently lost. */
  private failAll(message: string): void {
    this.phase = 'error';
    this.message = message;
    for (const t of this.tracked.values()) {
      if (!t.ended) t.onEvent?.({ type: 'error', requestId: t.requestId, reason: 'engine_error', message });
    }
    this.tracked.clear();
    this.engine = null;
    // A fresh engine on the same model, so the lab stays usable; the message says what happened.
    if (this.loaded && this.executors.executor) {
      this.startEngine()
        .then(() => (this.phase = 'ready'))
        .catch((e: Error) => (this.message = `${message}; restarting the engine failed: ${e.message}`));
    }
  }

  /** One step; a lost device is rebuilt and the running requests recomputed. Resolves whether a step ran. */
  private async runStep(engine: Engine): Promise<boolean> {
    try {
      return (await engine.step()).kind === 'ran';
    } catch (e) {
      if (!this.executors.isDeviceLoss(e) || engine !== this.engine) throw e;
      this.phase = 'recovering';
      this.numDeviceLosses++;
      this.message = (e as Error).message;
      await this.executors.recover(engine, this.loaded!.model);
      this.phase = 'ready';
      this.message = `recovered from a lost GPU device (${(e as Error).message}); running requests were recomputed`;
      return true;
    }
  }
}
