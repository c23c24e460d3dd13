/**
 * Async scheduling (asyncScheduling, vLLM's async_scheduling) on the serving core: the engine plans
 * and executes step n+1 before it reads step n's tokens; tokens in flight are placeholders the
 * executor fills from its kept tokens (the fake executor does what the WebGPU one does on the
 * device). The fake model derives each token from the whole context read back through the block
 * tables, so a placeholder filled wrongly, a slot reused too early or a lost token changes the text.
 */
import { describe, expect, it } from 'vitest';
import { Engine } from '../../../src/engine/engine.ts';
import { VirtualClock } from '../../../src/engine/clock.ts';
import { FakeExecutor, type FakeExecutorOptions } from '../../../src/engine/testing/fakeExecutor.ts';
import { generateWorkload, type WorkloadSpec } from '../../../src/engine/workload.ts';
import type { SchedulerConfig } from '../../../src/engine/scheduler.ts';
import { validateEngineConfig, DEFAULT_SCHEDULER_CONFIG } from '../../../src/engine/config.ts';
import { PLACEHOLDER_TOKEN_ID, type Executor, type StepOutput, type StepPlan } from '../../../src/engine/types.ts';
import type { EngineEvent } from '../../../src/engine/events.ts';
import type { RequestSpec } from '../../../src/engine/request.ts';

const config: Partial<SchedulerConfig> = { blockSize: 8, numGpuBlocks: 64, numCpuBlocks: 32, maxNumBatchedTokens: 64, maxNumSeqs: 12, maxModelLen: 256 };
const fake: FakeExecutorOptions = { stopTokenId: 1, stopEvery: 12, emitLogits: true };

function workload(seed: number, extra: Partial<WorkloadSpec> = {}): RequestSpec[] {
  return generateWorkload({
    seed,
    numRequests: 30,
    vocabSize: 60,
    arrival: { kind: 'poisson', ratePerS: 300 },
    promptTokens: { kind: 'uniform', min: 2, max: 40 },
    outputTokens: { kind: 'uniform', min: 1, max: 30 },
    sharedPrefix: { fraction: 0.5, numTokens: 16 },
    temperature: 0,
    ...extra,
  }).map((r) => ({ ...r, stopTokenIds: [1] }));
}

interface Run {
  engine: Engine;
  executor: FakeExecutor;
  /** Streamed tokens per request, in order ('token' events). */
  streamed: Map<string, number[]>;
  plans: StepPlan[];
}

async function run(specs: RequestSpec[], asyncScheduling: boolean, extra: Partial<SchedulerConfig> = {}, options: FakeExecutorOptions = fake): Promise<Run> {
  const executor = new FakeExecutor({ ...options, tokenFeedback: true });
  executor.recordPlans = true;
  const engine = new Engine({ executor, clock: new VirtualClock(), config: { ...config, asyncScheduling, ...extra }, checkInvariants: true });
  const streamed = new Map<string, number[]>();
  engine.on((e) => {
    if (e.type === 'token') streamed.set(e.requestId, [...(streamed.get(e.requestId) ?? []), e.tokenId]);
  });
  for (const r of specs) engine.submit(r);
  await engine.runUntilIdle();
  return { engine, executor, streamed, plans: executor.plans };
}

function outputs(engine: Engine): Record<string, { tokens: number[][]; reason: string | null }> {
  const out: Record<string, { tokens: number[][]; reason: string | null }> = {};
  for (const r of engine.requests()) out[r.requestId] = { tokens: r.seqs.map((s) => s.outputTokenIds), reason: r.endReason };
  return out;
}

function stepEvents(engine: Engine): Extract<EngineEvent, { type: 'step' }>[] {
  return engine.eventLog.filter((e): e is Extract<EngineEvent, { type: 'step' }> => e.type === 'step');
}

describe('async scheduling on the serving core', () => {
  it('is validated as a boolean and off by default', () => {
    expect(DEFAULT_SCHEDULER_CONFIG.asyncScheduling).toBe(false);
    const problems = validateEngineConfig({ ...DEFAULT_SCHEDULER_CONFIG, asyncScheduling: 'yes' as unknown as boolean });
    expect(problems.map((p) => p.key)).toEqual(['asyncScheduling']);
  });

  it('gives every request the tokens of a synchronous run, feeds placeholders, and frees every block', async () => {
    for (const seed of [1, 2, 3]) {
      const specs = workload(seed);
      const sync = await run(specs, false);
      const asy = await run(specs, true);
      expect(outputs(asy.engine)).toEqual(outputs(sync.engine));
      expect(asy.streamed).toEqual(sync.streamed);
      // Nothing fed on the host path: the synchronous run never sees a placeholder.
      expect(sync.executor.numPlaceholdersFilled).toBe(0);
      expect(sync.plans.some((p) => p.keepSampledTokens)).toBe(false);
      // Most decode rows were fed from the device.
      expect(asy.executor.numPlaceholdersFilled).toBeGreaterThan(100);
      // Every metric counts the tokens streamed, not the discarded ones.
      const numStreamed = [...asy.streamed.values()].reduce((n, t) => n + t.length, 0);
      const numStops = [...asy.engine.requests()].filter((r) => r.endReason === 'stop').length;
      const generated = (e: Engine) => stepEvents(e).reduce((n, s) => n + s.numDecodeTokens - (s.numDiscardedTokens ?? 0), 0) + [...e.requests()].length;
      expect(generated(asy.engine)).toBe(numStreamed + numStops);
      expect(generated(sync.engine)).toBe(numStreamed + numStops);
      // vLLM's generation tokens: decode rows (the prefill's token aside), the discarded ones not counted.
      const numRequests = [...asy.engine.requests()].length;
      expect(asy.engine.metricsSummary().totalGenerationTokens).toBe(numStreamed + numStops - numRequests);
      expect(asy.engine.metricsSummary().totalGenerationTokens).toBe(sync.engine.metricsSummary().totalGenerationTokens);
      const gauges = asy.engine.kvGauges();
      expect(gauges.numFreeGpuBlocks).toBe(config.numGpuBlocks);
    }
  });

  it('keeps the placeholder bookkeeping: one token in flight per decoding sequence between steps', async () => {
    const executor = new FakeExecutor({ tokenFeedback: true });
    executor.recordPlans = true;
    const engine = new Engine({ executor, clock: new VirtualClock(), config: { ...config, asyncScheduling: true }, checkInvariants: true });
    engine.submit({ requestId: 'a', promptTokenIds: [5, 6, 7, 8, 9], maxTokens: 4, sampling: { temperature: 0, topP: 1, topK: 0, seed: 1 } });
    const seq = () => engine.getRequest('a')!.seqs[0];
    // Call 1: the prefill (kept on the device), then step 2 planned before it is read.
    const first = await engine.step();
    expect(first.kind === 'ran' && first.step.stepIndex).toBe(1);
    expect(executor.plans.map((p) => p.seqs[0].tokenIds)).toEqual([[5, 6, 7, 8, 9], [PLACEHOLDER_TOKEN_ID]]);
    expect(executor.plans.map((p) => p.keepSampledTokens)).toEqual([true, true]);
    expect(seq().numTokens).toBe(6); // the prefill's token, read
    expect(seq().numPlaceholders).toBe(1); // step 2's, in flight
    expect(seq().numComputedTokens).toBe(6); // step 2 computes position 5
    expect(engine.stepIndex).toBe(1);
    // Call 2: step 3 planned, step 2 read.
    await engine.step();
    expect(seq().numTokens).toBe(7);
    expect(seq().numPlaceholders).toBe(1);
    expect(seq().numComputedTokens).toBe(7);
    // Tokens 1..4: the prefill's, then steps 2, 3 and 4. The placeholder of step 4 reaches
    // max_tokens, so no step 5 is planned for it (nothing to discard).
    await engine.runUntilIdle();
    expect(executor.plans).toHaveLength(4);
    expect(seq().numOutputTokens).toBe(4);
    expect(seq().numPlaceholders).toBe(0);
    expect(engine.getRequest('a')!.endReason).toBe('length');
    expect(stepEvents(engine).some((s) => s.numDiscardedTokens)).toBe(false);
  });

  it('discards the token computed after a stop token read late: not streamed, not counted, its slot freed', async () => {
    const specs = workload(7, { outputTokens: { kind: 'uniform', min: 60, max: 80 } });
    const sync = await run(specs, false);
    const asy = await run(specs, true);
    expect(outputs(asy.engine)).toEqual(outputs(sync.engine));
    const stops = [...asy.engine.requests()].filter((r) => r.endReason === 'stop');
    expect(stops.length).toBeGreaterThan(5);
    const discarded = stepEvents(asy.engine).reduce((n, s) => n + (s.numDiscardedTokens ?? 0), 0);
    // Each stop read late left one row computed after it (a stop found at the prefill too).
    expect(discarded).toBe(stops.length);
    expect(asy.streamed).toEqual(sync.streamed);
    expect(asy.engine.kvGauges().numFreeGpuBlocks).toBe(config.numGpuBlocks);
  });

  it('a cancel between steps (a stop string) drops the row in flight; nothing more is streamed', async () => {
    const executor = new FakeExecutor({ tokenFeedback: true });
    const engine = new Engine({ executor, clock: new VirtualClock(), config: { ...config, asyncScheduling: true }, checkInvariants: true });
    const streamed: number[] = [];
    engine.on((e) => {
      // As the host cancels on a stop string: inside the step's events, applied after it.
      if (e.type === 'token' && e.requestId === 'a') {
        streamed.push(e.tokenId);
        if (streamed.length === 3) engine.cancel('a');
      }
    });
    engine.submit({ requestId: 'a', promptTokenIds: [5, 6, 7], maxTokens: 50, sampling: { temperature: 0, topP: 1, topK: 0, seed: 1 } });
    await engine.runUntilIdle();
    expect(streamed).toHaveLength(3);
    expect(engine.getRequest('a')!.endReason).toBe('cancelled');
    expect(stepEvents(engine).reduce((n, s) => n + (s.numDiscardedTokens ?? 0), 0)).toBe(1);
    expect(engine.kvGauges().numFreeGpuBlocks).toBe(config.numGpuBlocks);
    expect(engine.hasWork()).toBe(false);
  });

  it('falls back to synchronous steps around a sampled (temperature > 0) row, with the same seeded tokens', async () => {
    const specs = workload(11).map((r, i) => (i % 3 === 0 ? { ...r, sampling: { ...r.sampling!, temperature: 0.8, seed: 100 + i } } : r));
    const sync = await run(specs, false);
    const asy = await run(specs, true);
    expect(outputs(asy.engine)).toEqual(outputs(sync.engine));
    const sampledIds = new Set(specs.filter((_, i) => i % 3 === 0).map((r) => r.requestId));
    for (const p of asy.plans) {
      const hasSampled = p.seqs.some((s) => s.needsLogits && sampledIds.has(s.requestId));
      if (hasSampled) expect(p.keepSampledTokens).toBeFalsy();
      // A placeholder is only ever fed from a step that kept its tokens (the fake throws otherwise).
    }
    expect(asy.plans.some((p) => p.keepSampledTokens)).toBe(true);
  });

  it('survives preemption (recompute and swap) with the same tokens and every invariant', async () => {
    for (const preemptionMode of ['recompute', 'swap'] as const) {
      const tight = { numGpuBlocks: 20, preemptionMode };
      const specs = workload(5, { outputTokens: { kind: 'uniform', min: 20, max: 60 } });
      const sync = await run(specs, false, tight);
      const asy = await run(specs, true, tight);
      expect(asy.engine.numPreemptions).toBeGreaterThan(0);
      expect(outputs(asy.engine)).toEqual(outputs(sync.engine));
      expect(asy.executor.numPlaceholdersFilled).toBeGreaterThan(0);
      expect(asy.engine.kvGauges().numFreeGpuBlocks).toBe(20);
    }
  });

  it('a failed step drops the step planned after it, requeues everything, and the run goes on to the same tokens', async () => {
    const specs = workload(3);
    const sync = await run(specs, false);
    const inner = new FakeExecutor({ ...fake, tokenFeedback: true });
    let failAt = 12;
    const failing: Executor = {
      name: 'failing once',
      tokenFeedback: true,
      configure: (g) => inner.configure(g),
      execute: (plan: StepPlan): Promise<StepOutput> => {
        const out = inner.execute(plan);
        if (plan.stepIndex === failAt) {
          failAt = -1;
          return out.then(() => Promise.reject(new Error('the device was lost (test)')));
        }
        return out;
      },
      dispose: () => inner.dispose(),
    };
    const engine = new Engine({ executor: failing, clock: new VirtualClock(), config: { ...config, asyncScheduling: true }, checkInvariants: true });
    for (const r of specs) engine.submit(r);
    await expect(engine.runUntilIdle()).rejects.toThrow('the device was lost (test)');
    const failed = engine.eventLog.filter((e) => e.type === 'stepFailed');
    // Step 12 and the step planned after it (which read step 12's tokens on the device).
    expect(failed.map((e) => e.stepIndex)).toEqual([12, 13]);
    // A fresh memory (as after a device loss): every request is prefilled again.
    inner.configure({ blockSize: config.blockSize!, numGpuBlocks: config.numGpuBlocks!, numCpuBlocks: config.numCpuBlocks! });
    await engine.runUntilIdle();
    expect(outputs(engine)).toEqual(outputs(sync.engine));
  });

  it('never plans ahead with speculative decoding or in static batching (their steps run synchronously)', async () => {
    for (const extra of [{ speculativeMethod: 'ngram' as const }, { batching: 'static' as const }]) {
      const specs = workload(4);
      const sync = await run(specs, false, extra);
      const asy = await run(specs, true, extra);
      expect(asy.plans.some((p) => p.keepSampledTokens)).toBe(false);
      expect(asy.executor.numPlaceholdersFilled).toBe(0);
      expect(outputs(asy.engine)).toEqual(outputs(sync.engine));
    }
  });
});
