/**
 * The engine's settings, in one place: their types, their defaults (written once), which of them
 * may change while requests are in flight, and one pure validation that returns every problem
 * with its reason. The scheduler, the engine, the worker host and the page all validate here.
 */
import { DEFAULT_FAIR_SHARE, POLICY_NAMES, type FairShareConfig, type PolicyName } from './policies.ts';
import type { PreemptionMode } from './events.ts';

export type BatchingMode = 'continuous' | 'static';

/** Speculative decoding (vLLM's speculative_config.method): off, or n-gram prompt lookup. */
export type SpeculativeMethod = 'off' | 'ngram';
export const SPECULATIVE_METHODS: readonly SpeculativeMethod[] = ['off', 'ngram'];
/** The most draft tokens a sequence may verify in one step. */
export const MAX_NUM_SPECULATIVE_TOKENS = 16;

export interface SchedulerConfig {
  blockSize: number;
  numGpuBlocks: number;
  numCpuBlocks: number;
  enablePrefixCaching: boolean;
  /** Token budget of one step. */
  maxNumBatchedTokens: number;
  /** Sequences per step at most (a request with n samples counts n). */
  maxNumSeqs: number;
  /** Context length: prompt + output tokens of a sequence at most. */
  maxModelLen: number;
  /** Split long prompts across steps; without it a prompt must fit the remaining budget whole. */
  enableChunkedPrefill: boolean;
  policy: PolicyName;
  preemptionMode: PreemptionMode;
  batching: BatchingMode;
  fairShare: FairShareConfig;
  /** Admission: waiting requests at most (Infinity: no cap). */
  maxQueueLength: number;
  /** Admission: in-flight (waiting + running + swapped) requests per tenant at most. */
  tenantMaxInFlight: Record<string, number>;
  /** A request older than this (since arrival) fails with 'timeout'. */
  requestTimeoutMs: number;
  /**
   * 'max-length' reserves each sequence's final length (prompt + maxTokens) when it is admitted,
   * as contiguous allocators do; 'none' is paging proper (blocks on demand).
   */
  kvPreallocation: 'none' | 'max-length';
  /**
   * LoRA (vLLM's max_loras): GPU adapter slots, so distinct adapters in one step at most. A
   * request for an adapter not in a slot waits until a slot is free of running requests; the
   * least recently used unpinned adapter is evicted to load it. 0 turns adapters off.
   */
  maxLoras: number;
  /** LoRA (vLLM's max_lora_rank): the largest rank an adapter may have (slots are sized for it). */
  maxLoraRank: number;
  /**
   * Speculative decoding (vLLM's speculative_config: method "ngram"): each running sequence's
   * last n tokens (n from promptLookupMax down to promptLookupMin) are looked up in its prompt and
   * output, and up to numSpeculativeTokens following tokens are verified in the same step.
   * Continuous batching only; 'off' by default.
   */
  speculativeMethod: SpeculativeMethod;
  /** vLLM's num_speculative_tokens: draft tokens per sequence per step at most (k). */
  numSpeculativeTokens: number;
  /** vLLM's prompt_lookup_max: the longest n-gram matched. */
  promptLookupMax: number;
  /** vLLM's prompt_lookup_min: the shortest n-gram matched. */
  promptLookupMin: number;
  /**
   * vLLM's async_scheduling: the engine plans and submits step n+1 before it has read step n's
   * tokens back. A decode row whose newest token is still in flight gets a placeholder
   * (PLACEHOLDER_TOKEN_ID) that the executor fills on the device from step n's argmax; the host
   * reads tokens one step behind (streaming, stop checks, finishes), and a stop found late
   * discards the one extra token computed after it. Only with an executor that keeps its sampled
   * tokens on the device (Executor.tokenFeedback: the WebGPU one) and only after steps whose
   * every sampled row is greedy (GPU argmax), unconstrained, without drafts, swaps or
   * preemptions, in continuous batching with speculation off; any other step is followed
   * synchronously. Off by default: a replay of the event log (EventLogReplay, the lab's step
   * slider) plans synchronously and so reproduces only runs planned without it, and on SwiftShader
   * it measured no faster at batch 1 (bench/results/README.md; src/gpu/README.md for the design).
   */
  asyncScheduling: boolean;
}

/** The engine's settings: what a scheduler is built with. */
export type EngineConfig = SchedulerConfig;

/** Settings Scheduler.reconfigure() may change while requests are in flight. */
export const LIVE_CONFIG_KEYS: ReadonlySet<keyof SchedulerConfig> = new Set<keyof SchedulerConfig>([
  'maxNumBatchedTokens',
  'maxNumSeqs',
  'enableChunkedPrefill',
  'policy',
  'preemptionMode',
  'fairShare',
  'maxQueueLength',
  'tenantMaxInFlight',
  'requestTimeoutMs',
  // Drafts are planned step by step and leave nothing behind (rejected K/V is rolled back in the
  // step that computed it), so speculation can be switched and tuned with requests in flight.
  'speculativeMethod',
  'numSpeculativeTokens',
  'promptLookupMax',
  'promptLookupMin',
]);

/** The serving core's defaults (a mid-sized deployment; the simulator and the tests start here). */
export const DEFAULT_SCHEDULER_CONFIG: SchedulerConfig = {
  blockSize: 16,
  numGpuBlocks: 256,
  numCpuBlocks: 256,
  enablePrefixCaching: true,
  maxNumBatchedTokens: 512,
  maxNumSeqs: 64,
  maxModelLen: 512,
  enableChunkedPrefill: true,
  policy: 'fcfs',
  preemptionMode: 'recompute',
  batching: 'continuous',
  fairShare: DEFAULT_FAIR_SHARE,
  maxQueueLength: Infinity,
  tenantMaxInFlight: {},
  requestTimeoutMs: Infinity,
  kvPreallocation: 'none',
  maxLoras: 4,
  maxLoraRank: 16,
  speculativeMethod: 'off',
  numSpeculativeTokens: 4,
  promptLookupMax: 4,
  promptLookupMin: 2,
  asyncScheduling: false,
};

/**
 * The real model's engine in the browser and in Node (the worker host, the page's supervisor):
 * sized for the tiny built-in model on a slow GPU. The context comes from the model.
 */
export const DEFAULT_HOST_SETTINGS: Readonly<Partial<SchedulerConfig>> = {
  blockSize: 16,
  numGpuBlocks: 128,
  numCpuBlocks: 64,
  maxNumBatchedTokens: 256,
  maxNumSeqs: 32,
  preemptionMode: 'recompute',
};

/** Largest LoRA rank the kernels take (kernels/lora_bgmv.wgsl keeps A x in workgroup memory). */
export const MAX_LORA_RANK = 64;
/** Most adapter slots (each is a GPU buffer region sized for maxLoraRank). */
export const MAX_LORAS = 64;

/** Largest block the kernels take (tokens per block). */
export const MAX_BLOCK_SIZE = 256;

export interface ConfigProblem {
  key: keyof SchedulerConfig;
  message: string;
}

/** A value as a message shows it, whatever it is (String() throws for some objects). */
function show(v: unknown): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean' || v === null || v === undefined) return String(v);
  return Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

const PREEMPTION_MODES: readonly PreemptionMode[] = ['recompute', 'swap', 'abort'];

/**
 * Every problem of a complete configuration, each with its reason ([] when it is valid).
 * Pure: it reads only its argument.
 */
export function validateEngineConfig(c: SchedulerConfig): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const add = (key: keyof SchedulerConfig, message: string) => problems.push({ key, message });
  for (const key of Object.keys(c)) {
    if (!(key in DEFAULT_SCHEDULER_CONFIG)) add(key as keyof SchedulerConfig, `unknown setting ${JSON.stringify(key)} (known: ${Object.keys(DEFAULT_SCHEDULER_CONFIG).join(', ')})`);
  }
  const positiveInt = (key: 'blockSize' | 'numGpuBlocks' | 'maxNumBatchedTokens' | 'maxNumSeqs' | 'maxModelLen') => {
    const v = c[key];
    if (!Number.isInteger(v) || v <= 0) add(key, `${key} must be a positive integer, got ${show(v)}`);
  };
  positiveInt('blockSize');
  positiveInt('numGpuBlocks');
  positiveInt('maxNumBatchedTokens');
  positiveInt('maxNumSeqs');
  positiveInt('maxModelLen');
  if (Number.isInteger(c.blockSize) && c.blockSize > MAX_BLOCK_SIZE) add('blockSize', `blockSize must be at most ${MAX_BLOCK_SIZE}, got ${c.blockSize}`);
  if (!Number.isInteger(c.numCpuBlocks) || c.numCpuBlocks < 0) add('numCpuBlocks', `numCpuBlocks must be an integer >= 0, got ${show(c.numCpuBlocks)}`);
  if (!c.enableChunkedPrefill && Number.isInteger(c.maxNumBatchedTokens) && c.maxNumBatchedTokens < c.maxModelLen) {
    // A preempted sequence re-prefills up to maxModelLen tokens in one step.
    add('maxNumBatchedTokens', `without chunked prefill maxNumBatchedTokens (${c.maxNumBatchedTokens}) must be >= maxModelLen (${c.maxModelLen})`);
  }
  if (!POLICY_NAMES.includes(c.policy)) add('policy', `unknown policy ${show(c.policy)} (one of ${POLICY_NAMES.join(', ')})`);
  if (!PREEMPTION_MODES.includes(c.preemptionMode)) add('preemptionMode', `unknown preemption mode ${show(c.preemptionMode)} (one of ${PREEMPTION_MODES.join(', ')})`);
  if (c.batching !== 'continuous' && c.batching !== 'static') add('batching', `batching must be continuous or static, got ${show(c.batching)}`);
  if (c.kvPreallocation !== 'none' && c.kvPreallocation !== 'max-length') add('kvPreallocation', `kvPreallocation must be none or max-length, got ${show(c.kvPreallocation)}`);
  if (!Number.isInteger(c.maxLoras) || c.maxLoras < 0 || c.maxLoras > MAX_LORAS) add('maxLoras', `maxLoras must be an integer from 0 to ${MAX_LORAS}, got ${show(c.maxLoras)}`);
  if (!Number.isInteger(c.maxLoraRank) || c.maxLoraRank < 1 || c.maxLoraRank > MAX_LORA_RANK) add('maxLoraRank', `maxLoraRank must be an integer from 1 to ${MAX_LORA_RANK}, got ${show(c.maxLoraRank)}`);
  if (!(typeof c.maxQueueLength === 'number' && c.maxQueueLength >= 0 && (Number.isInteger(c.maxQueueLength) || c.maxQueueLength === Infinity))) {
    add('maxQueueLength', `maxQueueLength must be an integer >= 0 or Infinity, got ${show(c.maxQueueLength)}`);
  }
  if (!(typeof c.requestTimeoutMs === 'number' && c.requestTimeoutMs > 0)) add('requestTimeoutMs', `requestTimeoutMs must be > 0 (Infinity: none), got ${show(c.requestTimeoutMs)}`);
  if (typeof c.enablePrefixCaching !== 'boolean') add('enablePrefixCaching', `enablePrefixCaching must be true or false, got ${show(c.enablePrefixCaching)}`);
  if (typeof c.enableChunkedPrefill !== 'boolean') add('enableChunkedPrefill', `enableChunkedPrefill must be true or false, got ${show(c.enableChunkedPrefill)}`);
  if (typeof c.tenantMaxInFlight !== 'object' || c.tenantMaxInFlight === null) add('tenantMaxInFlight', 'tenantMaxInFlight must be an object (tenant -> quota)');
  for (const [tenant, quota] of Object.entries(c.tenantMaxInFlight ?? {})) {
    if (!Number.isInteger(quota) || quota < 1) add('tenantMaxInFlight', `tenant ${tenant}'s quota must be a positive integer, got ${show(quota)}`);
  }
  if (!SPECULATIVE_METHODS.includes(c.speculativeMethod)) add('speculativeMethod', `unknown speculative method ${show(c.speculativeMethod)} (one of ${SPECULATIVE_METHODS.join(', ')})`);
  if (!Number.isInteger(c.numSpeculativeTokens) || c.numSpeculativeTokens < 1 || c.numSpeculativeTokens > MAX_NUM_SPECULATIVE_TOKENS) {
    add('numSpeculativeTokens', `numSpeculativeTokens must be an integer from 1 to ${MAX_NUM_SPECULATIVE_TOKENS}, got ${show(c.numSpeculativeTokens)}`);
  }
  const lookupOk = (key: 'promptLookupMax' | 'promptLookupMin') => {
    const v = c[key];
    const ok = Number.isInteger(v) && v >= 1 && v <= 64;
    if (!ok) add(key, `${key} must be an integer from 1 to 64, got ${show(v)}`);
    return ok;
  };
  if (lookupOk('promptLookupMax') && lookupOk('promptLookupMin') && c.promptLookupMin > c.promptLookupMax) {
    add('promptLookupMin', `promptLookupMin (${c.promptLookupMin}) must be <= promptLookupMax (${c.promptLookupMax})`);
  }
  if (typeof c.asyncScheduling !== 'boolean') add('asyncScheduling', `asyncScheduling must be true or false, got ${show(c.asyncScheduling)}`);
  const f = c.fairShare;
  if (typeof f !== 'object' || f === null) add('fairShare', 'fairShare must be an object with token weights and tenant weights');
  else {
    const finiteNonNegative = (v: unknown) => typeof v === 'number' && Number.isFinite(v) && v >= 0;
    if (!finiteNonNegative(f.prefillTokenWeight) || !finiteNonNegative(f.decodeTokenWeight)) {
      add('fairShare', `fair-share token weights must be finite numbers >= 0, got prefill ${show(f.prefillTokenWeight)}, decode ${show(f.decodeTokenWeight)}`);
    }
    if (typeof f.tenantWeights !== 'object' || f.tenantWeights === null) add('fairShare', 'fairShare.tenantWeights must be an object (tenant -> weight)');
    else {
      for (const [tenant, w] of Object.entries(f.tenantWeights)) {
        // A tenant's counter grows by cost / weight: 0 or NaN would never let it be served.
        if (!(typeof w === 'number' && Number.isFinite(w) && w > 0)) add('fairShare', `tenant ${tenant}'s fair-share weight must be a finite number > 0, got ${show(w)}`);
      }
    }
  }
  return problems;
}

/** Throws one RangeError naming every problem; returns the config when it is valid. */
export function assertValidConfig(c: SchedulerConfig): SchedulerConfig {
  const problems = validateEngineConfig(c);
  if (problems.length > 0) throw new RangeError(problems.map((p) => p.message).join('; '));
  return c;
}

/** Changes that need a new engine (a geometry, the context, prefix caching, the batching mode). */
export function fixedKeysChanged(current: SchedulerConfig, changes: Partial<SchedulerConfig>): (keyof SchedulerConfig)[] {
  return (Object.entries(changes) as [keyof SchedulerConfig, unknown][])
    .filter(([key, value]) => !LIVE_CONFIG_KEYS.has(key) && JSON.stringify(value) !== JSON.stringify(current[key]))
    .map(([key]) => key);
}

/**
 * Checks live changes against a running engine's config without touching it: every problem of
 * the result, plus one per fixed setting the changes would alter. Returns the new config.
 */
export function validateLiveChanges(current: SchedulerConfig, changes: Partial<SchedulerConfig>): SchedulerConfig {
  const fixed = fixedKeysChanged(current, changes);
  if (fixed.length > 0) throw new RangeError(`${fixed.join(', ')} cannot change while the engine runs; start a new engine`);
  return assertValidConfig({ ...current, ...changes });
}
