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
import type { Executor, LoraAdapter, LoraAdapterInfo } from '../src/engine/types.ts';
import { readPeftAdapter } from '../src/model/lora.ts';
import { ExecutorFactory } from '../src/gpu/executor-factory.ts';
import type { KernelSources } from '../src/gpu/kernel-names.ts';
import { applyModelOptions, type LoadedModel } from '../src/model/load.ts';
import { summarizeModel, type ModelSummary } from '../src/model/summary.ts';
import { ArrivalPacer } from '../src/serve/arrival-pacer.ts';
import { completionSpec, scenarioSpecs, stopTokenIdsOf, traceSpecs, type CompletionParams, type JsonCheck, type ScenarioRun, type StreamEvent } from '../src/serve/requests.ts';
import { GrammarService, type XGrammarApi } from '../src/serve/structured.ts';
import { checkJsonOutput } from '../src/serve/json-check.ts';
import type { ResponseFormat, TokenConstraint } from '../src/engine/constraint.ts';
import { RunLoop } from '../src/serve/run-loop.ts';
import { benchPrompts, benchTextPrompts, type BenchPrompts, type BenchTextRequest } from '../src/serve/bench-prompts.ts';
import type { WorkloadSpec } from '../src/engine/workload.ts';
import { TextStreamer } from '../src/serve/text-streamer.ts';
import { isWeightType, WEIGHT_TYPES, type WeightType } from '../src/model/quant.ts';
import type { EngineSettings, HostStatus, StructuredView, ViewSnapshot } from './protocol.ts';

const geometryOf = (c: SchedulerConfig) => ({ blockSize: c.blockSize, numGpuBlocks: c.numGpuBlocks, numCpuBlocks: c.numCpuBlocks });

/** A request of a paced workload, held until the work done reaches its arrival. */
interface PacedRequest {
  spec: RequestSpec & { requestId: string };
  options: { constraints?: TokenConstraint[] };
}

/** A request the host streams text for. */
interface Tracked {
  requestId: string;
  prompt: string | null;
  text: TextStreamer;
  onEvent: ((e: StreamEvent) => void) | null;
  /** Finished, failed or rejected (the engine said so). */
  ended: boolean;
  /** Structured output: its format, compile figures and (at the end) each sequence's check. */
  structured: StructuredView | null;
  format: ResponseFormat | null;
}

export interface HostOptions {
  /** The GPU object (navigator.gpu, or Dawn's in Node); undefined selects the CPU reference. */
  gpu: GPU | undefined;
  kernelSources: KernelSources;
  /** Engine settings to start with (the KV geometry, policy...). */
  settings?: EngineSettings;
  /** Called after every step (the page pulls snapshots instead) — for Node drivers. */
  onStep?: () => void;
  /**
   * The files of an adapter shipped with the app (public/adapters/<name>/), or null when there is
   * none of that name: the worker fetches them, Node reads them from disk. Absent: none is shipped.
   */
  readShippedAdapter?: (name: string) => Promise<{ config: string; weights: Uint8Array } | null>;
  /**
   * Loads XGrammar for structured output (the worker: a dynamic import of the package; Node:
   * src/serve/xgrammar.node.ts). Absent: requests with response_format are refused.
   */
  xgrammar?: () => Promise<XGrammarApi>;
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
  /** A generated workload's requests not yet due, for the current engine (see src/serve/arrival-pacer.ts). */
  private pacer: ArrivalPacer<PacedRequest> | null = null;
  private settings: EngineSettings;
  private readonly tracked = new Map<string, Tracked>();
  private readonly loop: RunLoop;
  private nextRequestNumber = 0;
  private phase: HostStatus['phase'] = 'starting';
  private message: string | null = null;
  private numDeviceLosses = 0;
  /** LoRA adapters read for the loaded model, by name; every new engine registers them all. */
  private readonly adapters = new Map<string, LoraAdapter>();
  private readonly readShippedAdapter: HostOptions['readShippedAdapter'];
  /** Executors whose pipelines were compiled and run once (warm-up happens once per executor). */
  private readonly warmed = new WeakSet<Executor>();
  /** How long the last warm-up took (wall ms), for the status line. */
  private warmUpMs: number | null = null;
  private readonly loadXGrammar: (() => Promise<XGrammarApi>) | undefined;
  /** Structured output for the loaded model (built at the first response_format). */
  private grammar: Promise<GrammarService> | null = null;

  constructor(options: HostOptions) {
    this.settings = { ...DEFAULT_HOST_SETTINGS, ...options.settings };
    this.readShippedAdapter = options.readShippedAdapter;
    this.executors = new ExecutorFactory(options.gpu, options.kernelSources);
    this.loadXGrammar = options.xgrammar;
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
      arrivalPacing: this.pacer?.figures ?? null,
    };
  }

  /** Starts acquiring the GPU device before a model is given (the worker calls it at once). */
  prepare(): void {
    this.executors.prepare();
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
    // Adapters and the grammar compiler belong to the model they were read for; a change of the
    // weights option alone (same original) keeps them: quantizing changes no shapes and no tokenizer.
    if (original !== this.original) {
      this.adapters.clear();
      this.grammar = null;
    }
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

  /**
   * Queues a completion without response_format (synchronous: nothing to compile). A request
   * with one goes through submitCompletion.
   */
  submit(params: CompletionParams, onEvent?: (e: StreamEvent) => void): string {
    if (params?.response_format !== undefined) throw new Error('a request with response_format is submitted with submitCompletion (its grammar compiles first)');
    const { engine, loaded } = this.require();
    const spec = completionSpec(params, this.newRequestId(), loaded, new Set(engine.config.maxLoras > 0 ? this.adapters.keys() : []));
    const requestId = engine.submit(spec);
    this.track(requestId, params.prompt, spec, params.stop ?? [], onEvent ?? null);
    this.loop.kick();
    return requestId;
  }

  /**
   * Reads a PEFT LoRA adapter (adapter_config.json text, adapter_model.safetensors bytes) for the
   * loaded model and registers it as `name`. Throws a ModelFormatError for a file the model cannot
   * take, a RangeError when the name is taken, adapters are off or its rank is too big.
   */
  addAdapter(name: string, configJson: string, weights: Uint8Array): LoraAdapterInfo {
    const { engine, loaded } = this.require();
    const adapter = readPeftAdapter(name, configJson, weights, loaded.model.config, `${name}/adapter_model.safetensors`);
    engine.registerAdapter(adapter); // throws (rank, maxLoras 0) before the host keeps it
    this.adapters.set(name, adapter);
    return { name, rank: adapter.rank, scale: adapter.scale };
  }

  /** Loads the shipped adapters among `names` that are not loaded yet (unknown names are left for submit to refuse). */
  async ensureAdapters(names: Iterable<string | undefined>): Promise<void> {
    for (const name of new Set(names)) {
      if (name === undefined || this.adapters.has(name) || !this.readShippedAdapter) continue;
      const files = await this.readShippedAdapter(name);
      if (files) this.addAdapter(name, files.config, files.weights);
    }
  }

  /**
   * Queues a completion, compiling its response_format first (XGrammar, cached by schema) and
   * handing the engine one constraint per sequence. Parameter and schema problems reject at once;
   * the engine runs on meanwhile.
   */
  async submitCompletion(params: CompletionParams, onEvent?: (e: StreamEvent) => void): Promise<string> {
    if (params?.response_format === undefined) return this.submit(params, onEvent);
    const { engine, loaded } = this.require();
    const spec = completionSpec(params, this.newRequestId(), loaded, new Set(engine.config.maxLoras > 0 ? this.adapters.keys() : []));
    const format = spec.responseFormat!;
    const prepared = await this.prepareConstraints(format, spec.n ?? 1);
    if (this.engine !== engine) {
      for (const c of prepared.constraints) c.dispose?.();
      throw new Error('the engine was replaced while the grammar compiled; nothing was submitted');
    }
    let requestId: string;
    try {
      requestId = engine.submit(spec, { constraints: prepared.constraints });
    } catch (e) {
      for (const c of prepared.constraints) c.dispose?.();
      throw e;
    }
    this.track(requestId, params.prompt, spec, [], onEvent ?? null, { format, compileMs: prepared.compileMs, cached: prepared.cached });
    this.loop.kick();
    return requestId;
  }

  /** The grammar service of the loaded model (XGrammar loaded and its tokenizer info built once). */
  private grammarService(): Promise<GrammarService> {
    const load = this.loadXGrammar;
    if (!load) return Promise.reject(new Error('structured output is not available here (no XGrammar loader was given to the engine host)'));
    const loaded = this.loaded!;
    this.grammar ??= load().then((api) => new GrammarService(api, loaded.tokenizer, stopTokenIdsOf(loaded)));
    const p = this.grammar;
    p.catch(() => {
      if (this.grammar === p) this.grammar = null;
    });
    return p;
  }

  private async prepareConstraints(format: ResponseFormat, n: number): Promise<{ constraints: TokenConstraint[]; compileMs: number; cached: boolean }> {
    const service = await this.grammarService();
    const { constraints, compiled, cached } = await service.constraints(format, n);
    return { constraints, compileMs: compiled.compileMs, cached };
  }

  /**
   * Submits a generated workload (structured requests compiled first), its arrivals paced by the
   * work done from now on (src/serve/arrival-pacer.ts). Returns the request ids.
   */
  async runScenario(run: ScenarioRun): Promise<string[]> {
    const { engine, loaded } = this.require();
    return this.submitPrepared(engine, scenarioSpecs(run, loaded, () => this.newRequestId(), 0), true);
  }

  /** Submits recorded requests (an imported trace), their arrivals relative to now. Returns the request ids. */
  async runTrace(requests: RequestSpec[]): Promise<string[]> {
    const { engine, loaded } = this.require();
    return this.submitPrepared(engine, traceSpecs(requests, loaded, () => this.newRequestId(), engine.clock.nowMs()));
  }

  /** Compiles the constraints of the specs with a response format, then submits all or none (`paced`: their arrivals are offsets on the pacer's clock). */
  private async submitPrepared(engine: Engine, specs: RequestSpec[], paced = false): Promise<string[]> {
    const prepared: ({ constraints: TokenConstraint[]; compileMs: number; cached: boolean } | null)[] = [];
    try {
      for (const spec of specs) prepared.push(spec.responseFormat ? await this.prepareConstraints(spec.responseFormat, spec.n ?? 1) : null);
      if (this.engine !== engine) throw new Error('the engine was replaced while the grammars compiled; nothing was submitted');
      return this.submitAll(specs, prepared, paced);
    } catch (e) {
      for (const p of prepared) for (const c of p?.constraints ?? []) c.dispose?.();
      throw e;
    }
  }

  /** Whether the current engine has anything left: requests in it, or paced ones still to arrive. */
  hasWork(): boolean {
    return (this.engine?.hasWork() ?? false) || (this.pacer?.size ?? 0) > 0;
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
    const structured: Record<string, StructuredView> = {};
    for (const r of snap.requests) {
      const t = this.tracked.get(r.requestId);
      if (!t) continue;
      texts[r.requestId] = t.text.texts;
      if (t.prompt !== null) prompts[r.requestId] = t.prompt;
      if (t.structured) structured[r.requestId] = t.structured;
    }
    // Requests the pacer still holds have not arrived yet, as the engine's pending ones.
    const numHeld = this.pacer?.size ?? 0;
    const queues = numHeld > 0 ? { ...snap.queues, pending: snap.queues.pending + numHeld } : snap.queues;
    return { ...snap, queues, texts, prompts, structured, host: this.status, model: this.summary };
  }

  prometheus(): string {
    return this.engine?.prometheus() ?? '';
  }

  /** The workload's requests as text prompts of the lab's lengths on the loaded model's tokenizer. */
  benchPrompts(workload: WorkloadSpec): BenchPrompts {
    return benchPrompts(workload, this.require().loaded);
  }

  /** Requests given as lengths (the fleet's workload) as text prompts of those lengths on the loaded model's tokenizer. */
  benchTextPrompts(requests: BenchTextRequest[]): BenchPrompts {
    return benchTextPrompts(requests, this.require().loaded);
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
  private submitAll(specs: RequestSpec[], prepared: ({ constraints: TokenConstraint[]; compileMs: number; cached: boolean } | null)[] = [], paced = false): string[] {
    const engine = this.engine!;
    const options = (i: number) => (prepared[i] ? { constraints: prepared[i].constraints } : {});
    const problems = specs.flatMap((spec, i) => engine.check(spec, options(i)).map((p) => ({ path: `request ${i}`, message: `request ${i}: ${p.message}` })));
    if (problems.length > 0) throw new RangeError(listProblems('nothing was submitted', problems));
    const grammar = (spec: RequestSpec, i: number) => {
      const p = prepared[i];
      return p && spec.responseFormat ? { format: spec.responseFormat, compileMs: p.compileMs, cached: p.cached } : undefined;
    };
    if (paced) {
      // Held until the work done reaches their arrival; tracked now, so an engine stopped before
      // then reports them too.
      const items = specs.map((spec, i) => {
        const requestId = spec.requestId ?? this.newRequestId();
        this.track(requestId, null, spec, [], null, grammar(spec, i));
        return { offsetMs: spec.arrivalMs ?? 0, item: { spec: { ...spec, requestId }, options: options(i) } };
      });
      (this.pacer ??= new ArrivalPacer<PacedRequest>()).add(items);
      this.releaseArrivals(engine);
      this.loop.kick();
      return items.map((x) => x.item.spec.requestId);
    }
    const ids = specs.map((spec, i) => {
      const id = engine.submit(spec, options(i));
      this.track(id, null, spec, [], null, grammar(spec, i));
      return id;
    });
    this.loop.kick();
    return ids;
  }

  /** Submits the paced requests that are due (and, with nothing in the system, the next ones ahead of their arrival). */
  private releaseArrivals(engine: Engine): void {
    const pacer = this.pacer;
    if (!pacer || pacer.size === 0 || engine !== this.engine) return;
    for (const { item, delayMs } of pacer.release(!engine.hasWork())) {
      try {
        engine.submit({ ...item.spec, arrivalMs: engine.clock.nowMs() + delayMs }, item.options);
      } catch (e) {
        // Checked when the run was submitted; a setting changed since (a shorter context) can still refuse it.
        for (const c of item.options.constraints ?? []) c.dispose?.();
        this.message = `${item.spec.requestId} was refused when it arrived: ${(e as Error).message}`;
        const t = this.tracked.get(item.spec.requestId);
        if (t && !t.ended) {
          t.ended = true;
          t.onEvent?.({ type: 'error', requestId: t.requestId, reason: 'invalid_request', message: (e as Error).message });
        }
      }
    }
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
   * an idle gap holds no request, so it changes no latency. Requests arrive on this clock; a
   * generated workload's are submitted when the work done reaches them (this.pacer).
   */
  private async startEngine(): Promise<void> {
    const executor = this.executors.executor!;
    const config = this.engineConfig(this.settings);
    const engine = new Engine({ executor, config, clock: new VirtualClock(), modelName: this.summary?.name });
    await engine.init();
    if (executor.warmUp && !this.warmed.has(executor)) {
      // Shaders compiled and first dispatches run before any run starts (out of every latency).
      const started = performance.now();
      // What the first prompt does not need compiles after its first step (deferRest).
      await executor.warmUp({ maxTokens: config.maxNumBatchedTokens, maxSeqs: config.maxNumSeqs, deferRest: true });
      this.warmed.add(executor);
      this.warmUpMs = performance.now() - started;
    }
    if (config.maxLoras > 0) for (const a of this.adapters.values()) engine.registerAdapter(a);
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
    const held = () => (engine === this.engine ? (this.pacer?.size ?? 0) : 0);
    await this.loop.attach({
      step: async () => {
        this.releaseArrivals(engine);
        return (idleWaitMs() ?? 0) > 0 ? false : this.runStep(engine);
      },
      // A single step asked for: an idle engine jumps to the next arrival and runs that step.
      stepNow: async () => {
        this.releaseArrivals(engine);
        return (await this.runStep(engine)) || (engine.hasWork() && this.runStep(engine));
      },
      hasWork: () => engine.hasWork() || held() > 0,
      msUntilNextArrival: () => {
        this.releaseArrivals(engine);
        return idleWaitMs();
      },
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
    this.engine.releaseConstraints();
    for (const item of this.pacer?.drop() ?? []) for (const c of item.options.constraints ?? []) c.dispose?.();
    this.pacer = null;
    this.engine = null;
  }

  private track(
    requestId: string,
    prompt: string | null,
    spec: RequestSpec,
    stop: string[],
    onEvent: ((e: StreamEvent) => void) | null,
    grammar?: { format: ResponseFormat; compileMs: number; cached: boolean },
  ): void {
    const text = new TextStreamer(this.loaded!.tokenizer, spec.promptTokenIds[spec.promptTokenIds.length - 1], spec.n ?? 1, stop);
    const structured: StructuredView | null = grammar
      ? {
          type: grammar.format.type,
          name: grammar.format.type === 'json_schema' ? grammar.format.jsonSchema.name : null,
          schema: grammar.format.type === 'json_schema' ? JSON.stringify(grammar.format.jsonSchema.schema) : null,
          compileMs: grammar.compileMs,
          cached: grammar.cached,
          checks: null,
        }
      : null;
    this.tracked.set(requestId, { requestId, prompt, text, onEvent, ended: false, structured, format: grammar?.format ?? null });
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
    // Whatever the streamer still holds (a split UTF-8 character) comes out now, once.
    const flushes = e.type === 'finished' || (e.type === 'failed' && e.reason === 'cancelled' && t.text.allStopped);
    const rests = flushes ? t.text.texts.map((_, i) => t.text.flush(i)) : [];
    let checks: JsonCheck[] | undefined;
    if (t.format && t.structured && e.type === 'finished') {
      const format = t.format;
      checks = t.text.texts.map((text, i) => checkJsonOutput(text, format, e.reasons[i]));
      t.structured.checks = checks;
    }
    if (!t.onEvent) return;
    const stoppedAll = t.text.allStopped;
    if (e.type === 'finished' || (e.type === 'failed' && e.reason === 'cancelled' && stoppedAll)) {
      const n = t.text.texts.length;
      for (let i = 0; i < n; i++) {
        const rest = rests[i];
        if (rest) t.onEvent({ type: 'text', requestId: e.requestId, seqIndex: i, delta: rest });
      }
      const reasons = Array.from({ length: n }, (_, i) => (t.text.stoppedByString(i) || e.type !== 'finished' ? 'stop' : e.reasons[i]));
      t.onEvent(checks ? { type: 'done', requestId: e.requestId, texts: t.text.texts, reasons, json: checks } : { type: 'done', requestId: e.requestId, texts: t.text.texts, reasons });
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
    try {
      this.engine?.releaseConstraints();
    } catch {
      // A step still in flight keeps its matchers; they are garbage then, not a second failure.
    }
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
      const r = await engine.step();
      if (r.kind === 'ran' && engine === this.engine) this.pacer?.onStep(r.step);
      return r.kind === 'ran';
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
