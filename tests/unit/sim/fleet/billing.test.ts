import { describe, expect, it } from 'vitest';
import { buildBilling, isBilled, QuotaTracker, requestUsd, BILLING_POLICY } from '../../../../src/sim/fleet/billing.ts';

const prices = { usdPerMPromptTokens: 0.2, usdPerMCachedPromptTokens: 0.05, usdPerMGeneratedTokens: 0.6 };

describe('billing', () => {
  it('prices a request by hand', () => {
    // 1000 prompt tokens, 600 of them cached, 250 generated:
    // 400 x 0.2 + 600 x 0.05 + 250 x 0.6 = 80 + 30 + 150 = 260 per million = $0.00026.
    expect(requestUsd(prices, 1000, 600, 250)).toBeCloseTo(0.00026, 12);
  });

  it('bills what the policy says', () => {
    expect(isBilled('stop', false)).toBe(true);
    expect(isBilled('length', false)).toBe(true);
    expect(isBilled('content_filter', false)).toBe(true);
    expect(isBilled('content_filter', true)).toBe(false);
    for (const f of ['rejected', 'failed', 'abort'] as const) expect(isBilled(f, false)).toBe(false);
    expect(BILLING_POLICY).toContain('tokens generated before the stop');
  });

  it('sums tenants by hand and prices GPU time per million generated tokens', () => {
    const b = buildBilling(
      ['a', 'b'],
      [
        { tenant: 'a', promptTokens: 1000, cachedPromptTokens: 600, outputTokens: 250, billed: true, billedUsd: 0.00026, quotaRejected: false },
        { tenant: 'a', promptTokens: 100, cachedPromptTokens: 0, outputTokens: 50, billed: true, billedUsd: 0.00005, quotaRejected: false },
        { tenant: 'b', promptTokens: 500, cachedPromptTokens: 0, outputTokens: 0, billed: false, billedUsd: 0, quotaRejected: true },
        { tenant: 'b', promptTokens: 300, cachedPromptTokens: 0, outputTokens: 200, billed: false, billedUsd: 0, quotaRejected: false },
      ],
      2,
      6,
    );
    expect(b.tenants).toEqual([
      { tenant: 'a', promptTokens: 1100, cachedPromptTokens: 600, generatedTokens: 300, usd: 0.00031, quotaRejected: 0 },
      { tenant: 'b', promptTokens: 0, cachedPromptTokens: 0, generatedTokens: 0, usd: 0, quotaRejected: 1 },
    ]);
    // $6 of GPU time for 250 + 50 + 200 = 500 generated tokens (the failed one's too: the GPUs made them).
    expect(b.costPerMTokensUsd).toBeCloseTo(12_000, 9);
    expect(b.gpuHours).toBe(2);
  });

  it('enforces tokens per minute over a sliding window, with the reason', () => {
    const q = new QuotaTracker({ a: 1000 });
    expect(q.admit('a', 0, 600)).toBeNull();
    expect(q.admit('a', 30_000, 300)).toBeNull();
    expect(q.admit('a', 59_000, 200)).toBe('tenant a: 900 tokens reserved in the last minute + 200 (prompt + max_tokens) > quota 1000 tokens/min (429)');
    // At 60 s the first reservation has left the window.
    expect(q.admit('a', 60_000, 600)).toBeNull();
    expect(q.admit('nobody-limits-me', 0, 1e9)).toBeNull();
  });
});
