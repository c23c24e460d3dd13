/**
 * A real engine for the views: a supervised engine worker (EngineSupervisor: restarts a dead
 * worker and accounts for its requests in the ledger) and the pull loop that brings its snapshots
 * to a LabState, at most one per animation frame and only when the previous pull has returned,
 * so the main thread never waits on the worker. Implements EngineDriver.
 */
import type { WorkloadSpec } from '../../engine/workload.ts';
import type { AdapterProbe } from '../../gpu/adapter.ts';
import type { FetchProgress } from '../../model/fetch.ts';
import type { CompletionParams, ModelSummary, StreamEvent } from '../../../workers/protocol.ts';
import { EngineSupervisor } from '../manage/engine-supervisor.svelte.ts';
import type { EngineDriver } from './driver.ts';
import { FrameGovernor } from './frame-governor.ts';
import { hostSettings, type LabSettings } from './settings.ts';
import { LabState } from './state.svelte.ts';

/** Slow motion: the least time between two engine steps. */
export const SPEEDS = [
  { label: '1×', minStepIntervalMs: 0 },
  { label: '½×', minStepIntervalMs: 80 },
  { label: '¼×', minStepIntervalMs: 200 },
  { label: 'slow', minStepIntervalMs: 600 },
] as const;

export type LoadPhase = 'loading' | 'ready' | 'error';

/** What a dead worker took with it, as the lab reports it. */
export interface CrashReport {
  generation: number;
  cause: string;
  /** Each request of the dead worker and how it ended. */
  requests: { requestId: string; state: string; reason: string | null }[];
}

export class WorkerEngine implements EngineDriver {
  readonly state = new LabState();
  readonly engine: EngineSupervisor;
  playing = $state(true);
  speedIndex = $state(0);
  settings = $state.raw<LabSettings | null>(null);
  /** True while a configure/run is being applied. */
  busy = $state(false);
  /** True while a pause or a single step is landing (the views show the exact state once it is false). */
  settling = $state(false);
  private numSettling = 0;
  /** The last worker death and every request it held, for the views. */
  crash = $state.raw<CrashReport | null>(null);
  /**
   * Stepped from outside (compare mode's lockstep): the worker's own loop stays paused and
   * play/run only mark the state as playing; the driver calls stepQuietly().
   */
  externallyDriven = false;

  private epoch = 0;
  private inFlight = false;
  private frame = 0;
  private lastPullMs = 0;
  private lastIngestMs = 0;
  private disposed = false;
  private seenGeneration = 0;
  /** Spaces snapshot updates when applying one costs frames (a software GPU); see frame-governor.ts. */
  private readonly governor = new FrameGovernor();
  /** A reset, pause or step asked for by the user is shown at once, whatever the governor says. */
  private urgent = false;
  /** The configuration being applied (configure()), if any. */
  private configuring: Promise<void> | null = null;
  /** Prompts submitted while a configuration was being applied, in order. */
  private held: { params: CompletionParams; onEvent: (e: StreamEvent) => void; resolve: (id: Promise<string>) => void }[] = [];

  /** Resolves the promises of pause() and step() once the state they asked for is shown. */
  private shownWaiters: { stepIndex: number; resolve: () => void }[] = [];

  constructor(private readonly name: string) {
    this.engine = new EngineSupervisor();
    void this.engine.start().catch(() => {});
    this.frame = requestAnimationFrame(this.tick);
  }

  get label(): string {
    return this.name;
  }

  get phase(): LoadPhase {
    const p = this.engine.phase;
    return p === 'ready' ? 'ready' : p === 'error' ? 'error' : 'loading';
  }

  get error(): string | null {
    return this.engine.phase === 'error' ? (this.engine.journal.findLast((j) => j.kind === 'error')?.text ?? 'the engine failed') : null;
  }

  get model(): ModelSummary | null {
    return this.engine.model;
  }

  get probe(): AdapterProbe | null {
    return this.engine.adapterProbe;
  }

  get progress(): FetchProgress | null {
    return this.engine.progress?.fetch ?? null;
  }

  whenReady(): Promise<void> {
    return this.engine.start();
  }

  private tick = (now: number): void => {
    if (this.disposed) return;
    this.frame = requestAnimationFrame(this.tick);
    this.governor.onFrame(now);
    if (this.engine.generation !== this.seenGeneration) this.onNewWorker();
    if (this.inFlight || this.phase !== 'ready') return;
    // The governor spaces updates only while the engine plays: paused, the views show its exact state.
    if (this.playing && !this.urgent && !this.governor.mayUpdate(now)) return;
    // Poll slowly while nothing happens; every frame while the engine works.
    const s = this.state.snap;
    const idle = s !== null && s.queues.running.length === 0 && s.queues.waiting.length === 0 && s.queues.swapped.length === 0 && s.queues.pending === 0;
    if (idle && !this.urgent && now - this.lastPullMs < 250) return;
    this.lastPullMs = now;
    this.inFlight = true;
    const epoch = this.epoch;
    this.engine
      .snapshot(this.state.lastStep)
      .then((snap) => {
        if (!snap || epoch !== this.epoch || this.disposed) return;
        // Re-render only when something moved: a step ran, requests arrived or ended, or time passed.
        let prev = this.state.snap;
        if (prev && (snap.stepIndex < prev.stepIndex || snap.nowMs < prev.nowMs)) {
          // A new engine in the worker (a fault, new settings or a model from the manage drawer):
          // its steps count from 1 again, so the views start afresh.
          this.state.reset();
          this.urgent = true;
          prev = null;
        }
        const same =
          prev !== null &&
          prev.stepIndex === snap.stepIndex &&
          prev.requests.length === snap.requests.length &&
          prev.queues.pending === snap.queues.pending &&
          prev.queues.waiting.length === snap.queues.waiting.length &&
          prev.host?.paused === snap.host.paused &&
          now - this.lastIngestMs < 500;
        if (!same) {
          this.lastIngestMs = now;
          this.governor.onUpdate(performance.now());
          const interval = Math.round(this.governor.minIntervalMs);
          if (Math.abs(interval - this.state.updateIntervalMs) >= 10 || (interval === 0) !== (this.state.updateIntervalMs === 0)) this.state.updateIntervalMs = interval;
          this.state.ingest(snap);
        }
        this.urgent = false;
        this.releaseWaiters(snap.stepIndex);
      })
      .catch(() => {})
      .finally(() => (this.inFlight = false));
  };

  /** The supervisor started a new worker: after a crash, report what the dead one held. */
  private onNewWorker(): void {
    const crash = this.engine.lastCrash;
    if (this.seenGeneration > 0 && crash && crash.generation === this.seenGeneration) {
      const entries = this.engine.ledger.list().filter((e) => e.workerGeneration === crash.generation);
      this.crash = {
        generation: crash.generation,
        cause: crash.cause,
        requests: entries.map((e) => ({ requestId: e.requestId, state: e.state, reason: e.reason })),
      };
      // The new worker's engine starts from step 0: the views start afresh.
      this.epoch++;
      this.state.reset();
      if (!this.playing || this.externallyDriven) void this.engine.start().then(() => this.engine.pause());
    }
    this.seenGeneration = this.engine.generation;
    for (const w of this.shownWaiters.splice(0)) w.resolve();
  }

  private releaseWaiters(stepIndex: number): void {
    if (this.shownWaiters.length === 0) return;
    const still: typeof this.shownWaiters = [];
    for (const w of this.shownWaiters) (stepIndex >= w.stepIndex ? w.resolve() : still.push(w));
    this.shownWaiters = still;
  }

  /** Resolves once a snapshot at or after `stepIndex` is shown. */
  private shown(stepIndex: number): Promise<void> {
    this.urgent = true;
    if ((this.state.snap?.stepIndex ?? -1) >= stepIndex && !this.inFlight) return Promise.resolve();
    return new Promise((resolve) => this.shownWaiters.push({ stepIndex, resolve }));
  }

  /**
   * A fresh engine with these settings (requests in flight end) and clear views. Configurations
   * apply one after the other; prompts submitted meanwhile are held (see submit()) and go into
   * the new engine before configure() resolves, so before a run's own requests.
   */
  configure(settings: LabSettings): Promise<void> {
    const run = (this.configuring ?? Promise.resolve())
      .catch(() => {})
      .then(async () => {
        try {
          await this.applySettings(settings);
        } finally {
          await Promise.allSettled(this.submitHeld());
        }
      });
    this.configuring = run;
    const clear = () => {
      if (this.configuring !== run) return;
      this.configuring = null;
      // Prompts that came while the held ones were being submitted.
      this.submitHeld();
    };
    run.then(clear, clear);
    return run;
  }

  private async applySettings(settings: LabSettings): Promise<void> {
    await this.engine.start();
    this.busy = true;
    try {
      this.epoch++;
      await this.engine.configure(hostSettings(settings));
      // Settings the host can change live leave the engine running; a run always starts afresh.
      await this.engine.reset();
      this.settings = settings;
      this.epoch++;
      this.state.reset();
      this.crash = null;
      this.urgent = true;
    } finally {
      this.busy = false;
    }
  }

  /** Configures, then submits the workload (arrivals relative to now). */
  async runWorkload(settings: LabSettings, workload: WorkloadSpec): Promise<string[]> {
    await this.configure(settings);
    const ids = await this.engine.runScenario({ workload });
    if (this.playing && !this.externallyDriven) await this.engine.resume();
    return ids;
  }

  /**
   * Submits a prompt. One typed while the engine starts or a run is being set up (the first
   * scenario starts as soon as the model is ready) is held and goes into that run's engine ahead
   * of the run's own requests, instead of into the engine the run is about to replace (which
   * would end it with 'engine_restarted').
   */
  async submit(params: CompletionParams, onEvent: (e: StreamEvent) => void): Promise<string> {
    await this.engine.start();
    if (this.configuring) return new Promise<string>((resolve) => this.held.push({ params, onEvent, resolve }));
    return this.engine.submit(params, onEvent);
  }

  /** Registers a PEFT LoRA adapter from its two files; resolves with its name, rank and scale. */
  async loadAdapter(name: string, configJson: string, weights: Uint8Array): Promise<{ name: string; rank: number; scale: number }> {
    return this.engine.loadAdapterBytes(name, configJson, weights);
  }

  /** Submits the held prompts, in order; returns their submissions. */
  private submitHeld(): Promise<string>[] {
    return this.held.splice(0).map((h) => {
      const id = this.engine.submit(h.params, h.onEvent);
      h.resolve(id);
      return id;
    });
  }

  cancel(requestId: string): void {
    void this.engine.cancel(requestId).catch(() => {});
  }

  play(): void {
    this.playing = true;
    if (!this.externallyDriven) void this.engine.resume().catch(() => {});
  }

  /** One engine step now, without waiting for it to be shown (lockstep); resolves with the last step's index. */
  async stepQuietly(): Promise<number> {
    await this.engine.start();
    return this.engine.step();
  }

  /** Pauses; resolves once the step that was in flight has landed and is shown. */
  async pause(): Promise<void> {
    this.playing = false;
    await this.settle(async () => this.shown(await this.engine.pause()));
  }

  toggle(): void {
    if (this.playing) void this.pause().catch(() => {});
    else this.play();
  }

  /** Exactly one step after the state shown (pausing first); resolves once it is shown. */
  async step(): Promise<void> {
    if (this.playing) await this.pause();
    await this.settle(async () => this.shown(await this.engine.step()));
  }

  private async settle(f: () => Promise<void>): Promise<void> {
    this.numSettling++;
    this.settling = true;
    try {
      await f();
    } finally {
      if (--this.numSettling === 0) this.settling = false;
    }
  }

  setSpeed(index: number): void {
    this.speedIndex = index;
    void this.engine.setMinStepInterval(SPEEDS[index].minStepIntervalMs).catch(() => {});
  }

  async prometheus(): Promise<string> {
    return this.engine.prometheus();
  }

  dispose(): void {
    this.disposed = true;
    cancelAnimationFrame(this.frame);
    for (const w of this.shownWaiters.splice(0)) w.resolve();
    this.engine.dispose();
  }
}
