/** Engine settings and workloads as the lab's controls edit them (whole objects, never partial). */
import { DEFAULT_SCHEDULER_CONFIG, type SchedulerConfig } from '../../engine/scheduler.ts';
import type { WorkloadSpec } from '../../engine/workload.ts';

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
>;

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
};

/** The complete scheduler config the worker gets (so nothing from a previous run leaks in). */
export function fullConfig(s: LabSettings): Partial<SchedulerConfig> {
  const c: Partial<SchedulerConfig> = {
    ...s,
    fairShare: DEFAULT_SCHEDULER_CONFIG.fairShare,
    tenantMaxInFlight: {},
    requestTimeoutMs: Infinity,
    kvPreallocation: 'none',
  };
  // Without chunked prefill a whole context must fit one step's budget.
  if (!s.enableChunkedPrefill) c.maxNumBatchedTokens = Math.max(s.maxNumBatchedTokens, 512);
  return c;
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

export function workloadFromForm(f: WorkloadForm): WorkloadSpec {
  const len = (median: number, max: number) =>
    f.lengthSigma > 0
      ? { kind: 'lognormal' as const, median, sigma: f.lengthSigma, min: 1, max }
      : { kind: 'fixed' as const, value: median };
  const spec: WorkloadSpec = {
    seed: f.seed,
    numRequests: f.numRequests,
    arrival: f.burstiness <= 0 ? { kind: 'batch' } : f.burstiness >= 1 ? { kind: 'poisson', ratePerS: f.ratePerS } : { kind: 'bursty', ratePerS: f.ratePerS, burstiness: f.burstiness },
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
