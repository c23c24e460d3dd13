import { describe, expect, it } from 'vitest';
import { promptCacheOf } from '../../../src/ui/views/prompt-cache.ts';

const view = (numPromptTokens: number, numCachedPromptTokens: number, numPreemptions: number, firstScheduledMs = 5, last = numPreemptions === 0 ? Math.min(numCachedPromptTokens, numPromptTokens) : 32) => ({
  numPromptTokens,
  numCachedPromptTokens,
  numCachedPromptTokensLastAdmission: last,
  numPreemptions,
  firstScheduledMs,
});

describe('prompt cache hits as the request table shows them', () => {
  it('a request admitted once shows its hit, never more than its prompt', () => {
    expect(promptCacheOf(view(81, 32, 0))).toMatchObject({ hit: 32, label: '32' });
    expect(promptCacheOf(view(81, 32, 0)).title).toContain('32 of its 81 prompt tokens');
    expect(promptCacheOf(view(16, 16, 0)).hit).toBe(16);
  });

  it('a readmitted request never shows a total larger than the prompt as its hit', () => {
    // The engine's total over admissions (prompt and generated tokens found again): "39 (288)".
    const pc = promptCacheOf(view(39, 288, 3));
    expect(pc.hit).toBe(32); // the latest admission's prompt hit
    expect(pc.label).toBe('32 ↺');
    expect(pc.title).toContain('32 of its 39 prompt tokens were found in the prefix cache on its latest admission');
    expect(pc.title).toContain('over its 4 admissions');
    expect(pc.title).toContain('288 tokens in all');
    expect(promptCacheOf(view(20, 300, 2, 5, 99)).hit).toBe(20);
  });

  it('nothing cached: a hit of 0 once admitted (said in the title, not the cell), nothing before', () => {
    expect(promptCacheOf(view(20, 0, 0))).toMatchObject({ hit: 0, label: '' });
    expect(promptCacheOf(view(20, 0, 0)).title).toContain('none of its 20 prompt tokens');
    expect(promptCacheOf(view(20, 0, 2))).toMatchObject({ hit: 0, label: '' });
    expect(promptCacheOf(view(20, 0, 0, NaN))).toMatchObject({ hit: null, label: '' });
  });

  it('over many random cases the hit shown is within the prompt', () => {
    for (let i = 0; i < 500; i++) {
      const n = 1 + ((i * 37) % 400);
      const pc = promptCacheOf(view(n, (i * 53) % 900, i % 4));
      if (pc.hit !== null) expect(pc.hit).toBeLessThanOrEqual(n);
    }
  });
});
