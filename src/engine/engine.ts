/**
 * The engine loop: schedule -> execute -> sample -> update, one iteration per step() call, on an
 * injectable clock. Inputs (submit, cancel) take effect at step boundaries, so step() can await
 * a GPU while the UI keeps submitting. Every event goes to listeners and to an event log from
 * which replayEventLog() reproduces the run.
 */
import type { Executor, KvGeometry, LoraAdapter, LoraAdapterInfo, SeqOutput, StepOutput } from './types.ts';
import type { LoraEvent, LoraSlotView } from './loraSlots.ts';
import { Scheduler, isDecodeWork, type ScheduledStep } from './scheduler.ts';
import { DEFAULT_SCHEDULER_CONFIG, MAX_LORA_RANK, validateLiveChanges, type SchedulerConfig } from './config.ts';
import { InvalidRequestError, MAX_ID_LENGTH, Request, disposeConstraints, validateRequestSpec, type RequestProblem, type RequestSpec, type RequestState } from './request.ts';
import type { TokenConstraint } from './constraint.ts';
import type { StepMask } from './events.ts';
import { MetricsCollector, type MetricsGauges, type MetricsSummary } from './metrics.ts';
import { RealClock, isVirtualClock, type Clock } from './clock.ts';
import { Heap } from './heap.ts';
import type { Decision, EngineEvent, EventListener, KvEvent } from './events.ts';
import type { Sequence } from './request.ts';
import type { ProfileSink } from './profile.ts';
import { logitRowsOf, verifyDrafts, type VerifyResult } from './speculative.ts';

export interface EngineOptions {
  executor: Executor;
  config?: Partial<SchedulerConfig>;
  /** Default: a RealClock. With a VirtualClock the engine advances it by each step's durationMs. */
  clock?: Clock;
  /** Shown in the Prometheus exposition. */
  modelName?: string;
  /** Keep every event in `eventLog` (default true; turn off for very long simulations). */
  recordEvents?: boolean;
  /** Run assertInvariants() after every step (default: development builds and tests). */
  checkInvariants?: boolean;
  /** Replay hook: a recorded token for (stepIndex, seqId) instead of sampling. */
  sampleOverride?: (stepIndex: number, seqId: number) => number | undefined;
  /** Replay hook: the token masks a step applied, as recorded (the replay has no constraints). */
  maskOverride?: (stepIndex: number) => readonly StepMask[] | undefined;
  /** Replay hook: the recorded tokens and accepted-draft count for (stepIndex, seqId) instead of verifying drafts. */
  verifyOverride?: (stepIndex: number, seqId: number) => VerifyResult | undefined;
  /** Ended requests kept in snapshots (default 64). */
  numRecentEndedInSnapshot?: number;
  /** Step records kept for the views (default 256). */
  numStepRecords?: number;
  /** Token ids of requests must be below this (default: the executor's vocabSize, if it has one). */
  vocabSize?: number;
  /**
   * Host-time profiling (benchmarks, tests): each step's phases (schedule, execute, sample,
   * update, record, invariants) and each snapshot() are timed into it. Absent: nothing is timed.
   */
  profile?: ProfileSink;
}

/**
 * A step handed to the executor and not yet read back (async scheduling keeps one across step()
 * calls; a synchronous step is one only inside its call).
 */
interface StepInFlight {
  scheduled: ScheduledStep;
  startMs: number;
  /** Its greedy tokens stay on the device: the next step may be planned before it is read. */
  keep: boolean;
  output: Promise<Settled<StepOutput>>;
  /** Its planning's record parts, taken when it was planned ahead (null: all go to its record). */
  planned: RecordEvents | null;
  /** Host time of the executor's execute() call before it returned its promise (profiling). */
  launchMs: number;
}

type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown };

/** A promise that never rejects (a step's failure is read when the step is). */
function settle<T>(p: Promise<T>): Promise<Settled<T>> {
  return p.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error }),
  );
}

/** What a step record carries besides its view. */
type RecordEvents = Pick<StepRecord, 'preempted' | 'rejected' | 'finished' | 'kvEvents' | 'loraEvents' | 'decisions'>;

/** One sequence's share of the last step, for the batch timeline. */
export interface StepSeqView {
  seqId: number;
  requestId: string;
  numPrefillTokens: number;
  /** Decode rows, draft rows included. */
  numDecodeTokens: number;
  /** Speculative decoding: draft tokens this sequence verified in the step (absent: none). */
  numDraftTokens?: number;
  /** Of those, how many were accepted (a prefix). */
  numAcceptedTokens?: number;
}

export interface StepView {
  stepIndex: number;
  startMs: number;
  durationMs: number;
  seqs: StepSeqView[];
  numPaddingTokens: number;
  numCopies: number;
  numSwapOut: number;
  numSwapIn: number;
  /** Async scheduling: tokens computed for sequences that had ended before the step was read (a stop read late); absent: none. */
  numDiscardedTokens?: number;
}

/** One engine step with what happened to requests and to the KV cache during it (for the views). */
export interface StepRecord extends StepView {
  /** Requests preempted while this step was planned. */
  preempted: string[];
  /** Requests rejected at admission since the previous step. */
  rejected: string[];
  /** Requests that finished (or failed) in this step, or between the previous step and this one. */
  finished: string[];
  /** What the KV cache manager did since the previous step, in order. */
  kvEvents: KvEvent[];
  /** What the LoRA adapter slots did since the previous step (loads, evictions), in order. */
  loraEvents: LoraEvent[];
  /** The scheduler's decisions since the previous step, each with its reason in words. */
  decisions: Decision[];
  /** The step's token budget (maxNumBatchedTokens when it was planned). */
  tokenBudget: number;
  /**
   * KV-cache usage when the step was recorded (after its tokens were applied and its finished
   * requests let go of their blocks): GPU blocks held by some sequence / all GPU blocks, as vLLM's
   * kv_cache_usage; 1 = every block held.
   */
  kvCacheUsage: number;
  /** Present when the executor failed this step: its message (the step's requests were requeued). */
  failed?: string;
  /** Structured output: the token masks applied in this step (absent when none). */
  masks?: StepMask[];
}

/** What Engine.submit takes beside the spec. */
export interface SubmitOptions {
  /**
   * Structured output: one constraint per sequence (n of them), ready to use; the engine owns
   * them once the request is taken (it disposes of them when the request ends).
   */
  constraints?: readonly TokenConstraint[];
}

export type StepOutcome = { kind: 'ran'; step: StepRecord } | { kind: 'idle'; nextArrivalMs: number | null };

export interface RequestView {
  requestId: string;
  state: RequestState;
  tenant: string;
  priority: number;
  n: number;
  arrivalMs: number;
  deadlineAtMs: number;
  firstScheduledMs: number;
  firstTokenMs: number;
  finishedMs: number;
  numPromptTokens: number;
  /** Tokens found in the prefix cache over every admission (prompt and, after a preemption, generated). */
  numCachedPromptTokens: number;
  /** Prompt tokens found in the prefix cache on the latest admission (at most numPromptTokens). */
  numCachedPromptTokensLastAdmission: number;
  numPreemptions: number;
  /** Speculative decoding: draft tokens verified for it, and how many were accepted. */
  numDraftTokens: number;
  numAcceptedDraftTokens: number;
  endReason: string | null;
  /** Its LoRA adapter; null: the base model. */
  adapter: string | null;
  /** Structured output: the response format's type, null for free text. */
  responseFormat: 'json_object' | 'json_schema' | null;
  /** Structured output: mask cost (every sequence) and the fraction allowed at each step (sequence 0). */
  mask: { numTokens: number; totalMs: number; allowedFractions: number[] } | null;
  seqIds: number[];
  /** Per sequence. */
  numComputedTokens: number[];
  outputTokenIds: number[][];
}

export interface EngineSnapshot {
  nowMs: number;
  stepIndex: number;
  config: SchedulerConfig;
  gpuBlocks: {
    refCount: Int32Array; // [numGpuBlocks]
    numFilled: Int32Array; // [numGpuBlocks] token slots holding K/V (most of any holder)
    ownerSeqId: Int32Array; // [numGpuBlocks] one holder (lowest seqId), -1 when free
    cached: Uint8Array; // [numGpuBlocks] 1 when the block is in the prefix cache (free + cached = evictable)
  };
  /** blockId -> every holder, for blocks held by more than one sequence. */
  sharedBlockOwners: Record<number, number[]>;
  cpuBlocks: {
    refCount: Int32Array; // [numCpuBlocks]
    ownerSeqId: Int32Array; // [numCpuBlocks] -1 when free
  };
  /** seqId -> its block table (GPU block ids, or CPU block ids while swapped), logical order. */
  blockTables: Record<number, number[]>;
  /** Prefix-cache hash of each GPU block, -1 when none. */
  blockHashes: Float64Array; // [numGpuBlocks]
  /** The step records after the `sinceStepIndex` asked for (at most the last numStepRecords), oldest first. */
  recentSteps: StepRecord[];
  queues: { running: string[]; waiting: string[]; swapped: string[]; pending: number };
  requests: RequestView[];
  lastStep: StepRecord | null;
  metrics: MetricsSummary;
  fairShareCounters: Record<string, number>;
  /** The LoRA adapter slots (maxLoras of them): what each holds, who uses it. */
  loraSlots: LoraSlotView[];
  /** Registered LoRA adapters, by name. */
  adapters: LoraAdapterInfo[];
  /** Adapter loads and evictions since the engine started. */
  loraStats: { numLoads: number; numEvictions: number };
}

function defaultCheckInvariants(): boolean {
  const env = (import.meta as { env?: { DEV?: boolean } }).env;
  return env?.DEV ?? false;
}

export class Engine {
  private readonly scheduler: Scheduler;
  private executorImpl: Executor;
  readonly clock: Clock;
  readonly metrics = new MetricsCollector();
  readonly eventLog: EngineEvent[] = [];
  readonly modelName: string;
  private readonly listeners = new Set<EventListener>();
  private readonly pending = new Heap<Request>((a, b) => (a.arrivalMs - b.arrivalMs || a.order - b.order) < 0);
  /** Requests submitted and not yet handed to the scheduler, by id. */
  private readonly pendingById = new Map<string, Request>();
  private readonly vocabSizeOption: number | undefined;
  private readonly deferredCancels: string[] = [];
  private readonly deferredChanges: Partial<SchedulerConfig>[] = [];
  private readonly recordEvents: boolean;
  private readonly checkInvariants: boolean;
  private readonly sampleOverride: EngineOptions['sampleOverride'];
  private readonly maskOverride: EngineOptions['maskOverride'];
  private readonly verifyOverride: EngineOptions['verifyOverride'];
  private readonly profile: ProfileSink | undefined;
  private readonly numRecentEnded: number;
  private readonly recentEnded: Request[] = [];
  private nextOrder = 0;
  /** Registered LoRA adapters by name (with weights when they came with them; a replay has none). */
  private readonly adapters = new Map<string, LoraAdapterInfo | LoraAdapter>();
  /** metrics.numSteps when the scheduler's service rates were last set. */
  private ratesAtStep = 0;
  private stepping = false;
  /** Async scheduling: the step executed and not yet read back (the next one is planned before it is read). */
  private inFlight: StepInFlight | null = null;
  private configured = false;
  private readonly numStepRecords: number;
  private lastCompletedStep = 0;
  /** The last steps, oldest first (a bounded ring for the views). */
  private readonly stepRecords: StepRecord[] = [];
  /** Request events since the last step record. */
  private pendingRequestEvents: { preempted: string[]; rejected: string[]; finished: string[] } = { preempted: [], rejected: [], finished: [] };

  constructor(options: EngineOptions) {
    this.executorImpl = options.executor;
    this.clock = options.clock ?? new RealClock();
    this.modelName = options.modelName ?? options.executor.name;
    this.recordEvents = options.recordEvents ?? true;
    this.checkInvariants = options.checkInvariants ?? defaultCheckInvariants();
    this.sampleOverride = options.sampleOverride;
    this.maskOverride = options.maskOverride;
    this.verifyOverride = options.verifyOverride;
    this.profile = options.profile;
    this.numRecentEnded = options.numRecentEndedInSnapshot ?? 64;
    this.numStepRecords = options.numStepRecords ?? 256;
    this.vocabSizeOption = options.vocabSize;
    this.scheduler = new Scheduler({ ...DEFAULT_SCHEDULER_CONFIG, ...options.config }, (e) => this.emit(e));
  }

  get executor(): Executor {
    return this.executorImpl;
  }

  /**
   * Swaps in a new executor after the old one lost its memory (e.g. a lost GPU device): the new
   * one gets the KV geometry, and every running or swapped request is recomputed on it.
   */
  async replaceExecutor(executor: Executor): Promise<void> {
    if (this.stepping) throw new Error('Engine.replaceExecutor() called while a step is in flight');
    const c = this.config;
    await executor.configure(geometryOf(c));
    // Async scheduling: a step left in flight on the old executor settles first (then is dropped below).
    if (this.inFlight) await this.inFlight.output;
    this.executorImpl = executor;
    this.configured = true;
    for (const a of this.adapters.values()) if ('layers' in a) executor.registerAdapter?.(a);
    this.requeueAfterExecutorLoss();
  }

  /** The executor's memory is gone: log it, and requeue every running and swapped request for recompute. */
  requeueAfterExecutorLoss(): void {
    if (this.stepping) throw new Error('Engine.requeueAfterExecutorLoss() called while a step is in flight');
    this.emit({ type: 'executorReplaced', timeMs: this.clock.nowMs(), stepIndex: this.scheduler.stepIndex });
    this.scheduler.requeueAllForRecompute(this.clock.nowMs());
    // Async scheduling: a step left in flight read memory that is gone; its output is never applied.
    const left = this.inFlight;
    this.inFlight = null;
    if (left) this.discard(left, 'the executor lost its memory before this step was read');
    if (this.checkInvariants) this.scheduler.assertInvariants();
  }


  get config(): SchedulerConfig {
    return this.scheduler.config;
  }

  /** Subscribes to events; returns the unsubscribe function. */
  on(listener: EventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Hands the executor its KV geometry (done by the first step if not called). */
  async init(): Promise<void> {
    if (this.configured) return;
    const c = this.config;
    await this.executor.configure(geometryOf(c));
    this.configured = true;
  }

  /** Token ids a request may use: 0 .. vocabSize-1 (undefined: unchecked). */
  get vocabSize(): number | undefined {
    return this.vocabSizeOption ?? this.executorImpl.vocabSize;
  }

  /**
   * Every problem that would make submit() refuse this spec ([] when it would be taken): its
   * fields (validateRequestSpec, token ids against the vocabulary) and a requestId already used.
   */
  check(spec: unknown, options: SubmitOptions = {}): RequestProblem[] {
    const problems = validateRequestSpec(spec, { vocabSize: this.vocabSize, adapters: new Set(this.config.maxLoras > 0 ? this.adapters.keys() : []) });
    const id = (spec as { requestId?: unknown } | null)?.requestId;
    if (typeof id === 'string' && this.isKnownId(id)) problems.push({ field: 'requestId', message: `requestId ${JSON.stringify(id)} is already in use` });
    const s = spec as Partial<RequestSpec> | null;
    const n = s?.n ?? 1;
    const cs = options.constraints;
    if (cs !== undefined && cs.length !== n) {
      problems.push({ field: 'constraints', message: `${cs.length} constraints for ${n} sequences (one per sequence)` });
    }
    // A replay takes its tokens from the log: there the format needs no constraint.
    if (s?.responseFormat !== undefined && cs === undefined && !this.sampleOverride) {
      problems.push({ field: 'responseFormat', message: 'responseFormat needs its compiled constraints (the serve layer compiles them: EngineHost.submitCompletion)' });
    }
    return problems;
  }

  /**
   * Registers a LoRA adapter under its name, so requests may name it (`adapter`). Its weights go to
   * the executor (Executor.registerAdapter), which loads them into a slot when a plan says so; the
   * engine keeps only the name, rank and scale (a replay registers those alone). Logged as an input.
   * A name is registered once per engine (a slot may still hold its weights: replacing them under
   * the same name would serve stale ones). Throws a RangeError for a name already registered, when
   * adapters are off (maxLoras 0) or when its rank exceeds maxLoraRank.
   */
  registerAdapter(adapter: LoraAdapterInfo | LoraAdapter): void {
    const c = this.config;
    if (c.maxLoras === 0) throw new RangeError(`LoRA adapter ${adapter.name}: adapters are off (maxLoras is 0)`);
    if (typeof adapter.name !== 'string' || adapter.name.length === 0 || adapter.name.length > MAX_ID_LENGTH) throw new RangeError(`a LoRA adapter needs a name of 1 to ${MAX_ID_LENGTH} characters`);
    if (this.adapters.has(adapter.name)) throw new RangeError(`LoRA adapter ${adapter.name} is already registered; give the new one another name`);
    if (!Number.isInteger(adapter.rank) || adapter.rank < 1 || adapter.rank > c.maxLoraRank) {
      throw new RangeError(`LoRA adapter ${adapter.name}: rank ${adapter.rank} exceeds maxLoraRank ${c.maxLoraRank} (raise maxLoraRank, up to ${MAX_LORA_RANK})`);
    }
    if (!Number.isFinite(adapter.scale)) throw new RangeError(`LoRA adapter ${adapter.name}: its scale must be finite, got ${adapter.scale}`);
    if ('layers' in adapter) this.executorImpl.registerAdapter?.(adapter);
    this.adapters.set(adapter.name, adapter);
    this.emit({ type: 'adapterRegistered', timeMs: this.clock.nowMs(), stepIndex: this.scheduler.stepIndex, adapter: { name: adapter.name, rank: adapter.rank, scale: adapter.scale } });
  }

  /** Names of the registered LoRA adapters. */
  get adapterNames(): string[] {
    return [...this.adapters.keys()];
  }

  /**
   * Queues a request (it reaches the scheduler at the first step at or after its arrival).
   * A spec with any problem (see check()) is refused at once with an InvalidRequestError naming
   * each one; nothing of it enters the engine and no event is logged.
   */
  submit(spec: RequestSpec, options: SubmitOptions = {}): string {
    const problems = this.check(spec, options);
    if (problems.length > 0) throw new InvalidRequestError(problems, spec?.requestId !== undefined ? `request ${String(spec.requestId)}` : 'request');
    const order = this.nextOrder++;
    let requestId = spec.requestId ?? `req-${order}`;
    for (let k = 1; spec.requestId === undefined && this.isKnownId(requestId); k++) requestId = `req-${order}-${k}`;
    const arrivalMs = spec.arrivalMs ?? this.clock.nowMs();
    const request = new Request(spec, requestId, arrivalMs, order, options.constraints ?? null);
    this.pending.push(request);
    this.pendingById.set(requestId, request);
    this.emit({
      type: 'submit',
      timeMs: this.clock.nowMs(),
      stepIndex: this.scheduler.stepIndex,
      request: { ...spec, requestId, arrivalMs },
    });
    return requestId;
  }

  private isKnownId(requestId: string): boolean {
    return this.pendingById.has(requestId) || this.scheduler.requests.has(requestId);
  }

  /**
   * Frees the constraints (grammar matchers) of every request still in the engine, for an engine
   * being dropped with requests in flight (nothing else ends them). Not while a step runs.
   */
  releaseConstraints(): void {
    if (this.stepping) throw new Error('Engine.releaseConstraints() called while a step is in flight');
    for (const r of this.pendingById.values()) disposeConstraints(r);
    for (const r of this.scheduler.live) disposeConstraints(r);
  }

  /** Cancels a request; takes effect now between steps, or right after the step in flight. */
  cancel(requestId: string): void {
    this.emit({ type: 'cancel', timeMs: this.clock.nowMs(), stepIndex: this.scheduler.stepIndex, requestId });
    if (this.stepping) this.deferredCancels.push(requestId);
    else this.applyCancel(requestId);
  }

  /**
   * Changes scheduler settings live (Scheduler.reconfigure: policy, budgets, preemption mode,
   * admission limits); takes effect now between steps, or right after the step in flight.
   * Throws at once for settings that need a new engine.
   */
  reconfigure(changes: Partial<SchedulerConfig>): void {
    this.scheduler.checkLiveChanges(changes); // throws now, without touching this engine
    if (this.stepping) this.deferredChanges.push({ ...changes });
    else this.applyReconfigure(changes);
  }

  /** Logged when applied (after the step in flight, if any), so a replay applies it at the same point. */
  private applyReconfigure(changes: Partial<SchedulerConfig>): void {
    this.emit({ type: 'reconfigure', timeMs: this.clock.nowMs(), stepIndex: this.scheduler.stepIndex, changes: { ...changes } });
    this.scheduler.reconfigure(changes);
  }

  /** True while anything is pending, queued, running or swapped. */
  hasWork(): boolean {
    return this.pending.size > 0 || this.scheduler.hasWork() || this.inFlight !== null;
  }

  /** True while a request is queued, running or swapped (not counting ones yet to arrive). */
  hasAdmittedWork(): boolean {
    return this.scheduler.hasWork();
  }

  /**
   * Index of the last step that ran to the end (steps count from 1). A step in flight is not
   * counted: the scheduler numbers a step when it plans it, so its own index runs one ahead then.
   */
  get stepIndex(): number {
    return this.lastCompletedStep;
  }

  /** Preemptions since the engine started. */
  get numPreemptions(): number {
    return this.scheduler.numPreemptions;
  }

  /** Every request the scheduler has seen (live and ended), in admission order. */
  requests(): IterableIterator<Request> {
    return this.scheduler.requests.values();
  }

  /** KV blocks in use / total, [0, 1], without kvGauges()' walk over every block (routers, autoscalers). */
  kvUsage(): number {
    return this.scheduler.kvUsage();
  }

  /** The KV cache's gauges now (usage, fragmentation, free blocks, prefix-cache counters). */
  kvGauges(): ReturnType<Scheduler['kvGauges']> {
    return this.scheduler.kvGauges();
  }

  /** Arrival time of the next request not yet handed to the scheduler. */
  nextArrivalMs(): number | null {
    return this.pending.peek()?.arrivalMs ?? null;
  }

  /**
   * One iteration. When nothing can run, returns 'idle'; on a VirtualClock with nothing in the
   * system it first jumps the clock to the next arrival.
   */
  async step(): Promise<StepOutcome> {
    if (this.stepping) throw new Error('Engine.step() called while a step is in flight');
    this.stepping = true;
    const prof = this.profile;
    try {
      if (!this.configured) await this.init();
      // At most two turns: a first step whose tokens stay on the device has nothing to read back
      // yet, so the next one is planned ahead before it is read (async scheduling).
      for (;;) {
        const prev = this.inFlight;
        if (prev && !prev.keep) {
          // Planned ahead, but it samples on the host: nothing is planned before it is read.
          this.inFlight = null;
          return { kind: 'ran', step: await this.complete(prev) };
        }
        const t0 = prof ? performance.now() : 0;
        const startMs = this.clock.nowMs();
        this.updateServiceRates();
        this.admitArrivals(startMs);
        this.scheduler.expire(startMs);
        const scheduled = this.scheduler.schedule(startMs);
        const plan = scheduled.plan;
        if (plan.seqs.length === 0 && plan.swapOut.length === 0 && plan.swapIn.length === 0 && !plan.numPaddingTokens) {
          if (prev) {
            this.inFlight = null;
            return { kind: 'ran', step: await this.complete(prev) };
          }
          const next = this.nextArrivalMs();
          if (isVirtualClock(this.clock) && next !== null && !this.scheduler.hasWork()) this.clock.advanceTo(next);
          if (this.checkInvariants) this.scheduler.assertInvariants();
          return { kind: 'idle', nextArrivalMs: next };
        }
        if (prof) {
          prof.countStep();
          prof.add('schedule', performance.now() - t0);
        }
        const keep = this.asyncScheduling && this.scheduler.canKeepSampled(scheduled);
        if (keep) plan.keepSampledTokens = true;
        // The executor submits the step before its promise settles; nothing is awaited here.
        const l0 = prof ? performance.now() : 0;
        const output = settle(this.executor.execute(plan));
        const current: StepInFlight = { scheduled, startMs, keep, output, planned: null, launchMs: prof ? performance.now() - l0 : 0 };
        if (!prev && !keep) return { kind: 'ran', step: await this.complete(current) }; // synchronous, as without the setting
        // It stays in flight past this turn: its positions count as computed now, its sampled
        // rows as placeholders the next plan feeds; what its planning did goes to its own record.
        this.scheduler.afterSchedule(scheduled, keep);
        current.planned = this.takeRecordEvents();
        this.inFlight = current;
        if (prev) return { kind: 'ran', step: await this.complete(prev) };
      }
    } finally {
      this.stepping = false;
      for (const changes of this.deferredChanges.splice(0)) this.applyReconfigure(changes);
    }
  }

  /** Async scheduling is on: the setting, an executor that keeps its tokens on the device, and no replay hooks. */
  private get asyncScheduling(): boolean {
    return this.config.asyncScheduling && this.executorImpl.tokenFeedback === true && !this.sampleOverride && !this.verifyOverride && !this.maskOverride;
  }

  /**
   * Reads a step's output back and applies it: sampling, stops, metrics, its 'step' event and
   * record. A step that failed requeues every request for recompute (and drops the step planned
   * after it, if one is in flight) and throws its error.
   */
  private async complete(inFlight: StepInFlight): Promise<StepRecord> {
    const { scheduled, startMs } = inFlight;
    const plan = scheduled.plan;
    const prof = this.profile;
    // Profiling: `t` is where the phase being timed began (performance.now(), only with a sink).
    let t = prof ? performance.now() : 0;
    const lap = (phase: 'execute' | 'update' | 'record' | 'invariants'): void => {
      const now = performance.now();
      prof!.add(phase, now - t);
      t = now;
    };
    const result = await inFlight.output;
    if (!result.ok) {
      const e = result.error as Error;
      // Logged so a replay fails the same step: its plan (admissions, allocations) happened.
      this.emit({ type: 'stepFailed', timeMs: this.clock.nowMs(), startMs, stepIndex: plan.stepIndex, message: e.message });
      // What the executor's memory holds is now unknown: nothing keeps blocks allocated for a
      // step that did not run; every running and swapped request waits to be recomputed
      // (generated tokens and samplers kept), so the engine can go on or be stepped again.
      this.scheduler.requeueAllForRecompute(this.clock.nowMs());
      const next = this.inFlight;
      this.inFlight = null;
      for (const id of this.deferredCancels.splice(0)) this.applyCancel(id);
      const failure = { stepIndex: plan.stepIndex, startMs, durationMs: 0, seqs: [], numPaddingTokens: 0, numCopies: 0, numSwapOut: 0, numSwapIn: 0 };
      this.recordStep(failure, e.message, [], inFlight.planned);
      if (next) {
        // Async scheduling: the step planned after it read what it would have sampled; drop it too.
        await next.output;
        this.discard(next, `step ${plan.stepIndex} failed before its tokens were read (${e.message})`);
      }
      if (this.checkInvariants) this.scheduler.assertInvariants();
      throw e;
    }
    const output = result.value;
    if (prof) {
      // The executor's host work before its promise (pack, upload, encode, submit) counts too.
      t -= inFlight.launchMs;
      lap('execute');
    }
    if (isVirtualClock(this.clock)) this.clock.advance(output.durationMs);
    const endMs = this.clock.nowMs();
    const seqViews = new Map<number, StepSeqView>();
    for (const w of scheduled.work) {
      const v = seqViews.get(w.seq.seqId) ?? { seqId: w.seq.seqId, requestId: w.seq.request.requestId, numPrefillTokens: 0, numDecodeTokens: 0 };
      if (w.isDecode ?? isDecodeWork(w)) v.numDecodeTokens += w.numNewTokens;
      else v.numPrefillTokens += w.numNewTokens;
      seqViews.set(v.seqId, v);
    }
    const override = this.sampleOverride;
    let sample = override ? (seq: Sequence, out: SeqOutput) => override(plan.stepIndex, seq.seqId) ?? seq.sampler.sample(out) : undefined;
    let sampleMs = 0;
    if (prof) {
      // Each sampler call timed; the rest of update() is 'update'.
      const inner = sample ?? ((seq: Sequence, out: SeqOutput) => seq.sampler.sample(out));
      sample = (seq, out) => {
        const s0 = performance.now();
        const tokenId = inner(seq, out);
        sampleMs += performance.now() - s0;
        return tokenId;
      };
    }
    const vOverride = this.verifyOverride;
    const verify = (seq: Sequence, out: SeqOutput, drafts: readonly number[]): VerifyResult => {
      const s0 = prof ? performance.now() : 0;
      const result = vOverride?.(plan.stepIndex, seq.seqId) ?? verifyDrafts(seq.sampler, drafts, logitRowsOf(out));
      if (prof) sampleMs += performance.now() - s0;
      return result;
    };
    const { sampled, drafts, numDiscardedTokens } = this.scheduler.update(scheduled, output, endMs, sample, verify);
    const recorded = this.maskOverride?.(plan.stepIndex);
    if (recorded) this.scheduler.observeMasks(recorded);
    const masks = this.scheduler.takeMasks();
    for (const d of drafts) {
      const v = seqViews.get(d.seqId);
      if (v) {
        v.numDraftTokens = d.numDraftTokens;
        v.numAcceptedTokens = d.numAcceptedTokens;
      }
      this.metrics.observeDrafts(d.numDraftTokens, d.numAcceptedTokens);
    }
    const numRejectedDrafts = drafts.reduce((n, d) => n + d.numDraftTokens - d.numAcceptedTokens, 0);
    const touched = new Set<Request>();
    for (const w of scheduled.work) touched.add(w.seq.request);
    for (const r of touched) if (!r.isDone) this.metrics.observeProgress(r);
    // Generation counts the tokens produced: a verified sequence's rows less its rejected drafts,
    // less tokens computed after a stop that was read late (async scheduling).
    this.metrics.observeStep(endMs, output.durationMs, plan.seqs.length, scheduled.numPrefillTokens, scheduled.numDecodeTokens - numRejectedDrafts - numDiscardedTokens);
    if (prof) {
      prof.add('sample', sampleMs);
      t += sampleMs;
      lap('update');
    }

    const view: StepView = {
      stepIndex: plan.stepIndex,
      startMs,
      durationMs: output.durationMs,
      seqs: [...seqViews.values()],
      numPaddingTokens: plan.numPaddingTokens ?? 0,
      numCopies: plan.copies.length,
      numSwapOut: plan.swapOut.length,
      numSwapIn: plan.swapIn.length,
    };
    if (numDiscardedTokens > 0) view.numDiscardedTokens = numDiscardedTokens;
    this.emit({
      type: 'step',
      timeMs: endMs,
      startMs,
      stepIndex: plan.stepIndex,
      durationMs: output.durationMs,
      numSeqs: plan.seqs.length,
      numPrefillTokens: scheduled.numPrefillTokens,
      numDecodeTokens: scheduled.numDecodeTokens,
      numPaddingTokens: plan.numPaddingTokens ?? 0,
      sampled,
      ...(masks.length > 0 ? { masks } : {}),
      ...(drafts.length > 0 ? { drafts: drafts.map((d): [number, number, number] => [d.seqId, d.numDraftTokens, d.numAcceptedTokens]) } : {}),
      ...(numDiscardedTokens > 0 ? { numDiscardedTokens } : {}),
    });
    for (const id of this.deferredCancels.splice(0)) this.applyCancel(id);
    if (this.checkInvariants) {
      if (prof) lap('record');
      this.scheduler.assertInvariants();
      if (prof) lap('invariants');
    }
    const record = this.recordStep(view, undefined, masks, inFlight.planned);
    if (prof) lap('record');
    return record;
  }

  /**
   * Async scheduling: a step in flight whose tokens will never be applied (the executor lost its
   * memory, or the step before it failed): logged and recorded as failed. Its requests were
   * requeued for recompute by the caller.
   */
  private discard(inFlight: StepInFlight, why: string): void {
    const { startMs, scheduled } = inFlight;
    const stepIndex = scheduled.plan.stepIndex;
    this.emit({ type: 'stepFailed', timeMs: this.clock.nowMs(), startMs, stepIndex, message: why });
    this.recordStep({ stepIndex, startMs, durationMs: 0, seqs: [], numPaddingTokens: 0, numCopies: 0, numSwapOut: 0, numSwapIn: 0 }, why, [], inFlight.planned);
  }

  /** The record parts gathered since the last record (a step planned ahead keeps its planning's own). */
  private takeRecordEvents(): RecordEvents {
    const parts: RecordEvents = {
      ...this.pendingRequestEvents,
      kvEvents: this.scheduler.takeKvEvents(),
      loraEvents: this.scheduler.takeLoraEvents(),
      decisions: this.scheduler.takeDecisions(),
    };
    this.pendingRequestEvents = { preempted: [], rejected: [], finished: [] };
    return parts;
  }

  /**
   * Steps until nothing is left (virtual clock) or nothing can run now (real clock, where the
   * caller waits for arrivals). Returns the number of steps that ran.
   */
  async runUntilIdle(options: { maxSteps?: number; signal?: AbortSignal } = {}): Promise<number> {
    const maxSteps = options.maxSteps ?? Infinity;
    let numSteps = 0;
    while (this.hasWork() && numSteps < maxSteps && !options.signal?.aborted) {
      const r = await this.step();
      if (r.kind === 'ran') numSteps++;
      else if (!isVirtualClock(this.clock) || r.nextArrivalMs === null) {
        if (this.scheduler.hasWork() && r.nextArrivalMs === null && isVirtualClock(this.clock)) {
          throw new Error('the engine has queued requests but cannot schedule any (configuration too small?)');
        }
        break;
      }
    }
    return numSteps;
  }

  getRequest(requestId: string): Request | undefined {
    return this.scheduler.requests.get(requestId);
  }

  /** Gauges read from the scheduler and the KV cache manager now. */
  gauges(): MetricsGauges {
    const kv = this.scheduler.kvGauges();
    return {
      numRunning: this.scheduler.running.length,
      numWaiting: this.scheduler.numWaiting,
      numSwapped: this.scheduler.swapped.length,
      numRunningSeqs: this.scheduler.numRunningSeqSlots(),
      kvUsage: kv.usage,
      kvFragmentation: kv.fragmentation,
      cpuUsage: kv.cpuUsage,
      numPrefixQueryTokens: kv.stats.numPrefixQueryTokens,
      numPrefixHitTokens: kv.stats.numPrefixHitTokens,
    };
  }

  metricsSummary(): MetricsSummary {
    return this.metrics.summary(this.clock.nowMs(), this.gauges());
  }

  /** Prometheus text exposition (vLLM's metric names). */
  prometheus(): string {
    return this.metrics.prometheus(this.gauges(), this.modelName);
  }

  /** The step records after `sinceStepIndex` (-1: none), oldest first. */
  stepsSince(sinceStepIndex: number): StepRecord[] {
    if (sinceStepIndex < 0) return [];
    const out: StepRecord[] = [];
    for (let i = this.stepRecords.length - 1; i >= 0 && this.stepRecords[i].stepIndex > sinceStepIndex; i--) out.push(this.stepRecords[i]);
    return out.reverse();
  }

  /**
   * Plain data for the views (typed arrays for per-block state; postMessage-friendly), with the
   * step records after `sinceStepIndex` (-1: none).
   */
  snapshot(sinceStepIndex = -1): EngineSnapshot {
    const prof = this.profile;
    const t0 = prof ? performance.now() : 0;
    const snap = this.takeSnapshot(sinceStepIndex);
    if (prof) prof.add('snapshot', performance.now() - t0);
    return snap;
  }

  private takeSnapshot(sinceStepIndex: number): EngineSnapshot {
    const kv = this.scheduler.kvBlockView();
    const requests: RequestView[] = [];
    for (const r of this.scheduler.live) requests.push(requestView(r));
    for (const r of this.recentEnded) requests.push(requestView(r));
    return {
      nowMs: this.clock.nowMs(),
      stepIndex: this.lastCompletedStep,
      config: { ...this.config },
      gpuBlocks: { refCount: kv.gpu.refCount, numFilled: kv.gpu.numFilled, ownerSeqId: kv.gpu.ownerSeqId, cached: kv.gpu.cached },
      sharedBlockOwners: kv.sharedBlockOwners,
      cpuBlocks: { refCount: kv.cpu.refCount, ownerSeqId: kv.cpu.ownerSeqId },
      blockTables: kv.blockTables,
      blockHashes: kv.gpu.hashes,
      recentSteps: this.stepsSince(sinceStepIndex),
      queues: {
        running: this.scheduler.running.map((r) => r.requestId),
        waiting: this.scheduler.waiting.map((r) => r.requestId),
        swapped: this.scheduler.swapped.map((r) => r.requestId),
        pending: this.pending.size,
      },
      requests,
      lastStep: this.stepRecords.at(-1) ?? null,
      metrics: this.metricsSummary(),
      fairShareCounters: this.scheduler.policy.counters(),
      loraSlots: this.scheduler.loraSlotView(),
      adapters: [...this.adapters.values()].map(({ name, rank, scale }) => ({ name, rank, scale })),
      loraStats: this.scheduler.loraStats(),
    };
  }

  /**
   * Closes a step: its view, the request events and the KV events since the previous record (for
   * a step planned ahead, those of its own planning, `planned`, first).
   */
  private recordStep(view: StepView, failed?: string, masks: StepMask[] = [], planned: RecordEvents | null = null): StepRecord {
    const now = this.takeRecordEvents();
    const parts = planned
      ? {
          preempted: [...planned.preempted, ...now.preempted],
          rejected: [...planned.rejected, ...now.rejected],
          finished: [...planned.finished, ...now.finished],
          kvEvents: [...planned.kvEvents, ...now.kvEvents],
          loraEvents: [...planned.loraEvents, ...now.loraEvents],
          decisions: [...planned.decisions, ...now.decisions],
        }
      : now;
    const record: StepRecord = { ...view, ...parts, tokenBudget: this.config.maxNumBatchedTokens, kvCacheUsage: this.scheduler.kvUsage() };
    if (masks.length > 0) record.masks = masks;
    if (failed !== undefined) record.failed = failed;
    this.stepRecords.push(record);
    this.lastCompletedStep = record.stepIndex;
    if (this.stepRecords.length > this.numStepRecords) this.stepRecords.splice(0, this.stepRecords.length - this.numStepRecords);
    return record;
  }

  private applyCancel(requestId: string): void {
    const r = this.pendingById.get(requestId);
    if (r) {
      // Not yet arrived: it goes straight to failed.
      this.pending.remove(r);
      this.pendingById.delete(requestId);
      disposeConstraints(r);
      r.state = 'failed';
      r.endReason = 'cancelled';
      r.finishedMs = this.clock.nowMs();
      this.scheduler.requests.set(r.requestId, r);
      this.emit({ type: 'failed', timeMs: r.finishedMs, requestId, reason: 'cancelled' });
      return;
    }
    this.scheduler.cancel(requestId, this.clock.nowMs());
  }

  private admitArrivals(nowMs: number): void {
    for (let r = this.pending.peek(); r && r.arrivalMs <= nowMs; r = this.pending.peek()) {
      this.pending.pop();
      this.pendingById.delete(r.requestId);
      this.scheduler.add(r, nowMs);
    }
  }

  /** Hands the scheduler the recent service rates (deadline admission), once per completed step. */
  private updateServiceRates(): void {
    const m = this.metrics;
    if (m.numSteps === this.ratesAtStep) return;
    this.ratesAtStep = m.numSteps;
    // Read only by deadline admission: computed on first use within the step (the ITL median
    // sorts the rolling window), the same values as if computed here, since the metrics do not
    // change before the step's execute.
    let tokensPerMs: number | undefined;
    let itlMs: number | undefined;
    this.scheduler.serviceRates = {
      get tokensPerMs(): number {
        if (tokensPerMs === undefined) {
          const tp = m.throughput();
          tokensPerMs = (tp.prefillTokensPerS + tp.decodeTokensPerS) / 1000;
        }
        return tokensPerMs;
      },
      get itlMs(): number {
        return (itlMs ??= m.itlMs.size > 0 ? m.itlMs.stats().p50 : 0);
      },
    };
  }

  private emit(e: EngineEvent): void {
    if (this.recordEvents) this.eventLog.push(e);
    if (e.type === 'preempted') this.pendingRequestEvents.preempted.push(e.requestId);
    else if (e.type === 'rejected') this.pendingRequestEvents.rejected.push(e.requestId);
    else if (e.type === 'finished' || e.type === 'failed') this.pendingRequestEvents.finished.push(e.requestId);
    if (e.type === 'finished' || e.type === 'failed' || e.type === 'rejected') {
      const r = this.scheduler.requests.get(e.requestId);
      if (r) {
        this.metrics.observeEnd(r);
        this.recentEnded.push(r);
        if (this.recentEnded.length > this.numRecentEnded) this.recentEnded.shift();
      }
    } else if (e.type === 'preempted') {
      this.metrics.observePreemption();
    }
    for (const l of this.listeners) l(e);
  }
}

function requestView(r: Request): RequestView {
  return {
    requestId: r.requestId,
    state: r.state,
    tenant: r.tenant,
    priority: r.priority,
    n: r.n,
    arrivalMs: r.arrivalMs,
    deadlineAtMs: r.deadlineAtMs,
    firstScheduledMs: r.firstScheduledMs,
    firstTokenMs: r.firstTokenMs,
    finishedMs: r.finishedMs,
    numPromptTokens: r.numPromptTokens,
    numCachedPromptTokens: r.numCachedPromptTokens,
    numCachedPromptTokensLastAdmission: r.numCachedPromptTokensLastAdmission,
    numPreemptions: r.numPreemptions,
    numDraftTokens: r.numDraftTokens,
    numAcceptedDraftTokens: r.numAcceptedDraftTokens,
    endReason: r.endReason,
    adapter: r.adapter,
    responseFormat: r.spec.responseFormat?.type ?? null,
    mask: r.mask ? { numTokens: r.mask.numTokens, totalMs: r.mask.totalMs, allowedFractions: r.mask.allowedFractions.slice() } : null,
    seqIds: r.seqs.map((s) => s.seqId),
    numComputedTokens: r.seqs.map((s) => s.numComputedTokens),
    outputTokenIds: r.seqs.map((s) => s.outputTokenIds),
  };
}

/** The executor's geometry from the engine's settings: the KV pools and the LoRA slots. */
function geometryOf(c: SchedulerConfig): KvGeometry {
  return { blockSize: c.blockSize, numGpuBlocks: c.numGpuBlocks, numCpuBlocks: c.numCpuBlocks, maxLoras: c.maxLoras, maxLoraRank: c.maxLoraRank };
}
