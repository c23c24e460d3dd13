import { describe, expect, it } from 'vitest';
import { coldStart, decideScale, quantile } from '../../../../src/sim/fleet/autoscaler.ts';
import type { AutoscalerSpec, DeploymentSpec } from '../../../../src/sim/fleet/types.ts';

const spec: AutoscalerSpec = { metric: 'queue-depth', target: 4, intervalS: 5, minReplicas: 2, maxReplicas: 8, scaleDownCooldownS: 30, loadBytesPerS: 2e9, warmupS: 5 };
const at = (o: Partial<Parameters<typeof decideScale>[1]>) => ({ nowS: 100, serving: 2, starting: 0, value: 4, lastScaleS: -Infinity, ...o });

describe('cold start arithmetic', () => {
  it('Llama-3 8B on one H100: 16.06 GB of weights at 2 GB/s plus 5 s warm-up', () => {
    // By hand: per layer 4096·4096 (q) + 2·4096·1024 (k, v) + 4096·4096 (o) + 3·4096·14336 (FFN) + 2·4096 (norms)
    // = 218,112,000; x 32 layers = 6,979,584,000; embeddings 2 x 128,256 x 4096 = 1,050,673,152; final norm 4096.
    const params = 6_979_584_000 + 1_050_673_152 + 4096;
    const d: DeploymentSpec = { modelId: 'llama-3-8b', hardwareId: 'h100-sxm', tensorParallel: 1, pipelineParallel: 1, maxNumSeqs: 64, maxNumBatchedTokens: 4096, gpuHourUsd: 3 };
    const c = coldStart(d, spec);
    expect(c.weightBytesPerDevice).toBe(params * 2);
    expect(c.loadS).toBeCloseTo(8.030261248, 9);
    expect(c.totalS).toBeCloseTo(13.030261248, 9);
  });

  it('tensor parallelism splits the weights: each of 4 devices loads a quarter, in parallel', () => {
    const one: DeploymentSpec = { modelId: 'llama-3-70b', hardwareId: 'h100-sxm', tensorParallel: 1, pipelineParallel: 1, maxNumSeqs: 64, maxNumBatchedTokens: 4096, gpuHourUsd: 3 };
    const whole = coldStart(one, { loadBytesPerS: 1e9, warmupS: 0 });
    const four = coldStart({ ...one, tensorParallel: 4 }, { loadBytesPerS: 1e9, warmupS: 10 });
    expect(four.weightBytesPerDevice).toBeCloseTo(whole.weightBytesPerDevice / 4, 0);
    expect(four.totalS).toBeCloseTo(whole.loadS / 4 + 10, 9);
    expect(() => coldStart({ ...one, modelId: 'gpt-9' }, spec)).toThrow(/modelId/);
  });
});

describe('autoscaler decisions', () => {
  it('holds within the 10% tolerance band', () => {
    expect(decideScale(spec, at({ value: 4.36 }), 13)).toBeNull();
    expect(decideScale(spec, at({ value: 3.64 }), 13)).toBeNull();
  });

  it('scales up by the HPA rule: ceil(2 x 9 / 4) = 5, at once', () => {
    const d = decideScale(spec, at({ value: 9 }), 13);
    expect(d).toEqual({ to: 5, reason: 'queue/replica 9.0 vs target 4.0: 2 → 5 replicas, +3 (cold start 13.0 s)' });
  });

  it('counts replicas already starting: ceil(2 x 9 / 4) = 5 with 3 starting is no change', () => {
    expect(decideScale(spec, at({ value: 9, starting: 3 }), 13)).toBeNull();
    expect(decideScale(spec, at({ value: 9, starting: 1 }), 13)?.to).toBe(5);
  });

  it('caps at maxReplicas and says so', () => {
    const d = decideScale(spec, at({ value: 40 }), 13)!;
    expect(d.to).toBe(8);
    expect(d.reason).toContain('capped at max 8');
  });

  it('scales down only after the cool-down, never below min', () => {
    // 6 serving, queue 1/replica: ceil(6 x 1 / 4) = 2.
    expect(decideScale(spec, at({ serving: 6, value: 1, lastScaleS: 80 }), 13)).toBeNull(); // 20 s < 30 s
    const d = decideScale(spec, at({ serving: 6, value: 1, lastScaleS: 70 }), 13)!;
    expect(d.to).toBe(2);
    expect(d.reason).toBe('queue/replica 1.0 vs target 4.0: 6 → 2 replicas, drain 4 (30 s since the last change ≥ cool-down 30 s)');
    expect(decideScale(spec, at({ serving: 3, value: 0, lastScaleS: 0 }), 13)?.to).toBe(2);
  });

  it('replaces replicas below min (after a loss) before anything else', () => {
    expect(decideScale(spec, at({ serving: 1, value: 0 }), 13)).toEqual({ to: 2, reason: '1 replicas < min 2: +1 (cold start 13.0 s)' });
  });

  it('with no replica at all, requests waiting order one', () => {
    const zero = { ...spec, minReplicas: 0 };
    expect(decideScale(zero, at({ serving: 0, value: NaN, unserved: 3 }), 13)?.to).toBe(1);
    expect(decideScale(zero, at({ serving: 0, value: NaN, unserved: 0 }), 13)).toBeNull();
  });

  it('KV usage and TTFT targets use the same rule', () => {
    const kv = { ...spec, metric: 'kv-usage' as const, target: 0.6 };
    expect(decideScale(kv, at({ value: 0.9 }), 13)).toEqual({ to: 3, reason: 'KV usage 90% vs target 60%: 2 → 3 replicas, +1 (cold start 13.0 s)' });
    const ttft = { ...spec, metric: 'ttft-slo' as const, target: 1 };
    expect(decideScale(ttft, at({ serving: 4, value: 2.5 }), 13)?.to).toBe(8); // ceil(4 x 2.5) = 10, capped
  });

  it('quantile is nearest-rank', () => {
    expect(quantile([5, 1, 4, 2, 3], 0.9)).toBe(5);
    expect(quantile([5, 1, 4, 2, 3], 0.5)).toBe(3);
    expect(quantile([], 0.5)).toBeNaN();
  });
});
