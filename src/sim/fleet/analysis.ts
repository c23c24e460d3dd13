/**
 * Reading a fleet run: the slowest requests and what their time went to (the P99 hunt's data),
 * TTFT percentiles over a time window, and each preset's point in one sentence with the figures
 * of the runs just made (the Guide's proof). Pure functions of FleetResult; every figure SIMULATED.
 */
import { quantile } from './autoscaler.ts';
import type { FleetPresetId, FleetRequestRecord, FleetResult, RequestBreakdown, RequestPhase } from './types.ts';

const PHASES: readonly [RequestPhase, keyof RequestBreakdown][] = [
  ['queue', 'queueS'],
  ['moderation', 'moderationS'],
  ['prefill', 'prefillS'],
  ['decode', 'decodeS'],
  ['preempted', 'preemptedS'],
  ['recompute', 'recomputeS'],
];

/** The phase a request spent most of its time in (up to its first token when `untilFirstToken`). */
export function dominantPhase(r: FleetRequestRecord, untilFirstToken = false): RequestPhase {
  let best: RequestPhase = 'queue';
  let bestS = -1;
  for (const [phase, key] of PHASES) {
    const s = untilFirstToken ? phaseTimeBefore(r, phase, r.arrivalS + (r.ttftS ?? r.e2eS ?? 0)) : r.breakdown[key];
    if (s > bestS) {
      best = phase;
      bestS = s;
    }
  }
  return best;
}

/** Seconds of `phase` in the request's spans before time tS. */
function phaseTimeBefore(r: FleetRequestRecord, phase: RequestPhase, tS: number): number {
  let s = 0;
  for (const sp of r.spans ?? []) if (sp.phase === phase) s += Math.max(0, Math.min(sp.endS, tS) - sp.startS);
  return s;
}

/**
 * The slowest requests by TTFT (or E2E): the top `fraction` of those that have one (at least
 * `min`), slowest first.
 */
export function slowestRequests(result: FleetResult, o: { by?: 'ttft' | 'e2e'; fraction?: number; min?: number } = {}): FleetRequestRecord[] {
  const by = o.by ?? 'ttft';
  const key = (r: FleetRequestRecord) => (by === 'ttft' ? r.ttftS : r.e2eS);
  const have = result.requests.filter((r) => key(r) !== undefined);
  const n = Math.min(have.length, Math.max(o.min ?? 10, Math.ceil(have.length * (o.fraction ?? 0.01))));
  return [...have].sort((a, b) => key(b)! - key(a)! || (a.id < b.id ? -1 : 1)).slice(0, n);
}

export interface GroupShare {
  key: string;
  count: number;
  /** count / the group's size. */
  share: number;
}

/** How a set of requests splits by tenant, or by dominant phase (to the first token), largest first. */
export function shares(records: readonly FleetRequestRecord[], by: 'tenant' | 'phase'): GroupShare[] {
  const counts = new Map<string, number>();
  for (const r of records) {
    const k = by === 'tenant' ? r.tenant : dominantPhase(r, true);
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  return [...counts.entries()].map(([key, count]) => ({ key, count, share: count / Math.max(1, records.length) })).sort((a, b) => b.count - a.count || (a.key < b.key ? -1 : 1));
}

/** The p-quantile TTFT of requests arriving in [fromS, toS), s (NaN: none). */
export function ttftQuantileBetween(result: FleetResult, fromS: number, toS: number, p: number): number {
  return quantile(
    result.requests.filter((r) => r.ttftS !== undefined && r.arrivalS >= fromS && r.arrivalS < toS).map((r) => r.ttftS!),
    p,
  );
}

const s2 = (v: number) => `${v.toFixed(2)} s`;
const pct = (v: number) => `${(v * 100).toFixed(0)}%`;

/**
 * The preset's point in one sentence, with the figures of `results` (the preset's runs, in its
 * order). Throws a RangeError when the results do not match the preset's runs.
 */
export function presetFinding(id: FleetPresetId, results: readonly FleetResult[]): string {
  const need = id === 'two-models' || id === 'quotas-billing' || id === 'p99-hunt' ? 1 : 2;
  if (results.length !== need) throw new RangeError(`preset ${id}: ${need} run${need === 1 ? '' : 's'} expected, got ${results.length}`);
  const [a, b] = results;
  switch (id) {
    case 'spike':
      return `In this run the autoscaled fleet (up to ${b.summary.replicasMax} replicas) had a P99 TTFT of ${s2(b.summary.p99TtftS)} against ${s2(a.summary.p99TtftS)} for the fixed ${a.summary.replicasMax}, meeting the SLO for ${pct(b.summary.sloAttainment)} of requests instead of ${pct(a.summary.sloAttainment)}, for ${b.summary.gpuHours.toFixed(3)} GPU-hours instead of ${a.summary.gpuHours.toFixed(3)}.`;
    case 'spot-loss': {
      const rec = (r: FleetResult) => r.requests.reduce((x, q) => x + q.breakdown.recomputeS, 0);
      return `In this run losing a replica without notice re-routed ${a.summary.reroutedRequests} requests and cost ${s2(rec(a))} of recompute; with notice ${b.summary.reroutedRequests} moved and ${s2(rec(b))} were recomputed. Lost requests: ${a.summary.lostRequests} and ${b.summary.lostRequests}.`;
    }
    case 'prefix-affinity':
      return `In this run prefix-affinity served ${pct(b.summary.prefixHitRate)} of prompt tokens from the prefix cache against ${pct(a.summary.prefixHitRate)} for round-robin; P99 TTFT ${s2(b.summary.p99TtftS)} against ${s2(a.summary.p99TtftS)}.`;
    case 'two-models': {
      const c = a.consolidation;
      if (!c) throw new RangeError('preset two-models: the run has no consolidation figures (one pool?)');
      return `In this run the separate pools needed ${c.separateGpus} GPUs at peak; one shared pool would need ${c.sharedGpus}, because requests for different models never share a batch.`;
    }
    case 'moderation':
      return `In this run moderation raised the median TTFT from ${s2(a.summary.p50TtftS)} to ${s2(b.summary.p50TtftS)} and stopped ${b.summary.contentFiltered} requests with content_filter.`;
    case 'quotas-billing': {
      const top = [...a.billing.tenants].sort((x, y) => y.usd - x.usd)[0];
      const refused = a.billing.tenants.filter((t) => t.quotaRejected > 0).map((t) => `${t.tenant} (${t.quotaRejected})`);
      return `In this run ${top.tenant} was billed the most ($${top.usd.toFixed(4)}); the quota refused ${refused.length > 0 ? refused.join(', ') : 'no one'}; the fleet's GPUs cost $${a.billing.costPerMTokensUsd.toFixed(2)} per million generated tokens.`;
    }
    case 'p99-hunt': {
      const planted = a.spec.workload.planted;
      const slow = slowestRequests(a);
      const tenant = shares(slow, 'tenant')[0];
      const phase = shares(slow, 'phase')[0];
      const at = planted?.atS;
      const before = at !== undefined ? ttftQuantileBetween(a, 0, at, 0.99) : NaN;
      const after = at !== undefined ? ttftQuantileBetween(a, at, Infinity, 0.99) : NaN;
      return `In this run P99 TTFT went from ${s2(before)} before t = ${at ?? '?'} s to ${s2(after)} after; ${tenant.count} of the ${slow.length} slowest requests are ${tenant.key}'s, most of their time to the first token in ${phase.key}.`;
    }
  }
}
