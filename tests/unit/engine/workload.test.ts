import { describe, expect, it } from 'vitest';
import { exportTrace, generateWorkload, importTrace, Rng, type WorkloadSpec } from '../../../src/engine/workload.ts';

const spec: WorkloadSpec = {
  seed: 11,
  numRequests: 4000,
  arrival: { kind: 'poisson', ratePerS: 20 },
  promptTokens: { kind: 'uniform', min: 5, max: 50 },
  outputTokens: { kind: 'bimodal', short: 10, long: 2000, longFraction: 0.25 },
  sharedPrefix: { fraction: 0.4, numTokens: 16, numPrefixes: 2 },
  tenants: [
    { name: 'gold', weight: 1, priority: 0, deadlineMs: 2000 },
    { name: 'free', weight: 3, priority: 2 },
  ],
  parallelSampling: { fraction: 0.1, n: 4 },
  predictionNoiseSigma: 0.3,
};

describe('workload generator', () => {
  it('is deterministic per seed', () => {
    expect(generateWorkload(spec)).toEqual(generateWorkload(spec));
    expect(generateWorkload({ ...spec, seed: 12 })).not.toEqual(generateWorkload(spec));
  });

  it('follows the requested distributions', () => {
    const w = generateWorkload(spec);
    const frac = (pred: (r: (typeof w)[number]) => boolean) => w.filter(pred).length / w.length;
    expect(new Set(w.map((r) => r.maxTokens))).toEqual(new Set([10, 2000]));
    expect(frac((r) => r.maxTokens === 2000)).toBeCloseTo(0.25, 1);
    expect(frac((r) => r.tenant === 'gold')).toBeCloseTo(0.25, 1);
    expect(frac((r) => r.n === 4)).toBeCloseTo(0.1, 1);
    expect(w.every((r) => r.tenant !== 'gold' || (r.priority === 0 && r.deadlineMs === 2000))).toBe(true);
    // Mean inter-arrival 1/20 s.
    expect(w[w.length - 1].arrivalMs! / w.length).toBeCloseTo(50, -1);
    const prefixes = new Set(w.filter((r) => r.promptTokenIds.length >= 16).map((r) => r.promptTokenIds.slice(0, 16).join()));
    expect(prefixes.size).toBeLessThan(w.length * 0.7);
    expect(w.every((r) => r.promptTokenIds.every((t) => t >= 3 && t < 512))).toBe(true);
  });

  it('makes bursty arrivals burstier than Poisson at the same rate', () => {
    const cv = (kind: 'poisson' | 'bursty') => {
      const w = generateWorkload({ ...spec, arrival: kind === 'poisson' ? { kind, ratePerS: 20 } : { kind, ratePerS: 20, burstiness: 0.2 } });
      const gaps = w.map((r, i) => r.arrivalMs! - (i ? w[i - 1].arrivalMs! : 0));
      const mean = gaps.reduce((a, b) => a + b) / gaps.length;
      const sd = Math.sqrt(gaps.reduce((a, g) => a + (g - mean) ** 2, 0) / gaps.length);
      return { mean, cv: sd / mean };
    };
    expect(cv('poisson').cv).toBeCloseTo(1, 1);
    expect(cv('bursty').cv).toBeGreaterThan(1.8);
    expect(cv('bursty').mean).toBeCloseTo(50, -1);
  });

  it('round-trips traces through JSON and rejects malformed ones', () => {
    const w = generateWorkload({ ...spec, numRequests: 20 });
    expect(importTrace(exportTrace(w))).toEqual(w);
    expect(() => importTrace('{"format":"other","version":1,"requests":[]}')).toThrow(/unknown format/);
    expect(() => importTrace('{"format":"servelab-trace","version":1,"requests":[{"promptTokenIds":[1],"maxTokens":0}]}')).toThrow(/maxTokens/);
    expect(() => importTrace('{"format":"servelab-trace","version":1,"requests":[{"promptTokenIds":"x","maxTokens":1}]}')).toThrow(/promptTokenIds/);
  });

  it('Rng stays in range', () => {
    const r = new Rng(1);
    for (let i = 0; i < 1000; i++) {
      const x = r.next();
      expect(x >= 0 && x < 1).toBe(true);
      const k = r.int(2, 4);
      expect(k >= 2 && k <= 4).toBe(true);
    }
  });
});
