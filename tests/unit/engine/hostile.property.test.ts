/**
 * A property test of the engine API under hostile use: random valid and invalid requests, live
 * settings (valid, invalid and fixed ones), cancellations of known and unknown ids, and executor
 * failures, interleaved with steps. After every operation the scheduler's invariants hold (the
 * engine checks them after each step; here also after each input), no request is in two queues,
 * and in the end every request the engine took has exactly one terminal event while every
 * refused one left none. The runs replay from their event logs.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Engine } from '../../../src/engine/engine.ts';
import { VirtualClock } from '../../../src/engine/clock.ts';
import { FakeExecutor } from '../../../src/engine/testing/fakeExecutor.ts';
import { InvalidRequestError, type RequestSpec } from '../../../src/engine/request.ts';
import { Rng } from '../../../src/engine/workload.ts';
import { replayEventLog } from '../../../src/engine/replay.ts';
import type { SchedulerConfig } from '../../../src/engine/scheduler.ts';
import type { StepOutput, StepPlan } from '../../../src/engine/types.ts';

const VOCAB = 64;
const BAD_VALUES: unknown[] = [Number.NaN, Infinity, -Infinity, -1, 0, 2.5, 1e300, 'high', '', null, {}, [], true];

interface Tally {
  steps: number;
  /** Async scheduling: placeholder rows the executor filled. */
  placeholders: number;
  submitted: number;
  refused: number;
  cancels: number;
  reconfigures: number;
  refusedSettings: number;
  failedSteps: number;
  /** Speculative decoding: verifications, draft tokens, accepted drafts, and verifications that rolled back rejected drafts. */
  drafts: number;
  draftTokens: number;
  acceptedTokens: number;
  rollbacks: number;
}

function pick<T>(rng: Rng, xs: readonly T[]): T {
  return xs[rng.int(0, xs.length - 1)];
}

function validSpec(rng: Rng, nowMs: number): RequestSpec {
  const spec: RequestSpec = {
    promptTokenIds: Array.from({ length: rng.int(1, 40) }, (_, i) => (i === 0 ? 1 : rng.int(3, VOCAB - 1))),
    maxTokens: rng.int(1, 30),
  };
  if (rng.next() < 0.2) spec.n = rng.int(2, 3);
  if (rng.next() < 0.5) spec.priority = rng.int(-3, 3);
  if (rng.next() < 0.5) spec.tenant = pick(rng, ['a', 'b', 'c']);
  if (rng.next() < 0.3) spec.sampling = { temperature: pick(rng, [0, 0.5, 1]), topP: pick(rng, [0.9, 1]), topK: pick(rng, [0, 5]), seed: rng.int(-5, 1000) };
  if (rng.next() < 0.2) spec.deadlineMs = rng.int(1, 400);
  if (rng.next() < 0.3) spec.arrivalMs = nowMs + rng.int(-20, 200);
  if (rng.next() < 0.2) spec.predictedOutputTokens = rng.int(1, 50);
  if (rng.next() < 0.2) spec.stopTokenIds = [1, rng.int(3, VOCAB - 1)];
  if (rng.next() < 0.1) spec.requestId = `user-${rng.int(0, 30)}`; // duplicates happen
  return spec;
}

/** A valid spec with one field made bad (or the whole thing garbage). */
function invalidSpec(rng: Rng, nowMs: number): unknown {
  if (rng.next() < 0.05) return pick(rng, [null, 42, 'prompt', [], { promptTokenIds: [1] }]);
  const spec = validSpec(rng, nowMs) as unknown as Record<string, unknown>;
  const field = pick(rng, ['promptTokenIds', 'maxTokens', 'n', 'priority', 'tenant', 'deadlineMs', 'arrivalMs', 'predictedOutputTokens', 'stopTokenIds', 'sampling', 'cacheSalt', 'extra']);
  const bad = pick(rng, BAD_VALUES);
  if (field === 'promptTokenIds' && rng.next() < 0.5) spec.promptTokenIds = [1, pick(rng, [VOCAB, 99999, -1, Number.NaN, 2.5])];
  else if (field === 'sampling') spec.sampling = { [pick(rng, ['temperature', 'topP', 'topK', 'seed', 'temp'])]: bad };
  else if (field === 'cacheSalt') spec.cacheSalt = pick(rng, [5, null, 'x'.repeat(500)]);
  else if (field === 'extra') spec[pick(rng, ['max_tokens', 'prompt', 'stop'])] = 1;
  else if (field === 'tenant') spec.tenant = pick(rng, ['', 7, null, 'x'.repeat(500)]);
  else if (field === 'deadlineMs') spec.deadlineMs = pick(rng, [0, -5, Number.NaN, 'soon', null]);
  else if (field === 'n' || field === 'maxTokens' || field === 'predictedOutputTokens') spec[field] = pick(rng, [0, -1, 2.5, Number.NaN, Infinity, '3', null]);
  else spec[field] = pick(rng, [Number.NaN, Infinity, 'high', null, {}, [1]]);
  return spec;
}

function settingsChange(rng: Rng): Partial<SchedulerConfig> {
  const r = rng.next();
  if (r < 0.15) return { policy: pick(rng, ['fcfs', 'priority', 'edf', 'sjf', 'fair'] as const) };
  if (r < 0.3) return { maxNumSeqs: rng.int(1, 10) };
  if (r < 0.4) return { maxNumBatchedTokens: rng.int(1, 64) };
  if (r < 0.5) return { preemptionMode: pick(rng, ['recompute', 'swap', 'abort'] as const) };
  if (r < 0.55) return { maxQueueLength: pick(rng, [Infinity, rng.int(0, 20)]) };
  if (r < 0.6) return { requestTimeoutMs: pick(rng, [Infinity, rng.int(50, 2000)]) };
  if (r < 0.65) return { tenantMaxInFlight: { a: rng.int(1, 5) } };
  if (r < 0.7) {
    // Speculation switched or retuned mid-run (sometimes to a bad value, which is refused).
    const k = pick(rng, ['speculativeMethod', 'numSpeculativeTokens', 'promptLookupMax', 'promptLookupMin'] as const);
    if (k === 'speculativeMethod') return { speculativeMethod: pick(rng, ['off', 'ngram', 'ngram', 'eagle'] as const) } as Partial<SchedulerConfig>;
    return { [k]: pick(rng, [1, 2, 3, 6, 0, 17, 2.5]) };
  }
  if (r < 0.75) return { fairShare: { prefillTokenWeight: 1, decodeTokenWeight: 2, tenantWeights: { a: pick(rng, [0.5, 2, 0, Number.NaN, -1]) } } };
  if (r < 0.85) return { [pick(rng, ['maxNumSeqs', 'maxNumBatchedTokens', 'policy', 'preemptionMode', 'requestTimeoutMs'])]: pick(rng, BAD_VALUES) } as Partial<SchedulerConfig>;
  return { [pick(rng, ['blockSize', 'numGpuBlocks', 'maxModelLen', 'batching', 'enablePrefixCaching'])]: pick(rng, [8, 33, 'static', false]) } as Partial<SchedulerConfig>;
}

async function hostileRun(seed: number, numSteps: number, base: Partial<SchedulerConfig>, tally: Tally): Promise<void> {
  const rng = new Rng(seed);
  // With speculation on, the fake model often repeats itself, so n-gram drafts are often (not always) right.
  const repeatPeriod = base.speculativeMethod === 'ngram' ? 5 : undefined;
  const asyncScheduling = base.asyncScheduling === true;
  const fake = new FakeExecutor({ stopTokenId: 1, stopEvery: 23, emitLogits: true, vocabSize: VOCAB, repeatPeriod, tokenFeedback: asyncScheduling });
  const failures = new Set<number>();
  const executor = {
    name: 'hostile',
    vocabSize: VOCAB,
    tokenFeedback: asyncScheduling,
    configure: (g: Parameters<FakeExecutor['configure']>[0]) => fake.configure(g),
    execute: async (plan: StepPlan): Promise<StepOutput> => {
      if (failures.has(plan.stepIndex)) throw new Error(`injected failure at step ${plan.stepIndex}`);
      return fake.execute(plan);
    },
    dispose: () => fake.dispose(),
  };
  const config: Partial<SchedulerConfig> = { blockSize: 4, numGpuBlocks: 40, numCpuBlocks: 12, maxNumBatchedTokens: 48, maxNumSeqs: 8, maxModelLen: 96, ...base };
  const engine = new Engine({ executor, clock: new VirtualClock(), config, checkInvariants: true });
  const accepted = new Set<string>();
  let refusedHere = 0;
  for (let steps = 0; steps < numSteps; ) {
    const op = rng.next();
    const now = engine.clock.nowMs();
    if (op < 0.25) {
      const spec = rng.next() < 0.6 ? validSpec(rng, now) : invalidSpec(rng, now);
      try {
        accepted.add(engine.submit(spec as RequestSpec));
        tally.submitted++;
      } catch (e) {
        // Refused at once, with a reason: only for a spec that check() faults.
        expect(e).toBeInstanceOf(InvalidRequestError);
        expect((e as InvalidRequestError).problems.length).toBeGreaterThan(0);
        refusedHere++;
        tally.refused++;
      }
    } else if (op < 0.3) {
      const ids = [...accepted];
      engine.cancel(rng.next() < 0.8 && ids.length > 0 ? pick(rng, ids) : `unknown-${rng.int(0, 9)}`);
      tally.cancels++;
    } else if (op < 0.35) {
      const before = JSON.stringify(engine.config);
      try {
        engine.reconfigure(settingsChange(rng));
        tally.reconfigures++;
      } catch (e) {
        expect(e).toBeInstanceOf(RangeError);
        expect(JSON.stringify(engine.config)).toBe(before); // a refused change changes nothing
        tally.refusedSettings++;
      }
    } else {
      if (rng.next() < 0.01) failures.add(engine.snapshot().stepIndex + 1);
      try {
        await engine.step();
      } catch (e) {
        expect((e as Error).message).toMatch(/injected failure/);
        expect(engine.kvGauges().usage).toBe(0); // a failed step keeps no blocks
        tally.failedSteps++;
      }
      steps++;
      tally.steps++;
    }
    const q = engine.snapshot().queues;
    const all = [...q.running, ...q.waiting, ...q.swapped];
    expect(new Set(all).size).toBe(all.length); // no request in two queues
  }
  // Drain: lift anything that could keep requests from ever running, then run to the end.
  engine.reconfigure({ maxNumSeqs: 8, maxNumBatchedTokens: config.maxNumBatchedTokens, tenantMaxInFlight: {}, maxQueueLength: Infinity });
  failures.clear();
  await engine.runUntilIdle();
  expect(engine.hasWork()).toBe(false);

  const terminalsOf = new Map<string, number>();
  for (const e of engine.eventLog) {
    if (e.type === 'finished' || e.type === 'failed' || e.type === 'rejected') terminalsOf.set(e.requestId, (terminalsOf.get(e.requestId) ?? 0) + 1);
  }
  for (const id of accepted) expect(terminalsOf.get(id), `request ${id}`).toBe(1);
  expect([...terminalsOf.keys()].every((id) => accepted.has(id))).toBe(true);
  expect(engine.eventLog.filter((e) => e.type === 'submit')).toHaveLength(accepted.size);
  expect(refusedHere + accepted.size).toBeGreaterThan(0);
  for (const e of engine.eventLog) {
    if (e.type !== 'step') continue;
    for (const [, numDraft, numAccepted] of e.drafts ?? []) {
      tally.drafts++;
      tally.draftTokens += numDraft;
      tally.acceptedTokens += numAccepted;
      if (numAccepted < numDraft) tally.rollbacks++;
    }
  }
  tally.placeholders += fake.numPlaceholdersFilled;
  // A replay re-plans synchronously: it reproduces only runs planned that way.
  if (asyncScheduling) return;
  const replayed = await replayEventLog(engine.eventLog, { config, checkInvariants: true });
  expect(replayed.eventLog).toEqual(engine.eventLog);
}

describe('the engine under hostile use', () => {
  it('keeps every request accounted for and every invariant over 10,000 random steps', async () => {
    const tally: Tally = { steps: 0, submitted: 0, refused: 0, cancels: 0, reconfigures: 0, refusedSettings: 0, failedSteps: 0, drafts: 0, draftTokens: 0, acceptedTokens: 0, rollbacks: 0, placeholders: 0 };
    const bases: Partial<SchedulerConfig>[] = [
      {},
      { policy: 'priority', preemptionMode: 'swap' },
      { policy: 'fair', enableChunkedPrefill: false, maxNumBatchedTokens: 96 },
      { batching: 'static' },
      { policy: 'edf', kvPreallocation: 'max-length', numGpuBlocks: 60 },
      // Speculative decoding: drafts verified and rolled back under preemption, swaps, forks and failures.
      { speculativeMethod: 'ngram', numSpeculativeTokens: 4, promptLookupMin: 1 },
      { speculativeMethod: 'ngram', numSpeculativeTokens: 6, promptLookupMax: 3, preemptionMode: 'swap', numGpuBlocks: 24 },
    ];
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 2 ** 31 - 1 }), fc.constantFrom(...bases), (seed, base) => hostileRun(seed, 1000, base, tally)),
      { numRuns: 14, seed: 11 },
    );
    expect(tally.steps).toBeGreaterThanOrEqual(10_000);
    expect(tally.refused).toBeGreaterThan(100);
    expect(tally.refusedSettings).toBeGreaterThan(10);
    expect(tally.failedSteps).toBeGreaterThan(10);
    expect(tally.drafts).toBeGreaterThan(100);
    expect(tally.acceptedTokens).toBeGreaterThan(50);
    expect(tally.rollbacks).toBeGreaterThan(50);
    console.log(`hostile property test: ${JSON.stringify(tally)}`);
  }, 120_000);

  it('keeps every request accounted for and every invariant with async scheduling (placeholders, late stops, failures)', async () => {
    const tally: Tally = { steps: 0, submitted: 0, refused: 0, cancels: 0, reconfigures: 0, refusedSettings: 0, failedSteps: 0, drafts: 0, draftTokens: 0, acceptedTokens: 0, rollbacks: 0, placeholders: 0 };
    const bases: Partial<SchedulerConfig>[] = [
      { asyncScheduling: true },
      { asyncScheduling: true, policy: 'priority', preemptionMode: 'swap', numGpuBlocks: 24 },
      { asyncScheduling: true, policy: 'fair', numGpuBlocks: 20 },
    ];
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 2 ** 31 - 1 }), fc.constantFrom(...bases), (seed, base) => hostileRun(seed, 1000, base, tally)),
      { numRuns: 6, seed: 12 },
    );
    expect(tally.failedSteps).toBeGreaterThan(3);
    expect(tally.placeholders).toBeGreaterThan(500);
    console.log(`hostile property test, async scheduling: ${JSON.stringify(tally)}`);
  }, 120_000);
});
