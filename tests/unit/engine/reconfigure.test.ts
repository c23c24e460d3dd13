import { describe, expect, it } from 'vitest';
import { Engine } from '../../../src/engine/engine.ts';
import { VirtualClock } from '../../../src/engine/clock.ts';
import { FakeExecutor } from '../../../src/engine/testing/fakeExecutor.ts';
import { replayEventLog } from '../../../src/engine/replay.ts';
import type { SchedulerConfig } from '../../../src/engine/scheduler.ts';

const config: Partial<SchedulerConfig> = { blockSize: 4, numGpuBlocks: 40, numCpuBlocks: 16, maxNumBatchedTokens: 32, maxNumSeqs: 8, maxModelLen: 128 };

function newEngine() {
  return new Engine({ executor: new FakeExecutor({ stopTokenId: 1, stopEvery: 1000 }), clock: new VirtualClock(), config, checkInvariants: true });
}

describe('live reconfiguration', () => {
  it('changes the policy, budgets and preemption mode between steps; the waiting queue follows the new order', async () => {
    const engine = newEngine();
    engine.reconfigure({ maxNumSeqs: 1 });
    const low = engine.submit({ promptTokenIds: [1, 5, 6, 7], maxTokens: 6, priority: 5 });
    await engine.step(); // `low` runs alone
    const ids = [9, 1, 4].map((priority) => engine.submit({ promptTokenIds: [1, 8, 9], maxTokens: 2, priority }));
    await engine.step();
    expect(engine.snapshot().queues.waiting).toEqual(ids); // FCFS: arrival order
    engine.reconfigure({ policy: 'priority', preemptionMode: 'swap' });
    expect(engine.snapshot().queues.waiting).toEqual([ids[1], ids[2], ids[0]]); // priority 1, 4, 9
    expect(engine.config).toMatchObject({ policy: 'priority', preemptionMode: 'swap', maxNumSeqs: 1 });
    engine.reconfigure({ maxNumSeqs: 8 });
    await engine.runUntilIdle();
    for (const id of [low, ...ids]) expect(engine.getRequest(id)!.state).toBe('finished');
  });

  it('a change made while a step is in flight applies after it, and the run replays identically', async () => {
    const engine = newEngine();
    for (let i = 0; i < 6; i++) engine.submit({ promptTokenIds: [1, 10 + i, 20 + i], maxTokens: 5 + i });
    const inFlight = engine.step();
    engine.reconfigure({ maxNumBatchedTokens: 8, policy: 'sjf' });
    expect(engine.config.policy).toBe('fcfs'); // not yet: the step is running
    await inFlight;
    expect(engine.config).toMatchObject({ policy: 'sjf', maxNumBatchedTokens: 8 });
    await engine.runUntilIdle();
    expect(engine.eventLog.some((e) => e.type === 'reconfigure')).toBe(true);
    const replayed = await replayEventLog(engine.eventLog, { config, checkInvariants: true });
    expect(replayed.eventLog).toEqual(engine.eventLog);
  });

  it('refuses what needs a new engine, and impossible values, with a clear error and no change', () => {
    const engine = newEngine();
    expect(() => engine.reconfigure({ numGpuBlocks: 99 })).toThrow(/numGpuBlocks cannot change while the engine runs/);
    expect(() => engine.reconfigure({ maxNumSeqs: 0 })).toThrow(/maxNumSeqs must be a positive integer/);
    expect(() => engine.reconfigure({ enableChunkedPrefill: false })).toThrow(/without chunked prefill/);
    expect(() => engine.reconfigure({ policy: 'nope' as SchedulerConfig['policy'] })).toThrow(/unknown policy/);
    expect(engine.config).toMatchObject({ maxNumSeqs: 8, enableChunkedPrefill: true, policy: 'fcfs' });
    expect(engine.eventLog.filter((e) => e.type === 'reconfigure')).toEqual([]);
  });
});

describe('executor loss', () => {
  it('a failed step and the new executor are logged; every request completes with the same tokens; the run replays identically', async () => {
    const spec = (i: number) => ({ promptTokenIds: [1, 10 + i, 20 + i, 30 + i], maxTokens: 12 + i });
    // Reference: the same requests with no failure.
    const clean = newEngine();
    const cleanIds = [0, 1, 2, 3].map((i) => clean.submit(spec(i)));
    await clean.runUntilIdle();

    let calls = 0;
    const inner = new FakeExecutor({ stopTokenId: 1, stopEvery: 1000 });
    const flaky = {
      name: 'flaky',
      configure: (g: Parameters<typeof inner.configure>[0]) => inner.configure(g),
      execute: (plan: Parameters<typeof inner.execute>[0]) => {
        if (++calls === 4) return Promise.reject(new Error('device lost'));
        return inner.execute(plan);
      },
      dispose: () => inner.dispose(),
    };
    const engine = new Engine({ executor: flaky, clock: new VirtualClock(), config, checkInvariants: true });
    const ids = [0, 1, 2, 3].map((i) => engine.submit(spec(i)));
    let failures = 0;
    while (engine.hasWork()) {
      try {
        await engine.step();
      } catch {
        failures++;
        await engine.replaceExecutor(new FakeExecutor({ stopTokenId: 1, stopEvery: 1000 }));
      }
    }
    expect(failures).toBe(1);
    ids.forEach((id, i) => expect(engine.getRequest(id)!.seqs[0].outputTokenIds).toEqual(clean.getRequest(cleanIds[i])!.seqs[0].outputTokenIds));
    const types = engine.eventLog.map((e) => e.type);
    expect(types).toContain('stepFailed');
    expect(types).toContain('executorReplaced');
    expect(engine.eventLog.filter((e) => e.type === 'preempted').length).toBeGreaterThan(0);
    const replayed = await replayEventLog(engine.eventLog, { config, checkInvariants: true });
    expect(replayed.eventLog).toEqual(engine.eventLog);
  });
});
