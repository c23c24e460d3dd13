import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { runFleet } from '../../../../src/sim/fleet/fleet.ts';
import type { FleetResult, FleetSpec, PoolSpec } from '../../../../src/sim/fleet/types.ts';
import { H100_8B, L4_8B, H100X4_70B, BILLING_8B } from '../../../../src/sim/fleet/presets.ts';
import { requestUsd } from '../../../../src/sim/fleet/billing.ts';
import { planFleetWorkload } from '../../../../src/sim/fleet/workload.ts';

const pool = (model: string, replicas: number, extra: Partial<PoolSpec> = {}): PoolSpec => ({ model, deployment: { ...L4_8B, modelId: 'llama-3-8b' }, replicas, router: 'least-outstanding', ...extra });

function small(extra: Partial<FleetSpec> = {}, numRequests = 120): FleetSpec {
  return {
    name: 'test',
    pools: [pool('llama-3-8b', 2)],
    workload: { seed: 1, numRequests, arrival: { kind: 'poisson', ratePerS: 6 }, tenants: [{ name: 'a', weight: 1, model: 'llama-3-8b', promptMedian: 128, outputMedian: 24 }] },
    billing: BILLING_8B,
    sloTtftS: 1,
    ...extra,
  };
}

/** Every request ended once, with parts adding up to its E2E and its spans contiguous. */
function checkAccounting(r: FleetResult): void {
  expect(r.requests.length).toBe(r.spec.workload.numRequests);
  expect(new Set(r.requests.map((q) => q.id)).size).toBe(r.requests.length);
  for (const q of r.requests) {
    expect(['stop', 'length', 'content_filter', 'rejected', 'failed', 'abort']).toContain(q.finishReason);
    if (!['stop', 'length'].includes(q.finishReason)) expect(q.reason, `${q.id} ${q.finishReason}`).toBeTruthy();
    const sum = Object.values(q.breakdown).reduce((a, b) => a + b, 0);
    expect(sum).toBeCloseTo(q.e2eS!, 9);
    let t = q.arrivalS;
    for (const s of q.spans!) {
      expect(s.startS).toBeCloseTo(t, 9);
      expect(s.endS).toBeGreaterThanOrEqual(s.startS);
      t = s.endS;
    }
    expect(t).toBeCloseTo(q.arrivalS + q.e2eS!, 9);
    for (const id of q.replicas) expect(r.replicas.find((x) => x.id === id)?.model).toBe(q.model);
  }
  expect(r.summary.lostRequests).toBe(r.requests.filter((q) => q.finishReason === 'failed').length);
}

describe('runFleet', () => {
  it('is deterministic: the same spec gives the same result', async () => {
    const spec = small({ moderation: { input: { medianMs: 20, sigma: 0.5, concurrency: 2 }, output: { everyTokens: 8, medianMs: 10, sigma: 0.5, concurrency: 2 }, flagRate: 0.1, inputFlagRate: 0.05 } });
    const a = await runFleet(spec);
    const b = await runFleet(structuredClone(spec));
    expect(JSON.stringify(b)).toBe(JSON.stringify(a));
    const c = await runFleet({ ...spec, workload: { ...spec.workload, seed: 2 } });
    expect(JSON.stringify(c.summary)).not.toBe(JSON.stringify(a.summary));
    checkAccounting(a);
  });

  it('completes every request with TTFTs, billing and GPU-hours that agree', async () => {
    const r = await runFleet(small());
    checkAccounting(r);
    expect(r.summary.numCompleted).toBe(120);
    for (const q of r.requests) {
      expect(q.ttftS).toBeGreaterThan(0);
      expect(q.outputTokens).toBeGreaterThan(0);
      expect(q.billedUsd).toBeCloseTo(requestUsd(BILLING_8B, q.promptTokens, q.cachedPromptTokens, q.outputTokens), 15);
    }
    const bill = r.billing.tenants[0];
    expect(bill.usd).toBeCloseTo(r.requests.reduce((a, q) => a + q.billedUsd, 0), 12);
    expect(bill.generatedTokens).toBe(r.requests.reduce((a, q) => a + q.outputTokens, 0));
    // Two replicas of one L4 for the whole run.
    expect(r.summary.gpuHours).toBeCloseTo((2 * r.summary.durationS) / 3600, 9);
    expect(r.summary.costUsd).toBeCloseTo(r.summary.gpuHours * 0.8, 12);
    expect(r.routerDecisions.length).toBe(120);
    expect(r.routerDecisionsTotal).toBe(120);
    expect(r.series.tS.length).toBeGreaterThan(10);
  });

  it('keeps models apart: a request for one model never reaches the other pool', async () => {
    const spec = small({
      pools: [pool('small', 1, { deployment: H100_8B }), pool('big', 1, { deployment: H100X4_70B })],
      workload: {
        seed: 4,
        numRequests: 150,
        arrival: { kind: 'poisson', ratePerS: 8 },
        tenants: [
          { name: 'a', weight: 1, model: 'small', promptMedian: 128, outputMedian: 24 },
          { name: 'b', weight: 1, model: 'big', promptMedian: 128, outputMedian: 24 },
        ],
      },
    });
    const r = await runFleet(spec);
    checkAccounting(r);
    expect(r.requests.filter((q) => q.model === 'big').length).toBeGreaterThan(40);
    for (const q of r.requests) for (const id of q.replicas) expect(id.startsWith(`${q.model}/`)).toBe(true);
    for (const d of r.routerDecisions) expect(d.replica.startsWith(`${d.model}/`)).toBe(true);
    const c = r.consolidation!;
    expect(c.separateGpus).toBe(1 + 4);
    expect(c.sharedGpus % 4).toBe(0); // 157 GB of weights on 80 GB devices: TP 4 replicas
    expect(c.explanation).toContain('cannot batch');
  });

  it('refuses impossible specs with a RangeError naming the field', async () => {
    const bad: [Partial<FleetSpec>, RegExp][] = [
      [{ pools: [pool('m', 1, { deployment: { ...L4_8B, modelId: 'gpt-9' } })] }, /^pools\[0\]\.deployment\.modelId: unknown model "gpt-9"/],
      [{ pools: [pool('m', 1, { deployment: { ...L4_8B, hardwareId: 'tpu' } })] }, /^pools\[0\]\.deployment\.hardwareId/],
      [{ pools: [pool('llama-3-8b', 1, { deployment: { ...L4_8B, modelId: 'llama-3-70b' } })] }, /^pools\[0\]\.deployment: Llama-3 70B does not fit 1× L4/],
      [{ pools: [pool('llama-3-8b', 2, { autoscaler: { metric: 'queue-depth', target: 4, intervalS: 5, minReplicas: 4, maxReplicas: 2, scaleDownCooldownS: 0, loadBytesPerS: 1e9, warmupS: 0 } })] }, /^pools\[0\]\.autoscaler\.minReplicas: min 4 > max 2/],
      [{ pools: [pool('other', 1)] }, /^workload\.tenants\[0\]\.model: no pool serves "llama-3-8b"/],
      [{ spotLosses: [{ atS: 5, model: 'llama-3-8b', replica: 2, noticeS: 0, onLoss: 'reroute' }] }, /^spotLosses\[0\]\.replica: must be <= 1/],
      [{ spotLosses: [{ atS: 5, model: 'llama-3-8b', replica: 0, noticeS: 9, onLoss: 'reroute' }] }, /^spotLosses\[0\]\.noticeS/],
      [{ billing: { ...BILLING_8B, tpmQuota: { ghost: 10 } } }, /^billing\.tpmQuota\.ghost/],
      [{ sloTtftS: 0 }, /^sloTtftS/],
    ];
    for (const [change, message] of bad) await expect(runFleet(small(change))).rejects.toThrow(message);
    await expect(runFleet(small({}, 0))).rejects.toThrow(/^workload\.numRequests/);
    await expect(runFleet(small({}, 0))).rejects.toBeInstanceOf(RangeError);
  });

  it('spot loss without notice, re-route: running requests continue elsewhere, their redo counted as recompute', async () => {
    const r = await runFleet(small({ pools: [pool('llama-3-8b', 3)], spotLosses: [{ atS: 8, model: 'llama-3-8b', replica: 0, noticeS: 0, onLoss: 'reroute' }] }));
    checkAccounting(r);
    const moved = r.requests.filter((q) => q.replicas.length > 1);
    expect(moved.length).toBeGreaterThan(0);
    expect(r.summary.reroutedRequests).toBe(moved.length);
    expect(r.summary.lostRequests).toBe(0);
    // The stream continues where it stopped: the planned output, no token more or less.
    const plans = planFleetWorkload(r.spec.workload, () => 8192);
    for (const q of moved) {
      expect(q.replicas[0]).toBe('r0');
      expect(q.finishReason).toBe('stop');
      expect(q.outputTokens).toBe(plans[Number(q.id.slice(1))].outputTokens);
    }
    expect(moved.some((q) => q.breakdown.recomputeS > 0)).toBe(true);
    const lost = r.replicas.find((x) => x.id === 'r0')!;
    expect(lost.endedS).toBe(8);
    expect(lost.states.at(-1)!.state).toBe('lost');
    expect(lost.states.at(-1)!.reason).toMatch(/without notice: \d+ requests re-routed/);
  });

  it('spot loss with onLoss fail: its requests fail with the reason, counted as lost', async () => {
    const r = await runFleet(small({ pools: [pool('llama-3-8b', 3)], spotLosses: [{ atS: 8, model: 'llama-3-8b', replica: 0, noticeS: 0, onLoss: 'fail' }] }));
    checkAccounting(r);
    const failed = r.requests.filter((q) => q.finishReason === 'failed');
    expect(failed.length).toBeGreaterThan(0);
    expect(r.summary.lostRequests).toBe(failed.length);
    for (const q of failed) {
      expect(q.reason).toBe('replica r0 lost (spot reclaim, no notice); onLoss is fail');
      expect(q.billedUsd).toBe(0);
    }
  });

  it('spot loss with notice: the replica drains, takes nothing new, and loses nothing', async () => {
    const r = await runFleet(small({ pools: [pool('llama-3-8b', 3)], spotLosses: [{ atS: 15, model: 'llama-3-8b', replica: 0, noticeS: 10, onLoss: 'fail' }] }));
    checkAccounting(r);
    expect(r.summary.lostRequests).toBe(0);
    const r0 = r.replicas.find((x) => x.id === 'r0')!;
    expect(r0.states.map((s) => s.state)).toEqual(['serving', 'draining', 'lost']);
    expect(r.routerDecisions.filter((d) => d.replica === 'r0' && d.atS >= 5).length).toBe(0);
  });

  it('with no replica left and no autoscaler, requests fail with the reason', async () => {
    const r = await runFleet(small({ pools: [pool('llama-3-8b', 1)], spotLosses: [{ atS: 5, model: 'llama-3-8b', replica: 0, noticeS: 0, onLoss: 'reroute' }] }));
    checkAccounting(r);
    const failed = r.requests.filter((q) => q.finishReason === 'failed');
    expect(failed.length).toBeGreaterThan(50);
    expect(failed.every((q) => q.reason === 'no replica of llama-3-8b is serving or starting (all lost, no autoscaler)')).toBe(true);
  });

  it('moderation: input check before routing, output flags stop the stream (content_filter), billed as stated', async () => {
    const r = await runFleet(small({ moderation: { input: { medianMs: 30, sigma: 0.3, concurrency: 2 }, output: { everyTokens: 8, medianMs: 20, sigma: 0.3, concurrency: 4 }, flagRate: 0.2, inputFlagRate: 0.1 } }));
    checkAccounting(r);
    const input = r.requests.filter((q) => q.reason?.startsWith('input flagged'));
    const output = r.requests.filter((q) => q.reason?.startsWith('output flagged'));
    expect(input.length).toBeGreaterThan(3);
    expect(output.length).toBeGreaterThan(5);
    for (const q of input) {
      expect(q.finishReason).toBe('content_filter');
      expect(q.outputTokens).toBe(0);
      expect(q.billedUsd).toBe(0);
      expect(q.replicas).toEqual([]);
      expect(q.breakdown.moderationS).toBeCloseTo(q.e2eS!, 9);
    }
    for (const q of output) {
      expect(q.finishReason).toBe('content_filter');
      // Its flagged chunk's verdict is when the stream stopped (at the next step boundary of its replica).
      const flagged = q.moderationChecks!.filter((c) => c.flagged);
      expect(flagged.length).toBe(1);
      expect(q.arrivalS + q.e2eS!).toBeGreaterThanOrEqual(flagged[0].doneS - 1e-9);
      expect(flagged[0].upToToken! <= q.outputTokens).toBe(true);
      expect(q.billedUsd).toBeCloseTo(requestUsd(BILLING_8B, q.promptTokens, q.cachedPromptTokens, q.outputTokens), 15);
    }
    // Stopped early: fewer tokens than those that completed, on average.
    const done = r.requests.filter((q) => q.finishReason === 'stop');
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    expect(mean(output.map((q) => q.outputTokens))).toBeLessThan(mean(done.map((q) => q.outputTokens)) * 1.5);
    // Every request that reached a replica passed the input check first: its first span is moderation.
    for (const q of done) {
      expect(q.spans![0].phase).toBe('moderation');
      expect(q.breakdown.moderationS).toBeGreaterThan(0);
      // Input check, then output chunks of 8 covering every token; the response ends when both the
      // engine (its EOS step) and the last verdict are done, and the wait for that verdict is moderation.
      const c = q.moderationChecks!;
      expect(c[0].stage).toBe('input');
      expect(c.slice(1).map((x) => x.upToToken)).toEqual(Array.from({ length: Math.ceil(q.outputTokens / 8) }, (_, i) => Math.min(q.outputTokens, 8 * (i + 1))));
      const lastVerdict = Math.max(...c.map((x) => x.doneS));
      const end = q.arrivalS + q.e2eS!;
      expect(end).toBeGreaterThanOrEqual(lastVerdict - 1e-9);
      const tail = q.spans!.at(-1)!;
      if (tail.phase === 'moderation') expect(tail.endS).toBeCloseTo(lastVerdict, 9);
      else expect(tail.phase).toBe('decode');
      for (const x of c) expect(x.startS).toBeGreaterThanOrEqual(x.submitS);
    }
    expect(r.billing.policy).toContain('content_filter');
  });

  it('quotas refuse requests over a tenant\'s tokens per minute, with the reason', async () => {
    const r = await runFleet(small({ billing: { ...BILLING_8B, tpmQuota: { a: 5000 } } }));
    checkAccounting(r);
    const refused = r.requests.filter((q) => q.finishReason === 'rejected');
    expect(refused.length).toBeGreaterThan(10);
    expect(r.summary.quotaRejected).toBe(refused.length);
    expect(r.billing.tenants[0].quotaRejected).toBe(refused.length);
    expect(refused[0].reason).toMatch(/^tenant a: \d+ tokens reserved in the last minute \+ \d+ \(prompt \+ max_tokens\) > quota 5000 tokens\/min \(429\)$/);
  });

  it('schedulerPolicy priority: under load the tenant with the lower priority value waits less', async () => {
    const two = (policy: 'fcfs' | 'priority') =>
      small({
        pools: [pool('llama-3-8b', 1, { schedulerPolicy: policy })],
        workload: {
          seed: 6,
          numRequests: 200,
          arrival: { kind: 'poisson', ratePerS: 20 },
          tenants: [
            { name: 'gold', weight: 1, model: 'llama-3-8b', promptMedian: 128, outputMedian: 48, priority: 0 },
            { name: 'bronze', weight: 1, model: 'llama-3-8b', promptMedian: 128, outputMedian: 48, priority: 5 },
          ],
        },
      });
    const meanQueue = (r: FleetResult, tenant: string) => {
      const xs = r.requests.filter((q) => q.tenant === tenant).map((q) => q.breakdown.queueS);
      return xs.reduce((a, b) => a + b, 0) / xs.length;
    };
    const fcfs = await runFleet(two('fcfs'));
    const prio = await runFleet(two('priority'));
    checkAccounting(prio);
    expect(meanQueue(prio, 'gold')).toBeLessThan(meanQueue(prio, 'bronze') / 2);
    expect(meanQueue(fcfs, 'gold')).toBeGreaterThan(meanQueue(fcfs, 'bronze') / 2);
    await expect(runFleet(small({ pools: [pool('llama-3-8b', 1, { schedulerPolicy: 'edf' as 'fcfs' })] }))).rejects.toThrow(/^pools\[0\]\.schedulerPolicy/);
  });

  it('runs end to end with every router policy and every autoscaler metric', async () => {
    for (const router of ['round-robin', 'least-outstanding', 'least-kv', 'prefix-affinity'] as const) {
      const r = await runFleet(small({ pools: [pool('llama-3-8b', 3, { router })] }, 60));
      checkAccounting(r);
      expect(r.summary.numCompleted).toBe(60);
      expect(new Set(r.routerDecisions.map((d) => d.replica)).size).toBeGreaterThan(1);
      expect(r.routerDecisions.every((d) => d.policy === router && d.reason.length > 0)).toBe(true);
    }
    for (const [metric, target] of [['queue-depth', 1], ['kv-usage', 0.01], ['ttft-slo', 0.05]] as const) {
      const r = await runFleet(
        small({
          pools: [pool('llama-3-8b', 1, { autoscaler: { metric, target, intervalS: 2, minReplicas: 1, maxReplicas: 3, scaleDownCooldownS: 10, loadBytesPerS: 8e9, warmupS: 1 } })],
          workload: { seed: 2, numRequests: 200, arrival: { kind: 'poisson', ratePerS: 20 }, tenants: [{ name: 'a', weight: 1, model: 'llama-3-8b', promptMedian: 128, outputMedian: 48 }] },
        }),
      );
      checkAccounting(r);
      const up = r.autoscalerDecisions.find((d) => d.to > d.from);
      expect(up, metric).toBeDefined();
      expect(up!.metric).toBe(metric);
      expect(r.summary.replicasMax).toBeGreaterThan(1);
    }
  });

  it('maxDurationS: what is still in flight or yet to arrive then ends abort, with the reason', async () => {
    const r = await runFleet(small({ maxDurationS: 6 }));
    checkAccounting(r);
    const aborted = r.requests.filter((q) => q.finishReason === 'abort');
    expect(aborted.length).toBeGreaterThan(50);
    for (const q of aborted) {
      expect(q.billedUsd).toBe(0);
      if (q.arrivalS <= 6) {
        expect(q.reason).toMatch(/^still in flight when the simulation stopped at 6 s/);
        expect(q.arrivalS + q.e2eS!).toBeCloseTo(6, 9);
      } else {
        expect(q.reason).toMatch(/^due at [\d.]+ s, after the simulation stopped at 6 s: never sent$/);
        expect(q.e2eS).toBe(0);
      }
    }
    expect(aborted.some((q) => q.arrivalS <= 6)).toBe(true);
    expect(aborted.some((q) => q.arrivalS > 6)).toBe(true);
    expect(r.summary.durationS).toBeCloseTo(6, 9);
  });

  it('stops when the signal aborts', async () => {
    const ctl = new AbortController();
    ctl.abort(new Error('stop now'));
    await expect(runFleet(small(), { signal: ctl.signal })).rejects.toThrow('stop now');
  });

  it('simulates a fleet of 10,000 requests', async () => {
    const progress: number[] = [];
    const r = await runFleet(
      {
        name: '10k',
        pools: [{ model: 'llama-3-8b', deployment: H100_8B, replicas: 4, router: 'least-outstanding' }],
        workload: { seed: 9, numRequests: 10_000, arrival: { kind: 'poisson', ratePerS: 100 }, tenants: [{ name: 'a', weight: 1, model: 'llama-3-8b', promptMedian: 128, outputMedian: 32, lengthSigma: 0.4 }] },
        billing: BILLING_8B,
        sloTtftS: 1,
      },
      { onProgress: (f) => progress.push(f) },
    );
    expect(r.summary.numCompleted).toBe(10_000);
    expect(progress.at(-1)).toBe(1);
    // It yielded to the event loop along the way (a page stays responsive), reporting progress each time.
    expect(progress.length).toBeGreaterThan(3);
    for (let i = 1; i < progress.length; i++) expect(progress[i]).toBeGreaterThanOrEqual(progress[i - 1]);
    expect(r.routerDecisions.length).toBeLessThan(10_000);
    expect(r.routerDecisionsTotal).toBe(10_000);
  });

  it('property: whatever the fleet and its spot losses, every request ends exactly once, none silently', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          seed: fc.integer({ min: 0, max: 1000 }),
          replicas: fc.integer({ min: 1, max: 3 }),
          autoscale: fc.boolean(),
          moderation: fc.boolean(),
          losses: fc.array(fc.record({ atS: fc.double({ min: 0, max: 12, noNaN: true }), notice: fc.double({ min: 0, max: 1, noNaN: true }), reroute: fc.boolean(), which: fc.nat() }), { maxLength: 3 }),
        }),
        async (c) => {
          const spec = small(
            {
              pools: [
                pool('llama-3-8b', c.replicas, {
                  ...(c.autoscale ? { autoscaler: { metric: 'queue-depth' as const, target: 2, intervalS: 2, minReplicas: 1, maxReplicas: 4, scaleDownCooldownS: 4, loadBytesPerS: 8e9, warmupS: 1 } } : {}),
                }),
              ],
              spotLosses: c.losses.map((l) => ({ atS: l.atS, model: 'llama-3-8b', replica: l.which % c.replicas, noticeS: l.notice * l.atS, onLoss: l.reroute ? ('reroute' as const) : ('fail' as const) })),
              ...(c.moderation ? { moderation: { input: { medianMs: 10, sigma: 0.3, concurrency: 2 }, output: { everyTokens: 6, medianMs: 10, sigma: 0.3, concurrency: 2 }, flagRate: 0.1, inputFlagRate: 0.05 } } : {}),
            },
            40,
          );
          spec.workload.seed = c.seed;
          const r = await runFleet(spec);
          checkAccounting(r);
          for (const q of r.requests) if (q.finishReason === 'abort') throw new Error(`${q.id} aborted: ${q.reason}`);
        },
      ),
      { numRuns: 25, seed: 42 },
    );
  });
});
