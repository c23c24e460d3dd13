/**
 * Every scenario's tour finds all of its moments, in order, in a run of the scenario's own
 * settings and workload (the serving core with a stand-in model on a virtual clock), and each
 * moment's text carries this run's numbers. Also when the steps run several times faster or
 * slower than the stand-in's (a software GPU's speed moves with the machine's load), and when
 * the steps reach the watcher in bundles with only the latest snapshot, as the page hands them.
 */
import { describe, expect, it } from 'vitest';
import { Engine } from '../../../src/engine/engine.ts';
import { VirtualClock } from '../../../src/engine/clock.ts';
import { FakeExecutor } from '../../../src/engine/testing/fakeExecutor.ts';
import { generateWorkload } from '../../../src/engine/workload.ts';
import { SCENARIOS } from '../../../src/ui/lab/scenarios.ts';
import { fullConfig } from '../../../src/ui/lab/settings.ts';
import { TourWatcher, hasTour, tourLength, tourMomentIds, type TourMoment } from '../../../src/ui/lab/tour.ts';
import type { TokenConstraint } from '../../../src/engine/constraint.ts';
import type { StepRecord } from '../../../src/engine/engine.ts';

class StandInConstraint implements TokenConstraint {
  private n = 0;
  private done = false;
  fillNextTokenBitmask(bitmask: Int32Array): void {
    if (this.n >= 20) {
      bitmask.fill(0);
      bitmask[0] = 0b110;
      return;
    }
    bitmask.fill(-1);
    for (let t = 0; t < 100; t++) bitmask[t >> 5] &= ~(1 << (t & 31));
  }
  acceptToken(t: number): boolean {
    if (t === 1 || t === 2) this.done = true;
    this.n++;
    return true;
  }
  rollback(k: number): void {
    this.n -= k;
  }
  isTerminated(): boolean {
    return this.done;
  }
}

interface RunShape {
  /** Step times as a multiple of the stand-in's 20 ms + 0.1 ms per batched token. */
  speed?: number;
  /** Steps handed to the watcher at once, with the snapshot after the last of them (1: each with its own). */
  bundle?: number;
}

async function tourOf(scenarioId: string, useCompareA = false, { speed = 1, bundle = 1 }: RunShape = {}): Promise<TourMoment[]> {
  const s = SCENARIOS.find((x) => x.id === scenarioId)!;
  const settings = useCompareA ? s.compare.a.settings : s.settings;
  const engine = new Engine({
    // Steps about as long as the real model's on a software GPU, so arrivals overlap as they do in the lab.
    // The speculation scenario's stand-in repeats itself as story text does, so n-gram drafts are often right.
    executor: new FakeExecutor({ stopTokenId: 2, stopEvery: 300, emitLogits: true, vocabSize: 512, durationMs: (p) => speed * (20 + 0.1 * p.numBatchedTokens), repeatPeriod: scenarioId === 'speculative-decoding' ? 7 : undefined }),
    clock: new VirtualClock(),
    config: { ...fullConfig(settings), maxModelLen: 512 },
    checkInvariants: true,
  });
  // LoRA scenarios: the adapters their tenants name (the fake executor runs every row as the base model).
  for (const t of s.workload.tenants ?? []) if (t.adapter) engine.registerAdapter({ name: t.adapter, rank: 4, scale: 2 });
  for (const spec of generateWorkload({ ...s.workload, vocabSize: 512 })) {
    // Structured requests get a stand-in constraint (the fake model knows no grammar): it forbids
    // the tokens below 100 for 20 tokens, then allows only the stop tokens, as a grammar's end does.
    const constraints = spec.responseFormat ? Array.from({ length: spec.n ?? 1 }, () => new StandInConstraint()) : undefined;
    engine.submit({ ...spec, maxTokens: Math.min(spec.maxTokens, 511 - spec.promptTokenIds.length), stopTokenIds: [1, 2] }, { constraints });
  }
  const watcher = new TourWatcher(scenarioId);
  const unseen: StepRecord[] = [];
  const hand = () => {
    const snap = engine.snapshot();
    for (const step of unseen.splice(0)) watcher.observe(step, snap);
  };
  for (let i = 0; i < 20_000 && engine.hasWork(); i++) {
    const r = await engine.step();
    if (r.kind === 'ran') unseen.push(r.step);
    if (unseen.length >= bundle) hand();
  }
  hand();
  expect(engine.hasWork()).toBe(false);
  watcher.finish(engine.snapshot());
  return watcher.found;
}

describe('guided tours', () => {
  it.each(SCENARIOS.map((s) => [s.id] as const))('%s: finds every moment, in order, with numbers from the run', async (id) => {
    expect(hasTour(id)).toBe(true);
    const found = await tourOf(id);
    expect(found.map((m) => m.id)).toHaveLength(tourLength(id));
    expect(tourLength(id)).toBeGreaterThanOrEqual(3);
    expect(tourLength(id)).toBeLessThanOrEqual(6);
    for (let i = 1; i < found.length; i++) expect(found[i].stepIndex).toBeGreaterThanOrEqual(found[i - 1].stepIndex);
    for (const m of found) {
      expect(m.text, m.id).toMatch(/\d/);
      expect(m.text.length, m.id).toBeLessThan(400);
    }
    expect(found.at(-1)!.id).toBe('summary');
  });

  // 0.3x to 4x: the stand-in's steps are about a software GPU's; the machines these tests and the
  // lab run on are shared, and a busy one runs the same step several times slower.
  it.each(SCENARIOS.flatMap((s) => [0.3, 0.5, 2, 4].map((speed) => [s.id, speed] as const)))('%s: every moment also with steps at %sx the time, handed over in bundles of 6', async (id, speed) => {
    const found = await tourOf(id, false, { speed, bundle: 6 });
    expect(found.map((m) => m.id)).toEqual(tourMomentIds(id));
  });

  it('the static batching tour names the padding and the request that waits for the batch to drain', async () => {
    const found = await tourOf('static-vs-continuous');
    expect(found.find((m) => m.id === 'padding')!.text).toMatch(/^\S+ has finished, yet its slot rides along as padding .* \d+ padded slots? in step \d+/);
    expect(found.find((m) => m.id === 'waits-for-batch')!.text).toMatch(/^\S+ waits for the static batch to drain: \d+ of its \d+ requests still running/);
  });

  it('the KV-exhausted tour quotes the preemption reason from the scheduler', async () => {
    const found = await tourOf('kv-exhausted');
    expect(found.find((m) => m.id === 'first-preemption')!.text).toMatch(/preempted by recompute: \d+ free blocks?, \S+ needs \d+; ranks last under fcfs/);
  });
});
