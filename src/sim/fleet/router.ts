/**
 * The router: which serving replica of a pool gets a request, and why, in words. Pure functions
 * over what the router sees of each replica (outstanding requests, KV usage); the fleet calls
 * route() once per request and keeps the decision.
 *
 *   round-robin        the next replica in turn
 *   least-outstanding  fewest requests sent and not yet ended (ties: lowest id)
 *   least-kv           lowest KV cache usage (ties: fewest outstanding, then id)
 *   prefix-affinity    rendezvous hashing of the request's prefix key: every router picks the same
 *                      replica for one prefix, so its KV blocks are cached there (vLLM production
 *                      stack / SGLang router); when replicas come and go only the prefixes of the
 *                      ones that changed move. Passed over when it has more than affinityLoadCap
 *                      outstanding above the least loaded replica: then least-outstanding.
 */
import type { RouterPolicy } from './types.ts';
import { hashString } from './workload.ts';

/** What the router knows of one serving replica. */
export interface RouteCandidate {
  id: string;
  /** Requests sent to it and not yet ended. */
  outstanding: number;
  /** KV blocks in use / total, [0, 1]. */
  kvUsage: number;
}

export interface RouteRequest {
  id: string;
  /** Shared-prefix id, or the hash of the first block's tokens; absent: none. */
  prefixKey?: string;
}

/** Router state kept between requests (round-robin's turn). */
export interface RouterState {
  nextTurn: number;
}

export const DEFAULT_AFFINITY_LOAD_CAP = 8;

export interface RouteResult {
  replica: string;
  reason: string;
}

function leastOutstanding(c: readonly RouteCandidate[]): RouteCandidate {
  let best = c[0];
  for (const r of c) if (r.outstanding < best.outstanding || (r.outstanding === best.outstanding && r.id < best.id)) best = r;
  return best;
}

/** Rendezvous (highest random weight) hashing: the replica whose hash with the key is largest. */
export function rendezvous(key: string, candidates: readonly RouteCandidate[]): RouteCandidate {
  let best = candidates[0];
  let bestScore = -1;
  for (const c of candidates) {
    const score = hashString(c.id, hashString(key));
    if (score > bestScore || (score === bestScore && c.id < best.id)) {
      best = c;
      bestScore = score;
    }
  }
  return best;
}

/**
 * Picks one of `candidates` (serving replicas of the request's pool, in creation order; at least
 * one) for the request.
 */
export function route(policy: RouterPolicy, candidates: readonly RouteCandidate[], request: RouteRequest, state: RouterState, affinityLoadCap = DEFAULT_AFFINITY_LOAD_CAP): RouteResult {
  if (candidates.length === 0) throw new RangeError('route: no serving replica to choose from');
  switch (policy) {
    case 'round-robin': {
      const r = candidates[state.nextTurn % candidates.length];
      state.nextTurn = (state.nextTurn + 1) % candidates.length;
      return { replica: r.id, reason: `round-robin: ${r.id}'s turn (${r.outstanding} outstanding)` };
    }
    case 'least-outstanding': {
      const r = leastOutstanding(candidates);
      return { replica: r.id, reason: `least outstanding: ${r.id} has ${r.outstanding}` };
    }
    case 'least-kv': {
      let best = candidates[0];
      for (const c of candidates) {
        if (c.kvUsage < best.kvUsage || (c.kvUsage === best.kvUsage && (c.outstanding < best.outstanding || (c.outstanding === best.outstanding && c.id < best.id)))) best = c;
      }
      return { replica: best.id, reason: `least KV usage: ${best.id} at ${(best.kvUsage * 100).toFixed(0)}%` };
    }
    case 'prefix-affinity': {
      const least = leastOutstanding(candidates);
      if (request.prefixKey === undefined) return { replica: least.id, reason: `no shared prefix: least outstanding ${least.id} (${least.outstanding})` };
      const home = rendezvous(request.prefixKey, candidates);
      if (home.outstanding - least.outstanding > affinityLoadCap) {
        return {
          replica: least.id,
          reason: `prefix ${request.prefixKey} belongs on ${home.id} (${home.outstanding} outstanding, over cap ${affinityLoadCap} above least loaded ${least.id} with ${least.outstanding}): ${least.id} instead`,
        };
      }
      return { replica: home.id, reason: `prefix ${request.prefixKey} → ${home.id} by rendezvous hash (${home.outstanding} outstanding, least ${least.outstanding})` };
    }
  }
}

/** Router decisions kept in full, then one in ROUTER_DECISION_SAMPLE_EVERY, up to ROUTER_DECISIONS_MAX in all. */
export const ROUTER_DECISIONS_FULL = 2000;
export const ROUTER_DECISION_SAMPLE_EVERY = 10;
export const ROUTER_DECISIONS_MAX = 10_000;

/** Whether the n-th decision (0-based) is kept in the log (see ROUTER_DECISIONS_FULL). */
export function keepRouterDecision(n: number, numKept: number): boolean {
  if (numKept >= ROUTER_DECISIONS_MAX) return false;
  return n < ROUTER_DECISIONS_FULL || (n - ROUTER_DECISIONS_FULL) % ROUTER_DECISION_SAMPLE_EVERY === 0;
}
