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
