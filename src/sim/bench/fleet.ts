/**
 * `bench fleet`: the simulated fleet (src/sim/fleet/), seeded, on the presets' deployments.
 *   fixedSmall / fixedLarge / autoscaled   the "10x spike" workload on 2 fixed, 8 fixed, and 2-8
 *                                           autoscaled L4 replicas of Llama-3 8B
 *   spot / spotFail                        a replica of three reclaimed without notice under load:
 *                                           re-routed (recomputed elsewhere) or failed
 *   routing                                round-robin vs prefix-affinity on a shared-prefix workload
 *   scale                                  a 10,000-request fleet (--requests N): requests simulated
 *                                           per wall-clock second of this machine
 * Every figure but the wall times is SIMULATED (roofline cost model on a virtual clock).
 */
import { runFleet } from '../fleet/fleet.ts';
import { fleetPreset, sharedPrefixWorkload, spikeWorkload, BILLING_8B, H100_8B } from '../fleet/presets.ts';
import type { FleetResult, FleetSpec, FleetSummary } from '../fleet/types.ts';
import { formatNum } from './format.ts';
import type { BenchCommand } from './types.ts';

/** The per-fleet JSON: the summary's judging figures, and the wall time of the simulation itself. */
const FIGURE_KEYS = ['numRequests', 'numCompleted', 'replicasMax', 'p50TtftS', 'p99TtftS', 'p99E2eS', 'sloAttainment', 'gpuHours', 'costUsd', 'lostRequests', 'reroutedRequests', 'prefixHitRate', 'durationS'] as const satisfies readonly (keyof FleetSummary)[];
type FleetFigures = Pick<FleetSummary, (typeof FIGURE_KEYS)[number]> & {
  /** Wall-clock seconds this machine took to simulate it (not simulated). */
  wallS: number;
};

async function timed(spec: FleetSpec): Promise<{ result: FleetResult; wallS: number }> {
  const t0 = performance.now();
  const result = await runFleet(spec);
  return { result, wallS: (performance.now() - t0) / 1000 };
}

function figures({ result, wallS }: { result: FleetResult; wallS: number }): FleetFigures {
  const picked = Object.fromEntries(FIGURE_KEYS.map((k) => [k, result.summary[k]])) as Pick<FleetSummary, (typeof FIGURE_KEYS)[number]>;
  return { ...picked, wallS };
}

export const fleetBench: BenchCommand = {
  name: 'fleet',
  description: 'simulated fleet: 10x spike fixed vs autoscaled, spot loss, round-robin vs prefix-affinity routing',
  async run(ctx) {
    if (ctx.backend.name !== 'sim') throw new Error(`fleet: simulated only (--backend sim), got ${ctx.backend.name}`);
    const numScale = Number(ctx.options.requests ?? 10_000);
    if (!(Number.isInteger(numScale) && numScale >= 1 && numScale <= 50_000)) throw new Error('fleet: --requests must be an integer from 1 to 50000');
    const seed = ctx.seed;
    const [fixed, autoscaled] = fleetPreset('spike').runs.map((r) => r.spec);
    const spikeW = spikeWorkload(seed);
    ctx.log(`fleet: spike workload (seed ${seed}), ${spikeW.numRequests} requests; every figure SIMULATED except wall times`);
    const fixedSmall = await timed({ ...fixed, name: 'fixed 2 × L4', workload: spikeW });
    const fixedLarge = await timed({ ...fixed, name: 'fixed 8 × L4', pools: [{ ...fixed.pools[0], replicas: 8 }], workload: spikeW });
    const auto = await timed({ ...autoscaled, workload: spikeW });
    const [spotSpec] = fleetPreset('spot-loss').runs.map((r) => r.spec);
    const spotW = { ...spotSpec.workload, seed };
    const spot = await timed({ ...spotSpec, workload: spotW });
    const spotFail = await timed({ ...spotSpec, name: 'spot loss, fail', workload: spotW, spotLosses: spotSpec.spotLosses!.map((s) => ({ ...s, onLoss: 'fail' as const })) });
    const [rrSpec, paSpec] = fleetPreset('prefix-affinity').runs.map((r) => r.spec);
    const prefixW = sharedPrefixWorkload(seed);
    const rr = await timed({ ...rrSpec, workload: prefixW });
    const pa = await timed({ ...paSpec, workload: prefixW });
    const scaleSpec: FleetSpec = {
      name: `${numScale} requests on 4 × H100`,
      pools: [{ model: 'llama-3-8b', deployment: H100_8B, replicas: 4, router: 'least-outstanding' }],
      workload: { seed, numRequests: numScale, arrival: { kind: 'poisson', ratePerS: 100 }, tenants: [{ name: 'app', weight: 1, model: 'llama-3-8b', promptMedian: 128, outputMedian: 32, lengthSigma: 0.4 }] },
      billing: BILLING_8B,
      sloTtftS: 1,
    };
    const scale = await timed(scaleSpec);
    const routing = {
      workload: `${prefixW.numRequests} requests, 48 shared 1,536-token prefixes, 4 × L4`,
      roundRobin: { prefixHitRate: rr.result.summary.prefixHitRate, p50TtftS: rr.result.summary.p50TtftS, p99TtftS: rr.result.summary.p99TtftS },
      prefixAffinity: { prefixHitRate: pa.result.summary.prefixHitRate, p50TtftS: pa.result.summary.p50TtftS, p99TtftS: pa.result.summary.p99TtftS },
    };
    const json = {
      simulated: true,
      seed,
      fixedSmall: figures(fixedSmall),
      fixedLarge: figures(fixedLarge),
      autoscaled: figures(auto),
      spot: figures(spot),
      spotFail: figures(spotFail),
      routing,
      scale: {
        fleet: scaleSpec.name,
        numRequests: numScale,
        simulatedS: scale.result.summary.durationS,
        wallS: scale.wallS,
        requestsPerWallS: numScale / scale.wallS,
        numCompleted: scale.result.summary.numCompleted,
      },
    };
    const row = (name: string, f: FleetFigures) => [
      name,
      String(f.replicasMax),
      formatNum(f.p50TtftS, 2),
      formatNum(f.p99TtftS, 2),
      formatNum(f.sloAttainment, 3),
      formatNum(f.gpuHours, 3),
      formatNum(f.costUsd, 3),
      String(f.lostRequests),
      String(f.reroutedRequests),
      formatNum(f.wallS, 2),
    ];
    return {
      table: [
        ['fleet', 'max repl', 'p50 TTFT s', 'p99 TTFT s', 'SLO', 'GPU-h', 'USD', 'lost', 'rerouted', 'wall s'],
        row('fixed 2 × L4 (spike)', json.fixedSmall),
        row('fixed 8 × L4 (spike)', json.fixedLarge),
        row('autoscaled 2–8 (spike)', json.autoscaled),
        row('spot loss, re-route', json.spot),
        row('spot loss, fail', json.spotFail),
      ],
      json,
      notes: [
        `routing (${routing.workload}): prefix hit rate round-robin ${formatNum(routing.roundRobin.prefixHitRate, 3)} vs prefix-affinity ${formatNum(routing.prefixAffinity.prefixHitRate, 3)}; P99 TTFT ${formatNum(routing.roundRobin.p99TtftS, 2)} s vs ${formatNum(routing.prefixAffinity.p99TtftS, 2)} s`,
        `scale: ${numScale} requests (${formatNum(scale.result.summary.durationS, 0)} s simulated) in ${formatNum(scale.wallS, 2)} s wall = ${formatNum(numScale / scale.wallS, 0)} requests simulated per wall second`,
        'SLO: TTFT within the spec\'s sloTtftS (2 s for these fleets). Figures are SIMULATED (roofline cost model); wall times are this machine\'s.',
      ],
    };
  },
};
