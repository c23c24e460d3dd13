import { describe, expect, it } from 'vitest';
import { runFleet } from '../../../../src/sim/fleet/fleet.ts';
import { fleetPreset } from '../../../../src/sim/fleet/presets.ts';
import { quantile } from '../../../../src/sim/fleet/autoscaler.ts';
import { presetFinding, shares, slowestRequests } from '../../../../src/sim/fleet/analysis.ts';
import { FLEET_PRESET_IDS, type FleetPresetId, type FleetResult } from '../../../../src/sim/fleet/types.ts';

async function runs(id: FleetPresetId): Promise<FleetResult[]> {
  const p = fleetPreset(id);
  const out: FleetResult[] = [];
  for (const r of p.runs) out.push(await runFleet(r.spec));
  return out;
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

describe('fleet presets', () => {
  it('every id has a preset with a title, a summary, things to watch and one or two runs', () => {
    for (const id of FLEET_PRESET_IDS) {
      const p = fleetPreset(id);
      expect(p.id).toBe(id);
      expect(p.title.length).toBeGreaterThan(5);
      expect(p.summary.length).toBeGreaterThan(50);
      expect(p.watch.length).toBeGreaterThan(0);
      expect(p.runs.length).toBeGreaterThanOrEqual(1);
      expect(p.runs.length).toBeLessThanOrEqual(2);
    }
    expect(() => fleetPreset('nope' as FleetPresetId)).toThrow(RangeError);
    // A fresh copy each call.
    fleetPreset('spike').runs[0].spec.pools[0].replicas = 99;
    expect(fleetPreset('spike').runs[0].spec.pools[0].replicas).toBe(2);
  });

  it('spike: the autoscaled fleet orders replicas (cold start, then serving) and beats the fixed one on P99 TTFT and SLO', async () => {
    const [fixed, auto] = await runs('spike');
    expect(auto.summary.p99TtftS).toBeLessThan(fixed.summary.p99TtftS * 0.8);
    expect(auto.summary.sloAttainment).toBeGreaterThan(fixed.summary.sloAttainment + 0.2);
    expect(fixed.summary.replicasMax).toBe(2);
    expect(auto.summary.replicasMax).toBeGreaterThan(2);
    const up = auto.autoscalerDecisions.find((d) => d.to > d.from)!;
    expect(up.reason).toMatch(/^queue\/replica [\d.]+ vs target 4\.0: 2 → \d replicas.*cold start 13\.0 s\)$/);
    const ordered = auto.replicas.filter((r) => r.createdS > 0);
    expect(ordered.length).toBeGreaterThan(0);
    for (const r of ordered) {
      expect(r.coldStartS).toBeCloseTo(13.03, 2);
      const states = r.states.map((s) => s.state);
      expect(states.slice(0, 3)).toEqual(['cold', 'warming', 'serving']);
      expect(r.states[2].atS - r.states[0].atS).toBeCloseTo(r.coldStartS, 6);
    }
    // It scales back down after the spike, so it pays for fewer GPU-hours than 8 fixed replicas would.
    expect(auto.autoscalerDecisions.some((d) => d.to < d.from)).toBe(true);
    expect(auto.summary.gpuHours).toBeLessThan((8 * auto.summary.durationS) / 3600);
    const finding = presetFinding('spike', [fixed, auto]);
    expect(finding).toContain(`${auto.summary.p99TtftS.toFixed(2)} s against ${fixed.summary.p99TtftS.toFixed(2)} s`);
  });

  it('spot-loss: without notice requests are re-routed and recomputed; with notice the replica drains first', async () => {
    const [none, notice] = await runs('spot-loss');
    for (const r of [none, notice]) {
      expect(r.summary.lostRequests).toBe(0);
      expect(r.summary.numCompleted).toBe(r.summary.numRequests);
    }
    expect(none.summary.reroutedRequests).toBeGreaterThan(5);
    const recompute = (r: FleetResult) => sum(r.requests.map((q) => q.breakdown.recomputeS));
    expect(recompute(none)).toBeGreaterThan(0);
    expect(recompute(notice)).toBeLessThan(recompute(none));
    const lost = notice.replicas.find((r) => r.id === 'r1')!;
    expect(lost.states.map((s) => s.state)).toEqual(['serving', 'draining', 'lost']);
    // The autoscaler replaces the lost replica.
    expect(none.autoscalerDecisions.some((d) => d.reason.includes('< min 3'))).toBe(true);
    expect(presetFinding('spot-loss', [none, notice])).toContain(`re-routed ${none.summary.reroutedRequests} requests`);
  });

  it('prefix-affinity: a higher prefix-cache hit rate and a lower P99 TTFT than round-robin', async () => {
    const [rr, pa] = await runs('prefix-affinity');
    expect(pa.summary.prefixHitRate).toBeGreaterThan(rr.summary.prefixHitRate + 0.2);
    expect(pa.summary.p99TtftS).toBeLessThan(rr.summary.p99TtftS);
    expect(pa.routerDecisions.some((d) => d.reason.includes('by rendezvous hash'))).toBe(true);
    expect(presetFinding('prefix-affinity', [rr, pa])).toContain(`${(pa.summary.prefixHitRate * 100).toFixed(0)}% of prompt tokens`);
  });

  it('two-models: each pool serves its own model; consolidation figures computed', async () => {
    const [r] = await runs('two-models');
    for (const q of r.requests) for (const id of q.replicas) expect(id.startsWith(`${q.model}/`)).toBe(true);
    const c = r.consolidation!;
    expect(c.separateGpus).toBe(1 + 4);
    expect(c.sharedGpus).toBeGreaterThan(0);
    expect(c.explanation).toContain(`${c.sharedGpus} GPUs`);
    expect(presetFinding('two-models', [r])).toContain(`needed ${c.separateGpus} GPUs at peak; one shared pool would need ${c.sharedGpus}`);
  });

  it('moderation: its span shows in TTFT and E2E, flagged streams end content_filter', async () => {
    const [without, withMod] = await runs('moderation');
    expect(withMod.summary.p50TtftS).toBeGreaterThan(without.summary.p50TtftS + 0.02);
    expect(withMod.summary.contentFiltered).toBeGreaterThan(0);
    expect(without.summary.contentFiltered).toBe(0);
    const served = withMod.requests.filter((q) => q.finishReason === 'stop');
    expect(served.every((q) => q.breakdown.moderationS > 0)).toBe(true);
    expect(withMod.billing.policy).toContain('before the stop');
    expect(presetFinding('moderation', [without, withMod])).toContain(`stopped ${withMod.summary.contentFiltered} requests`);
  });

  it('quotas-billing: the quota refuses one tenant with reasons; bills add up', async () => {
    const [r] = await runs('quotas-billing');
    const refused = r.requests.filter((q) => q.finishReason === 'rejected');
    expect(refused.length).toBeGreaterThan(0);
    expect(new Set(refused.map((q) => q.tenant))).toEqual(new Set(['initech']));
    for (const t of r.billing.tenants) {
      const mine = r.requests.filter((q) => q.tenant === t.tenant);
      expect(t.usd).toBeCloseTo(sum(mine.map((q) => q.billedUsd)), 12);
    }
    expect(r.billing.tenants.find((t) => t.tenant === 'acme')!.cachedPromptTokens).toBeGreaterThan(0);
    expect(r.billing.costPerMTokensUsd).toBeGreaterThan(0);
    expect(presetFinding('quotas-billing', [r])).toMatch(/the quota refused initech \(\d+\)/);
  });

  it('p99-hunt: P99 TTFT regresses after the planted change, and the planted tenant dominates the slowest 1%', async () => {
    const [r] = await runs('p99-hunt');
    const planted = r.spec.workload.planted!;
    const got = r.requests.filter((q) => q.ttftS !== undefined);
    const before = quantile(got.filter((q) => q.arrivalS < planted.atS).map((q) => q.ttftS!), 0.99);
    const after = quantile(got.filter((q) => q.arrivalS >= planted.atS).map((q) => q.ttftS!), 0.99);
    expect(after).toBeGreaterThan(2 * before);
    const slowest = [...got].sort((a, b) => b.ttftS! - a.ttftS!).slice(0, Math.ceil(got.length / 100));
    expect(slowest.filter((q) => q.tenant === planted.tenant).length).toBeGreaterThan(slowest.length / 2);
    expect(slowest.every((q) => q.arrivalS >= planted.atS)).toBe(true);
    expect(planted.description).toContain(planted.tenant);
    // What the slowest-requests view shows leads to it: the tenant first, and the finding names it.
    expect(shares(slowestRequests(r), 'tenant')[0].key).toBe(planted.tenant);
    expect(presetFinding('p99-hunt', [r])).toContain(`are ${planted.tenant}'s`);
  });
});
