/**
 * Every scenario's tour finds all of its moments, in order, in a run of the scenario's own
 * settings and workload (the serving core with a stand-in model on a virtual clock), and each
 * moment's text carries this run's numbers. The arrivals are paced by the work done, as the lab
 * paces them (src/serve/arrival-pacer.ts), so the tour finds the same moments at the same steps
 * when the steps take 50 times less (a real GPU) or 4 times more (a busy software GPU), and when
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
import type { RequestSpec } from '../../../src/engine/request.ts';
import { ArrivalPacer, REFERENCE_STEP } from '../../../src/serve/arrival-pacer.ts';

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
  // speed 1: steps about as long as the real model's on a software GPU (the reference pace).
  const s = SCENARIOS.find((x) => x.id === scenarioId)!;
  const settings = useCompareA ? s.compare.a.settings : s.settings;
  const engine = new Engine({
    // The speculation scenario's stand-in repeats itself as story text does, so n-gram drafts are often right.
    executor: new FakeExecutor({ stopTokenId: 2, stopEvery: 300, emitLogits: true, vocabSize: 512, durationMs: (p) => speed * (REFERENCE_STEP.baseMs + REFERENCE_STEP.perTokenMs * p.numBatchedTokens), repeatPeriod: scenarioId === 'speculative-decoding' ? 7 : undefined }),
    clock: new VirtualClock(),
    config: { ...fullConfig(settings), maxModelLen: 512 },
    checkInvariants: true,
  });
  // LoRA scenarios: the adapters their tenants name (the fake executor runs every row as the base model).
  for (const t of s.workload.tenants ?? []) if (t.adapter) engine.registerAdapter({ name: t.adapter, rank: 4, scale: 2 });
  const pacer = new ArrivalPacer<{ spec: RequestSpec; constraints?: TokenConstraint[] }>();
  pacer.add(
    generateWorkload({ ...s.workload, vocabSize: 512 }).map((spec) => ({
      offsetMs: spec.arrivalMs ?? 0,
      // Structured requests get a stand-in constraint (the fake model knows no grammar): it forbids
      // the tokens below 100 for 20 tokens, then allows only the stop tokens, as a grammar's end does.
      item: { spec: { ...spec, maxTokens: Math.min(spec.maxTokens, 511 - spec.promptTokenIds.length), stopTokenIds: [1, 2] }, constraints: spec.responseFormat ? Array.from({ length: spec.n ?? 1 }, () => new StandInConstraint()) : undefined },
    })),
  );
  // As the lab's host does (workers/engine-host.ts): what is due goes in before each step.
  const arrive = () => {
    for (const { item, delayMs } of pacer.release(!engine.hasWork())) engine.submit({ ...item.spec, arrivalMs: engine.clock.nowMs() + delayMs }, { constraints: item.constraints });
  };
  const watcher = new TourWatcher(scenarioId);
  const unseen: StepRecord[] = [];
  const hand = () => {
    const snap = engine.snapshot();
    for (const step of unseen.splice(0)) watcher.observe(step, snap);
  };
  for (let i = 0; i < 20_000 && (engine.hasWork() || pacer.size > 0); i++) {
    arrive();
    const r = await engine.step();
    if (r.kind === 'ran') {
      pacer.onStep(r.step);
      unseen.push(r.step);
    }
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

  // 0.02x: a real GPU runs this model's step in about a millisecond; 4x: a busy software GPU.
  it.each(SCENARIOS.flatMap((s) => [0.02, 0.3, 4].map((speed) => [s.id, speed] as const)))('%s: the same moments at the same steps with steps at %sx the time, handed over in bundles of 6', async (id, speed) => {
    const at = (ms: TourMoment[]) => ms.map((m) => `${m.id}@${m.stepIndex}`);
    const reference = await tourOf(id, false, { bundle: 6 });
    expect(reference.map((m) => m.id)).toEqual(tourMomentIds(id));
    expect(at(await tourOf(id, false, { speed, bundle: 6 }))).toEqual(at(reference));
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
