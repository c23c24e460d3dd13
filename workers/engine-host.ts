/**
 * The engine host: everything the worker does, as a class that also runs in Node (tests,
 * benchmarks). It owns the model, the executor (WebGPU, or the CPU reference where WebGPU is
 * missing), the engine and its run loop, decodes streamed text, and recovers from a lost GPU
 * device by building a new executor and recomputing the requests that were running.
 */
import { Engine, type EngineSnapshot, type StepView } from '../src/engine/engine.ts';
import { RealClock } from '../src/engine/clock.ts';
import type { EngineEvent } from '../src/engine/events.ts';
import type { RequestSpec } from '../src/engine/request.ts';
import { DEFAULT_SCHEDULER_CONFIG, LIVE_CONFIG_KEYS, type SchedulerConfig } from '../src/engine/scheduler.ts';
import { generateWorkload } from '../src/engine/workload.ts';
import type { Executor } from '../src/engine/types.ts';
import { acquireDevice, type GpuContext } from '../src/gpu/device.ts';
import { DeviceLostError, GpuExecutor } from '../src/gpu/executor.ts';
import type { KernelSources } from '../src/gpu/kernel-names.ts';
import { GpuRuntime } from '../src/gpu/step.ts';
import { CpuReferenceExecutor } from '../src/model/reference.ts';
import type { LoadedModel } from '../src/model/load.ts';
import { summarizeModel, type ModelSummary } from '../src/model/summary.ts';
import type { Backend, CompletionParams, EngineSettings, HostStatus, ScenarioRun, StepRecord, StreamEvent, ViewSnapshot } from './protocol.ts';
import { storyPromptTokens } from './story-prompts.ts';

/** Streaming UTF-8 decode of one sequence's pieces (byte-fallback tokens split characters). */
class SeqText {
  private readonly decoder = new TextDecoder('utf-8', { fatal: false });
  text = '';
  constructor(public prevToken: number) {}
  push(bytes: Uint8Array): string {
    const delta = this.decoder.decode(bytes, { stream: true });
    this.text += delta;
    return delta;
  }
}

interface Tracked {
  requestId: string;
  prompt: string | null;
  seqs: SeqText[];
  stop: string[];
  onEvent: ((e: StreamEvent) => void) | null;
  stoppedByString: boolean[];
  /** Finished, failed or rejected (the engine said so). */
  ended: boolean;
}

export interface HostOptions {
  /** The GPU object (navigator.gpu, or Dawn's in Node); undefined selects the CPU reference. */
  gpu: GPU | undefined;
  kernelSources: KernelSources;
  /** Engine settings to start with (the KV geometry, policy...). */
  settings?: EngineSettings;
  /** Called after every step with nothing (the page pulls snapshots) — for Node drivers. */
  onStep?: () => void;
}

const defaultSettings: EngineSettings = { blockSize: 16, numGpuBlocks: 128, numCpuBlocks: 64, maxNumBatchedTokens: 256, maxNumSeqs: 32 };

export class EngineHost {
  private loaded: LoadedModel | null = null;
  private summary: ModelSummary | null = null;
  private ctx: GpuContext | null = null;
  private runtime: GpuRuntime | null = null;
  private executor: Executor | null = null;
  private engine: Engine | null = null;
  private settings: EngineSettings;
  private readonly tracked = new Map<string, Tracked>();
  private wakeUp: (() => void) | null = null;
  private looping = false;
  private stepping: Promise<unknown> = Promise.resolve();
  private nextRequestNumber = 0;
  readonly status: HostStatus = { phase: 'starting', backend: 'webgpu', message: null, paused: false, minStepIntervalMs: 0, numDeviceLosses: 0 };

  constructor(private readonly options: HostOptions) {
    this.settings = { ...defaultSettings, ...options.settings };
  }

  get currentEngine(): Engine | null {
    return this.engine;
  }

  get currentExecutor(): Executor | null {
    return this.executor;
  }

  /** Makes `loaded` the model: builds an executor for it (the old model stays if this fails). */
  async setModel(loaded: LoadedModel): Promise<ModelSummary> {
    this.status.phase = 'loading';
    const executor = await this.buildExecutor(loaded);
    this.stopEngine('the model was replaced');
    this.executor?.dispose();
    this.loaded = loaded;
    this.summary = summarizeModel(loaded.model);
    this.executor = executor;
    await this.startEngine();
    this.status.phase = 'ready';
    return this.summary;
  }

  private async buildExecutor(loaded: LoadedModel): Promise<Executor> {
    if (this.options.gpu) {
      try {
        if (!this.ctx || this.ctx.isLost) {
          this.ctx = await acquireDevice(this.options.gpu);
          this.runtime = GpuRuntime.fromContext(this.ctx, this.options.kernelSources);
        }
        this.status.backend = 'webgpu';
        this.status.message = null;
        return new GpuExecutor(this.ctx, this.runtime!, loaded.model);
      } catch (e) {
        this.status.message = `WebGPU unavailable (${(e as Error).message}); running the CPU reference instead`;
      }
    } else {
      this.status.message = 'WebGPU unavailable; running the CPU reference instead';
    }
    this.status.backend = 'cpu';
    return new CpuReferenceExecutor(loaded.model);
  }

  private engineConfig(): Partial<SchedulerConfig> {
    const maxModelLen = Math.min(this.settings.maxModelLen ?? Infinity, this.loaded!.model.config.seqLen);
    return { ...this.settings, maxModelLen };
  }

  private async startEngine(): Promise<void> {
    const engine = new Engine({ executor: this.executor!, config: this.engineConfig(), clock: new RealClock(), modelName: this.summary?.name });
    await engine.init();
    engine.on((e) => this.onEngineEvent(e));
    this.engine = engine;
    this.ensureLoop();
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

  /**
   * Applies engine settings. Policy, budgets, preemption mode and admission limits change live,
   * with requests in flight (Engine.reconfigure). The KV geometry, prefix caching, the context
   * and the batching mode are fixed per engine, so changing one of those starts a new engine:
   * requests in flight are then reported failed ('engine_restarted'), none silently.
   * Returns whether the engine was restarted.
   */
  async configure(settings: EngineSettings): Promise<boolean> {
    const next = { ...this.settings, ...settings };
    validateSettings(next);
    const changed = Object.fromEntries(
      Object.entries(settings).filter(([k, v]) => JSON.stringify(v) !== JSON.stringify(this.settings[k as keyof EngineSettings])),
    ) as EngineSettings;
    const live = Object.keys(changed).every((k) => LIVE_CONFIG_KEYS.has(k as keyof SchedulerConfig));
    if (this.engine && live) {
      this.engine.reconfigure(changed);
      this.settings = next;
      this.kick();
      return false;
    }
    await this.stepping;
    this.settings = next;
    if (!this.loaded) return false;
    this.stopEngine('the engine settings changed');
    await this.startEngine();
    return true;
  }

  getSettings(): EngineSettings {
    return { ...this.settings };
  }

  submit(params: CompletionParams, onEvent?: (e: StreamEvent) => void): string {
    const engine = this.requireEngine();
    const tokenizer = this.loaded!.tokenizer;
    if (typeof params.prompt !== 'string') throw new TypeError('prompt must be a string');
    const promptTokenIds = tokenizer.encode(params.prompt, true, false);
    const spec: RequestSpec = {
      requestId: `r${++this.nextRequestNumber}`,
      promptTokenIds,
      maxTokens: params.max_tokens ?? 128,
      n: params.n ?? 1,
      sampling: { temperature: params.temperature ?? 0, topP: params.top_p ?? 1, topK: params.top_k ?? 0, seed: params.seed ?? 1 },
      stopTokenIds: [1, 2],
      priority: params.priority,
      tenant: params.tenant,
      deadlineMs: params.deadline,
    };
    validateSpec(spec, this.loaded!.model.config.seqLen);
    const requestId = engine.submit(spec);
    this.track(requestId, params.prompt, promptTokenIds, spec.n ?? 1, params.stop ?? [], onEvent ?? null);
    this.kick();
    return requestId;
  }

  /** Submits a generated workload, its arrivals relative to now. Returns the request ids. */
  runScenario(run: ScenarioRun): string[] {
    const engine = this.requireEngine();
    const vocabSize = this.loaded!.model.config.vocabSize;
    const specs = generateWorkload({ ...run.workload, vocabSize });
    const now = engine.snapshot().nowMs;
    const ids: string[] = [];
    const realPrompts = run.realPrompts ?? true;
    const prefixMap = new Map<string, number[]>();
    for (const s of specs) {
      let prompt = s.promptTokenIds;
      if (realPrompts) prompt = storyPromptTokens(this.loaded!.tokenizer, prompt, prefixMap, run.workload.sharedPrefix?.numTokens ?? 0);
      const maxLen = this.loaded!.model.config.seqLen;
      prompt = prompt.slice(0, Math.max(1, maxLen - 1));
      const spec: RequestSpec = {
        ...s,
        requestId: `r${++this.nextRequestNumber}`,
        promptTokenIds: prompt,
        maxTokens: Math.max(1, Math.min(s.maxTokens, maxLen - prompt.length)),
        arrivalMs: now + (s.arrivalMs ?? 0),
      };
      const id = engine.submit(spec);
      this.track(id, null, prompt, spec.n ?? 1, [], null);
      ids.push(id);
    }
    this.kick();
    return ids;
  }

  /** Submits recorded requests (an imported trace), their arrivals relative to now. Returns the request ids. */
  runTrace(requests: RequestSpec[]): string[] {
    const engine = this.requireEngine();
    const { vocabSize, seqLen } = this.loaded!.model.config;
    requests.forEach((r, i) => {
      const bad = r.promptTokenIds.find((t) => !(Number.isInteger(t) && t >= 0 && t < vocabSize));
      if (bad !== undefined) throw new RangeError(`trace request ${i}: token id ${bad} is outside the model's vocabulary of ${vocabSize}`);
      if (r.promptTokenIds.length === 0 || r.promptTokenIds.length >= seqLen) {
        throw new RangeError(`trace request ${i}: a prompt of ${r.promptTokenIds.length} tokens does not fit the model's context of ${seqLen}`);
      }
    });
    const now = engine.clock.nowMs();
    const ids = requests.map((r) => {
      const spec: RequestSpec = {
        ...r,
        requestId: `r${++this.nextRequestNumber}`,
        maxTokens: Math.max(1, Math.min(r.maxTokens, seqLen - r.promptTokenIds.length)),
        arrivalMs: now + (r.arrivalMs ?? 0),
      };
      const id = engine.submit(spec);
      this.track(id, null, spec.promptTokenIds, spec.n ?? 1, [], null);
      return id;
    });
    this.kick();
    return ids;
  }

  cancel(requestId: string): void {
    this.engine?.cancel(requestId);
    this.kick();
  }

  pause(): void {
    this.status.paused = true;
  }

  resume(): void {
    this.status.paused = false;
    this.kick();
  }

  setMinStepInterval(ms: number): void {
    if (!(ms >= 0 && ms <= 10_000)) throw new RangeError(`the step interval must be between 0 and 10000 ms, got ${ms}`);
    this.status.minStepIntervalMs = ms;
    this.kick();
  }

  /** One engine iteration while paused (or now, whatever the state). */
  async stepOnce(): Promise<void> {
    await this.stepping;
    const p = this.runStep();
    this.stepping = p.catch(() => {});
    await p;
  }

  /** Fails every request and starts a fresh engine with the same settings. */
  async reset(): Promise<void> {
    await this.stepping;
    if (!this.loaded) return;
    this.stopEngine('the engine was reset');
    await this.startEngine();
  }

  /** The views' state; `sinceStepIndex` selects which recent steps come along (-1: none). */
  snapshot(sinceStepIndex = -1): ViewSnapshot | null {
    if (!this.engine) return null;
    const snap: EngineSnapshot = this.engine.snapshot(sinceStepIndex);
    const texts: Record<string, string[]> = {};
    const prompts: Record<string, string> = {};
    for (const r of snap.requests) {
      const t = this.tracked.get(r.requestId);
      if (!t) continue;
      texts[r.requestId] = t.seqs.map((s) => s.text);
      if (t.prompt !== null) prompts[r.requestId] = t.prompt;
    }
    return { ...snap, texts, prompts, host: { ...this.status }, model: this.summary };
  }

  prometheus(): string {
    return this.engine?.prometheus() ?? '';
  }

  eventLog(): EngineEvent[] {
    return this.engine ? [...this.engine.eventLog] : [];
  }

  /** Fault injection: destroys the GPU device now; the run loop recovers on its next step. */
  loseDevice(): void {
    if (!this.ctx) throw new Error('no GPU device to lose: the CPU reference is running');
    this.ctx.destroy();
    this.kick();
  }

  private requireEngine(): Engine {
    if (!this.engine || !this.loaded) throw new Error('no model is loaded yet');
    return this.engine;
  }

  private track(requestId: string, prompt: string | null, promptTokenIds: number[], n: number, stop: string[], onEvent: ((e: StreamEvent) => void) | null): void {
    const last = promptTokenIds[promptTokenIds.length - 1];
    this.tracked.set(requestId, {
      requestId,
      prompt,
      seqs: Array.from({ length: n }, () => new SeqText(last)),
      stop,
      onEvent,
      stoppedByString: new Array(n).fill(false),
      ended: false,
    });
    // Keep memory bounded in long sessions: forget the oldest ended requests.
    if (this.tracked.size > 2000) {
      for (const [id, t] of this.tracked) {
        if (t.ended) this.tracked.delete(id);
        if (this.tracked.size <= 1500) break;
      }
    }
  }

  private onEngineEvent(e: EngineEvent): void {
    if (e.type === 'token') {
      const t = this.tracked.get(e.requestId);
      const seq = t?.seqs[e.seqIndex];
      if (!t || !seq) return;
      const req = this.engine?.getRequest(e.requestId);
      if (req?.stopTokenIds.has(e.tokenId)) return;
      const bytes = this.loaded!.tokenizer.pieceBytes(seq.prevToken, e.tokenId, false);
      seq.prevToken = e.tokenId;
      if (t.stoppedByString[e.seqIndex]) return;
      const before = seq.text.length;
      const delta = seq.push(bytes);
      const hit = t.stop.map((s) => (s ? seq.text.indexOf(s, Math.max(0, before - s.length)) : -1)).filter((i) => i >= 0);
      if (hit.length > 0) {
        seq.text = seq.text.slice(0, Math.min(...hit));
        t.stoppedByString[e.seqIndex] = true;
        if (t.stoppedByString.every(Boolean)) this.engine?.cancel(e.requestId);
        const kept = seq.text.slice(before);
        if (kept) t.onEvent?.({ type: 'text', requestId: e.requestId, seqIndex: e.seqIndex, delta: kept });
        return;
      }
      if (delta) t.onEvent?.({ type: 'text', requestId: e.requestId, seqIndex: e.seqIndex, delta });
    } else if (e.type === 'finished' || e.type === 'failed' || e.type === 'rejected') {
      const t = this.tracked.get(e.requestId);
      if (t) t.ended = true;
      if (!t?.onEvent) return;
      if (e.type === 'finished' || (e.type === 'failed' && e.reason === 'cancelled' && t.stoppedByString.every(Boolean))) {
        const reasons = e.type === 'finished' ? e.reasons.map((r, i) => (t.stoppedByString[i] ? 'stop' : r)) : t.stoppedByString.map(() => 'stop');
        t.onEvent({ type: 'done', requestId: e.requestId, texts: t.seqs.map((s) => s.text), reasons });
      } else {
        const reason = e.type === 'failed' ? e.reason : e.reason;
        const message = e.type === 'rejected' ? e.detail : `the request ${e.reason === 'cancelled' ? 'was cancelled' : `failed: ${e.reason}`}`;
        t.onEvent({ type: 'error', requestId: e.requestId, reason, message });
      }
    }
  }

  private kick(): void {
    this.wakeUp?.();
    this.ensureLoop();
  }

  private ensureLoop(): void {
    if (this.looping) return;
    this.looping = true;
    this.loop()
      .catch((e: Error) => this.failAll(`the engine stopped: ${e.message}`))
      .finally(() => (this.looping = false));
  }

  /** The engine cannot go on: every request still in flight is reported failed, none silently lost. */
  private failAll(message: string): void {
    this.status.phase = 'error';
    this.status.message = message;
    const engine = this.engine;
    for (const t of this.tracked.values()) {
      if (!t.ended) t.onEvent?.({ type: 'error', requestId: t.requestId, reason: 'engine_error', message });
    }
    this.tracked.clear();
    this.engine = null;
    // A fresh engine on the same model, so the lab stays usable; the message says what happened.
    if (this.loaded && this.executor) {
      this.startEngine()
        .then(() => (this.status.phase = 'ready'))
        .catch((e: Error) => (this.status.message = `${message}; restarting the engine failed: ${e.message}`));
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wakeUp = () => {
        this.wakeUp = null;
        done();
      };
    });
  }

  private async loop(): Promise<void> {
    for (;;) {
      const engine = this.engine;
      if (!engine || !engine.hasWork()) return;
      if (this.status.paused) {
        await this.sleep(1000);
        continue;
      }
      const started = performance.now();
      const p = this.runStep();
      this.stepping = p.catch(() => {});
      const ran = await p;
      this.options.onStep?.();
      if (!ran) {
        const next = engine.nextArrivalMs();
        const wait = next === null ? 1000 : Math.max(0, next - engine.snapshot().nowMs);
        await this.sleep(Math.min(wait, 1000));
        continue;
      }
      const rest = this.status.minStepIntervalMs - (performance.now() - started);
      // Always yield to the event loop so submissions and snapshot requests get through.
      await this.sleep(Math.max(0, rest));
    }
  }

  /** One step; recovers from a lost device. Returns whether a step ran. */
  private async runStep(): Promise<boolean> {
    const engine = this.engine;
    if (!engine) return false;
    try {
      const r = await engine.step();
      return r.kind === 'ran';
    } catch (e) {
      if (e instanceof DeviceLostError && engine === this.engine) {
        await this.recoverDevice(engine, e.message);
        return true;
      }
      throw e;
    }
  }

  /** A new device, the weights uploaded again, and the running requests recomputed on it. */
  private async recoverDevice(engine: Engine, message: string): Promise<void> {
    this.status.phase = 'recovering';
    this.status.numDeviceLosses++;
    this.status.message = message;
    this.ctx = null;
    this.runtime = null;
    const executor = await this.buildExecutor(this.loaded!);
    this.executor?.dispose();
    this.executor = executor;
    await engine.replaceExecutor(executor);
    this.status.phase = 'ready';
    this.status.message = `recovered from a lost GPU device (${message}); running requests were recomputed`;
  }
}

function validateSettings(s: EngineSettings): void {
  const positiveInt = (name: keyof SchedulerConfig, v: unknown) => {
    if (v !== undefined && (!Number.isInteger(v) || (v as number) <= 0)) throw new RangeError(`${name} must be a positive integer, got ${String(v)}`);
  };
  positiveInt('blockSize', s.blockSize);
  positiveInt('numGpuBlocks', s.numGpuBlocks);
  positiveInt('maxNumBatchedTokens', s.maxNumBatchedTokens);
  positiveInt('maxNumSeqs', s.maxNumSeqs);
  if (s.numCpuBlocks !== undefined && (!Number.isInteger(s.numCpuBlocks) || s.numCpuBlocks < 0)) {
    throw new RangeError(`numCpuBlocks must be a non-negative integer, got ${s.numCpuBlocks}`);
  }
  if ((s.blockSize ?? DEFAULT_SCHEDULER_CONFIG.blockSize) > 256) throw new RangeError('blockSize must be at most 256');
}

function validateSpec(spec: RequestSpec, seqLen: number): void {
  if (!Number.isInteger(spec.maxTokens) || spec.maxTokens < 1) throw new RangeError(`max_tokens must be a positive integer, got ${spec.maxTokens}`);
  if (!Number.isInteger(spec.n) || (spec.n ?? 1) < 1 || (spec.n ?? 1) > 16) throw new RangeError(`n must be an integer from 1 to 16, got ${spec.n}`);
  if (spec.promptTokenIds.length >= seqLen) throw new RangeError(`the prompt is ${spec.promptTokenIds.length} tokens; the model's context is ${seqLen}`);
  const s = spec.sampling!;
  if (!(s.temperature! >= 0 && Number.isFinite(s.temperature))) throw new RangeError(`temperature must be >= 0, got ${s.temperature}`);
  if (!(s.topP! >= 0 && s.topP! <= 1)) throw new RangeError(`top_p must be between 0 and 1, got ${s.topP}`);
}

export type { Backend };
