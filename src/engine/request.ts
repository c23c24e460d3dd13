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
  finishReason: FinishReason | null = null;
  /** The stop token that ended it, when finishReason is 'stop'. */
  stopTokenId: number | null = null;

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
  /** Prompt tokens served from the prefix cache on (re)admission. */
  numCachedPromptTokens = 0;
  /** Why it ended, for finished/failed/rejected requests. */
  endReason: FinishReason | FailReason | RejectReason | null = null;

  constructor(spec: RequestSpec, requestId: string, arrivalMs: number, order: number) {
    this.requestId = requestId;
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
    this.cacheKey = hashSalt(spec.cacheSalt);
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
