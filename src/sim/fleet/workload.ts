/**
 * The fleet's seeded workload: who asks for what, and when. Requests are planned as plain
 * numbers (arrival, lengths, tenant, shared prefix); their token ids are made only when a request
 * is sent to a replica (promptTokenIds), from a generator seeded by (workload seed, request
 * index), so a 10,000-request run holds the tokens of the requests in flight, not of all of them.
 * Same spec, same requests.
 */
import { Rng } from '../../engine/workload.ts';
import type { FleetArrival, FleetTenantSpec, FleetWorkloadSpec } from './types.ts';

/** Token ids are drawn from [3, SYNTHETIC_VOCAB) (0-2 special, as in the engine's workloads). */
export const SYNTHETIC_VOCAB = 32000;
/** Shortest prompt and output a tenant's lengths are clamped to. */
export const MIN_PROMPT_TOKENS = 8;
export const MIN_OUTPUT_TOKENS = 4;
/** max_tokens a request asks for: this many times its tenant's median output (its actual output is shorter, ending at EOS, or clipped: finish_reason "length"). */
export const MAX_TOKENS_FACTOR = 4;

/** One planned request (no token ids yet). */
export interface FleetRequestPlan {
  id: string;
  /** Position in arrival order (0-based): seeds its tokens and its moderation draws. */
  index: number;
  tenant: string;
  model: string;
  arrivalMs: number;
  /** Prompt length, tokens (the shared prefix included). */
  promptTokens: number;
  /** The output it will produce before EOS (or maxTokens if that is smaller: finish "length"). */
  outputTokens: number;
  /** OpenAI's max_tokens: what quotas reserve. */
  maxTokens: number;
  priority: number;
  /**
   * The shared system prompt it starts with ("tenant/p3"), or a one-off id when the planted change
   * broke the tenant's prefix; absent: no shared prefix.
   */
  prefixId?: string;
  prefixTokens: number;
  /** True when the planted change applies to this request. */
  planted: boolean;
}

function tenantPick(tenants: readonly FleetTenantSpec[], total: number, rng: Rng): FleetTenantSpec {
  let pick = rng.next() * total;
  for (const t of tenants) if ((pick -= t.weight) < 0) return t;
  return tenants[tenants.length - 1];
}

/**
 * The next arrival after tMs for a Poisson process whose rate is piecewise constant (the spike):
 * draws E ~ Exp(1) and walks forward until the integrated rate reaches E.
 */
export function nextArrivalMs(arrival: FleetArrival, tMs: number, rng: Rng): number {
  let e = rng.exponential(1);
  if (arrival.kind === 'poisson') return tMs + (e / arrival.ratePerS) * 1000;
  const startMs = arrival.atS * 1000;
  const endMs = (arrival.atS + arrival.durationS) * 1000;
  let t = tMs;
  for (;;) {
    const inSpike = t >= startMs && t < endMs;
    const rate = arrival.ratePerS * (inSpike ? arrival.factor : 1);
    const boundary = t < startMs ? startMs : inSpike ? endMs : Infinity;
    const need = (e / rate) * 1000;
    if (t + need <= boundary) return t + need;
    e -= ((boundary - t) / 1000) * rate;
    t = boundary;
  }
}

/** Arrival rate at time tMs, requests/s (for the series). */
export function arrivalRateAt(arrival: FleetArrival, tMs: number): number {
  if (arrival.kind === 'poisson') return arrival.ratePerS;
  const s = tMs / 1000;
  return s >= arrival.atS && s < arrival.atS + arrival.durationS ? arrival.ratePerS * arrival.factor : arrival.ratePerS;
}

/**
 * Plans the workload's requests in arrival order. `maxModelLen(model)` bounds each tenant's
 * lengths (prompt at most half the context, output at most a quarter), so every request fits the
 * replicas that serve it. The spec is assumed checked (validateFleetSpec).
 */
export function planFleetWorkload(spec: FleetWorkloadSpec, maxModelLen: (model: string) => number): FleetRequestPlan[] {
  const rng = new Rng(spec.seed);
  const total = spec.tenants.reduce((a, t) => a + t.weight, 0);
  const out: FleetRequestPlan[] = [];
  const planted = spec.planted;
  let t = 0;
  for (let i = 0; i < spec.numRequests; i++) {
    t = nextArrivalMs(spec.arrival, t, rng);
    const tenant = tenantPick(spec.tenants, total, rng);
    const ctx = maxModelLen(tenant.model);
    const sigma = tenant.lengthSigma ?? 0.6;
    const isPlanted = planted !== undefined && planted.tenant === tenant.name && t >= planted.atS * 1000;
    const promptMax = Math.floor(ctx / 2);
    const outputMax = Math.floor(ctx / 4);
    let prompt = Math.round(tenant.promptMedian * Math.exp(sigma * rng.normal()));
    if (isPlanted && planted.promptFactor !== undefined) prompt = Math.round(prompt * planted.promptFactor);
    const output = Math.min(outputMax, Math.max(MIN_OUTPUT_TOKENS, Math.round(tenant.outputMedian * Math.exp(sigma * rng.normal()))));
    const maxTokens = Math.min(outputMax, Math.max(MIN_OUTPUT_TOKENS, Math.round(tenant.outputMedian * MAX_TOKENS_FACTOR)));
    const sp = tenant.sharedPrefix;
    let prefixId: string | undefined;
    let prefixTokens = 0;
    if (sp) {
      const k = rng.int(0, sp.numPrefixes - 1);
      prefixId = isPlanted && planted.breakPrefix ? `${tenant.name}/p${k}@${i}` : `${tenant.name}/p${k}`;
      prefixTokens = Math.min(sp.numTokens, promptMax - 1);
    }
    const promptTokens = Math.min(promptMax, Math.max(MIN_PROMPT_TOKENS, prefixTokens + 1, prompt + prefixTokens));
    out.push({
      id: `q${i}`,
      index: i,
      tenant: tenant.name,
      model: tenant.model,
      arrivalMs: t,
      promptTokens,
      outputTokens: Math.min(output, maxTokens),
      maxTokens,
      priority: tenant.priority ?? 0,
      ...(prefixId !== undefined ? { prefixId } : {}),
      prefixTokens,
      planted: isPlanted,
    });
  }
  return out;
}

/** A 32-bit hash of a string (FNV-1a), for seeds and the router's rendezvous hashing. */
export function hashString(s: string, seed = 0x811c9dc5): number {
  let h = seed >>> 0;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  h ^= h >>> 12;
  return h >>> 0;
}

/** Builds token ids on demand: shared prefixes once each (by id), the rest per request. */
export class PromptTokens {
  private readonly prefixes = new Map<string, number[]>();
  constructor(private readonly seed: number) {}

  private prefix(id: string, numTokens: number): number[] {
    let p = this.prefixes.get(id);
    if (!p) {
      const rng = new Rng(hashString(id, this.seed));
      p = Array.from({ length: numTokens }, () => rng.int(3, SYNTHETIC_VOCAB - 1));
      // A one-off (broken) prefix is used once: not worth keeping.
      if (!id.includes('@')) this.prefixes.set(id, p);
    }
    return p;
  }

  /** The request's prompt token ids (deterministic per seed and request). */
  of(plan: FleetRequestPlan): number[] {
    const rng = new Rng((Math.imul(plan.index + 1, 0x9e3779b1) ^ this.seed) >>> 0);
    const head = plan.prefixId !== undefined ? this.prefix(plan.prefixId, plan.prefixTokens) : [];
    const out = head.slice();
    while (out.length < plan.promptTokens) out.push(rng.int(3, SYNTHETIC_VOCAB - 1));
    return out;
  }
}
