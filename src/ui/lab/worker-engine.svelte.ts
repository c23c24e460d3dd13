/**
 * One real engine: a Web Worker running the model (comlink), and the pull loop that brings its
 * snapshots to a LabState, at most one per animation frame and only when the previous pull has
 * returned, so the main thread never waits on the worker.
 */
import * as Comlink from 'comlink';
import type { AdapterProbe } from '../../gpu/adapter.ts';
import type { FetchProgress } from '../../model/fetch.ts';
import type { WorkloadSpec } from '../../engine/workload.ts';
import type { CompletionParams, ModelSummary, StreamEvent } from '../../../workers/protocol.ts';
import { builtinModel, startEngineWorker, type EngineClient } from '../engine-client.ts';
import { LabState } from './state.svelte.ts';
import { fullConfig, type LabSettings } from './settings.ts';
import { FrameGovernor } from './frame-governor.ts';

/** Slow motion: the least time between two engine steps. */
export const SPEEDS = [
  { label: '1×', minStepIntervalMs: 0 },
  { label: '½×', minStepIntervalMs: 80 },
  { label: '¼×', minStepIntervalMs: 200 },
  { label: 'slow', minStepIntervalMs: 600 },
] as const;

export type LoadPhase = 'loading' | 'ready' | 'error';

export class WorkerEngine {
  readonly state = new LabState();
  phase = $state<LoadPhase>('loading');
  error = $state<string | null>(null);
  model = $state.raw<ModelSummary | null>(null);
  probe = $state.raw<AdapterProbe | null>(null);
  progress = $state.raw<FetchProgress | null>(null);
  playing = $state(true);
  speedIndex = $state(0);
  settings = $state.raw<LabSettings | null>(null);
  /** True while a configure/run is being applied. */
  busy = $state(false);

  private client: EngineClient;
  private worker: Worker;
  private epoch = 0;
  private inFlight = false;
  private frame = 0;
  private lastPullMs = 0;
  private lastIngestMs = 0;
  private disposed = false;
  private ready: Promise<void>;
  /** Spaces snapshot updates when applying one costs frames (a software GPU); see frame-governor.ts. */
  private readonly governor = new FrameGovernor();
  /** A reset asked for by the user is shown at once, whatever the governor says. */
  private urgent = false;

  constructor(private readonly name: string) {
    const started = startEngineWorker();
    this.client = started.client;
    this.worker = started.worker;
    this.worker.addEventListener('error', (e) => {
      this.phase = 'error';
      this.error = `the engine worker failed: ${e.message}`;
    });
    void this.client.probe().then((p) => (this.probe = p));
    this.ready = this.client
      .loadModel(
        builtinModel,
        Comlink.proxy((p: FetchProgress) => {
          this.progress = p;
        }),
      )
      .then((m) => {
        this.model = m;
        this.phase = 'ready';
      })
      .catch((e: Error) => {
        this.phase = 'error';
        this.error = e.message;
        throw e;
      });
    this.frame = requestAnimationFrame(this.tick);
  }

  get label(): string {
    return this.name;
  }

  whenReady(): Promise<void> {
    return this.ready;
  }

  private tick = (now: number): void => {
    if (this.disposed) return;
    this.frame = requestAnimationFrame(this.tick);
    this.governor.onFrame(now);
    if (this.inFlight || this.phase !== 'ready') return;
    // The governor spaces updates only while the engine plays: paused, the views show its exact state
    // (a step still in flight when pause was pressed, a single step) as soon as it exists.
    if (this.playing && !this.urgent && !this.governor.mayUpdate(now)) return;
    // Poll slowly while nothing happens; every frame while the engine works.
    const s = this.state.snap;
    const idle = s !== null && s.queues.running.length === 0 && s.queues.waiting.length === 0 && s.queues.swapped.length === 0 && s.queues.pending === 0;
    if (idle && now - this.lastPullMs < 250) return;
    this.lastPullMs = now;
    this.inFlight = true;
    const epoch = this.epoch;
    this.client
      .snapshot(this.state.lastStep)
      .then((snap) => {
        if (!snap || epoch !== this.epoch || this.disposed) return;
        // Re-render only when something moved: a step ran, requests arrived or ended, or time passed.
        const prev = this.state.snap;
        const same =
          prev !== null &&
          prev.stepIndex === snap.stepIndex &&
          prev.requests.length === snap.requests.length &&
          prev.queues.pending === snap.queues.pending &&
          prev.queues.waiting.length === snap.queues.waiting.length &&
          prev.host?.paused === snap.host.paused &&
          now - this.lastIngestMs < 500;
        if (same) return;
        this.lastIngestMs = now;
        this.urgent = false;
        this.governor.onUpdate(performance.now());
        const interval = Math.round(this.governor.minIntervalMs);
        if (Math.abs(interval - this.state.updateIntervalMs) >= 10 || (interval === 0) !== (this.state.updateIntervalMs === 0)) this.state.updateIntervalMs = interval;
        this.state.ingest(snap);
      })
      .catch(() => {})
      .finally(() => (this.inFlight = false));
  };

  /** A fresh engine with these settings (requests in flight end) and clear views. */
  async configure(settings: LabSettings): Promise<void> {
    await this.ready;
    this.busy = true;
    try {
      this.epoch++;
      await this.client.configure(fullConfig(settings));
      // Settings the host can change live leave the engine running; a run always starts afresh.
      await this.client.reset();
      this.settings = settings;
      this.epoch++;
      this.state.reset();
      this.urgent = true;
    } finally {
      this.busy = false;
    }
  }

  /** Configures, then submits the workload (arrivals relative to now). */
  async runWorkload(settings: LabSettings, workload: WorkloadSpec): Promise<string[]> {
    await this.configure(settings);
    const ids = await this.client.runScenario({ workload });
    if (this.playing) await this.client.resume();
    return ids;
  }

  async submit(params: CompletionParams, onEvent: (e: StreamEvent) => void): Promise<string> {
    await this.ready;
    return this.client.submit(params, Comlink.proxy(onEvent));
  }

  cancel(requestId: string): void {
    void this.client.cancel(requestId);
  }

  play(): void {
    this.playing = true;
    void this.client.resume();
  }

  pause(): void {
    this.playing = false;
    void this.client.pause();
  }

  toggle(): void {
    if (this.playing) this.pause();
    else this.play();
  }

  async step(): Promise<void> {
    if (this.playing) this.pause();
    await this.client.step();
  }

  setSpeed(index: number): void {
    this.speedIndex = index;
    void this.client.setMinStepInterval(SPEEDS[index].minStepIntervalMs);
  }

  async prometheus(): Promise<string> {
    return this.client.prometheus();
  }

  dispose(): void {
    this.disposed = true;
    cancelAnimationFrame(this.frame);
    this.worker.terminate();
  }
}
