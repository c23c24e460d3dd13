/**
 * Seeded workload generators and JSON traces. A workload is a list of RequestSpec with arrival
 * times; the same spec and seed always give the same list.
 */
import { MAX_ID_LENGTH, validateRequestSpec, type RequestLimits, type RequestSpec } from './request.ts';
import { responseFormatProblems, type ResponseFormat } from './constraint.ts';
import { check, InvalidInputError, show, type ArraySchema, type NumberSchema, type ObjectSchema, type Problem, type Schema, type UnionSchema } from './schema.ts';

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
    if (!(Number.isFinite(rate) && rate > 0)) throw new RangeError(`exponential: the rate must be a finite number > 0, got ${rate}`);
    return -Math.log(1 - this.next()) / rate;
  }
  /**
   * Gamma(shape, scale) by Marsaglia-Tsang; a shape below 1 is boosted to shape + 1 and scaled
   * by U^(1/shape). Each try is accepted with probability above 0.95 for shape >= 1, so the
   * loop ends at once in practice; it is bounded all the same, and non-finite or non-positive
   * parameters (which would never be accepted) are refused up front.
   */
  gamma(shape: number, scale: number): number {
    if (!(Number.isFinite(shape) && shape > 0)) throw new RangeError(`gamma: the shape must be a finite number > 0, got ${shape}`);
    if (!(Number.isFinite(scale) && scale > 0)) throw new RangeError(`gamma: the scale must be a finite number > 0, got ${scale}`);
    const boosted = shape < 1;
    const d = (boosted ? shape + 1 : shape) - 1 / 3;
    const c = 1 / Math.sqrt(9 * d);
    for (let tries = 0; tries < MAX_GAMMA_TRIES; tries++) {
      const x = this.normal();
      const v = Math.pow(1 + c * x, 3);
      if (v <= 0) continue;
      const u = this.next();
      if (Math.log(u) < 0.5 * x * x + d - d * v + d * Math.log(v)) {
        const g = d * v * scale;
        return boosted ? g * Math.pow(this.next() || 1e-12, 1 / shape) : g;
      }
    }
    throw new Error(`gamma: no sample accepted in ${MAX_GAMMA_TRIES} tries (shape ${shape}, scale ${scale})`);
  }
}

/** Rejection-sampling tries of one gamma draw at most (each is accepted with probability > 0.95). */
const MAX_GAMMA_TRIES = 10_000;

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
  /** LoRA adapter every request of this tenant runs with (a registered adapter name); absent: the base model. */
  adapter?: string;
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
  /**
   * A fraction of requests asks for structured output in this format (the serve layer compiles
   * its grammar before they are submitted); the others generate free text.
   */
  structured?: { fraction: number; responseFormat: ResponseFormat };
}

/** Requests one workload generates at most. */
export const MAX_WORKLOAD_REQUESTS = 10_000;
/** Longest prompt or output a length distribution may give (the engine refuses prompts longer than its context). */
export const MAX_WORKLOAD_TOKENS = 100_000;
/**
 * Prompt tokens one workload may generate at most, counted at the worst case (numRequests times
 * the longest prompt, plus the shared prefixes): the token arrays are built in memory at once.
 */
export const MAX_WORKLOAD_PROMPT_TOKENS = 2 ** 25;
/** Parallel samples per request at most (the serving front door's MAX_N). */
export const MAX_PARALLEL_SAMPLES = 16;
/** Tenants per workload at most. */
export const MAX_TENANTS = 100;
/** Shared system prompts at most. */
export const MAX_SHARED_PREFIXES = 1000;
/** Largest vocabulary token ids are drawn from. */
export const MAX_VOCAB_SIZE = 10_000_000;

const tokenCount = (why: string): NumberSchema => ({ type: 'number', integer: true, min: 1, max: MAX_WORKLOAD_TOKENS, why });
const fraction = (why: string): NumberSchema => ({ type: 'number', min: 0, max: 1, why });
const lengthWhy = `longer requests fit no context; the engine refuses a prompt longer than its context at admission`;

const minAtMostMax = (o: Record<string, unknown>, path: string): Problem[] =>
  (o.min as number) <= (o.max as number) ? [] : [{ path, message: `${path}: min (${o.min as number}) must be <= max (${o.max as number})` }];

const lengthDistSchema: UnionSchema = {
  type: 'union',
  tag: 'kind',
  why: 'a length distribution',
  variants: {
    fixed: { type: 'object', fields: { value: tokenCount(lengthWhy) } },
    uniform: { type: 'object', fields: { min: tokenCount(lengthWhy), max: tokenCount(lengthWhy) }, refine: minAtMostMax },
    lognormal: {
      type: 'object',
      fields: {
        median: { type: 'number', min: 1, max: MAX_WORKLOAD_TOKENS, why: 'the length a draw is centred on' },
        sigma: { type: 'number', min: 0, max: 5, why: 'the spread of log(length); draws are clamped to [min, max]' },
        min: tokenCount(lengthWhy),
        max: tokenCount(lengthWhy),
      },
      refine: minAtMostMax,
    },
    bimodal: {
      type: 'object',
      fields: { short: tokenCount(lengthWhy), long: tokenCount(lengthWhy), longFraction: fraction('the share of long draws') },
    },
  },
};

const ratePerS: NumberSchema = {
  type: 'number',
  min: 0.01,
  max: 1_000_000,
  why: 'requests per second; at 0 the requests would never arrive',
};

const arrivalSchema: UnionSchema = {
  type: 'union',
  tag: 'kind',
  why: 'an arrival process',
  variants: {
    batch: { type: 'object', fields: {} },
    poisson: { type: 'object', fields: { ratePerS } },
    bursty: {
      type: 'object',
      fields: {
        ratePerS,
        burstiness: { type: 'number', min: 0.001, max: 1000, why: 'the gamma shape of the gaps: below 1 clusters arrivals, 1 is Poisson' },
      },
    },
  },
};

const tenantSchema: ObjectSchema = {
  type: 'object',
  fields: {
    name: { type: 'string', minLength: 1, maxLength: MAX_ID_LENGTH, why: "the requests' tenant" },
    weight: { type: 'number', min: 0, exclusiveMin: true, max: 1e9, why: 'its relative share of the requests' },
    priority: { type: 'number', optional: true, why: 'lower runs first under the priority policy' },
    deadlineMs: { type: 'number', min: 0, exclusiveMin: true, max: 1e12, optional: true, why: 'ms after arrival' },
    adapter: { type: 'string', minLength: 1, maxLength: MAX_ID_LENGTH, optional: true, why: "the LoRA adapter its requests name (the engine refuses unknown ones at submit)" },
  },
};

const tenantsSchema: ArraySchema = {
  type: 'array',
  items: tenantSchema,
  maxItems: MAX_TENANTS,
  optional: true,
  refine: (tenants, path) => {
    const seen = new Map<string, number>();
    const out: Problem[] = [];
    tenants.forEach((t, i) => {
      const name = (t as TenantSpec).name;
      const first = seen.get(name);
      if (first === undefined) seen.set(name, i);
      else out.push({ path, message: `${path}[${i}].name repeats ${path}[${first}].name ${JSON.stringify(name.length > 40 ? `${name.slice(0, 40)}…` : name)}` });
    });
    return out;
  },
};

/** The longest prompt a length distribution can give (its parameters already checked). */
function longestLength(d: LengthDist): number {
  switch (d.kind) {
    case 'fixed':
      return d.value;
    case 'uniform':
    case 'lognormal':
      return d.max;
    case 'bimodal':
      return Math.max(d.short, d.long);
  }
}

/** Prompt tokens the workload builds in the worst case (see MAX_WORKLOAD_PROMPT_TOKENS). */
export function worstCasePromptTokens(spec: WorkloadSpec): number {
  const p = spec.sharedPrefix;
  // A request that takes a shared prefix gets at least one token of its own after it.
  const perRequest = Math.max(longestLength(spec.promptTokens), p ? p.numTokens + 1 : 0);
  return spec.numRequests * perRequest + (p ? (p.numPrefixes ?? 1) * p.numTokens : 0);
}

/**
 * The workload schema: every field of WorkloadSpec with its type, bounds, whether it is required
 * and why. Imports and generateWorkload check against this one description.
 */
export const WORKLOAD_SCHEMA: ObjectSchema = {
  type: 'object',
  fields: {
    seed: { type: 'number', integer: true, min: -Number.MAX_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER, why: 'the same seed gives the same requests' },
    numRequests: { type: 'number', integer: true, min: 1, max: MAX_WORKLOAD_REQUESTS, why: 'requests to generate' },
    arrival: arrivalSchema,
    promptTokens: lengthDistSchema,
    outputTokens: lengthDistSchema,
    vocabSize: { type: 'number', integer: true, min: 4, max: MAX_VOCAB_SIZE, optional: true, why: 'token ids are drawn from 3 .. vocabSize-1' },
    sharedPrefix: {
      type: 'object',
      optional: true,
      fields: {
        fraction: fraction('the share of requests that start with a shared prefix'),
        numTokens: tokenCount('the length of each shared prefix'),
        numPrefixes: { type: 'number', integer: true, min: 1, max: MAX_SHARED_PREFIXES, optional: true, why: 'distinct shared prefixes' },
      },
    },
    tenants: tenantsSchema,
    parallelSampling: {
      type: 'object',
      optional: true,
      fields: {
        fraction: fraction('the share of requests that ask for n samples'),
        n: { type: 'number', integer: true, min: 1, max: MAX_PARALLEL_SAMPLES, why: 'parallel samples per request' },
      },
    },
    temperature: { type: 'number', min: 0, max: 10, optional: true, why: 'the sampling temperature of every request (0: greedy)' },
    predictionNoiseSigma: { type: 'number', min: 0, max: 3, optional: true, why: 'the log-normal noise of the output-length prediction' },
    structured: {
      type: 'object',
      optional: true,
      fields: {
        fraction: fraction('the share of requests that ask for structured output'),
        responseFormat: {
          type: 'custom',
          describe: 'a response format ({type: "json_object"} or {type: "json_schema", jsonSchema: {name, schema}})',
          check: (v, path) => responseFormatProblems(v, path).map((p) => ({ path: p.field, message: p.message })),
        },
      },
    },
  },
  refine: (o, path) => {
    const worst = worstCasePromptTokens(o as unknown as WorkloadSpec);
    if (worst <= MAX_WORKLOAD_PROMPT_TOKENS) return [];
    const at = path === '' ? 'numRequests' : `${path}.numRequests`;
    return [
      {
        path: at,
        message: `${at} × the longest prompt${o.sharedPrefix ? ' (and the shared prefixes)' : ''} could make ${worst} prompt tokens; at most ${MAX_WORKLOAD_PROMPT_TOKENS} (fewer requests or shorter prompts)`,
      },
    ];
  },
};

/** Every problem of a workload spec against WORKLOAD_SCHEMA, each with its path ([] when it is fine). */
export function workloadProblems(spec: unknown): Problem[] {
  return check(WORKLOAD_SCHEMA as Schema, spec, 'the workload');
}

/** A workload refused: `problems` has every problem; the message lists them (10, then how many more). */
export class InvalidWorkloadError extends InvalidInputError {
  constructor(problems: readonly Problem[]) {
    super('workload', problems);
    this.name = 'InvalidWorkloadError';
  }
}

/** The spec, checked: throws one InvalidWorkloadError naming every problem. */
export function validateWorkload(spec: unknown): WorkloadSpec {
  const problems = workloadProblems(spec);
  if (problems.length > 0) throw new InvalidWorkloadError(problems);
  return spec as WorkloadSpec;
}

/**
 * Generates the workload's requests in arrival order. The spec is checked first (the same check
 * as an import); within its bounds generation is cheap and every request passes
 * validateRequestSpec.
 */
export function generateWorkload(spec: WorkloadSpec): RequestSpec[] {
  validateWorkload(spec);
  const rng = new Rng(spec.seed);
  const structuredRng = new Rng((spec.seed ^ 0x5f3759df) >>> 0);
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
      if (tenant.adapter !== undefined) r.adapter = tenant.adapter;
    }
    if (spec.parallelSampling && rng.next() < spec.parallelSampling.fraction) r.n = spec.parallelSampling.n;
    if (spec.temperature) r.sampling = { temperature: spec.temperature, seed: rng.int(1, 2 ** 31 - 1) };
    if (spec.predictionNoiseSigma !== undefined) {
      const predicted = Math.round(maxTokens * Math.exp(spec.predictionNoiseSigma * rng.normal()));
      r.predictedOutputTokens = Math.min(Number.MAX_SAFE_INTEGER, Math.max(1, predicted));
    }
    // Its own generator: the other requests' fields are what the workload gives without it.
    if (spec.structured && structuredRng.next() < spec.structured.fraction) r.responseFormat = structuredClone(spec.structured.responseFormat);
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

/** Requests one trace holds at most. */
export const MAX_TRACE_REQUESTS = 10_000;
/** Latest arrival a trace may ask for, ms after its start (a week: later ones would wait forever in practice). */
export const MAX_TRACE_ARRIVAL_MS = 7 * 24 * 3600 * 1000;

/**
 * The trace schema: its format and version, and requests the engine's own validateRequestSpec
 * accepts, arriving within MAX_TRACE_ARRIVAL_MS, ids unique. A fresh schema per check: it
 * remembers the request ids the walk has seen.
 */
export function traceSchema(limits: RequestLimits = {}): ObjectSchema {
  // Request ids seen so far in this walk: a repeated id is a problem of the request that repeats it.
  const firstWithId = new Map<string, number>();
  return {
    type: 'object',
    fields: {
      format: { type: 'literal', values: ['servelab-trace'] },
      version: { type: 'literal', values: [1] },
      requests: {
        type: 'array',
        minItems: 1,
        maxItems: MAX_TRACE_REQUESTS,
        why: 'the recorded requests',
        items: {
          type: 'custom',
          describe: 'a request',
          check: (r, path, i) => {
            const out = validateRequestSpec(r, limits).map((p) => ({ path: p.field === 'request' ? path : `${path}.${p.field}`, message: `request ${i}: ${p.message}` }));
            const field = (key: string): unknown => (typeof r === 'object' && r !== null && Object.hasOwn(r, key) ? (r as Record<string, unknown>)[key] : undefined);
            const arrivalMs = field('arrivalMs');
            // A non-finite arrivalMs is validateRequestSpec's problem; this is the trace's own bound.
            if (typeof arrivalMs === 'number' && Number.isFinite(arrivalMs) && !(arrivalMs >= 0 && arrivalMs <= MAX_TRACE_ARRIVAL_MS)) {
              out.push({ path: `${path}.arrivalMs`, message: `request ${i}: arrivalMs must be from 0 to ${MAX_TRACE_ARRIVAL_MS} (ms after the trace starts), got ${arrivalMs}` });
            }
            const id = field('requestId');
            if (typeof id === 'string') {
              const first = firstWithId.get(id);
              if (first === undefined) firstWithId.set(id, i);
              else out.push({ path: `${path}.requestId`, message: `request ${i}: requestId ${show(id)} repeats request ${first}'s` });
            }
            return out;
          },
        },
      },
    },
  };
}

/**
 * A parsed trace, checked: the format and version first, then every request with the engine's
 * own validateRequestSpec, at most MAX_TRACE_REQUESTS of them, request ids unique. Throws one
 * InvalidInputError ("trace: request 3: priority must be ...; ...") naming every problem.
 */
export function validateTrace(data: unknown, limits: RequestLimits = {}): RequestSpec[] {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) throw new InvalidInputError('trace', [{ path: '', message: `a trace is a JSON object, got ${show(data)}` }]);
  const t = data as Record<string, unknown>;
  const format = Object.hasOwn(t, 'format') ? t.format : undefined;
  const version = Object.hasOwn(t, 'version') ? t.version : undefined;
  if (format !== 'servelab-trace' || version !== 1) {
    throw new InvalidInputError('trace', [{ path: format !== 'servelab-trace' ? 'format' : 'version', message: `unknown format ${show(format)} version ${show(version)} (expected "servelab-trace" version 1)` }]);
  }
  const problems = check(traceSchema(limits), data, 'the trace');
  if (problems.length > 0) throw new InvalidInputError('trace', problems);
  return t.requests as RequestSpec[];
}

/** Parses and validates a trace (see validateTrace); throws a descriptive Error on bad input. */
export function importTrace(json: string, limits: RequestLimits = {}): RequestSpec[] {
  let data: unknown;
  try {
    data = JSON.parse(json);
  } catch (e) {
    throw new Error(`trace: not JSON: ${(e as Error).message}`);
  }
  return validateTrace(data, limits);
}
