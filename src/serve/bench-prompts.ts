/**
 * The lab's workload as text prompts for a real server's benchmark (`vllm bench serve`, see
 * src/export/vllm-bench.ts): the requests the lab runs (scenarioSpecs: the same seed, the same story
 * text, the same lengths after the model's context is applied), each prompt turned back into text
 * whose length in tokens, on the lab model's tokenizer, is the lab's prompt length. Requests whose
 * prompts share tokens share the same text prefix, so a server's prefix cache sees the same sharing.
 * Workloads from elsewhere (the simulated fleet: src/export/fleet-vllm.ts) come as lengths and
 * shared-prefix keys (benchTextPrompts) and get text the same way. Pure: no engine, no worker, no DOM.
 */
import type { WorkloadSpec } from '../engine/workload.ts';
import type { LoadedModel } from '../model/load.ts';
import type { Tokenizer } from '../model/tokenizer.ts';
import { scenarioSpecs } from './requests.ts';
import { numberedStoryTokens, numberedSystemTokens, storyText } from './story-prompts.ts';

/** One request as a text benchmark sends it. */
export interface BenchPrompt {
  /** The prompt text (no BOS: the server's tokenizer adds its own). */
  prompt: string;
  /** Its length in tokens on the lab model's tokenizer, BOS included (= the lab's prompt length). */
  promptTokens: number;
  /** Tokens to generate (the lab's max_tokens after its context cap). */
  outputTokens: number;
  /** Arrival on the lab's engine clock, ms after the first possible arrival (0 for a batch). */
  arrivalMs: number;
}

/** What a text benchmark cannot carry of the workload's requests (the note states each). */
export interface BenchPromptLosses {
  /** Requests asking for n > 1 parallel samples: a text benchmark sends each once (n = 1). */
  parallelSampling: number;
  /** Requests with a tenant's priority, deadline or LoRA adapter: not sent. */
  tenantFields: number;
  /** Requests asking for structured output: sent as free text. */
  structured: number;
  /** Prompts whose text re-encodes to a different length than the lab's (0 when every count held). */
  lengthMismatches: number;
}

export interface BenchPrompts {
  /** The model whose tokenizer counted the tokens. */
  model: string;
  /** Its vocabulary size (512 for stories260K, 32000 for the Llama-2 tokenizer). */
  vocabSize: number;
  prompts: BenchPrompt[];
  losses: BenchPromptLosses;
}

/** Re-encoding tries per prompt before the closest text is taken (each try moves by the miss). */
const MAX_FIT_TRIES = 16;

/**
 * Text of exactly `ids.length` tokens when re-encoded with BOS: ids (BOS first) decoded; when the
 * re-encoding merges or splits differently, the tokens after the first `keep` are trimmed or
 * extended from `more` (story text tokens) by the miss, and tried again. `keep` tokens (BOS and a
 * shared prefix) never change, so prompts that shared them still share their text.
 */
export function fitPromptText(tokenizer: Tokenizer, ids: readonly number[], keep: number, more: readonly number[]): { text: string; numTokens: number } {
  const target = ids.length;
  const head = ids.slice(0, Math.max(1, Math.min(keep, ids.length)));
  const tail = [...ids.slice(head.length), ...more];
  let take = target - head.length;
  let best = { text: '', numTokens: -1 };
  for (let tries = 0; tries < MAX_FIT_TRIES; tries++) {
    const text = tokenizer.decode([...head, ...tail.slice(0, Math.max(0, take))]);
    const numTokens = tokenizer.encode(text, true, false).length;
    if (best.numTokens < 0 || Math.abs(numTokens - target) < Math.abs(best.numTokens - target)) best = { text, numTokens };
    if (numTokens === target) break;
    const next = Math.min(tail.length, Math.max(0, take + (target - numTokens)));
    // No room to move (the tail ran out or is empty): the closest text stands.
    if (next === take) break;
    take = next;
  }
  return best;
}

/**
 * The workload's requests as the lab runs them on `loaded`, as text prompts of the lab's lengths.
 * Arrivals are on the lab's engine clock, relative to 0.
 */
export function benchPrompts(workload: WorkloadSpec, loaded: LoadedModel): BenchPrompts {
  let next = 0;
  const specs = scenarioSpecs({ workload }, loaded, () => `bench-${next++}`, 0);
  const { tokenizer } = loaded;
  // BOS and the shared system prompt (storyPromptTokens: BOS + numTokens - 1 prompt tokens) stay as they are.
  const keep = workload.sharedPrefix ? workload.sharedPrefix.numTokens : 1;
  // Story tokens to extend a prompt whose text re-encodes shorter (a few spare words suffice).
  const more = tokenizer.encode(storyText(400), false, false);
  const losses: BenchPromptLosses = { parallelSampling: 0, tenantFields: 0, structured: 0, lengthMismatches: 0 };
  const prompts = specs.map((s): BenchPrompt => {
    if ((s.n ?? 1) > 1) losses.parallelSampling++;
    if (s.priority !== undefined || s.deadlineMs !== undefined || s.adapter !== undefined) losses.tenantFields++;
    if (s.responseFormat) losses.structured++;
    const fit = fitPromptText(tokenizer, s.promptTokenIds, s.promptTokenIds.length > keep ? keep : 1, more);
    if (fit.numTokens !== s.promptTokenIds.length) losses.lengthMismatches++;
    return { prompt: fit.text, promptTokens: fit.numTokens, outputTokens: s.maxTokens, arrivalMs: s.arrivalMs ?? 0 };
  });
  return { model: loaded.model.source.name, vocabSize: loaded.model.config.vocabSize, prompts, losses };
}

/** One request of a workload from elsewhere than the lab (the simulated fleet), to write as text. */
export interface BenchTextRequest {
  /** Its length in tokens, BOS included, to write on the lab model's tokenizer. */
  promptTokens: number;
  /** Tokens to generate. */
  outputTokens: number;
  /** Arrival, ms after the first possible arrival. */
  arrivalMs: number;
  /** Requests with the same key start with the same system-prompt text of numTokens tokens (BOS included). */
  prefix?: { key: string; numTokens: number };
}

/**
 * Requests given as lengths as text prompts of those lengths on `loaded`'s tokenizer: BOS, the
 * shared system prompt of the request's prefix key (one text per key, its own for each key), then
 * text of the request's own (numbered, so requests share nothing else), fitted to the length.
 * Throws a RangeError for a length that is not a positive integer.
 */
export function benchTextPrompts(requests: readonly BenchTextRequest[], loaded: LoadedModel): BenchPrompts {
  const { tokenizer } = loaded;
  const more = tokenizer.encode(storyText(400), false, false);
  const prefixes = new Map<string, number[]>();
  const losses: BenchPromptLosses = { parallelSampling: 0, tenantFields: 0, structured: 0, lengthMismatches: 0 };
  const prompts = requests.map((r, i): BenchPrompt => {
    if (!Number.isInteger(r.promptTokens) || r.promptTokens < 1) throw new RangeError(`request ${i}: promptTokens must be an integer >= 1, got ${r.promptTokens}`);
    if (!Number.isInteger(r.outputTokens) || r.outputTokens < 1) throw new RangeError(`request ${i}: outputTokens must be an integer >= 1, got ${r.outputTokens}`);
    const ids = [tokenizer.vocab.bosId];
    if (r.prefix && r.prefix.numTokens > 1) {
      let p = prefixes.get(r.prefix.key);
      if (!p) {
        p = numberedSystemTokens(tokenizer, prefixes.size, r.prefix.numTokens - 1);
        prefixes.set(r.prefix.key, p);
      }
      ids.push(...p.slice(0, r.promptTokens - 1));
    }
    const keep = ids.length;
    ids.push(...numberedStoryTokens(tokenizer, i, r.promptTokens - ids.length));
    const fit = fitPromptText(tokenizer, ids, ids.length > keep ? keep : 1, more);
    if (fit.numTokens !== r.promptTokens) losses.lengthMismatches++;
    return { prompt: fit.text, promptTokens: fit.numTokens, outputTokens: r.outputTokens, arrivalMs: r.arrivalMs };
  });
  return { model: loaded.model.source.name, vocabSize: loaded.model.config.vocabSize, prompts, losses };
}
