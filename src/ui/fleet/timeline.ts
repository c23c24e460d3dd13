/**
 * The fleet at the time cursor: lookups into a FleetResult's sampled series, replica states and
 * decision logs for a simulated time t (seconds). Pure; every list searched is sorted by time, as
 * the simulation writes it.
 */
import type { FleetFinishReason, FleetRequestRecord, FleetResult, FleetSeries, ReplicaRecord, ReplicaSample, ReplicaState } from '../../sim/fleet/types.ts';

/** Index of the last element of `ts` (ascending) at or before t; -1 when t is before the first. */
export function indexAtOrBefore(ts: readonly number[], t: number): number {
  let lo = 0;
  let hi = ts.length - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (ts[mid] <= t) {
      found = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return found;
}

/** Like indexAtOrBefore over a list of timed items (by `key`). */
function lastAtOrBefore<T>(items: readonly T[], t: number, key: (item: T) => number): number {
  let lo = 0;
  let hi = items.length - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (key(items[mid]) <= t) {
      found = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return found;
}

/** A replica's state at t: null before it was ordered, 'gone' after it was scaled down (a lost one stays 'lost'). */
export function replicaStateAt(r: ReplicaRecord, t: number): ReplicaState | 'gone' | null {
  if (t < r.createdS) return null;
  const i = lastAtOrBefore(r.states, t, (s) => s.atS);
  const state = i >= 0 ? r.states[i].state : (r.states[0]?.state ?? null);
  if (r.endedS !== undefined && t >= r.endedS && state !== 'lost') return 'gone';
  return state;
}

/** The reason of a replica's latest state change at or before t ('' when none yet). */
export function replicaReasonAt(r: ReplicaRecord, t: number): string {
  const i = lastAtOrBefore(r.states, t, (s) => s.atS);
  return i >= 0 ? r.states[i].reason : '';
}

/** A replica's latest sample at or before t (null: none yet). */
export function replicaSampleAt(r: ReplicaRecord, t: number): ReplicaSample | null {
  const i = lastAtOrBefore(r.samples, t, (s) => s.tS);
  return i >= 0 ? r.samples[i] : null;
}

/** The last `n` items at or before t, newest first. */
export function recentUpTo<T extends { atS: number }>(items: readonly T[], t: number, n: number): T[] {
  const i = lastAtOrBefore(items, t, (d) => d.atS);
  const out: T[] = [];
  for (let k = i; k >= 0 && out.length < n; k--) out.push(items[k]);
  return out;
}

/** How many items happened at or before t. */
export function countUpTo<T extends { atS: number }>(items: readonly T[], t: number): number {
  return lastAtOrBefore(items, t, (d) => d.atS) + 1;
}

/** The fleet-wide figures at t (the last sample at or before it; the first sample before any). */
export interface SeriesPoint {
  tS: number;
  arrivalsPerS: number;
  servingReplicas: number;
  startingReplicas: number;
  sloAttainment: number;
  costUsd: number;
  p99TtftS: number;
}

export function seriesAt(s: FleetSeries, t: number): SeriesPoint | null {
  if (s.tS.length === 0) return null;
  const i = Math.max(0, indexAtOrBefore(s.tS, t));
  return {
    tS: s.tS[i],
    arrivalsPerS: s.arrivalsPerS[i],
    servingReplicas: s.servingReplicas[i],
    startingReplicas: s.startingReplicas[i],
    sloAttainment: s.sloAttainment[i],
    costUsd: s.costUsd[i],
    p99TtftS: s.p99TtftS[i],
  };
}

/** The run's simulated length: the summary's duration, or the last sample when later. */
export function runDurationS(r: FleetResult): number {
  const last = r.series.tS.length > 0 ? r.series.tS[r.series.tS.length - 1] : 0;
  return Math.max(r.summary.durationS, last);
}

/** The sampling interval of a run's series, s (1 when it has fewer than two samples). */
export function sampleIntervalS(s: FleetSeries): number {
  return s.tS.length >= 2 ? s.tS[1] - s.tS[0] : 1;
}

/** When a request ended, s: arrival + end-to-end time, or arrival + its breakdown when it never finished. */
export function requestEndS(r: FleetRequestRecord): number {
  if (r.e2eS !== undefined) return r.arrivalS + r.e2eS;
  const b = r.breakdown;
  return r.arrivalS + b.queueS + b.moderationS + b.prefillS + b.decodeS + b.preemptedS + b.recomputeS;
}

/** How many requests had arrived, and how many had ended by t, by finish reason. */
export function requestCountsAt(requests: readonly FleetRequestRecord[], t: number): { arrived: number; ended: number; byFinish: Record<FleetFinishReason, number> } {
  const byFinish: Record<FleetFinishReason, number> = { stop: 0, length: 0, content_filter: 0, rejected: 0, failed: 0, abort: 0 };
  let arrived = 0;
  let ended = 0;
  for (const r of requests) {
    if (r.arrivalS <= t) arrived++;
    if (requestEndS(r) <= t) {
      ended++;
      byFinish[r.finishReason]++;
    }
  }
  return { arrived, ended, byFinish };
}

/**
 * How many requests had been sent to each replica by t: a request counts on every replica it went
 * to (a re-routed one on each), from the start of its first span there (its spans say when it
 * reached each replica; a record without spans counts from its arrival). Replicas are listed in
 * the order given, then any other a request names.
 */
export function sentPerReplica(requests: readonly FleetRequestRecord[], replicaIds: readonly string[], t: number): { perReplica: Map<string, number>; numRequests: number } {
  const perReplica = new Map<string, number>(replicaIds.map((id) => [id, 0]));
  const add = (id: string) => perReplica.set(id, (perReplica.get(id) ?? 0) + 1);
  let numRequests = 0;
  for (const r of requests) {
    if (r.arrivalS > t || r.replicas.length === 0) continue;
    let sent = false;
    if (r.spans && r.spans.length > 0) {
      let last: string | undefined;
      for (const sp of r.spans) {
        if (sp.startS > t) break;
        if (sp.replica !== undefined && sp.replica !== last) {
          add(sp.replica);
          sent = true;
        }
        if (sp.replica !== undefined) last = sp.replica;
      }
    } else {
      for (const id of r.replicas) add(id);
      sent = true;
    }
    if (sent) numRequests++;
  }
  return { perReplica, numRequests };
}
