import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { argmaxOf, createSampler, isGreedyTemperature, probabilities, XorShiftRng } from '../../../src/engine/sampler.ts';

/** xorshift64* worked by hand with BigInt, independently of the class under test. */
function xorshiftByHand(seed: bigint, n: number): number[] {
  const mask = (1n << 64n) - 1n;
  let s = seed;
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    s ^= s >> 12n;
    s = (s ^ (s << 25n)) & mask;
    s ^= s >> 27n;
    out.push(Number(((s * 0x2545f4914f6cdd1dn) & mask) >> 32n));
  }
  return out;
}

const logits = Float32Array.from([1.0, 3.0, 2.5, -1.0, 3.0, 0.5]);

describe('sampler', () => {
  it("run.c's xorshift64* stream", () => {
    const rng = new XorShiftRng(42);
    const got = Array.from({ length: 5 }, () => rng.nextU32());
    expect(got).toEqual(xorshiftByHand(42n, 5));
    const f = new XorShiftRng(42).nextF32();
    expect(f).toBeCloseTo((xorshiftByHand(42n, 1)[0] >>> 8) / 16777216, 12);
    expect(f).toBeGreaterThanOrEqual(0);
    expect(f).toBeLessThan(1);
  });

  it('greedy takes the first maximum', () => {
    expect(argmaxOf(logits)).toBe(1);
    const s = createSampler({ temperature: 0, topP: 0.9, topK: 0, seed: 1 });
    expect(s.sampleLogits(logits)).toBe(1);
    expect(s.sample({ seqId: 0, argmax: 4 })).toBe(4); // the executor's argmax is used as is
  });

  it('softmax with temperature and top-k', () => {
    const p = probabilities(logits, 1, 0);
    const e = [...logits].map((v) => Math.exp(v - 3));
    const sum = e.reduce((a, b) => a + b);
    e.forEach((v, i) => expect(p[i]).toBeCloseTo(v / sum, 6));
    const k2 = probabilities(logits, 1, 2);
    expect([...k2].map((v) => v > 0)).toEqual([false, true, false, false, true, false]);
    expect(k2[1]).toBeCloseTo(0.5, 6);
  });

  it('top-k = 1 and a tiny top-p are greedy at any temperature', () => {
    for (let seed = 1; seed < 30; seed++) {
      expect(createSampler({ temperature: 1.5, topP: 0, topK: 1, seed }).sampleLogits(logits)).toBe(1);
      // top-p 0.01: the nucleus is the single most likely token (the first of the tied pair here).
      const choice = createSampler({ temperature: 1.5, topP: 0.01, topK: 0, seed }).sampleLogits(logits);
      expect([1, 4]).toContain(choice);
    }
  });

  it('same seed, same tokens; the stream advances one coin per sample', () => {
    const a = createSampler({ temperature: 1, topP: 0.9, topK: 0, seed: 123 });
    const b = createSampler({ temperature: 1, topP: 0.9, topK: 0, seed: 123 });
    const seqA = Array.from({ length: 50 }, () => a.sampleLogits(logits));
    const seqB = Array.from({ length: 50 }, () => b.sampleLogits(logits));
    expect(seqA).toEqual(seqB);
    expect(new Set(seqA).size).toBeGreaterThan(1);
  });

  it('multinomial sampling follows the probabilities', () => {
    const s = createSampler({ temperature: 1, topP: 1, topK: 0, seed: 99 });
    const counts = new Array(logits.length).fill(0);
    const n = 20000;
    for (let i = 0; i < n; i++) counts[s.sampleLogits(logits)]++;
    const p = probabilities(logits, 1, 0);
    counts.forEach((c, i) => expect(Math.abs(c / n - p[i])).toBeLessThan(0.015));
  });

  it('nucleus sampling never picks outside the nucleus', () => {
    // p ≈ [0.06, 0.33, 0.20, 0.01, 0.33, 0.04]: the 0.85 nucleus is {1, 4, 2}.
    const s = createSampler({ temperature: 1, topP: 0.85, topK: 0, seed: 5 });
    const seen = new Set<number>();
    for (let i = 0; i < 3000; i++) seen.add(s.sampleLogits(logits));
    expect([...seen].sort()).toEqual([1, 2, 4]);
  });

  it('rejects impossible settings with a clear error', () => {
    expect(() => createSampler({ temperature: -1, topP: 0.9, topK: 0, seed: 1 })).toThrow(/temperature/);
    expect(() => createSampler({ temperature: 1, topP: 2, topK: 0, seed: 1 })).toThrow(/top_p/);
    expect(() => createSampler({ temperature: 1, topP: 0.9, topK: 1.5, seed: 1 })).toThrow(/top_k/);
    const s = createSampler({ temperature: 1, topP: 0.9, topK: 0, seed: 1 });
    expect(() => s.sample({ seqId: 3, argmax: 0 })).toThrow(/returned no logits/);
  });

  it('a temperature too small to divide by samples greedily (it used to return undefined or the last token)', () => {
    // 1e-45 is float32's smallest denormal: every logit / it is +-Infinity and the softmax NaN.
    for (const temperature of [1e-45, 1e-40, 2.9e-39]) {
      expect(isGreedyTemperature(temperature), String(temperature)).toBe(true);
      for (const topP of [0.9, 1]) {
        const s = createSampler({ temperature, topP, topK: 0, seed: 7 });
        expect(s.sampleLogits(logits), `T ${temperature} top-p ${topP}`).toBe(1);
        expect(s.sample({ seqId: 0, argmax: 1 })).toBe(1);
        expect(s.numOverflowedSteps).toBe(0); // greedy outright, no coin drawn, as at temperature 0
      }
    }
    expect(isGreedyTemperature(0)).toBe(true);
    expect(isGreedyTemperature(1e-50)).toBe(true); // 0 as a float32, as in run.c
    expect(isGreedyTemperature(3e-39)).toBe(false); // 1 / 3e-39 still fits in a float32
    expect(isGreedyTemperature(1e-30)).toBe(false);
    expect(isGreedyTemperature(0.8)).toBe(false);
  });

  it('a row whose largest logit / temperature overflows samples its argmax, drawing the coin run.c draws', () => {
    const big = Float32Array.from([10, 40, -5, 39.5]); // 40 / 1e-37 overflows float32
    const s = createSampler({ temperature: 1e-37, topP: 0.9, topK: 0, seed: 3 });
    const rng = new XorShiftRng(3);
    expect(s.sampleLogits(big)).toBe(1);
    rng.nextF32();
    expect(s.numOverflowedSteps).toBe(1);
    expect(s.rng.state).toBe(rng.state);
    // A row that does not overflow at the same temperature is sampled as before.
    const small = Float32Array.from([1e-36, 3e-36, 2e-36]);
    const want = createSampler({ temperature: 1e-37, topP: 0.9, topK: 0, seed: 3 });
    want.rng.nextF32();
    expect(s.sampleLogits(small)).toBe(want.sampleLogits(small));
    expect(s.numOverflowedSteps).toBe(1);
  });

  it('a nucleus with no token above its cutoff is the most likely token (run.c reads out of bounds there)', () => {
    // Uniform over 6 at top-p 0.01: every p = 1/6 is below (1 - 0.01) / 5.
    const flat = Float32Array.from([2, 2, 2, 2, 2, 2]);
    expect(createSampler({ temperature: 1, topP: 0.01, topK: 0, seed: 1 }).sampleLogits(flat)).toBe(0);
    expect(createSampler({ temperature: 1, topP: 0.5, topK: 0, seed: 1 }).sampleLogits(Float32Array.of(3))).toBe(0);
    // An infinite float temperature (1e39 as a float32) flattens every row.
    expect(createSampler({ temperature: 1e39, topP: 0.001, topK: 0, seed: 1 }).sampleLogits(logits)).toBe(0);
  });

  it('any positive temperature samples a token in the vocabulary (property)', () => {
    const row = fc.array(fc.float({ min: -100, max: 100, noNaN: true }), { minLength: 1, maxLength: 40 }).map((a) => Float32Array.from(a));
    const temperature = fc.oneof(fc.double({ min: 1e-46, max: 1e-30, noNaN: true }), fc.double({ min: 1e-30, max: 10, noNaN: true }));
    fc.assert(
      fc.property(row, temperature, fc.constantFrom(0, 0.5, 0.9, 1), fc.integer({ min: 0, max: 3 }), (l, t, topP, topK) => {
        const token = createSampler({ temperature: t, topP, topK, seed: 11 }).sampleLogits(l);
        expect(Number.isInteger(token) && token >= 0 && token < l.length).toBe(true);
        // Where the largest logit / temperature overflows, that is the argmax.
        if (!Number.isFinite(Math.fround(Math.max(...l) / Math.fround(t)))) expect(token).toBe(argmaxOf(l));
      }),
      { numRuns: 2000, seed: 21 },
    );
  });
});
