/**
 * The Guide's fleet figures on real simulated runs: each fleet entry's preset runs through
 * runFleet (seeded, virtual clock, real Engines on the roofline executor) and the figure must
 * report what the results hold — the autoscaled fleet's P99 beside the fixed one's, the re-routed
 * and lost requests of a spot loss, the tenants' bills, the regression and its suspect, the
 * moderation span.
 */
import { describe, expect, it } from 'vitest';
import { runFleet } from '../../../src/sim/fleet/fleet.ts';
import { fleetPreset } from '../../../src/sim/fleet/presets.ts';
import type { FleetPresetId } from '../../../src/sim/fleet/types.ts';
import { GUIDE } from '../../../src/ui/guide/entries.ts';
import { guideFigure, percentile, type FleetSource } from '../../../src/ui/guide/figures.ts';

const cache = new Map<FleetPresetId, FleetSource>();
async function runPreset(id: FleetPresetId): Promise<FleetSource> {
  const hit = cache.get(id);
  if (hit) return hit;
  const p = fleetPreset(id);
  const runs = [];
  for (const r of p.runs) runs.push({ label: r.label, result: await runFleet(r.spec) });
  const src = { presetId: id, runs };
  cache.set(id, src);
  return src;
}

async function figureOf(n: number): Promise<{ text: string; src: FleetSource }> {
  const e = GUIDE[n - 1];
  if (e.target.kind !== 'fleet') throw new Error(`entry ${n} is not a fleet entry`);
  const src = await runPreset(e.target.presetId);
  const f = guideFigure(e, { lab: null, compare: null, calc: null, sim: null, simEarlier: [], fleet: src });
  expect(f?.clock).toBe('SIMULATED');
  // Another preset's results are not this entry's.
  expect(guideFigure(e, { lab: null, compare: null, calc: null, sim: null, simEarlier: [], fleet: { ...src, presetId: 'nope' } })).toBeNull();
  return { text: f!.text, src };
}

const secs = (s: number) => `${s.toFixed(s >= 10 ? 1 : 2)} s`;

describe('fleet figures from simulated runs', () => {
  it('4: two pools never share a batch; consolidation is stated', async () => {
    const { text, src } = await figureOf(4);
    const r = src.runs[0].result;
    expect(text).toContain('0 requests ran on the other model\'s replicas');
    expect(text).toContain(`Separate pools: ${r.consolidation!.separateGpus} GPUs; one shared pool: ${r.consolidation!.sharedGpus} (`);
  }, 60_000);

  it('10: the spike, fixed vs autoscaled', async () => {
    const { text, src } = await figureOf(10);
    const [fixed, auto] = src.runs;
    expect(auto.result.summary.replicasMax).toBeGreaterThan(fixed.result.summary.replicasMax);
    expect(text).toContain(`${fixed.label} — P99 TTFT ${secs(fixed.result.summary.p99TtftS)}`);
    expect(text).toContain(`${auto.label} — P99 TTFT ${secs(auto.result.summary.p99TtftS)}`);
    expect(text).toMatch(/Each new replica took \d+(\.\d+)? s \(median\) to start serving/);
  }, 60_000);

  it('11: every tenant is billed, the quota refusals counted', async () => {
    const { text, src } = await figureOf(11);
    const r = src.runs[0].result;
    for (const t of r.billing.tenants) expect(text).toContain(`${t.tenant} $`);
    expect(r.summary.quotaRejected).toBeGreaterThan(0);
    expect(text).toContain(`${r.summary.quotaRejected} requests refused by the tokens-per-minute quota`);
  }, 60_000);

  it('12: a spot loss re-routes the requests in flight and loses none', async () => {
    const { text, src } = await figureOf(12);
    for (const { label, result } of src.runs) {
      expect(text).toContain(`${label} — replica 1 lost at 40.0 s`);
      expect(text).toContain(`${result.summary.reroutedRequests} request`);
      expect(result.summary.lostRequests).toBe(0);
    }
    expect(src.runs[0].result.summary.reroutedRequests).toBeGreaterThan(0);
  }, 60_000);

  it('13: the P99 regression and its suspect', async () => {
    const { text, src } = await figureOf(13);
    const r = src.runs[0].result;
    const at = r.spec.workload.planted!.atS;
    const t = (before: boolean) => percentile(r.requests.filter((q) => q.ttftS !== undefined && (q.arrivalS < at) === before).map((q) => q.ttftS!), 99);
    expect(t(false)).toBeGreaterThan(t(true));
    expect(text).toContain(`P99 TTFT ${secs(t(true))} for requests before ${secs(at)}, ${secs(t(false))} after.`);
    expect(text).toMatch(new RegExp(`are tenant "${r.spec.workload.planted!.tenant}"'s`));
    expect(text).toMatch(/and (queueing|prefill|moderation|preempted|recompute) is \d+% of their time before the first token/);
  }, 60_000);

  it('15: moderation is a span of TTFT, and stopped streams are billed for what they generated', async () => {
    const { text, src } = await figureOf(15);
    const withMod = src.runs.find((x) => x.result.spec.moderation)!;
    expect(text).toMatch(new RegExp(`^${withMod.label}: moderation took \\d`));
    expect(text).toContain('without it the mean TTFT was');
    expect(text).toContain(`${withMod.result.summary.contentFiltered} streams stopped with finish_reason "content_filter"`);
  }, 60_000);
});
