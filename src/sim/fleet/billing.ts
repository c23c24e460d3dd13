/**
 * Per-token billing and tokens-per-minute quotas. A request is billed for the prompt tokens it
 * computed (uncached), the prompt tokens served from the prefix cache (at the cached price) and
 * the tokens it generated; the fleet pays every replica's GPU-hours (cold start included).
 * Quotas reserve prompt + max_tokens at admission over a sliding 60 s window, as the hosted APIs'
 * TPM limits do; a request over it is refused (HTTP 429) with the reason.
 */
import type { BillingResult, BillingSpec, FleetFinishReason, TenantBill } from './types.ts';

export const QUOTA_WINDOW_MS = 60_000;

/** What is billed for a request that moderation stopped, and for the other endings (BillingResult.policy). */
export const BILLING_POLICY =
  'Billed: prompt tokens (cached ones at the cached price) and generated tokens. A stream stopped by the output check (finish_reason "content_filter") is billed for its prompt and the tokens generated before the stop; a prompt refused by the input check, a request refused by a quota, and a request that failed or was aborted by the fleet (a lost replica) are not billed.';

/** Whether a request that ended this way is billed (see BILLING_POLICY). */
export function isBilled(finish: FleetFinishReason, inputFlagged: boolean): boolean {
  if (finish === 'stop' || finish === 'length') return true;
  if (finish === 'content_filter') return !inputFlagged;
  return false;
}

/** USD for one request's tokens. */
export function requestUsd(spec: BillingSpec, promptTokens: number, cachedPromptTokens: number, generatedTokens: number): number {
  const uncached = promptTokens - cachedPromptTokens;
  return (uncached * spec.usdPerMPromptTokens + cachedPromptTokens * spec.usdPerMCachedPromptTokens + generatedTokens * spec.usdPerMGeneratedTokens) / 1e6;
}

/** Sliding-window tokens-per-minute reservations per tenant. */
export class QuotaTracker {
  private readonly windows = new Map<string, { atMs: number; tokens: number }[]>();
  constructor(private readonly quotas: Record<string, number> = {}) {}

  /**
   * Admits `tokens` for `tenant` at nowMs if its reservations in the last minute plus these stay
   * within its quota; returns null when admitted, else the reason.
   */
  admit(tenant: string, nowMs: number, tokens: number): string | null {
    const quota = this.quotas[tenant];
    if (quota === undefined) return null;
    let w = this.windows.get(tenant);
    if (!w) this.windows.set(tenant, (w = []));
    while (w.length > 0 && w[0].atMs <= nowMs - QUOTA_WINDOW_MS) w.shift();
    const used = w.reduce((a, e) => a + e.tokens, 0);
    if (used + tokens > quota) {
      return `tenant ${tenant}: ${used} tokens reserved in the last minute + ${tokens} (prompt + max_tokens) > quota ${quota} tokens/min (429)`;
    }
    w.push({ atMs: nowMs, tokens });
    return null;
  }
}

/** One ended request, as billing reads it. */
export interface BilledRequest {
  tenant: string;
  promptTokens: number;
  cachedPromptTokens: number;
  outputTokens: number;
  /** Whether its tokens are billed (isBilled); billedUsd is 0 when not. */
  billed: boolean;
  billedUsd: number;
  /** Refused by the tokens-per-minute quota. */
  quotaRejected: boolean;
}

/**
 * The bill: per tenant the tokens of its billed requests and their USD, its quota refusals; the
 * fleet's GPU cost per million generated tokens (every generated token, billed or not: the GPUs
 * computed them all).
 */
export function buildBilling(tenantNames: readonly string[], requests: readonly BilledRequest[], gpuHours: number, gpuUsd: number): BillingResult {
  const bills = new Map<string, TenantBill>();
  for (const name of tenantNames) bills.set(name, { tenant: name, promptTokens: 0, cachedPromptTokens: 0, generatedTokens: 0, usd: 0, quotaRejected: 0 });
  let generated = 0;
  for (const r of requests) {
    const b = bills.get(r.tenant);
    if (!b) throw new RangeError(`billing: request of unknown tenant ${JSON.stringify(r.tenant)}`);
    generated += r.outputTokens;
    if (r.quotaRejected) b.quotaRejected++;
    if (!r.billed) continue;
    b.promptTokens += r.promptTokens;
    b.cachedPromptTokens += r.cachedPromptTokens;
    b.generatedTokens += r.outputTokens;
    b.usd += r.billedUsd;
  }
  return {
    tenants: [...bills.values()],
    gpuUsd,
    gpuHours,
    costPerMTokensUsd: generated > 0 ? (gpuUsd / generated) * 1e6 : NaN,
    policy: BILLING_POLICY,
  };
}
