/**
 * The real engine in the benchmarks: a `webgpu` backend (the built-in model, or --model, on Dawn
 * for Node, real clock) and the `scaling` benchmark (aggregate tok/s, TTFT and time per output
 * token at batch 1, 4, 16, 64 for the built-in model and synthetic-weight models with the shapes
 * of stories15M/42M/110M, plus dispatches per step).
 */
import { RealClock } from '../src/engine/clock.ts';
import { Engine } from '../src/engine/engine.ts';
import type { Executor } from '../src/engine/types.ts';
import { acquireDevice, type GpuContext } from '../src/gpu/device.ts';
import { GpuExecutor } from '../src/gpu/executor.ts';
import { loadKernelSources } from '../src/gpu/kernel-sources.node.ts';
import { GpuRuntime } from '../src/gpu/step.ts';
import { loadModel } from '../src/model/load.ts';
import { syntheticModel, tinyllamaShapes } from '../src/model/synthetic.ts';
import type { Model } from '../src/model/types.ts';
import { formatNum } from '../src/sim/bench/format.ts';
import { registerBackend, registerBench } from '../src/sim/bench/index.ts';
import type { Backend, BenchCommand } from '../src/sim/bench/types.ts';
import { builtinModelPath, builtinTokenizerPath, fail, readBytes } from './cli-args.ts';
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

function builtinModel(path = builtinModelPath): Model {
  try {
    return loadModel(readBytes(path, 'model'), path, path.endsWith('.gguf') ? undefined : readBytes(builtinTokenizerPath, 'tokenizer')).model;
  } catch (e) {
    fail((e as Error).message);
  }
}

export function registerWebGpu(modelPath?: string): void {
  const model = builtinModel(modelPath);
  const backend: Backend = {
    name: 'webgpu',
    realModel: { name: model.source.name.split('/').pop() ?? 'model', maxModelLen: model.config.seqLen },
    async makeExecutor(): Promise<Executor> {
      const { ctx, runtime } = await gpu();
      return new GpuExecutor(ctx, runtime, model);
    },
    makeClock: () => new RealClock(),
  };
  registerBackend(backend);
  registerBench(scalingBench(model));
}

interface ScalingRow {
  model: string;
  synthetic: boolean;
  batch: number;
  aggregateTokPerS: number;
  meanTtftMs: number;
  meanTpotMs: number;
  numSteps: number;
  dispatchesPerStep: number;
  meanStepMs: number;
  /** From timestamp queries, when the adapter has them. */
  meanGpuStepMs: number | null;
}

/** B requests at once, each P prompt tokens then G generated (EOS ignored), on one engine. */
async function measure(model: Model, synthetic: boolean, batch: number, promptTokens: number, genTokens: number): Promise<ScalingRow> {
  const { ctx, runtime } = await gpu();
  const executor = new GpuExecutor(ctx, runtime, model);
  const blockSize = 16;
  const perSeqBlocks = Math.ceil((promptTokens + genTokens) / blockSize);
  const engine = new Engine({
    executor,
    clock: new RealClock(),
    recordEvents: false,
    checkInvariants: false,
    config: {
      blockSize,
      numGpuBlocks: batch * perSeqBlocks + 1,
      numCpuBlocks: 0,
      maxNumSeqs: batch,
      maxNumBatchedTokens: Math.max(batch * promptTokens, batch),
      maxModelLen: model.config.seqLen,
      enablePrefixCaching: false,
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
  const t0 = performance.now();
  while (engine.hasWork()) {
    const r = await engine.step();
    if (r.kind !== 'ran') continue;
    numSteps++;
    dispatches += executor.lastNumDispatches;
    if (executor.lastGpuTimeMs !== null) {
      gpuMs += executor.lastGpuTimeMs;
      gpuSteps++;
    }
  }
  const wallMs = performance.now() - t0;
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
    aggregateTokPerS: (batch * genTokens * 1000) / wallMs,
    meanTtftMs: ttft / batch,
    meanTpotMs: tpot / batch,
    numSteps,
    dispatchesPerStep: dispatches / Math.max(1, numSteps),
    meanStepMs: wallMs / Math.max(1, numSteps),
    meanGpuStepMs: gpuSteps > 0 ? gpuMs / gpuSteps : null,
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
      const rows: ScalingRow[] = [];
      for (const name of modelNames) {
        let model: Model;
        if (name === 'builtin') model = builtin;
        else if (tinyllamaShapes[name]) model = syntheticModel(tinyllamaShapes[name], ctx.seed, name);
        else fail(`unknown model ${JSON.stringify(name)} (builtin, ${Object.keys(tinyllamaShapes).join(', ')})`);
        for (const batch of batches) {
          ctx.log(`scaling: ${name} batch ${batch}...`);
          rows.push(await measure(model, name !== 'builtin', batch, promptTokens, genTokens));
        }
      }
      const { ctx: gpuCtx } = await gpu();
      const device = `${gpuCtx.adapter.vendor} ${gpuCtx.adapter.architecture} ${gpuCtx.adapter.description}`.trim();
      const speedups = modelNames.map((_, m) => {
        const mine = rows.slice(m * batches.length, (m + 1) * batches.length);
        const one = mine.find((r) => r.batch === 1);
        const sixteen = mine.find((r) => r.batch === 16);
        return one && sixteen ? `${mine[0].model}: batch 16 / batch 1 = ${formatNum(sixteen.aggregateTokPerS / one.aggregateTokPerS, 2)}x` : null;
      });
      return {
        table: [
          ['model', 'batch', 'tok/s', 'TTFT ms', 'TPOT ms', 'steps', 'dispatch/step', 'step ms', 'GPU step ms'],
          ...rows.map((r) => [
            r.synthetic ? `${r.model} (synthetic)` : r.model,
            String(r.batch),
            formatNum(r.aggregateTokPerS, 1),
            formatNum(r.meanTtftMs, 1),
            formatNum(r.meanTpotMs, 2),
            String(r.numSteps),
            formatNum(r.dispatchesPerStep, 1),
            formatNum(r.meanStepMs, 2),
            r.meanGpuStepMs === null ? '-' : formatNum(r.meanGpuStepMs, 3),
          ]),
        ],
        json: { device, promptTokens, genTokens, rows },
        notes: [
          `device: ${device}`,
          `${promptTokens} prompt tokens and ${genTokens} generated per request (EOS ignored); synthetic models have seeded random weights, for speed only`,
          ...speedups.filter((s): s is string => s !== null),
        ],
      };
    },
  };
}
