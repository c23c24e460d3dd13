/**
 * The simulated fleet's contract: what a fleet is made of (FleetSpec), what one simulated run
 * gives back (FleetResult), and the presets the views and the Guide open by id. Everything here is
 * plain data (JSON-serialisable), produced by the pure simulation in this folder (seeded, virtual
 * clock: each replica is a real Engine with the real Scheduler and KvCacheManager driving a
 * SimExecutor on the roofline cost model) and read by src/ui/fleet/ and the Guide. Times are
 * seconds of simulated time unless a name says Ms. Every figure is SIMULATED: no model runs.
 */

/** Where the router sends a request (vLLM production stack / SGLang router names in words). */
export type RouterPolicy = 'round-robin' | 'least-outstanding' | 'least-kv' | 'prefix-affinity';
export const ROUTER_POLICIES: readonly RouterPolicy[] = ['round-robin', 'least-outstanding', 'least-kv', 'prefix-affinity'];

/** A replica's life: cold (ordered, loading weights), warming (warm-up), serving, draining (no new requests), lost (spot reclaim). */
export type ReplicaState = 'cold' | 'warming' | 'serving' | 'draining' | 'lost';

/** What the autoscaler keeps at its target, per serving replica. */
export type AutoscaleMetric = 'queue-depth' | 'kv-usage' | 'ttft-slo';

/** One replica's deployment: a model preset on a hardware preset with TP x PP devices. */
export interface DeploymentSpec {
  /** A key of MODEL_PRESETS (src/sim/presets.ts). */
  modelId: string;
  /** A key of HARDWARE_PRESETS. */
  hardwareId: string;
  tensorParallel: number;
  pipelineParallel: number;
  /** vLLM's max_num_seqs and max_num_batched_tokens for each replica's engine. */
  maxNumSeqs: number;
  maxNumBatchedTokens: number;
  /** Price of one GPU-hour, USD (a replica pays tensorParallel x pipelineParallel of them). */
  gpuHourUsd: number;
}

export interface AutoscalerSpec {
  metric: AutoscaleMetric;
  /**
   * The target per serving replica: waiting requests (queue-depth), KV usage in [0, 1]
   * (kv-usage), or TTFT in seconds at the SLO percentile over the last interval (ttft-slo).
   */
  target: number;
  /** How often the autoscaler decides, s. */
  intervalS: number;
  minReplicas: number;
  maxReplicas: number;
  /** No scale-down sooner than this after the last scale-up or scale-down, s. */
  scaleDownCooldownS: number;
  /** Cold start = weight bytes per device / loadBytesPerS (storage or network) + warmupS. */
  loadBytesPerS: number;
  warmupS: number;
  /** ttft-slo only: the percentile of the last interval's TTFTs held at the target, in (0, 1] (default 0.9). */
  ttftPercentile?: number;
}

/** A pool: the replicas serving one model, behind one router, with its own queues. */
export interface PoolSpec {
  /** The model name requests ask for (OpenAI's "model" field); unique in a fleet. */
  model: string;
  deployment: DeploymentSpec;
  /** Replicas serving at time 0. */
  replicas: number;
  router: RouterPolicy;
  /**
   * prefix-affinity only: the replica holding a request's prefix is passed over when it has more
   * than this many outstanding requests above the least loaded replica (default 8).
   */
  affinityLoadCap?: number;
  autoscaler?: AutoscalerSpec;
  /** The replicas' engine scheduling policy: 'fcfs' (default) or 'priority' (tenants' priority, lower first). */
  schedulerPolicy?: 'fcfs' | 'priority';
}

/** A spot reclaim: replica `replica` (0-based, in order of creation) of pool `model` disappears at atS. */
export interface SpotLossSpec {
  atS: number;
  model: string;
  replica: number;
  /** Warning before the loss, s (0: none): the replica drains (takes nothing new) from atS - noticeS. */
  noticeS: number;
  /** Requests still running at the loss: re-routed and recomputed elsewhere, or failed with a reason. */
  onLoss: 'reroute' | 'fail';
}

/** A moderation stage before admission and on the output stream; each check has a seeded log-normal latency and a capacity. */
export interface ModerationSpec {
  input: { medianMs: number; sigma: number; concurrency: number };
  output: { everyTokens: number; medianMs: number; sigma: number; concurrency: number };
  /** Fraction of requests whose output is flagged (at a seeded point): the stream stops with finish_reason "content_filter". */
  flagRate: number;
  /** Fraction of requests whose input is flagged: refused before admission, nothing generated. */
  inputFlagRate: number;
}

export interface BillingSpec {
  usdPerMPromptTokens: number;
  /** Prompt tokens served from the prefix cache (cheaper, as the APIs bill them). */
  usdPerMCachedPromptTokens: number;
  usdPerMGeneratedTokens: number;
  /** Tokens per minute per tenant (prompt + max_tokens reserved at admission); absent tenant: no quota. */
  tpmQuota?: Record<string, number>;
}

export interface FleetTenantSpec {
  name: string;
  /** Relative share of requests. */
  weight: number;
  /** The pool this tenant's requests ask for (PoolSpec.model). */
  model: string;
  /** Median prompt tokens of a request's own text (after its shared prefix, if any). */
  promptMedian: number;
  outputMedian: number;
  /** Log-normal sigma of both lengths (default 0.6). */
  lengthSigma?: number;
  /** This tenant's requests start with one of numPrefixes shared system prompts of numTokens. */
  sharedPrefix?: { numTokens: number; numPrefixes: number };
  /** Lower runs first where a pool's engine uses the priority policy (default 0). */
  priority?: number;
}

export type FleetArrival =
  | { kind: 'poisson'; ratePerS: number }
  /** Poisson at ratePerS, times factor from atS for durationS (the "10x in a minute" spike). */
  | { kind: 'spike'; ratePerS: number; factor: number; atS: number; durationS: number };

/**
 * A change planted in the workload from atS on, for the P99 hunt: one tenant's prompts grow by
 * promptFactor (head-of-line blocking), and/or its system prompt changes each request (prefix
 * cache hit rate collapses).
 */
export interface PlantedChange {
  atS: number;
  tenant: string;
  promptFactor?: number;
  /** From atS the tenant's shared prefix differs per request (a templated system prompt with a timestamp in it). */
  breakPrefix?: boolean;
  /** Shown only after the user reveals it (the hunt's answer). */
  description: string;
}

export interface FleetWorkloadSpec {
  seed: number;
  numRequests: number;
  arrival: FleetArrival;
  tenants: FleetTenantSpec[];
  planted?: PlantedChange;
}

export interface FleetSpec {
  name: string;
  pools: PoolSpec[];
  workload: FleetWorkloadSpec;
  spotLosses?: SpotLossSpec[];
  moderation?: ModerationSpec;
  billing: BillingSpec;
  /** A request meets its SLO when its TTFT is at most this (and it completed). */
  sloTtftS: number;
  /** Simulated time at most (requests still running then end 'abort' with that reason). */
  maxDurationS?: number;
  /** Interval of ReplicaSample and FleetSeries, s (default: the arrival span / 150, at least 0.5 s). */
  sampleIntervalS?: number;
}

/** One moderation check of a request: submitted, started when a checker was free, done. */
export interface ModerationCheck {
  stage: 'input' | 'output';
  submitS: number;
  startS: number;
  doneS: number;
  /** Output checks: the generated tokens checked so far (this chunk's end). */
  upToToken?: number;
  flagged: boolean;
}

/** The phases a request's time is split into (RequestBreakdown's parts, one at a time). */
export type RequestPhase = 'queue' | 'moderation' | 'prefill' | 'decode' | 'preempted' | 'recompute';

/** One stretch of a request's life in one phase (on a replica, when it was on one). */
export interface RequestSpan {
  phase: RequestPhase;
  startS: number;
  endS: number;
  replica?: string;
}

/** Time spent per phase of one request, s; the parts add up to its end-to-end time. */
export interface RequestBreakdown {
  /** Waiting: router queue + engine queue (excluding moderation). */
  queueS: number;
  moderationS: number;
  prefillS: number;
  decodeS: number;
  /** Out of the batch after a preemption, until it ran again. */
  preemptedS: number;
  /** Computing again what a preemption or a lost replica threw away. */
  recomputeS: number;
}

export type FleetFinishReason = 'stop' | 'length' | 'content_filter' | 'rejected' | 'failed' | 'abort';

export interface FleetRequestRecord {
  id: string;
  tenant: string;
  model: string;
  arrivalS: number;
  /** Replicas it was sent to, in order (more than one: re-routed after a spot loss). */
  replicas: string[];
  promptTokens: number;
  cachedPromptTokens: number;
  outputTokens: number;
  finishReason: FleetFinishReason;
  /** Why, in words, for rejected / failed / content_filter / abort. */
  reason?: string;
  /** Absent: never produced a token. */
  ttftS?: number;
  e2eS?: number;
  breakdown: RequestBreakdown;
  numPreemptions: number;
  /** Its life phase by phase, in order (contiguous from arrivalS to arrivalS + e2eS); the breakdown sums these. */
  spans?: RequestSpan[];
  /**
   * Its moderation checks (with a moderation stage): the input check, then one per output chunk.
   * Output checks run beside decoding; only the wait for the last one after the final token shows
   * as moderation in the breakdown.
   */
  moderationChecks?: ModerationCheck[];
  /** What the tenant is billed for this request, USD (what is billed on content_filter is stated in BillingResult.policy). */
  billedUsd: number;
}

/** One sample of a replica, at the fleet's sampling interval. */
export interface ReplicaSample {
  tS: number;
  state: ReplicaState;
  waiting: number;
  running: number;
  /** KV blocks in use / total, [0, 1]. */
  kvUsage: number;
}

export interface ReplicaRecord {
  id: string;
  model: string;
  /** When it was ordered (cold start begins), s; 0 for initial replicas. */
  createdS: number;
  /** When it went away (scaled down or lost); absent: to the end. */
  endedS?: number;
  coldStartS: number;
  states: { atS: number; state: ReplicaState; reason: string }[];
  samples: ReplicaSample[];
  gpuHours: number;
}

export interface RouterDecision {
  atS: number;
  requestId: string;
  model: string;
  replica: string;
  policy: RouterPolicy;
  /** E.g. "prefix 3 cached on r2 (12 outstanding, cap 8 above least loaded r0): r0 instead". */
  reason: string;
}

export interface AutoscalerDecision {
  atS: number;
  model: string;
  from: number;
  to: number;
  metric: AutoscaleMetric;
  value: number;
  /** E.g. "queue 14.2/replica > target 4: +2 replicas (cold start 38.0 s)". */
  reason: string;
}

/** Fleet-wide series at the sampling interval (parallel arrays, same length as tS). */
export interface FleetSeries {
  tS: number[];
  arrivalsPerS: number[];
  servingReplicas: number[];
  /** Replicas ordered but not yet serving (cold or warming). */
  startingReplicas: number[];
  /** SLO attainment of the requests that finished so far. */
  sloAttainment: number[];
  /** Cumulative cost so far, USD. */
  costUsd: number[];
  /** P99 TTFT of the requests that got their first token in the last window, s (NaN: none). */
  p99TtftS: number[];
}

export interface TenantBill {
  tenant: string;
  promptTokens: number;
  cachedPromptTokens: number;
  generatedTokens: number;
  usd: number;
  /** Requests refused by the tokens-per-minute quota. */
  quotaRejected: number;
}

export interface BillingResult {
  tenants: TenantBill[];
  /** GPU cost of every replica's lifetime (cold start included), USD. */
  gpuUsd: number;
  gpuHours: number;
  /** Fleet GPU cost per million generated tokens, USD. */
  costPerMTokensUsd: number;
  /** What is billed when moderation stops a stream, in words. */
  policy: string;
}

/** The figures a run is judged by (the bench's per-fleet JSON and the Guide's proof). */
export interface FleetSummary {
  numRequests: number;
  numCompleted: number;
  replicasMax: number;
  p50TtftS: number;
  p99TtftS: number;
  p99E2eS: number;
  sloAttainment: number;
  gpuHours: number;
  costUsd: number;
  /** Requests that ended without an answer because of a fault (a lost replica with onLoss 'fail', or nowhere left to go). */
  lostRequests: number;
  reroutedRequests: number;
  /** Prompt tokens served from a prefix cache / all prompt tokens. */
  prefixHitRate: number;
  contentFiltered: number;
  quotaRejected: number;
  /** Generated tokens per second of simulated time. */
  throughputTokPerS: number;
  durationS: number;
}

export interface FleetResult {
  spec: FleetSpec;
  summary: FleetSummary;
  requests: FleetRequestRecord[];
  replicas: ReplicaRecord[];
  /**
   * The router's decisions: all of the first 2,000, then one in 10, at most 10,000 kept
   * (routerDecisionsTotal says how many were made).
   */
  routerDecisions: RouterDecision[];
  /** Router decisions made in all (routerDecisions keeps a bounded sample). */
  routerDecisionsTotal?: number;
  autoscalerDecisions: AutoscalerDecision[];
  series: FleetSeries;
  billing: BillingResult;
  /** "Two models, one pool": what consolidating the pools would cost (present when there are several pools). */
  consolidation?: { separateGpus: number; sharedGpus: number; explanation: string };
}

/** The presets the fleet view offers and the Guide opens (URL: ?view=fleet&fleet=<id>). */
export const FLEET_PRESET_IDS = ['spike', 'spot-loss', 'prefix-affinity', 'two-models', 'moderation', 'quotas-billing', 'p99-hunt'] as const;
export type FleetPresetId = (typeof FLEET_PRESET_IDS)[number];

/**
 * A preset: one or two fleets run on the same workload (side by side: fixed vs autoscaled,
 * round-robin vs prefix-affinity, ...), with what to watch.
 */
export interface FleetPreset {
  id: FleetPresetId;
  title: string;
  /** Two or three sentences: the question and what the run shows. */
  summary: string;
  /** What to look at, in order. */
  watch: string[];
  /** One fleet, or two compared on the same workload (labels say which is which). */
  runs: { label: string; spec: FleetSpec }[];
}

/*
 * The simulation's entry points (implemented in this folder):
 *   runFleet(spec: FleetSpec, options?: { onProgress?(fraction: number): void; signal?: AbortSignal }): Promise<FleetResult>
 *     (fleet.ts) — seeded and deterministic: the same spec gives the same result; yields to the
 *     event loop now and then so a page stays responsive; refuses an impossible spec with a
 *     RangeError naming the field.
 *   fleetPreset(id: FleetPresetId): FleetPreset (presets.ts).
 *   fleetChromeTrace(result: FleetResult) (src/export/fleet-trace.ts) — the run as a Chrome/Perfetto trace.
 */
