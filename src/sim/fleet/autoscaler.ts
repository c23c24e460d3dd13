/**
 * The autoscaler's arithmetic: how long a new replica takes to serve (cold start) and how many
 * replicas a pool should have (Kubernetes' HPA rule: desired = ceil(serving x value / target),
 * with a 10% tolerance band, min/max bounds, and no scale-down within the cool-down). Pure: the
 * fleet measures the metric, calls decideScale() every intervalS and carries the decision out.
 */
import { kvCapacity } from '../kvCalculator.ts';
import { HARDWARE_PRESETS, MODEL_PRESETS } from '../presets.ts';
import type { AutoscalerSpec, DeploymentSpec } from './types.ts';

/** |value / target - 1| within this: no change (HPA's default tolerance). */
export const SCALE_TOLERANCE = 0.1;
/** ttft-slo: the percentile of the last interval's TTFTs compared with the target (when the spec names none). */
export const DEFAULT_TTFT_PERCENTILE = 0.9;

export interface ColdStart {
  /** Weight bytes each device loads (kvCapacity's weightBytesPerDevice). */
  weightBytesPerDevice: number;
  /** weightBytesPerDevice / loadBytesPerS: the replica is 'cold'. */
  loadS: number;
  /** Then 'warming' for warmupS (graph capture, first batches). */
  warmupS: number;
  totalS: number;
}

/** Cold start = weight bytes per device / loadBytesPerS + warmupS (every device loads its shard in parallel). */
export function coldStart(deployment: DeploymentSpec, autoscaler: Pick<AutoscalerSpec, 'loadBytesPerS' | 'warmupS'>): ColdStart {
  const model = MODEL_PRESETS[deployment.modelId];
  const hardware = HARDWARE_PRESETS[deployment.hardwareId];
  if (!model) throw new RangeError(`deployment.modelId: unknown model ${JSON.stringify(deployment.modelId)}`);
  if (!hardware) throw new RangeError(`deployment.hardwareId: unknown hardware ${JSON.stringify(deployment.hardwareId)}`);
  const cap = kvCapacity(model, hardware, { tensorParallel: deployment.tensorParallel, pipelineParallel: deployment.pipelineParallel });
  const loadS = cap.weightBytesPerDevice / autoscaler.loadBytesPerS;
  return { weightBytesPerDevice: cap.weightBytesPerDevice, loadS, warmupS: autoscaler.warmupS, totalS: loadS + autoscaler.warmupS };
}

/** What the autoscaler sees of its pool at one tick. */
export interface ScaleInput {
  nowS: number;
  /** Replicas serving now. */
  serving: number;
  /** Replicas ordered and not yet serving (cold or warming). */
  starting: number;
  /** The metric per serving replica (queue depth, KV usage, or TTFT at the percentile, s); NaN: no measurement. */
  value: number;
  /** When the pool last scaled (up or down), s; -Infinity: never. */
  lastScaleS: number;
  /** Requests waiting at the router with no replica serving (default 0). */
  unserved?: number;
}

export interface ScaleDecision {
  /** Replicas wanted (serving + starting after the decision). */
  to: number;
  reason: string;
}

const fmt = (metric: AutoscalerSpec['metric'], v: number): string =>
  metric === 'kv-usage' ? `${(v * 100).toFixed(0)}%` : metric === 'ttft-slo' ? `${v.toFixed(2)} s` : v.toFixed(1);

const metricName = (metric: AutoscalerSpec['metric']): string => (metric === 'queue-depth' ? 'queue/replica' : metric === 'kv-usage' ? 'KV usage' : 'TTFT');

/**
 * One tick's decision, or null when the pool stays as it is. Replicas below minReplicas (after a
 * loss) are replaced first; otherwise desired = ceil(serving x value / target), clamped to
 * [minReplicas, maxReplicas]; up at once, down only after scaleDownCooldownS since the last change.
 */
export function decideScale(spec: AutoscalerSpec, input: ScaleInput, coldStartS: number): ScaleDecision | null {
  const current = input.serving + input.starting;
  const name = metricName(spec.metric);
  if (current < spec.minReplicas) {
    return { to: spec.minReplicas, reason: `${current} replicas < min ${spec.minReplicas}: +${spec.minReplicas - current} (cold start ${coldStartS.toFixed(1)} s)` };
  }
  if (current === 0 && (input.unserved ?? 0) > 0) {
    const to = Math.max(1, spec.minReplicas);
    return { to, reason: `${input.unserved} requests wait with no replica: 0 → ${to} (cold start ${coldStartS.toFixed(1)} s)` };
  }
  if (input.serving === 0 || !Number.isFinite(input.value)) return null;
  const ratio = input.value / spec.target;
  if (Math.abs(ratio - 1) <= SCALE_TOLERANCE) return null;
  const desired = Math.min(spec.maxReplicas, Math.max(spec.minReplicas, Math.ceil(input.serving * ratio)));
  const vs = `${name} ${fmt(spec.metric, input.value)} vs target ${fmt(spec.metric, spec.target)}`;
  if (desired > current) {
    const capped = desired === spec.maxReplicas && Math.ceil(input.serving * ratio) > spec.maxReplicas ? ` (capped at max ${spec.maxReplicas})` : '';
    return { to: desired, reason: `${vs}: ${current} → ${desired} replicas${capped}, +${desired - current} (cold start ${coldStartS.toFixed(1)} s)` };
  }
  if (desired < current) {
    const since = input.nowS - input.lastScaleS;
    if (since < spec.scaleDownCooldownS) return null;
    return { to: desired, reason: `${vs}: ${current} → ${desired} replicas, drain ${current - desired} (${Number.isFinite(since) ? `${since.toFixed(0)} s` : 'never'} since the last change ≥ cool-down ${spec.scaleDownCooldownS} s)` };
  }
  return null;
}

/** The p-quantile of values (nearest rank); NaN for none. */
export function quantile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
}
