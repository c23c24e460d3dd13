/**
 * A workload as a dataset that `vllm bench serve` replays on a real vLLM server: its custom
 * dataset (JSONL, one request per line: `{"prompt": text, "output_tokens": n}`), the exact command
 * line (arrival process, output lengths held with --ignore-eos, per-request results saved for the
 * import in vllm-results.ts), and a companion note saying what carries over and what does not.
 *
 * Generic: it takes a list of requests (prompt text, its token count, output length) and an
 * arrival process, so the lab's workloads (src/serve/bench-prompts.ts) and other workload kinds
 * can use it alike.
 *
 * Followed, in vLLM's source (vllm-project/vllm on GitHub):
 * - vllm/benchmarks/datasets.py at commit f2e97ddaf590: `CustomDataset` reads a `.jsonl` file with
 *   pandas, requires a `prompt` column, takes `output_tokens` per line when `--custom-output-len`
 *   is -1 (an integer), applies the chat template unless `--skip-chat-template`, shuffles the lines
 *   (random.seed(0)) unless `--disable-shuffle`, counts `prompt_len = len(tokenizer(prompt).input_ids)`
 *   (special tokens, i.e. BOS, included); `add_dataset_parser` defines `--dataset-name custom`,
 *   `--dataset-path`, `--num-prompts`, `--seed`, `--skip-chat-template`, `--disable-shuffle`,
 *   `--custom-output-len` (default 256).
 * - vllm/benchmarks/serve.py at commit 009e6d4a1cd6: `get_request` gives each gap
 *   Gamma(shape = burstiness, scale = 1 / (request_rate * burstiness)) (burstiness 1: Poisson;
 *   request_rate inf: all at time 0), seeded by `np.random.seed(--seed)`, and rescales the
 *   cumulative delays so the last request goes out at num_prompts / request_rate; `--ignore-eos`,
 *   `--temperature` (no longer 0 by default), `--percentile-metrics` (default ttft,tpot,itl),
 *   `--metric-percentiles` (default 99), `--save-result`, `--save-detailed`, `--result-filename`.
 */
import type { ArrivalProcess, WorkloadSpec } from '../engine/workload.ts';
import type { BenchPrompts } from '../serve/bench-prompts.ts';

/** One request of a text benchmark. */
export interface BenchRequest {
  /** The prompt text as sent (the server's tokenizer adds BOS). */
  prompt: string;
  /** Its length in tokens on the exporting model's tokenizer, BOS included. */
  promptTokens: number;
  /** Tokens to generate: `output_tokens`, held exactly with --ignore-eos. */
  outputTokens: number;
}

/** One line of vLLM's custom dataset, with its field names. */
export interface CustomDatasetLine {
  prompt: string;
  output_tokens: number;
}

/** The dataset as JSONL: one `{"prompt", "output_tokens"}` object per line, in request order. */
export function customDatasetJsonl(requests: readonly BenchRequest[]): string {
  if (requests.length === 0) throw new RangeError('vllm dataset: no requests to export');
  return requests
    .map((r, i) => {
      if (!Number.isInteger(r.outputTokens) || r.outputTokens < 1) throw new RangeError(`vllm dataset: request ${i}: output_tokens must be an integer >= 1, got ${r.outputTokens}`);
      if (typeof r.prompt !== 'string' || r.prompt.length === 0) throw new RangeError(`vllm dataset: request ${i}: the prompt is empty`);
      const line: CustomDatasetLine = { prompt: r.prompt, output_tokens: r.outputTokens };
      return JSON.stringify(line);
    })
    .join('\n')
    .concat('\n');
}

/** `--request-rate` and `--burstiness` as vLLM means them, for the workload's arrival process. */
export function arrivalFlags(a: ArrivalProcess): { requestRate: string; burstiness: number } {
  switch (a.kind) {
    case 'batch':
      return { requestRate: 'inf', burstiness: 1 };
    case 'poisson':
      return { requestRate: String(a.ratePerS), burstiness: 1 };
    case 'bursty':
      return { requestRate: String(a.ratePerS), burstiness: a.burstiness };
  }
}

export interface BenchCommandOptions {
  /** The model vllm serves (Hugging Face id or path); absent: "$MODEL", set in the shell. */
  model?: string;
  /** The JSONL file's name as saved. */
  datasetPath: string;
  /** Where the benchmark writes its results (the file the lab imports). */
  resultFilename: string;
  numPrompts: number;
  arrival: ArrivalProcess;
  /** Seeds vLLM's arrival draws (--seed). */
  seed: number;
  /** The sampling temperature of every request (the lab's default is 0, greedy). */
  temperature: number;
  /** The server (default http://127.0.0.1:8000, `vllm serve`'s default port). */
  baseUrl?: string;
}

/** A word for the shell: bare when it is plain, else in single quotes. */
export function shellWord(s: string): string {
  if (s === '$MODEL') return '"$MODEL"';
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The `vllm bench serve` command line, one flag per line (backslash continuations). */
export function benchServeCommand(o: BenchCommandOptions): string {
  if (!Number.isInteger(o.numPrompts) || o.numPrompts < 1) throw new RangeError(`vllm command: num-prompts must be an integer >= 1, got ${o.numPrompts}`);
  const { requestRate, burstiness } = arrivalFlags(o.arrival);
  const lines: string[][] = [
    ['vllm', 'bench', 'serve'],
    ['--backend', 'openai', '--base-url', o.baseUrl ?? 'http://127.0.0.1:8000', '--endpoint', '/v1/completions'],
    ['--model', o.model?.trim() || '$MODEL'],
    ['--dataset-name', 'custom', '--dataset-path', o.datasetPath],
    ['--custom-output-len', '-1', '--skip-chat-template', '--disable-shuffle'],
    ['--num-prompts', String(o.numPrompts), '--request-rate', requestRate, '--burstiness', String(burstiness), '--seed', String(o.seed)],
    ['--ignore-eos', '--temperature', String(o.temperature)],
    ['--percentile-metrics', 'ttft,tpot,itl,e2el', '--metric-percentiles', '50,90,99'],
    ['--save-result', '--save-detailed', '--result-filename', o.resultFilename],
  ];
  return lines.map((l) => l.map(shellWord).join(' ')).join(' \\\n  ');
}

/** What the export could not carry, counted (each becomes a line of the note). */
export interface BenchLosses {
  parallelSampling: number;
  tenantFields: number;
  structured: number;
  lengthMismatches: number;
}

export interface BenchBundleInput {
  /** What the workload is, in words ("4. Prefix caching"). */
  label: string;
  /** The model whose tokenizer counted the prompt tokens, and its vocabulary size. */
  tokenizerModel: string;
  vocabSize: number;
  requests: readonly BenchRequest[];
  arrival: ArrivalProcess;
  seed: number;
  temperature: number;
  /** Requests sharing a system prompt (text prefix), when the workload has them. */
  sharedPrefix?: { numTokens: number; numPrefixes: number; fraction: number };
  losses: BenchLosses;
  /**
   * A workload from elsewhere than the lab (the simulated fleet) says in its own words what the
   * lab's note says of the lab's: whose token counts the prompts hold, its shared system prompts,
   * its arrivals (appended to the arrival line), where its results show, and what else it cannot
   * carry (each a line); `command` becomes a shell comment above the command line.
   */
  words?: { lengths?: string; sharedPrefix?: string; arrival?: string; results?: string; notCarried?: readonly string[]; command?: string };
  /** Base of the file names (letters, digits, dot, dash, underscore). */
  baseName: string;
  model?: string;
}

/**
 * The bundle input of a lab workload whose requests became `bench` (benchPrompts, or the worker's
 * EngineApi.benchPrompts): its arrivals, seed, temperature and shared system prompts as the lab
 * ran them.
 */
export function labBenchBundleInput(label: string, workload: WorkloadSpec, bench: BenchPrompts, baseName: string): BenchBundleInput {
  const p = workload.sharedPrefix;
  return {
    label,
    tokenizerModel: bench.model,
    vocabSize: bench.vocabSize,
    requests: bench.prompts,
    arrival: workload.arrival,
    seed: workload.seed,
    temperature: workload.temperature ?? 0,
    ...(p ? { sharedPrefix: { numTokens: p.numTokens, numPrefixes: p.numPrefixes ?? 1, fraction: p.fraction } } : {}),
    losses: bench.losses,
    baseName,
  };
}

export interface BenchBundle {
  datasetFileName: string;
  resultFileName: string;
  noteFileName: string;
  jsonl: string;
  command: string;
  /** The companion note (Markdown): the command, how to run it, what matches and what does not. */
  note: string;
}

const mean = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

function arrivalWords(a: ArrivalProcess): string {
  switch (a.kind) {
    case 'batch':
      return 'all requests at time 0 (an offline batch): `--request-rate inf`';
    case 'poisson':
      return `Poisson at ${a.ratePerS} requests/s: \`--request-rate ${a.ratePerS} --burstiness 1\``;
    case 'bursty':
      return `gamma gaps at ${a.ratePerS} requests/s with burstiness ${a.burstiness} (below 1 clusters arrivals): \`--request-rate ${a.ratePerS} --burstiness ${a.burstiness}\``;
  }
}

/** The dataset, the command and the note for one workload. */
export function vllmBenchBundle(b: BenchBundleInput): BenchBundle {
  const datasetFileName = `${b.baseName}.jsonl`;
  const resultFileName = `${b.baseName}.vllm-result.json`;
  const noteFileName = `${b.baseName}.vllm-bench.md`;
  const jsonl = customDatasetJsonl(b.requests);
  const comment = b.words?.command ? `# ${b.words.command.replace(/\s*\n\s*/g, ' ')}\n` : '';
  const command = comment + benchServeCommand({
    model: b.model,
    datasetPath: datasetFileName,
    resultFilename: resultFileName,
    numPrompts: b.requests.length,
    arrival: b.arrival,
    seed: b.seed,
    temperature: b.temperature,
  });
  const promptLens = b.requests.map((r) => r.promptTokens);
  const outputLens = b.requests.map((r) => r.outputTokens);
  const lossLines: string[] = [];
  if (b.losses.parallelSampling > 0) lossLines.push(`- ${b.losses.parallelSampling} request(s) asked for n > 1 parallel samples; the benchmark sends each once (n = 1).`);
  if (b.losses.tenantFields > 0) lossLines.push(`- ${b.losses.tenantFields} request(s) carried a tenant's priority, deadline or LoRA adapter; the benchmark sends none of them.`);
  if (b.losses.structured > 0) lossLines.push(`- ${b.losses.structured} request(s) asked for structured output; they go as free text.`);
  if (b.losses.lengthMismatches > 0) lossLines.push(`- ${b.losses.lengthMismatches} prompt(s) could not be written as text of exactly the lab's length on ${b.tokenizerModel}'s tokenizer; their lines carry the nearest length.`);
  for (const line of b.words?.notCarried ?? []) lossLines.push(`- ${line}`);
  if (lossLines.length === 0) lossLines.push('- Nothing: every request is a plain prompt with a fixed output length.');
  const note = [
    `# ${b.label}: a servelab workload for \`vllm bench serve\``,
    '',
    `${b.requests.length} requests. \`${datasetFileName}\` is vLLM's custom dataset: one JSON object per line, \`{"prompt": ..., "output_tokens": ...}\`.`,
    b.words?.lengths ?? `The prompts are story text; on ${b.tokenizerModel}'s tokenizer (${b.vocabSize} tokens) each is exactly the lab's prompt length, BOS included`,
    `(mean ${mean(promptLens).toFixed(1)}, min ${Math.min(...promptLens)}, max ${Math.max(...promptLens)} tokens); outputs are ${Math.min(...outputLens)}–${Math.max(...outputLens)} tokens (mean ${mean(outputLens).toFixed(1)}).`,
    b.words?.sharedPrefix ??
    (b.sharedPrefix
      ? `Requests that share a system prompt in the lab share the same text prefix here (${b.sharedPrefix.numPrefixes} prefix(es) of ${b.sharedPrefix.numTokens} tokens, ${Math.round(b.sharedPrefix.fraction * 100)}% of requests), so vLLM's prefix cache sees the same sharing.`
      : 'No shared system prompts in this workload.'),
    '',
    '## Run it',
    '',
    '```sh',
    b.model?.trim() ? `export MODEL=${shellWord(b.model.trim())}` : '# first: export MODEL=<the Hugging Face id or local path of the model vLLM serves>',
    'vllm serve "$MODEL"    # in one shell; wait for "Application startup complete"',
    command,
    '```',
    '',
    `Then import \`${resultFileName}\` in servelab (Manage → Runs and exports → "Import vllm bench serve results"): ${b.words?.results ?? "the latency panel shows it beside the lab's run."}`,
    '',
    '## What matches',
    '',
    `- Arrivals: ${arrivalWords(b.arrival)}.${b.words?.arrival ? ` ${b.words.arrival}` : ''} servelab's arrival process is vLLM's benchmark model (gamma gaps of shape = burstiness, scale = 1 / (rate × burstiness)).`,
    `  The draws differ: vLLM draws with numpy seeded by \`--seed ${b.seed}\` and rescales the gaps so the last request goes out at num-prompts / rate seconds; servelab draws from the workload's seed and does not rescale. Same process, another sample of it.`,
    '- Output lengths: `--custom-output-len -1` takes each line\'s `output_tokens`, and `--ignore-eos` makes the server generate exactly that many (the result\'s `output_lens` shows what it did).',
    `- Order: \`--disable-shuffle\` keeps the file's order (a vLLM release without that flag shuffles the lines with seed 0: drop the flag; the same requests go, in another order).`,
    `- Sampling: \`--temperature ${b.temperature}\` for every request (vLLM's benchmark no longer sends temperature 0 by default).${b.temperature > 0 ? ' The lab seeds each request\'s sampler and the benchmark sends no seed, so the texts differ; with --ignore-eos their lengths do not.' : ''}`,
    '',
    '## What does not',
    '',
    `- Tokens: the counts above are ${b.tokenizerModel}'s. The server counts the same text with its own model's tokenizer (the result's \`input_lens\`); a larger vocabulary such as Llama-2's 32000 tokens cuts this text into fewer, longer pieces than a ${b.vocabSize}-token one. The import shows the server's mean prompt length: against the mean above, the difference is measured, not guessed.`,
    '- Clocks: the lab times requests on its engine clock, from arrival in the engine to its steps\' ends; vLLM\'s benchmark times them on the client\'s wall clock, from sending the HTTP request to receiving each streamed chunk (network, HTTP, tokenization and detokenization included).',
    '- Not carried:',
    ...lossLines.map((l) => `  ${l}`),
    '',
  ].join('\n');
  return { datasetFileName, resultFileName, noteFileName, jsonl, command, note };
}
