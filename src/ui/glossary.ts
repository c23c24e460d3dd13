/**
 * The lab's vocabulary in plain words: what each serving term means, short enough for a tooltip.
 * `Term.svelte` shows one on hover, keyboard focus or tap; the About panel lists them all.
 */

export interface GlossaryEntry {
  /** The term as the views write it. */
  term: string;
  /** Its long form, when the term is an abbreviation. */
  expansion?: string;
  /** One or two plain sentences. */
  definition: string;
}

export const GLOSSARY = {
  ttft: {
    term: 'TTFT',
    expansion: 'time to first token',
    definition: 'How long a request waits from arrival until its first output token: queueing plus the prefill of its prompt. What a user feels as "it started answering".',
  },
  tpot: {
    term: 'TPOT',
    expansion: 'time per output token',
    definition: 'After the first token, the average time between output tokens: (end-to-end − TTFT) ÷ (output tokens − 1). Sets how fast the text streams.',
  },
  itl: {
    term: 'ITL',
    expansion: 'inter-token latency',
    definition: 'The gap between two consecutive output tokens of one request. TPOT is its average; single gaps spike when a big prefill or a preemption shares the step.',
  },
  e2e: {
    term: 'E2E',
    expansion: 'end-to-end latency',
    definition: 'From arrival to the last token: queueing, prefill and every decode step, including time spent preempted.',
  },
  percentiles: {
    term: 'P50 / P90 / P99',
    expansion: 'percentiles',
    definition: 'Of the finished requests, 50%, 90% or 99% were at least this fast. P50 is the typical request; P99 is the slow tail that service targets are written for.',
  },
  prefill: {
    term: 'prefill',
    definition: 'Running the prompt through the model to fill its KV cache: many tokens at once, compute-heavy. It ends with the first output token.',
  },
  decode: {
    term: 'decode',
    definition: 'Generating the answer one token per step per sequence, reading the whole KV cache each time: memory-bound, so many sequences share a step.',
  },
  block: {
    term: 'block',
    expansion: 'KV cache block',
    definition: 'A fixed-size page of KV cache memory holding the keys and values of a few tokens (the block size). A sequence’s block table maps its tokens to blocks anywhere in the pool.',
  },
  prefixCache: {
    term: 'prefix cache',
    definition: 'Full blocks keep a hash of their tokens after use. A new prompt starting with the same tokens reuses those blocks (a cache hit) instead of computing them again.',
  },
  preemption: {
    term: 'preemption',
    definition: 'When KV memory runs out, the scheduler takes a running sequence out of the batch to make room: it is recomputed later, swapped to CPU memory, or rejected.',
  },
  swap: {
    term: 'swap',
    definition: 'Preemption by copying a sequence’s KV blocks to CPU memory (swap out) and back when there is room (swap in), instead of recomputing them.',
  },
  copyOnWrite: {
    term: 'copy-on-write',
    definition: 'Parallel samples share their prompt’s blocks. When one writes into a shared, partly filled block, it first gets its own copy; the others keep the original.',
  },
  recompute: {
    term: 'recompute',
    definition: 'Preemption by freeing a sequence’s KV blocks; when it is readmitted its tokens are prefilled again (the prefix cache may give some back).',
  },
  refCount: {
    term: 'refCount',
    expansion: 'reference count',
    definition: 'How many sequences’ block tables point at a block. Above 1 the block is shared; it becomes free at 0.',
  },
  evict: {
    term: 'evict',
    definition: 'Reusing a free block that still held cached tokens: its prefix-cache entry is dropped so new tokens can be written.',
  },
  fork: {
    term: 'fork',
    definition: 'Parallel sampling (n > 1): after the prompt, the sequence splits into n samples that share the prompt’s blocks (refCount n).',
  },
  staticBatching: {
    term: 'static batching',
    definition: 'A batch is formed, then runs until every member is done; finished members ride along as padding and newcomers wait for the whole batch to drain.',
  },
  continuousBatching: {
    term: 'continuous batching',
    definition: 'The batch is re-formed every step (iteration-level scheduling): finished sequences leave and waiting ones join at once.',
  },
  batching: {
    term: 'batching',
    definition: 'Static: a batch runs until every member is done and newcomers wait for it to drain. Continuous: the batch is re-formed every step, so sequences leave and join at once.',
  },
  padding: {
    term: 'padding',
    definition: 'Wasted batch slots: under static batching a finished request keeps its slot until the whole batch ends.',
  },
  chunkedPrefill: {
    term: 'chunked prefill',
    definition: 'A long prompt is prefilled in pieces over several steps, so decoding sequences keep getting tokens in between.',
  },
  pacedArrivals: {
    term: 'arrivals paced by the work done',
    definition:
      "A scenario's arrival times (say Poisson, 8 a second) are read on a reference clock that moves by a fixed cost per step (20 ms + 0.1 ms per token, the order of this model's step on a software GPU), not by the step's measured time. So the same requests meet the same queue on any GPU: on a fast one they come that much sooner in real time. Latencies are still measured on the engine clock, from each request's arrival.",
  },
  tokenBudget: {
    term: 'token budget',
    definition: 'The most tokens one engine step may process (prefill tokens plus one per decoding sequence, plus its draft tokens under speculation).',
  },
  speculative: {
    term: 'speculative decoding',
    definition:
      'Guess the next few tokens cheaply (n-gram: copy what followed the last words earlier in the prompt or output), then check all guesses in one step as extra rows. Matching guesses are kept, plus one token from the model; the K/V of rejected ones is rolled back. Greedy output is unchanged.',
  },
  acceptance: {
    term: 'acceptance rate',
    definition: 'Accepted draft tokens / draft tokens verified. Mean accepted length: tokens a verification yields on average (accepted drafts + 1).',
  },
  throughput: {
    term: 'throughput',
    definition: 'Tokens processed per second by the whole engine, prompts and outputs together.',
  },
  queueDepth: {
    term: 'queue depth',
    definition: 'Requests admitted but not running: waiting for memory or a slot, or swapped out.',
  },
  fragmentation: {
    term: 'fragmentation',
    definition: 'Token slots in used blocks that hold nothing yet (the unfilled tail of each sequence’s last block).',
  },
} satisfies Record<string, GlossaryEntry>;

export type GlossaryKey = keyof typeof GLOSSARY;

/** The tooltip text: the expansion (if any) and the definition. */
export function definitionOf(key: GlossaryKey): string {
  const e: GlossaryEntry = GLOSSARY[key];
  return e.expansion ? `${e.term} (${e.expansion}): ${e.definition}` : `${e.term}: ${e.definition}`;
}
