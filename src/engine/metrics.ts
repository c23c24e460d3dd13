/**
 * Serving metrics: per-request latencies (queue time, TTFT, inter-token latency, time per output
 * token, end-to-end), rolling percentiles, throughput, batch statistics, and a Prometheus text
 * exposition under vLLM's metric names. All times are on the engine clock.
 */
import type { Request } from './request.ts';

/**
 * Percentile of sorted values with linear interpolation between closest ranks (numpy's default):
 * rank = p/100 * (n - 1). NaN for no values.
 */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  const n = sorted.length;
  if (n === 0) return NaN;
  const rank = (p / 100) * (n - 1);
  const lo = Math.floor(rank);
  const hi = Math.min(n - 1, lo + 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo);
}

/** The last `capacity` observations, for rolling percentiles. */
export class RollingWindow {
  private readonly values: Float64Array;
  private next = 0;
  private count = 0;
  constructor(readonly capacity = 1000) {
    this.values = new Float64Array(capacity);
  }
  push(v: number): void {
    this.values[this.next] = v;
    this.next = (this.next + 1) % this.capacity;
    if (this.count < this.capacity) this.count++;
  }
  get size(): number {
    return this.count;
  }
  sorted(): Float64Array {
    return this.values.slice(0, this.count).sort();
  }
  stats(): LatencyStats {
    const s = this.sorted();
    let sum = 0;
    for (const v of s) sum += v;
    return { count: s.length, mean: s.length ? sum / s.length : NaN, p50: percentile(s, 50), p90: percentile(s, 90), p99: percentile(s, 99) };
  }
}

export interface LatencyStats {
  count: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
}

/** A cumulative Prometheus histogram (upper bounds in the observed unit). */
export class Histogram {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(readonly upperBounds: readonly number[]) {
    this.counts = new Float64Array(upperBounds.length);
  }
  observe(v: number): void {
    this.sum += v;
    this.count++;
    for (let i = 0; i < this.upperBounds.length; i++) if (v <= this.upperBounds[i]) this.counts[i]++;
  }
}

// vLLM's buckets (seconds), with finer low ends for the small models this lab runs.
const TTFT_BUCKETS_S = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640, 2560];
const ITL_BUCKETS_S = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80];
const REQUEST_BUCKETS_S = [0.01, 0.05, 0.1, 0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680];
const TOKEN_COUNT_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000];
const ITERATION_TOKEN_BUCKETS = [1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384];

/** Gauges the engine reads from the scheduler when a summary or exposition is taken. */
export interface MetricsGauges {
  numRunning: number;
  numWaiting: number;
  numSwapped: number;
  /** Sequence slots taken by running requests (a request with n samples takes n). */
  numRunningSeqs: number;
  /** Fraction of GPU blocks held by sequences. */
  kvUsage: number;
  /** Fraction of slots in held GPU blocks that hold no token (internal fragmentation). */
  kvFragmentation: number;
  cpuUsage: number;
  numPrefixQueryTokens: number;
  numPrefixHitTokens: number;
}

export interface MetricsSummary extends MetricsGauges {
  nowMs: number;
  numSteps: number;
  numFinished: number;
  numFailed: number;
  numRejected: number;
  numPreemptions: number;
  rejectionsByReason: Record<string, number>;
  failuresByReason: Record<string, number>;
  queueMs: LatencyStats;
  ttftMs: LatencyStats;
  itlMs: LatencyStats;
  tpotMs: LatencyStats;
  e2eMs: LatencyStats;
  /** Over the rolling window of recent steps (busy and idle time between them). */
  prefillTokensPerS: number;
  decodeTokensPerS: number;
  /** Since the first step. */
  totalPromptTokens: number;
  totalGenerationTokens: number;
  meanBatchSize: number;
  meanTokensPerStep: number;
  prefixCacheHitRate: number;
  /** Speculative decoding since the first step (zeros without it). */
  spec: SpecDecodeStats;
}

/** Speculative decoding counters (vLLM's spec_decode metrics) and what they mean. */
export interface SpecDecodeStats {
  /** vllm:spec_decode_num_drafts: verifications (a sequence's drafts in one step). */
  numDrafts: number;
  /** vllm:spec_decode_num_draft_tokens */
  numDraftTokens: number;
  /** vllm:spec_decode_num_accepted_tokens */
  numAcceptedTokens: number;
  /** vllm:spec_decode_num_accepted_tokens_per_pos: accepted drafts by position (0 = the first draft). */
  acceptedPerPos: number[];
  /** Drafts proposed by position (for the acceptance rate at each position). */
  draftsPerPos: number[];
  /** Accepted / draft tokens (0 when none). */
  acceptanceRate: number;
  /** Tokens a verification yields on average: 1 + accepted / drafts (vLLM's mean acceptance length; 0 when none). */
  meanAcceptedLength: number;
}

export class MetricsCollector {
  readonly queueMs = new RollingWindow();
  readonly ttftMs = new RollingWindow();
  readonly itlMs = new RollingWindow();
  readonly tpotMs = new RollingWindow();
  readonly e2eMs = new RollingWindow();
  readonly batchSize = new RollingWindow(256);
  numSpecDrafts = 0;
  numSpecDraftTokens = 0;
  numSpecAcceptedTokens = 0;
  readonly specAcceptedPerPos: number[] = [];
  readonly specDraftsPerPos: number[] = [];
  readonly tokensPerStep = new RollingWindow(256);
  readonly ttftHist = new Histogram(TTFT_BUCKETS_S);
  readonly itlHist = new Histogram(ITL_BUCKETS_S);
  readonly tpotHist = new Histogram(ITL_BUCKETS_S);
  readonly e2eHist = new Histogram(REQUEST_BUCKETS_S);
  readonly queueHist = new Histogram(REQUEST_BUCKETS_S);
  readonly prefillTimeHist = new Histogram(REQUEST_BUCKETS_S);
  readonly decodeTimeHist = new Histogram(REQUEST_BUCKETS_S);
  readonly promptTokensHist = new Histogram(TOKEN_COUNT_BUCKETS);
  readonly generationTokensHist = new Histogram(TOKEN_COUNT_BUCKETS);
  readonly iterationTokensHist = new Histogram(ITERATION_TOKEN_BUCKETS);
  numSteps = 0;
  numFinished = 0;
  numFailed = 0;
  numRejected = 0;
  numPreemptions = 0;
  totalPromptTokens = 0;
  totalGenerationTokens = 0;
  readonly rejectionsByReason: Record<string, number> = {};
  readonly failuresByReason: Record<string, number> = {};
  readonly finishedByReason: Record<string, number> = {};
  /** Per live request: ITL entries already observed, and whether TTFT was. */
  private readonly cursors = new Map<Request, { numItl: number; ttftSeen: boolean }>();
  /** Recent steps [endMs, durationMs, prefill, decode] for rolling throughput. */
  private readonly recentSteps: [number, number, number, number][] = [];
  private readonly recentCapacity = 64;

  /** Token timings of the requests a step touched (TTFT, ITL as they happen). */
  observeProgress(request: Request): void {
    let c = this.cursors.get(request);
    if (!c) {
      c = { numItl: 0, ttftSeen: false };
      this.cursors.set(request, c);
    }
    if (!c.ttftSeen && !Number.isNaN(request.firstTokenMs)) {
      c.ttftSeen = true;
      const ttft = request.firstTokenMs - request.arrivalMs;
      this.ttftMs.push(ttft);
      this.ttftHist.observe(ttft / 1000);
    }
    const itls = request.interTokenLatenciesMs;
    for (; c.numItl < itls.length; c.numItl++) {
      this.itlMs.push(itls[c.numItl]);
      this.itlHist.observe(itls[c.numItl] / 1000);
    }
  }

  /** A request ended (finished, failed or rejected). */
  observeEnd(request: Request): void {
    this.observeProgress(request);
    this.cursors.delete(request);
    const reason = request.endReason ?? 'unknown';
    if (request.state === 'rejected') {
      this.numRejected++;
      this.rejectionsByReason[reason] = (this.rejectionsByReason[reason] ?? 0) + 1;
      return;
    }
    if (request.state === 'failed') {
      this.numFailed++;
      this.failuresByReason[reason] = (this.failuresByReason[reason] ?? 0) + 1;
      return;
    }
    this.numFinished++;
    this.finishedByReason[reason] = (this.finishedByReason[reason] ?? 0) + 1;
    const queue = request.firstScheduledMs - request.arrivalMs;
    const e2e = request.finishedMs - request.arrivalMs;
    this.queueMs.push(queue);
    this.queueHist.observe(queue / 1000);
    this.e2eMs.push(e2e);
    this.e2eHist.observe(e2e / 1000);
    this.prefillTimeHist.observe((request.firstTokenMs - request.firstScheduledMs) / 1000);
    this.decodeTimeHist.observe((request.lastTokenMs - request.firstTokenMs) / 1000);
    this.promptTokensHist.observe(request.numPromptTokens);
    let generated = 0;
    for (const s of request.seqs) generated += s.numOutputTokens;
    this.generationTokensHist.observe(generated);
    const itls = request.interTokenLatenciesMs;
    if (itls.length > 0) {
      // Time per output token: (last token - first token) / (samples - 1), the mean gap.
      const tpot = (request.lastTokenMs - request.firstTokenMs) / itls.length;
      this.tpotMs.push(tpot);
      this.tpotHist.observe(tpot / 1000);
    }
  }

  observeStep(endMs: number, durationMs: number, numSeqs: number, numPrefillTokens: number, numDecodeTokens: number): void {
    this.numSteps++;
    this.totalPromptTokens += numPrefillTokens;
    this.totalGenerationTokens += numDecodeTokens;
    this.batchSize.push(numSeqs);
    this.tokensPerStep.push(numPrefillTokens + numDecodeTokens);
    this.iterationTokensHist.observe(numPrefillTokens + numDecodeTokens);
    this.recentSteps.push([endMs, durationMs, numPrefillTokens, numDecodeTokens]);
    if (this.recentSteps.length > this.recentCapacity) this.recentSteps.shift();
  }

  /** One sequence's verification in a step: numDraftTokens drafts, the first numAccepted of them accepted. */
  observeDrafts(numDraftTokens: number, numAccepted: number): void {
    this.numSpecDrafts++;
    this.numSpecDraftTokens += numDraftTokens;
    this.numSpecAcceptedTokens += numAccepted;
    for (let i = 0; i < numDraftTokens; i++) {
      this.specDraftsPerPos[i] = (this.specDraftsPerPos[i] ?? 0) + 1;
      this.specAcceptedPerPos[i] = (this.specAcceptedPerPos[i] ?? 0) + (i < numAccepted ? 1 : 0);
    }
  }

  specStats(): SpecDecodeStats {
    return {
      numDrafts: this.numSpecDrafts,
      numDraftTokens: this.numSpecDraftTokens,
      numAcceptedTokens: this.numSpecAcceptedTokens,
      acceptedPerPos: this.specAcceptedPerPos.slice(),
      draftsPerPos: this.specDraftsPerPos.slice(),
      acceptanceRate: this.numSpecDraftTokens > 0 ? this.numSpecAcceptedTokens / this.numSpecDraftTokens : 0,
      meanAcceptedLength: this.numSpecDrafts > 0 ? 1 + this.numSpecAcceptedTokens / this.numSpecDrafts : 0,
    };
  }

  observePreemption(): void {
    this.numPreemptions++;
  }

  /** Rolling throughput: tokens of recent steps over the time from the first one's start to the last one's end. */
  throughput(): { prefillTokensPerS: number; decodeTokensPerS: number } {
    const r = this.recentSteps;
    if (r.length === 0) return { prefillTokensPerS: 0, decodeTokensPerS: 0 };
    const spanMs = r[r.length - 1][0] - (r[0][0] - r[0][1]);
    let prefill = 0;
    let decode = 0;
    for (const [, , p, d] of r) {
      prefill += p;
      decode += d;
    }
    if (spanMs <= 0) return { prefillTokensPerS: 0, decodeTokensPerS: 0 };
    return { prefillTokensPerS: (prefill * 1000) / spanMs, decodeTokensPerS: (decode * 1000) / spanMs };
  }

  summary(nowMs: number, gauges: MetricsGauges): MetricsSummary {
    const tp = this.throughput();
    return {
      ...gauges,
      nowMs,
      numSteps: this.numSteps,
      numFinished: this.numFinished,
      numFailed: this.numFailed,
      numRejected: this.numRejected,
      numPreemptions: this.numPreemptions,
      rejectionsByReason: { ...this.rejectionsByReason },
      failuresByReason: { ...this.failuresByReason },
      queueMs: this.queueMs.stats(),
      ttftMs: this.ttftMs.stats(),
      itlMs: this.itlMs.stats(),
      tpotMs: this.tpotMs.stats(),
      e2eMs: this.e2eMs.stats(),
      prefillTokensPerS: tp.prefillTokensPerS,
      decodeTokensPerS: tp.decodeTokensPerS,
      totalPromptTokens: this.totalPromptTokens,
      totalGenerationTokens: this.totalGenerationTokens,
      meanBatchSize: this.batchSize.stats().mean || 0,
      meanTokensPerStep: this.tokensPerStep.stats().mean || 0,
      prefixCacheHitRate: gauges.numPrefixQueryTokens > 0 ? gauges.numPrefixHitTokens / gauges.numPrefixQueryTokens : 0,
      spec: this.specStats(),
    };
  }

  /** Prometheus text exposition (format 0.0.4) with vLLM's metric names. */
  prometheus(gauges: MetricsGauges, modelName: string): string {
    const label = `model_name="${escapeLabel(modelName)}"`;
    const lines: string[] = [];
    const head = (name: string, type: string, help: string) => lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    const gauge = (name: string, help: string, v: number) => {
      head(name, 'gauge', help);
      lines.push(`${name}{${label}} ${fmt(v)}`);
    };
    const counter = (name: string, help: string, v: number | Record<string, number>, key = '') => {
      head(`${name}_total`, 'counter', help);
      if (typeof v === 'number') lines.push(`${name}_total{${label}} ${fmt(v)}`);
      else for (const [k, n] of Object.entries(v)) lines.push(`${name}_total{${label},${key}="${escapeLabel(k)}"} ${fmt(n)}`);
    };
    const histogram = (name: string, help: string, h: Histogram) => {
      head(name, 'histogram', help);
      h.upperBounds.forEach((ub, i) => lines.push(`${name}_bucket{${label},le="${fmt(ub)}"} ${fmt(h.counts[i])}`));
      lines.push(`${name}_bucket{${label},le="+Inf"} ${fmt(h.count)}`, `${name}_sum{${label}} ${fmt(h.sum)}`, `${name}_count{${label}} ${fmt(h.count)}`);
    };
    gauge('vllm:num_requests_running', 'Number of requests in model execution batches.', gauges.numRunning);
    gauge('vllm:num_requests_waiting', 'Number of requests waiting to be processed.', gauges.numWaiting);
    gauge('vllm:num_requests_swapped', 'Number of requests swapped to CPU.', gauges.numSwapped);
    gauge('vllm:kv_cache_usage_perc', 'KV-cache usage. 1 means 100 percent usage.', gauges.kvUsage);
    gauge('vllm:cpu_cache_usage_perc', 'CPU swap pool usage. 1 means 100 percent usage.', gauges.cpuUsage);
    gauge('servelab:kv_cache_fragmentation_perc', 'Fraction of slots in allocated KV blocks that hold no token.', gauges.kvFragmentation);
    counter('vllm:prefix_cache_queries', 'Prefix cache queries, in terms of number of queried tokens.', gauges.numPrefixQueryTokens);
    counter('vllm:prefix_cache_hits', 'Prefix cache hits, in terms of number of cached tokens.', gauges.numPrefixHitTokens);
    counter('vllm:num_preemptions', 'Cumulative number of preemption from the engine.', this.numPreemptions);
    counter('vllm:prompt_tokens', 'Number of prefill tokens processed.', this.totalPromptTokens);
    counter('vllm:generation_tokens', 'Number of generation tokens processed.', this.totalGenerationTokens);
    counter('vllm:request_success', 'Count of successfully processed requests.', this.finishedByReason, 'finished_reason');
    counter('vllm:spec_decode_num_drafts', 'Number of spec decoding drafts.', this.numSpecDrafts);
    counter('vllm:spec_decode_num_draft_tokens', 'Number of draft tokens.', this.numSpecDraftTokens);
    counter('vllm:spec_decode_num_accepted_tokens', 'Number of accepted tokens.', this.numSpecAcceptedTokens);
    counter(
      'vllm:spec_decode_num_accepted_tokens_per_pos',
      'Accepted tokens per draft position.',
      Object.fromEntries(this.specAcceptedPerPos.map((n, i) => [String(i), n])),
      'position',
    );
    counter('servelab:request_rejected', 'Requests refused by admission control.', this.rejectionsByReason, 'reason');
    counter('servelab:request_failed', 'Requests cancelled, timed out or aborted.', this.failuresByReason, 'reason');
    histogram('vllm:time_to_first_token_seconds', 'Histogram of time to first token in seconds.', this.ttftHist);
    histogram('vllm:inter_token_latency_seconds', 'Histogram of inter-token latency in seconds.', this.itlHist);
    histogram('vllm:request_time_per_output_token_seconds', 'Histogram of time_per_output_token_seconds per request.', this.tpotHist);
    histogram('vllm:e2e_request_latency_seconds', 'Histogram of e2e request latency in seconds.', this.e2eHist);
    histogram('vllm:request_queue_time_seconds', 'Histogram of time spent in WAITING phase for request.', this.queueHist);
    histogram('vllm:request_prefill_time_seconds', 'Histogram of time spent in PREFILL phase for request.', this.prefillTimeHist);
    histogram('vllm:request_decode_time_seconds', 'Histogram of time spent in DECODE phase for request.', this.decodeTimeHist);
    histogram('vllm:request_prompt_tokens', 'Number of prefill tokens processed.', this.promptTokensHist);
    histogram('vllm:request_generation_tokens', 'Number of generation tokens processed.', this.generationTokensHist);
    histogram('vllm:iteration_tokens_total', 'Histogram of number of tokens per engine_step.', this.iterationTokensHist);
    return lines.join('\n') + '\n';
  }
}

function fmt(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

function escapeLabel(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}
