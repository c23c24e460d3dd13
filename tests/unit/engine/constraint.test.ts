/**
 * The engine's side of structured output, with a scripted constraint on the fake executor: masks
 * applied to constrained rows only (greedy and sampled), a terminated constraint ends its
 * sequence with 'stop', each of n sequences keeps its own constraint, preemption by recompute and
 * by swap keeps what was accepted, constraints are disposed of once, and a run with
 * responseFormat replays from its log and round-trips as a saved run.
 */
import { describe, expect, it } from 'vitest';
import { Engine } from '../../../src/engine/engine.ts';
import { VirtualClock } from '../../../src/engine/clock.ts';
import { FakeExecutor } from '../../../src/engine/testing/fakeExecutor.ts';
import { applyBitmask, type ResponseFormat, type TokenConstraint } from '../../../src/engine/constraint.ts';
import { InvalidRequestError, type RequestSpec } from '../../../src/engine/request.ts';
import { replayEventLog } from '../../../src/engine/replay.ts';
import { generateWorkload, validateWorkload, workloadProblems } from '../../../src/engine/workload.ts';
import { makeSavedRun, parseImport, replaySavedRun, serializeRun } from '../../../src/export/saved-run.ts';

const V = 64;
const STOP = 2;
const FORMAT: ResponseFormat = { type: 'json_schema', jsonSchema: { name: 't', schema: { type: 'object' } } };

/**
 * Allows, at step k, only the tokens of `allowed[k]` (the stop token once the script is done:
 * accepting it terminates). Records what it was asked and accepted.
 */
class ScriptedConstraint implements TokenConstraint {
  accepted: number[] = [];
  masks = 0;
  disposed = 0;
  constructor(private readonly allowed: number[][]) {}
  private now(): number[] {
    return this.accepted.length < this.allowed.length ? this.allowed[this.accepted.length] : [STOP];
  }
  fillNextTokenBitmask(bitmask: Int32Array): void {
    this.masks++;
    bitmask.fill(0);
    for (const t of this.now()) bitmask[t >> 5] |= 1 << (t & 31);
  }
  acceptToken(tokenId: number): boolean {
    if (this.isTerminated() || !this.now().includes(tokenId)) return false;
    this.accepted.push(tokenId);
    return true;
  }
  rollback(n: number): void {
    this.accepted.splice(this.accepted.length - n, n);
  }
  isTerminated(): boolean {
    return this.accepted.length > this.allowed.length;
  }
  dispose(): void {
    this.disposed++;
  }
}

const script = (len: number, seed: number) => Array.from({ length: len }, (_, k) => [3 + ((seed * 7 + k * 5) % 50), 3 + ((seed * 11 + k * 3) % 50)]);

function spec(id: string, extra: Partial<RequestSpec> = {}): RequestSpec {
  return { requestId: id, promptTokenIds: [1, 5, 9, 13, 17], maxTokens: 40, stopTokenIds: [STOP], ...extra };
}

function engine(config = {}): Engine {
  return new Engine({ executor: new FakeExecutor({ vocabSize: V, emitLogits: true }), clock: new VirtualClock(), checkInvariants: true, config });
}

describe('constrained sampling in the engine', () => {
  it('applyBitmask keeps the allowed tokens and returns the masked argmax', () => {
    const logits = new Float32Array([5, 1, 3, 4]);
    const mask = new Int32Array([0b0110]);
    expect(applyBitmask(logits, mask)).toEqual({ numAllowed: 2, argmax: 2 });
    expect([...logits]).toEqual([-Infinity, 1, 3, -Infinity]);
  });

  it('masks constrained rows (greedy and sampled), leaves free rows alone, ends with stop at termination', async () => {
    const e = engine();
    const greedy = new ScriptedConstraint(script(6, 1));
    const sampled = new ScriptedConstraint(script(8, 2));
    e.submit(spec('g', { responseFormat: FORMAT }), { constraints: [greedy] });
    e.submit(spec('s', { responseFormat: FORMAT, sampling: { temperature: 1, seed: 3 } }), { constraints: [sampled] });
    e.submit(spec('free'));
    const free = engine();
    free.submit(spec('free'));
    await e.runUntilIdle();
    await free.runUntilIdle();
    for (const [id, c, len] of [['g', greedy, 6], ['s', sampled, 8]] as const) {
      const r = e.getRequest(id)!;
      expect(r.endReason).toBe('stop');
      expect(r.seqs[0].outputTokenIds).toEqual(c.accepted.slice(0, len));
      expect(c.accepted.at(-1)).toBe(STOP);
      expect(c.isTerminated()).toBe(true);
      expect(r.mask!.numTokens).toBe(len + 1);
      expect(r.mask!.allowedFractions).toEqual(Array.from({ length: len + 1 }, (_, k) => (k < len && script(len, id === 'g' ? 1 : 2)[k][0] !== script(len, id === 'g' ? 1 : 2)[k][1] ? 2 : 1) / V));
      expect(c.disposed).toBe(1);
    }
    // The free request generated exactly what it generates alone.
    expect(e.getRequest('free')!.seqs[0].outputTokenIds).toEqual(free.getRequest('free')!.seqs[0].outputTokenIds);
    expect(e.getRequest('free')!.mask).toBeNull();
    const withMasks = e.stepsSince(0).filter((s) => s.masks);
    expect(withMasks.length).toBeGreaterThan(0);
    expect(withMasks.every((s) => s.masks!.every((m) => m.requestId !== 'free' && m.vocabSize === V && m.ms >= 0))).toBe(true);
  });

  it('max_tokens before the grammar ends: length', async () => {
    const e = engine();
    const c = new ScriptedConstraint(script(30, 4));
    e.submit(spec('cut', { responseFormat: FORMAT, maxTokens: 10 }), { constraints: [c] });
    await e.runUntilIdle();
    expect(e.getRequest('cut')!.endReason).toBe('length');
    expect(c.accepted).toHaveLength(10);
    expect(c.disposed).toBe(1);
  });

  it('n > 1: one constraint per sequence, each followed', async () => {
    const e = engine();
    const cs = [0, 1, 2].map((i) => new ScriptedConstraint(script(5 + i, 10 + i)));
    e.submit(spec('multi', { n: 3, responseFormat: FORMAT, sampling: { temperature: 0.8, seed: 1 } }), { constraints: cs });
    await e.runUntilIdle();
    const r = e.getRequest('multi')!;
    r.seqs.forEach((s, i) => {
      expect(s.outputTokenIds).toEqual(cs[i].accepted.slice(0, 5 + i));
      expect(s.finishReason).toBe('stop');
    });
    expect(() => engine().submit(spec('x', { n: 2, responseFormat: FORMAT }), { constraints: [new ScriptedConstraint([])] })).toThrow(/1 constraints for 2 sequences/);
  });

  it('refuses responseFormat without constraints, and a bad responseFormat, touching nothing', () => {
    const e = engine();
    expect(() => e.submit(spec('a', { responseFormat: FORMAT }))).toThrow(InvalidRequestError);
    expect(() => e.submit(spec('b', { responseFormat: { type: 'yaml' } as never }), { constraints: [new ScriptedConstraint([])] })).toThrow(/responseFormat.type must be/);
    expect(() => e.submit(spec('c', { responseFormat: { type: 'json_schema' } as never }), { constraints: [new ScriptedConstraint([])] })).toThrow(/needs jsonSchema/);
    expect(e.hasWork()).toBe(false);
  });

  for (const mode of ['recompute', 'swap'] as const) {
    it(`preemption by ${mode} keeps the accepted tokens and the constraint's state`, async () => {
      // A pool too small for both: the later request is preempted and resumed.
      const config = { blockSize: 4, numGpuBlocks: 12, numCpuBlocks: 32, preemptionMode: mode, maxNumBatchedTokens: 64 };
      const e = engine(config);
      const a = new ScriptedConstraint(script(24, 5));
      const b = new ScriptedConstraint(script(24, 6));
      e.submit(spec('a', { responseFormat: FORMAT, maxTokens: 30 }), { constraints: [a] });
      e.submit(spec('b', { responseFormat: FORMAT, maxTokens: 30 }), { constraints: [b] });
      await e.runUntilIdle();
      expect(e.numPreemptions).toBeGreaterThan(0);
      for (const [id, c] of [['a', a], ['b', b]] as const) {
        const r = e.getRequest(id)!;
        expect(r.endReason).toBe('stop');
        expect(r.seqs[0].outputTokenIds).toEqual(c.accepted.slice(0, 24));
        expect(r.mask!.numTokens).toBe(25); // one mask per sampled token: nothing resampled after the preemption
      }
      expect(e.eventLog.some((ev) => ev.type === 'preempted' && ev.mode === mode)).toBe(true);
    });
  }

  it('a cancelled pending request and a rejected one dispose of their constraints', async () => {
    const e = engine({ maxNumSeqs: 2 });
    const pending = new ScriptedConstraint([]);
    e.submit(spec('later', { responseFormat: FORMAT, arrivalMs: 1e6 }), { constraints: [pending] });
    e.cancel('later');
    expect(pending.disposed).toBe(1);
    const rejected = new ScriptedConstraint([]);
    e.submit(spec('wide', { responseFormat: FORMAT, n: 3 }), { constraints: [rejected, new ScriptedConstraint([]), new ScriptedConstraint([])] });
    await e.step();
    expect(e.getRequest('wide')!.state).toBe('rejected');
    expect(rejected.disposed).toBe(1);
  });

  it('an engine dropped with requests in flight releases their constraints once', async () => {
    const e = engine();
    const running = new ScriptedConstraint(script(30, 1));
    const pending = new ScriptedConstraint([]);
    e.submit(spec('run', { responseFormat: FORMAT }), { constraints: [running] });
    e.submit(spec('later', { responseFormat: FORMAT, arrivalMs: 1e6 }), { constraints: [pending] });
    await e.step();
    await e.step();
    e.releaseConstraints();
    e.releaseConstraints();
    expect([running.disposed, pending.disposed]).toEqual([1, 1]);
  });

  it('replays from its log without constraints, and round-trips as a saved run', async () => {
    const e = engine();
    e.submit(spec('g', { responseFormat: FORMAT }), { constraints: [new ScriptedConstraint(script(6, 1))] });
    e.submit(spec('s', { responseFormat: { type: 'json_object' }, sampling: { temperature: 1, seed: 9 }, n: 2 }), { constraints: [new ScriptedConstraint(script(4, 3)), new ScriptedConstraint(script(7, 8))] });
    e.submit(spec('free'));
    await e.runUntilIdle();
    const replayed = await replayEventLog(e.eventLog, { config: e.config, checkInvariants: true });
    expect(replayed.eventLog).toEqual(e.eventLog);
    // The masks come back too (recorded in the step events): the views of a replay show them.
    expect(e.eventLog.some((ev) => ev.type === 'step' && ev.masks && ev.masks.length > 0)).toBe(true);
    expect(replayed.stepsSince(0).map((r) => r.masks)).toEqual(e.stepsSince(0).map((r) => r.masks));
    for (const id of ['g', 's']) expect(replayed.getRequest(id)!.mask).toEqual(e.getRequest(id)!.mask);
    expect(replayed.getRequest('free')!.mask).toBeNull();
    const submit = e.eventLog.find((ev) => ev.type === 'submit' && ev.request.requestId === 's');
    expect(submit && submit.type === 'submit' && submit.request.responseFormat).toEqual({ type: 'json_object' });
    const run = makeSavedRun('structured', 'fake', e.config, e.eventLog);
    const back = parseImport(serializeRun(run));
    expect(back.kind).toBe('run');
    if (back.kind !== 'run') return;
    const result = await replaySavedRun(back.run);
    expect(result.diff.equal).toBe(true);
  });

  it('workloads: a seeded fraction asks for structured output; the spec is validated', () => {
    const base = { seed: 3, numRequests: 40, arrival: { kind: 'batch' as const }, promptTokens: { kind: 'fixed' as const, value: 4 }, outputTokens: { kind: 'fixed' as const, value: 8 } };
    const plain = generateWorkload(base);
    const mixed = generateWorkload({ ...base, structured: { fraction: 0.5, responseFormat: FORMAT } });
    const k = mixed.filter((r) => r.responseFormat).length;
    expect(k).toBeGreaterThan(5);
    expect(k).toBeLessThan(35);
    // Everything else is what the workload generated without it.
    expect(mixed.map(({ responseFormat: _, ...r }) => r)).toEqual(plain);
    expect(validateWorkload({ ...base, structured: { fraction: 0.5, responseFormat: FORMAT } })).toBeTruthy();
    const bad = workloadProblems({ ...base, structured: { fraction: 2, responseFormat: { type: 'json_schema' } } });
    expect(bad.map((p) => p.message).join('\n')).toMatch(/fraction/);
    expect(bad.map((p) => p.message).join('\n')).toMatch(/needs jsonSchema/);
  });
});
