/**
 * The P99 hunt's data: the slowest requests of a run by TTFT or end-to-end time, filtered by
 * tenant and arrival time and limited to what had happened by the time cursor, with the shares
 * that point at a cause (a tenant's share of the slowest vs of all requests; when the slowest
 * arrived). Pure.
 */
import type { FleetRequestRecord, RequestBreakdown, RequestPhase } from '../../sim/fleet/types.ts';

export type LatencyMetric = 'ttft' | 'e2e';

/** The slowest 1% (at least one) or the top n. */
export type SlowestCut = { kind: 'percent'; percent: number } | { kind: 'top'; n: number };

export interface SlowestQuery {
  metric: LatencyMetric;
  cut: SlowestCut;
  /** Only this tenant's requests (null: all). */
  tenant: string | null;
  /** Only requests that arrived in [fromS, toS) (null: no bound). */
  fromS: number | null;
  toS: number | null;
  /** Only what had happened by this time: the first token (ttft) or the end (e2e) at or before it (null: the whole run). */
  untilS: number | null;
}

/** A request's latency by the metric, s (undefined: it never got there). */
export function latencyOf(r: FleetRequestRecord, metric: LatencyMetric): number | undefined {
  return metric === 'ttft' ? r.ttftS : r.e2eS;
}

/** The requests the query looks at: with a latency, in the tenant and arrival window, done by untilS. */
export function eligibleRequests(requests: readonly FleetRequestRecord[], q: Omit<SlowestQuery, 'cut'>): FleetRequestRecord[] {
  return requests.filter((r) => {
    const lat = latencyOf(r, q.metric);
    if (lat === undefined || !Number.isFinite(lat)) return false;
    if (q.tenant !== null && r.tenant !== q.tenant) return false;
    if (q.fromS !== null && r.arrivalS < q.fromS) return false;
    if (q.toS !== null && r.arrivalS >= q.toS) return false;
    if (q.untilS !== null && r.arrivalS + lat > q.untilS) return false;
    return true;
  });
}

/** How many the cut keeps of `numEligible`: ceil(percent%) with at least one, or n. */
export function cutSize(cut: SlowestCut, numEligible: number): number {
  if (numEligible === 0) return 0;
  if (cut.kind === 'top') return Math.min(numEligible, Math.max(1, Math.floor(cut.n)));
  return Math.min(numEligible, Math.max(1, Math.ceil((numEligible * cut.percent) / 100)));
}

/** The slowest requests, slowest first (ties: earlier arrival first, then id). */
export function slowestRequests(requests: readonly FleetRequestRecord[], q: SlowestQuery): { slowest: FleetRequestRecord[]; numEligible: number } {
  const eligible = eligibleRequests(requests, q);
  const sorted = eligible.sort((a, b) => latencyOf(b, q.metric)! - latencyOf(a, q.metric)! || a.arrivalS - b.arrivalS || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return { slowest: sorted.slice(0, cutSize(q.cut, sorted.length)), numEligible: sorted.length };
}

export interface TenantShare {
  tenant: string;
  /** Of the slowest. */
  numSlow: number;
  slowShare: number;
  /** Of every eligible request. */
  numAll: number;
  allShare: number;
}

/** Each tenant's share of the slowest beside its share of all eligible requests, most over-represented first. */
export function tenantShares(slowest: readonly FleetRequestRecord[], eligible: readonly FleetRequestRecord[]): TenantShare[] {
  const slow = new Map<string, number>();
  const all = new Map<string, number>();
  for (const r of slowest) slow.set(r.tenant, (slow.get(r.tenant) ?? 0) + 1);
  for (const r of eligible) all.set(r.tenant, (all.get(r.tenant) ?? 0) + 1);
  const out: TenantShare[] = [];
  for (const [tenant, numAll] of all) {
    const numSlow = slow.get(tenant) ?? 0;
    out.push({ tenant, numSlow, slowShare: slowest.length ? numSlow / slowest.length : 0, numAll, allShare: eligible.length ? numAll / eligible.length : 0 });
  }
  return out.sort((a, b) => b.slowShare - b.allShare - (a.slowShare - a.allShare) || b.numSlow - a.numSlow || (a.tenant < b.tenant ? -1 : 1));
}

/** Arrival-time bins of [0, durationS): how many of all eligible and of the slowest arrived in each. */
export function arrivalBins(slowest: readonly FleetRequestRecord[], eligible: readonly FleetRequestRecord[], durationS: number, numBins: number): { fromS: number; toS: number; numAll: number; numSlow: number }[] {
  const n = Math.max(1, Math.floor(numBins));
  const width = durationS > 0 ? durationS / n : 1;
  const bins = Array.from({ length: n }, (_, i) => ({ fromS: i * width, toS: (i + 1) * width, numAll: 0, numSlow: 0 }));
  const binOf = (t: number) => Math.min(n - 1, Math.max(0, Math.floor(t / width)));
  for (const r of eligible) bins[binOf(r.arrivalS)].numAll++;
  for (const r of slowest) bins[binOf(r.arrivalS)].numSlow++;
  return bins;
}

/** The breakdown's parts in the order a request lives them, with their labels. */
export const BREAKDOWN_PARTS: readonly { key: keyof RequestBreakdown; label: string }[] = [
  { key: 'queueS', label: 'queue' },
  { key: 'moderationS', label: 'moderation' },
  { key: 'prefillS', label: 'prefill' },
  { key: 'preemptedS', label: 'preempted' },
  { key: 'recomputeS', label: 'recompute' },
  { key: 'decodeS', label: 'decode' },
];

/** The sum of a breakdown's parts, s. */
export function breakdownTotalS(b: RequestBreakdown): number {
  let sum = 0;
  for (const p of BREAKDOWN_PARTS) sum += b[p.key];
  return sum;
}

/** The part that took longest (the first one on a tie). */
export function dominantPart(b: RequestBreakdown): (typeof BREAKDOWN_PARTS)[number] {
  let best = BREAKDOWN_PARTS[0];
  for (const p of BREAKDOWN_PARTS) if (b[p.key] > b[best.key]) best = p;
  return best;
}

const PHASE_PART: Record<RequestPhase, keyof RequestBreakdown> = {
  queue: 'queueS',
  moderation: 'moderationS',
  prefill: 'prefillS',
  decode: 'decodeS',
  preempted: 'preemptedS',
  recompute: 'recomputeS',
};

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
    if (d > 0) out[PHASE_PART[sp.phase]] += d;
  }
  return out;
}

/** The median of a list (NaN when empty). */
function median(values: number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * A tenant's median prompt tokens per arrival-time bin of [0, durationS) (NaN: no request of it
 * arrived in that bin): how its prompts changed over the run, whatever the metric or the cursor.
 */
export function promptMediansByArrival(requests: readonly FleetRequestRecord[], tenant: string, durationS: number, numBins: number): number[] {
  const n = Math.max(1, Math.floor(numBins));
  const width = durationS > 0 ? durationS / n : 1;
  const bins: number[][] = Array.from({ length: n }, () => []);
  for (const r of requests) if (r.tenant === tenant) bins[Math.min(n - 1, Math.max(0, Math.floor(r.arrivalS / width)))].push(r.promptTokens);
  return bins.map(median);
}
