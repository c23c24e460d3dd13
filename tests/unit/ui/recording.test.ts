/**
 * The recording a paused run is scrubbed with: the snapshot at step k, rebuilt by replaying the
 * event log, equals the snapshot the live engine gave right after step k (blocks, block tables,
 * queues, requests, metrics, step records), going forward, back, to step 0 and to the last step;
 * and the views' state built from it in one go equals the live views' state built step by step.
 */
import { describe, expect, it } from 'vitest';
import { Engine, type EngineSnapshot } from '../../../src/engine/engine.ts';
import { VirtualClock } from '../../../src/engine/clock.ts';
import { FakeExecutor } from '../../../src/engine/testing/fakeExecutor.ts';
import { generateWorkload } from '../../../src/engine/workload.ts';
import type { SchedulerConfig } from '../../../src/engine/config.ts';
import { Recording, SupersededError } from '../../../src/ui/lab/recording.ts';
import { LabState, type LabSnapshot } from '../../../src/ui/lab/state.svelte.ts';

const config: Partial<SchedulerConfig> = {
  blockSize: 4,
  numGpuBlocks: 24,
  numCpuBlocks: 16,
  maxNumBatchedTokens: 32,
  maxNumSeqs: 8,
  maxModelLen: 128,
  policy: 'priority',
  preemptionMode: 'recompute',
  enablePrefixCaching: true,
};

function newEngine(): Engine {
  return new Engine({
    executor: new FakeExecutor({ stopTokenId: 1, stopEvery: 60, emitLogits: true }),
    clock: new VirtualClock(),
    config,
    checkInvariants: true,
    // The whole history in every snapshot, as the recording gives it.
    numStepRecords: Infinity,
    numRecentEndedInSnapshot: Infinity,
  });
}

const copy = (s: EngineSnapshot): EngineSnapshot => structuredClone(s);

/** A run with preemptions, a live change of settings, a cancel during a step and a late submit; the snapshot after every step. */
async function liveRun(): Promise<{ engine: Engine; live: Map<number, EngineSnapshot> }> {
  const engine = newEngine();
  const requests = generateWorkload({
    seed: 5,
    numRequests: 16,
    vocabSize: 60,
    arrival: { kind: 'poisson', ratePerS: 300 },
    promptTokens: { kind: 'uniform', min: 6, max: 24 },
    outputTokens: { kind: 'uniform', min: 8, max: 30 },
    sharedPrefix: { fraction: 0.4, numTokens: 8 },
    parallelSampling: { fraction: 0.2, n: 2 },
    temperature: 0.7,
    tenants: [
      { name: 'batch', weight: 2, priority: 2 },
      { name: 'chat', weight: 1, priority: 0 },
    ],
  });
  for (const r of requests) engine.submit(r);
  await engine.init();
  const live = new Map<number, EngineSnapshot>([[0, copy(engine.snapshot(0))]]);
  for (let i = 0; engine.hasWork() && i < 2000; i++) {
    let outcome;
    if (engine.stepIndex === 6) {
      const inFlight = engine.step();
      engine.cancel(requests[2].requestId ?? 'w5-2');
      outcome = await inFlight;
    } else {
      outcome = await engine.step();
    }
    if (engine.stepIndex === 10 && !engine.eventLog.some((e) => e.type === 'reconfigure')) engine.reconfigure({ preemptionMode: 'swap', maxNumBatchedTokens: 24 });
    if (engine.stepIndex === 14 && !engine.eventLog.some((e) => e.type === 'submit' && e.request.requestId === 'late')) {
      engine.submit({ requestId: 'late', promptTokenIds: [1, 7, 8, 9, 10], maxTokens: 6 });
    }
    if (outcome.kind === 'ran') live.set(outcome.step.stepIndex, copy(engine.snapshot(0)));
  }
  return { engine, live };
}

describe('Recording: a run scrubbed step by step', () => {
  it('gives the live snapshot of step k for every k, forward and back', async () => {
    const { engine, live } = await liveRun();
    expect(engine.numPreemptions).toBeGreaterThan(0);
    for (const type of ['cancel', 'reconfigure'] as const) expect(engine.eventLog.filter((e) => e.type === type)).toHaveLength(1);
    expect(engine.getRequest('late')?.state).toBe('finished');
    const recording = new Recording([...engine.eventLog], { config, checkInvariants: true });
    expect(recording.lastStep).toBe(engine.stepIndex);
    expect(recording.lastStep).toBeGreaterThan(30);
    const last = recording.lastStep;
    // Forward from the start, back, to the ends, back again.
    for (const k of [0, 3, 7, 11, 12, 25, 9, last, 0, Math.floor(last / 2), last - 1]) {
      const snap = await recording.snapshotAt(k);
      const expected = live.get(k)!;
      expect(snap.stepIndex, `step ${k}`).toBe(k);
      // Each part the views draw, then the whole snapshot.
      expect(snap.gpuBlocks, `blocks at step ${k}`).toEqual(expected.gpuBlocks);
      expect(snap.cpuBlocks, `CPU blocks at step ${k}`).toEqual(expected.cpuBlocks);
      expect(snap.blockTables, `block tables at step ${k}`).toEqual(expected.blockTables);
      expect(snap.queues, `queues at step ${k}`).toEqual(expected.queues);
      expect(snap.requests, `requests at step ${k}`).toEqual(expected.requests);
      expect(snap.recentSteps.map((s) => s.stepIndex)).toEqual(Array.from({ length: k }, (_, i) => i + 1));
      expect(snap).toEqual(expected);
    }
  });

  it('step 0 holds the submitted requests and no blocks; a preemption carries its reason', async () => {
    const { engine } = await liveRun();
    const recording = new Recording(engine.eventLog, { config });
    const first = await recording.snapshotAt(0);
    expect(first.queues.pending).toBe(16);
    expect(first.gpuBlocks.refCount.every((r) => r === 0)).toBe(true);
    expect(first.recentSteps).toEqual([]);
    const end = await recording.snapshotAt(recording.lastStep);
    const preemption = end.recentSteps.flatMap((s) => s.decisions).find((d) => d.kind === 'preempted');
    expect(preemption?.reason).toMatch(/preempted by (recompute|swap)/);
  });

  it('a snapshot handed out stays as it was when the replay moves on', async () => {
    const { engine, live } = await liveRun();
    const recording = new Recording(engine.eventLog, { config });
    const at5 = await recording.snapshotAt(5);
    await recording.snapshotAt(recording.lastStep);
    expect(at5).toEqual(live.get(5));
  });

  it('a log taken mid-run (the page fetches it while paused) records up to that step', async () => {
    const engine = newEngine();
    for (let i = 0; i < 6; i++) engine.submit({ promptTokenIds: [1, 10 + i, 20 + i, 30 + i], maxTokens: 20 });
    const live: EngineSnapshot[] = [];
    for (let i = 0; i < 12; i++) {
      await engine.step();
      live.push(copy(engine.snapshot(0)));
    }
    const recording = new Recording([...engine.eventLog], { config });
    expect(recording.lastStep).toBe(12);
    await engine.runUntilIdle(); // the engine goes on; the recording keeps its own copy of the log
    expect(await recording.snapshotAt(12)).toEqual(live[11]);
    expect(await recording.snapshotAt(4)).toEqual(live[3]);
    await expect(recording.snapshotAt(13)).rejects.toThrow(/step 13 is not in this recording \(steps 0 to 12\)/);
    await expect(recording.snapshotAt(1.5)).rejects.toThrow(RangeError);
  });

  it('stops a replay a newer request made pointless, and the next one still comes right', async () => {
    const { engine, live } = await liveRun();
    const recording = new Recording(engine.eventLog, { config, sliceMs: 1 });
    let stale = false;
    const far = recording.snapshotAt(recording.lastStep, () => stale);
    stale = true;
    await expect(far).rejects.toBeInstanceOf(SupersededError);
    expect(await recording.snapshotAt(20)).toEqual(live.get(20));
  });
});

const asLab = (s: EngineSnapshot): LabSnapshot => ({ ...s, texts: {}, prompts: {}, host: null, model: null });

describe('the views of a recorded step', () => {
  it('a LabState fed the replayed snapshot at k matches the live one fed step by step up to k', async () => {
    const engine = newEngine();
    const requests = generateWorkload({
      seed: 8,
      numRequests: 14,
      vocabSize: 60,
      arrival: { kind: 'poisson', ratePerS: 400 },
      promptTokens: { kind: 'uniform', min: 6, max: 24 },
      outputTokens: { kind: 'uniform', min: 8, max: 30 },
      tenants: [
        { name: 'batch', weight: 2, priority: 2 },
        { name: 'chat', weight: 1, priority: 0 },
      ],
    });
    for (const r of requests) engine.submit(r);
    const live = new LabState();
    const seen = new Map<number, { columns: LabState['columns']; requests: { id: string; color: string; decisions: unknown }[]; steps: number[] }>();
    while (engine.hasWork()) {
      const r = await engine.step();
      if (r.kind !== 'ran') continue;
      live.ingest(asLab(engine.snapshot(live.lastStep)));
      seen.set(r.step.stepIndex, {
        columns: live.columns,
        requests: live.requests.map((x) => ({ id: x.requestId, color: x.color, decisions: x.decisions })),
        steps: live.steps.map((st) => st.stepIndex),
      });
    }
    expect(engine.numPreemptions).toBeGreaterThan(0);
    const recording = new Recording(engine.eventLog, { config });
    for (const k of [recording.lastStep, 9, Math.floor(recording.lastStep / 2)]) {
      const state = new LabState({ orderFrom: live, maxSteps: Infinity });
      state.ingest(asLab(await recording.snapshotAt(k)));
      const expected = seen.get(k)!;
      expect(state.columns, `timeline at step ${k}`).toEqual(expected.columns);
      expect(state.steps.map((st) => st.stepIndex)).toEqual(expected.steps);
      expect(state.requests.map((x) => ({ id: x.requestId, color: x.color, decisions: x.decisions })), `requests at step ${k}`).toEqual(expected.requests);
      expect(state.stepRecord(k)?.stepIndex).toBe(k);
    }
    // Each request's decisions: repeats in a row are one entry, with the steps they span.
    const all = live.requests.flatMap((x) => x.decisions);
    expect(all.some((d) => d.kind === 'preempted' && /preempted by/.test(d.reason))).toBe(true);
    for (const d of all) expect(d.toStep - d.fromStep + 1).toBeGreaterThanOrEqual(d.count);
  });
});
