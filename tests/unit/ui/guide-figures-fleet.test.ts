/**
 * The Guide's fleet figures on real simulated runs: each fleet entry's preset runs through
 * runFleet (seeded, virtual clock, real Engines on the roofline executor); the figure is the fleet
 * core's finding for those runs (presetFinding) plus what the entry adds from the same results —
 * requests kept within their model's pool, the cold start, the tenants' bills, the failures of a
 * spot loss, the moderation span and what the stopped streams were billed.
 */
import { describe, expect, it } from 'vitest';
import { runFleet } from '../../../src/sim/fleet/fleet.ts';
import { fleetPreset } from '../../../src/sim/fleet/presets.ts';
import { huntEvidence, presetFinding } from '../../../src/sim/fleet/analysis.ts';
import type { FleetPresetId } from '../../../src/sim/fleet/types.ts';
import { GUIDE } from '../../../src/ui/guide/entries.ts';
import { guideFigure, median, type FleetSource } from '../../../src/ui/guide/figures.ts';

const cache = new Map<FleetPresetId, FleetSource>();
async function runPreset(id: FleetPresetId): Promise<FleetSource> {
  const hit = cache.get(id);
  if (hit) return hit;
  const runs = [];
  for (const r of fleetPreset(id).runs) runs.push({ label: r.label, result: await runFleet(r.spec) });
  const src = { presetId: id, runs };
  cache.set(id, src);
  return src;
}

const NONE = { lab: null, compare: null, calc: null, sim: null, simEarlier: [], fleet: null };

/** The entry's figure from its preset's runs; it starts with the core's finding for them (but for the hunt's). */
async function figureOf(n: number): Promise<{ text: string; src: FleetSource }> {
  const e = GUIDE[n - 1];
  if (e.target.kind !== 'fleet') throw new Error(`entry ${n} is not a fleet entry`);
  const src = await runPreset(e.target.presetId);
  const f = guideFigure(e, { ...NONE, fleet: src });
  expect(f?.clock).toBe('SIMULATED');
  // (The hunt's strip keeps the finding back: it names the cause.)
  if (e.target.presetId !== 'p99-hunt') expect(f!.text.startsWith(presetFinding(e.target.presetId, src.runs.map((r) => r.result)))).toBe(true);
  // Another preset's results are not this entry's; runs that are not the preset's own give none.
  expect(guideFigure(e, { ...NONE, fleet: { ...src, presetId: 'prefix-affinity' } })).toBeNull();
  expect(guideFigure(e, { ...NONE, fleet: { ...src, runs: [...src.runs, ...src.runs] } })).toBeNull();
  return { text: f!.text, src };
}

const secs = (s: number) => `${s.toFixed(s >= 10 ? 1 : 2)} s`;

describe('fleet figures from simulated runs', () => {
  it('4: two pools, and no request ran on the other model', async () => {
    const { text, src } = await figureOf(4);
    expect(text).toContain(`0 of ${src.runs[0].result.requests.length} requests ran on a replica of another model.`);
  }, 60_000);

  it('10: the spike, fixed vs autoscaled, and the cold start', async () => {
    const { text, src } = await figureOf(10);
    const cold = src.runs.flatMap((r) => r.result.replicas.filter((x) => x.createdS > 0).map((x) => x.coldStartS));
    expect(cold.length).toBeGreaterThan(0);
    expect(text).toContain(`Each new replica took ${secs(median(cold))} (median) from the order to serving.`);
  }, 60_000);

  it('11: every tenant is billed', async () => {
    const { text, src } = await figureOf(11);
    for (const t of src.runs[0].result.billing.tenants) expect(text).toContain(`${t.tenant} $${t.usd.toFixed(4)} (${t.promptTokens.toLocaleString('en-US')} prompt`);
  }, 60_000);

  it('12: a spot loss loses no request; the failures are counted', async () => {
    const { text, src } = await figureOf(12);
    for (const { label, result } of src.runs) {
      expect(result.summary.lostRequests).toBe(0);
      expect(text).toContain(`${label} — ${result.summary.numCompleted} of ${result.summary.numRequests} completed, ${result.requests.filter((q) => q.finishReason === 'failed').length} failed with a reason`);
    }
    expect(src.runs[0].result.summary.reroutedRequests).toBeGreaterThan(0);
  }, 60_000);

  it('13: the P99 regression and its suspect', async () => {
    const { text, src } = await figureOf(13);
    const e = huntEvidence(src.runs[0].result)!;
    expect(e.p99TtftS.after).toBeGreaterThan(e.p99TtftS.before);
    expect(text).toContain(`P99 TTFT went from ${e.p99TtftS.before.toFixed(2)} s before t = 60 s to ${e.p99TtftS.after.toFixed(2)} s after`);
    expect(text).toContain(`${e.numSlowestAfter} of the ${e.numSlowest} slowest requests arrived after t = 60 s`);
    // The strip does not give the hunt away: the planted tenant is not named.
    expect(text).not.toContain(e.tenant);
  }, 60_000);

  it('15: moderation is a span of TTFT, and the stopped streams are billed for what they generated', async () => {
    const { text, src } = await figureOf(15);
    const r = src.runs.find((x) => x.result.spec.moderation)!.result;
    const filtered = r.requests.filter((q) => q.finishReason === 'content_filter');
    expect(filtered.length).toBeGreaterThan(0);
    expect(text).toMatch(/Moderation is \d+(\.\d)? ms of a mean TTFT of \d+(\.\d)? ms \(\d+%\)/);
    expect(text).toContain(`billed $${filtered.reduce((s, q) => s + q.billedUsd, 0).toFixed(4)} together`);
  }, 60_000);
});
