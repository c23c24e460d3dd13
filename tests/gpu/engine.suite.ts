/**
 * The real model through the real engine on real WebGPU: the golden texts byte for byte, batch
 * invariance (many prompts of different lengths arriving at different steps, chunked prefill, a
 * shared prefix, forced preemption by recompute and by swap: each sequence prints exactly its
 * solo greedy text), n > 1 forks with copy-on-write equal to separate runs with the same seeds,
 * and a device loss injected mid-run (every request still completes, with the same text).
 * Run from engine.node.test.ts (Dawn for Node) and engine.browser.test.ts (Chromium).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.ts';
import type { SchedulerConfig } from '../../src/engine/scheduler.ts';
import type { Executor, StepPlan } from '../../src/engine/types.ts';
import { acquireDevice, type GpuContext } from '../../src/gpu/device.ts';
import { GpuExecutor } from '../../src/gpu/executor.ts';
import type { KernelSources } from '../../src/gpu/kernel-names.ts';
import { GpuRuntime } from '../../src/gpu/step.ts';
import { GPU_TUNING } from '../../src/gpu/tuning.ts';
import type { ScheduledSeq } from '../../src/engine/types.ts';
import { generate, runcRequest, runcText } from '../../src/model/generate.ts';
import { loadModel, type LoadedModel } from '../../src/model/load.ts';
import { ReferenceModel } from '../../src/model/reference.ts';
import { modelWeightBytes, quantizeModel, type WeightType } from '../../src/model/quant.ts';
import type { Model } from '../../src/model/types.ts';
import { createSampler } from '../../src/engine/sampler.ts';
import { EngineHost } from '../../workers/engine-host.ts';
import type { StreamEvent } from '../../workers/protocol.ts';

export interface EngineSuiteFiles {
  /** Bytes of a file in public/models/ or tests/fixtures/. */
  read(path: string): Promise<Uint8Array>;
}

const decoder = new TextDecoder();
const text = (b: Uint8Array) => decoder.decode(b);

/** Prompts of different lengths; three share a long opening (prefix caching). */
const prompts = [
  'Once upon a time',
  'The little dog',
  'Lily and Ben went to the park to play. They saw a big tree',
  'Once upon a time, there was a little girl named Lily. She loved to play outside',
  'Once upon a time, there was a little girl named Lily. She loved to eat apples',
  'Once upon a time, there was a little girl named Lily. She had a red ball',
  'Tom had a toy car.',
  'One day, a bird',
  'The sun was hot and the children wanted to swim in the lake with their friends',
  'Sue',
];
const maxNewTokens = 40;

/** Counts what the engine asked the executor to do. */
class CountingExecutor implements Executor {
  numCopies = 0;
  numSwapOut = 0;
  numSwapIn = 0;
  maxSeqsPerStep = 0;
  constructor(readonly inner: Executor) {}
  get name() {
    return this.inner.name;
  }
  configure(g: Parameters<Executor['configure']>[0]) {
    return this.inner.configure(g);
  }
  execute(plan: StepPlan) {
    this.numCopies += plan.copies.length;
    this.numSwapOut += plan.swapOut.length;
    this.numSwapIn += plan.swapIn.length;
    this.maxSeqsPerStep = Math.max(this.maxSeqsPerStep, plan.seqs.length);
    return this.inner.execute(plan);
  }
  dispose() {
    this.inner.dispose();
  }
}

/**
 * `full` runs every test; without it (the browser, where SwiftShader behind Chromium is about 4x
 * slower per step than Dawn for Node) the goldens, the shared-prefix/chunked invariance and the
 * device loss run, and the preemption and fork tests are left to the Node run.
 */
export function engineSuite(label: string, getGpu: () => GPU, sources: KernelSources, files: EngineSuiteFiles, full = true): void {
  // Registered only in full runs (not reported as skipped: the Node run covers them).
  const itFull: typeof it = full ? it : (((() => undefined) as unknown) as typeof it);
  describe(`the real engine on WebGPU (${label})`, () => {
    let ctx: GpuContext;
    let runtime: GpuRuntime;
    let loaded: LoadedModel;
    let golden: { once: Uint8Array; none: Uint8Array };
    const solo = new Map<string, string>();

    beforeAll(async () => {
      ctx = await acquireDevice(getGpu());
      runtime = GpuRuntime.fromContext(ctx, sources);
      loaded = loadModel(await files.read('public/models/stories260K.bin'), 'stories260K.bin', await files.read('public/models/tok512.bin'));
      golden = {
        once: await files.read('tests/fixtures/stories260K.once-upon-a-time.t0.n256.txt'),
        none: await files.read('tests/fixtures/stories260K.no-prompt.t0.n256.txt'),
      };
      // Solo greedy texts from the CPU reference (run.c's arithmetic): the oracle for batching.
      for (const p of prompts) {
        const ref = new ReferenceModel(loaded.model);
        const sampler = createSampler({ temperature: 0, topP: 1, topK: 0, seed: 1 });
        const steps = loaded.tokenizer.encode(p).length - 1 + maxNewTokens;
        const r = generate({ tokenizer: loaded.tokenizer, prompt: p, steps, seqLen: 512, forward: (t, pos) => ref.forward(t, pos), sample: (l) => sampler.sampleLogits(l) });
        solo.set(p, text(r.bytes));
      }
    });

    afterAll(() => {
      runtime?.destroy();
      ctx?.destroy();
    });

    function newEngine(config: Partial<SchedulerConfig>): { engine: Engine; counter: CountingExecutor } {
      const counter = new CountingExecutor(new GpuExecutor(ctx, runtime, loaded.model, { validate: true }));
      const engine = new Engine({ executor: counter, config: { maxModelLen: 512, ...config }, checkInvariants: true });
      return { engine, counter };
    }

    function runcOutput(engine: Engine, requestId: string, promptTokens: number[], steps: number): string {
      const r = engine.getRequest(requestId)!;
      return text(runcText(loaded.tokenizer, promptTokens, r.seqs[0].outputTokenIds, steps, 512));
    }

    it('reproduces both golden texts byte for byte, and batched together', async () => {
      const { engine } = newEngine({ blockSize: 16, numGpuBlocks: 64, numCpuBlocks: 0 });
      const a = runcRequest(loaded.tokenizer, 'Once upon a time', 256, 512);
      const b = runcRequest(loaded.tokenizer, '', 256, 512);
      const idA = engine.submit({ ...a, sampling: { temperature: 0 } });
      const idB = engine.submit({ ...b, sampling: { temperature: 0 } });
      await engine.runUntilIdle();
      expect(runcOutput(engine, idA, a.promptTokenIds, 256)).toBe(text(golden.once));
      expect(runcOutput(engine, idB, b.promptTokenIds, 256)).toBe(text(golden.none));
    });

    it('warm-up compiles every pipeline a run uses on throwaway K/V, and the goldens are unchanged after it', async () => {
      const fresh = GpuRuntime.fromContext(ctx, sources);
      try {
        const executor = new GpuExecutor(ctx, fresh, loaded.model, { validate: true });
        const engine = new Engine({ executor, config: { maxModelLen: 512, blockSize: 16, numGpuBlocks: 64, numCpuBlocks: 0, maxNumBatchedTokens: 256, maxNumSeqs: 32 }, checkInvariants: true });
        await engine.init();
        await executor.warmUp({ maxTokens: 256, maxSeqs: 32 });
        const compiled = fresh.registry.stats.pipelines;
        expect(compiled).toBeGreaterThan(5);
        const a = runcRequest(loaded.tokenizer, 'Once upon a time', 256, 512);
        const b = runcRequest(loaded.tokenizer, '', 256, 512);
        const idA = engine.submit({ ...a, sampling: { temperature: 0 } });
        const idB = engine.submit({ ...b, sampling: { temperature: 0.8, seed: 3 } });
        await engine.runUntilIdle();
        expect(fresh.registry.stats.pipelines).toBe(compiled); // nothing left to compile in the run
        expect(runcOutput(engine, idA, a.promptTokenIds, 256)).toBe(text(golden.once));
        expect(engine.getRequest(idB)!.state).toBe('finished');
        executor.dispose();
      } finally {
        fresh.destroy();
      }
    });

    async function runMany(config: Partial<SchedulerConfig>) {
      const { engine, counter } = newEngine(config);
      const ids = new Map<string, { id: string; tokens: number[] }>();
      const submit = (p: string) => {
        const r = runcRequest(loaded.tokenizer, p, loaded.tokenizer.encode(p).length - 1 + maxNewTokens, 512);
        ids.set(p, { id: engine.submit({ ...r, sampling: { temperature: 0 } }), tokens: r.promptTokenIds });
      };
      // Half arrive now, the rest at different later steps.
      prompts.slice(0, 5).forEach(submit);
      let next = 5;
      let numSteps = 0;
      while (engine.hasWork() || next < prompts.length) {
        if (next < prompts.length && numSteps % 3 === 2) submit(prompts[next++]);
        const r = await engine.step();
        if (r.kind === 'ran') numSteps++;
        else if (next < prompts.length) submit(prompts[next++]);
      }
      for (const p of prompts) {
        const { id, tokens } = ids.get(p)!;
        const steps = tokens.length - 1 + maxNewTokens;
        expect(runcOutput(engine, id, tokens, steps), `prompt ${JSON.stringify(p)}`).toBe(solo.get(p));
      }
      return { engine, counter, summary: engine.metricsSummary() };
    }

    it('batch invariance: staggered arrivals, chunked prefill, shared prefix — each prints its solo text', async () => {
      const { counter, summary } = await runMany({ blockSize: 4, numGpuBlocks: 256, numCpuBlocks: 0, maxNumBatchedTokens: 24, enableChunkedPrefill: true, enablePrefixCaching: true });
      expect(counter.maxSeqsPerStep).toBeGreaterThanOrEqual(6);
      expect(summary.numPrefixHitTokens).toBeGreaterThan(0);
      expect(summary.numPreemptions).toBe(0);
    });

    itFull('batch invariance under forced preemption by recompute', async () => {
      const { summary } = await runMany({ blockSize: 4, numGpuBlocks: 40, numCpuBlocks: 0, maxNumBatchedTokens: 64, preemptionMode: 'recompute', enablePrefixCaching: false });
      expect(summary.numPreemptions).toBeGreaterThan(0);
    });

    itFull('batch invariance under forced preemption by swap to the CPU pool', async () => {
      const { counter, summary } = await runMany({ blockSize: 4, numGpuBlocks: 40, numCpuBlocks: 128, maxNumBatchedTokens: 64, preemptionMode: 'swap', enablePrefixCaching: false });
      expect(summary.numPreemptions).toBeGreaterThan(0);
      expect(counter.numSwapOut).toBeGreaterThan(0);
      expect(counter.numSwapIn).toBeGreaterThan(0);
    });

    itFull('n > 1: forks share the prompt with copy-on-write and equal separate runs with the same seeds', async () => {
      const prompt = loaded.tokenizer.encode('Once upon a time, there was a cat');
      const sampling = { temperature: 0.9, topP: 0.95, topK: 0, seed: 42 };
      const forked = newEngine({ blockSize: 4, numGpuBlocks: 128, numCpuBlocks: 0 });
      const id = forked.engine.submit({ promptTokenIds: prompt, maxTokens: 30, n: 3, sampling, stopTokenIds: [1] });
      await forked.engine.runUntilIdle();
      const outs = forked.engine.getRequest(id)!.seqs.map((s) => s.outputTokenIds);
      expect(forked.counter.numCopies).toBeGreaterThan(0); // the shared partial last block was copied
      expect(new Set(outs.map((o) => o.join(','))).size).toBeGreaterThan(1);

      const separate = newEngine({ blockSize: 4, numGpuBlocks: 128, numCpuBlocks: 0 });
      const ids = [0, 1, 2].map((i) => separate.engine.submit({ promptTokenIds: prompt, maxTokens: 30, sampling: { ...sampling, seed: 42 + i }, stopTokenIds: [1] }));
      await separate.engine.runUntilIdle();
      ids.forEach((sid, i) => expect(separate.engine.getRequest(sid)!.seqs[0].outputTokenIds, `sample ${i}`).toEqual(outs[i]));
    });

    const weightTypes: WeightType[] = ['f32', 'q8_0', 'q4_0'];
    const modelOf = (type: WeightType): Model => (type === 'f32' ? loaded.model : quantizeModel(loaded.model, type));
    it.each(weightTypes)('bitwise batch invariance with real-GPU tuning, %s weights: logits of a row do not depend on how many rows share the step', async (type) => {
      const model = modelOf(type);
      // GPU_TUNING switches matmuls to the tiled kernel above 16 rows (prefill); it reduces each
      // output in the gemv kernel's order, so a sequence alone (gemv) and in a 25-row step
      // (tiled) gets the same bits.
      const gpuRuntime = new GpuRuntime(ctx.device, sources, { tuning: GPU_TUNING });
      const bs = 4;
      const seq = (seqId: number, tokenIds: number[], table: number[]): ScheduledSeq => ({
        seqId,
        requestId: `r${seqId}`,
        tokenIds,
        startPosition: 0,
        slots: tokenIds.map((_, p) => table[Math.floor(p / bs)] * bs + (p % bs)),
        blockTable: table,
        needsLogits: true,
        sampling: { temperature: 1, topP: 1, topK: 0, seed: 1 },
      });
      const plan = (seqs: ScheduledSeq[]) => ({ stepIndex: 1, seqs, copies: [], swapOut: [], swapIn: [], numBatchedTokens: seqs.reduce((n, x) => n + x.tokenIds.length, 0) });
      const mine = loaded.tokenizer.encode('Once upon a time, the');
      const other = loaded.tokenizer.encode('The little dog ran to the park and played with a big red ball all day long');
      expect(mine.length + other.length).toBeGreaterThan(16);
      const run = async (seqs: ScheduledSeq[]) => {
        const ex = new GpuExecutor(ctx, gpuRuntime, model, { validate: true });
        ex.configure({ blockSize: bs, numGpuBlocks: 32, numCpuBlocks: 0 });
        const out = await ex.execute(plan(seqs));
        ex.dispose();
        return out.outputs.find((o) => o.seqId === 0)!.logits!;
      };
      const alone = await run([seq(0, mine, [3, 4])]);
      expect(mine.length).toBeLessThanOrEqual(GPU_TUNING.gemvMaxRows);
      expect(gpuRuntime.registry.pipelinesOf('matmul_tiled')).toBe(0);
      const batched = await run([seq(1, other, [10, 11, 12, 13, 14, 15, 16, 17, 18]), seq(0, mine, [20, 21])]);
      expect(gpuRuntime.registry.pipelinesOf('matmul_tiled')).toBeGreaterThan(0); // the 25-row prefill ran tiled
      const bits = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));
      expect(bits(batched)).toEqual(bits(alone));
      gpuRuntime.destroy();
    });

    it.each(['q8_0', 'q4_0'] as const)('%s weights: the engine prints the CPU reference\'s greedy text of the quantized model, alone and batched', async (type) => {
      const model = modelOf(type);
      const chosen = [prompts[0], prompts[2], prompts[6]];
      const expected = chosen.map((p) => {
        const ref = new ReferenceModel(model);
        const sampler = createSampler({ temperature: 0, topP: 1, topK: 0, seed: 1 });
        const steps = loaded.tokenizer.encode(p).length - 1 + maxNewTokens;
        return text(generate({ tokenizer: loaded.tokenizer, prompt: p, steps, seqLen: 512, forward: (t, pos) => ref.forward(t, pos), sample: (l) => sampler.sampleLogits(l) }).bytes);
      });
      // Q4_0 changes this model's text (Q8_0 keeps these 40 tokens): the GPU follows the quantized model.
      if (type === 'q4_0') expect(chosen.some((p, i) => solo.get(p) !== expected[i])).toBe(true);
      const executor = new GpuExecutor(ctx, runtime, model, { validate: true });
      // The GPU holds the blocks: every matrix quantized but w2 (rows of 172), fewer bytes than f32.
      const c = model.config;
      expect(executor.weightTypes).toEqual([type, ...Array.from({ length: c.numLayers }, () => [type, type, type, 'f32']).flat(), type]);
      expect(executor.weightBytes).toBe(modelWeightBytes(model));
      expect(executor.weightBytes).toBeLessThan(modelWeightBytes(loaded.model));
      const engine = new Engine({ executor, config: { maxModelLen: 512, blockSize: 4, numGpuBlocks: 64, numCpuBlocks: 0 }, checkInvariants: true });
      const ids = chosen.map((p) => {
        const r = runcRequest(loaded.tokenizer, p, loaded.tokenizer.encode(p).length - 1 + maxNewTokens, 512);
        return { id: engine.submit({ ...r, sampling: { temperature: 0 } }), tokens: r.promptTokenIds };
      });
      while (engine.hasWork()) await engine.step();
      ids.forEach(({ id, tokens }, i) => expect(runcOutput(engine, id, tokens, tokens.length - 1 + maxNewTokens), chosen[i]).toBe(expected[i]));
    });

    it('a device lost mid-run: the host recovers and every request completes with its solo text', async () => {
      const host = new EngineHost({ gpu: getGpu(), kernelSources: sources, settings: { blockSize: 4, numGpuBlocks: 128, numCpuBlocks: 0, maxNumBatchedTokens: 64 } });
      await host.setModel(loaded);
      const chosen = prompts.slice(0, 6);
      const done = new Map<string, StreamEvent>();
      const ids = chosen.map((p) => host.submit({ prompt: p, max_tokens: maxNewTokens, temperature: 0 }, (e) => e.type !== 'text' && done.set(e.requestId, e)));
      // Let a few steps run, then pull the device out from under the engine.
      while ((host.snapshot()?.stepIndex ?? 0) < 4) await new Promise((r) => setTimeout(r, 5));
      host.loseDevice();
      const deadline = Date.now() + 90_000;
      while (done.size < ids.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(host.status.numDeviceLosses).toBe(1);
      expect(host.status.phase).toBe('ready');
      chosen.forEach((p, i) => {
        const e = done.get(ids[i]);
        expect(e?.type, `request for ${JSON.stringify(p)}`).toBe('done');
        // run.c's text is the prompt (without the dummy-prefix space) plus the generated text and "\n".
        if (e?.type === 'done') expect(p + e.texts[0] + '\n').toBe(solo.get(p));
      });
      const snap = host.snapshot()!;
      expect(snap.metrics.numPreemptions).toBeGreaterThan(0);
    });
  });
}
