/**
 * The scheduler's reasons in words: every admission, wait, preemption, rejection and timeout of
 * a step comes with a sentence naming the numbers behind it (the step inspector shows them).
 */
import { describe, expect, it } from 'vitest';
import { Engine, type StepRecord } from '../../../src/engine/engine.ts';
import { VirtualClock } from '../../../src/engine/clock.ts';
import { FakeExecutor } from '../../../src/engine/testing/fakeExecutor.ts';
import type { SchedulerConfig } from '../../../src/engine/scheduler.ts';

function newEngine(config: Partial<SchedulerConfig>) {
  return new Engine({
    executor: new FakeExecutor({ stopTokenId: 1, stopEvery: 1000 }),
    clock: new VirtualClock(),
    config: { blockSize: 4, numGpuBlocks: 16, numCpuBlocks: 16, maxNumBatchedTokens: 64, maxNumSeqs: 8, maxModelLen: 64, ...config },
    checkInvariants: true,
  });
}

async function allSteps(engine: Engine): Promise<StepRecord[]> {
  const out: StepRecord[] = [];
  while (engine.hasWork()) {
    const r = await engine.step();
    if (r.kind === 'ran') out.push(r.step);
    else if (r.nextArrivalMs === null) break;
  }
  return out;
}

const prompt = (k: number, len: number) => [1, ...Array.from({ length: len - 1 }, (_, i) => 3 + ((k * 7 + i) % 50))];

describe('the scheduler says why', () => {
  it('names a preemption: the free blocks, who needed how many, and why the victim ranks last', async () => {
    const engine = newEngine({ policy: 'priority', numGpuBlocks: 10 });
    engine.submit({ requestId: 'hi', promptTokenIds: prompt(1, 12), maxTokens: 24, priority: 0 });
    engine.submit({ requestId: 'lo', promptTokenIds: prompt(2, 12), maxTokens: 24, priority: 3 });
    const steps = await allSteps(engine);
    const preemption = steps.flatMap((s) => s.decisions).find((d) => d.kind === 'preempted')!;
    expect(preemption.requestId).toBe('lo');
    expect(preemption.reason).toMatch(/^lo preempted by recompute: 0 free blocks, hi needs 1; ranks last under priority: lowest priority \(3\), then newest$/);
    const ev = engine.eventLog.find((e) => e.type === 'preempted');
    expect(ev && ev.type === 'preempted' && ev.reason).toBe(preemption.reason);
    const waits = steps.flatMap((s) => s.decisions).filter((d) => d.kind === 'waits' && d.requestId === 'lo');
    expect(waits[0].reason).toMatch(/^lo waits: memory is tight \(1 preempted this step\), so nothing new is admitted$/);
    const resumed = steps.flatMap((s) => s.decisions).find((d) => d.kind === 'resumed')!;
    expect(resumed.reason).toMatch(/^lo resumed \(recomputes its tokens\): \d+ of \d+ tokens this step/);
  });

  it('says what an admission took and why the next one waits (slots, budget, memory)', async () => {
    const engine = newEngine({ maxNumSeqs: 2, maxNumBatchedTokens: 64, enablePrefixCaching: true });
    for (let k = 0; k < 4; k++) engine.submit({ requestId: `r${k}`, promptTokenIds: prompt(k, 10), maxTokens: 3 });
    const first = (await engine.step()) as { kind: 'ran'; step: StepRecord };
    expect(first.step.tokenBudget).toBe(64);
    const reasons = first.step.decisions.map((d) => d.reason);
    expect(reasons[0]).toMatch(/^r0 admitted: 10 of 10 tokens this step; \d+ blocks free after$/);
    expect(reasons).toContain('r2 waits: 2 of maxNumSeqs 2 sequence slots are taken and it needs 1; 1 more behind it');
  });

  it('records the KV-cache usage after each step: the share of GPU blocks held, as the snapshot then says', async () => {
    const engine = newEngine({ numGpuBlocks: 10, policy: 'priority' });
    engine.submit({ requestId: 'hi', promptTokenIds: prompt(1, 12), maxTokens: 24, priority: 0 });
    engine.submit({ requestId: 'lo', promptTokenIds: prompt(2, 12), maxTokens: 24, priority: 3 });
    const seen: number[] = [];
    while (engine.hasWork()) {
      const r = await engine.step();
      if (r.kind !== 'ran') break;
      const rc = engine.snapshot().gpuBlocks.refCount;
      expect(r.step.kvCacheUsage).toBe(rc.filter((n) => n > 0).length / rc.length);
      seen.push(r.step.kvCacheUsage);
    }
    // The pool fills (a preemption follows), and is empty once both have ended.
    expect(Math.max(...seen)).toBe(1);
    expect(seen.at(-1)).toBe(0);
  });

  it('says when the token budget is used up and when a waiting prompt needs more memory than is free', async () => {
    const budget = newEngine({ maxNumBatchedTokens: 12 });
    budget.submit({ requestId: 'a', promptTokenIds: prompt(1, 12), maxTokens: 2 });
    budget.submit({ requestId: 'b', promptTokenIds: prompt(2, 12), maxTokens: 2 });
    const r = (await budget.step()) as { kind: 'ran'; step: StepRecord };
    expect(r.step.decisions.map((d) => d.reason)).toContain("b waits: the step's token budget (maxNumBatchedTokens 12) is used up");

    const memory = newEngine({ numGpuBlocks: 8 });
    memory.submit({ requestId: 'big', promptTokenIds: prompt(1, 24), maxTokens: 4 });
    memory.submit({ requestId: 'next', promptTokenIds: prompt(2, 24), maxTokens: 4 });
    const m = (await memory.step()) as { kind: 'ran'; step: StepRecord };
    expect(m.step.decisions.map((d) => d.reason)).toContain('next waits: 2 free blocks, it needs 6');
  });

  it('names rejections, timeouts and the static batch a request waits for', async () => {
    const engine = newEngine({ maxQueueLength: 1, requestTimeoutMs: 30 });
    engine.submit({ requestId: 'a', promptTokenIds: prompt(1, 6), maxTokens: 50 });
    engine.submit({ requestId: 'b', promptTokenIds: prompt(2, 6), maxTokens: 2 });
    engine.submit({ requestId: 'c', promptTokenIds: prompt(3, 6), maxTokens: 2 });
    // Still running when `a` times out, so that happens in a step that is recorded.
    engine.submit({ requestId: 'd', promptTokenIds: prompt(4, 6), maxTokens: 60, arrivalMs: 20 });
    const steps = await allSteps(engine);
    const all = steps.flatMap((s) => s.decisions);
    expect(all.find((d) => d.requestId === 'c')!.reason).toBe('c rejected (queue full): 1 requests waiting (cap 1)');
    expect(all.find((d) => d.kind === 'timedOut')!.reason).toMatch(/^a timed out: \d+ ms since it arrived \(requestTimeoutMs 30\)$/);

    const stat = newEngine({ batching: 'static', maxNumSeqs: 2 });
    for (const id of ['x', 'y', 'z']) stat.submit({ requestId: id, promptTokenIds: prompt(1, 6), maxTokens: id === 'x' ? 2 : 8 });
    await stat.step();
    const second = (await stat.step()) as { kind: 'ran'; step: StepRecord };
    expect(second.step.decisions.map((d) => d.reason)).toContain('z waits: waiting for the static batch to drain: 2 of its 2 requests still running');
  });
});

describe("a request's prefix-cache hit on its latest admission", () => {
  it('is never above its prompt, even after preemptions that find its own generated blocks again', async () => {
    const engine = newEngine({ numGpuBlocks: 14, maxNumBatchedTokens: 64, enablePrefixCaching: true });
    const shared = prompt(9, 16);
    for (let k = 0; k < 6; k++) engine.submit({ requestId: `p${k}`, promptTokenIds: [...shared, 3 + k, 4 + k], maxTokens: 30 });
    await allSteps(engine);
    const reqs = [...engine.requests()];
    expect(reqs.some((r) => r.numPreemptions > 0)).toBe(true);
    expect(reqs.some((r) => r.numCachedPromptTokens > r.numPromptTokens)).toBe(true); // the total over admissions
    for (const r of reqs) expect(r.numCachedPromptTokensLastAdmission).toBeLessThanOrEqual(r.numPromptTokens);
    expect(reqs.some((r) => r.numCachedPromptTokensLastAdmission >= 16)).toBe(true); // the shared prompt was hit
  });
});
