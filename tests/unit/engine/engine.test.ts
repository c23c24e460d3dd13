import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Engine } from '../../../src/engine/engine.ts';
import { VirtualClock } from '../../../src/engine/clock.ts';
import { FakeExecutor } from '../../../src/engine/testing/fakeExecutor.ts';
import { replayEventLog } from '../../../src/engine/replay.ts';
import { generateWorkload } from '../../../src/engine/workload.ts';
import type { SchedulerConfig } from '../../../src/engine/scheduler.ts';
import type { Executor, StepOutput, StepPlan } from '../../../src/engine/types.ts';

const config: Partial<SchedulerConfig> = { blockSize: 8, numGpuBlocks: 48, numCpuBlocks: 32, maxNumBatchedTokens: 48, maxNumSeqs: 12, maxModelLen: 256 };

function workload(seed: number) {
  return generateWorkload({
    seed,
    numRequests: 40,
    vocabSize: 60,
    arrival: { kind: 'poisson', ratePerS: 400 },
    promptTokens: { kind: 'uniform', min: 2, max: 60 },
    outputTokens: { kind: 'uniform', min: 1, max: 40 },
    sharedPrefix: { fraction: 0.5, numTokens: 20 },
    parallelSampling: { fraction: 0.2, n: 2 },
    temperature: 0.7,
    tenants: [
      { name: 'a', weight: 2, priority: 1 },
      { name: 'b', weight: 1, priority: 0, deadlineMs: 10_000 },
    ],
  });
}

async function run(seed: number, extra: Partial<SchedulerConfig> = {}) {
  const engine = new Engine({ executor: new FakeExecutor({ stopTokenId: 1, stopEvery: 50, emitLogits: true }), clock: new VirtualClock(), config: { ...config, ...extra }, checkInvariants: true });
  for (const r of workload(seed)) engine.submit(r);
  await engine.runUntilIdle();
  return engine;
}

describe('Engine determinism and replay', () => {
  it('gives the same event log for the same seed, and a different one for another seed', async () => {
    const a = await run(5, { preemptionMode: 'swap', policy: 'priority' });
    const b = await run(5, { preemptionMode: 'swap', policy: 'priority' });
    expect(JSON.stringify(b.eventLog)).toBe(JSON.stringify(a.eventLog));
    expect(a.numPreemptions).toBeGreaterThan(0);
    const c = await run(6, { preemptionMode: 'swap', policy: 'priority' });
    expect(JSON.stringify(c.eventLog)).not.toBe(JSON.stringify(a.eventLog));
  });

  it('replays a run from its event log alone, including a cancel issued mid-step', async () => {
    const engine = new Engine({ executor: new FakeExecutor({ emitLogits: true }), clock: new VirtualClock(), config, checkInvariants: true });
    for (const r of workload(9)) engine.submit(r);
    await engine.init();
    for (let i = 0; i < 5; i++) await engine.step();
    const inFlight = engine.step();
    engine.cancel('w9-0');
    await inFlight;
    engine.cancel('w9-3');
    await engine.runUntilIdle();
    const replayed = await replayEventLog(engine.eventLog, { config, checkInvariants: true });
    expect(replayed.eventLog).toEqual(engine.eventLog);
  });
});

describe('Engine property test: random workloads and configurations', () => {
  it('keeps every invariant after every step and ends with every block free', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          seed: fc.nat(1000),
          blockSize: fc.constantFrom(1, 4, 8, 16),
          numGpuBlocks: fc.integer({ min: 20, max: 80 }),
          budget: fc.integer({ min: 8, max: 96 }),
          policy: fc.constantFrom('fcfs', 'priority', 'edf', 'sjf', 'fair'),
          mode: fc.constantFrom('recompute', 'swap', 'abort'),
          prefix: fc.boolean(),
        }),
        async (p) => {
          const blocks = Math.max(p.numGpuBlocks, Math.ceil(100 / p.blockSize) * 2);
          const engine = await run(p.seed, {
            blockSize: p.blockSize,
            numGpuBlocks: blocks,
            numCpuBlocks: 16,
            maxNumBatchedTokens: p.budget,
            policy: p.policy as SchedulerConfig['policy'],
            preemptionMode: p.mode as SchedulerConfig['preemptionMode'],
            enablePrefixCaching: p.prefix,
          });
          expect(engine.hasAdmittedWork()).toBe(false);
          expect(engine.kvGauges().numFreeGpuBlocks).toBe(blocks);
          expect(engine.kvGauges().numFreeCpuBlocks).toBe(16);
        },
      ),
      { numRuns: 20, seed: 7 },
    );
  });
});

/** An executor with fixed step durations, to check metrics against hand-computed values. */
class FixedExecutor implements Executor {
  readonly name = 'fixed';
  constructor(private readonly durationMs: number) {}
  configure(): void {}
  async execute(plan: StepPlan): Promise<StepOutput> {
    return { outputs: plan.seqs.filter((s) => s.needsLogits).map((s) => ({ seqId: s.seqId, argmax: 7 })), durationMs: this.durationMs };
  }
  dispose(): void {}
}

describe('Engine metrics', () => {
  it('computes queue time, TTFT, ITL, TPOT and end-to-end latency by hand', async () => {
    // Budget 4, prompts of 4: one prefill per step. Steps take 10 ms.
    const engine = new Engine({ executor: new FixedExecutor(10), clock: new VirtualClock(), config: { blockSize: 4, numGpuBlocks: 16, maxNumBatchedTokens: 4, maxModelLen: 64 }, checkInvariants: true });
    engine.submit({ requestId: 'a', promptTokenIds: [3, 4, 5, 6], maxTokens: 3 });
    engine.submit({ requestId: 'b', promptTokenIds: [3, 4, 5, 7], maxTokens: 2 });
    await engine.runUntilIdle();
    // Step 1 (0-10): a's prompt -> a's token 1 at 10. Step 2 (10-20): a decodes, b gets a 3-token
    // chunk. Step 3 (20-30): a decodes (done, 3 tokens), b's last prompt token. Step 4: b decodes.
    const a = engine.getRequest('a')!;
    const b = engine.getRequest('b')!;
    expect([a.firstScheduledMs, a.firstTokenMs, a.interTokenLatenciesMs, a.finishedMs]).toEqual([0, 10, [10, 10], 30]);
    // b: chunks of 3 (step 2) and 1 (step 3) -> first token at 30, second at 40.
    expect([b.firstScheduledMs, b.firstTokenMs, b.interTokenLatenciesMs, b.finishedMs]).toEqual([10, 30, [10], 40]);
    const m = engine.metricsSummary();
    expect(m.numFinished).toBe(2);
    expect(m.queueMs).toMatchObject({ count: 2, mean: 5, p50: 5 });
    expect(m.ttftMs).toMatchObject({ count: 2, mean: 20, p50: 20, p90: 28, p99: 29.8 });
    expect(m.e2eMs).toMatchObject({ mean: 35, p50: 35 });
    expect(m.itlMs).toMatchObject({ count: 3, mean: 10 });
    expect(m.tpotMs).toMatchObject({ count: 2, mean: 10 });
    expect(m.totalPromptTokens).toBe(8);
    expect(m.totalGenerationTokens).toBe(3);
    expect(m.numSteps).toBe(4);
    // 11 tokens over 4 steps, 40 ms.
    expect(m.meanTokensPerStep).toBeCloseTo(11 / 4);
    expect(m.prefillTokensPerS + m.decodeTokensPerS).toBeCloseTo(11 / 0.04);
  });

  it('writes a Prometheus exposition with vLLM names and cumulative buckets', async () => {
    const engine = new Engine({ executor: new FixedExecutor(10), clock: new VirtualClock(), config: { blockSize: 4, numGpuBlocks: 16, maxModelLen: 64 }, modelName: 'm' });
    engine.submit({ requestId: 'a', promptTokenIds: [3, 4, 5, 6, 8], maxTokens: 2 });
    engine.submit({ requestId: 'b', promptTokenIds: [3, 4, 5, 6, 9], maxTokens: 2, arrivalMs: 100 });
    await engine.runUntilIdle();
    const text = engine.prometheus();
    for (const name of [
      'vllm:num_requests_running',
      'vllm:num_requests_waiting',
      'vllm:kv_cache_usage_perc',
      'vllm:num_preemptions_total',
      'vllm:prefix_cache_queries_total',
      'vllm:prefix_cache_hits_total',
    ]) {
      expect(text).toContain(`# TYPE ${name}`);
    }
    expect(text).toContain('vllm:prefix_cache_queries_total{model_name="m"} 10');
    expect(text).toContain('vllm:prefix_cache_hits_total{model_name="m"} 4');
    expect(text).toContain('vllm:time_to_first_token_seconds_bucket{model_name="m",le="0.005"} 0');
    expect(text).toContain('vllm:time_to_first_token_seconds_bucket{model_name="m",le="0.01"} 2');
    expect(text).toContain('vllm:time_to_first_token_seconds_bucket{model_name="m",le="+Inf"} 2');
    expect(text).toContain('vllm:time_to_first_token_seconds_count{model_name="m"} 2');
    expect(text).toContain('vllm:e2e_request_latency_seconds_sum{model_name="m"} 0.04');
    expect(text).toContain('vllm:inter_token_latency_seconds_count{model_name="m"} 2');
    expect(text).toContain('vllm:request_success_total{model_name="m",finished_reason="length"} 2');
  });

  it('snapshots blocks, queues and the last step as plain data', async () => {
    const engine = new Engine({ executor: new FixedExecutor(1), clock: new VirtualClock(), config: { blockSize: 4, numGpuBlocks: 8, maxModelLen: 64 } });
    engine.submit({ requestId: 'p', promptTokenIds: [3, 4, 5, 6, 7, 8], maxTokens: 5, n: 2 });
    await engine.step();
    await engine.step();
    const s = engine.snapshot();
    expect(Array.from(s.gpuBlocks.refCount)).toEqual([2, 1, 1, 0, 0, 0, 0, 0]);
    expect(Array.from(s.gpuBlocks.numFilled)).toEqual([4, 3, 3, 0, 0, 0, 0, 0]);
    // The parent writes first, so it is the one that copies the shared partial block.
    expect(Array.from(s.gpuBlocks.ownerSeqId)).toEqual([0, 1, 0, -1, -1, -1, -1, -1]);
    expect(s.sharedBlockOwners).toEqual({ 0: [0, 1] });
    expect(s.queues.running).toEqual(['p']);
    expect(s.lastStep?.seqs).toEqual([
      { seqId: 0, requestId: 'p', numPrefillTokens: 0, numDecodeTokens: 1 },
      { seqId: 1, requestId: 'p', numPrefillTokens: 0, numDecodeTokens: 1 },
    ]);
    expect(s.lastStep?.numCopies).toBe(1);
    expect(s.requests[0].outputTokenIds).toEqual([
      [7, 7],
      [7, 7],
    ]);
    expect(structuredClone(s).gpuBlocks.refCount).toBeInstanceOf(Int32Array);
  });
});
