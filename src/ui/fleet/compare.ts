/**
 * The comparison line of a preset's runs (fixed vs autoscaled, round-robin vs prefix-affinity, ...):
 * the key figures of each run's summary, formatted, with which run did better on each. Pure.
 */
import type { FleetSummary } from '../../sim/fleet/types.ts';

export interface FigureDef {
  key: keyof FleetSummary;
  label: string;
  /** Which way is better (null: neither, e.g. a count of replicas). */
  better: 'lower' | 'higher' | null;
  format: (v: number) => string;
}

const seconds = (v: number) => (Number.isFinite(v) ? (v >= 10 ? `${v.toFixed(1)} s` : v >= 1 ? `${v.toFixed(2)} s` : `${(v * 1000).toFixed(0)} ms`) : '—');
const percent = (v: number) => (Number.isFinite(v) ? `${(v * 100).toFixed(1)}%` : '—');
const usd = (v: number) => (Number.isFinite(v) ? `$${v >= 100 ? v.toFixed(0) : v.toFixed(2)}` : '—');
const count = (v: number) => (Number.isFinite(v) ? String(Math.round(v)) : '—');
const hours = (v: number) => (Number.isFinite(v) ? v.toFixed(2) : '—');

export const FORMAT = { seconds, percent, usd, count, hours };

/** The figures compared, in order (P99 TTFT, SLO attainment, cost, GPU-hours, lost / rerouted first). */
export const KEY_FIGURES: readonly FigureDef[] = [
  { key: 'p99TtftS', label: 'P99 TTFT', better: 'lower', format: seconds },
  { key: 'sloAttainment', label: 'SLO attainment', better: 'higher', format: percent },
  { key: 'costUsd', label: 'cost', better: 'lower', format: usd },
  { key: 'gpuHours', label: 'GPU-hours', better: 'lower', format: hours },
  { key: 'lostRequests', label: 'lost', better: 'lower', format: count },
  { key: 'reroutedRequests', label: 'rerouted', better: null, format: count },
  { key: 'p50TtftS', label: 'P50 TTFT', better: 'lower', format: seconds },
  { key: 'replicasMax', label: 'replicas (max)', better: null, format: count },
  { key: 'prefixHitRate', label: 'prefix-cache hits', better: 'higher', format: percent },
];

export interface ComparisonRow {
  key: keyof FleetSummary;
  label: string;
  values: string[];
  /** Index of the better run (null: a tie, or no better way). */
  best: number | null;
}

/** One row per key figure; `best` marks the run that did better where the figures differ. */
export function comparisonRows(summaries: readonly FleetSummary[]): ComparisonRow[] {
  return KEY_FIGURES.map((f) => {
    const nums = summaries.map((s) => s[f.key]);
    let best: number | null = null;
    if (f.better && nums.length > 1 && nums.every(Number.isFinite)) {
      const target = f.better === 'lower' ? Math.min(...nums) : Math.max(...nums);
      const winners = nums.flatMap((v, i) => (v === target ? [i] : []));
      // Equal as shown is a tie too.
      const shown = new Set(nums.map(f.format));
      if (winners.length === 1 && shown.size > 1) best = winners[0];
    }
    return { key: f.key, label: f.label, values: nums.map(f.format), best };
  });
}
