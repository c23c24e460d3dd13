/**
 * The scenarios: each stages one classic question of LLM serving on the real tiny model, seeded
 * so a link replays the same workload. Lengths are scaled to stories260K's 512-token context and
 * to a software GPU (a few dozen requests; KV memory in tens of 16-token blocks).
 */
import type { WorkloadSpec } from '../../engine/workload.ts';
import { splitBudget } from '../../model/estimate.ts';
import type { ModelConfig } from '../../model/types.ts';
import { BASE_SETTINGS, type LabSettings } from './settings.ts';

export interface Scenario {
  id: string;
  title: string;
  /** A word or two for compact pickers. */
  short: string;
  /** Two or three sentences: what to watch. */
  watch: string;
  settings: LabSettings;
  workload: WorkloadSpec;
  /** Compare mode: the two engines' settings on the same workload. */
  compare: { a: { label: string; settings: LabSettings }; b: { label: string; settings: LabSettings } };
}

const s = (o: Partial<LabSettings>): LabSettings => ({ ...BASE_SETTINGS, ...o });

const staticSettings = s({ batching: 'static', maxNumSeqs: 8, numGpuBlocks: 96, enablePrefixCaching: false });
const continuousSettings = s({ batching: 'continuous', maxNumSeqs: 8, numGpuBlocks: 96, enablePrefixCaching: false });
const specOff = s({ numGpuBlocks: 96, maxNumSeqs: 8 });
const specOn = s({ numGpuBlocks: 96, maxNumSeqs: 8, speculativeMethod: 'ngram', numSpeculativeTokens: 4 });

/** The structured-output scenario's schema: bounded, so the tiny model finishes it in ~30 tokens. */
export const STRUCTURED_SCHEMA: Record<string, unknown> = {
  type: 'object',
  properties: {
    name: { type: 'string', maxLength: 10 },
    age: { type: 'integer', minimum: 1, maximum: 12 },
    mood: { enum: ['happy', 'sad', 'sleepy'] },
  },
  required: ['name', 'age', 'mood'],
};

/** The built-in model's shape (stories260K), for the memory-budget scenario's arithmetic. */
const STORIES260K: ModelConfig = { dim: 64, hiddenDim: 172, numLayers: 5, numHeads: 8, numKvHeads: 4, vocabSize: 512, seqLen: 512, normEps: Math.fround(1e-5), ropeTheta: 10000, sharedClassifier: true };
/** "Quantize to fit more users": one GPU memory budget for weights + KV cache, 1.5 MiB. */
export const QUANT_BUDGET_BYTES = 1.5 * 2 ** 20;
const budgetSplit = (weights: 'f32' | 'q8_0' | 'q4_0') => splitBudget(STORIES260K, QUANT_BUDGET_BYTES, 16, weights);
const quantSettings = (weights: 'f32' | 'q4_0') => s({ weights, numGpuBlocks: budgetSplit(weights).numBlocks, numCpuBlocks: 0, maxNumSeqs: 16, enablePrefixCaching: false });

export const SCENARIOS: Scenario[] = [
  {
    id: 'static-vs-continuous',
    short: 'static / continuous',
    title: 'Static vs continuous batching',
    watch:
      'Static batching admits a batch and keeps every slot until its longest member finishes: watch the grey padding in the slot timeline while short requests sit done. Continuous batching refills a slot the step after it frees. Open Compare to run both on the same workload.',
    settings: staticSettings,
    workload: {
      seed: 11,
      numRequests: 18,
      arrival: { kind: 'poisson', ratePerS: 8 },
      promptTokens: { kind: 'uniform', min: 12, max: 40 },
      outputTokens: { kind: 'bimodal', short: 12, long: 96, longFraction: 0.3 },
    },
    compare: { a: { label: 'static', settings: staticSettings }, b: { label: 'continuous', settings: continuousSettings } },
  },
  {
    id: 'short-vs-long',
    short: '8 vs 400 tokens',
    title: '8 vs 400 output tokens',
    watch:
      'The classic "10 vs 2000 tokens" mix, scaled to the model\'s 512-token context: most requests want 8 tokens, one in five wants 400. With continuous batching the short ones stream past the long ones; watch time per output token stay flat while the long rows run on in the timeline.',
    settings: s({ maxNumSeqs: 8, numGpuBlocks: 96 }),
    workload: {
      seed: 15,
      numRequests: 20,
      arrival: { kind: 'poisson', ratePerS: 5 },
      promptTokens: { kind: 'uniform', min: 16, max: 32 },
      outputTokens: { kind: 'bimodal', short: 8, long: 400, longFraction: 0.2 },
    },
    compare: { a: { label: 'static', settings: s({ batching: 'static', maxNumSeqs: 8, numGpuBlocks: 96, enablePrefixCaching: false }) }, b: { label: 'continuous', settings: s({ maxNumSeqs: 8, numGpuBlocks: 96, enablePrefixCaching: false }) } },
  },
  {
    id: 'priority-preemption',
    short: 'priority',
    title: 'Priority and preemption',
    watch:
      'Two tenants share 28 KV blocks: "batch" (priority 1) and "interactive" (priority 0). When memory runs out the scheduler preempts the lowest-priority running request (red marks in the timeline) and recomputes it later. Watch interactive TTFT stay low in the request table.',
    settings: s({ policy: 'priority', numGpuBlocks: 28, maxNumSeqs: 12 }),
    workload: {
      seed: 31,
      numRequests: 20,
      arrival: { kind: 'poisson', ratePerS: 6 },
      promptTokens: { kind: 'uniform', min: 24, max: 48 },
      outputTokens: { kind: 'uniform', min: 64, max: 128 },
      tenants: [
        { name: 'batch', weight: 2, priority: 1 },
        { name: 'interactive', weight: 1, priority: 0 },
      ],
    },
    compare: { a: { label: 'fcfs', settings: s({ policy: 'fcfs', numGpuBlocks: 28, maxNumSeqs: 12 }) }, b: { label: 'priority', settings: s({ policy: 'priority', numGpuBlocks: 28, maxNumSeqs: 12 }) } },
  },
  {
    id: 'prefix-caching',
    short: 'prefix cache',
    title: 'A shared system prompt (prefix caching)',
    watch:
      'Nine in ten requests start with the same 64-token system prompt. With prefix caching its four blocks are computed once and shared: the grid marks them with their reference count, and freed ones stay cached (dimmed) for the next request. Compare with caching off to see the prefill work it saves.',
    settings: s({ enablePrefixCaching: true, numGpuBlocks: 64 }),
    workload: {
      seed: 41,
      numRequests: 24,
      arrival: { kind: 'poisson', ratePerS: 6 },
      promptTokens: { kind: 'uniform', min: 80, max: 100 },
      outputTokens: { kind: 'uniform', min: 24, max: 48 },
      sharedPrefix: { fraction: 0.9, numTokens: 64 },
    },
    compare: { a: { label: 'no prefix cache', settings: s({ enablePrefixCaching: false, numGpuBlocks: 64 }) }, b: { label: 'prefix cache', settings: s({ enablePrefixCaching: true, numGpuBlocks: 64 }) } },
  },
  {
    id: 'kv-exhausted',
    short: 'KV exhausted',
    title: 'KV memory exhausted: recompute vs swap vs reject',
    watch:
      'Only 20 GPU blocks for a dozen growing sequences. Recompute drops a victim\'s blocks and prefills it again later; swap moves them to the CPU pool beside the grid and back; "abort" in the engine controls rejects the victim instead. Compare puts recompute and swap side by side.',
    settings: s({ numGpuBlocks: 20, numCpuBlocks: 40, maxNumSeqs: 12, preemptionMode: 'recompute' }),
    workload: {
      seed: 51,
      numRequests: 16,
      arrival: { kind: 'poisson', ratePerS: 10 },
      promptTokens: { kind: 'uniform', min: 24, max: 40 },
      outputTokens: { kind: 'uniform', min: 60, max: 120 },
    },
    compare: {
      a: { label: 'recompute', settings: s({ numGpuBlocks: 20, numCpuBlocks: 40, maxNumSeqs: 12, preemptionMode: 'recompute' }) },
      b: { label: 'swap', settings: s({ numGpuBlocks: 20, numCpuBlocks: 40, maxNumSeqs: 12, preemptionMode: 'swap' }) },
    },
  },
  {
    id: 'traffic-spike',
    short: '10× spike',
    title: 'A 10× traffic spike and admission control',
    watch:
      'Arrivals come in tight bursts, about ten times the average rate. With a queue cap of 6, admission control rejects what cannot be served soon (red ticks above the timeline) and the queue and TTFT stay bounded; without it the queue and TTFT climb. Compare runs both.',
    settings: s({ maxNumSeqs: 8, maxQueueLength: 6 }),
    workload: {
      seed: 61,
      numRequests: 32,
      arrival: { kind: 'bursty', ratePerS: 10, burstiness: 0.08 },
      promptTokens: { kind: 'uniform', min: 16, max: 32 },
      outputTokens: { kind: 'uniform', min: 24, max: 48 },
    },
    compare: { a: { label: 'no admission control', settings: s({ maxNumSeqs: 8 }) }, b: { label: 'queue cap 6', settings: s({ maxNumSeqs: 8, maxQueueLength: 6 }) } },
  },
  {
    id: 'parallel-sampling',
    short: 'n = 4',
    title: 'Parallel sampling n = 4 (copy-on-write)',
    watch:
      'Each request asks for four samples at temperature 0.8. The prompt is prefilled once and its blocks are shared by all four sequences (refCount 4 in the grid); the partly filled last block is copied on the first write (a purple flash). Click a request to read its four different stories.',
    settings: s({ numGpuBlocks: 64, maxNumSeqs: 16 }),
    workload: {
      seed: 71,
      numRequests: 8,
      arrival: { kind: 'poisson', ratePerS: 2 },
      promptTokens: { kind: 'uniform', min: 20, max: 40 },
      outputTokens: { kind: 'uniform', min: 32, max: 64 },
      parallelSampling: { fraction: 1, n: 4 },
      temperature: 0.8,
    },
    compare: { a: { label: '64 blocks', settings: s({ numGpuBlocks: 64, maxNumSeqs: 16 }) }, b: { label: '24 blocks', settings: s({ numGpuBlocks: 24, maxNumSeqs: 16 }) } },
  },
  {
    id: 'fairness',
    short: 'fairness',
    title: 'Multi-tenant fairness',
    watch:
      'Tenant "heavy" sends four requests for every one from "light". First-come-first-served lets heavy crowd light out; the fair policy (a virtual token counter per tenant) serves the tenant that has received least. Watch light\'s TTFT in the request table, or Compare fcfs with fair.',
    settings: s({ policy: 'fair', numGpuBlocks: 48, maxNumSeqs: 6 }),
    workload: {
      seed: 81,
      numRequests: 30,
      arrival: { kind: 'poisson', ratePerS: 20 },
      promptTokens: { kind: 'uniform', min: 16, max: 32 },
      outputTokens: { kind: 'uniform', min: 32, max: 64 },
      tenants: [
        { name: 'heavy', weight: 4 },
        { name: 'light', weight: 1 },
      ],
    },
    compare: { a: { label: 'fcfs', settings: s({ policy: 'fcfs', numGpuBlocks: 48, maxNumSeqs: 6 }) }, b: { label: 'fair', settings: s({ policy: 'fair', numGpuBlocks: 48, maxNumSeqs: 6 }) } },
  },
  {
    id: 'speculative-decoding',
    short: 'speculation',
    title: 'Speculative decoding (n-gram drafts)',
    watch:
      'Each decoding sequence looks its last few tokens up in its own prompt and output and proposes up to 4 tokens that followed them; the model checks them all in one step as extra rows. In the slot timeline green ticks are accepted drafts, red ones rejected (their K/V rolled back). Watch steps per sequence and tokens per step fall and rise, acceptance by position in the latency panel, and TPOT in Compare (speculation off vs on, greedy: same text).',
    settings: specOn,
    workload: {
      seed: 91,
      numRequests: 10,
      arrival: { kind: 'poisson', ratePerS: 3 },
      promptTokens: { kind: 'uniform', min: 24, max: 48 },
      outputTokens: { kind: 'uniform', min: 96, max: 160 },
    },
    compare: { a: { label: 'no speculation', settings: specOff }, b: { label: 'n-gram, k = 4', settings: specOn } },
  },
  {
    id: 'structured-output',
    short: 'JSON',
    title: 'Structured output (JSON) in a mixed batch',
    watch:
      'Half the requests must answer with JSON that follows a schema (name, age, mood); the rest write free text, in the same batches. Each constrained row\'s logits come back to the CPU, XGrammar masks every token the schema forbids, then the usual sampler picks. Watch the step inspector\'s token masks line (ms on the CPU, share of the vocabulary allowed) and open a JSON request: its output is validated, its mask cost per token shown.',
    settings: s({ maxNumSeqs: 8, numGpuBlocks: 96 }),
    workload: {
      seed: 91,
      numRequests: 16,
      arrival: { kind: 'poisson', ratePerS: 6 },
      promptTokens: { kind: 'uniform', min: 12, max: 28 },
      outputTokens: { kind: 'uniform', min: 64, max: 96 },
      temperature: 0.8,
      structured: { fraction: 0.5, responseFormat: { type: 'json_schema', jsonSchema: { name: 'character', schema: STRUCTURED_SCHEMA } } },
    },
    compare: { a: { label: '8 slots', settings: s({ maxNumSeqs: 8, numGpuBlocks: 96 }) }, b: { label: '2 slots', settings: s({ maxNumSeqs: 2, numGpuBlocks: 96 }) } },
  },
  {
    id: 'lora-tenants',
    short: 'LoRA per customer',
    title: 'LoRA adapters per customer',
    watch:
      'Three customers bring their own LoRA adapter (tom renames Lily, happy loves the word "happy", noise is random) and a fourth uses the base model, all in one batch: each row adds its own x·A·B. There are only 2 adapter slots: watch the strip under the KV grid load and evict adapters, and the step inspector say who waits for a slot. Click a request to read its text; Compare runs 2 against 4 slots.',
    settings: s({ maxLoras: 2, numGpuBlocks: 64, maxNumSeqs: 8 }),
    workload: {
      seed: 91,
      numRequests: 20,
      arrival: { kind: 'poisson', ratePerS: 6 },
      promptTokens: { kind: 'uniform', min: 12, max: 28 },
      outputTokens: { kind: 'uniform', min: 32, max: 64 },
      tenants: [
        { name: 'acme', weight: 1, adapter: 'tom' },
        { name: 'globex', weight: 1, adapter: 'happy' },
        { name: 'initech', weight: 1, adapter: 'noise' },
        { name: 'base', weight: 1 },
      ],
    },
    compare: { a: { label: '2 LoRA slots', settings: s({ maxLoras: 2, numGpuBlocks: 64, maxNumSeqs: 8 }) }, b: { label: '4 LoRA slots', settings: s({ maxLoras: 4, numGpuBlocks: 64, maxNumSeqs: 8 }) } },
  },
  {
    id: 'quantize-to-fit',
    short: 'quantize',
    title: 'Quantize to fit more users',
    watch:
      `The same GPU memory budget, ${QUANT_BUDGET_BYTES / 2 ** 20} MiB, holds the weights and the KV cache. f32 weights take ${(budgetSplit('f32').weightBytes / 2 ** 20).toFixed(2)} MiB and leave ${budgetSplit('f32').numBlocks} KV blocks; Q4_0 weights (4 bits + a scale per 32) take ${(budgetSplit('q4_0').weightBytes / 2 ** 20).toFixed(2)} MiB and leave ${budgetSplit('q4_0').numBlocks}, so about twice as many sequences run at once. All 24 requests arrive together, so memory alone decides how many run: Compare puts the two KV grids and running counts side by side (Q8_0, ${budgetSplit('q8_0').numBlocks} blocks, is in the KV calculator). The price is quality: Q4_0's text drifts from f32's sooner (npm run bench -- quant measures it).`,
    settings: quantSettings('q4_0'),
    workload: {
      seed: 91,
      numRequests: 24,
      arrival: { kind: 'batch' },
      promptTokens: { kind: 'uniform', min: 20, max: 40 },
      outputTokens: { kind: 'uniform', min: 60, max: 120 },
    },
    compare: { a: { label: `f32 weights, ${budgetSplit('f32').numBlocks} KV blocks`, settings: quantSettings('f32') }, b: { label: `Q4_0 weights, ${budgetSplit('q4_0').numBlocks} KV blocks`, settings: quantSettings('q4_0') } },
  },
];


export function scenarioById(id: string | null): Scenario | undefined {
  return SCENARIOS.find((x) => x.id === id);
}
