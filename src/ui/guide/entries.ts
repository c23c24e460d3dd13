/**
 * The Guide: the sixteen questions of an LLM-serving design, plus speculative decoding and
 * quantization, each with its key idea and the place in the app that answers it (a scenario in
 * the lab or in compare mode, the KV calculator, the simulated 70B mode, a simulated fleet). The
 * figure each "Show me" proves its point with is computed from the run it opens (figures.ts).
 * Plain data: no DOM, no engine.
 */
import type { FleetPresetId } from '../../sim/fleet/types.ts';

/** Where "Show me" goes, with the settings that answer the question. */
export type GuideTarget =
  /** A scenario of src/ui/lab/scenarios.ts in compare mode (its two sides' settings). */
  | { kind: 'compare'; scenarioId: string }
  /** A scenario in the lab (its own settings). */
  | { kind: 'lab'; scenarioId: string }
  /** The KV calculator with this model, hardware and parallelism. */
  | { kind: 'calculator'; modelId: string; hardwareId: string; tensorParallel: number; pipelineParallel: number; contextTokens: number; numSeqs: number }
  /** The simulated large-scale mode with this deployment. */
  | { kind: 'simulated'; modelId: string; hardwareId: string; tensorParallel: number; pipelineParallel: number }
  /** A simulated fleet preset (?view=fleet&fleet=<id>). */
  | { kind: 'fleet'; presetId: FleetPresetId };

export interface GuideEntry {
  /** 1-based; the URL's guide=<n>. */
  n: number;
  question: string;
  /** The key idea: two or three sentences. */
  idea: string;
  target: GuideTarget;
  /** Where "Show me" goes, in a few words (shown beside the button). */
  where: string;
  /** What the figure measures, in a few words (shown until the run gives it). */
  measures: string;
}

export const GUIDE: readonly GuideEntry[] = [
  {
    n: 1,
    question: 'Static vs continuous batching',
    idea:
      'Static batching admits a batch and holds every slot until its longest request finishes, so finished requests ride along as padding and new arrivals wait. Continuous (iteration-level) batching, as in Orca and vLLM, re-forms the batch every step: a slot freed by a finished sequence is refilled at the next step.',
    target: { kind: 'compare', scenarioId: 'static-vs-continuous' },
    where: 'Compare: static | continuous, same workload',
    measures: 'generated tokens per second of each side',
  },
  {
    n: 2,
    question: '10 vs 2000 output tokens',
    idea:
      'Each output token is one decode step, so a 2000-token request holds its slot and its growing KV cache 200 times longer than a 10-token one. In a static batch the short request waits for the long one; with continuous batching it leaves after its own steps, and the long requests only set how much KV memory the batch needs.',
    target: { kind: 'compare', scenarioId: 'short-vs-long' },
    where: 'Compare: 8 vs 400 tokens, static | continuous',
    measures: 'the short requests’ median end-to-end time on each side',
  },
  {
    n: 3,
    question: 'Priority, preemption and SLAs',
    idea:
      'The scheduler orders waiting requests by a policy (first come first served, priority, fair share). When KV memory runs out it preempts the lowest-ranked running request, freeing its blocks to recompute or swap it later, so the high-priority class keeps its latency target while the batch class pays with extra time.',
    target: { kind: 'compare', scenarioId: 'priority-preemption' },
    where: 'Compare: fcfs | priority, 28 KV blocks',
    measures: 'the interactive tenant’s TTFT under each policy',
  },
  {
    n: 4,
    question: 'Why can’t requests for different models share a batch?',
    idea:
      'A batch is one forward pass through one set of weights: every row is multiplied by the same matrices, so a request for model B cannot ride in model A’s batch (LoRA adapters over one base model are the exception). Each model needs its own replicas, queues and KV memory; putting both on the same GPUs means swapping weights, which costs a cold start.',
    target: { kind: 'fleet', presetId: 'two-models' },
    where: 'Fleet (SIMULATED): two models, one pool',
    measures: 'GPUs for separate pools vs one consolidated pool',
  },
  {
    n: 5,
    question: 'KV memory arithmetic (70B)',
    idea:
      'KV bytes per token = 2 (K and V) × layers × KV heads × head dimension × bytes per element; grouped-query attention shares each K/V head among several query heads and shrinks it. Multiply by the context for one sequence and by the batch; what is left of GPU memory after the weights bounds how many sequences can run at once.',
    target: { kind: 'calculator', modelId: 'llama-2-70b', hardwareId: 'h100-sxm', tensorParallel: 8, pipelineParallel: 1, contextTokens: 4096, numSeqs: 32 },
    where: 'KV calculator: Llama-2 70B on 8× H100',
    measures: 'bytes per token, per sequence, and sequences that fit',
  },
  {
    n: 6,
    question: 'PagedAttention and fragmentation',
    idea:
      'Reserving one contiguous KV region per request for its maximum length wastes most of it (internal fragmentation) and leaves gaps no request fits in (external). PagedAttention stores K/V in fixed-size blocks reached through a per-sequence block table, like virtual-memory pages: a sequence wastes at most its last, partly filled block, and any free block serves any sequence.',
    target: { kind: 'lab', scenarioId: 'short-vs-long' },
    where: 'Lab: 8 vs 400 tokens, paged KV grid',
    measures: 'KV slots filled in the blocks in use, vs a max-length reservation',
  },
  {
    n: 7,
    question: 'Prefix sharing, copy-on-write and reference counts',
    idea:
      'Sequences that start with the same tokens (the n samples of one prompt, or requests with one system prompt) point their block tables at the same physical blocks, each with a reference count; a block is freed when its count drops to zero. A shared block is never written in place: the first sequence to append to a shared, partly filled block gets its own copy (copy-on-write).',
    target: { kind: 'lab', scenarioId: 'parallel-sampling' },
    where: 'Lab: parallel sampling n = 4',
    measures: 'shared blocks, their reference counts and copy-on-write copies',
  },
  {
    n: 8,
    question: 'KV cache full: evict, swap or reject?',
    idea:
      'When a running sequence needs a block and none is free, the scheduler preempts a victim: recompute drops its blocks and prefills it again later (costs compute), swap copies them to CPU memory and back (costs transfer bandwidth), abort rejects it. Admission control (a queue cap) refuses work up front instead.',
    target: { kind: 'compare', scenarioId: 'kv-exhausted' },
    where: 'Compare: recompute | swap, 20 KV blocks',
    measures: 'preemptions, blocks swapped and end-to-end time on each side',
  },
  {
    n: 9,
    question: 'Tensor vs pipeline vs data parallelism',
    idea:
      'Tensor parallelism splits every layer’s matrices across GPUs and all-reduces activations twice per layer: low latency, but it needs fast links. Pipeline parallelism gives each GPU a run of layers and passes activations along: little communication, but bubbles unless micro-batches keep every stage busy. Data parallelism runs whole replicas behind a router (entries 10 and 13).',
    target: { kind: 'simulated', modelId: 'llama-2-70b', hardwareId: 'h100-sxm', tensorParallel: 8, pipelineParallel: 1 },
    where: 'Simulated 70B: TP 8, then PP 8',
    measures: 'SIMULATED throughput and step time of each layout run',
  },
  {
    n: 10,
    question: 'Autoscaling, cold starts, a 10× spike, spot instances',
    idea:
      'An autoscaler adds replicas when a metric (queue depth, KV usage, TTFT) passes its target, but a new replica serves only after a cold start: weights over storage bandwidth plus warm-up, tens of seconds for a 70B model. A fixed fleet sized for the peak wastes GPU-hours; one sized for the average misses its SLO during a spike until the new replicas are warm.',
    target: { kind: 'fleet', presetId: 'spike' },
    where: 'Fleet (SIMULATED): 10× spike, fixed vs autoscaled',
    measures: 'P99 TTFT, SLO attainment and cost of each fleet',
  },
  {
    n: 11,
    question: 'Multi-tenancy, quotas and per-token billing',
    idea:
      'Tenants share replicas, so one tenant’s burst must not starve the others: a tokens-per-minute quota refuses requests past the limit with a reason, and fair scheduling shares what is admitted. Billing counts prompt tokens, cached prompt tokens (cheaper) and generated tokens per tenant; the fleet’s GPU-hours say what a million tokens cost to serve.',
    target: { kind: 'fleet', presetId: 'quotas-billing' },
    where: 'Fleet (SIMULATED): quotas and billing',
    measures: 'each tenant’s bill, quota refusals, cost per 1M tokens',
  },
  {
    n: 12,
    question: 'Failure modes and recovery',
    idea:
      'GPUs fail, workers crash and spot instances are reclaimed: a request in flight must be re-routed and recomputed elsewhere or fail with a reason, never silently lost. Health checks and a watchdog restart what died; the fleet drains a replica when it gets notice. The manage drawer’s fault panel does it to the lab’s own engine: destroy the GPU device, terminate the worker.',
    target: { kind: 'fleet', presetId: 'spot-loss' },
    where: 'Fleet (SIMULATED): spot loss under load; then the fault panel',
    measures: 'requests re-routed, failed and lost when a replica disappears',
  },
  {
    n: 13,
    question: 'Debugging a P99 regression',
    idea:
      'Percentiles hide causes: start from the slowest requests, split each one’s time into queue, prefill, decode, preemption and recompute, and look for what they share (a tenant, a prompt length, a prefix-cache miss). Head-of-line blocking behind long prompts and a collapsed prefix-cache hit rate are classic culprits.',
    target: { kind: 'fleet', presetId: 'p99-hunt' },
    where: 'Fleet (SIMULATED): the P99 hunt',
    measures: 'P99 TTFT before and after, and who the slowest requests are',
  },
  {
    n: 14,
    question: 'Structured (JSON) output',
    idea:
      'Constrained decoding masks, at every step, each token the grammar (here a JSON schema compiled by XGrammar) does not allow, so the output always parses. The mask is computed on the CPU per constrained row while the batch runs; free-text requests in the same batch are untouched.',
    target: { kind: 'lab', scenarioId: 'structured-output' },
    where: 'Lab: JSON in a mixed batch',
    measures: 'JSON outputs that validate, and the mask cost per token',
  },
  {
    n: 15,
    question: 'Moderation and its latency',
    idea:
      'An input check before admission adds its time to every request’s TTFT; output checks every N tokens run beside the stream and can stop it with finish_reason "content_filter". Moderation has its own capacity: when it saturates, its queue becomes part of the latency.',
    target: { kind: 'fleet', presetId: 'moderation' },
    where: 'Fleet (SIMULATED): moderation in the loop',
    measures: 'moderation’s share of TTFT and streams stopped',
  },
  {
    n: 16,
    question: 'LoRA adapters per customer',
    idea:
      'A LoRA adapter adds a low-rank x·A·B to a few weight matrices, so requests for many customers’ adapters share one base model and one batch, each row adding its own adapter (as S-LoRA and Punica do). Adapters live in a few GPU slots: one not loaded must be loaded first, evicting the least recently used.',
    target: { kind: 'lab', scenarioId: 'lora-tenants' },
    where: 'Lab: LoRA adapters per customer, 2 slots',
    measures: 'adapters in one batch, and adapter loads and evictions',
  },
  {
    n: 17,
    question: 'Speculative decoding',
    idea:
      'A cheap proposer (here n-gram lookup in the sequence’s own text) drafts k tokens; the model checks them all in one step as extra rows and keeps the longest prefix it agrees with, plus one token of its own. Decoding is memory-bound, so verifying k tokens costs about one step: each accepted draft saves one.',
    target: { kind: 'compare', scenarioId: 'speculative-decoding' },
    where: 'Compare: speculation off | n-gram k = 4',
    measures: 'draft acceptance and time per output token on each side',
  },
  {
    n: 18,
    question: 'Quantization',
    idea:
      'Storing weights in fewer bits (Q8_0: 8 bits, Q4_0: 4 bits plus a scale per 32 weights) shrinks them, and in a fixed memory budget what the weights give up becomes KV cache: more sequences at once. Decoding reads every weight each step, so fewer bytes also mean faster steps; the price is some quality.',
    target: { kind: 'compare', scenarioId: 'quantize-to-fit' },
    where: 'Compare: f32 | Q4_0 weights in one memory budget',
    measures: 'KV blocks and sequences running at once on each side',
  },
];

export const GUIDE_SIZE = GUIDE.length;

export function guideEntry(n: number | null): GuideEntry | undefined {
  return n === null ? undefined : GUIDE[n - 1];
}
