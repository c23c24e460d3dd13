/**
 * LoRA in the serving core: the adapter slot manager (pins, LRU eviction, events), the
 * scheduler's admission (at most maxLoras distinct adapters per step; a request waiting for a slot
 * says so), plans (per-row loraSlot, loraLoads before the step), submit-time validation, the prefix
 * cache kept apart per adapter, and replay of a log with adapters in it.
 */
import { describe, expect, it } from 'vitest';
import { Engine } from '../../../src/engine/engine.ts';
import { VirtualClock } from '../../../src/engine/clock.ts';
import { FakeExecutor } from '../../../src/engine/testing/fakeExecutor.ts';
import { LoraSlotManager } from '../../../src/engine/loraSlots.ts';
import { replayEventLog } from '../../../src/engine/replay.ts';
import { InvalidRequestError, Request } from '../../../src/engine/request.ts';
import { validateEngineConfig, DEFAULT_SCHEDULER_CONFIG, type SchedulerConfig } from '../../../src/engine/config.ts';
import type { StepOutput, StepPlan } from '../../../src/engine/types.ts';
import { makeSavedRun, parseImport, replaySavedRun, serializeRun } from '../../../src/export/saved-run.ts';

describe('LoraSlotManager', () => {
  it('loads into free slots, reuses a loaded adapter, evicts the least recently used unpinned one, refuses when all are pinned', () => {
    const m = new LoraSlotManager(2);
    expect(m.acquire('a', 'r1')).toEqual({ slot: 0, load: true });
    expect(m.acquire('b', 'r2')).toEqual({ slot: 1, load: true });
    expect(m.acquire('a', 'r3')).toEqual({ slot: 0, load: false });
    expect(m.canAcquire('c')).toBe(false);
    expect(m.acquire('c', 'r4')).toBeNull();
    m.release('r2');
    m.release('r1');
    expect(m.acquire('c', 'r4')).toEqual({ slot: 1, load: true }); // b unpinned; a still pinned by r3
    m.release('r3');
    m.release('r4');
    m.acquire('c', 'r5'); // c used more recently than a
    expect(m.acquire('d', 'r6')).toEqual({ slot: 0, load: true }); // a is the LRU one
    expect(m.takeEvents()).toEqual([
      { type: 'loraLoaded', slot: 0, adapter: 'a', requestId: 'r1' },
      { type: 'loraLoaded', slot: 1, adapter: 'b', requestId: 'r2' },
      { type: 'loraEvicted', slot: 1, adapter: 'b' },
      { type: 'loraLoaded', slot: 1, adapter: 'c', requestId: 'r4' },
      { type: 'loraEvicted', slot: 0, adapter: 'a' },
      { type: 'loraLoaded', slot: 0, adapter: 'd', requestId: 'r6' },
    ]);
    expect(m.numLoads).toBe(4);
    expect(m.numEvictions).toBe(2);
    expect(m.view()).toEqual([
      { slot: 0, adapter: 'd', requestIds: ['r6'], numLoads: 2 },
      { slot: 1, adapter: 'c', requestIds: ['r5'], numLoads: 2 },
    ]);
    m.assertInvariants(new Set(['r5', 'r6']));
    expect(() => m.assertInvariants(new Set(['r5']))).toThrow(/r6 pins adapter slot 0 but is not running/);
  });
});

const config: Partial<SchedulerConfig> = { blockSize: 4, numGpuBlocks: 64, numCpuBlocks: 16, maxNumBatchedTokens: 64, maxNumSeqs: 8, maxModelLen: 128, maxLoras: 2, maxLoraRank: 8 };
const ADAPTERS = ['alpha', 'beta', 'gamma'];

/** An engine over the fake executor that keeps every plan it ran. */
function engineWithPlans(extra: Partial<SchedulerConfig> = {}) {
  const fake = new FakeExecutor({ vocabSize: 60 });
  const plans: StepPlan[] = [];
  const executor = {
    name: 'fake+plans',
    vocabSize: 60,
    configure: (g: Parameters<FakeExecutor['configure']>[0]) => fake.configure(g),
    execute: (p: StepPlan): Promise<StepOutput> => {
      plans.push(structuredClone(p));
      return fake.execute(p);
    },
    dispose: () => fake.dispose(),
  };
  const engine = new Engine({ executor, config: { ...config, ...extra }, clock: new VirtualClock(), checkInvariants: true });
  for (const name of ADAPTERS) engine.registerAdapter({ name, rank: 4, scale: 2 });
  return { engine, plans };
}

function submitMix(engine: Engine, n: number): void {
  for (let i = 0; i < n; i++) {
    const adapter = i % 4 === 3 ? undefined : ADAPTERS[i % 3];
    engine.submit({ requestId: `r${i}`, promptTokenIds: [1, 5 + (i % 7), 9, 11, 3 + i], maxTokens: 6 + (i % 5), ...(adapter ? { adapter } : {}), arrivalMs: i * 0.5 });
  }
}

describe('the scheduler with LoRA adapters', () => {
  it('admits at most maxLoras distinct adapters per step, loads before use, evicts LRU, and says why a request waits', async () => {
    const { engine, plans } = engineWithPlans();
    submitMix(engine, 16);
    await engine.runUntilIdle();
    const loaded = new Map<number, string>(); // slot -> adapter, as the executor would hold it
    let sawMixed = false;
    for (const p of plans) {
      for (const l of p.loraLoads ?? []) loaded.set(l.slot, l.adapter);
      const slots = new Set<number>();
      for (const s of p.seqs) {
        const req = engine.getRequest(s.requestId)!;
        if (req.adapter === null) {
          expect(s.loraSlot).toBeUndefined();
          continue;
        }
        expect(s.loraSlot).toBeGreaterThanOrEqual(0);
        expect(loaded.get(s.loraSlot!), `step ${p.stepIndex}: ${s.requestId} runs on slot ${s.loraSlot}`).toBe(req.adapter);
        slots.add(s.loraSlot!);
      }
      expect(slots.size).toBeLessThanOrEqual(2);
      if (slots.size > 0 && p.seqs.some((s) => s.loraSlot === undefined)) sawMixed = true;
    }
    expect(sawMixed, 'base and adapter rows share a step').toBe(true);
    const snap = engine.snapshot(0);
    expect(snap.loraStats.numLoads).toBeGreaterThan(2);
    expect(snap.loraStats.numEvictions).toBeGreaterThan(0);
    expect(snap.loraSlots.every((s) => s.requestIds.length === 0)).toBe(true);
    const records = snap.recentSteps;
    const loads = records.flatMap((r) => r.loraEvents.filter((e) => e.type === 'loraLoaded'));
    expect(loads.length).toBe(snap.loraStats.numLoads);
    const waits = records.flatMap((r) => r.decisions).filter((d) => d.kind === 'waits' && /LoRA adapter/.test(d.reason));
    expect(waits.length).toBeGreaterThan(0);
    expect(waits[0].reason).toMatch(/is in no slot and all maxLoras 2 slots are pinned by running requests \(slot 0 \w+: r\d+/);
    for (let i = 0; i < 16; i++) expect(engine.getRequest(`r${i}`)!.state).toBe('finished');
  });

  it('refuses an unknown adapter at submit, and any adapter when maxLoras is 0; refuses ranks above maxLoraRank', () => {
    const { engine } = engineWithPlans();
    expect(() => engine.submit({ promptTokenIds: [1, 2], maxTokens: 2, adapter: 'delta' })).toThrow(InvalidRequestError);
    expect(() => engine.submit({ promptTokenIds: [1, 2], maxTokens: 2, adapter: 'delta' })).toThrow(/unknown LoRA adapter "delta" \(loaded: alpha, beta, gamma\)/);
    expect(() => engine.submit({ promptTokenIds: [1, 2], maxTokens: 2, adapter: '' })).toThrow(/adapter must be a non-empty string/);
    expect(() => engine.registerAdapter({ name: 'big', rank: 9, scale: 1 })).toThrow(/rank 9 exceeds maxLoraRank 8/);
    expect(() => engine.registerAdapter({ name: 'alpha', rank: 2, scale: 1 })).toThrow(/alpha is already registered/);
    const off = new Engine({ executor: new FakeExecutor(), config: { ...config, maxLoras: 0 }, clock: new VirtualClock() });
    expect(() => off.registerAdapter({ name: 'alpha', rank: 4, scale: 1 })).toThrow(/adapters are off/);
    expect(() => off.submit({ promptTokenIds: [1, 2], maxTokens: 2, adapter: 'alpha' })).toThrow(/none is loaded/);
    expect(validateEngineConfig({ ...DEFAULT_SCHEDULER_CONFIG, maxLoras: -1, maxLoraRank: 65 }).map((p) => p.key)).toEqual(['maxLoras', 'maxLoraRank']);
  });

  it('a request waiting for a slot does not block those behind it (base and loaded adapters go first)', async () => {
    const { engine, plans } = engineWithPlans({ maxLoras: 1 });
    engine.submit({ requestId: 'a1', promptTokenIds: [1, 5, 6], maxTokens: 12, adapter: 'alpha' });
    engine.submit({ requestId: 'b1', promptTokenIds: [1, 7, 8], maxTokens: 4, adapter: 'beta' });
    engine.submit({ requestId: 'base', promptTokenIds: [1, 9, 10], maxTokens: 4 });
    engine.submit({ requestId: 'a2', promptTokenIds: [1, 11, 12], maxTokens: 4, adapter: 'alpha' });
    await engine.step();
    expect(plans[0].seqs.map((q) => q.requestId)).toEqual(['a1', 'base', 'a2']);
    const d = engine.snapshot(0).recentSteps[0].decisions.find((x) => x.requestId === 'b1')!;
    expect(d.kind).toBe('waits');
    expect(d.reason).toMatch(/b1 waits: its LoRA adapter beta is in no slot and all maxLoras 1 slots are pinned by running requests \(slot 0 alpha: a1\); requests behind it may go first/);
    await engine.runUntilIdle();
    expect(engine.getRequest('b1')!.state).toBe('finished');
    // b1 ran only after every alpha request had let go of the one slot
    const b1First = plans.findIndex((p) => p.seqs.some((q) => q.requestId === 'b1'));
    expect(plans.slice(b1First).some((p) => p.seqs.some((q) => q.requestId === 'a1' || q.requestId === 'a2'))).toBe(false);
    expect(plans[b1First].loraLoads).toEqual([{ slot: 0, adapter: 'beta' }]);
  });

  it('keeps the prefix cache apart per adapter', () => {
    const spec = { promptTokenIds: [1, 2, 3], maxTokens: 1 };
    const keys = [undefined, 'alpha', 'beta'].map((adapter) => new Request({ ...spec, ...(adapter ? { adapter } : {}) }, 'x', 0, 0).cacheKey);
    expect(new Set(keys).size).toBe(3);
  });

  it('replays an event log with adapters in play', async () => {
    const { engine } = engineWithPlans({ preemptionMode: 'swap', numGpuBlocks: 10 });
    submitMix(engine, 14);
    await engine.runUntilIdle();
    expect(engine.eventLog.some((e) => e.type === 'preempted')).toBe(true);
    const replayed = await replayEventLog(engine.eventLog, { config: { ...config, preemptionMode: 'swap', numGpuBlocks: 10 }, checkInvariants: true });
    expect(replayed.eventLog).toEqual(engine.eventLog);
    expect(replayed.snapshot(0).recentSteps.map((r) => r.loraEvents)).toEqual(engine.snapshot(0).recentSteps.map((r) => r.loraEvents));
    // as a saved run: exported, imported (the schema knows adapterRegistered), replayed identically
    const runConfig = { ...DEFAULT_SCHEDULER_CONFIG, ...config, preemptionMode: 'swap' as const, numGpuBlocks: 10 };
    const imported = parseImport(serializeRun(makeSavedRun('lora', 'fake', runConfig, engine.eventLog)));
    expect(imported.kind).toBe('run');
    if (imported.kind === 'run') expect((await replaySavedRun(imported.run)).diff).toMatchObject({ equal: true, numEvents: engine.eventLog.length });
  });
});
