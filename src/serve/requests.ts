/**
 * The serving front door: OpenAI-style completion parameters, generated workloads and imported
 * traces become the engine's RequestSpecs here, checked against the loaded model (its context,
 * its vocabulary, its own BOS/EOS ids). Every bad value is refused with a RangeError that names
 * it. Pure: no engine, no worker, no DOM.
 */
import { validateRequestSpec, type RequestSpec } from '../engine/request.ts';
import { listProblems } from '../engine/schema.ts';
import { generateWorkload, type WorkloadSpec } from '../engine/workload.ts';
import type { LoadedModel } from '../model/load.ts';
import { storyPromptTokens } from './story-prompts.ts';
import { parseResponseFormat, ResponseFormatError, type ResponseFormatParam } from './structured.ts';

/** OpenAI-style completion parameters, plus the serving lab's own. */
export interface CompletionParams {
  prompt: string;
  /** Generated tokens at most (default 128). */
  max_tokens?: number;
  /** 0 = greedy (default). */
  temperature?: number;
  top_p?: number;
  top_k?: number;
  seed?: number;
  /** Parallel samples sharing the prompt (copy-on-write). */
  n?: number;
  /** Stop strings: a sequence ends when its text contains one (the text is cut before it). */
  stop?: string[];
  /** Stream text as it is generated (default true). */
  stream?: boolean;
  priority?: number;
  tenant?: string;
  /** End-to-end deadline in ms after arrival. */
  deadline?: number;
  /** OpenAI style: "<base model>:<adapter>" runs the request with that LoRA adapter ("stories260K:tom"). */
  model?: string;
  /** The LoRA adapter to run with (vLLM's lora request; the same as a model suffix). */
  adapter?: string;
  /**
   * Structured output, as in OpenAI's API: {type: "json_object"} or {type: "json_schema",
   * json_schema: {name, schema, strict}}. The output follows the grammar XGrammar compiles from
   * it (src/serve/structured.ts): no whitespace outside strings, compact separators.
   */
  response_format?: ResponseFormatParam;
}

/** The adapter a completion names (its `adapter`, or the part of `model` after ':'), if any. */
export function adapterOf(params: Pick<CompletionParams, 'model' | 'adapter'>): string | undefined {
  if (params.adapter !== undefined) return params.adapter;
  const m = typeof params.model === 'string' ? params.model.indexOf(':') : -1;
  return m >= 0 ? params.model!.slice(m + 1) : undefined;
}

export type StreamEvent =
  | { type: 'text'; requestId: string; seqIndex: number; delta: string }
  | {
      type: 'done';
      requestId: string;
      texts: string[];
      reasons: string[];
      /** Structured output: per sequence, the parsed JSON's problems ([] when it is valid) or why it is incomplete. */
      json?: JsonCheck[];
    }
  | { type: 'error'; requestId: string; reason: string; message: string };

export interface ScenarioRun {
  workload: WorkloadSpec;
  /** Replace the random prompt tokens with real text of the same length (default true). */
  realPrompts?: boolean;
}

/** Most parallel samples one request may ask for. */
export const MAX_N = 16;

/** The model's own end-of-text tokens: EOS, and BOS (llama2.c models emit BOS between stories). */
export function stopTokenIdsOf(loaded: LoadedModel): number[] {
  const { bosId, eosId } = loaded.tokenizer.vocab;
  return bosId === eosId ? [eosId] : [eosId, bosId];
}

/** Longest prompt text accepted (characters); a longer one is refused before it is tokenized. */
export const MAX_PROMPT_CHARS = 1_000_000;

const COMPLETION_KEYS: ReadonlySet<string> = new Set(['prompt', 'max_tokens', 'temperature', 'top_p', 'top_k', 'seed', 'n', 'stop', 'stream', 'priority', 'tenant', 'deadline', 'model', 'adapter', 'response_format']);

/** A structured output's check at its end. */
export interface JsonCheck {
  /** 'valid': parses and matches the schema; 'incomplete': max_tokens ran out first; 'invalid': it does not (never expected). */
  status: 'valid' | 'incomplete' | 'invalid';
  /** What is wrong (incomplete: that the JSON was cut off). */
  message: string | null;
}

/** The request spec's fields as the completion API names them (for messages). */
const API_NAMES: Record<string, string> = {
  maxTokens: 'max_tokens',
  'sampling.temperature': 'temperature',
  'sampling.topP': 'top_p',
  'sampling.topK': 'top_k',
  'sampling.seed': 'seed',
  deadlineMs: 'deadline',
  promptTokenIds: 'prompt',
};

/** Completion parameters refused, with every problem named by its parameter. */
export class CompletionParamsError extends RangeError {
  constructor(readonly problems: readonly { param: string; message: string }[]) {
    super(problems.map((p) => p.message).join('; '));
    this.name = 'CompletionParamsError';
  }
}

/**
 * A completion request as the engine's spec (the prompt tokenized with BOS, as run.c does).
 * Every bad parameter is refused at once, all of them in one CompletionParamsError, each named
 * as the API names it (max_tokens, top_p...); the engine's own request check runs too.
 */
export function completionSpec(params: CompletionParams, requestId: string, loaded: LoadedModel, adapters?: ReadonlySet<string>): RequestSpec {
  const problems: { param: string; message: string }[] = [];
  const add = (param: string, message: string) => problems.push({ param, message });
  if (typeof params !== 'object' || params === null) throw new CompletionParamsError([{ param: 'request', message: 'the completion parameters must be an object' }]);
  for (const key of Object.keys(params)) if (!COMPLETION_KEYS.has(key)) add(key, `unknown parameter ${JSON.stringify(key)} (known: ${[...COMPLETION_KEYS].join(', ')})`);
  const seqLen = loaded.model.config.seqLen;
  const maxTokens = params.max_tokens ?? 128;
  const n = params.n ?? 1;
  if (!Number.isInteger(maxTokens) || maxTokens < 1) add('max_tokens', `max_tokens must be a positive integer, got ${String(maxTokens)}`);
  if (!Number.isInteger(n) || n < 1 || n > MAX_N) add('n', `n must be an integer from 1 to ${MAX_N}, got ${String(n)}`);
  if (params.stop !== undefined && !(Array.isArray(params.stop) && params.stop.length <= 16 && params.stop.every((x) => typeof x === 'string' && x.length > 0))) {
    add('stop', 'stop must be a list of strings (at most 16, none empty)');
  }
  if (params.stream !== undefined && typeof params.stream !== 'boolean') add('stream', `stream must be true or false, got ${String(params.stream)}`);
  let responseFormat: RequestSpec['responseFormat'];
  if (params.response_format !== undefined) {
    try {
      responseFormat = parseResponseFormat(params.response_format);
    } catch (e) {
      if (!(e instanceof ResponseFormatError)) throw e;
      add('response_format', e.message);
    }
    if (params.stop !== undefined) add('stop', 'stop strings cannot be combined with response_format (the grammar decides where the output ends)');
  }
  let promptTokenIds: number[] = [];
  if (typeof params.prompt !== 'string') add('prompt', 'prompt must be a string');
  else if (params.prompt.length > MAX_PROMPT_CHARS) add('prompt', `the prompt is ${params.prompt.length} characters; at most ${MAX_PROMPT_CHARS}`);
  else {
    promptTokenIds = loaded.tokenizer.encode(params.prompt, true, false);
    if (promptTokenIds.length >= seqLen) {
      add(
        'prompt',
        `the prompt is ${promptTokenIds.length} tokens (BOS included), too long for the model's context of ${seqLen}: ` +
          `at most ${seqLen - 1}, to leave a position to generate in`,
      );
    }
  }
  // Checked here, at the door: the sampler itself is built only when the request is admitted.
  const sampling = { temperature: params.temperature ?? 0, topP: params.top_p ?? 1, topK: params.top_k ?? 0, seed: params.seed ?? 1 };
  const spec: RequestSpec = {
    requestId,
    promptTokenIds: promptTokenIds.length > 0 ? promptTokenIds : [loaded.tokenizer.vocab.bosId],
    maxTokens: Number.isInteger(maxTokens) && maxTokens >= 1 ? maxTokens : 1,
    n: Number.isInteger(n) && n >= 1 ? n : 1,
    sampling,
    stopTokenIds: stopTokenIdsOf(loaded),
    priority: params.priority,
    tenant: params.tenant,
    deadlineMs: params.deadline,
  };
  if (params.model !== undefined && typeof params.model !== 'string') add('model', 'model must be a string ("<model>" or "<model>:<adapter>")');
  const adapter = adapterOf(params);
  const fromModel = typeof params.model === 'string' && params.model.includes(':') ? params.model.slice(params.model.indexOf(':') + 1) : undefined;
  if (params.adapter !== undefined && fromModel !== undefined && fromModel !== params.adapter) add('adapter', `adapter ${JSON.stringify(params.adapter)} and model ${JSON.stringify(params.model)} name different adapters`);
  if (adapter !== undefined) spec.adapter = adapter;
  if (spec.priority === undefined) delete spec.priority;
  if (spec.tenant === undefined) delete spec.tenant;
  if (spec.deadlineMs === undefined) delete spec.deadlineMs;
  if (responseFormat) spec.responseFormat = responseFormat;
  for (const p of validateRequestSpec(spec, { vocabSize: loaded.model.config.vocabSize, ...(adapters ? { adapters } : {}) })) {
    const param = API_NAMES[p.field] ?? p.field;
    if (problems.some((q) => q.param === param)) continue;
    add(param, p.message.replace(/^deadlineMs must be a number > 0 \(ms after arrival\)/, 'deadline must be > 0 ms'));
  }
  if (problems.length > 0) throw new CompletionParamsError(problems);
  return spec;
}

/**
 * A generated workload's requests, arrivals relative to `nowMs`. With realPrompts (the default)
 * the random prompt tokens become story text of the same length, shared prefixes staying shared.
 */
export function scenarioSpecs(run: ScenarioRun, loaded: LoadedModel, nextRequestId: () => string, nowMs: number): RequestSpec[] {
  const { vocabSize, seqLen } = loaded.model.config;
  const prefixMap = new Map<string, number[]>();
  const realPrompts = run.realPrompts ?? true;
  return generateWorkload({ ...run.workload, vocabSize }).map((s) => {
    let prompt = s.promptTokenIds;
    if (realPrompts) prompt = storyPromptTokens(loaded.tokenizer, prompt, prefixMap, run.workload.sharedPrefix?.numTokens ?? 0);
    prompt = prompt.slice(0, Math.max(1, seqLen - 1));
    return {
      ...s,
      requestId: nextRequestId(),
      promptTokenIds: prompt,
      maxTokens: Math.max(1, Math.min(s.maxTokens, seqLen - prompt.length)),
      stopTokenIds: stopTokenIdsOf(loaded),
      arrivalMs: nowMs + (s.arrivalMs ?? 0),
    };
  });
}

/** Recorded requests (an imported trace) checked against the model, arrivals relative to `nowMs`. */
export function traceSpecs(requests: readonly RequestSpec[], loaded: LoadedModel, nextRequestId: () => string, nowMs: number): RequestSpec[] {
  const { vocabSize, seqLen } = loaded.model.config;
  // Token ids within the vocabulary and a non-empty prompt are validateRequestSpec's checks.
  const problems = requests.flatMap((r, i) => validateRequestSpec(r, { vocabSize }).map((p) => ({ path: `request ${i}`, message: `request ${i}: ${p.message}` })));
  if (problems.length > 0) throw new RangeError(listProblems('trace', problems));
  requests.forEach((r, i) => {
    if (r.promptTokenIds.length >= seqLen) {
      throw new RangeError(`trace request ${i}: a prompt of ${r.promptTokenIds.length} tokens does not fit the model's context of ${seqLen}`);
    }
  });
  return requests.map((r) => ({
    ...r,
    requestId: nextRequestId(),
    maxTokens: Math.max(1, Math.min(r.maxTokens, seqLen - r.promptTokenIds.length)),
    arrivalMs: nowMs + (r.arrivalMs ?? 0),
  }));
}
