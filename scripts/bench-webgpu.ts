/**
 * The real engine in the benchmarks: a `webgpu` backend (the built-in model, or --model, on Dawn
 * for Node, real clock) and the `scaling` benchmark (aggregate tok/s, TTFT and time per output
 * token at batch 1, 4, 16, 64 for the built-in model and synthetic-weight models with the shapes
 * of stories15M/42M/110M, plus dispatches per step, and per step the GPU's busy time from
 * timestamp queries, the host time and the GPU's idle gap between consecutive steps).
 */
import { RealClock } from '../src/engine/clock.ts';
import { Engine } from '../src/engine/engine.ts';
import { StepProfile } from '../src/engine/profile.ts';
import type { Executor } from '../src/engine/types.ts';
import { acquireDevice, type GpuContext } from '../src/gpu/device.ts';
import { GpuExecutor } from '../src/gpu/executor.ts';
import { loadKernelSources } from '../src/gpu/kernel-sources.node.ts';
import { GpuRuntime } from '../src/gpu/step.ts';
import { syntheticModel, tinyllamaShapes } from '../src/model/synthetic.ts';
import type { Model } from '../src/model/types.ts';
import { formatNum } from '../src/sim/bench/format.ts';
import { registerBackend, registerBench } from '../src/sim/bench/index.ts';
import type { Backend, BenchCommand } from '../src/sim/bench/types.ts';
import { loadBenchModel, machineDescription, threadRunDelayReader } from './bench-host.ts';
import { fail } from './cli-args.ts';
import { nodeGpu } from './node-gpu.ts';

let gpuContext: Promise<{ ctx: GpuContext; runtime: GpuRuntime }> | null = null;

/** One device for the whole benchmark process. */
function gpu(): Promise<{ ctx: GpuContext; runtime: GpuRuntime }> {
  gpuContext ??= (async () => {
    try {
      const ctx = await acquireDevice(await nodeGpu());
      return { ctx, runtime: GpuRuntime.fromContext(ctx, loadKernelSources()) };
    } catch (e) {
      fail((e as Error).message);
    }
  })();
  return gpuContext;
}

/** The adapter in words. */
async function deviceDescription(): Promise<string> {
  const { ctx } = await gpu();
  const a = ctx.adapter;
  return `${a.vendor} ${a.architecture} ${a.description}`.trim() + (ctx.hasTimestampQuery ? ' (timestamp-query)' : ' (no timestamp-query)');
}

export function registerWebGpu(modelPath?: string): void {
  const model = loadBenchModel(modelPath);
  const backend: Backend = {
    name: 'webgpu',
    realModel: { name: model.source.name.split('/').pop() ?? 'model', maxModelLen: model.config.seqLen, vocabSize: model.config.vocabSize },
    async makeExecutor(): Promise<Executor> {
      const { ctx, runtime } = await gpu();
      return new GpuExecutor(ctx, runtime, model);
    },
    async realExecutor({ profile, prepareSteps, fuseRopeKv }): Promise<Executor> {
      const { ctx, runtime } = await gpu();
      return new GpuExecutor(ctx, runtime, model, { profile, prepareSteps, fuseRopeKv });
    },
    async executorFor(m: Model): Promise<Executor> {
      const { ctx, runtime } = await gpu();
      return new GpuExecutor(ctx, runtime, m);
    },
    describe: async () => `WebGPU (Dawn for Node): ${await deviceDescription()}; ${machineDescription()}`,
    threadRunDelayMs: threadRunDelayReader(),
    makeClock: () => new RealClock(),
  };
  registerBackend(backend);
  registerBench(scalingBench(model));
}

interface ScalingRow {
  model: string;
  synthetic: boolean;
  batch: number;
  /** The engine's asyncScheduling setting (vLLM's async_scheduling) for this row. */
  asyncScheduling: boolean;
  aggregateTokPerS: number;
  meanTtftMs: number;
  meanTpotMs: number;
  numSteps: number;
  dispatchesPerStep: number;
  meanStepMs: number;
  /** From timestamp queries, when the adapter has them. */
  meanGpuStepMs: number | null;
  /** Host time per step: the step's wall time minus the wait for its readbacks. */
  meanHostStepMs: number;
  /** submit() until the step's readbacks were mapped. */
  meanReadbackWaitMs: number;
  /**
   * The GPU's idle time between consecutive steps: the next step's first pass began this long
   * after the previous step's last pass ended (timestamp queries; null without them).
   */
  meanGpuIdleGapMs: number | null;
  /** Every step of the measured run, in order (gapMs: null for the first and without timestamps). */
  steps: { wallMs: number; hostMs: number; gpuMs: number | null; gapMs: number | null }[];
}

/** B requests at once, each P prompt tokens then G generated (EOS ignored), on one engine. */
async function measure(model: Model, synthetic: boolean, batch: number, promptTokens: number, genTokens: number, asyncScheduling = false): Promise<ScalingRow> {
  const { ctx, runtime } = await gpu();
  const profile = new StepProfile();
  const executor = new GpuExecutor(ctx, runtime, model, { profile });
  const blockSize = 16;
  const perSeqBlocks = Math.ceil((promptTokens + genTokens) / blockSize);
  const engine = new Engine({
    executor,
    clock: new RealClock(),
    recordEvents: false,
    checkInvariants: false,
    profile,
    config: {
      blockSize,
      numGpuBlocks: batch * perSeqBlocks + 1,
      numCpuBlocks: 0,
      maxNumSeqs: batch,
      maxNumBatchedTokens: Math.max(batch * promptTokens, batch),
      maxModelLen: model.config.seqLen,
      enablePrefixCaching: false,
      asyncScheduling,
    },
  });
  await engine.init();
  const vocab = model.config.vocabSize;
  const submitAll = (maxTokens: number) =>
    Array.from({ length: batch }, (_, b) => {
      const prompt = [1, ...Array.from({ length: promptTokens - 1 }, (_, i) => 3 + ((b * 31 + i * 7) % (vocab - 3)))];
      return engine.submit({ promptTokenIds: prompt, maxTokens, stopTokenIds: [] });
    });
  // Warm-up: the same shapes once, so pipeline compilation stays out of the measurement.
  submitAll(2);
  await engine.runUntilIdle();
  const ids = submitAll(genTokens);
  let numSteps = 0;
  let dispatches = 0;
  let gpuMs = 0;
  let gpuSteps = 0;
  const steps: ScalingRow['steps'] = [];
  let prevEnd: bigint | null = null;
  profile.reset();
  const t0 = performance.now();
  while (engine.hasWork()) {
    const waitBefore = profile.totalMs.readbackWait + profile.totalMs.swapOut;
    const s0 = performance.now();
    const r = await engine.step();
    const stepWallMs = performance.now() - s0;
    if (r.kind !== 'ran') continue;
    numSteps++;
    dispatches += executor.lastNumDispatches;
    if (executor.lastGpuTimeMs !== null) {
      gpuMs += executor.lastGpuTimeMs;
      gpuSteps++;
    }
    const span = executor.lastGpuSpanNs;
    steps.push({
      wallMs: stepWallMs,
      hostMs: stepWallMs - (profile.totalMs.readbackWait + profile.totalMs.swapOut - waitBefore),
      gpuMs: executor.lastGpuTimeMs,
      gapMs: span && prevEnd !== null ? Number(span.begin - prevEnd) / 1e6 : null,
    });
    prevEnd = span ? span.end : null;
  }
  const wallMs = performance.now() - t0;
  const gaps = steps.map((s) => s.gapMs).filter((g): g is number => g !== null);
  let ttft = 0;
  let tpot = 0;
  for (const id of ids) {
    const r = engine.getRequest(id)!;
    ttft += r.firstTokenMs - r.arrivalMs;
    tpot += (r.finishedMs - r.firstTokenMs) / Math.max(1, genTokens - 1);
  }
  executor.dispose();
  return {
    model: model.source.name.split('/').pop() ?? 'model',
    synthetic,
    batch,
    asyncScheduling,
    aggregateTokPerS: (batch * genTokens * 1000) / wallMs,
    meanTtftMs: ttft / batch,
    meanTpotMs: tpot / batch,
    numSteps,
    dispatchesPerStep: dispatches / Math.max(1, numSteps),
    meanStepMs: wallMs / Math.max(1, numSteps),
    meanGpuStepMs: gpuSteps > 0 ? gpuMs / gpuSteps : null,
    meanHostStepMs: steps.reduce((a, s) => a + s.hostMs, 0) / Math.max(1, numSteps),
    meanReadbackWaitMs: profile.totalMs.readbackWait / Math.max(1, numSteps),
    meanGpuIdleGapMs: gaps.length > 0 ? gaps.reduce((a, g) => a + g, 0) / gaps.length : null,
    steps,
  };
}

function scalingBench(builtin: Model): BenchCommand {
  return {
    name: 'scaling',
    description: 'real engine: aggregate tok/s, TTFT, TPOT at batch 1/4/16/64 (webgpu backend)',
    async run(ctx) {
      if (ctx.backend.name !== 'webgpu') fail('the scaling benchmark runs the real engine: add --backend webgpu');
      const batches = (ctx.options.batches ?? '1,4,16,64').split(',').map(Number);
      if (batches.some((b) => !Number.isInteger(b) || b < 1 || b > 256)) fail('--batches must be a comma-separated list of integers from 1 to 256');
      const modelNames = (ctx.options.models ?? 'builtin,stories15M,stories42M,stories110M').split(',');
      const promptTokens = Number(ctx.options.prompt ?? 8);
      const genTokens = Number(ctx.options.tokens ?? 32);
      if (!(promptTokens >= 1 && genTokens >= 2)) fail('--prompt must be >= 1 and --tokens >= 2');
      // --async-scheduling off (default) | on | both (each row twice, off then on, with their ratios)
      const asyncOption = ctx.options['async-scheduling'] ?? 'off';
      if (!['off', 'on', 'both'].includes(asyncOption)) fail('--async-scheduling must be off, on or both');
      const asyncModes = asyncOption === 'both' ? [false, true] : [asyncOption === 'on'];
      const rows: ScalingRow[] = [];
      for (const name of modelNames) {
        let model: Model;
        if (name === 'builtin') model = builtin;
        else if (tinyllamaShapes[name]) model = syntheticModel(tinyllamaShapes[name], ctx.seed, name);
        else fail(`unknown model ${JSON.stringify(name)} (builtin, ${Object.keys(tinyllamaShapes).join(', ')})`);
        for (const batch of batches) {
          for (const mode of asyncModes) {
            ctx.log(`scaling: ${name} batch ${batch}${asyncModes.length > 1 ? `, asyncScheduling ${mode}` : ''}...`);
            rows.push(await measure(model, name !== 'builtin', batch, promptTokens, genTokens, mode));
          }
        }
      }
      // Async scheduling on / off for the same model and batch (only with --async-scheduling both).
      const asyncRatios = rows
        .filter((r) => r.asyncScheduling)
        .flatMap((on) => {
          const off = rows.find((r) => !r.asyncScheduling && r.model === on.model && r.batch === on.batch);
          if (!off) return [];
          const gap = (r: ScalingRow) => (r.meanGpuStepMs === null ? null : r.meanStepMs - r.meanGpuStepMs);
          const gapOn = gap(on);
          const gapOff = gap(off);
          return [{
            model: on.model,
            batch: on.batch,
            tokPerSOnOverOff: on.aggregateTokPerS / off.aggregateTokPerS,
            stepMsOnOverOff: on.meanStepMs / off.meanStepMs,
            /** (step ms - GPU step ms) on / off: the host's share of a step. */
            stepMinusGpuMsOnOverOff: gapOn !== null && gapOff !== null && gapOff > 0 ? gapOn / gapOff : null,
            stepMinusGpuMs: { off: gapOff, on: gapOn },
            gpuIdleGapMs: { off: off.meanGpuIdleGapMs, on: on.meanGpuIdleGapMs },
          }];
        });
      const { ctx: gpuCtx } = await gpu();
      const device = `${gpuCtx.adapter.vendor} ${gpuCtx.adapter.architecture} ${gpuCtx.adapter.description}`.trim();
      const timestamps = rows.some((r) => r.meanGpuStepMs !== null);
      const speedups = modelNames.map((_, m) => {
        const per = batches.length * asyncModes.length;
        return asyncModes.map((mode) => {
          const mine = rows.slice(m * per, (m + 1) * per).filter((r) => r.asyncScheduling === mode);
          const one = mine.find((r) => r.batch === 1);
          const sixteen = mine.find((r) => r.batch === 16);
          return one && sixteen ? `${mine[0].model}${asyncModes.length > 1 ? ` (async ${mode ? 'on' : 'off'})` : ''}: batch 16 / batch 1 = ${formatNum(sixteen.aggregateTokPerS / one.aggregateTokPerS, 2)}x` : null;
        });
      });
      return {
        table: [
          ['model', 'batch', 'async', 'tok/s', 'TTFT ms', 'TPOT ms', 'steps', 'dispatch/step', 'step ms', 'GPU step ms', 'host ms', 'readback ms', 'GPU gap ms'],
          ...rows.map((r) => [
            r.synthetic ? `${r.model} (synthetic)` : r.model,
            String(r.batch),
            r.asyncScheduling ? 'on' : 'off',
            formatNum(r.aggregateTokPerS, 1),
            formatNum(r.meanTtftMs, 1),
            formatNum(r.meanTpotMs, 2),
            String(r.numSteps),
            formatNum(r.dispatchesPerStep, 1),
            formatNum(r.meanStepMs, 2),
            r.meanGpuStepMs === null ? '-' : formatNum(r.meanGpuStepMs, 3),
            formatNum(r.meanHostStepMs, 3),
            formatNum(r.meanReadbackWaitMs, 3),
            r.meanGpuIdleGapMs === null ? '-' : formatNum(r.meanGpuIdleGapMs, 3),
          ]),
        ],
        json: { device, machine: machineDescription(), timestampQuery: timestamps, promptTokens, genTokens, rows, ...(asyncRatios.length > 0 ? { asyncRatios } : {}) },
        notes: [
          `device: ${device}`,
          'per step (means): GPU step = GPU busy time (timestamp queries); host = step wall time - readback wait; readback = submit() until the results are mapped; GPU gap = GPU idle time between the end of one step\'s last pass and the start of the next step\'s first pass',
          ...(timestamps ? [] : ['this device has no timestamp queries: GPU step and GPU gap are not measured (null in the JSON)']),
          `${promptTokens} prompt tokens and ${genTokens} generated per request (EOS ignored); synthetic models have seeded random weights, for speed only`,
          ...speedups.flat().filter((s): s is string => s !== null),
          ...asyncRatios.map(
            (a) =>
              `${a.model} batch ${a.batch}: async scheduling on/off tok/s ${formatNum(a.tokPerSOnOverOff, 2)}x, step ${formatNum(a.stepMsOnOverOff, 2)}x` +
              (a.stepMinusGpuMsOnOverOff !== null ? `, step - GPU step ${formatNum(a.stepMinusGpuMs.off!, 2)} -> ${formatNum(a.stepMinusGpuMs.on!, 2)} ms (${formatNum(a.stepMinusGpuMsOnOverOff, 2)}x)` : ''),
          ),
          ...(asyncModes.includes(true) ? ['async scheduling on: a step is planned and submitted before the previous one is read, so readback ms overlaps the next step\'s host work and host ms (wall - readback) understates it; compare tok/s, step ms and GPU gap'] : []),
        ],
      };
    },
  };
}
