/**
 * The serving front door: OpenAI-style completion parameters, generated workloads and imported
 * traces become the engine's RequestSpecs here, checked against the loaded model (its context,
 * its vocabulary, its own BOS/EOS ids). Every bad value is refused with a RangeError that names
 * it. Pure: no engine, no worker, no DOM.
 */
import type { RequestSpec } from '../engine/request.ts';
import { validateSamplingParams } from '../engine/sampler.ts';
import { generateWorkload, type WorkloadSpec } from '../engine/workload.ts';
import type { LoadedModel } from '../model/load.ts';
import { storyPromptTokens } from './story-prompts.ts';

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
}

export type StreamEvent =
  | { type: 'text'; requestId: string; seqIndex: number; delta: string }
  | { type: 'done'; requestId: string; texts: string[]; reasons: string[] }
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

/** A completion request as the engine's spec (the prompt tokenized with BOS, as run.c does). */
export function completionSpec(params: CompletionParams, requestId: string, loaded: LoadedModel): RequestSpec {
  if (typeof params.prompt !== 'string') throw new TypeError('prompt must be a string');
  const seqLen = loaded.model.config.seqLen;
  const promptTokenIds = loaded.tokenizer.encode(params.prompt, true, false);
  const maxTokens = params.max_tokens ?? 128;
  const n = params.n ?? 1;
  const temperature = params.temperature ?? 0;
  const topP = params.top_p ?? 1;
  const topK = params.top_k ?? 0;
  const seed = params.seed ?? 1;
  if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new RangeError(`max_tokens must be a positive integer, got ${maxTokens}`);
  if (!Number.isInteger(n) || n < 1 || n > MAX_N) throw new RangeError(`n must be an integer from 1 to ${MAX_N}, got ${n}`);
  if (promptTokenIds.length >= seqLen) {
    throw new RangeError(
      `the prompt is ${promptTokenIds.length} tokens (BOS included), too long for the model's context of ${seqLen}: ` +
        `at most ${seqLen - 1}, to leave a position to generate in`,
    );
  }
  // Checked here, at the door: the sampler itself is built only when the request is admitted.
  const sampling = { temperature, topP, topK, seed };
  validateSamplingParams(sampling);
  if (params.stop !== undefined && !(Array.isArray(params.stop) && params.stop.every((s) => typeof s === 'string'))) {
    throw new TypeError('stop must be a list of strings');
  }
  if (params.deadline !== undefined && !(params.deadline > 0)) throw new RangeError(`deadline must be > 0 ms, got ${params.deadline}`);
  return {
    requestId,
    promptTokenIds,
    maxTokens,
    n,
    sampling,
    stopTokenIds: stopTokenIdsOf(loaded),
    priority: params.priority,
    tenant: params.tenant,
    deadlineMs: params.deadline,
  };
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
  requests.forEach((r, i) => {
    const bad = r.promptTokenIds.find((t) => !(Number.isInteger(t) && t >= 0 && t < vocabSize));
    if (bad !== undefined) throw new RangeError(`trace request ${i}: token id ${bad} is outside the model's vocabulary of ${vocabSize}`);
    if (r.promptTokenIds.length === 0 || r.promptTokenIds.length >= seqLen) {
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
