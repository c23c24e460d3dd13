import { describe, expect, it } from 'vitest';
import { bySlowest, dominantPhase, phaseShares, presetFinding, queueShareOfTtft, slowestCount, slowestRequests, tenantShares, ttftQuantileBetween } from '../../../../src/sim/fleet/analysis.ts';
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

  it('slowest requests (ceil of the percent, at least one), shares by tenant and phase, queue share, TTFT quantiles in a window', () => {
    const reqs = [
      rec('a', 'x', 0, [['queue', 0.1], ['prefill', 0.1], ['decode', 1]], 0.2),
      rec('b', 'y', 1, [['queue', 3], ['prefill', 0.2], ['decode', 1]], 3.2),
      rec('c', 'y', 2, [['queue', 0.1], ['prefill', 2], ['decode', 1]], 2.1),
      rec('d', 'x', 3, [['queue', 0.1], ['prefill', 0.2], ['decode', 1]], 0.3),
    ];
    expect(slowestCount(4, 50)).toBe(2);
    expect(slowestCount(700, 1)).toBe(7);
    expect(slowestCount(10, 1)).toBe(1);
    expect(slowestCount(0, 1)).toBe(0);
    const slow = slowestRequests(reqs, { percent: 50 });
    expect(slow.map((r) => r.id)).toEqual(['b', 'c']);
    expect(tenantShares(slow, reqs)).toEqual([
      { tenant: 'y', numSlow: 2, slowShare: 1, numAll: 2, allShare: 0.5 },
      { tenant: 'x', numSlow: 0, slowShare: 0, numAll: 2, allShare: 0.5 },
    ]);
    expect(phaseShares(slow)).toEqual([
      { phase: 'queue', count: 1, share: 0.5 },
      { phase: 'prefill', count: 1, share: 0.5 },
    ]);
    // Queued: (0.1 + 3 + 0.1 + 0.1) of (0.2 + 3.2 + 2.1 + 0.3) s to the first token.
    expect(queueShareOfTtft(reqs)).toBeCloseTo(3.3 / 5.8, 12);
    expect(queueShareOfTtft([])).toBeNaN();
    expect(slowestRequests(reqs, { metric: 'e2e', percent: 25 }).map((r) => r.id)).toEqual(['b']);
    // Ties: the earlier arrival first; no latency: left out.
    const tie = [rec('z', 'x', 5, [['queue', 1]], 1), rec('w', 'x', 4, [['queue', 1]], 1), { ...rec('v', 'x', 0, [['queue', 9]], 9), ttftS: undefined }];
    expect(bySlowest(tie, 'ttft').map((r) => r.id)).toEqual(['w', 'z']);
    expect(ttftQuantileBetween(result(reqs), 0, 2, 0.99)).toBe(3.2);
    expect(ttftQuantileBetween(result(reqs), 2, Infinity, 0.5)).toBe(0.3);
    expect(ttftQuantileBetween(result(reqs), 50, 60, 0.5)).toBeNaN();
  });

  it('a preset finding needs the preset\'s runs', () => {
    expect(() => presetFinding('spike', [])).toThrow(RangeError);
  });
});
