/**
 * bench quant's measurements (src/sim/bench/quant.ts) on the CPU reference: the metrics are
 * exact for a model against itself and move for a quantized one; the JSON has the shape.
 */
import { describe, expect, it } from 'vitest';
import { VirtualClock } from '../../../src/engine/clock.ts';
import { CpuReferenceExecutor } from '../../../src/model/reference.ts';
import { quantizeModel } from '../../../src/model/quant.ts';
import { klDivergence, measureQuality, quantBench, rollout } from '../../../src/sim/bench/quant.ts';
import type { Backend } from '../../../src/sim/bench/types.ts';
import { builtin } from '../model/helpers.ts';

const { model, tokenizer } = builtin();
const prompts = ['Once upon a time', 'The little dog'].map((p) => tokenizer.encode(p, true, false));

describe('bench quant', () => {
  it('KL divergence: 0 for equal logits, ln 2 for a certain vs a fair coin, never negative', () => {
    expect(klDivergence(Float32Array.of(1, 2, 3), Float32Array.of(1, 2, 3))).toBe(0);
    expect(klDivergence(Float32Array.of(1, 2, 3), Float32Array.of(11, 12, 13))).toBeCloseTo(0, 12); // shift-invariant
    expect(klDivergence(Float32Array.of(0, -1e4), Float32Array.of(0, 0))).toBeCloseTo(Math.LN2, 9);
  });

  it('a model against itself agrees everywhere, KL 0, never diverges; Q4_0 does not', async () => {
    const steps = 12;
    const reference = await rollout(new CpuReferenceExecutor(model), prompts, steps, { keepLogits: true });
    const same = await measureQuality(new CpuReferenceExecutor(model), prompts, steps, reference);
    expect(same).toMatchObject({ top1Agreement: 1, meanKl: 0, firstDivergence: steps, firstDivergenceByPrompt: [null, null], positions: prompts.length * steps });
    const q4 = await measureQuality(new CpuReferenceExecutor(quantizeModel(model, 'q4_0')), prompts, steps, reference);
    expect(q4.meanKl).toBeGreaterThan(0);
    expect(q4.top1Agreement).toBeLessThanOrEqual(1);
    expect(q4.firstDivergence).toBeLessThanOrEqual(steps);
  }, 60_000);

  it('writes { f32: { weightBytes, tokPerS }, q8_0: { ..., top1Agreement, meanKl, firstDivergence }, q4_0: {...} }', async () => {
    const backend: Backend = {
      name: 'cpu',
      makeExecutor: () => new CpuReferenceExecutor(model),
      executorFor: (m) => new CpuReferenceExecutor(m),
      makeClock: () => new VirtualClock(),
    };
    const bench = quantBench(() => ({ name: 'stories260K', model, tokenizer }));
    const r = await bench.run({ backend, seed: 1, options: { steps: '4', models: 'none', prompts: '2' }, log: () => {} });
    const json = r.json as Record<string, Record<string, unknown>>;
    expect(Object.keys(json.f32).sort()).toEqual(['tokPerS', 'weightBytes']);
    expect(json.f32.weightBytes).toBe(1040128);
    for (const t of ['q8_0', 'q4_0']) {
      expect(json[t]).toMatchObject({ weightBytes: expect.any(Number), tokPerS: expect.any(Number), top1Agreement: expect.any(Number), meanKl: expect.any(Number), firstDivergence: expect.any(Number) });
      expect(json[t].weightBytes as number).toBeLessThan(1040128);
      expect(json[t].tokPerS as number).toBeGreaterThan(0);
    }
    expect(json.q4_0.weightBytes as number).toBeLessThan(json.q8_0.weightBytes as number);
    expect(r.table).toHaveLength(4);
  }, 60_000);

  it('refuses a backend without a real model', async () => {
    const bench = quantBench(() => ({ name: 'stories260K', model, tokenizer }));
    const sim: Backend = { name: 'sim', makeExecutor: () => new CpuReferenceExecutor(model), makeClock: () => new VirtualClock() };
    await expect(bench.run({ backend: sim, seed: 1, options: {}, log: () => {} })).rejects.toThrow(/runs no real model/);
  });
});
