/**
 * The lab's run as a recording: what the step slider, the step inspector and the end-of-run
 * controls drive. At the live end the views show the engine's own state (WorkerEngine.state);
 * scrubbed back to step k (which pauses the engine) they show a LabState rebuilt from the engine's
 * event log replayed up to k (Recording), frozen there until the slider moves or Play resumes from
 * the live end. Implements EngineDriver, so the keys drive it as the buttons do: → steps the
 * recording while scrubbed back, and the engine at the live end.
 *
 * Texts: the event log holds token ids, not text (the tokenizer lives in the worker), so a
 * scrubbed step shows the text of the requests that had ended by then (their final text) and no
 * text for the ones still running; the live end shows everything.
 */
import type { EngineSnapshot } from '../../engine/engine.ts';
import type { EngineDriver } from './driver.ts';
import { Recording, SupersededError } from './recording.ts';
import { LabState, type LabSnapshot } from './state.svelte.ts';
import type { WorkerEngine } from './worker-engine.svelte.ts';

const ENDED = new Set(['finished', 'failed', 'rejected']);

export class RunRecorder implements EngineDriver {
  /** The step asked for while scrubbed back (null: the live end). */
  private wanted = $state<number | null>(null);
  /** The state rebuilt for a step, and which run and step it belongs to. */
  private scrubbed = $state.raw<{ state: LabState; step: number; runId: number } | null>(null);
  /** True while a step is being rebuilt. */
  loading = $state(false);
  /** Why the last step could not be rebuilt (null: it could). */
  error = $state<string | null>(null);
  /** The step picked for the inspector, in its run. */
  private selection = $state<{ step: number; runId: number } | null>(null);
  /** Restart the run by itself when it ends. */
  loop = $state(false);

  private recording: Recording | null = null;
  private recordingRun = -1;
  /** Bumped by every seek and by going live: older replays stop. */
  private generation = 0;
  /** The run (LabState.runId) the scrub belongs to. */
  private scrubRun = -1;

  constructor(readonly engine: WorkerEngine) {}

  /** The live state: everything the engine has shown so far. */
  get live(): LabState {
    return this.engine.state;
  }

  /** The last step the engine has shown (the slider's end). */
  get lastStep(): number {
    return this.engine.state.snap?.stepIndex ?? 0;
  }

  /** The step the views are frozen at, or null at the live end (a new run always starts live). */
  get viewStep(): number | null {
    return this.wanted !== null && this.scrubRun === this.engine.state.runId ? this.wanted : null;
  }

  /** What the views render: the live state, or the rebuilt one while scrubbed back. */
  get state(): LabState {
    const s = this.scrubbed;
    return this.viewStep !== null && s && s.runId === this.engine.state.runId ? s.state : this.engine.state;
  }

  /** The step the inspector shows (null: the last step of the state shown). */
  get selectedStep(): number | null {
    const s = this.selection;
    return s && s.runId === this.engine.state.runId ? s.step : null;
  }

  /** The step the views show now (the rebuilt one may still be on its way). */
  get shownStep(): number {
    return this.state === this.engine.state ? this.lastStep : (this.scrubbed?.step ?? this.lastStep);
  }

  /**
   * A workload's run is over: it ran steps, and nothing is running, waiting, swapped or yet to
   * arrive. (Only your own prompts in an engine is no run that ends: the next prompt goes on.)
   */
  get ended(): boolean {
    const s = this.engine.state.snap;
    if (!s || this.engine.busy || this.engine.phase !== 'ready' || s.stepIndex === 0 || s.requests.length === 0) return false;
    const q = s.queues;
    if (q.running.length > 0 || q.waiting.length > 0 || q.swapped.length > 0 || q.pending > 0) return false;
    // Requests of a workload or trace carry no prompt text; typed prompts do.
    return this.engine.state.requests.some((r) => r.prompt === null);
  }

  get playing(): boolean {
    return this.engine.playing;
  }

  get speedIndex(): number {
    return this.engine.speedIndex;
  }

  get settling(): boolean {
    return this.engine.settling;
  }

  /**
   * Shows the run as it was right after step k (0: before the first step); the last step is the
   * live end. Pauses the engine first, so the end does not move away while you look.
   */
  async seek(k: number): Promise<void> {
    const gen = ++this.generation;
    const runId = this.engine.state.runId;
    k = Math.max(0, Math.round(k));
    this.selection = null;
    if (k >= this.lastStep) {
      this.goLive();
      return;
    }
    this.wanted = k;
    this.scrubRun = runId;
    if (this.engine.playing) await this.engine.pause();
    if (gen !== this.generation) return;
    if (runId !== this.engine.state.runId || k >= this.lastStep) {
      this.goLive();
      return;
    }
    this.loading = true;
    try {
      const recording = await this.recordingFor(k, runId);
      if (gen !== this.generation) return;
      const snap = await recording.snapshotAt(k, () => gen !== this.generation);
      if (gen !== this.generation || runId !== this.engine.state.runId) return;
      this.scrubbed = { state: this.stateOf(snap), step: k, runId };
      this.error = null;
    } catch (e) {
      if (e instanceof SupersededError || gen !== this.generation) return;
      this.error = `step ${k} could not be rebuilt: ${(e as Error).message}`;
    } finally {
      if (gen === this.generation) this.loading = false;
    }
  }

  /** Back to the live end (the engine keeps its play state). */
  goLive(): void {
    this.generation++;
    this.wanted = null;
    this.scrubbed = null;
    this.loading = false;
    this.error = null;
  }

  /** Selects step k for the step inspector (null: follow the last step shown). */
  select(k: number | null): void {
    this.selection = k === null ? null : { step: k, runId: this.engine.state.runId };
  }

  /** Resumes from the live end. */
  play(): void {
    this.goLive();
    this.engine.play();
  }

  pause(): Promise<void> {
    return this.engine.pause();
  }

  toggle(): void {
    if (this.engine.playing) void this.pause().catch(() => {});
    else this.play();
  }

  /** One step: through the recording while scrubbed back, else one engine step. The inspector follows. */
  async step(): Promise<void> {
    this.selection = null;
    const at = this.viewStep;
    if (at !== null) return this.seek(at + 1);
    await this.engine.step();
  }

  setSpeed(index: number): void {
    this.engine.setSpeed(index);
  }

  /** Runs `restart` (the lab's run again from the start) at the live end; a run that had ended plays again. Resolves when `restart` does. */
  restart(restart: () => void | Promise<void>): Promise<void> {
    const ended = this.ended;
    this.goLive();
    if (ended && !this.engine.playing) this.engine.play();
    return Promise.resolve(restart());
  }

  /** Owns nothing: the engine is the app's. */
  dispose(): void {
    this.goLive();
  }

  /** The recording for this run holding step k: the one made already, or the engine's log fetched now. */
  private async recordingFor(k: number, runId: number): Promise<Recording> {
    if (this.recording && this.recordingRun === runId && this.recording.has(k)) return this.recording;
    const supervisor = this.engine.engine;
    const log = await supervisor.eventLog();
    const config = supervisor.runStartConfig;
    if (!config) throw new Error('the engine has not started');
    if (runId !== this.engine.state.runId) throw new SupersededError();
    const recording = new Recording(log, { config, modelName: supervisor.model?.name, sliceMs: 12 });
    this.recording = recording;
    this.recordingRun = runId;
    if (!recording.has(k)) throw new RangeError(`the engine's log ends at step ${recording.lastStep}`);
    return recording;
  }

  /** The views' state at a replayed snapshot: colours, prompts and ended requests' texts from the live state. */
  private stateOf(snap: EngineSnapshot): LabState {
    const live = this.engine.state;
    const state = new LabState({ orderFrom: live, maxSteps: Infinity });
    const texts: Record<string, string[]> = {};
    const prompts: Record<string, string> = {};
    for (const r of snap.requests) {
      const rec = live.record(r.requestId);
      if (!rec) continue;
      if (rec.prompt !== null) prompts[r.requestId] = rec.prompt;
      if (ENDED.has(r.state) && rec.texts.length > 0) texts[r.requestId] = rec.texts;
    }
    const liveSnap = live.snap;
    const host = liveSnap?.host ? { ...liveSnap.host, paused: true } : null;
    const full: LabSnapshot = { ...snap, texts, prompts, host, model: liveSnap?.model ?? null };
    // The gauges over time as they were up to this step (the engine clock is the same in a replay).
    state.series = live.series.filter((p) => p.tMs <= snap.nowMs);
    state.updateIntervalMs = live.updateIntervalMs;
    state.ingest(full);
    // The KV grid flashes what the step shown did, not the whole run at once.
    const own = snap.recentSteps[snap.recentSteps.length - 1];
    state.snap = { ...full, recentSteps: own && own.stepIndex === snap.stepIndex ? [own] : [] };
    return state;
  }
}
