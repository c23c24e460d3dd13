/**
 * The page's side of the fleet worker (workers/fleet.worker.ts): runs a preset's fleets off the
 * main thread, with progress and the worker's error in words. A new request while one is running
 * ends that worker (its result would be thrown away) and starts a fresh one. Finished presets are
 * kept: the simulation is seeded, so running one again would give the same result.
 */
import * as Comlink from 'comlink';
import type { FleetPresetId, FleetSpec } from '../../sim/fleet/types.ts';
import type { FleetApi, FleetRun } from '../../../workers/fleet-protocol.ts';

export type FleetRunStatus = 'idle' | 'running' | 'done' | 'error';

export class FleetRunner {
  status = $state<FleetRunStatus>('idle');
  /** Fraction of the preset's runs done, [0, 1]. */
  progress = $state(0);
  /** The run in progress. */
  progressLabel = $state('');
  error = $state<string | null>(null);
  presetId = $state<FleetPresetId | null>(null);
  /** The latest runs that finished (kept while a changed fleet runs or fails: nothing shown is lost). */
  runs = $state.raw<FleetRun[] | null>(null);
  /** The preset `runs` belong to, and whether they are its fleets as the user changed them. */
  runsPresetId = $state<FleetPresetId | null>(null);
  runsEdited = $state(false);
  /** Wall-clock time the last simulation took, ms (null: from the cache). */
  wallMs = $state<number | null>(null);
  /** The runs shown are the preset's fleets as the user changed them (not the preset's own). */
  edited = $state(false);

  private worker: Worker | null = null;
  private api: Comlink.Remote<FleetApi> | null = null;
  private generation = 0;
  /** The preset's own runs in flight (asked for again, e.g. by the view opening anew: the same promise). */
  private inflight: { id: FleetPresetId; promise: Promise<FleetRun[] | null> } | null = null;
  private cache = new Map<FleetPresetId, FleetRun[]>();

  /** Runs the preset (or shows its kept result); resolves with its runs, or null when it failed or was superseded. */
  run(id: FleetPresetId): Promise<FleetRun[] | null> {
    if (this.status === 'running' && this.inflight?.id === id) return this.inflight.promise;
    const promise = this.exec(id, false, (api, onProgress) => api.runPreset(id, onProgress));
    this.inflight = { id, promise };
    return promise;
  }

  /** Runs the preset's fleets as changed by the user (never kept: the next edit differs). */
  runEdited(id: FleetPresetId, runs: { label: string; spec: FleetSpec }[]): Promise<FleetRun[] | null> {
    return this.exec(id, true, (api, onProgress) => api.runSpecs(runs, onProgress));
  }

  private async exec(id: FleetPresetId, edited: boolean, call: (api: Comlink.Remote<FleetApi>, onProgress: (fraction: number, label: string) => void) => Promise<FleetRun[]>): Promise<FleetRun[] | null> {
    const gen = ++this.generation;
    this.inflight = null;
    this.presetId = id;
    this.error = null;
    this.edited = edited;
    const kept = edited ? undefined : this.cache.get(id);
    if (kept) {
      if (this.status === 'running') this.stopWorker();
      this.runs = kept;
      this.runsPresetId = id;
      this.runsEdited = false;
      this.status = 'done';
      this.progress = 1;
      this.wallMs = null;
      return kept;
    }
    if (this.status === 'running') this.stopWorker();
    if (this.runsPresetId !== id) {
      this.runs = null;
      this.runsPresetId = null;
    }
    this.status = 'running';
    this.progress = 0;
    this.progressLabel = '';
    const api = this.ensureWorker();
    const t0 = performance.now();
    try {
      const runs = await call(
        api,
        Comlink.proxy((fraction: number, label: string) => {
          if (gen !== this.generation) return;
          this.progress = fraction;
          this.progressLabel = label;
        }),
      );
      if (gen !== this.generation) return null;
      if (!edited) this.cache.set(id, runs);
      this.runs = runs;
      this.runsPresetId = id;
      this.runsEdited = edited;
      this.wallMs = performance.now() - t0;
      this.status = 'done';
      this.progress = 1;
      return runs;
    } catch (e) {
      if (gen !== this.generation) return null;
      this.error = `The simulation could not run: ${(e as Error).message}`;
      this.status = 'error';
      return null;
    }
  }

  dispose(): void {
    this.generation++;
    this.stopWorker();
    if (this.status === 'running') this.status = 'idle';
  }

  private ensureWorker(): Comlink.Remote<FleetApi> {
    if (!this.api) {
      this.worker = new Worker(new URL('../../../workers/fleet.worker.ts', import.meta.url), { type: 'module', name: 'servelab-fleet' });
      this.worker.addEventListener('error', (e) => {
        this.error = `The fleet worker failed: ${e.message || 'it could not start'}`;
        this.status = 'error';
        this.stopWorker();
      });
      this.api = Comlink.wrap<FleetApi>(this.worker);
    }
    return this.api;
  }

  private stopWorker(): void {
    this.api?.[Comlink.releaseProxy]();
    this.worker?.terminate();
    this.api = null;
    this.worker = null;
  }
}
