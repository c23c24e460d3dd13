/**
 * The bill at prices the user types: each tenant's billed requests' token counts (prompt, of which
 * cached, generated) times the prices per million tokens. Which requests are billed follows the
 * run's policy (BillingResult.policy): completed ones and streams stopped by the output check;
 * not refused, failed or aborted ones. Pure.
 */
import type { BillingSpec, FleetRequestRecord } from '../../sim/fleet/types.ts';

/** USD per million tokens. */
export interface Prices {
  usdPerMPromptTokens: number;
  usdPerMCachedPromptTokens: number;
  usdPerMGeneratedTokens: number;
}

export const PRICE_FIELDS: readonly { key: keyof Prices; label: string }[] = [
  { key: 'usdPerMPromptTokens', label: 'prompt' },
  { key: 'usdPerMCachedPromptTokens', label: 'cached prompt' },
  { key: 'usdPerMGeneratedTokens', label: 'generated' },
];

export function pricesOf(b: BillingSpec): Prices {
  return { usdPerMPromptTokens: b.usdPerMPromptTokens, usdPerMCachedPromptTokens: b.usdPerMCachedPromptTokens, usdPerMGeneratedTokens: b.usdPerMGeneratedTokens };
}

/** What is wrong with the prices, in words (null: nothing). */
export function pricesProblem(p: Prices): string | null {
  for (const f of PRICE_FIELDS) {
    const v = p[f.key];
    if (typeof v !== 'number' || !Number.isFinite(v)) return `the ${f.label} price must be a number`;
    if (v < 0) return `the ${f.label} price must be 0 or more`;
  }
  return null;
}

/**
 * Whether the request's tokens are billed: it completed (stop, length), or moderation stopped
 * its output stream (content_filter after generating); a prompt refused by the input check has
 * generated nothing and was billed nothing.
 */
export function isBilledRecord(r: FleetRequestRecord): boolean {
  if (r.finishReason === 'stop' || r.finishReason === 'length') return true;
  if (r.finishReason === 'content_filter') return r.outputTokens > 0 || r.billedUsd > 0;
  return false;
}

export interface RecomputedBill {
  tenant: string;
  numBilled: number;
  promptTokens: number;
  cachedPromptTokens: number;
  generatedTokens: number;
  usd: number;
}

/** One request's price: uncached prompt, cached prompt and generated tokens at their prices, USD. */
export function requestPriceUsd(r: Pick<FleetRequestRecord, 'promptTokens' | 'cachedPromptTokens' | 'outputTokens'>, p: Prices): number {
  return ((r.promptTokens - r.cachedPromptTokens) * p.usdPerMPromptTokens + r.cachedPromptTokens * p.usdPerMCachedPromptTokens + r.outputTokens * p.usdPerMGeneratedTokens) / 1e6;
}

/** Each tenant's bill at `prices` (tenants in the order given; a tenant with no billed request bills 0), and the total. */
export function recomputeBills(requests: readonly FleetRequestRecord[], tenants: readonly string[], prices: Prices): { bills: RecomputedBill[]; totalUsd: number } {
  const bills = new Map<string, RecomputedBill>();
  for (const t of tenants) bills.set(t, { tenant: t, numBilled: 0, promptTokens: 0, cachedPromptTokens: 0, generatedTokens: 0, usd: 0 });
  for (const r of requests) {
    if (!isBilledRecord(r)) continue;
    let b = bills.get(r.tenant);
    if (!b) bills.set(r.tenant, (b = { tenant: r.tenant, numBilled: 0, promptTokens: 0, cachedPromptTokens: 0, generatedTokens: 0, usd: 0 }));
    b.numBilled++;
    b.promptTokens += r.promptTokens;
    b.cachedPromptTokens += r.cachedPromptTokens;
    b.generatedTokens += r.outputTokens;
    b.usd += requestPriceUsd(r, prices);
  }
  const list = [...bills.values()];
  return { bills: list, totalUsd: list.reduce((s, b) => s + b.usd, 0) };
}
