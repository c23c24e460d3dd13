import { describe, expect, it } from 'vitest';
import { dominantPhase, presetFinding, shares, slowestRequests, ttftQuantileBetween } from '../../../../src/sim/fleet/analysis.ts';
import type { FleetRequestRecord, FleetResult, RequestSpan } from '../../../../src/sim/fleet/types.ts';

function rec(id: string, tenant: string, arrivalS: number, spans: [RequestSpan['phase'], number][], ttftAfter: number): FleetRequestRecord {
  const out: RequestSpan[] = [];
  let t = arrivalS;
  const breakdown = { queueS: 0, moderationS: 0, prefillS: 0, decodeS: 0, preemptedS: 0, recomputeS: 0 };
  for (const [phase, d] of spans) {
    out.push({ phase, startS: t, endS: t + d });
    breakdown[`${phase}S` as keyof typeof breakdown] += d;
    t += d;
  }
  return { id, tenant, model: 'm', arrivalS, replicas: ['r0'], promptTokens: 10, cachedPromptTokens: 0, outputTokens: 5, finishReason: 'stop', ttftS: ttftAfter, e2eS: t - arrivalS, breakdown, numPreemptions: 0, spans: out, billedUsd: 0 };
}

const result = (requests: FleetRequestRecord[]) => ({ requests }) as unknown as FleetResult;

describe('fleet analysis', () => {
  it('dominant phase: over the whole request, or up to its first token', () => {
    // queue 0.5, prefill 1.0 (first token at 1.5), decode 3.0.
    const r = rec('a', 't', 0, [['queue', 0.5], ['prefill', 1], ['decode', 3]], 1.5);
    expect(dominantPhase(r)).toBe('decode');
    expect(dominantPhase(r, true)).toBe('prefill');
    const q = rec('b', 't', 10, [['queue', 2], ['prefill', 0.5], ['decode', 1]], 2.5);
    expect(dominantPhase(q, true)).toBe('queue');
  });

  it('slowest requests, shares by tenant and phase, TTFT quantiles in a window', () => {
    const reqs = [
      rec('a', 'x', 0, [['queue', 0.1], ['prefill', 0.1], ['decode', 1]], 0.2),
      rec('b', 'y', 1, [['queue', 3], ['prefill', 0.2], ['decode', 1]], 3.2),
      rec('c', 'y', 2, [['queue', 0.1], ['prefill', 2], ['decode', 1]], 2.1),
      rec('d', 'x', 3, [['queue', 0.1], ['prefill', 0.2], ['decode', 1]], 0.3),
    ];
    const slow = slowestRequests(result(reqs), { fraction: 0.5, min: 1 });
    expect(slow.map((r) => r.id)).toEqual(['b', 'c']);
    expect(shares(slow, 'tenant')).toEqual([{ key: 'y', count: 2, share: 1 }]);
    expect(shares(slow, 'phase')).toEqual([
      { key: 'prefill', count: 1, share: 0.5 },
      { key: 'queue', count: 1, share: 0.5 },
    ]);
    expect(slowestRequests(result(reqs), { by: 'e2e', fraction: 0.25, min: 1 }).map((r) => r.id)).toEqual(['b']);
    expect(ttftQuantileBetween(result(reqs), 0, 2, 0.99)).toBe(3.2);
    expect(ttftQuantileBetween(result(reqs), 2, Infinity, 0.5)).toBe(0.3);
    expect(ttftQuantileBetween(result(reqs), 50, 60, 0.5)).toBeNaN();
  });

  it('a preset finding needs the preset\'s runs', () => {
    expect(() => presetFinding('spike', [])).toThrow(RangeError);
  });
});
