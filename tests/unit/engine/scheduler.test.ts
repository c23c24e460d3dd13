import { describe, expect, it } from 'vitest';
import { Engine } from '../../../src/engine/engine.ts';
import { VirtualClock } from '../../../src/engine/clock.ts';
import { FakeExecutor, fakeNextToken, type FakeExecutorOptions } from '../../../src/engine/testing/fakeExecutor.ts';
import type { SchedulerConfig } from '../../../src/engine/scheduler.ts';
import type { RequestSpec } from '../../../src/engine/request.ts';
import type { EngineEvent } from '../../../src/engine/events.ts';
import type { StepPlan } from '../../../src/engine/types.ts';

const fakeOptions: FakeExecutorOptions = { stopTokenId: 1, stopEvery: 97, emitLogits: true };

function makeEngine(config: Partial<SchedulerConfig>, options: FakeExecutorOptions = fakeOptions) {
  const executor = new FakeExecutor(options);
  executor.recordPlans = true;
  const engine = new Engine({ executor, clock: new VirtualClock(), config: { maxModelLen: 256, ...config }, checkInvariants: true });
  return { engine, executor };
}

/** What the fake model generates for a prompt alone (greedy). */
function reference(prompt: number[], maxTokens: number, options: FakeExecutorOptions = fakeOptions): number[] {
  const context = prompt.slice();
  const out: number[] = [];
  while (out.length < maxTokens) {
    const t = fakeNextToken(context, options);
    if (t === 1 || t === 2) break;
    out.push(t);
    context.push(t);
  }
  return out;
}

const prompt = (seed: number, length: number) => Array.from({ length }, (_, k) => 3 + ((seed * 31 + k * 7) % 40));

async function outputs(config: Partial<SchedulerConfig>, specs: RequestSpec[]) {
  const { engine } = makeEngine(config);
  for (const s of specs) engine.submit(s);
  await engine.runUntilIdle();
  const result = new Map<string, number[][]>();
  for (const s of specs) result.set(s.requestId!, engine.getRequest(s.requestId!)!.seqs.map((q) => q.outputTokenIds));
  return { engine, result };
}

const events = (engine: Engine, type: EngineEvent['type']) => engine.eventLog.filter((e) => e.type === type);

describe('Scheduler: generated tokens do not depend on batching, sharing, chunking or preemption', () => {
  const shared = prompt(1, 40);
  const specs: RequestSpec[] = [
    { requestId: 'a', promptTokenIds: shared.concat(prompt(2, 5)), maxTokens: 30 },
    { requestId: 'b', promptTokenIds: shared.concat(prompt(3, 9)), maxTokens: 30, arrivalMs: 2 },
    { requestId: 'c', promptTokenIds: prompt(4, 70), maxTokens: 25 },
    { requestId: 'd', promptTokenIds: prompt(5, 11), maxTokens: 30, n: 3, sampling: { temperature: 0.8, seed: 7 } },
    { requestId: 'e', promptTokenIds: shared.slice(), maxTokens: 20, arrivalMs: 30 },
    { requestId: 'f', promptTokenIds: prompt(6, 3), maxTokens: 40, sampling: { temperature: 1, topP: 0.9, seed: 3 } },
  ];
  const roomy = { blockSize: 8, numGpuBlocks: 200, numCpuBlocks: 0, maxNumBatchedTokens: 512, maxNumSeqs: 32 };

  it('matches the model run alone, greedy', async () => {
    const { result } = await outputs(roomy, specs);
    for (const id of ['a', 'b', 'c', 'e']) {
      const s = specs.find((x) => x.requestId === id)!;
      expect(result.get(id)![0]).toEqual(reference(s.promptTokenIds, s.maxTokens));
    }
  });

  for (const mode of ['recompute', 'swap'] as const) {
    it(`is unchanged under chunked prefill, prefix sharing and ${mode} preemption`, async () => {
      const alone = new Map<string, number[][]>();
      for (const s of specs) alone.set(s.requestId!, (await outputs(roomy, [{ ...s, arrivalMs: 0 }])).result.get(s.requestId!)!);
      const tight = { blockSize: 8, numGpuBlocks: 24, numCpuBlocks: 64, maxNumBatchedTokens: 16, maxNumSeqs: 8, preemptionMode: mode };
      const { engine, result } = await outputs(tight, specs);
      expect(engine.numPreemptions).toBeGreaterThan(0);
      // Swap falls back to recompute for a victim already in this step's plan.
      const modes = new Set(events(engine, 'preempted').map((e) => (e.type === 'preempted' ? e.mode : '')));
      expect(modes.has(mode)).toBe(true);
      expect([...modes].every((m) => m === mode || m === 'recompute')).toBe(true);
      if (mode === 'swap') {
        const plans = (engine.executor as FakeExecutor).plans;
        expect(plans.some((p) => p.swapOut.length > 0)).toBe(true);
        expect(plans.some((p) => p.swapIn.length > 0)).toBe(true);
      }
      expect(engine.kvGauges().stats.numPrefixHitTokens).toBeGreaterThan(0);
      expect(engine.kvGauges().stats.numCowCopies).toBeGreaterThan(0);
      for (const s of specs) expect(result.get(s.requestId!)).toEqual(alone.get(s.requestId!));
      expect(engine.kvGauges().numFreeGpuBlocks).toBe(24);
    });
  }
});

describe('Scheduler: plans', () => {
  it('chunks a long prompt within the token budget, with logits only for the last chunk', async () => {
    const { engine, executor } = makeEngine({ blockSize: 16, numGpuBlocks: 16, maxNumBatchedTokens: 16 });
    engine.submit({ requestId: 'x', promptTokenIds: prompt(9, 40), maxTokens: 2 });
    await engine.runUntilIdle();
    const p: StepPlan[] = executor.plans;
    expect(p.map((s) => [s.seqs[0].startPosition, s.seqs[0].tokenIds.length, s.seqs[0].needsLogits])).toEqual([
      [0, 16, false],
      [16, 16, false],
      [32, 8, true],
      [40, 1, true],
    ]);
    expect(p[0].seqs[0].blockTable).toEqual([0]);
    expect(p[2].seqs[0].slots).toEqual(Array.from({ length: 8 }, (_, k) => 2 * 16 + k));
    expect(p[2].seqs[0].blockTable).toEqual([0, 1, 2]);
  });

  it('serves a cached prefix from the cache and still computes the last token of a fully cached prompt', async () => {
    const { engine, executor } = makeEngine({ blockSize: 16, numGpuBlocks: 32 });
    const p = prompt(10, 32);
    engine.submit({ requestId: 'first', promptTokenIds: p, maxTokens: 3 });
    engine.submit({ requestId: 'again', promptTokenIds: p, maxTokens: 3, arrivalMs: 100 });
    await engine.runUntilIdle();
    const again = executor.plans.find((x) => x.seqs.some((s) => s.requestId === 'again'))!.seqs.find((s) => s.requestId === 'again')!;
    // 32 tokens = 2 full blocks; the last token must be recomputed, so only block 0 is a hit.
    expect(again.startPosition).toBe(16);
    expect(again.tokenIds.length).toBe(16);
    expect(engine.getRequest('again')!.numCachedPromptTokens).toBe(16);
    expect(engine.getRequest('again')!.seqs[0].outputTokenIds).toEqual(engine.getRequest('first')!.seqs[0].outputTokenIds);
  });

  it('forks n samples that share the prompt and copy the partial block on first write', async () => {
    const { engine, executor } = makeEngine({ blockSize: 4, numGpuBlocks: 32 });
    engine.submit({ requestId: 'n', promptTokenIds: prompt(11, 6), maxTokens: 4, n: 3, sampling: { temperature: 1, seed: 5 } });
    await engine.runUntilIdle();
    const firstDecode = executor.plans[1];
    expect(firstDecode.seqs.length).toBe(3);
    expect(firstDecode.copies.length).toBe(2); // two of three sequences copy, the last writes in place
    const r = engine.getRequest('n')!;
    expect(r.seqs.map((s) => s.seqId)).toEqual([0, 1, 2]);
    expect(new Set(r.seqs.map((s) => s.outputTokenIds.join())).size).toBeGreaterThan(1);
  });
});

describe('Scheduler: stops', () => {
  it('stops on max tokens, on a stop token and at maxModelLen', async () => {
    const { engine } = makeEngine({ blockSize: 4, numGpuBlocks: 64, maxModelLen: 20 });
    // Find a prompt whose continuation hits a stop token early.
    let stopPrompt: number[] = [];
    for (let s = 0; s < 500 && stopPrompt.length === 0; s++) {
      const p = prompt(s, 5);
      if (reference(p, 10).length < 10) stopPrompt = p;
    }
    engine.submit({ requestId: 'len', promptTokenIds: prompt(1, 5), maxTokens: 3, stopTokenIds: [] });
    engine.submit({ requestId: 'stop', promptTokenIds: stopPrompt, maxTokens: 10 });
    engine.submit({ requestId: 'ctx', promptTokenIds: prompt(2, 15), maxTokens: 50, stopTokenIds: [] });
    await engine.runUntilIdle();
    expect(engine.getRequest('len')!.endReason).toBe('length');
    expect(engine.getRequest('len')!.seqs[0].numOutputTokens).toBe(3);
    const stop = engine.getRequest('stop')!;
    expect(stop.endReason).toBe('stop');
    expect(stop.seqs[0].stopTokenId).toBe(1);
    expect(stop.seqs[0].outputTokenIds).toEqual(reference(stopPrompt, 10));
    const ctx = engine.getRequest('ctx')!;
    expect(ctx.endReason).toBe('length');
    expect(ctx.seqs[0].numTokens).toBe(20);
  });
});

describe('Scheduler: policies', () => {
  /** Order in which requests got their first token, one sequence at a time. */
  async function serviceOrder(config: Partial<SchedulerConfig>, specs: RequestSpec[]): Promise<string[]> {
    const { engine } = makeEngine({ blockSize: 4, numGpuBlocks: 64, maxNumSeqs: 1, ...config });
    for (const s of specs) engine.submit(s);
    await engine.runUntilIdle();
    return events(engine, 'scheduled').map((e) => (e.type === 'scheduled' ? e.requestId : ''));
  }
  const base = (id: string, extra: Partial<RequestSpec> = {}): RequestSpec => ({ requestId: id, promptTokenIds: prompt(id.charCodeAt(0), 4), maxTokens: 2, stopTokenIds: [], ...extra });

  it('fcfs serves in arrival order', async () => {
    expect(await serviceOrder({ policy: 'fcfs' }, [base('c', { arrivalMs: 2 }), base('a'), base('b', { arrivalMs: 1 })])).toEqual(['a', 'b', 'c']);
  });
  it('priority serves lower values first', async () => {
    expect(await serviceOrder({ policy: 'priority' }, [base('a', { priority: 2 }), base('b', { priority: 0 }), base('c', { priority: 1 })])).toEqual(['b', 'c', 'a']);
  });
  it('edf serves the earliest deadline first, no deadline last', async () => {
    expect(
      await serviceOrder({ policy: 'edf' }, [base('a'), base('b', { deadlineMs: 5000 }), base('c', { deadlineMs: 1000 })]),
    ).toEqual(['c', 'b', 'a']);
  });
  it('sjf serves the shortest predicted job first', async () => {
    expect(
      await serviceOrder({ policy: 'sjf' }, [base('a', { predictedOutputTokens: 50 }), base('b', { predictedOutputTokens: 1 }), base('c', { predictedOutputTokens: 10 })]),
    ).toEqual(['b', 'c', 'a']);
  });
  it('fair share interleaves tenants by tokens served instead of arrival', async () => {
    const specs = [
      ...['a1', 'a2', 'a3', 'a4'].map((id) => base(id, { tenant: 'A' })),
      ...['b1', 'b2'].map((id) => base(id, { tenant: 'B', arrivalMs: 0.5 })),
    ];
    expect(await serviceOrder({ policy: 'fcfs' }, specs)).toEqual(['a1', 'a2', 'a3', 'a4', 'b1', 'b2']);
    expect(await serviceOrder({ policy: 'fair' }, specs)).toEqual(['a1', 'b1', 'a2', 'b2', 'a3', 'a4']);
  });

  it('priority preempts a lower-priority running request when memory is short', async () => {
    const { engine } = makeEngine({ policy: 'priority', blockSize: 4, numGpuBlocks: 6, maxNumSeqs: 4 });
    engine.submit({ requestId: 'low', promptTokenIds: prompt(1, 12), maxTokens: 8, priority: 5, stopTokenIds: [] });
    engine.submit({ requestId: 'high', promptTokenIds: prompt(2, 12), maxTokens: 8, priority: 0, stopTokenIds: [], arrivalMs: 3 });
    await engine.runUntilIdle();
    const pre = events(engine, 'preempted');
    expect(pre.length).toBeGreaterThan(0);
    expect(pre.every((e) => e.type === 'preempted' && e.requestId === 'low')).toBe(true);
    const finished = events(engine, 'finished').map((e) => (e.type === 'finished' ? e.requestId : ''));
    expect(finished).toEqual(['high', 'low']);
    expect(engine.getRequest('low')!.seqs[0].outputTokenIds).toEqual(reference(prompt(1, 12), 8, { ...fakeOptions, stopTokenId: undefined }).slice(0, 8));
  });

  it('abort mode fails the preempted request', async () => {
    const { engine } = makeEngine({ preemptionMode: 'abort', blockSize: 4, numGpuBlocks: 6, maxNumSeqs: 4 });
    engine.submit({ requestId: 'a', promptTokenIds: prompt(1, 10), maxTokens: 12, stopTokenIds: [] });
    engine.submit({ requestId: 'b', promptTokenIds: prompt(2, 10), maxTokens: 12, stopTokenIds: [] });
    await engine.runUntilIdle();
    expect(engine.getRequest('b')!.state).toBe('failed');
    expect(engine.getRequest('b')!.endReason).toBe('preempted');
    expect(engine.getRequest('a')!.state).toBe('finished');
    expect(engine.metricsSummary().failuresByReason).toEqual({ preempted: 1 });
  });
});

describe('Scheduler: admission control, cancel and timeouts', () => {
  it('rejects with a reason', async () => {
    const { engine } = makeEngine({
      blockSize: 4,
      numGpuBlocks: 8,
      maxModelLen: 64,
      maxQueueLength: 3,
      tenantMaxInFlight: { t: 1 },
    });
    engine.submit({ requestId: 'long', promptTokenIds: prompt(1, 64), maxTokens: 1 });
    engine.submit({ requestId: 'big', promptTokenIds: prompt(1, 20), maxTokens: 40 });
    engine.submit({ requestId: 't1', promptTokenIds: prompt(1, 4), maxTokens: 1, tenant: 't' });
    engine.submit({ requestId: 't2', promptTokenIds: prompt(1, 4), maxTokens: 1, tenant: 't' });
    engine.submit({ requestId: 'q1', promptTokenIds: prompt(2, 4), maxTokens: 1 });
    engine.submit({ requestId: 'q2', promptTokenIds: prompt(3, 4), maxTokens: 1 });
    engine.submit({ requestId: 'q3', promptTokenIds: prompt(4, 4), maxTokens: 1 });
    engine.submit({ requestId: 'late', promptTokenIds: prompt(5, 4), maxTokens: 1, arrivalMs: -10, deadlineMs: 5 });
    await engine.step();
    const reasons = Object.fromEntries(events(engine, 'rejected').map((e) => (e.type === 'rejected' ? [e.requestId, e.reason] : [])));
    expect(reasons).toEqual({
      long: 'prompt_too_long',
      big: 'exceeds_kv_capacity',
      t2: 'tenant_quota',
      q3: 'queue_full',
      late: 'deadline_unmeetable',
    });
    expect(engine.metricsSummary().rejectionsByReason).toEqual({ prompt_too_long: 1, exceeds_kv_capacity: 1, tenant_quota: 1, queue_full: 1, deadline_unmeetable: 1 });
  });

  it('cancels running and pending requests and times out old ones, freeing their blocks', async () => {
    const { engine } = makeEngine({ blockSize: 4, numGpuBlocks: 32, requestTimeoutMs: 12 });
    engine.submit({ requestId: 'run', promptTokenIds: prompt(1, 6), maxTokens: 100, stopTokenIds: [] });
    engine.submit({ requestId: 'future', promptTokenIds: prompt(2, 6), maxTokens: 5, arrivalMs: 1000 });
    engine.submit({ requestId: 'slow', promptTokenIds: prompt(3, 6), maxTokens: 100, stopTokenIds: [] });
    await engine.step();
    await engine.step();
    engine.cancel('run');
    engine.cancel('future');
    expect(engine.getRequest('run')!.state).toBe('failed');
    expect(engine.getRequest('future')!.endReason).toBe('cancelled');
    await engine.runUntilIdle();
    expect(engine.getRequest('slow')!.endReason).toBe('timeout');
    expect(engine.kvGauges().numFreeGpuBlocks).toBe(32);
    expect(engine.metricsSummary().failuresByReason).toEqual({ cancelled: 2, timeout: 1 });
  });

  it('defers a cancel that arrives while a step is in flight', async () => {
    const { engine } = makeEngine({ blockSize: 4, numGpuBlocks: 32 });
    engine.submit({ requestId: 'x', promptTokenIds: prompt(1, 6), maxTokens: 50, stopTokenIds: [] });
    await engine.init();
    const pending = engine.step(); // plans synchronously, then awaits the executor
    engine.cancel('x');
    expect(engine.getRequest('x')!.state).toBe('running');
    await pending;
    expect(engine.getRequest('x')!.state).toBe('failed');
  });
});

describe('Scheduler: static batching', () => {
  it('starts a new batch only when the previous one has ended, and pads', async () => {
    const { engine, executor } = makeEngine({ batching: 'static', maxNumSeqs: 2, blockSize: 4, numGpuBlocks: 64, maxNumBatchedTokens: 64 });
    engine.submit({ requestId: 'a', promptTokenIds: prompt(1, 4), maxTokens: 2, stopTokenIds: [] });
    engine.submit({ requestId: 'b', promptTokenIds: prompt(2, 8), maxTokens: 6, stopTokenIds: [] });
    engine.submit({ requestId: 'c', promptTokenIds: prompt(3, 4), maxTokens: 2, stopTokenIds: [] });
    await engine.runUntilIdle();
    const plans = executor.plans;
    // Prefill: a's 4 tokens are left-padded to b's 8.
    expect(plans[0].numBatchedTokens).toBe(12);
    expect(plans[0].numPaddingTokens).toBe(4);
    const cStart = plans.findIndex((p) => p.seqs.some((s) => s.requestId === 'c'));
    const bEnd = plans.findLastIndex((p) => p.seqs.some((s) => s.requestId === 'b'));
    expect(cStart).toBe(bEnd + 1);
    // a finished after 2 tokens but rides along as padding while b decodes.
    expect(plans[3].seqs.map((s) => s.requestId)).toEqual(['b']);
    expect(plans[3].numPaddingTokens).toBe(1);
    for (const id of ['a', 'b', 'c']) {
      const r = engine.getRequest(id)!;
      expect(r.seqs[0].outputTokenIds).toEqual(reference(r.promptTokenIds as number[], r.maxTokens, { ...fakeOptions, stopTokenId: undefined }));
    }
  });
});
