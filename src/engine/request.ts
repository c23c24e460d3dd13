/**
 * Requests and their sequences. A request with n > 1 (parallel sampling) prefills one sequence;
 * when its prompt is done the first output row is sampled by n sequences that share the
 * prompt's blocks (copy-on-write). Each sequence owns its sampler for its whole life, so its RNG
 * state survives preemption and generated tokens are never resampled.
 */
import type { SamplingParams } from './types.ts';
import type { KvSeq } from './kvCacheManager.ts';
import { createSampler, type Sampler } from './sampler.ts';
import { hashSalt } from './hash.ts';
import { responseFormatProblems, type ResponseFormat, type TokenConstraint } from './constraint.ts';

/** llama2.c models emit BOS (1) to end a story; EOS is 2. */
export const DEFAULT_STOP_TOKEN_IDS: readonly number[] = [1, 2];

export const DEFAULT_SAMPLING: SamplingParams = { temperature: 0, topP: 1, topK: 0, seed: 0 };

/** What a caller submits (JSON-serialisable; workload traces are arrays of these). */
export interface RequestSpec {
  /** Unique; generated ("req-<k>") when absent. */
  requestId?: string;
  /** The tokenized prompt (at least one token). */
  promptTokenIds: number[];
  /** Generated tokens at most (a stop token ends it earlier). */
  maxTokens: number;
  /** Parallel samples sharing the prompt (default 1). */
  n?: number;
  sampling?: Partial<SamplingParams>;
  /** Sampling one of these ends a sequence with reason 'stop' (default [1, 2]). */
  stopTokenIds?: number[];
  /** Lower value runs first under the priority policy (default 0). */
  priority?: number;
  /** Tenant for fair share and quotas (default "default"). */
  tenant?: string;
  /** End-to-end latency objective, relative to arrival: finish by arrivalMs + deadlineMs. */
  deadlineMs?: number;
  /** Arrival time on the engine clock; absent means "now". Future arrivals wait in a pending set. */
  arrivalMs?: number;
  /** Output length a predictor expects (shortest-job-first); defaults to maxTokens. */
  predictedOutputTokens?: number;
  /** Prefix-cache salt: requests with different salts never share cached blocks. */
  cacheSalt?: string;
  /**
   * LoRA adapter to run with (a name registered with Engine.registerAdapter); absent: the base
   * model. Its K/V differ from the base model's, so it also salts the prefix cache.
   */
  adapter?: string;
  /**
   * Structured output (OpenAI's response_format). Recorded with the submit; the engine enforces
   * it only through the TokenConstraints submit() is given (one per sequence), which the serve
   * layer compiles from it. A replay takes the recorded tokens and needs none.
   */
  responseFormat?: ResponseFormat;
}

/** One thing wrong with a request, named by its field. */
export interface RequestProblem {
  field: string;
  message: string;
}

/** What a request is checked against besides itself. */
export interface RequestLimits {
  /** Token ids must lie in 0 .. vocabSize-1 (unchecked when absent). */
  vocabSize?: number;
  /** LoRA adapters a request may name (absent: any name passes; empty: none). */
  adapters?: ReadonlySet<string>;
}

/** Longest requestId / tenant / cacheSalt accepted (they are keys and labels, not payloads). */
export const MAX_ID_LENGTH = 200;
/** Stop token ids per request at most. */
export const MAX_STOP_TOKEN_IDS = 1024;

const SPEC_KEYS: ReadonlySet<string> = new Set([
  'requestId', 'promptTokenIds', 'maxTokens', 'n', 'sampling', 'stopTokenIds', 'priority', 'tenant',
  'deadlineMs', 'arrivalMs', 'predictedOutputTokens', 'cacheSalt', 'adapter', 'responseFormat',
]);
const SAMPLING_KEYS: ReadonlySet<string> = new Set(['temperature', 'topP', 'topK', 'seed']);

function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null || v === undefined) return String(v);
  return Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

/** Problems of the sampling parameters (each optional; present ones are checked). */
export function samplingProblems(sampling: unknown, field = 'sampling'): RequestProblem[] {
  if (sampling === undefined) return [];
  if (typeof sampling !== 'object' || sampling === null || Array.isArray(sampling)) return [{ field, message: `${field} must be an object, got ${show(sampling)}` }];
  const problems: RequestProblem[] = [];
  const add = (key: string, message: string) => problems.push({ field: `${field}.${key}`, message });
  const s = sampling as Record<string, unknown>;
  for (const key of Object.keys(s)) if (!SAMPLING_KEYS.has(key)) add(key, `unknown sampling parameter ${JSON.stringify(key)} (known: ${[...SAMPLING_KEYS].join(', ')})`);
  const { temperature, topP, topK, seed } = s;
  if (temperature !== undefined && !(typeof temperature === 'number' && Number.isFinite(temperature) && temperature >= 0)) {
    add('temperature', `temperature must be a finite number >= 0, got ${show(temperature)}`);
  }
  if (topP !== undefined && !(typeof topP === 'number' && topP >= 0 && topP <= 1)) add('topP', `top_p must be between 0 and 1, got ${show(topP)}`);
  if (topK !== undefined && !(Number.isInteger(topK) && (topK as number) >= 0)) add('topK', `top_k must be an integer >= 0, got ${show(topK)}`);
  // The xorshift state is the seed modulo 2^64 (a negative seed -s is 2^64 - s, as in run.c).
  if (seed !== undefined && !Number.isSafeInteger(seed)) add('seed', `seed must be an integer, got ${show(seed)}`);
  return problems;
}

/**
 * Every problem of a request spec (a caller's object, an imported trace line), each with its
 * field and reason; [] when the engine can take it. Checks types and ranges only: whether it fits
 * this engine's context and memory is admission's decision (a 'rejected' event with the reason).
 */
export function validateRequestSpec(spec: unknown, limits: RequestLimits = {}): RequestProblem[] {
  if (typeof spec !== 'object' || spec === null || Array.isArray(spec)) return [{ field: 'request', message: `a request must be an object, got ${show(spec)}` }];
  const problems: RequestProblem[] = [];
  const add = (field: string, message: string) => problems.push({ field, message });
  const r = spec as Record<string, unknown>;
  for (const key of Object.keys(r)) if (!SPEC_KEYS.has(key)) add(key, `unknown field ${JSON.stringify(key)}`);
  const text = (key: 'requestId' | 'tenant' | 'cacheSalt', nonEmpty: boolean) => {
    const v = r[key];
    if (v === undefined) return;
    if (typeof v !== 'string' || (nonEmpty && v.length === 0) || v.length > MAX_ID_LENGTH) {
      add(key, `${key} must be a ${nonEmpty ? 'non-empty ' : ''}string of at most ${MAX_ID_LENGTH} characters, got ${show(v)}`);
    }
  };
  text('requestId', true);
  text('tenant', true);
  text('cacheSalt', false);
  const adapter = r.adapter;
  if (adapter !== undefined) {
    if (typeof adapter !== 'string' || adapter.length === 0 || adapter.length > MAX_ID_LENGTH) {
      add('adapter', `adapter must be a non-empty string of at most ${MAX_ID_LENGTH} characters, got ${show(adapter)}`);
    } else if (limits.adapters && !limits.adapters.has(adapter)) {
      const known = [...limits.adapters];
      add('adapter', `unknown LoRA adapter ${show(adapter)} (${known.length > 0 ? `loaded: ${known.join(', ')}` : 'none is loaded'})`);
    }
  }
  const V = limits.vocabSize;
  const tokenListProblem = (v: unknown[]): string | null => {
    for (let i = 0; i < v.length; i++) {
      const t = v[i];
      if (!Number.isInteger(t) || (t as number) < 0) return `token ${i} is ${show(t)}, not a token id (an integer >= 0)`;
      if (V !== undefined && (t as number) >= V) return `token ${i} is ${t as number}, outside the vocabulary (0..${V - 1})`;
    }
    return null;
  };
  const prompt = r.promptTokenIds;
  if (!Array.isArray(prompt)) add('promptTokenIds', `promptTokenIds must be an array of token ids, got ${show(prompt)}`);
  else if (prompt.length === 0) add('promptTokenIds', 'the prompt is empty (at least one token, e.g. BOS)');
  else {
    const p = tokenListProblem(prompt);
    if (p) add('promptTokenIds', `promptTokenIds: ${p}`);
  }
  const positiveInt = (key: 'maxTokens' | 'n' | 'predictedOutputTokens', required: boolean) => {
    const v = r[key];
    if (v === undefined && !required) return;
    if (!Number.isSafeInteger(v) || (v as number) < 1) add(key, `${key} must be a positive integer, got ${show(v)}`);
  };
  positiveInt('maxTokens', true);
  positiveInt('n', false);
  positiveInt('predictedOutputTokens', false);
  problems.push(...samplingProblems(r.sampling));
  const stops = r.stopTokenIds;
  if (stops !== undefined) {
    if (!Array.isArray(stops)) add('stopTokenIds', `stopTokenIds must be an array of token ids, got ${show(stops)}`);
    else if (stops.length > MAX_STOP_TOKEN_IDS) add('stopTokenIds', `stopTokenIds has ${stops.length} ids (at most ${MAX_STOP_TOKEN_IDS})`);
    else {
      const p = tokenListProblem(stops);
      if (p) add('stopTokenIds', `stopTokenIds: ${p}`);
    }
  }
  const finite = (key: 'priority' | 'arrivalMs') => {
    const v = r[key];
    if (v !== undefined && !(typeof v === 'number' && Number.isFinite(v))) add(key, `${key} must be a finite number, got ${show(v)}`);
  };
  finite('priority');
  finite('arrivalMs');
  const d = r.deadlineMs;
  if (d !== undefined && !(typeof d === 'number' && d > 0 && !Number.isNaN(d))) add('deadlineMs', `deadlineMs must be a number > 0 (ms after arrival), got ${show(d)}`);
  problems.push(...responseFormatProblems(r.responseFormat));
  return problems;
}

/** A request refused at submit: nothing of it entered the engine. */
export class InvalidRequestError extends RangeError {
  constructor(readonly problems: readonly RequestProblem[], label = 'request') {
    super(`${label} refused: ${problems.map((p) => p.message).join('; ')}`);
    this.name = 'InvalidRequestError';
  }
}

export type RequestState = 'pending' | 'waiting' | 'running' | 'swapped' | 'finished' | 'failed' | 'rejected';
export type FinishReason = 'stop' | 'length';
export type FailReason = 'cancelled' | 'timeout' | 'preempted';
export type RejectReason =
  | 'queue_full'
  | 'tenant_quota'
  | 'prompt_too_long'
  | 'exceeds_kv_capacity'
  | 'deadline_unmeetable'
  | 'invalid';

/** The cost of a request's token masks. */
export interface MaskStats {
  /** Tokens sampled under a mask (every sequence). */
  numTokens: number;
  /** Host ms spent computing and applying masks (every sequence). */
  totalMs: number;
  /** Sequence 0: the fraction of the vocabulary allowed at each of its steps (the first MAX_MASK_HISTORY). */
  allowedFractions: number[];
}

/** Allowed fractions kept per request. */
export const MAX_MASK_HISTORY = 1024;

export class Sequence implements KvSeq {
  readonly seqId: number;
  readonly request: Request;
  /** 0 .. n-1 within its request. */
  readonly index: number;
  /** Prompt, then generated tokens (a sampled stop token is not appended). */
  readonly tokenIds: number[];
  readonly cacheKey: number;
  readonly blockHashes: number[];
  readonly sampler: Sampler;
  numComputedTokens = 0;
  /**
   * Async scheduling (vLLM's num_output_placeholders): tokens sampled by a step in flight and not
   * read back yet (0 or 1). They count as computed positions (numComputedTokens may exceed
   * numTokens by this much) and the next step feeds them as PLACEHOLDER_TOKEN_ID.
   */
  numPlaceholders = 0;
  finishReason: FinishReason | null = null;
  /** The stop token that ended it, when finishReason is 'stop'. */
  stopTokenId: number | null = null;
  /** Structured output: the rule its next token must follow (null: free). */
  constraint: TokenConstraint | null = null;

  constructor(seqId: number, request: Request, index: number, tokenIds: number[], blockHashes: number[], sampler: Sampler) {
    this.seqId = seqId;
    this.request = request;
    this.index = index;
    this.tokenIds = tokenIds;
    this.cacheKey = request.cacheKey;
    this.blockHashes = blockHashes;
    this.sampler = sampler;
  }

  get numTokens(): number {
    return this.tokenIds.length;
  }
  get numOutputTokens(): number {
    return this.tokenIds.length - this.request.numPromptTokens;
  }
  get outputTokenIds(): number[] {
    return this.tokenIds.slice(this.request.numPromptTokens);
  }
  get isFinished(): boolean {
    return this.finishReason !== null;
  }
}

export class Request {
  readonly requestId: string;
  readonly spec: RequestSpec;
  readonly promptTokenIds: readonly number[];
  readonly numPromptTokens: number;
  readonly maxTokens: number;
  readonly n: number;
  readonly sampling: SamplingParams;
  readonly stopTokenIds: ReadonlySet<number>;
  readonly priority: number;
  readonly tenant: string;
  readonly arrivalMs: number;
  /** Absolute deadline on the engine clock, Infinity without one. */
  readonly deadlineAtMs: number;
  readonly predictedOutputTokens: number;
  readonly cacheKey: number;
  /** The LoRA adapter it runs with; null: the base model. */
  readonly adapter: string | null;
  /** Submission order, the last tie-breaker of every policy. */
  readonly order: number;
  state: RequestState = 'pending';
  /** Sequences; one until the prompt is done, then n. */
  readonly seqs: Sequence[] = [];
  forked = false;

  // Timings on the engine clock (ms); NaN until they happen.
  firstScheduledMs = NaN;
  firstTokenMs = NaN;
  lastTokenMs = NaN;
  finishedMs = NaN;
  /** Gaps between consecutive output tokens of sequence 0 (ms). */
  readonly interTokenLatenciesMs: number[] = [];
  numPreemptions = 0;
  /** Speculative decoding: draft tokens verified for this request's sequences, and how many were accepted. */
  numDraftTokens = 0;
  numAcceptedDraftTokens = 0;
  /** Tokens served from the prefix cache, summed over every (re)admission (prompt and generated). */
  numCachedPromptTokens = 0;
  /** Prompt tokens served from the prefix cache on the latest admission (never above the prompt). */
  numCachedPromptTokensLastAdmission = 0;
  /** Why it ended, for finished/failed/rejected requests. */
  endReason: FinishReason | FailReason | RejectReason | null = null;
  /** Structured output: one constraint per sequence (index = sequence index), or null. */
  readonly constraints: readonly TokenConstraint[] | null;
  /** Structured output: what masking cost (every sequence) and allowed (sequence 0, per token). */
  readonly mask: MaskStats | null;
  /** Its constraints were freed (it ended). */
  constraintsDisposed = false;

  constructor(spec: RequestSpec, requestId: string, arrivalMs: number, order: number, constraints: readonly TokenConstraint[] | null = null) {
    this.requestId = requestId;
    this.constraints = constraints;
    // A replay has the format but no constraints: it counts the recorded masks.
    this.mask = constraints || spec.responseFormat ? { numTokens: 0, totalMs: 0, allowedFractions: [] } : null;
    this.spec = spec;
    this.promptTokenIds = spec.promptTokenIds;
    this.numPromptTokens = spec.promptTokenIds.length;
    this.maxTokens = spec.maxTokens;
    this.n = spec.n ?? 1;
    this.sampling = { ...DEFAULT_SAMPLING, ...spec.sampling };
    this.stopTokenIds = new Set(spec.stopTokenIds ?? DEFAULT_STOP_TOKEN_IDS);
    this.priority = spec.priority ?? 0;
    this.tenant = spec.tenant ?? 'default';
    this.arrivalMs = arrivalMs;
    this.deadlineAtMs = spec.deadlineMs === undefined ? Infinity : arrivalMs + spec.deadlineMs;
    this.predictedOutputTokens = spec.predictedOutputTokens ?? spec.maxTokens;
    this.adapter = spec.adapter ?? null;
    // An adapter's K/V are its own: its blocks never serve another adapter or the base model.
    this.cacheKey = hashSalt(spec.adapter === undefined ? spec.cacheSalt : `${spec.cacheSalt ?? ''}\u0000lora:${spec.adapter}`);
    this.order = order;
  }

  /** Sequences still generating. */
  activeSeqs(): Sequence[] {
    return this.seqs.filter((s) => !s.isFinished);
  }

  /** Sequence slots it occupies against maxNumSeqs (n is reserved before the fork). */
  numSeqSlots(): number {
    return this.forked ? this.activeSeqs().length : this.n;
  }

  /** Tokens still to compute for its prompt (and re-prefill after recompute). */
  numUncomputedTokens(): number {
    let sum = 0;
    for (const s of this.activeSeqs()) sum += s.numTokens - s.numComputedTokens;
    return sum;
  }

  /** Predicted remaining work in tokens (shortest-job-first). */
  predictedRemainingTokens(): number {
    const generated = this.seqs.length > 0 ? this.seqs[0].numOutputTokens : 0;
    return this.numUncomputedTokens() + Math.max(0, this.predictedOutputTokens - generated) * this.n;
  }

  get isDone(): boolean {
    return this.state === 'finished' || this.state === 'failed' || this.state === 'rejected';
  }
}

export function createSequenceSampler(request: Request, index: number): Sampler {
  // Sample i of a request uses seed + i, so sample 0 matches a single-sequence run.
  return createSampler({ ...request.sampling, seed: request.sampling.seed + index });
}

/** Frees a request's constraints (once; they are dropped from its sequences). */
export function disposeConstraints(request: Request): void {
  if (!request.constraints || request.constraintsDisposed) return;
  request.constraintsDisposed = true;
  for (const c of request.constraints) c.dispose?.();
  for (const s of request.seqs) s.constraint = null;
}
