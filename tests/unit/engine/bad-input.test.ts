/**
 * Issue 11's reproductions against the engine API: each bad input is refused at once with its
 * field and reason (nothing of it enters the engine), or applied safely; no request is lost and
 * the engine keeps serving the others.
 */
import { describe, expect, it, vi } from 'vitest';
import { Engine } from '../../../src/engine/engine.ts';
import { VirtualClock } from '../../../src/engine/clock.ts';
import { FakeExecutor } from '../../../src/engine/testing/fakeExecutor.ts';
import { InvalidRequestError, validateRequestSpec, type RequestSpec } from '../../../src/engine/request.ts';
import { Scheduler, type SchedulerConfig } from '../../../src/engine/scheduler.ts';
import type { EngineEvent } from '../../../src/engine/events.ts';
import type { StepOutput, StepPlan } from '../../../src/engine/types.ts';
import { CpuReferenceExecutor } from '../../../src/model/reference.ts';
import { replayEventLog } from '../../../src/engine/replay.ts';
import { builtin } from '../model/helpers.ts';

const config: Partial<SchedulerConfig> = { blockSize: 4, numGpuBlocks: 24, numCpuBlocks: 16, maxNumBatchedTokens: 32, maxNumSeqs: 8, maxModelLen: 64 };

function newEngine(extra: Partial<SchedulerConfig> = {}, executor = new FakeExecutor({ stopTokenId: 1, stopEvery: 1000, emitLogits: true })) {
  return new Engine({ executor, clock: new VirtualClock(), config: { ...config, ...extra }, checkInvariants: true });
}

/** Terminal events per request id. */
function terminals(log: readonly EngineEvent[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const e of log) {
    if (e.type === 'finished' || e.type === 'failed' || e.type === 'rejected') out.set(e.requestId, [...(out.get(e.requestId) ?? []), e.type]);
  }
  return out;
}

function refusal(engine: Engine, spec: unknown): InvalidRequestError {
  try {
    engine.submit(spec as RequestSpec);
  } catch (e) {
    expect(e).toBeInstanceOf(InvalidRequestError);
    return e as InvalidRequestError;
  }
  throw new Error(`accepted ${JSON.stringify(spec)}`);
}

const good = (extra: Partial<RequestSpec> = {}): RequestSpec => ({ promptTokenIds: [1, 5, 6, 7, 8], maxTokens: 6, ...extra });

describe('requests are checked at submit', () => {
  it.each([
    ['priority NaN', { priority: NaN }, 'priority'],
    ['priority "high"', { priority: 'high' }, 'priority'],
    ['temperature -1', { sampling: { temperature: -1 } }, 'sampling.temperature'],
    ['top_k -1', { sampling: { topK: -1 } }, 'sampling.topK'],
    ['top_p 2', { sampling: { topP: 2 } }, 'sampling.topP'],
    ['seed NaN', { sampling: { seed: NaN } }, 'sampling.seed'],
    ['an unknown sampling key', { sampling: { temprature: 0.5 } }, 'sampling.temprature'],
    ['stop token ids as a string', { stopTokenIds: 'Lily' }, 'stopTokenIds'],
    ['arrivalMs NaN', { arrivalMs: NaN }, 'arrivalMs'],
    ['deadline 0', { deadlineMs: 0 }, 'deadlineMs'],
    ['token id NaN', { promptTokenIds: [1, NaN] }, 'promptTokenIds'],
    ['token id 2.5', { promptTokenIds: [1, 2.5] }, 'promptTokenIds'],
    ['an empty prompt', { promptTokenIds: [] }, 'promptTokenIds'],
    ['maxTokens 0', { maxTokens: 0 }, 'maxTokens'],
    ['n 1.5', { n: 1.5 }, 'n'],
    ['an empty tenant', { tenant: '' }, 'tenant'],
    ['a misspelt field', { max_tokens: 5 }, 'max_tokens'],
  ])('refuses %s, naming the field, and keeps serving the others', async (_label, bad, field) => {
    const engine = newEngine();
    const ok = engine.submit(good());
    const err = refusal(engine, { ...good(), ...(bad as object) });
    expect(err.problems.map((p) => p.field)).toContain(field);
    expect(err.message).toMatch(/refused: /);
    await engine.runUntilIdle();
    expect(engine.getRequest(ok)!.state).toBe('finished');
    expect([...terminals(engine.eventLog).keys()]).toEqual([ok]);
    expect(engine.eventLog.filter((e) => e.type === 'submit')).toHaveLength(1); // the refused one left no trace
  });

  it('returns every problem of a spec at once, each with its field', () => {
    const problems = validateRequestSpec({ promptTokenIds: 'x', maxTokens: -1, priority: NaN, sampling: { temperature: -1, topP: 2 } });
    expect(problems.map((p) => p.field).sort()).toEqual(['maxTokens', 'priority', 'promptTokenIds', 'sampling.temperature', 'sampling.topP']);
    expect(validateRequestSpec(null)[0].message).toMatch(/must be an object/);
  });

  it('refuses a duplicate requestId; the original keeps one terminal event and can still be cancelled', async () => {
    const engine = newEngine();
    const id = engine.submit(good({ requestId: 'a', maxTokens: 40 }));
    expect(() => engine.submit(good({ requestId: 'a' }))).toThrow(/already in use/);
    await engine.step();
    expect(() => engine.submit(good({ requestId: 'a' }))).toThrow(/already in use/); // admitted by now
    engine.cancel(id);
    await engine.runUntilIdle();
    expect(terminals(engine.eventLog).get('a')).toEqual(['failed']);
    expect(engine.getRequest('a')!.endReason).toBe('cancelled');
    // Generated ids never collide with ids a caller chose.
    engine.submit(good({ requestId: 'req-1' }));
    expect(engine.submit(good())).not.toBe('req-1');
  });

  it('refuses token ids outside the model vocabulary (the real model on the CPU reference)', async () => {
    const { model } = builtin();
    const engine = newEngine({}, new CpuReferenceExecutor(model) as never);
    expect(engine.vocabSize).toBe(512);
    const ok = engine.submit({ promptTokenIds: [1, 403, 261], maxTokens: 4 });
    const err = refusal(engine, { promptTokenIds: [1, 99999], maxTokens: 4 });
    expect(err.message).toMatch(/99999, outside the vocabulary \(0\.\.511\)/);
    expect(refusal(engine, { promptTokenIds: [1, 5], maxTokens: 4, stopTokenIds: [512] }).problems[0].field).toBe('stopTokenIds');
    await engine.runUntilIdle();
    expect(engine.getRequest(ok)!.state).toBe('finished');
  });

  it('never lets a NaN priority into the priority queues under KV pressure (all requests finish)', async () => {
    const engine = newEngine({ policy: 'priority', numGpuBlocks: 10 });
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) {
      const spec = good({ promptTokenIds: [1, 5 + i, 6, 7, 8, 9, 10], maxTokens: 12, priority: i % 3 === 0 ? NaN : i });
      try {
        ids.push(engine.submit(spec));
      } catch (e) {
        expect((e as InvalidRequestError).problems[0].field).toBe('priority');
      }
    }
    expect(ids).toHaveLength(8);
    await engine.runUntilIdle();
    for (const id of ids) expect(engine.getRequest(id)!.state).toBe('finished');
  });
});

describe('settings that would break the engine', () => {
  it('refuses fair-share tenant weights of 0 or NaN with the tenant named', () => {
    expect(() => newEngine({ policy: 'fair', fairShare: { prefillTokenWeight: 1, decodeTokenWeight: 2, tenantWeights: { a: 0 } } })).toThrow(/tenant a's fair-share weight must be a finite number > 0, got 0/);
    const engine = newEngine({ policy: 'fair' });
    expect(() => engine.reconfigure({ fairShare: { prefillTokenWeight: 1, decodeTokenWeight: 2, tenantWeights: { b: NaN } } })).toThrow(/tenant b's/);
    expect(engine.config.fairShare.tenantWeights).toEqual({});
  });

  it('applies maxNumSeqs lowered below what runs: the requests ranked last are preempted (with events) and all finish', async () => {
    for (const preemptionMode of ['recompute', 'swap'] as const) {
      const engine = newEngine({ preemptionMode, numGpuBlocks: 40 });
      const ids = [0, 1, 2, 3, 4].map((i) => engine.submit(good({ promptTokenIds: [1, 10 + i, 11, 12], maxTokens: 10 })));
      await engine.step();
      expect(engine.gauges().numRunningSeqs).toBe(5);
      engine.reconfigure({ maxNumSeqs: 1 });
      const r = await engine.step();
      expect(r.kind === 'ran' && r.step.preempted).toEqual(ids.slice(1).reverse()); // FCFS: the newest go first
      expect(engine.gauges().numRunningSeqs).toBe(1);
      await engine.runUntilIdle();
      for (const id of ids) expect(engine.getRequest(id)!.state).toBe('finished');
      expect([...terminals(engine.eventLog).values()].every((t) => t.length === 1)).toBe(true);
    }
  });

  it('refuses maxNumSeqs below the parallel samples of a request in flight (it could never run again)', async () => {
    const engine = newEngine();
    const wide = engine.submit(good({ n: 3 }));
    await engine.step(); // admitted (a request not yet admitted would be rejected at admission, with the reason)
    expect(() => engine.reconfigure({ maxNumSeqs: 2 })).toThrow(`maxNumSeqs 2 is below the 3 parallel samples of request ${wide} in flight`);
    await engine.runUntilIdle();
    expect(engine.getRequest(wide)!.state).toBe('finished');
    engine.reconfigure({ maxNumSeqs: 2 });
  });

  it('refuses to shrink maxNumSeqs below a static batch that is running, saying why', async () => {
    const engine = newEngine({ batching: 'static' });
    for (let i = 0; i < 4; i++) engine.submit(good());
    await engine.step();
    expect(() => engine.reconfigure({ maxNumSeqs: 2 })).toThrow(/below the 4 sequences of the static batch now running/);
    expect(engine.config.maxNumSeqs).toBe(8);
    await engine.runUntilIdle();
    engine.reconfigure({ maxNumSeqs: 2 }); // fine once the batch has ended
  });

  it('a failed step keeps no KV blocks: its requests are requeued for recompute, and the run goes on and replays', async () => {
    const fake = new FakeExecutor({ stopTokenId: 1, stopEvery: 1000, emitLogits: true });
    let failNext = false;
    const flaky = {
      name: 'flaky',
      configure: (g: Parameters<FakeExecutor['configure']>[0]) => fake.configure(g),
      execute: async (plan: StepPlan): Promise<StepOutput> => {
        if (failNext) {
          failNext = false;
          throw new Error('kernel exploded');
        }
        return fake.execute(plan);
      },
      dispose: () => fake.dispose(),
    };
    const engine = new Engine({ executor: flaky, clock: new VirtualClock(), config, checkInvariants: true });
    const ids = [0, 1, 2].map((i) => engine.submit(good({ promptTokenIds: [1, 20 + i, 21, 22, 23, 24], maxTokens: 8 })));
    await engine.step();
    await engine.step();
    failNext = true;
    await expect(engine.step()).rejects.toThrow('kernel exploded');
    expect(engine.kvGauges().usage).toBe(0);
    const snap = engine.snapshot(0);
    expect(snap.lastStep!.failed).toBe('kernel exploded');
    expect(snap.lastStep!.preempted.sort()).toEqual(ids);
    await engine.runUntilIdle();
    for (const id of ids) expect(engine.getRequest(id)!.state).toBe('finished');
    const replayed = await replayEventLog(engine.eventLog, { config, checkInvariants: true });
    expect(replayed.eventLog).toEqual(engine.eventLog);
  });
});

describe('deadline bookkeeping', () => {
  it('does not look at every waiting request each step: only those whose deadline is within reach', async () => {
    const engine = newEngine({ maxNumSeqs: 2, numGpuBlocks: 64, maxNumBatchedTokens: 64 });
    for (let i = 0; i < 2000; i++) engine.submit(good({ promptTokenIds: [1, 5, 6], maxTokens: 4, deadlineMs: 1e9 + i }));
    for (let i = 0; i < 5; i++) await engine.step(); // all admitted, rates known
    const spy = vi.spyOn(Scheduler.prototype, 'estimateServiceMs');
    for (let i = 0; i < 20; i++) await engine.step();
    // Admission of the next waiting requests asks for their estimate; expiry asks for none.
    expect(spy.mock.calls.length).toBeLessThan(40);
    spy.mockRestore();
  });

  it('still rejects a waiting request whose deadline passes, and times out old requests', async () => {
    const engine = newEngine({ maxNumSeqs: 1 });
    const long = engine.submit(good({ maxTokens: 30 }));
    const tight = engine.submit(good({ deadlineMs: 5 }));
    const later = engine.submit(good({ deadlineMs: 1e9 }));
    await engine.runUntilIdle();
    expect(engine.getRequest(long)!.state).toBe('finished');
    expect(engine.getRequest(tight)!.endReason).toBe('deadline_unmeetable');
    expect(engine.getRequest(later)!.state).toBe('finished');
    const timed = newEngine({ maxNumSeqs: 1, requestTimeoutMs: 20 });
    const a = timed.submit(good({ maxTokens: 40 }));
    const b = timed.submit(good({ maxTokens: 2 }));
    await timed.runUntilIdle();
    expect(timed.getRequest(a)!.endReason).toBe('timeout');
    expect(timed.getRequest(b)!.endReason).toBe('timeout');
  });
});
