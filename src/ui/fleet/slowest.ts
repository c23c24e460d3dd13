/**
 * The P99 hunt's view-side choices over src/sim/fleet/analysis.ts (which owns the ranking, the
 * parts to the first token, the dominant phase and the tenant shares): the cut (the slowest 1%,
 * 5%, or the top n), the filters (tenant, arrival window), what had happened by the time cursor,
 * the arrival histogram and each tenant's prompt lengths over time. Pure.
 */
import { bySlowest, latencyOf, slowestCount, type LatencyMetric } from '../../sim/fleet/analysis.ts';
import { BREAKDOWN_KEY, type FleetRequestRecord, type RequestBreakdown, type RequestPhase } from '../../sim/fleet/types.ts';

/** The slowest percent% (at least one) or the top n. */
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

/** How many the cut keeps of `numEligible`: the slowest percent% (at least one), or n. */
export function cutSize(cut: SlowestCut, numEligible: number): number {
  if (cut.kind === 'percent') return slowestCount(numEligible, cut.percent);
  return numEligible === 0 ? 0 : Math.min(numEligible, Math.max(1, Math.floor(cut.n)));
}

/** The slowest of the eligible requests, slowest first (the ranking of analysis.ts: ties by arrival, then id). */
export function findSlowest(requests: readonly FleetRequestRecord[], q: SlowestQuery): { slowest: FleetRequestRecord[]; numEligible: number } {
  const ranked = bySlowest(eligibleRequests(requests, q), q.metric);
  return { slowest: ranked.slice(0, cutSize(q.cut, ranked.length)), numEligible: ranked.length };
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

/** The phases in the order a request lives them. */
const PHASE_ORDER: readonly RequestPhase[] = ['queue', 'moderation', 'prefill', 'preempted', 'recompute', 'decode'];

/** The breakdown's parts in the order a request lives them, labelled with their phase's name. */
export const BREAKDOWN_PARTS: readonly { key: keyof RequestBreakdown; label: RequestPhase }[] = PHASE_ORDER.map((phase) => ({ key: BREAKDOWN_KEY[phase], label: phase }));

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
