/**
 * Seeded workload generators and JSON traces. A workload is a list of RequestSpec with arrival
 * times; the same spec and seed always give the same list.
 */
import type { RequestSpec } from './request.ts';

/** mulberry32: a small, fast, seeded 32-bit generator (workloads only; sampling has its own). */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 0x9e3779b9;
  }
  /** Uniform in [0, 1). */
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }
  /** Standard normal (Box-Muller). */
  normal(): number {
    const u = 1 - this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.next());
  }
  exponential(rate: number): number {
    return -Math.log(1 - this.next()) / rate;
  }
  /** Gamma(shape, scale) by Marsaglia-Tsang. */
  gamma(shape: number, scale: number): number {
    if (shape < 1) return this.gamma(shape + 1, scale) * Math.pow(this.next() || 1e-12, 1 / shape);
    const d = shape - 1 / 3;
    const c = 1 / Math.sqrt(9 * d);
    for (;;) {
      const x = this.normal();
      const v = Math.pow(1 + c * x, 3);
      if (v <= 0) continue;
      const u = this.next();
      if (Math.log(u) < 0.5 * x * x + d - d * v + d * Math.log(v)) return d * v * scale;
    }
  }
}

export type LengthDist =
  | { kind: 'fixed'; value: number }
  | { kind: 'uniform'; min: number; max: number }
  /** Log-normal around a median, clamped to [min, max]. */
  | { kind: 'lognormal'; median: number; sigma: number; min: number; max: number }
  /** `short` with probability 1 - longFraction, else `long` (the "10 vs 2000" mix). */
  | { kind: 'bimodal'; short: number; long: number; longFraction: number };

export function sampleLength(d: LengthDist, rng: Rng): number {
  switch (d.kind) {
    case 'fixed':
      return d.value;
    case 'uniform':
      return rng.int(d.min, d.max);
    case 'lognormal':
      return Math.min(d.max, Math.max(d.min, Math.round(d.median * Math.exp(d.sigma * rng.normal()))));
    case 'bimodal':
      return rng.next() < d.longFraction ? d.long : d.short;
  }
}

export type ArrivalProcess =
  /** Everything at time 0 (offline batch). */
  | { kind: 'batch' }
  | { kind: 'poisson'; ratePerS: number }
  /**
   * Gamma inter-arrival times with the given mean rate; burstiness < 1 clusters arrivals
   * (1 = Poisson), as in vLLM's benchmark_serving.
   */
  | { kind: 'bursty'; ratePerS: number; burstiness: number };

export interface TenantSpec {
  name: string;
  /** Share of requests (relative). */
  weight: number;
  priority?: number;
  /** End-to-end deadline relative to arrival. */
  deadlineMs?: number;
}

export interface WorkloadSpec {
  seed: number;
  numRequests: number;
  arrival: ArrivalProcess;
  promptTokens: LengthDist;
  outputTokens: LengthDist;
  /** Token ids are drawn from [3, vocabSize) (0-2 are special in llama2.c vocabularies). */
  vocabSize?: number;
  /** A fraction of requests starts with one of numPrefixes shared system prompts of numTokens. */
  sharedPrefix?: { fraction: number; numTokens: number; numPrefixes?: number };
  tenants?: TenantSpec[];
  /** A fraction of requests asks for n parallel samples. */
  parallelSampling?: { fraction: number; n: number };
  /** Sampling temperature of every request (default 0, greedy). */
  temperature?: number;
  /**
   * Multiplicative log-normal noise (sigma) of the output-length prediction attached to each
   * request for shortest-job-first; absent means no prediction (SJF falls back to maxTokens).
   */
  predictionNoiseSigma?: number;
}

/** Generates the workload's requests in arrival order. */
export function generateWorkload(spec: WorkloadSpec): RequestSpec[] {
  const rng = new Rng(spec.seed);
  const vocab = spec.vocabSize ?? 512;
  const token = () => rng.int(3, vocab - 1);
  const numPrefixes = spec.sharedPrefix?.numPrefixes ?? 1;
  const prefixes = spec.sharedPrefix ? Array.from({ length: numPrefixes }, () => Array.from({ length: spec.sharedPrefix!.numTokens }, token)) : [];
  const tenants = spec.tenants ?? [];
  const totalWeight = tenants.reduce((a, t) => a + t.weight, 0);
  const out: RequestSpec[] = [];
  let t = 0;
  for (let i = 0; i < spec.numRequests; i++) {
    const a = spec.arrival;
    if (a.kind === 'poisson') t += rng.exponential(a.ratePerS) * 1000;
    else if (a.kind === 'bursty') t += rng.gamma(a.burstiness, 1 / (a.ratePerS * a.burstiness)) * 1000;
    const numPrompt = Math.max(1, sampleLength(spec.promptTokens, rng));
    const maxTokens = Math.max(1, sampleLength(spec.outputTokens, rng));
    let prompt: number[];
    if (spec.sharedPrefix && rng.next() < spec.sharedPrefix.fraction) {
      const p = prefixes[rng.int(0, numPrefixes - 1)];
      prompt = [...p, ...Array.from({ length: Math.max(1, numPrompt - p.length) }, token)];
    } else {
      prompt = Array.from({ length: numPrompt }, token);
    }
    const r: RequestSpec = { requestId: `w${spec.seed}-${i}`, promptTokenIds: prompt, maxTokens, arrivalMs: t };
    if (tenants.length > 0) {
      let pick = rng.next() * totalWeight;
      let tenant = tenants[tenants.length - 1];
      for (const tn of tenants) {
        if ((pick -= tn.weight) < 0) {
          tenant = tn;
          break;
        }
      }
      r.tenant = tenant.name;
      if (tenant.priority !== undefined) r.priority = tenant.priority;
      if (tenant.deadlineMs !== undefined) r.deadlineMs = tenant.deadlineMs;
    }
    if (spec.parallelSampling && rng.next() < spec.parallelSampling.fraction) r.n = spec.parallelSampling.n;
    if (spec.temperature) r.sampling = { temperature: spec.temperature, seed: rng.int(1, 2 ** 31 - 1) };
    if (spec.predictionNoiseSigma !== undefined) {
      r.predictedOutputTokens = Math.max(1, Math.round(maxTokens * Math.exp(spec.predictionNoiseSigma * rng.normal())));
    }
    out.push(r);
  }
  return out;
}

export interface Trace {
  format: 'servelab-trace';
  version: 1;
  requests: RequestSpec[];
}

export function exportTrace(requests: readonly RequestSpec[]): string {
  const trace: Trace = { format: 'servelab-trace', version: 1, requests: requests.map((r) => ({ ...r })) };
  return JSON.stringify(trace);
}

/** Parses and validates a trace; throws a descriptive Error on bad input. */
export function importTrace(json: string): RequestSpec[] {
  const data: unknown = JSON.parse(json);
  if (typeof data !== 'object' || data === null) throw new Error('trace: not a JSON object');
  const t = data as Partial<Trace>;
  if (t.format !== 'servelab-trace' || t.version !== 1) throw new Error(`trace: unknown format ${String(t.format)} version ${String(t.version)}`);
  if (!Array.isArray(t.requests)) throw new Error('trace: "requests" must be an array');
  return t.requests.map((r, i) => {
    const isTokenList = Array.isArray(r?.promptTokenIds) && r.promptTokenIds.every((x: unknown) => Number.isInteger(x) && (x as number) >= 0);
    if (!isTokenList) throw new Error(`trace: request ${i} needs promptTokenIds, an array of token ids`);
    if (!Number.isInteger(r.maxTokens) || r.maxTokens < 1) throw new Error(`trace: request ${i} needs maxTokens >= 1`);
    if (r.arrivalMs !== undefined && !(Number.isFinite(r.arrivalMs) && r.arrivalMs >= 0)) throw new Error(`trace: request ${i} has a bad arrivalMs`);
    return r;
  });
}
