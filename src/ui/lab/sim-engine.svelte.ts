/**
 * The simulated large-scale mode: the same serving core (scheduler, KV cache manager, metrics)
 * driving a roofline cost model instead of a model, on a virtual clock, here on the main thread.
 * Each animation frame advances virtual time by the wall time elapsed (times the speed), running
 * steps for at most a few milliseconds, so the page stays smooth. No text is generated.
 */
import { Engine } from '../../engine/engine.ts';
import { VirtualClock } from '../../engine/clock.ts';
import { generateWorkload, type WorkloadSpec } from '../../engine/workload.ts';
import { SimExecutor } from '../../sim/simExecutor.ts';
import { HARDWARE_PRESETS, MODEL_PRESETS } from '../../sim/presets.ts';
import { kvCapacity, type KvCapacity } from '../../sim/kvCalculator.ts';
import { LabState, type LabSnapshot } from './state.svelte.ts';
import type { EngineDriver } from './driver.ts';
import { DEFAULT_SCHEDULER_CONFIG } from '../../engine/scheduler.ts';

export interface SimSetup {
  modelId: string;
  hardwareId: string;
  tensorParallel: number;
  pipelineParallel: number;
  numRequests: number;
  ratePerS: number;
  promptMedian: number;
  outputMedian: number;
  maxNumSeqs: number;
  batching: 'continuous' | 'static';
  /** How the weights are stored: 16-bit, or ggml's Q8_0 / Q4_0 blocks (fewer bytes to hold and to read each step). */
  weights: SimWeights;
}

/** The simulated mode's weight formats and their bytes per parameter (Q8_0: 34 bytes per 32 weights, Q4_0: 18). */
export const SIM_WEIGHTS = { f16: 2, q8_0: 34 / 32, q4_0: 18 / 32 } as const;
export type SimWeights = keyof typeof SIM_WEIGHTS;
export const isSimWeights = (v: unknown): v is SimWeights => typeof v === 'string' && Object.hasOwn(SIM_WEIGHTS, v);

export const DEFAULT_SIM_SETUP: SimSetup = {
  modelId: 'llama-2-70b',
  hardwareId: 'h100-sxm',
  tensorParallel: 8,
  pipelineParallel: 1,
  numRequests: 400,
  ratePerS: 20,
  promptMedian: 512,
  outputMedian: 2000,
  maxNumSeqs: 256,
  batching: 'continuous',
  weights: 'f16',
};

/** Pools beyond this are capped (memory of the simulation itself; the grid groups blocks per cell). */
export const MAX_SIM_BLOCKS = 262_144;
const SIM_SPEEDS = [1, 0.5, 0.25, 0.1];
const FRAME_BUDGET_MS = 6;
const PUBLISH_INTERVAL_MS = 100;

export class SimEngine implements EngineDriver {
  readonly state = new LabState();
  playing = $state(true);
  /** Steps run on this thread and show at once: never anything still landing. */
  readonly settling = false;
  speedIndex = $state(0);
  capacity = $state.raw<KvCapacity | null>(null);
  /** The weight format of the run on screen. */
  weights = $state<SimWeights>('f16');
  numGpuBlocks = $state(0);
  executorName = $state('');
  error = $state<string | null>(null);
  lastCost = $state.raw<SimExecutor['lastCost']>(null);

  private engine: Engine | null = null;
  private executor: SimExecutor | null = null;
  private clock = new VirtualClock();
  private frame = 0;
  private lastWallMs = NaN;
  private busy = false;
  private lastPublishMs = 0;

  start(setup: SimSetup): void {
    this.stop();
    this.error = null;
    const model = MODEL_PRESETS[setup.modelId];
    const hardware = HARDWARE_PRESETS[setup.hardwareId];
    const blockSize = 16;
    // Quantized weights: fewer bytes per device (more left for the KV cache) and fewer to read per
    // step; the dequantization's own arithmetic is not modelled (decode is bandwidth-bound).
    const bytesPerParam = SIM_WEIGHTS[setup.weights];
    const cap = kvCapacity(model, hardware, { tensorParallel: setup.tensorParallel, pipelineParallel: setup.pipelineParallel, blockSize, bytesPerParam });
    this.capacity = cap;
    this.weights = setup.weights;
    if (!cap.fitsWeights || cap.numBlocks < 8) {
      this.error = `${model.name} does not fit ${setup.tensorParallel * setup.pipelineParallel}× ${hardware.name}: the weights need ${(cap.weightBytesPerDevice / 1e9).toFixed(1)} GB per device.`;
      this.state.reset();
      return;
    }
    const numGpuBlocks = Math.min(cap.numBlocks, MAX_SIM_BLOCKS);
    this.numGpuBlocks = numGpuBlocks;
    const maxModelLen = model.maxModelLen;
    const workload: WorkloadSpec = {
      seed: 2024,
      numRequests: setup.numRequests,
      arrival: { kind: 'poisson', ratePerS: setup.ratePerS },
      promptTokens: { kind: 'lognormal', median: setup.promptMedian, sigma: 0.6, min: 8, max: Math.floor(maxModelLen / 2) },
      outputTokens: { kind: 'lognormal', median: setup.outputMedian, sigma: 0.6, min: 4, max: Math.floor(maxModelLen / 2) },
      vocabSize: 32000,
    };
    let specs: ReturnType<typeof generateWorkload>;
    try {
      specs = generateWorkload(workload);
    } catch (e) {
      // The workload schema's bounds (a rate of 0, more prompt tokens than a run may hold): say which.
      this.error = (e as Error).message;
      this.state.reset();
      return;
    }
    this.executor = new SimExecutor({ model, hardware, parallel: { tensorParallel: setup.tensorParallel, pipelineParallel: setup.pipelineParallel }, bytesPerParam });
    this.executorName = this.executor.name;
    this.clock = new VirtualClock();
    const engine = new Engine({
      executor: this.executor,
      clock: this.clock,
      recordEvents: false,
      checkInvariants: false,
      config: {
        ...DEFAULT_SCHEDULER_CONFIG,
        blockSize,
        numGpuBlocks,
        numCpuBlocks: Math.min(numGpuBlocks, 1024),
        maxNumSeqs: setup.maxNumSeqs,
        maxNumBatchedTokens: 8192,
        maxModelLen,
        batching: setup.batching,
        enablePrefixCaching: setup.batching === 'continuous',
      },
    });
    for (const spec of specs) engine.submit(spec);
    this.engine = engine;
    this.state.reset();
    this.lastWallMs = NaN;
    this.publish();
    this.frame = requestAnimationFrame(this.tick);
  }

  stop(): void {
    cancelAnimationFrame(this.frame);
    this.engine = null;
  }

  toggle(): void {
    this.playing = !this.playing;
    this.lastWallMs = NaN;
  }

  play(): void {
    this.playing = true;
  }

  async pause(): Promise<void> {
    this.playing = false;
  }

  async step(): Promise<void> {
    this.playing = false;
    if (!this.engine || this.busy) return;
    this.busy = true;
    try {
      await this.runOne();
      this.publish();
    } finally {
      this.busy = false;
    }
  }

  setSpeed(index: number): void {
    this.speedIndex = index;
  }

  private tick = (now: number): void => {
    this.frame = requestAnimationFrame(this.tick);
    const engine = this.engine;
    if (!engine || !this.playing || this.busy) {
      this.lastWallMs = now;
      return;
    }
    const elapsed = Number.isNaN(this.lastWallMs) ? 0 : Math.min(100, now - this.lastWallMs);
    this.lastWallMs = now;
    const target = this.clock.nowMs() + elapsed * SIM_SPEEDS[this.speedIndex];
    this.busy = true;
    void this.advance(target, performance.now()).finally(() => {
      this.busy = false;
      // A large pool makes a snapshot costly: the views get one about ten times a second.
      if (now - this.lastPublishMs >= PUBLISH_INTERVAL_MS) {
        this.lastPublishMs = now;
        this.publish();
      }
    });
  };

  private async advance(targetMs: number, startedMs: number): Promise<void> {
    const engine = this.engine!;
    while (engine.hasWork() && this.clock.nowMs() < targetMs && performance.now() - startedMs < FRAME_BUDGET_MS) {
      const next = engine.nextArrivalMs();
      if (!engine.hasAdmittedWork() && next !== null && next > targetMs) {
        this.clock.advanceTo(targetMs);
        return;
      }
      const ran = await this.runOne();
      if (!ran && next === null) return;
    }
    if (engine.hasWork() && this.clock.nowMs() < targetMs && !engine.hasAdmittedWork()) this.clock.advanceTo(targetMs);
  }

  private async runOne(): Promise<boolean> {
    const engine = this.engine;
    if (!engine || !engine.hasWork()) return false;
    const r = await engine.step();
    return r.kind === 'ran';
  }

  private publish(): void {
    const engine = this.engine;
    if (!engine) return;
    const s: LabSnapshot = { ...engine.snapshot(this.state.lastStep), texts: {}, prompts: {}, host: null, model: null };
    this.lastCost = this.executor?.lastCost ?? null;
    this.state.ingest(s);
  }

  dispose(): void {
    this.stop();
  }
}
