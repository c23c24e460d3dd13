/**
 * Arrivals paced by the work done (src/serve/arrival-pacer.ts): requests are released when the
 * reference time of the steps run reaches their offset, all at once when due together, and the
 * next ones ahead of time (with the delay until them) only when the engine is idle.
 */
import { describe, expect, it } from 'vitest';
import { ArrivalPacer, REFERENCE_STEP, referenceStepMs } from '../../../src/serve/arrival-pacer.ts';

const step = (tokens: number[], durationMs = 1) => ({ seqs: tokens.map((n, i) => ({ seqId: i, requestId: `r${i}`, numPrefillTokens: n, numDecodeTokens: 0 })), durationMs });

describe('ArrivalPacer', () => {
  it('charges a step its reference time: a base plus a share per token computed; nothing for an empty or failed step', () => {
    expect(referenceStepMs(step([30, 10]))).toBeCloseTo(REFERENCE_STEP.baseMs + 40 * REFERENCE_STEP.perTokenMs, 9);
    expect(referenceStepMs(step([]))).toBe(0);
    expect(referenceStepMs({ ...step([5]), failed: 'lost' })).toBe(0);
  });

  it('releases each request once the reference time reaches its offset, whatever the steps measured', () => {
    const p = new ArrivalPacer<string>();
    p.add([
      { offsetMs: 50, item: 'b' },
      { offsetMs: 0, item: 'a' },
      { offsetMs: 50, item: 'c' },
      { offsetMs: 200, item: 'd' },
    ]);
    expect(p.release(false)).toEqual([{ item: 'a', delayMs: 0 }]);
    expect(p.release(false)).toEqual([]);
    p.onStep(step([100], 0.5)); // 30 reference ms, measured 0.5 ms
    expect(p.release(false)).toEqual([]);
    p.onStep(step([100], 900)); // 60 reference ms
    expect(p.release(false)).toEqual([
      { item: 'b', delayMs: 0 },
      { item: 'c', delayMs: 0 },
    ]);
    expect(p.figures).toEqual({ referenceMs: 60, engineMs: 900.5, numHeld: 1 });
    // Not idle: d waits for the work; idle: it is handed over ahead, with the delay until it is due.
    expect(p.release(false)).toEqual([]);
    expect(p.release(true)).toEqual([{ item: 'd', delayMs: 140 }]);
    expect(p.size).toBe(0);
    // Later additions count from the reference clock's present (it jumped to d's arrival).
    p.add([{ offsetMs: 10, item: 'e' }]);
    p.onStep(step([0]));
    expect(p.release(false)).toEqual([{ item: 'e', delayMs: 0 }]);
  });

  it('refuses an offset that is not a finite number of ms >= 0, and drop() hands back what it held', () => {
    const p = new ArrivalPacer<number>();
    expect(() => p.add([{ offsetMs: -1, item: 1 }])).toThrow(/finite number of ms >= 0, got -1/);
    expect(() => p.add([{ offsetMs: NaN, item: 1 }])).toThrow(/got NaN/);
    p.add([{ offsetMs: 5, item: 7 }]);
    expect(p.drop()).toEqual([7]);
    expect(p.size).toBe(0);
  });
});
