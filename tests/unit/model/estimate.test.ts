import { describe, expect, it } from 'vitest';
import { checkLimits, estimateGpuMemory, weightBytesFor } from '../../../src/model/estimate.ts';
import { checkModelUrl } from '../../../src/model/url.ts';
import type { ModelConfig } from '../../../src/model/types.ts';
import { builtin } from './helpers.ts';

const stories110M: ModelConfig = {
  dim: 768, hiddenDim: 2048, numLayers: 12, numHeads: 12, numKvHeads: 12, vocabSize: 32000, seqLen: 1024,
  normEps: 1e-5, ropeTheta: 10000, sharedClassifier: true,
};

describe('GPU memory estimate', () => {
  it('stories260K: weights, KV per token with GQA, and a pool', () => {
    const e = estimateGpuMemory(builtin().model.config, { numBlocks: 64, blockSize: 16, maxBatchTokens: 256 });
    expect(e.weightBytes).toBe(260032 * 4);
    expect(e.kvBytesPerToken).toBe(2 * 5 * 32 * 4); // 4 KV heads of 8 = kvDim 32
    expect(e.kvCacheBytes).toBe(64 * 16 * 1280);
    expect(e.totalBytes).toBe(e.weightBytes + e.kvCacheBytes + e.activationBytes);
    expect(checkLimits(e, { maxBufferSize: 256 << 20, maxStorageBufferBindingSize: 128 << 20 })).toEqual([]);
  });

  it('quantized weights: the weights and the largest matrix shrink to their blocks (34 or 18 bytes per 32)', () => {
    const c = builtin().model.config;
    const plan = { numBlocks: 64, blockSize: 16, maxBatchTokens: 256 };
    const f32 = estimateGpuMemory(c, plan);
    for (const type of ['q8_0', 'q4_0'] as const) {
      const q = estimateGpuMemory(c, plan, type);
      expect(q.weightBytes).toBe(weightBytesFor(c, type));
      expect(q.weightBytes).toBeLessThan(f32.weightBytes);
      expect(q.kvCacheBytes).toBe(f32.kvCacheBytes);
      expect(q.totalBytes).toBe(q.weightBytes + q.kvCacheBytes + q.activationBytes);
    }
    // stories110M with a small pool and budget: the embedding (32000 x 768) is the largest buffer.
    const small = { numBlocks: 64, blockSize: 16, maxBatchTokens: 16 };
    expect(estimateGpuMemory(stories110M, small).largestBufferBytes).toBe(32000 * 768 * 4);
    for (const [type, bytesPer32] of [['q8_0', 34], ['q4_0', 18]] as const) {
      const q = estimateGpuMemory(stories110M, small, type);
      expect(q.largestBufferName).toBe('token embedding');
      expect(q.largestBufferBytes).toBe((32000 * 768 * bytesPer32) / 32);
    }
  });

  it('names the buffer that does not fit', () => {
    const e = estimateGpuMemory(stories110M, { numBlocks: 4096, blockSize: 16, maxBatchTokens: 512 });
    expect(e.largestBufferName).toBe('one layer of the KV pool (K or V)');
    expect(e.largestBufferBytes).toBe(4096 * 16 * 768 * 4);
    const problems = checkLimits(e, { maxBufferSize: 32 << 20, maxStorageBufferBindingSize: 32 << 20 }, 256 << 20);
    expect(problems[0]).toMatch(/KV pool .* needs a 192 MiB buffer, but this GPU binds at most 32 MiB/);
    expect(problems[1]).toMatch(/more than the 256 MiB budget/);
  });
});

describe('model URLs', () => {
  it('accepts https and rewrites Hugging Face blob pages to downloads', () => {
    expect(checkModelUrl('https://huggingface.co/karpathy/tinyllamas/blob/main/stories15M.bin')).toEqual({
      ok: true,
      url: 'https://huggingface.co/karpathy/tinyllamas/resolve/main/stories15M.bin',
    });
    expect(checkModelUrl('models/stories260K.bin', 'https://example.org/app/')).toEqual({ ok: true, url: 'https://example.org/app/models/stories260K.bin' });
  });

  it('refuses what cannot be a model download', () => {
    expect(checkModelUrl('')).toMatchObject({ ok: false, reason: 'the URL is empty' });
    expect(checkModelUrl('javascript:alert(1)')).toMatchObject({ ok: false, reason: /only http\(s\)/ });
    expect(checkModelUrl('file:///etc/passwd')).toMatchObject({ ok: false });
    expect(checkModelUrl('https://user:pw@example.org/m.bin')).toMatchObject({ ok: false, reason: /password/ });
    expect(checkModelUrl('not a url')).toMatchObject({ ok: false, reason: /is not a URL/ });
  });
});
