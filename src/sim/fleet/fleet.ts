/**
 * runFleet: a discrete-event simulation of a serving fleet on simulated time. Each replica is a
 * real Engine (the real Scheduler and KvCacheManager) driving a SimExecutor (roofline cost model)
 * on its own VirtualClock; the fleet's event queue keeps them in step:
 *
 *   arrival          quota check (tokens per minute), then the input moderation check, then the router
 *   moderation       an input check done (route it or refuse it), an output chunk flagged (cancel
 *                    the stream: content_filter), a request's last chunk checked (it ends)
 *   step done        a replica's engine step ran from its start to now: its events (scheduled,
 *                    tokens, preemptions, ends) take effect, and the next step starts at once
 *   autoscaler tick  measure the pool's metric, decide (autoscaler.ts), order or drain replicas
 *   cold start       a replica ordered by the autoscaler warms up, then serves
 *   spot notice/loss the replica drains (its queued requests move at once), then disappears: its
 *                    requests are re-routed (their tokens so far join the prompt: recompute) or fail
 *   sample tick      replica samples and fleet series
 *
 * A step is run (Engine.step) when the fleet clock reaches its start; it moves the replica's clock
 * to its end at once, and what it did is held back (buffered events) until the fleet clock gets
 * there. Requests sent to a replica mid-step arrive in its engine at their time and are admitted at
 * the next step boundary, as in the engine itself. A replica lost mid-step loses that step.
 *
 * Every request's life is split into contiguous phases (queue, moderation, prefill, decode,
 * preempted, recompute) from the events, so its breakdown adds up to its E2E exactly. Seeded and
 * deterministic: the same spec gives the same result. Every figure is SIMULATED.
 */
import { Engine } from '../../engine/engine.ts';
import { VirtualClock } from '../../engine/clock.ts';
import { DEFAULT_SCHEDULER_CONFIG } from '../../engine/scheduler.ts';
import type { EngineEvent } from '../../engine/events.ts';
import { HARDWARE_PRESETS, MODEL_PRESETS } from '../presets.ts';
import { SimExecutor } from '../simExecutor.ts';
import { Heap } from '../../engine/heap.ts';
import type {
  AutoscalerDecision,
  FleetFinishReason,
  FleetRequestRecord,
  FleetResult,
  FleetSeries,
  FleetSpec,
  FleetSummary,
  PoolSpec,
  ReplicaRecord,
  ReplicaState,
  RequestBreakdown,
  RequestPhase,
  RequestSpan,
  RouterDecision,
} from './types.ts';
import { validateFleetSpec, checkDeployment, BLOCK_SIZE } from './validate.ts';
import { planFleetWorkload, PromptTokens, arrivalRateAt, type FleetRequestPlan } from './workload.ts';
import { route, keepRouterDecision, DEFAULT_AFFINITY_LOAD_CAP, type RouteCandidate, type RouterState } from './router.ts';
import { coldStart, decideScale, quantile, DEFAULT_TTFT_PERCENTILE, type ColdStart } from './autoscaler.ts';
import { ModerationServer, drawRng, logNormalMs, moderationDraws, type ModerationDraws } from './moderation.ts';
import { QuotaTracker, buildBilling, isBilled, requestUsd } from './billing.ts';
import { consolidation } from './consolidation.ts';

export interface RunFleetOptions {
  /** Called now and then with the fraction of requests ended, [0, 1]. */
  onProgress?(fraction: number): void;
  /** Aborting stops the run: runFleet rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** Wall time the simulation runs before it yields to the event loop, ms. */
const YIELD_EVERY_MS = 12;
/** Default simulated time after the last arrival before the run gives up on what is left, s. */
const DEFAULT_GRACE_S = 3600;

type FleetEvent =
  | { kind: 'arrival'; req: Req }
  | { kind: 'inputChecked'; req: Req }
  | { kind: 'flag'; req: Req }
  | { kind: 'checksDone'; req: Req }
  | { kind: 'stepDone'; replica: Replica }
  | { kind: 'warm'; replica: Replica }
  | { kind: 'serve'; replica: Replica }
  | { kind: 'autoscale'; pool: Pool }
  | { kind: 'notice'; replica: Replica | null; index: number }
  | { kind: 'loss'; replica: Replica | null; index: number }
  | { kind: 'sample' };

interface Queued {
  atMs: number;
  seq: number;
  event: FleetEvent;
}

interface Pool {
  spec: PoolSpec;
  index: number;
  replicas: Replica[];
  /** Requests waiting for a serving replica (none serves yet). */
  queue: Req[];
  router: RouterState;
  numGpuBlocks: number;
  maxModelLen: number;
  devices: number;
  cold: ColdStart | null;
  lastScaleMs: number;
  /** TTFTs (s) of first tokens since the last autoscaler tick. */
  recentTtfts: number[];
  /** Busy time of all its replicas' executors, ms (consolidation). */
  busyMs: number;
  peakReplicas: number;
}

interface Replica {
  id: string;
  pool: Pool;
  /** Creation order within its pool (spot losses name replicas by it). */
  index: number;
  engine: Engine;
  clock: VirtualClock;
  executor: SimExecutor;
  state: ReplicaState;
  record: ReplicaRecord;
  /** Requests sent here and not yet ended or moved. */
  outstanding: Set<Req>;
  /** Of those, how many are in the batch (scheduled, not preempted). */
  running: number;
  /** Engine request id -> request. */
  byEngineId: Map<string, Req>;
  /** Events of the step in flight (or of a call between steps), applied when the fleet clock reaches them. */
  buffer: EngineEvent[];
  stepping: boolean;
  /** Draining to be removed (scale-down), not for a spot loss. */
  removeWhenEmpty: boolean;
  ended: boolean;
}

interface Req {
  plan: FleetRequestPlan;
  rec: FleetRequestRecord;
  phase: RequestPhase;
  phaseStartMs: number;
  phaseReplica: string | undefined;
  replica: Replica | null;
  engineId: string;
  attempt: number;
  /** Output token ids so far (all attempts). */
  generated: number[];
  /** Scheduled at least once on some replica (later admissions recompute). */
  hadStint: boolean;
  /** The cached prompt tokens of its first admission are known. */
  cachedKnown: boolean;
  firstTokenMs: number;
  ended: boolean;
  draws: ModerationDraws | null;
  /** Output tokens submitted to the output check so far. */
  checkedTokens: number;
  /** When its latest output check completes, ms. */
  checksDoneMs: number;
  /** Its flagged chunk's check completes at this time (NaN: none submitted yet). */
  flagAtMs: number;
  /** Stopped by the output check: the engine's 'failed' (cancelled) ends it as content_filter. */
  filterStopped: boolean;
  /** Finished in its engine, waiting for its last output check. */
  engineDone: FleetFinishReason | null;
  quotaRejected: boolean;
  /** Refused by the input check. */
  inputRefused: boolean;
  /** Its tokens are billed (billing.ts isBilled). */
  billed: boolean;
}

const emptyBreakdown = (): RequestBreakdown => ({ queueS: 0, moderationS: 0, prefillS: 0, decodeS: 0, preemptedS: 0, recomputeS: 0 });
const BREAKDOWN_KEY: Record<RequestPhase, keyof RequestBreakdown> = {
  queue: 'queueS',
  moderation: 'moderationS',
  prefill: 'prefillS',
  decode: 'decodeS',
  preempted: 'preemptedS',
  recompute: 'recomputeS',
};

/**
 * Lets the page (or the worker's message handling) run: setImmediate where there is one (Node),
 * else a MessageChannel message (browsers clamp nested setTimeout(0) to 4 ms).
 */
function yieldToEventLoop(): Promise<void> {
  const g = globalThis as { setImmediate?: (f: () => void) => unknown };
  if (typeof g.setImmediate === 'function') {
    const setImmediate = g.setImmediate;
    return new Promise((resolve) => void setImmediate(resolve));
  }
  if (typeof MessageChannel === 'function') {
    return new Promise((resolve) => {
      const ch = new MessageChannel();
      ch.port1.onmessage = () => {
        ch.port1.close();
        resolve();
      };
      ch.port2.postMessage(null);
    });
  }
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** Simulates the fleet (see the file comment). Refuses an impossible spec with a RangeError naming the field. */
export async function runFleet(spec: FleetSpec, options: RunFleetOptions = {}): Promise<FleetResult> {
  validateFleetSpec(spec);
  const sim = new FleetSim(spec, options);
  return sim.run();
}

class FleetSim {
  private readonly events = new Heap<Queued>((a, b) => a.atMs < b.atMs || (a.atMs === b.atMs && a.seq < b.seq));
  private seq = 0;
  private nowMs = 0;
  private readonly pools = new Map<string, Pool>();
  private readonly allReplicas: Replica[] = [];
  private readonly reqs: Req[] = [];
  private readonly tokens: PromptTokens;
  private readonly quotas: QuotaTracker;
  private readonly inputModeration: ModerationServer | null;
  private readonly outputModeration: ModerationServer | null;
  private readonly routerDecisions: RouterDecision[] = [];
  private numRouterDecisions = 0;
  private readonly autoscalerDecisions: AutoscalerDecision[] = [];
  private numEnded = 0;
  private numArrived = 0;
  private arrivalsSinceSample = 0;
  private readonly series: FleetSeries = { tS: [], arrivalsPerS: [], servingReplicas: [], startingReplicas: [], sloAttainment: [], costUsd: [], p99TtftS: [] };
  private readonly ttftsSinceSample: number[] = [];
  private numSloMet = 0;
  private numSloCounted = 0;
  private readonly sampleMs: number;
  private readonly deadlineMs: number;
  private replicasAlive = 0;
  private replicasMax = 0;
  private lastEventMs = 0;

  constructor(
    private readonly spec: FleetSpec,
    private readonly options: RunFleetOptions,
  ) {
    this.tokens = new PromptTokens(spec.workload.seed);
    this.quotas = new QuotaTracker(spec.billing.tpmQuota ?? {});
    const m = spec.moderation;
    this.inputModeration = m ? new ModerationServer(m.input.concurrency) : null;
    this.outputModeration = m ? new ModerationServer(m.output.concurrency) : null;
    spec.pools.forEach((p, index) => {
      const { numGpuBlocks, maxModelLen } = checkDeployment(p, `pools[${index}]`);
      this.pools.set(p.model, {
        spec: p,
        index,
        replicas: [],
        queue: [],
        router: { nextTurn: 0 },
        numGpuBlocks,
        maxModelLen,
        devices: p.deployment.tensorParallel * p.deployment.pipelineParallel,
        cold: p.autoscaler ? coldStart(p.deployment, p.autoscaler) : null,
        lastScaleMs: -Infinity,
        recentTtfts: [],
        busyMs: 0,
        peakReplicas: 0,
      });
    });
    const plans = planFleetWorkload(spec.workload, (model) => this.pools.get(model)!.maxModelLen);
    const lastArrivalMs = plans.length > 0 ? plans[plans.length - 1].arrivalMs : 0;
    this.sampleMs = (spec.sampleIntervalS ?? Math.max(0.5, Math.round((lastArrivalMs / 1000 / 150) * 2) / 2)) * 1000;
    this.deadlineMs = spec.maxDurationS !== undefined ? spec.maxDurationS * 1000 : lastArrivalMs + DEFAULT_GRACE_S * 1000;
    for (const plan of plans) {
      const req = this.newReq(plan);
      this.reqs.push(req);
      this.push(plan.arrivalMs, { kind: 'arrival', req });
    }
  }

  private newReq(plan: FleetRequestPlan): Req {
    const rec: FleetRequestRecord = {
      id: plan.id,
      tenant: plan.tenant,
      model: plan.model,
      arrivalS: plan.arrivalMs / 1000,
      replicas: [],
      promptTokens: plan.promptTokens,
      cachedPromptTokens: 0,
      outputTokens: 0,
      finishReason: 'abort',
      breakdown: emptyBreakdown(),
      numPreemptions: 0,
      spans: [],
      billedUsd: 0,
    };
    return {
      plan,
      rec,
      phase: 'queue',
      phaseStartMs: plan.arrivalMs,
      phaseReplica: undefined,
      replica: null,
      engineId: plan.id,
      attempt: 0,
      generated: [],
      hadStint: false,
      cachedKnown: false,
      firstTokenMs: NaN,
      ended: false,
      draws: null,
      checkedTokens: 0,
      checksDoneMs: 0,
      flagAtMs: NaN,
      filterStopped: false,
      engineDone: null,
      quotaRejected: false,
      inputRefused: false,
      billed: false,
    };
  }

  private push(atMs: number, event: FleetEvent): void {
    this.events.push({ atMs, seq: this.seq++, event });
  }

  async run(): Promise<FleetResult> {
    const { signal, onProgress } = this.options;
    signal?.throwIfAborted();
    for (const pool of this.pools.values()) {
      for (let i = 0; i < pool.spec.replicas; i++) this.createReplica(pool, 0, true, 'initial replica');
      if (pool.spec.autoscaler) this.push(pool.spec.autoscaler.intervalS * 1000, { kind: 'autoscale', pool });
    }
    (this.spec.spotLosses ?? []).forEach((s, index) => {
      const replica = this.pools.get(s.model)!.replicas[s.replica] ?? null;
      if (s.noticeS > 0) this.push((s.atS - s.noticeS) * 1000, { kind: 'notice', replica, index });
      this.push(s.atS * 1000, { kind: 'loss', replica, index });
    });
    this.push(0, { kind: 'sample' });
    let sliceStart = performance.now();
    let pastDeadline = false;
    while (this.events.size > 0 && this.numEnded < this.reqs.length) {
      const q = this.events.pop()!;
      if (q.atMs > this.deadlineMs) {
        pastDeadline = true;
        break;
      }
      this.nowMs = q.atMs;
      await this.handle(q.event);
      if (performance.now() - sliceStart > YIELD_EVERY_MS) {
        onProgress?.(this.numEnded / this.reqs.length);
        await yieldToEventLoop();
        signal?.throwIfAborted();
        sliceStart = performance.now();
      }
    }
    // What is left never ended: the run's time limit, or nothing could make progress.
    const leftReason = pastDeadline
      ? `still in flight when the simulation stopped at ${(this.deadlineMs / 1000).toFixed(0)} s (maxDurationS, or the last arrival + ${DEFAULT_GRACE_S} s)`
      : 'no replica could make progress on it (nothing left to run it)';
    if (this.numEnded < this.reqs.length) {
      if (pastDeadline) this.nowMs = this.deadlineMs;
      for (const r of this.reqs) if (!r.ended && r.plan.arrivalMs <= this.nowMs) this.end(r, 'abort', leftReason);
      for (const r of this.reqs) if (!r.ended) this.endUnarrived(r, `due at ${(r.plan.arrivalMs / 1000).toFixed(1)} s, after the simulation stopped at ${(this.nowMs / 1000).toFixed(0)} s: never sent`);
    }
    this.sampleTick(false);
    onProgress?.(1);
    return this.result();
  }

  private async handle(e: FleetEvent): Promise<void> {
    switch (e.kind) {
      case 'arrival':
        return this.arrive(e.req);
      case 'inputChecked':
        return this.inputChecked(e.req);
      case 'flag':
        return this.flag(e.req);
      case 'checksDone':
        if (!e.req.ended && e.req.engineDone !== null) this.end(e.req, e.req.engineDone);
        return;
      case 'stepDone':
        return this.stepDone(e.replica);
      case 'warm':
        if (!e.replica.ended && e.replica.state === 'cold') this.setState(e.replica, 'warming', `weights loaded (${e.replica.pool.cold!.loadS.toFixed(1)} s); warm-up ${e.replica.pool.cold!.warmupS.toFixed(1)} s`);
        return;
      case 'serve':
        if (!e.replica.ended && e.replica.state === 'warming') {
          this.setState(e.replica, 'serving', `cold start done after ${e.replica.record.coldStartS.toFixed(1)} s`);
          await this.drainPoolQueue(e.replica.pool);
        }
        return;
      case 'autoscale':
        return this.autoscale(e.pool);
      case 'notice':
        return this.notice(e.replica, e.index);
      case 'loss':
        return this.loss(e.replica, e.index);
      case 'sample':
        this.sampleTick(true);
        return;
    }
  }

  // ---- replicas ----

  private createReplica(pool: Pool, atMs: number, serving: boolean, reason: string): Replica {
    const d = pool.spec.deployment;
    const model = MODEL_PRESETS[d.modelId];
    const hardware = HARDWARE_PRESETS[d.hardwareId];
    const index = pool.replicas.length;
    const id = this.pools.size > 1 ? `${pool.spec.model}/r${index}` : `r${index}`;
    const clock = new VirtualClock(atMs);
    const byEngineId = new Map<string, Req>();
    const eos = (engineId: string): number | undefined => {
      const r = byEngineId.get(engineId);
      if (!r) return undefined;
      // The engine's prompt holds the tokens generated before (a re-route): EOS where the planned output ends.
      return r.plan.promptTokens + r.plan.outputTokens;
    };
    const executor = new SimExecutor({ model, hardware, parallel: { tensorParallel: d.tensorParallel, pipelineParallel: d.pipelineParallel }, eosPosition: eos });
    const engine = new Engine({
      executor,
      clock,
      recordEvents: false,
      checkInvariants: false,
      numRecentEndedInSnapshot: 0,
      numStepRecords: 1,
      config: {
        ...DEFAULT_SCHEDULER_CONFIG,
        blockSize: BLOCK_SIZE,
        numGpuBlocks: pool.numGpuBlocks,
        numCpuBlocks: 0,
        maxNumSeqs: d.maxNumSeqs,
        maxNumBatchedTokens: d.maxNumBatchedTokens,
        maxModelLen: pool.maxModelLen,
        enablePrefixCaching: true,
        enableChunkedPrefill: true,
        policy: pool.spec.schedulerPolicy ?? 'fcfs',
        maxLoras: 0,
      },
    });
    const cold = serving ? 0 : pool.cold!.totalS;
    const replica: Replica = {
      id,
      pool,
      index,
      engine,
      clock,
      executor,
      state: serving ? 'serving' : 'cold',
      record: { id, model: pool.spec.model, createdS: atMs / 1000, coldStartS: cold, states: [{ atS: atMs / 1000, state: serving ? 'serving' : 'cold', reason }], samples: [], gpuHours: 0 },
      outstanding: new Set(),
      running: 0,
      byEngineId,
      buffer: [],
      stepping: false,
      removeWhenEmpty: false,
      ended: false,
    };
    engine.on((ev) => replica.buffer.push(ev));
    pool.replicas.push(replica);
    this.allReplicas.push(replica);
    this.replicasAlive++;
    this.replicasMax = Math.max(this.replicasMax, this.replicasAlive);
    pool.peakReplicas = Math.max(pool.peakReplicas, pool.replicas.filter((r) => !r.ended).length);
    if (!serving) {
      this.push(atMs + pool.cold!.loadS * 1000, { kind: 'warm', replica });
      this.push(atMs + pool.cold!.totalS * 1000, { kind: 'serve', replica });
    }
    return replica;
  }

  private setState(replica: Replica, state: ReplicaState, reason: string): void {
    replica.state = state;
    replica.record.states.push({ atS: this.nowMs / 1000, state, reason });
  }

  /** The replica goes away now (its last state entry says why: drained, cancelled, lost). */
  private endReplica(replica: Replica, reason: string, state: ReplicaState = replica.state): void {
    if (replica.ended) return;
    replica.ended = true;
    replica.state = state;
    replica.record.endedS = this.nowMs / 1000;
    replica.record.states.push({ atS: this.nowMs / 1000, state, reason });
    replica.pool.busyMs += replica.executor.totalBusyMs;
    replica.buffer.length = 0;
    this.replicasAlive--;
  }

  private serving(pool: Pool): Replica[] {
    return pool.replicas.filter((r) => !r.ended && r.state === 'serving');
  }

  /** Starts the replica's next step now if it has work and none is in flight. */
  private async kick(replica: Replica): Promise<void> {
    if (replica.stepping || replica.ended || replica.state === 'lost') return;
    const engine = replica.engine;
    if (!engine.hasWork()) return;
    replica.clock.advanceTo(this.nowMs);
    const out = await engine.step();
    if (out.kind === 'idle') {
      // Nothing runnable: what the call logged (rejections) takes effect now.
      this.flush(replica, Infinity);
      return;
    }
    replica.stepping = true;
    this.push(replica.clock.nowMs(), { kind: 'stepDone', replica });
  }

  private async stepDone(replica: Replica): Promise<void> {
    if (replica.ended || replica.state === 'lost') return;
    replica.stepping = false;
    this.flush(replica, Infinity);
    await this.kick(replica);
  }

  /** Applies the replica's buffered engine events up to atMs (Infinity: all). */
  private flush(replica: Replica, atMs: number): void {
    const buf = replica.buffer;
    let k = 0;
    for (; k < buf.length && buf[k].timeMs <= atMs; k++) this.apply(replica, buf[k]);
    buf.splice(0, k);
    if (replica.removeWhenEmpty && replica.outstanding.size === 0 && !replica.ended) this.endReplica(replica, 'drained: removed (scale-down)');
  }

  /** Hands a request to a replica's engine now. */
  private async submit(req: Req, replica: Replica, reason: string): Promise<void> {
    const p = req.plan;
    req.attempt++;
    req.engineId = req.attempt === 1 ? p.id : `${p.id}~${req.attempt}`;
    req.replica = replica;
    req.rec.replicas.push(replica.id);
    replica.outstanding.add(req);
    replica.byEngineId.set(req.engineId, req);
    const prompt = this.tokens.of(p);
    for (const t of req.generated) prompt.push(t);
    if (!replica.stepping) replica.clock.advanceTo(this.nowMs);
    replica.engine.submit({
      requestId: req.engineId,
      promptTokenIds: prompt,
      maxTokens: p.maxTokens - req.generated.length,
      tenant: p.tenant,
      priority: p.priority,
      // Now: mid-step (the replica's clock is at the step's end) it joins at the next step boundary.
      arrivalMs: this.nowMs,
    });
    this.setPhase(req, 'queue', this.nowMs, replica.id);
    const n = this.numRouterDecisions++;
    if (keepRouterDecision(n, this.routerDecisions.length)) {
      this.routerDecisions.push({ atS: this.nowMs / 1000, requestId: p.id, model: p.model, replica: replica.id, policy: replica.pool.spec.router, reason });
    }
    if (!replica.stepping) await this.kick(replica);
  }

  // ---- requests ----

  private setPhase(req: Req, phase: RequestPhase, atMs: number, replica: string | undefined): void {
    const t = Math.max(atMs, req.phaseStartMs);
    if (t > req.phaseStartMs) {
      req.rec.breakdown[BREAKDOWN_KEY[req.phase]] += (t - req.phaseStartMs) / 1000;
      const spans = req.rec.spans!;
      const last = spans[spans.length - 1];
      // Contiguous stretches of one phase on one replica are one span.
      if (last && last.phase === req.phase && last.replica === req.phaseReplica && last.endS === req.phaseStartMs / 1000) last.endS = t / 1000;
      else spans.push({ phase: req.phase, startS: req.phaseStartMs / 1000, endS: t / 1000, ...(req.phaseReplica !== undefined ? { replica: req.phaseReplica } : {}) });
    }
    req.phase = phase;
    req.phaseStartMs = t;
    req.phaseReplica = replica;
  }

  private async arrive(req: Req): Promise<void> {
    this.numArrived++;
    this.arrivalsSinceSample++;
    const p = req.plan;
    const refusal = this.quotas.admit(p.tenant, this.nowMs, p.promptTokens + p.maxTokens);
    if (refusal !== null) {
      req.quotaRejected = true;
      this.end(req, 'rejected', refusal);
      return;
    }
    const m = this.spec.moderation;
    if (m) {
      req.draws = moderationDraws(this.spec.workload.seed, p.index, p.outputTokens, m);
      const { startMs, doneMs } = this.inputModeration!.submit(this.nowMs, req.draws.inputMs);
      req.rec.moderationChecks = [{ stage: 'input', submitS: this.nowMs / 1000, startS: startMs / 1000, doneS: doneMs / 1000, flagged: req.draws.inputFlagged }];
      this.setPhase(req, 'moderation', this.nowMs, undefined);
      this.push(doneMs, { kind: 'inputChecked', req });
      return;
    }
    await this.dispatch(req);
  }

  private async inputChecked(req: Req): Promise<void> {
    if (req.draws!.inputFlagged) {
      req.inputRefused = true;
      this.end(req, 'content_filter', 'input flagged by the moderation check: refused before admission, nothing generated');
      return;
    }
    this.setPhase(req, 'queue', this.nowMs, undefined);
    await this.dispatch(req);
  }

  /** Routes the request to a serving replica of its pool, or queues it at the router until one serves. */
  private async dispatch(req: Req): Promise<void> {
    const pool = this.pools.get(req.plan.model)!;
    const serving = this.serving(pool);
    if (serving.length === 0) {
      const starting = pool.replicas.some((r) => !r.ended && (r.state === 'cold' || r.state === 'warming'));
      if (!starting && !pool.spec.autoscaler) {
        this.end(req, 'failed', `no replica of ${pool.spec.model} is serving or starting (all lost, no autoscaler)`);
        return;
      }
      pool.queue.push(req);
      return;
    }
    // Outstanding counts are the router's own (sent, not yet ended as of now). KV usage is read from
    // the replica's engine, which is already at the end of its step in flight: blocks that step
    // frees count as free a little early (at most one step, tens of ms).
    const candidates: RouteCandidate[] = serving.map((r) => ({ id: r.id, outstanding: r.outstanding.size, kvUsage: pool.spec.router === 'least-kv' ? r.engine.kvUsage() : 0 }));
    const p = req.plan;
    const prefixKey = p.prefixId;
    const choice = route(pool.spec.router, candidates, { id: p.id, ...(prefixKey !== undefined ? { prefixKey } : {}) }, pool.router, pool.spec.affinityLoadCap ?? DEFAULT_AFFINITY_LOAD_CAP);
    const replica = serving.find((r) => r.id === choice.replica)!;
    await this.submit(req, replica, choice.reason);
  }

  private async drainPoolQueue(pool: Pool): Promise<void> {
    const waiting = pool.queue.splice(0);
    for (const req of waiting) if (!req.ended) await this.dispatch(req);
  }

  /** One engine event of a replica, applied at its time. */
  private apply(replica: Replica, e: EngineEvent): void {
    if (!('requestId' in e)) return;
    const req = replica.byEngineId.get(e.requestId);
    if (!req || req.ended || req.replica !== replica) return;
    switch (e.type) {
      case 'scheduled': {
        if (!req.cachedKnown) {
          req.cachedKnown = true;
          req.rec.cachedPromptTokens = Math.min(e.numCachedTokens, req.plan.promptTokens);
        }
        this.setPhase(req, req.hadStint ? 'recompute' : 'prefill', e.timeMs, replica.id);
        req.hadStint = true;
        replica.running++;
        return;
      }
      case 'token': {
        if (e.seqIndex !== 0) return;
        if (req.phase === 'prefill' || req.phase === 'recompute') this.setPhase(req, 'decode', e.timeMs, replica.id);
        if (Number.isNaN(req.firstTokenMs)) {
          req.firstTokenMs = e.timeMs;
          const ttft = (e.timeMs - req.plan.arrivalMs) / 1000;
          req.rec.ttftS = ttft;
          replica.pool.recentTtfts.push(ttft);
          this.ttftsSinceSample.push(ttft);
        }
        req.generated.push(e.tokenId);
        this.checkOutput(req, false);
        return;
      }
      case 'preempted':
        req.rec.numPreemptions++;
        replica.running--;
        this.setPhase(req, 'preempted', e.timeMs, replica.id);
        return;
      case 'finished': {
        replica.running--;
        const reason: FleetFinishReason = e.reasons[0] === 'length' ? 'length' : 'stop';
        if (this.spec.moderation) {
          this.checkOutput(req, true);
          req.engineDone = reason;
          this.leaveReplica(req);
          if (req.checksDoneMs > e.timeMs) {
            this.setPhase(req, 'moderation', e.timeMs, undefined);
            this.push(req.checksDoneMs, { kind: 'checksDone', req });
            return;
          }
        }
        this.end(req, reason);
        return;
      }
      case 'failed':
        if (req.phase !== 'queue' && req.phase !== 'preempted') replica.running--;
        if (req.filterStopped) this.end(req, 'content_filter', 'output flagged by the moderation check: the stream stopped');
        else this.end(req, 'failed', `engine: ${e.reason}`);
        return;
      case 'rejected':
        this.end(req, 'rejected', `engine refused it (${e.reason.replace(/_/g, ' ')}): ${e.detail}`);
        return;
    }
  }

  /** Submits output chunks of `everyTokens` (and the tail when `final`) to the output check. */
  private checkOutput(req: Req, final: boolean): void {
    const m = this.spec.moderation;
    if (!m) return;
    const n = req.generated.length;
    while (n - req.checkedTokens >= m.output.everyTokens || (final && n > req.checkedTokens)) {
      const upTo = Math.min(n, req.checkedTokens + m.output.everyTokens);
      const rng = drawRng(this.spec.workload.seed, req.plan.index, `out${upTo}`);
      const { startMs, doneMs } = this.outputModeration!.submit(this.nowMs, logNormalMs(m.output.medianMs, m.output.sigma, rng));
      const flagAt = req.draws?.flagAtToken;
      const flagged = flagAt !== undefined && flagAt > req.checkedTokens && flagAt <= upTo && Number.isNaN(req.flagAtMs);
      if (flagged) {
        req.flagAtMs = doneMs;
        this.push(doneMs, { kind: 'flag', req });
      }
      (req.rec.moderationChecks ??= []).push({ stage: 'output', submitS: this.nowMs / 1000, startS: startMs / 1000, doneS: doneMs / 1000, upToToken: upTo, flagged });
      req.checkedTokens = upTo;
      req.checksDoneMs = Math.max(req.checksDoneMs, doneMs);
    }
  }

  /** A flagged chunk's check completed: stop the stream. */
  private async flag(req: Req): Promise<void> {
    if (req.ended) return;
    if (req.engineDone !== null || req.replica === null) {
      this.end(req, 'content_filter', 'output flagged by the moderation check: the stream stopped');
      return;
    }
    req.filterStopped = true;
    const replica = req.replica;
    if (!replica.stepping) replica.clock.advanceTo(this.nowMs);
    replica.engine.cancel(req.engineId);
    if (!replica.stepping) this.flush(replica, Infinity);
  }

  /** The request no longer counts on its replica. */
  private leaveReplica(req: Req): void {
    const replica = req.replica;
    if (!replica) return;
    replica.outstanding.delete(req);
    replica.byEngineId.delete(req.engineId);
    req.replica = null;
  }

  private end(req: Req, finish: FleetFinishReason, reason?: string): void {
    if (req.ended) throw new Error(`request ${req.plan.id} ended twice`);
    this.setPhase(req, req.phase, this.nowMs, req.phaseReplica);
    req.ended = true;
    this.numEnded++;
    this.lastEventMs = Math.max(this.lastEventMs, this.nowMs);
    const rec = req.rec;
    rec.finishReason = finish;
    if (reason !== undefined) rec.reason = reason;
    rec.outputTokens = req.generated.length;
    rec.e2eS = (this.nowMs - req.plan.arrivalMs) / 1000;
    req.billed = isBilled(finish, req.inputRefused);
    if (req.billed) rec.billedUsd = requestUsd(this.spec.billing, rec.promptTokens, rec.cachedPromptTokens, rec.outputTokens);
    const counted = !req.quotaRejected && !req.inputRefused;
    if (counted) {
      this.numSloCounted++;
      if ((finish === 'stop' || finish === 'length' || finish === 'content_filter') && rec.ttftS !== undefined && rec.ttftS <= this.spec.sloTtftS) this.numSloMet++;
    }
    const replica = req.replica;
    this.leaveReplica(req);
    req.generated = [];
    if (replica && replica.removeWhenEmpty && replica.outstanding.size === 0) this.endReplica(replica, 'drained: removed (scale-down)');
  }

  /** A request that never arrived before the run stopped. */
  private endUnarrived(req: Req, reason: string): void {
    req.phaseStartMs = req.plan.arrivalMs;
    const saved = this.nowMs;
    const savedLast = this.lastEventMs;
    this.nowMs = req.plan.arrivalMs;
    this.end(req, 'abort', reason);
    // The run ended when it stopped, not at this request's (never reached) arrival.
    this.nowMs = saved;
    this.lastEventMs = savedLast;
  }

  // ---- autoscaler ----

  private async autoscale(pool: Pool): Promise<void> {
    const a = pool.spec.autoscaler!;
    if (this.numEnded < this.reqs.length) this.push(this.nowMs + a.intervalS * 1000, { kind: 'autoscale', pool });
    const alive = pool.replicas.filter((r) => !r.ended);
    const serving = alive.filter((r) => r.state === 'serving');
    const starting = alive.filter((r) => r.state === 'cold' || r.state === 'warming');
    let value = NaN;
    if (serving.length > 0) {
      if (a.metric === 'queue-depth') {
        const waiting = pool.queue.length + serving.reduce((s, r) => s + (r.outstanding.size - r.running), 0);
        value = waiting / serving.length;
      } else if (a.metric === 'kv-usage') {
        value = serving.reduce((s, r) => s + r.engine.kvUsage(), 0) / serving.length;
      } else {
        value = quantile(pool.recentTtfts, a.ttftPercentile ?? DEFAULT_TTFT_PERCENTILE);
        // Requests waiting without a first token count too: their TTFT is at least their wait so far.
        if (pool.queue.length > 0) value = Math.max(Number.isNaN(value) ? 0 : value, (this.nowMs - pool.queue[0].plan.arrivalMs) / 1000);
      }
    }
    pool.recentTtfts = [];
    const decision = decideScale(a, { nowS: this.nowMs / 1000, serving: serving.length, starting: starting.length, value, lastScaleS: pool.lastScaleMs / 1000, unserved: pool.queue.length }, pool.cold!.totalS);
    if (!decision) return;
    const from = serving.length + starting.length;
    this.autoscalerDecisions.push({ atS: this.nowMs / 1000, model: pool.spec.model, from, to: decision.to, metric: a.metric, value, reason: decision.reason });
    pool.lastScaleMs = this.nowMs;
    if (decision.to > from) {
      for (let i = from; i < decision.to; i++) this.createReplica(pool, this.nowMs, false, `ordered by the autoscaler: ${decision.reason}`);
      return;
    }
    let excess = from - decision.to;
    // Replicas not yet serving go first (newest first), then the least loaded serving ones.
    for (const r of [...starting].reverse()) {
      if (excess === 0) break;
      this.endReplica(r, `cancelled before serving (scale-down): ${decision.reason}`);
      excess--;
    }
    const victims = [...serving].sort((x, y) => x.outstanding.size - y.outstanding.size || y.index - x.index);
    for (const r of victims) {
      if (excess === 0) break;
      r.removeWhenEmpty = true;
      this.setState(r, 'draining', `scale-down: ${decision.reason}`);
      if (r.outstanding.size === 0) this.endReplica(r, 'drained: removed (scale-down)');
      excess--;
    }
  }

  // ---- spot loss ----

  private async notice(replica: Replica | null, index: number): Promise<void> {
    const s = this.spec.spotLosses![index];
    if (!replica || replica.ended || replica.state === 'lost') return;
    this.setState(replica, 'draining', `spot reclaim notice: lost in ${s.noticeS} s`);
    // Requests it has not started yet move now, at no cost.
    if (!replica.stepping) replica.clock.advanceTo(this.nowMs);
    const moving: Req[] = [];
    for (const req of replica.outstanding) {
      const er = replica.engine.getRequest(req.engineId);
      const started = req.phase !== 'queue' || (er !== undefined && !Number.isNaN(er.firstScheduledMs));
      if (!started) moving.push(req);
    }
    for (const req of moving) {
      replica.byEngineId.delete(req.engineId);
      replica.engine.cancel(req.engineId);
      replica.outstanding.delete(req);
      req.replica = null;
    }
    replica.buffer = replica.buffer.filter((e) => !('requestId' in e) || replica.byEngineId.has(e.requestId));
    for (const req of moving) await this.dispatch(req);
  }

  private async loss(replica: Replica | null, index: number): Promise<void> {
    const s = this.spec.spotLosses![index];
    if (!replica || replica.ended || replica.state === 'lost') return;
    // What it did up to now stands; the step in flight is lost with it.
    this.flush(replica, this.nowMs);
    replica.buffer.length = 0;
    replica.stepping = false;
    const victims = [...replica.outstanding];
    const what = s.onLoss === 'reroute' ? `${victims.length} requests re-routed` : `${victims.length} requests failed`;
    this.endReplica(replica, `spot instance reclaimed ${s.noticeS > 0 ? `after ${s.noticeS} s notice` : 'without notice'}: ${what}`, 'lost');
    for (const req of victims) {
      replica.outstanding.delete(req);
      replica.byEngineId.delete(req.engineId);
      req.replica = null;
      if (s.onLoss === 'fail') {
        this.setPhase(req, req.phase, this.nowMs, req.phaseReplica);
        this.end(req, 'failed', `replica ${replica.id} lost (spot reclaim${s.noticeS > 0 ? `, ${s.noticeS} s notice` : ', no notice'}); onLoss is fail`);
        continue;
      }
      this.setPhase(req, 'queue', this.nowMs, undefined);
      await this.dispatch(req);
    }
  }

  // ---- samples and results ----

  private sampleTick(reschedule: boolean): void {
    const tS = this.nowMs / 1000;
    for (const r of this.allReplicas) {
      if (r.ended) continue;
      r.record.samples.push({ tS, state: r.state, waiting: r.outstanding.size - r.running, running: r.running, kvUsage: r.engine.kvUsage() });
    }
    const s = this.series;
    const prev = s.tS.length > 0 ? s.tS[s.tS.length - 1] : 0;
    const dt = tS - prev;
    s.tS.push(tS);
    s.arrivalsPerS.push(dt > 0 ? this.arrivalsSinceSample / dt : arrivalRateAt(this.spec.workload.arrival, this.nowMs));
    this.arrivalsSinceSample = 0;
    let serving = 0;
    let starting = 0;
    for (const r of this.allReplicas) {
      if (r.ended) continue;
      if (r.state === 'serving' || r.state === 'draining') serving++;
      else if (r.state === 'cold' || r.state === 'warming') starting++;
    }
    s.servingReplicas.push(serving);
    s.startingReplicas.push(starting);
    s.sloAttainment.push(this.numSloCounted > 0 ? this.numSloMet / this.numSloCounted : NaN);
    s.costUsd.push(this.gpuCost(this.nowMs).usd);
    s.p99TtftS.push(quantile(this.ttftsSinceSample, 0.99));
    this.ttftsSinceSample.length = 0;
    if (reschedule && this.numEnded < this.reqs.length) this.push(this.nowMs + this.sampleMs, { kind: 'sample' });
  }

  /** GPU-hours and USD of every replica's life up to atMs (cold start included). */
  private gpuCost(atMs: number): { hours: number; usd: number } {
    let hours = 0;
    let usd = 0;
    for (const r of this.allReplicas) {
      const endS = r.record.endedS ?? atMs / 1000;
      const h = (Math.max(0, endS - r.record.createdS) / 3600) * r.pool.devices;
      hours += h;
      usd += h * r.pool.spec.deployment.gpuHourUsd;
    }
    return { hours, usd };
  }

  private result(): FleetResult {
    const endMs = this.lastEventMs;
    for (const r of this.allReplicas) {
      if (!r.ended) r.pool.busyMs += r.executor.totalBusyMs;
      const endS = r.record.endedS ?? endMs / 1000;
      r.record.gpuHours = (Math.max(0, endS - r.record.createdS) / 3600) * r.pool.devices;
    }
    const gpu = this.gpuCost(endMs);
    const records = this.reqs.map((r) => r.rec);
    const ttfts = records.filter((r) => r.ttftS !== undefined).map((r) => r.ttftS!);
    const completed = records.filter((r) => r.finishReason === 'stop' || r.finishReason === 'length');
    const generated = records.reduce((a, r) => a + r.outputTokens, 0);
    const promptScheduled = records.filter((_, i) => this.reqs[i].cachedKnown);
    const promptTotal = promptScheduled.reduce((a, r) => a + r.promptTokens, 0);
    const cachedTotal = promptScheduled.reduce((a, r) => a + r.cachedPromptTokens, 0);
    const durationS = endMs / 1000;
    // SLO attainment: requests whose first token came within sloTtftS and that completed (stop,
    // length, or a stream stopped by the output check), over every request except those refused
    // by policy (a quota, the input check); failed, aborted and engine-refused ones count as misses.
    const summary: FleetSummary = {
      numRequests: records.length,
      numCompleted: completed.length,
      replicasMax: this.replicasMax,
      p50TtftS: quantile(ttfts, 0.5),
      p99TtftS: quantile(ttfts, 0.99),
      p99E2eS: quantile(completed.map((r) => r.e2eS!), 0.99),
      sloAttainment: this.numSloCounted > 0 ? this.numSloMet / this.numSloCounted : NaN,
      gpuHours: gpu.hours,
      costUsd: gpu.usd,
      lostRequests: records.filter((r) => r.finishReason === 'failed').length,
      reroutedRequests: records.filter((r) => r.replicas.length > 1).length,
      prefixHitRate: promptTotal > 0 ? cachedTotal / promptTotal : 0,
      contentFiltered: records.filter((r) => r.finishReason === 'content_filter').length,
      quotaRejected: this.reqs.filter((r) => r.quotaRejected).length,
      throughputTokPerS: durationS > 0 ? generated / durationS : 0,
      durationS,
    };
    const billing = buildBilling(
      this.spec.workload.tenants.map((t) => t.name),
      this.reqs.map((r) => ({
        tenant: r.plan.tenant,
        promptTokens: r.rec.promptTokens,
        cachedPromptTokens: r.rec.cachedPromptTokens,
        outputTokens: r.rec.outputTokens,
        billed: r.billed,
        billedUsd: r.rec.billedUsd,
        quotaRejected: r.quotaRejected,
      })),
      gpu.hours,
      gpu.usd,
    );
    const result: FleetResult = {
      // A copy: the caller may edit its spec for the next run.
      spec: structuredClone(this.spec),
      summary,
      requests: records,
      replicas: this.allReplicas.map((r) => r.record),
      routerDecisions: this.routerDecisions,
      routerDecisionsTotal: this.numRouterDecisions,
      autoscalerDecisions: this.autoscalerDecisions,
      series: this.series,
      billing,
    };
    if (this.pools.size > 1) {
      result.consolidation = consolidation(
        [...this.pools.values()].map((p) => ({ spec: p.spec, peakReplicas: p.peakReplicas, busyMs: p.busyMs })),
        durationS,
      );
    }
    return result;
  }
}
