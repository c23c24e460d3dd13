/** Engine settings and workloads as the lab's controls edit them (whole objects, never partial). */
import { DEFAULT_SCHEDULER_CONFIG, type SchedulerConfig } from '../../engine/scheduler.ts';
import type { WorkloadSpec } from '../../engine/workload.ts';
import { WEIGHT_TYPE_LABEL, type WeightType } from '../../model/quant.ts';
import type { EngineSettings } from '../../../workers/protocol.ts';

/** What the controls edit; the rest of SchedulerConfig keeps its defaults. */
export type LabSettings = Pick<
  SchedulerConfig,
  | 'blockSize'
  | 'numGpuBlocks'
  | 'numCpuBlocks'
  | 'maxNumSeqs'
  | 'maxNumBatchedTokens'
  | 'enableChunkedPrefill'
  | 'enablePrefixCaching'
  | 'policy'
  | 'preemptionMode'
  | 'batching'
  | 'maxQueueLength'
  | 'maxLoras'
  | 'speculativeMethod'
  | 'numSpeculativeTokens'
  | 'promptLookupMax'
  | 'promptLookupMin'
> & {
  /** A model option, not an engine setting: the f32 model, or quantized on load (the host rebuilds the model). */
  weights: WeightType;
};

/** Sized for the real tiny model on a slow GPU: tens of 16-token blocks, so memory runs out. */
export const BASE_SETTINGS: LabSettings = {
  blockSize: 16,
  numGpuBlocks: 64,
  numCpuBlocks: 32,
  maxNumSeqs: 16,
  maxNumBatchedTokens: 256,
  enableChunkedPrefill: true,
  enablePrefixCaching: true,
  policy: 'fcfs',
  preemptionMode: 'recompute',
  batching: 'continuous',
  maxQueueLength: Infinity,
  weights: 'f32',
  maxLoras: 4,
  speculativeMethod: 'off',
  numSpeculativeTokens: DEFAULT_SCHEDULER_CONFIG.numSpeculativeTokens,
  promptLookupMax: DEFAULT_SCHEDULER_CONFIG.promptLookupMax,
  promptLookupMin: DEFAULT_SCHEDULER_CONFIG.promptLookupMin,
};

/** What differs from `base`, in a few words each (e.g. "preemption abort", "8 CPU blocks"). */
export function describeChanges(base: LabSettings, s: LabSettings): string[] {
  const out: string[] = [];
  if (s.weights !== base.weights) out.push(`${WEIGHT_TYPE_LABEL[s.weights]} weights`);
  if (s.batching !== base.batching) out.push(`${s.batching} batching`);
  if (s.policy !== base.policy) out.push(`${s.policy} policy`);
  if (s.preemptionMode !== base.preemptionMode) out.push(`preemption ${s.preemptionMode}`);
  if (s.blockSize !== base.blockSize) out.push(`${s.blockSize}-token blocks`);
  if (s.numGpuBlocks !== base.numGpuBlocks) out.push(`${s.numGpuBlocks} GPU blocks`);
  if (s.numCpuBlocks !== base.numCpuBlocks) out.push(`${s.numCpuBlocks} CPU blocks`);
  if (s.maxNumSeqs !== base.maxNumSeqs) out.push(`${s.maxNumSeqs} seqs`);
  if (s.maxNumBatchedTokens !== base.maxNumBatchedTokens) out.push(`budget ${s.maxNumBatchedTokens}`);
  if (s.enableChunkedPrefill !== base.enableChunkedPrefill) out.push(`chunked prefill ${s.enableChunkedPrefill ? 'on' : 'off'}`);
  if (s.enablePrefixCaching !== base.enablePrefixCaching) out.push(`prefix cache ${s.enablePrefixCaching ? 'on' : 'off'}`);
  if (s.maxLoras !== base.maxLoras) out.push(`${s.maxLoras} LoRA slots`);
  if (s.maxQueueLength !== base.maxQueueLength) out.push(Number.isFinite(s.maxQueueLength) ? `queue cap ${s.maxQueueLength}` : 'no queue cap');
  if (s.speculativeMethod !== base.speculativeMethod) out.push(s.speculativeMethod === 'off' ? 'no speculation' : `${s.speculativeMethod} speculation`);
  if (s.numSpeculativeTokens !== base.numSpeculativeTokens) out.push(`k = ${s.numSpeculativeTokens} drafts`);
  if (s.promptLookupMax !== base.promptLookupMax || s.promptLookupMin !== base.promptLookupMin) out.push(`lookup ${s.promptLookupMin}..${s.promptLookupMax}`);
  return out;
}

/** Names of the lab's settings as the compare diff shows them. */
const SETTING_LABELS: Record<keyof LabSettings, string> = {
  blockSize: 'block size',
  numGpuBlocks: 'GPU blocks',
  numCpuBlocks: 'CPU blocks',
  maxNumSeqs: 'max seqs',
  maxNumBatchedTokens: 'token budget',
  enableChunkedPrefill: 'chunked prefill',
  enablePrefixCaching: 'prefix cache',
  policy: 'policy',
  preemptionMode: 'preemption',
  batching: 'batching',
  maxQueueLength: 'queue cap',
  weights: 'weights',
  maxLoras: 'LoRA slots',
  speculativeMethod: 'speculation',
  numSpeculativeTokens: 'draft tokens (k)',
  promptLookupMax: 'lookup max n',
  promptLookupMin: 'lookup min n',
};

/** Every setting in which two sides differ, e.g. { label: 'preemption', a: 'recompute', b: 'swap' }. */
export function settingsDiff(a: LabSettings, b: LabSettings): { key: keyof LabSettings; label: string; a: string; b: string }[] {
  const show = (v: unknown) => (typeof v === 'boolean' ? (v ? 'on' : 'off') : v === Infinity ? 'none' : WEIGHT_TYPE_LABEL[v as WeightType] ?? String(v));
  return (Object.keys(SETTING_LABELS) as (keyof LabSettings)[])
    .filter((k) => a[k] !== b[k])
    .map((k) => ({ key: k, label: SETTING_LABELS[k], a: show(a[k]), b: show(b[k]) }));
}

/** A compare side's name: the scenario's label, or what was edited away from it. */
export function sideLabel(label: string, base: LabSettings, s: LabSettings): string {
  const changes = describeChanges(base, s);
  return changes.length === 0 ? label : `${label}, edited: ${changes.join(', ')}`;
}

/** The complete scheduler config (so nothing from a previous run leaks in); the model option `weights` is not part of it. */
export function fullConfig(s: LabSettings): Partial<SchedulerConfig> {
  const { weights: _modelOption, ...scheduler } = s;
  const c: Partial<SchedulerConfig> = {
    ...scheduler,
    fairShare: DEFAULT_SCHEDULER_CONFIG.fairShare,
    tenantMaxInFlight: {},
    requestTimeoutMs: Infinity,
    kvPreallocation: 'none',
  };
  // Without chunked prefill a whole context must fit one step's budget.
  if (!s.enableChunkedPrefill) c.maxNumBatchedTokens = Math.max(s.maxNumBatchedTokens, 512);
  return c;
}

/** What the worker's host gets: the full scheduler config and the model option `weights`. */
export function hostSettings(s: LabSettings): EngineSettings {
  return { ...fullConfig(s), weights: s.weights };
}

/** The workload form's fields, turned into a WorkloadSpec. */
export interface WorkloadForm {
  seed: number;
  numRequests: number;
  ratePerS: number;
  /** 1 = Poisson; below 1 clusters arrivals into bursts; 0 = everything at once. */
  burstiness: number;
  promptMedian: number;
  outputMedian: number;
  /** Log-normal spread of the lengths (0 = fixed). */
  lengthSigma: number;
  sharedPrefixFraction: number;
  sharedPrefixTokens: number;
  numTenants: number;
  n: number;
  temperature: number;
}

export const BASE_WORKLOAD_FORM: WorkloadForm = {
  seed: 7,
  numRequests: 24,
  ratePerS: 6,
  burstiness: 1,
  promptMedian: 24,
  outputMedian: 48,
  lengthSigma: 0.5,
  sharedPrefixFraction: 0,
  sharedPrefixTokens: 32,
  numTenants: 1,
  n: 1,
  temperature: 0,
};

/** The form with every field brought into its range (lengths fit the model's 512-token context). */
export function clampWorkloadForm(f: WorkloadForm): WorkloadForm {
  const clamp = (v: number, lo: number, hi: number) => Math.max(lo, Math.min(hi, Number.isFinite(v) ? v : lo));
  return {
    ...f,
    seed: Math.round(Number.isFinite(f.seed) ? f.seed : BASE_WORKLOAD_FORM.seed),
    numRequests: Math.round(clamp(f.numRequests, 1, 200)),
    ratePerS: clamp(f.ratePerS, 0.1, 100),
    burstiness: clamp(f.burstiness, 0, 1),
    promptMedian: Math.round(clamp(f.promptMedian, 1, 400)),
    outputMedian: Math.round(clamp(f.outputMedian, 1, 480)),
    lengthSigma: clamp(f.lengthSigma, 0, 2),
    sharedPrefixFraction: clamp(f.sharedPrefixFraction, 0, 1),
    sharedPrefixTokens: Math.round(clamp(f.sharedPrefixTokens, 1, 256)),
    numTenants: Math.round(clamp(f.numTenants, 1, 4)),
    n: Math.round(clamp(f.n, 1, 8)),
    temperature: clamp(f.temperature, 0, 2),
  };
}

export function workloadFromForm(f: WorkloadForm): WorkloadSpec {
  const len = (median: number, max: number) =>
    f.lengthSigma > 0
      ? { kind: 'lognormal' as const, median, sigma: f.lengthSigma, min: 1, max }
      : { kind: 'fixed' as const, value: median };
  const spec: WorkloadSpec = {
    seed: f.seed,
    numRequests: f.numRequests,
    // Below the workload schema's least burstiness (0.001) every request comes in one burst: a batch.
    arrival: f.burstiness < 0.001 ? { kind: 'batch' } : f.burstiness >= 1 ? { kind: 'poisson', ratePerS: f.ratePerS } : { kind: 'bursty', ratePerS: f.ratePerS, burstiness: f.burstiness },
    promptTokens: len(f.promptMedian, 400),
    outputTokens: len(f.outputMedian, 480),
  };
  if (f.sharedPrefixFraction > 0) spec.sharedPrefix = { fraction: f.sharedPrefixFraction, numTokens: f.sharedPrefixTokens };
  if (f.numTenants > 1) {
    spec.tenants = Array.from({ length: f.numTenants }, (_, i) => ({ name: `tenant-${String.fromCharCode(97 + i)}`, weight: i === 0 ? 3 : 1 }));
  }
  if (f.n > 1) spec.parallelSampling = { fraction: 1, n: f.n };
  if (f.temperature > 0) spec.temperature = f.temperature;
  return spec;
}
