/**
 * The fleet worker's host (workers/fleet-host.ts) on the real simulation: fleets run one after the
 * other with progress over all of them; an impossible spec is refused with a RangeError naming its
 * run and field; an unknown preset id is refused in words. And, on the same real run, the fleet
 * view's bill at the run's own prices (src/ui/fleet/billing.ts, from the request records) equals
 * the simulation's bill per tenant.
 */
import { describe, expect, it } from 'vitest';
import { fleetApi, runFleets } from '../../../workers/fleet-host.ts';
import type { FleetPresetId, FleetSpec } from '../../../src/sim/fleet/types.ts';
import { isBilledRecord, pricesOf, recomputeBills } from '../../../src/ui/fleet/billing.ts';

/** A small fleet: 2 replicas of Llama-3 8B, two tenants (one with a shared system prompt, one with a quota), moderation that flags. */
function smallSpec(over: Partial<FleetSpec> = {}): FleetSpec {
  return {
    name: 'small',
    pools: [
      {
        model: 'llama-3-8b',
        deployment: { modelId: 'llama-3-8b', hardwareId: 'h100-sxm', tensorParallel: 1, pipelineParallel: 1, maxNumSeqs: 32, maxNumBatchedTokens: 2048, gpuHourUsd: 2.5 },
        replicas: 2,
        router: 'least-outstanding',
      },
    ],
    workload: {
      seed: 7,
      numRequests: 240,
      arrival: { kind: 'poisson', ratePerS: 6 },
      tenants: [
        { name: 'chat', weight: 3, model: 'llama-3-8b', promptMedian: 120, outputMedian: 80, sharedPrefix: { numTokens: 256, numPrefixes: 2 } },
        { name: 'batch', weight: 1, model: 'llama-3-8b', promptMedian: 400, outputMedian: 60 },
      ],
    },
    moderation: { input: { medianMs: 20, sigma: 0.4, concurrency: 4 }, output: { everyTokens: 16, medianMs: 10, sigma: 0.4, concurrency: 4 }, flagRate: 0.1, inputFlagRate: 0.05 },
    billing: { usdPerMPromptTokens: 0.6, usdPerMCachedPromptTokens: 0.15, usdPerMGeneratedTokens: 2.4, tpmQuota: { batch: 20_000 } },
    sloTtftS: 1,
    ...over,
  };
}

describe('the fleet worker host', () => {
  it('runs fleets in order with progress over all of them, and the view bills what the simulation bills', async () => {
    const progress: [number, string][] = [];
    const runs = await runFleets(
      [
        { label: 'least outstanding', spec: smallSpec() },
        { label: 'round robin', spec: smallSpec({ pools: [{ ...smallSpec().pools[0], router: 'round-robin' }] }) },
      ],
      (f, label) => progress.push([f, label]),
    );
    expect(runs.map((r) => r.label)).toEqual(['least outstanding', 'round robin']);
    expect(runs[1].result.spec.pools[0].router).toBe('round-robin');
    expect(progress.length).toBeGreaterThan(2);
    for (let i = 1; i < progress.length; i++) expect(progress[i][0]).toBeGreaterThanOrEqual(progress[i - 1][0]);
    expect(progress[progress.length - 1]).toEqual([1, 'round robin']);
    expect(progress.some(([f, l]) => f < 0.5 && l === 'least outstanding')).toBe(true);

    // The bill at the run's prices, from the records, is the simulation's bill, tenant by tenant.
    const result = runs[0].result;
    const finishes = new Set(result.requests.map((r) => r.finishReason));
    expect(finishes.has('content_filter')).toBe(true);
    expect(result.requests.some((r) => r.cachedPromptTokens > 0)).toBe(true);
    const tenants = result.billing.tenants.map((t) => t.tenant);
    const { bills, totalUsd } = recomputeBills(result.requests, tenants, pricesOf(result.spec.billing));
    bills.forEach((b, i) => {
      const sim = result.billing.tenants[i];
      expect(b.tenant).toBe(sim.tenant);
      expect(b.promptTokens).toBe(sim.promptTokens);
      expect(b.cachedPromptTokens).toBe(sim.cachedPromptTokens);
      expect(b.generatedTokens).toBe(sim.generatedTokens);
      expect(b.usd).toBeCloseTo(sim.usd, 9);
    });
    expect(totalUsd).toBeGreaterThan(0);
    // Billed records are exactly those the simulation charged.
    for (const r of result.requests) expect(isBilledRecord(r)).toBe(r.billedUsd > 0);
  });

  it("refuses an impossible spec with a RangeError naming the run and the field; an unknown preset in words", async () => {
    const tooBig = smallSpec({ pools: [{ ...smallSpec().pools[0], deployment: { ...smallSpec().pools[0].deployment, modelId: 'llama-2-70b' } }] });
    const err = await runFleets([{ label: 'fits', spec: smallSpec({ workload: { ...smallSpec().workload, numRequests: 10 } }) }, { label: 'one GPU for 70B', spec: tooBig }]).catch((e: unknown) => e as Error);
    expect(err).toBeInstanceOf(RangeError);
    expect((err as Error).message).toMatch(/^run "one GPU for 70B" \(small\): pools\[0\]\.deployment: Llama-2 70B does not fit 1× H100/);
    await expect(runFleets([])).rejects.toThrow('no fleet to run');
    await expect(fleetApi.runPreset('nope' as FleetPresetId)).rejects.toThrow(/unknown fleet preset "nope" \(one of spike, /);
  });
});
