/**
 * The fleet view's pure helpers on hand-worked cases: time-cursor lookups, the slowest requests
 * (cut sizes, ties, filters, the cursor), tenant shares and arrival bins, recomputed bills, the
 * comparison line, and the playback speed chosen for a run's length.
 */
import { describe, expect, it } from 'vitest';
import type { FleetRequestRecord, FleetSummary, ReplicaRecord } from '../../../src/sim/fleet/types.ts';
import { countUpTo, indexAtOrBefore, recentUpTo, replicaSampleAt, replicaStateAt, requestCountsAt, requestEndS, sentPerReplica } from '../../../src/ui/fleet/timeline.ts';
import { BREAKDOWN_PARTS, arrivalBins, cutSize, findSlowest, promptMediansByArrival } from '../../../src/ui/fleet/slowest.ts';
import { BREAKDOWN_KEY } from '../../../src/sim/fleet/types.ts';
import { breakdownTotalS, dominantPhase, partsUntilFirstToken, tenantShares } from '../../../src/sim/fleet/analysis.ts';
import { isBilledRecord, pricesProblem, recomputeBills, requestPriceUsd } from '../../../src/ui/fleet/billing.ts';
import { comparisonRows } from '../../../src/ui/fleet/compare.ts';
import { FLEET_SPEEDS, FleetCursor, speedIndexFor } from '../../../src/ui/fleet/cursor.svelte.ts';

function req(id: string, over: Partial<FleetRequestRecord> = {}): FleetRequestRecord {
  return {
    id,
    tenant: 'a',
    model: 'm',
    arrivalS: 0,
    replicas: ['r0'],
    promptTokens: 100,
    cachedPromptTokens: 0,
    outputTokens: 10,
    finishReason: 'stop',
    ttftS: 0.1,
    e2eS: 1,
    breakdown: { queueS: 0, moderationS: 0, prefillS: 0.1, decodeS: 0.9, preemptedS: 0, recomputeS: 0 },
    numPreemptions: 0,
    billedUsd: 0,
    ...over,
  };
}

const ALL = { tenant: null, fromS: null, toS: null, untilS: null } as const;

describe('time-cursor lookups', () => {
  it('finds the last index at or before t by bisection', () => {
    const ts = [0, 1, 2, 2, 5];
    expect(indexAtOrBefore(ts, -0.1)).toBe(-1);
    expect(indexAtOrBefore(ts, 0)).toBe(0);
    expect(indexAtOrBefore(ts, 1.9)).toBe(1);
    expect(indexAtOrBefore(ts, 2)).toBe(3);
    expect(indexAtOrBefore(ts, 99)).toBe(4);
    expect(indexAtOrBefore([], 1)).toBe(-1);
  });

  it("gives a replica's state, reason and sample at t; gone after a scale-down, lost stays lost", () => {
    const r: ReplicaRecord = {
      id: 'r2',
      model: 'm',
      createdS: 10,
      endedS: 60,
      coldStartS: 20,
      states: [
        { atS: 10, state: 'cold', reason: 'ordered' },
        { atS: 25, state: 'warming', reason: 'weights loaded' },
        { atS: 30, state: 'serving', reason: 'warm' },
        { atS: 50, state: 'draining', reason: 'scale down' },
      ],
      samples: [
        { tS: 10, state: 'cold', waiting: 0, running: 0, kvUsage: 0 },
        { tS: 40, state: 'serving', waiting: 3, running: 7, kvUsage: 0.5 },
      ],
      gpuHours: 0.1,
    };
    expect(replicaStateAt(r, 5)).toBeNull();
    expect(replicaStateAt(r, 10)).toBe('cold');
    expect(replicaStateAt(r, 29.9)).toBe('warming');
    expect(replicaStateAt(r, 45)).toBe('serving');
    expect(replicaStateAt(r, 55)).toBe('draining');
    expect(replicaStateAt(r, 60)).toBe('gone');
    expect(replicaSampleAt(r, 39)?.running).toBe(0);
    expect(replicaSampleAt(r, 41)?.running).toBe(7);
    const lost: ReplicaRecord = { ...r, endedS: 52, states: [...r.states.slice(0, 3), { atS: 52, state: 'lost', reason: 'spot reclaim' }] };
    expect(replicaStateAt(lost, 80)).toBe('lost');
  });

  it('lists the latest decisions at or before t, newest first, and counts them', () => {
    const ds = [1, 2, 3, 4, 5].map((atS) => ({ atS, n: atS }));
    expect(recentUpTo(ds, 3.5, 2).map((d) => d.n)).toEqual([3, 2]);
    expect(recentUpTo(ds, 0.5, 2)).toEqual([]);
    expect(recentUpTo(ds, 10, 10).map((d) => d.n)).toEqual([5, 4, 3, 2, 1]);
    expect(countUpTo(ds, 3)).toBe(3);
  });

  it('counts the requests sent to each replica by t, from their spans (a re-routed one on each replica)', () => {
    const rs = [
      req('1', { arrivalS: 0, replicas: ['r0'], spans: [{ phase: 'queue', startS: 0, endS: 1, replica: 'r0' }, { phase: 'decode', startS: 1, endS: 2, replica: 'r0' }] }),
      // Re-routed at 5 s from r0 to r1 (its preempted span names no replica).
      req('2', {
        arrivalS: 1,
        replicas: ['r0', 'r1'],
        spans: [
          { phase: 'prefill', startS: 1, endS: 2, replica: 'r0' },
          { phase: 'preempted', startS: 2, endS: 5 },
          { phase: 'recompute', startS: 5, endS: 6, replica: 'r1' },
        ],
      }),
      // No spans: counted from its arrival on every replica it names.
      req('3', { arrivalS: 3, replicas: ['r2'] }),
      req('4', { arrivalS: 9, replicas: ['r0'] }),
    ];
    const at = (t: number) => {
      const s = sentPerReplica(rs, ['r0', 'r1'], t);
      return { ...Object.fromEntries(s.perReplica), n: s.numRequests };
    };
    expect(at(0.5)).toEqual({ r0: 1, r1: 0, n: 1 });
    expect(at(4)).toEqual({ r0: 2, r1: 0, r2: 1, n: 3 });
    expect(at(5)).toEqual({ r0: 2, r1: 1, r2: 1, n: 3 });
    expect(at(10)).toEqual({ r0: 3, r1: 1, r2: 1, n: 4 });
  });

  it('counts the requests that had arrived and ended by t, by finish reason', () => {
    const rs = [
      req('1', { arrivalS: 0, e2eS: 2 }),
      req('2', { arrivalS: 1, e2eS: 5, finishReason: 'content_filter' }),
      // Never finished: it ends when its breakdown says (1 + 0.5 queue).
      req('3', { arrivalS: 1, e2eS: undefined, ttftS: undefined, finishReason: 'rejected', breakdown: { queueS: 0.5, moderationS: 0, prefillS: 0, decodeS: 0, preemptedS: 0, recomputeS: 0 } }),
    ];
    expect(requestEndS(rs[2])).toBe(1.5);
    const at = requestCountsAt(rs, 2);
    expect(at.arrived).toBe(3);
    expect(at.ended).toBe(2);
    expect(at.byFinish.rejected).toBe(1);
    expect(at.byFinish.content_filter).toBe(0);
    expect(requestCountsAt(rs, 6).byFinish.content_filter).toBe(1);
  });
});

describe('the slowest requests', () => {
  const rs = Array.from({ length: 250 }, (_, i) => req(`r${i}`, { arrivalS: i, tenant: i % 5 === 0 ? 'big' : 'small', ttftS: i % 5 === 0 ? 2 + i / 1000 : 0.1 + i / 10000, e2eS: 3 }));

  it('shows every part of the breakdown once, each labelled with its phase', () => {
    expect(BREAKDOWN_PARTS.map((p) => p.key).sort()).toEqual(Object.values(BREAKDOWN_KEY).sort());
    for (const p of BREAKDOWN_PARTS) expect(BREAKDOWN_KEY[p.label]).toBe(p.key);
  });

  it('keeps ceil(1%) (at least one) or the top n, slowest first', () => {
    expect(cutSize({ kind: 'percent', percent: 1 }, 250)).toBe(3);
    expect(cutSize({ kind: 'percent', percent: 1 }, 10)).toBe(1);
    expect(cutSize({ kind: 'percent', percent: 1 }, 0)).toBe(0);
    expect(cutSize({ kind: 'top', n: 20 }, 7)).toBe(7);
    const { slowest, numEligible } = findSlowest(rs, { metric: 'ttft', cut: { kind: 'percent', percent: 1 }, ...ALL });
    expect(numEligible).toBe(250);
    expect(slowest.map((r) => r.id)).toEqual(['r245', 'r240', 'r235']);
  });

  it('breaks ties by arrival, filters by tenant, arrival window and what had happened by the cursor', () => {
    const { slowest } = findSlowest(rs, { metric: 'e2e', cut: { kind: 'top', n: 2 }, ...ALL });
    expect(slowest.map((r) => r.id)).toEqual(['r0', 'r1']);
    const small = findSlowest(rs, { metric: 'ttft', cut: { kind: 'top', n: 1 }, ...ALL, tenant: 'small' });
    expect(small.slowest[0].id).toBe('r249');
    expect(small.numEligible).toBe(200);
    const window = findSlowest(rs, { metric: 'ttft', cut: { kind: 'top', n: 50 }, ...ALL, fromS: 10, toS: 20 });
    expect(window.numEligible).toBe(10);
    expect(window.slowest[0].id).toBe('r15');
    // By t = 102.05 only r100 of the big tenant has its first token (100 + 2.1 = 102.1 > 102.05: not yet).
    const cursor = findSlowest(rs, { metric: 'ttft', cut: { kind: 'top', n: 1 }, ...ALL, untilS: 102.05 });
    expect(cursor.slowest[0].id).toBe('r95');
    const none = findSlowest([req('x', { ttftS: undefined })], { metric: 'ttft', cut: { kind: 'top', n: 5 }, ...ALL });
    expect(none).toEqual({ slowest: [], numEligible: 0 });
  });

  it("puts the over-represented tenant first and bins the arrivals", () => {
    const { slowest } = findSlowest(rs, { metric: 'ttft', cut: { kind: 'percent', percent: 5 }, ...ALL });
    const shares = tenantShares(slowest, rs);
    expect(shares[0]).toEqual({ tenant: 'big', numSlow: 13, slowShare: 1, numAll: 50, allShare: 0.2 });
    expect(shares[1].numSlow).toBe(0);
    const bins = arrivalBins(slowest, rs, 250, 5);
    expect(bins.map((b) => b.numAll)).toEqual([50, 50, 50, 50, 50]);
    // The 13 slowest are the big tenant's last: arrived 185, 190, 195 (bin 3) and 200-245 (bin 4).
    expect(bins.map((b) => b.numSlow)).toEqual([0, 0, 0, 3, 10]);
    expect(bins[4]).toMatchObject({ fromS: 200, toS: 250 });
  });

  it("splits the time to the first token by phase from the spans, clipped at the first token", () => {
    const r = req('x', {
      arrivalS: 10,
      ttftS: 2.5,
      e2eS: 6,
      breakdown: { queueS: 1, moderationS: 0.2, prefillS: 1.5, decodeS: 3, preemptedS: 0, recomputeS: 0.3 },
      spans: [
        { phase: 'moderation', startS: 10, endS: 10.2 },
        { phase: 'queue', startS: 10.2, endS: 11.2, replica: 'r0' },
        { phase: 'prefill', startS: 11.2, endS: 11.7, replica: 'r0' },
        { phase: 'recompute', startS: 11.7, endS: 12, replica: 'r0' },
        { phase: 'prefill', startS: 12, endS: 13, replica: 'r0' },
        { phase: 'decode', startS: 13, endS: 16, replica: 'r0' },
      ],
    });
    const p = partsUntilFirstToken(r);
    expect(p.moderationS).toBeCloseTo(0.2);
    expect(p.queueS).toBeCloseTo(1);
    expect(p.recomputeS).toBeCloseTo(0.3);
    // The second prefill span is cut at the first token (12.5 s).
    expect(p.prefillS).toBeCloseTo(1);
    expect(p.decodeS).toBe(0);
    expect(breakdownTotalS(p)).toBeCloseTo(2.5);
    // No spans or no first token: the whole breakdown.
    expect(partsUntilFirstToken({ ...r, spans: undefined })).toBe(r.breakdown);
    expect(partsUntilFirstToken({ ...r, ttftS: undefined })).toBe(r.breakdown);
  });

  it("gives a tenant's median prompt per arrival bin (NaN where none arrived)", () => {
    const rs = [
      req('1', { tenant: 't', arrivalS: 1, promptTokens: 100 }),
      req('2', { tenant: 't', arrivalS: 2, promptTokens: 300 }),
      req('3', { tenant: 't', arrivalS: 3, promptTokens: 200 }),
      req('4', { tenant: 'u', arrivalS: 12, promptTokens: 5 }),
      req('5', { tenant: 't', arrivalS: 25, promptTokens: 800 }),
      req('6', { tenant: 't', arrivalS: 29.9, promptTokens: 1000 }),
    ];
    const m = promptMediansByArrival(rs, 't', 30, 3);
    expect(m[0]).toBe(200);
    expect(m[1]).toBeNaN();
    expect(m[2]).toBe(900);
  });

  it('sums a breakdown and names its longest phase', () => {
    const b = { queueS: 3, moderationS: 0.2, prefillS: 0.5, decodeS: 1, preemptedS: 0, recomputeS: 0.3 };
    expect(breakdownTotalS(b)).toBeCloseTo(5);
    expect(dominantPhase(req('x', { breakdown: b }))).toBe('queue');
  });
});

describe('the bill at edited prices', () => {
  const prices = { usdPerMPromptTokens: 1, usdPerMCachedPromptTokens: 0.5, usdPerMGeneratedTokens: 4 };

  it('prices uncached, cached and generated tokens per million', () => {
    // 600 uncached x 1 + 400 cached x 0.5 + 50 generated x 4 = 1000 -> $0.001.
    expect(requestPriceUsd({ promptTokens: 1000, cachedPromptTokens: 400, outputTokens: 50 }, prices)).toBeCloseTo(0.001, 12);
  });

  it('bills completed requests and stopped streams, not refused, failed or aborted ones', () => {
    const rs = [
      req('1', { tenant: 'a', promptTokens: 1000, cachedPromptTokens: 400, outputTokens: 50 }),
      req('2', { tenant: 'a', finishReason: 'content_filter', promptTokens: 200, outputTokens: 30 }),
      req('3', { tenant: 'a', finishReason: 'content_filter', promptTokens: 200, outputTokens: 0, billedUsd: 0 }),
      req('4', { tenant: 'b', finishReason: 'rejected', promptTokens: 5000 }),
      req('5', { tenant: 'b', finishReason: 'failed', promptTokens: 5000 }),
      req('6', { tenant: 'b', finishReason: 'length', promptTokens: 0, outputTokens: 1_000_000 }),
    ];
    expect(rs.map(isBilledRecord)).toEqual([true, true, false, false, false, true]);
    const { bills, totalUsd } = recomputeBills(rs, ['a', 'b', 'c'], prices);
    expect(bills.map((b) => b.tenant)).toEqual(['a', 'b', 'c']);
    expect(bills[0]).toMatchObject({ numBilled: 2, promptTokens: 1200, cachedPromptTokens: 400, generatedTokens: 80 });
    expect(bills[0].usd).toBeCloseTo(0.001 + (200 * 1 + 30 * 4) / 1e6, 12);
    expect(bills[1].usd).toBeCloseTo(4, 12);
    expect(bills[2]).toMatchObject({ numBilled: 0, usd: 0 });
    expect(totalUsd).toBeCloseTo(bills[0].usd + 4, 12);
  });

  it('refuses prices that are not numbers or below zero, in words', () => {
    expect(pricesProblem(prices)).toBeNull();
    expect(pricesProblem({ ...prices, usdPerMGeneratedTokens: NaN })).toBe('the generated price must be a number');
    expect(pricesProblem({ ...prices, usdPerMCachedPromptTokens: -1 })).toBe('the cached prompt price must be 0 or more');
  });
});

describe('the comparison line and the playback speed', () => {
  const summary = (over: Partial<FleetSummary>): FleetSummary => ({
    numRequests: 100, numCompleted: 100, replicasMax: 4, p50TtftS: 0.2, p99TtftS: 1, p99E2eS: 5, sloAttainment: 0.9, gpuHours: 1, costUsd: 10,
    lostRequests: 0, reroutedRequests: 0, prefixHitRate: 0, contentFiltered: 0, quotaRejected: 0, throughputTokPerS: 100, durationS: 100, ...over,
  });

  it('marks the better run per figure, and no winner on a tie or where neither way is better', () => {
    const rows = comparisonRows([summary({ p99TtftS: 4.2, sloAttainment: 0.61, costUsd: 8 }), summary({ p99TtftS: 0.9, sloAttainment: 0.99, costUsd: 12, replicasMax: 9 })]);
    const by = Object.fromEntries(rows.map((r) => [r.key, r]));
    expect(by.p99TtftS).toMatchObject({ values: ['4.20 s', '900 ms'], best: 1 });
    expect(by.sloAttainment).toMatchObject({ values: ['61.0%', '99.0%'], best: 1 });
    expect(by.costUsd).toMatchObject({ values: ['$8.00', '$12.00'], best: 0 });
    expect(by.gpuHours.best).toBeNull();
    expect(by.replicasMax.best).toBeNull();
    expect(comparisonRows([summary({})])[0].best).toBeNull();
  });

  it('moves the time cursor by steps and seeks, clamped to the run; the end snaps', () => {
    const c = new FleetCursor();
    c.load(100, 2);
    expect([c.tS, c.durationS, c.playing, FLEET_SPEEDS[c.speedIndex].simSPerS]).toEqual([0, 100, false, 2]);
    c.step();
    c.step();
    expect(c.tS).toBe(4);
    c.seek(-5);
    expect(c.tS).toBe(0);
    c.seek(Number.NaN);
    expect(c.tS).toBe(0);
    c.seek(99.9999999);
    expect(c.tS).toBe(100);
    c.seek(99.5);
    expect(c.tS).toBe(99.5);
    c.step();
    expect(c.tS).toBe(100);
    c.seek(3);
    c.toEnd();
    expect(c.tS).toBe(100);
    c.setSpeed(99);
    expect(FLEET_SPEEDS[c.speedIndex].simSPerS).toBe(2);
  });

  it('plays a run in about 25 s of wall time at most', () => {
    expect(FLEET_SPEEDS[speedIndexFor(20)].simSPerS).toBe(1);
    expect(FLEET_SPEEDS[speedIndexFor(300)].simSPerS).toBe(10);
    expect(FLEET_SPEEDS[speedIndexFor(1e6)].simSPerS).toBe(100);
  });
});
