/** `bench fleet` (simulated): the JSON the issue asks for, and the points its fleets make, with the scale run cut small. */
import { describe, expect, it } from 'vitest';
import { fleetBench } from '../../../src/sim/bench/fleet.ts';
import { simBackend } from '../../../src/sim/bench/registry.ts';

const FLEET_FIELDS = ['replicasMax', 'p50TtftS', 'p99TtftS', 'sloAttainment', 'gpuHours', 'costUsd', 'lostRequests', 'reroutedRequests'];

describe('bench fleet', () => {
  it('reports fixedSmall, fixedLarge, autoscaled, spot and routing, each fleet with the judging figures', async () => {
    const result = await fleetBench.run({ backend: simBackend, seed: 1, options: { requests: '300' }, log: () => {} });
    const json = result.json as Record<string, Record<string, number> & { roundRobin?: Record<string, number>; prefixAffinity?: Record<string, number> }>;
    for (const name of ['fixedSmall', 'fixedLarge', 'autoscaled', 'spot', 'spotFail']) {
      for (const f of FLEET_FIELDS) expect(Number.isFinite(json[name][f]), `${name}.${f}`).toBe(true);
    }
    // More fixed replicas: a lower P99 TTFT at a higher cost; the autoscaler in between on cost.
    expect(json.fixedLarge.p99TtftS).toBeLessThan(json.fixedSmall.p99TtftS);
    expect(json.fixedLarge.costUsd).toBeGreaterThan(json.fixedSmall.costUsd);
    expect(json.autoscaled.costUsd).toBeLessThan(json.fixedLarge.costUsd);
    expect(json.autoscaled.replicasMax).toBeGreaterThan(json.fixedSmall.replicasMax);
    // A spot loss: re-routed requests are not lost; failing them instead loses exactly those.
    expect(json.spot.lostRequests).toBe(0);
    expect(json.spot.reroutedRequests).toBeGreaterThan(0);
    expect(json.spotFail.reroutedRequests).toBe(0);
    expect(json.spotFail.lostRequests).toBe(json.spot.reroutedRequests);
    // Prefix-affinity routing finds the cached prefix more often than round-robin.
    expect(json.routing.prefixAffinity!.prefixHitRate).toBeGreaterThan(json.routing.roundRobin!.prefixHitRate);
    expect(json.scale.numRequests).toBe(300);
    expect(json.scale.numCompleted).toBe(300);
    expect(result.table).toHaveLength(6);
  }, 120_000);

  it('refuses a backend that is not the simulator', async () => {
    await expect(fleetBench.run({ backend: { ...simBackend, name: 'cpu' }, seed: 1, options: {}, log: () => {} })).rejects.toThrow(/simulated only/);
  });
});
