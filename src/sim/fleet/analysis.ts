/**
 * Reading a fleet run: the slowest requests and what their time went to (the P99 hunt's data:
 * ranking, each request's parts to its first token, its dominant phase, tenant shares of the
 * slowest vs of all), TTFT percentiles over a time window, the hunt's evidence computed from the
 * run, and each preset's point in one sentence with the figures of the runs just made (the Guide's
 * proof). The one owner of these: the fleet view (src/ui/fleet/slowest.ts) adds only its cuts,
 * filters and the time cursor. Pure functions of FleetResult; every figure SIMULATED.
 */
import { quantile } from './autoscaler.ts';
import { BREAKDOWN_KEY, type FleetPresetId, type FleetRequestRecord, type FleetResult, type RequestBreakdown, type RequestPhase } from './types.ts';

/** What "slowest" is measured by: time to the first token, or end to end. */
export type LatencyMetric = 'ttft' | 'e2e';

/** A request's latency by the metric, s (undefined: it never got there). */
export function latencyOf(r: FleetRequestRecord, metric: LatencyMetric): number | undefined {
  return metric === 'ttft' ? r.ttftS : r.e2eS;
}

/** The requests with a finite latency, slowest first (ties: earlier arrival first, then id). A new array. */
export function bySlowest(records: readonly FleetRequestRecord[], metric: LatencyMetric): FleetRequestRecord[] {
  return records
    .filter((r) => Number.isFinite(latencyOf(r, metric)))
    .sort((a, b) => latencyOf(b, metric)! - latencyOf(a, metric)! || a.arrivalS - b.arrivalS || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/** How many the slowest `percent`% of `n` requests is: rounded up, at least one (none of none). */
export function slowestCount(n: number, percent: number): number {
  return n === 0 ? 0 : Math.min(n, Math.max(1, Math.ceil((n * percent) / 100)));
}

/** The slowest `percent`% (default 1, as the hunt's view shows first) of a run's requests by the metric (default TTFT), slowest first. */
export function slowestRequests(records: readonly FleetRequestRecord[], o: { metric?: LatencyMetric; percent?: number } = {}): FleetRequestRecord[] {
  const ranked = bySlowest(records, o.metric ?? 'ttft');
  return ranked.slice(0, slowestCount(ranked.length, o.percent ?? 1));
}

const PHASES = Object.keys(BREAKDOWN_KEY) as RequestPhase[];

/** The sum of a breakdown's parts, s. */
export function breakdownTotalS(b: RequestBreakdown): number {
  let sum = 0;
  for (const p of PHASES) sum += b[BREAKDOWN_KEY[p]];
  return sum;
}

/**
 * The parts of a request's time to its first token: its spans clipped at arrival + TTFT, summed by
 * phase. Without spans, or without a first token, its whole breakdown (what the record has).
 */
export function partsUntilFirstToken(r: FleetRequestRecord): RequestBreakdown {
  if (r.ttftS === undefined || !r.spans || r.spans.length === 0) return r.breakdown;
  const end = r.arrivalS + r.ttftS;
  const out: RequestBreakdown = { queueS: 0, moderationS: 0, prefillS: 0, decodeS: 0, preemptedS: 0, recomputeS: 0 };
  for (const sp of r.spans) {
    const d = Math.min(sp.endS, end) - sp.startS;
    if (d > 0) out[BREAKDOWN_KEY[sp.phase]] += d;
  }
  return out;
}

/** The phase a request spent most of its time in (up to its first token when `untilFirstToken`); the first in phase order on a tie. */
export function dominantPhase(r: FleetRequestRecord, untilFirstToken = false): RequestPhase {
  const parts = untilFirstToken ? partsUntilFirstToken(r) : r.breakdown;
  let best: RequestPhase = PHASES[0];
  for (const p of PHASES) if (parts[BREAKDOWN_KEY[p]] > parts[BREAKDOWN_KEY[best]]) best = p;
  return best;
}

export interface TenantShare {
  tenant: string;
  /** Of the slowest. */
  numSlow: number;
  slowShare: number;
  /** Of all the requests looked at. */
  numAll: number;
  allShare: number;
}

/** Each tenant's share of the slowest beside its share of all requests, most over-represented first. */
export function tenantShares(slowest: readonly FleetRequestRecord[], all: readonly FleetRequestRecord[]): TenantShare[] {
  const slow = new Map<string, number>();
  const counts = new Map<string, number>();
  for (const r of slowest) slow.set(r.tenant, (slow.get(r.tenant) ?? 0) + 1);
  for (const r of all) counts.set(r.tenant, (counts.get(r.tenant) ?? 0) + 1);
  const out: TenantShare[] = [];
  for (const [tenant, numAll] of counts) {
    const numSlow = slow.get(tenant) ?? 0;
    out.push({ tenant, numSlow, slowShare: slowest.length ? numSlow / slowest.length : 0, numAll, allShare: all.length ? numAll / all.length : 0 });
  }
  return out.sort((a, b) => b.slowShare - b.allShare - (a.slowShare - a.allShare) || b.numSlow - a.numSlow || (a.tenant < b.tenant ? -1 : 1));
}

/** How a set of requests splits by dominant phase to the first token, largest first. */
export function phaseShares(records: readonly FleetRequestRecord[]): { phase: RequestPhase; count: number; share: number }[] {
  const counts = new Map<RequestPhase, number>();
  for (const r of records) {
    const p = dominantPhase(r, true);
    counts.set(p, (counts.get(p) ?? 0) + 1);
  }
  return [...counts.entries()].map(([phase, count]) => ({ phase, count, share: count / records.length })).sort((a, b) => b.count - a.count || PHASES.indexOf(a.phase) - PHASES.indexOf(b.phase));
}

/** Of the requests' summed time to the first token, the fraction spent queued (NaN: none has a first token). */
export function queueShareOfTtft(records: readonly FleetRequestRecord[]): number {
  let queued = 0;
  let total = 0;
  for (const r of records) {
    if (r.ttftS === undefined) continue;
    queued += partsUntilFirstToken(r).queueS;
    total += r.ttftS;
  }
  return total > 0 ? queued / total : NaN;
}

/** The p-quantile TTFT of requests arriving in [fromS, toS), s (NaN: none). */
export function ttftQuantileBetween(result: Pick<FleetResult, 'requests'>, fromS: number, toS: number, p: number): number {
  return quantile(
    result.requests.filter((r) => r.ttftS !== undefined && r.arrivalS >= fromS && r.arrivalS < toS).map((r) => r.ttftS!),
    p,
  );
}

/** Before and after the planted change (arrivals before atS, and from atS on). */
export interface BeforeAfter {
  before: number;
  after: number;
}

/** What a run with a planted change shows about it, every figure computed from the run (SIMULATED). */
export interface HuntEvidence {
  tenant: string;
  atS: number;
  /** P99 TTFT of all requests, s. */
  p99TtftS: BeforeAfter;
  /** The planted tenant's median prompt, tokens. */
  promptMedian: BeforeAfter;
  /** The slowest 1% by TTFT over the whole run, and the planted tenant's place in it. */
  numSlowest: number;
  numSlowestPlanted: number;
  /** Its share of the slowest 1%, and of all requests with a first token. */
  slowShare: number;
  allShare: number;
  /** The tenant of the slowest request of all. */
  slowestTenant: string;
  /** Of the slowest 1% that arrived from atS on (all of them, in a clean hunt). */
  numSlowestAfter: number;
  /** The phase most of the planted tenant's slowest spent their time to the first token in. */
  plantedPhase: RequestPhase | null;
  /** The other tenants: the fraction of their time to the first token spent queued, and their P99 TTFT, s. */
  othersQueueShare: BeforeAfter;
  othersP99TtftS: BeforeAfter;
}

/** The hunt's evidence, or null when the run's workload has nothing planted. */
export function huntEvidence(result: FleetResult): HuntEvidence | null {
  const planted = result.spec.workload.planted;
  if (!planted) return null;
  const { tenant, atS } = planted;
  const got = result.requests.filter((r) => r.ttftS !== undefined);
  const split = (rs: readonly FleetRequestRecord[]) => [rs.filter((r) => r.arrivalS < atS), rs.filter((r) => r.arrivalS >= atS)] as const;
  const beforeAfter = (rs: readonly FleetRequestRecord[], f: (xs: readonly FleetRequestRecord[]) => number): BeforeAfter => {
    const [b, a] = split(rs);
    return { before: f(b), after: f(a) };
  };
  const p99 = (xs: readonly FleetRequestRecord[]) => quantile(xs.map((r) => r.ttftS!), 0.99);
  const mine = result.requests.filter((r) => r.tenant === tenant);
  const others = got.filter((r) => r.tenant !== tenant);
  const slowest = slowestRequests(got);
  const plantedSlow = slowest.filter((r) => r.tenant === tenant);
  return {
    tenant,
    atS,
    p99TtftS: beforeAfter(got, p99),
    promptMedian: beforeAfter(mine, (xs) => quantile(xs.map((r) => r.promptTokens), 0.5)),
    numSlowest: slowest.length,
    numSlowestPlanted: plantedSlow.length,
    slowShare: slowest.length ? plantedSlow.length / slowest.length : 0,
    allShare: got.length ? got.filter((r) => r.tenant === tenant).length / got.length : 0,
    slowestTenant: slowest[0]?.tenant ?? '',
    numSlowestAfter: slowest.filter((r) => r.arrivalS >= atS).length,
    plantedPhase: plantedSlow.length ? phaseShares(plantedSlow)[0].phase : null,
    othersQueueShare: beforeAfter(others, queueShareOfTtft),
    othersP99TtftS: beforeAfter(others, p99),
  };
}

const s2 = (v: number) => `${v.toFixed(2)} s`;
const pct = (v: number) => `${(v * 100).toFixed(0)}%`;
const tok = (v: number) => Math.round(v).toLocaleString('en');

/** The hunt's answer in sentences, with the run's figures. */
function huntFinding(e: HuntEvidence): string {
  const first = e.slowestTenant === e.tenant ? ', the very slowest among them' : `; the very slowest is ${e.slowestTenant}'s`;
  return (
    `In this run P99 TTFT went from ${s2(e.p99TtftS.before)} before t = ${e.atS} s to ${s2(e.p99TtftS.after)} after. ` +
    `${e.tenant}'s median prompt went from ${tok(e.promptMedian.before)} to ${tok(e.promptMedian.after)} tokens. Its requests are ${e.numSlowestPlanted} of the ${e.numSlowest} slowest by TTFT (${pct(e.slowShare)}, against ${pct(e.allShare)} of all requests)${first}` +
    `${e.plantedPhase ? `; they spent most of their time to the first token in ${e.plantedPhase}` : ''}. ` +
    `The other tenants spent ${pct(e.othersQueueShare.after)} of their time to the first token queued after t = ${e.atS} s against ${pct(e.othersQueueShare.before)} before, and their P99 TTFT went from ${s2(e.othersP99TtftS.before)} to ${s2(e.othersP99TtftS.after)}: they waited behind the long prefills.`
  );
}

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
      const e = huntEvidence(a);
      if (!e) throw new RangeError('preset p99-hunt: the run has nothing planted in its workload');
      return huntFinding(e);
    }
  }
}
