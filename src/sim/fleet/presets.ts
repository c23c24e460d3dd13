/**
 * The fleet presets the views and the Guide open by id (FLEET_PRESET_IDS): realistic deployments
 * (Llama-3 8B on one L4 or H100, Llama-3 70B on four H100s), sized so that each preset's runs
 * simulate in a couple of seconds in a browser while showing their point clearly. Prices are
 * list-price-like (L4 about $0.80, H100 about $3 per GPU-hour; API tokens per million).
 */
import type { AutoscalerSpec, BillingSpec, DeploymentSpec, FleetPreset, FleetPresetId, FleetSpec, FleetWorkloadSpec, PoolSpec } from './types.ts';
import { FLEET_PRESET_IDS } from './types.ts';

/** Llama-3 8B on one L4 (24 GB): a cheap inference GPU, about $0.80/h. */
export const L4_8B: DeploymentSpec = { modelId: 'llama-3-8b', hardwareId: 'l4', tensorParallel: 1, pipelineParallel: 1, maxNumSeqs: 32, maxNumBatchedTokens: 2048, gpuHourUsd: 0.8 };
/** Llama-3 8B on one H100 SXM, about $3/h. */
export const H100_8B: DeploymentSpec = { modelId: 'llama-3-8b', hardwareId: 'h100-sxm', tensorParallel: 1, pipelineParallel: 1, maxNumSeqs: 64, maxNumBatchedTokens: 4096, gpuHourUsd: 3 };
/** Llama-3 70B on four H100 SXM (tensor parallel 4), about $3/GPU-h. */
export const H100X4_70B: DeploymentSpec = { modelId: 'llama-3-70b', hardwareId: 'h100-sxm', tensorParallel: 4, pipelineParallel: 1, maxNumSeqs: 64, maxNumBatchedTokens: 4096, gpuHourUsd: 3 };

/** API-like prices per million tokens for an 8B model. */
export const BILLING_8B: BillingSpec = { usdPerMPromptTokens: 0.2, usdPerMCachedPromptTokens: 0.05, usdPerMGeneratedTokens: 0.6 };

/** Weights from local NVMe / a warm object store, 2 GB/s per device; 5 s of warm-up (graph capture, first batches). */
const AUTOSCALER: AutoscalerSpec = {
  metric: 'queue-depth',
  target: 4,
  intervalS: 5,
  minReplicas: 2,
  maxReplicas: 8,
  scaleDownCooldownS: 30,
  loadBytesPerS: 2e9,
  warmupS: 5,
};

const pool = (model: string, deployment: DeploymentSpec, replicas: number, extra: Partial<PoolSpec> = {}): PoolSpec => ({ model, deployment, replicas, router: 'least-outstanding', ...extra });

const fleet = (name: string, pools: PoolSpec[], workload: FleetWorkloadSpec, extra: Partial<FleetSpec> = {}): FleetSpec => ({
  name,
  pools,
  workload,
  billing: BILLING_8B,
  sloTtftS: 2,
  ...extra,
});

/** The "10x in a minute" workload: 2 req/s, then 20 req/s for 30 s from t = 30 s. */
export function spikeWorkload(seed = 7, numRequests = 760): FleetWorkloadSpec {
  return {
    seed,
    numRequests,
    arrival: { kind: 'spike', ratePerS: 2, factor: 10, atS: 30, durationS: 30 },
    tenants: [{ name: 'app', weight: 1, model: 'llama-3-8b', promptMedian: 256, outputMedian: 64, lengthSigma: 0.5 }],
  };
}

function spike(): FleetPreset {
  const w = spikeWorkload();
  return {
    id: 'spike',
    title: '10× spike: fixed vs autoscaled fleet',
    summary:
      'Traffic jumps from 2 to 20 requests per second for 30 s. Two fixed L4 replicas queue the spike for tens of seconds; an autoscaler watching queue depth orders more replicas, which serve after a cold start (16 GB of weights at 2 GB/s plus warm-up), so TTFT recovers while the spike is still on.',
    watch: [
      'The autoscaler decisions and their reasons: queue per replica against the target.',
      'New replicas go cold → warming → serving: nothing serves during the cold start.',
      'P99 TTFT and SLO attainment of the two fleets; GPU-hours, cold starts included.',
    ],
    runs: [
      { label: 'fixed: 2 replicas', spec: fleet('fixed 2 × L4', [pool('llama-3-8b', L4_8B, 2)], w) },
      { label: 'autoscaled: 2–8 replicas', spec: fleet('autoscaled 2–8 × L4', [pool('llama-3-8b', L4_8B, 2, { autoscaler: AUTOSCALER })], w) },
    ],
  };
}

function spotLoss(): FleetPreset {
  const w: FleetWorkloadSpec = {
    seed: 11,
    numRequests: 500,
    arrival: { kind: 'poisson', ratePerS: 10 },
    tenants: [{ name: 'app', weight: 1, model: 'llama-3-8b', promptMedian: 384, outputMedian: 96, lengthSigma: 0.5 }],
  };
  const pools = [pool('llama-3-8b', L4_8B, 3, { autoscaler: { ...AUTOSCALER, minReplicas: 3, maxReplicas: 4 } })];
  return {
    id: 'spot-loss',
    title: 'Spot loss under load',
    summary:
      'One of three spot replicas is reclaimed at t = 40 s. Without notice its running requests are re-routed and recomputed elsewhere (their tokens so far join the prompt); with a 30 s notice it drains first: nothing is lost and nothing is recomputed. Either way the autoscaler replaces it after a cold start.',
    watch: [
      'The lost replica\'s lane: draining (with notice), then lost.',
      'Re-routed requests and their recompute span in the breakdown.',
      'No request is lost silently: every one ends once, with a reason.',
    ],
    runs: [
      { label: 'no notice: re-route', spec: fleet('spot loss, no notice', pools, w, { spotLosses: [{ atS: 40, model: 'llama-3-8b', replica: 1, noticeS: 0, onLoss: 'reroute' }] }) },
      { label: '30 s notice: drain', spec: fleet('spot loss, 30 s notice', pools, w, { spotLosses: [{ atS: 40, model: 'llama-3-8b', replica: 1, noticeS: 30, onLoss: 'reroute' }] }) },
    ],
  };
}

/** Tenants whose prompts start with one of many long shared system prompts (RAG / agents). */
export function sharedPrefixWorkload(seed = 5, numRequests = 800): FleetWorkloadSpec {
  return {
    seed,
    numRequests,
    arrival: { kind: 'poisson', ratePerS: 16 },
    tenants: [{ name: 'agents', weight: 1, model: 'llama-3-8b', promptMedian: 64, outputMedian: 24, lengthSigma: 0.4, sharedPrefix: { numTokens: 1536, numPrefixes: 48 } }],
  };
}

function prefixAffinity(): FleetPreset {
  const w = sharedPrefixWorkload();
  return {
    id: 'prefix-affinity',
    title: 'Prefix-affinity routing',
    summary:
      'Requests start with one of 48 shared 1,536-token system prompts. Round-robin spreads every prefix over all four replicas, so each replica computes (and caches) every prefix and evicts them for lack of room; prefix-affinity hashes each prefix to one replica, where it stays cached (unless that replica has more than 4 requests above the least loaded one), so most prompt tokens are cache hits and TTFT drops.',
    watch: ['Prefix-cache hit rate of the two routers.', 'The router decisions: "prefix … → r2 by rendezvous hash".', 'P99 TTFT: prefill skipped on a hit.'],
    runs: [
      { label: 'round-robin', spec: fleet('round-robin', [pool('llama-3-8b', L4_8B, 4, { router: 'round-robin' })], w) },
      { label: 'prefix-affinity', spec: fleet('prefix-affinity', [pool('llama-3-8b', L4_8B, 4, { router: 'prefix-affinity', affinityLoadCap: 4 })], w) },
    ],
  };
}

function twoModels(): FleetPreset {
  const w: FleetWorkloadSpec = {
    seed: 13,
    numRequests: 360,
    arrival: { kind: 'poisson', ratePerS: 8 },
    tenants: [
      { name: 'chat', weight: 3, model: 'llama-3-8b', promptMedian: 256, outputMedian: 64, lengthSigma: 0.5 },
      { name: 'analyst', weight: 1, model: 'llama-3-70b', promptMedian: 512, outputMedian: 96, lengthSigma: 0.5 },
    ],
  };
  return {
    id: 'two-models',
    title: 'Two models, one pool?',
    summary:
      'Llama-3 8B and Llama-3 70B each get their own pool, router and queues: a request for the 70B never joins an 8B batch, because a step multiplies every token by one set of weights. The consolidation figures show what one shared pool would need: every replica holding both models, serving them in alternate steps.',
    watch: ['Each pool\'s lanes: requests stay within their model.', 'The consolidation figures: GPUs separate vs shared, and why.', 'GPU-hours per pool.'],
    runs: [
      {
        label: '8B pool + 70B pool',
        spec: fleet('two pools', [pool('llama-3-8b', H100_8B, 1), pool('llama-3-70b', H100X4_70B, 1)], w, {
          billing: { usdPerMPromptTokens: 0.4, usdPerMCachedPromptTokens: 0.1, usdPerMGeneratedTokens: 1.2 },
        }),
      },
    ],
  };
}

function moderation(): FleetPreset {
  const w: FleetWorkloadSpec = {
    seed: 17,
    numRequests: 400,
    arrival: { kind: 'poisson', ratePerS: 4 },
    tenants: [{ name: 'app', weight: 1, model: 'llama-3-8b', promptMedian: 256, outputMedian: 96, lengthSigma: 0.5 }],
  };
  const pools = [pool('llama-3-8b', L4_8B, 2)];
  return {
    id: 'moderation',
    title: 'Moderation in the loop',
    summary:
      'An input check (a classifier, 40 ms median, 4 at a time) runs before routing, and the output stream is checked every 32 tokens. The input check adds its latency and its queue to every TTFT; the last output chunk\'s check adds to E2E; a flagged output stops the stream with finish_reason "content_filter", billed for the prompt and the tokens generated before the stop.',
    watch: ['The moderation span in each request\'s breakdown.', 'TTFT with and without the stage.', 'content_filter endings and what was billed for them.'],
    runs: [
      { label: 'no moderation', spec: fleet('no moderation', pools, w) },
      {
        label: 'with moderation',
        spec: fleet('with moderation', pools, w, {
          moderation: { input: { medianMs: 40, sigma: 0.5, concurrency: 4 }, output: { everyTokens: 32, medianMs: 25, sigma: 0.5, concurrency: 8 }, flagRate: 0.03, inputFlagRate: 0.02 },
        }),
      },
    ],
  };
}

function quotasBilling(): FleetPreset {
  const w: FleetWorkloadSpec = {
    seed: 19,
    numRequests: 600,
    arrival: { kind: 'poisson', ratePerS: 8 },
    tenants: [
      { name: 'acme', weight: 2, model: 'llama-3-8b', promptMedian: 192, outputMedian: 64, lengthSigma: 0.5, sharedPrefix: { numTokens: 512, numPrefixes: 2 } },
      { name: 'globex', weight: 1, model: 'llama-3-8b', promptMedian: 256, outputMedian: 96, lengthSigma: 0.5 },
      { name: 'initech', weight: 1, model: 'llama-3-8b', promptMedian: 1024, outputMedian: 128, lengthSigma: 0.5 },
    ],
  };
  return {
    id: 'quotas-billing',
    title: 'Tenants, quotas and per-token bills',
    summary:
      'Three tenants share two replicas. Each request is billed for its prompt tokens (the cached ones cheaper), its generated tokens, at prices per million; initech, with long prompts, runs into its 60,000 tokens-per-minute quota and gets 429s with the reason. The fleet\'s own cost is GPU-hours; cost per million generated tokens compares the two.',
    watch: ['The per-tenant bills: prompt, cached and generated tokens.', 'initech\'s refusals, each with its reason.', 'GPU cost per million tokens against the price charged.'],
    runs: [
      {
        label: 'three tenants, one quota',
        spec: fleet('tenants and quotas', [pool('llama-3-8b', L4_8B, 2)], w, { billing: { ...BILLING_8B, tpmQuota: { initech: 60_000 } } }),
      },
    ],
  };
}

function p99Hunt(): FleetPreset {
  const w: FleetWorkloadSpec = {
    seed: 23,
    numRequests: 700,
    arrival: { kind: 'poisson', ratePerS: 6 },
    tenants: [
      { name: 'chat', weight: 5, model: 'llama-3-8b', promptMedian: 192, outputMedian: 64, lengthSigma: 0.5 },
      { name: 'support', weight: 3, model: 'llama-3-8b', promptMedian: 96, outputMedian: 48, lengthSigma: 0.5, sharedPrefix: { numTokens: 768, numPrefixes: 2 } },
      { name: 'docs-search', weight: 1, model: 'llama-3-8b', promptMedian: 320, outputMedian: 32, lengthSigma: 0.4 },
    ],
    planted: {
      atS: 60,
      tenant: 'docs-search',
      promptFactor: 8,
      description:
        'From t = 60 s the docs-search tenant\'s prompts grew 8× (a retrieval change stuffed more documents into each prompt). Their long prefills fill the step\'s token budget, so everyone queued behind them waits: head-of-line blocking. The slowest requests are docs-search\'s own, with prefill and queue time dominating their breakdowns.',
    },
  };
  return {
    id: 'p99-hunt',
    title: 'Hunt a P99 regression',
    summary:
      'P99 TTFT was fine for the first minute, then it regressed. Sort the slowest requests, read their breakdowns (queue, moderation, prefill, decode, preempted, recompute) and their tenants, and find the cause planted in the workload; then reveal the answer.',
    watch: ['P99 TTFT over time: when did it change?', 'The slowest 1%: which tenant, which phase?', 'Prompt lengths of that tenant before and after.'],
    runs: [{ label: 'production', spec: fleet('p99 regression', [pool('llama-3-8b', L4_8B, 2)], w, { sloTtftS: 1.5 }) }],
  };
}

const BUILDERS: Record<FleetPresetId, () => FleetPreset> = {
  spike,
  'spot-loss': spotLoss,
  'prefix-affinity': prefixAffinity,
  'two-models': twoModels,
  moderation,
  'quotas-billing': quotasBilling,
  'p99-hunt': p99Hunt,
};

/** The preset by id (a fresh copy each call: callers may edit it). Throws a RangeError for an unknown id. */
export function fleetPreset(id: FleetPresetId): FleetPreset {
  const build = BUILDERS[id];
  if (!build) throw new RangeError(`unknown fleet preset ${JSON.stringify(id)} (one of ${FLEET_PRESET_IDS.join(', ')})`);
  return build();
}
