/**
 * Reads the results file `vllm bench serve --save-result --save-detailed` writes, checks it, and
 * gives its per-request latencies and their P50/P90/P99, for the lab's latency views to show beside
 * its own run. Times in the file are seconds on the benchmark client's wall clock
 * (time.perf_counter); here they are milliseconds on that same clock.
 *
 * The shape, from vLLM's source (vllm-project/vllm on GitHub), vllm/benchmarks/serve.py at commit
 * 009e6d4a1cd6 (`benchmark()`'s result dict and `main_async`'s result_json):
 * - run fields: `date` (strftime "%Y%m%d-%H%M%S"), `backend`, `label`, `model_id`, `tokenizer_id`,
 *   `num_prompts`, `request_rate` (a number, or the string "inf"), `burstiness`, `max_concurrency`,
 *   `duration` (s), `completed`, `failed`, `total_input_tokens`, `total_output_tokens`,
 *   `request_throughput`, `output_throughput`, `total_token_throughput`, and the summary
 *   `mean_/median_/std_/p<N>_{ttft,tpot,itl,e2el}_ms` for the selected metrics and percentiles;
 * - per request (kept only with --save-detailed), in the order the requests were sent:
 *   `input_lens` (prompt tokens on the server's tokenizer), `output_lens` (0 for a failed request),
 *   `ttfts` (s; 0.0 for a failed one), `itls` (a list of s per request), `generated_texts`,
 *   `errors` ("" for a success), and in later versions `latencies` (E2E, s), `start_times`.
 * Earlier versions have no `latencies`: E2E is then the first token's time plus the request's ITLs,
 * which is how the benchmark measures it (`latency = most_recent_timestamp - st`, the ITLs being the
 * gaps between those timestamps). TPOT per request is vLLM's: (E2E - TTFT) / (output_len - 1).
 * Percentiles are numpy's default (linear between closest ranks), as vLLM computes them.
 */
import { percentile } from '../engine/metrics.ts';

export interface VllmRequestResult {
  inputLen: number;
  outputLen: number;
  /** Time to first token, ms (client wall clock). */
  ttftMs: number;
  /** Gaps between streamed chunks, ms. */
  itlMs: number[];
  /** Sending the request to its last chunk, ms. */
  e2eMs: number;
  /** (E2E - TTFT) / (output_len - 1), ms; NaN for one output token. */
  tpotMs: number;
  /** "" for a success. */
  error: string;
}

export interface Percentiles {
  count: number;
  p50: number;
  p90: number;
  p99: number;
}

export interface VllmBenchRun {
  /** As vLLM writes it ("20260301-142233"). */
  date: string;
  modelId: string;
  tokenizerId: string | null;
  backend: string | null;
  label: string | null;
  /** --num-prompts as given (the requests sent are `requests.length`). */
  numPrompts: number;
  /** Requests per second, or Infinity for "inf" (all at time 0). */
  requestRate: number;
  burstiness: number;
  maxConcurrency: number | null;
  durationS: number;
  completed: number;
  failed: number;
  requests: VllmRequestResult[];
  /** Where each request's E2E came from. */
  e2eSource: 'latencies' | 'ttft + itls';
  /** Over successful requests (ITL: over every gap of every successful request). */
  stats: { ttft: Percentiles; tpot: Percentiles; itl: Percentiles; e2e: Percentiles };
  /** Mean prompt tokens as the server counted them (successful requests). */
  meanInputLen: number;
}

/** The file refused: every problem, each with the key it is about. */
export class VllmResultError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`vllm bench serve results: ${problems.slice(0, 8).join('; ')}${problems.length > 8 ? `; and ${problems.length - 8} more` : ''}`);
    this.name = 'VllmResultError';
  }
}

/** Requests one imported file may hold (the benchmark's --num-prompts is rarely above this). */
export const MAX_VLLM_REQUESTS = 100_000;

const PER_REQUEST_KEYS = ['input_lens', 'output_lens', 'ttfts', 'itls', 'errors'] as const;

function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null || v === undefined) return String(v);
  return Array.isArray(v) ? 'an array' : 'an object';
}

const finiteAtLeast0 = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0;
const count = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 0;

function stats(values: number[]): Percentiles {
  const s = Float64Array.from(values).sort();
  return { count: s.length, p50: percentile(s, 50), p90: percentile(s, 90), p99: percentile(s, 99) };
}

/** What the text is instead, when it is plainly another kind of file. */
function whatElse(text: string, data: unknown): string | null {
  const firstLine = text.trimStart().split('\n', 1)[0];
  if (data === undefined) {
    try {
      const line = JSON.parse(firstLine) as Record<string, unknown>;
      if (line && typeof line === 'object' && 'prompt' in line) return 'this is a benchmark dataset (JSONL lines with "prompt"), not the results of a run: import the file --result-filename names';
      if (line && typeof line === 'object' && ('ttfts' in line || 'completed' in line)) return 'the file holds several results one after another (written with --append-result): save one run per file (--result-filename) and import that';
    } catch {
      return null;
    }
    return null;
  }
  if (data && typeof data === 'object' && !Array.isArray(data)) {
    const o = data as Record<string, unknown>;
    if (o.format === 'servelab-trace') return 'this is a servelab request trace, not vllm bench serve results (import it above, as a trace)';
    if (o.format === 'servelab-run') return 'this is a saved servelab run, not vllm bench serve results (import it above, as a run)';
    if ('numRequests' in o && 'arrival' in o) return 'this is a servelab workload, not vllm bench serve results';
  }
  return null;
}

/** Parses and checks a results file; throws VllmResultError naming every problem (nothing half-read). */
export function parseVllmBenchResult(text: string): VllmBenchRun {
  let data: unknown;
  try {
    // Python's json.dump writes NaN and Infinity bare (e.g. a mean over nothing); JSON has neither.
    data = JSON.parse(text.replace(/(?<=[:[,]\s*)-?(?:NaN|Infinity)(?=\s*[,\]}])/g, 'null'));
  } catch (e) {
    const other = whatElse(text, undefined);
    throw new VllmResultError([other ?? `not JSON: ${(e as Error).message}`]);
  }
  const other = whatElse(text, data);
  if (other) throw new VllmResultError([other]);
  if (typeof data !== 'object' || data === null || Array.isArray(data)) throw new VllmResultError([`the results are a JSON object, got ${show(data)}`]);
  const o = data as Record<string, unknown>;
  const problems: string[] = [];
  const field = (k: string): unknown => (Object.hasOwn(o, k) ? o[k] : undefined);

  const missingDetail = PER_REQUEST_KEYS.filter((k) => field(k) === undefined);
  if (missingDetail.length === PER_REQUEST_KEYS.length && (field('completed') !== undefined || field('mean_ttft_ms') !== undefined)) {
    throw new VllmResultError([`no per-request results (${PER_REQUEST_KEYS.join(', ')}): the run was saved without --save-detailed; run it again with --save-result --save-detailed`]);
  }
  for (const k of missingDetail) problems.push(`${k} is missing (written by --save-detailed)`);

  const date = field('date');
  if (typeof date !== 'string' || date.length === 0) problems.push(`date must be the run's date string, got ${show(date)}`);
  const modelId = field('model_id');
  if (typeof modelId !== 'string' || modelId.length === 0) problems.push(`model_id must be the served model's name, got ${show(modelId)}`);
  const numPrompts = field('num_prompts');
  // --num-prompts as given: 0 or less takes every line of the dataset, and with --no-oversample a
  // short dataset sends fewer than asked, so it need not equal the number of requests.
  if (!Number.isInteger(numPrompts)) problems.push(`num_prompts must be an integer, got ${show(numPrompts)}`);
  const rate = field('request_rate');
  const requestRate = rate === 'inf' ? Infinity : rate;
  if (!(requestRate === Infinity || (typeof requestRate === 'number' && Number.isFinite(requestRate) && requestRate > 0))) problems.push(`request_rate must be a number > 0 or "inf", got ${show(rate)}`);
  const burstiness = field('burstiness') ?? 1;
  if (!(typeof burstiness === 'number' && burstiness > 0)) problems.push(`burstiness must be a number > 0, got ${show(burstiness)}`);
  const duration = field('duration');
  if (!finiteAtLeast0(duration)) problems.push(`duration must be the run's length in seconds, got ${show(duration)}`);
  const completed = field('completed');
  if (!count(completed)) problems.push(`completed must be an integer >= 0, got ${show(completed)}`);
  const failedRaw = field('failed');
  if (failedRaw !== undefined && !count(failedRaw)) problems.push(`failed must be an integer >= 0, got ${show(failedRaw)}`);
  const maxConcurrency = field('max_concurrency') ?? null;
  if (maxConcurrency !== null && !count(maxConcurrency)) problems.push(`max_concurrency must be an integer or null, got ${show(maxConcurrency)}`);
  const optionalText = (k: string): string | null => {
    const v = field(k);
    if (v === undefined || v === null) return null;
    if (typeof v !== 'string') {
      problems.push(`${k} must be a string, got ${show(v)}`);
      return null;
    }
    return v;
  };
  const tokenizerId = optionalText('tokenizer_id');
  const backend = optionalText('backend');
  const label = optionalText('label');

  // Per-request arrays: all the same length; each entry checked.
  const arrays = new Map<string, unknown[]>();
  for (const k of [...PER_REQUEST_KEYS, 'latencies'] as const) {
    const v = field(k);
    if (v === undefined) continue;
    if (!Array.isArray(v)) problems.push(`${k} must be a list (one entry per request), got ${show(v)}`);
    else if (v.length > MAX_VLLM_REQUESTS) problems.push(`${k} has ${v.length} entries; at most ${MAX_VLLM_REQUESTS} requests are read`);
    else arrays.set(k, v);
  }
  const n = arrays.get('ttfts')?.length ?? 0;
  for (const [k, v] of arrays) if (v.length !== n) problems.push(`${k} has ${v.length} entries but ttfts has ${n}: one entry per request in each`);
  if (arrays.has('ttfts') && n === 0) problems.push('ttfts is empty: the run has no requests');

  const bad = new Map<string, number[]>();
  const badAt = (k: string, i: number) => {
    const list = bad.get(k) ?? [];
    list.push(i);
    bad.set(k, list);
  };
  const requests: VllmRequestResult[] = [];
  if (problems.length === 0) {
    const inputLens = arrays.get('input_lens')!;
    const outputLens = arrays.get('output_lens')!;
    const ttfts = arrays.get('ttfts')!;
    const itls = arrays.get('itls')!;
    const errors = arrays.get('errors')!;
    const latencies = arrays.get('latencies');
    for (let i = 0; i < n; i++) {
      const inputLen = inputLens[i];
      const outputLen = outputLens[i];
      const ttft = ttfts[i];
      const itl = itls[i];
      const error = errors[i];
      if (!count(inputLen)) badAt('input_lens', i);
      if (!count(outputLen)) badAt('output_lens', i);
      if (!finiteAtLeast0(ttft)) badAt('ttfts', i);
      if (!Array.isArray(itl) || !itl.every(finiteAtLeast0)) badAt('itls', i);
      if (typeof error !== 'string' && error !== null) badAt('errors', i);
      const latency = latencies?.[i];
      if (latencies && !finiteAtLeast0(latency)) badAt('latencies', i);
      if (bad.size > 0) continue;
      const itlMs = (itl as number[]).map((x) => x * 1000);
      const ttftMs = (ttft as number) * 1000;
      const e2eMs = latencies ? (latency as number) * 1000 : ttftMs + itlMs.reduce((a, b) => a + b, 0);
      const out = outputLen as number;
      requests.push({ inputLen: inputLen as number, outputLen: out, ttftMs, itlMs, e2eMs, tpotMs: out > 1 ? (e2eMs - ttftMs) / (out - 1) : NaN, error: (error as string | null) ?? '' });
    }
    for (const [k, at] of bad) {
      const what: Record<string, string> = {
        input_lens: 'an integer >= 0',
        output_lens: 'an integer >= 0',
        ttfts: 'a number of seconds >= 0',
        itls: 'a list of numbers of seconds >= 0',
        errors: 'a string ("" for a success)',
        latencies: 'a number of seconds >= 0',
      };
      problems.push(`${k}[${at.slice(0, 5).join(', ')}${at.length > 5 ? `, … (${at.length} entries)` : ''}] must each be ${what[k]}, got ${show((arrays.get(k) ?? [])[at[0]])} at ${at[0]}`);
    }
  }
  if (problems.length > 0) throw new VllmResultError(problems);

  const ok = requests.filter((r) => r.error === '');
  if (ok.length === 0) throw new VllmResultError([`every request failed (${requests.length}); the first error: ${show(requests[0]?.error)}`]);
  return {
    date: date as string,
    modelId: modelId as string,
    tokenizerId,
    backend,
    label,
    numPrompts: numPrompts as number,
    requestRate: requestRate as number,
    burstiness: burstiness as number,
    maxConcurrency: maxConcurrency as number | null,
    durationS: duration as number,
    completed: completed as number,
    failed: (failedRaw as number | undefined) ?? requests.length - ok.length,
    requests,
    e2eSource: arrays.has('latencies') ? 'latencies' : 'ttft + itls',
    stats: {
      ttft: stats(ok.map((r) => r.ttftMs)),
      tpot: stats(ok.flatMap((r) => (Number.isFinite(r.tpotMs) ? [r.tpotMs] : []))),
      itl: stats(ok.flatMap((r) => r.itlMs)),
      e2e: stats(ok.map((r) => r.e2eMs)),
    },
    meanInputLen: ok.reduce((a, r) => a + r.inputLen, 0) / ok.length,
  };
}

/** vLLM's date ("20260301-142233") in words ("2026-03-01 14:22:33"); other text as it is. */
export function vllmDateWords(date: string): string {
  const m = /^(\d{4})(\d{2})(\d{2})-(\d{2})(\d{2})(\d{2})$/.exec(date);
  return m ? `${m[1]}-${m[2]}-${m[3]} ${m[4]}:${m[5]}:${m[6]}` : date;
}
