import { describe, expect, it } from 'vitest';
import { QUANT_BUDGET_BYTES, SCENARIOS } from '../../../src/ui/lab/scenarios.ts';
import { modelWeightBytes, quantizeModel } from '../../../src/model/quant.ts';
import { builtin } from '../model/helpers.ts';
import { BASE_SETTINGS, settingsDiff } from '../../../src/ui/lab/settings.ts';

describe('compare mode is a controlled experiment', () => {
  it.each(SCENARIOS.filter((s) => s.id !== 'quantize-to-fit').map((s) => [s.id, s] as const))('%s: the two sides differ in exactly the one setting the scenario names', (_id, s) => {
    const diff = settingsDiff(s.compare.a.settings, s.compare.b.settings);
    expect(diff, JSON.stringify(diff)).toHaveLength(1);
  });

  it('quantize-to-fit: one memory budget; the sides differ in the weights and in the KV blocks the budget leaves beside them', () => {
    const s = SCENARIOS.find((x) => x.id === 'quantize-to-fit')!;
    const diff = settingsDiff(s.compare.a.settings, s.compare.b.settings);
    expect(diff.map((d) => d.key).sort()).toEqual(['numGpuBlocks', 'weights']);
    const model = builtin().model;
    for (const side of [s.compare.a, s.compare.b]) {
      const { weights, numGpuBlocks, blockSize } = side.settings;
      const weightBytes = modelWeightBytes(weights === 'f32' ? model : quantizeModel(model, weights as 'q8_0' | 'q4_0'));
      const blockBytes = 2 * model.config.numLayers * 32 * 4 * blockSize; // kvDim 32, f32 K and V
      expect(weightBytes + numGpuBlocks * blockBytes).toBeLessThanOrEqual(QUANT_BUDGET_BYTES);
      expect(weightBytes + (numGpuBlocks + 1) * blockBytes).toBeGreaterThan(QUANT_BUDGET_BYTES);
    }
    expect(s.compare.b.settings.numGpuBlocks).toBeGreaterThan(2 * s.compare.a.settings.numGpuBlocks);
  });

  it('shows each difference as "setting: A | B"', () => {
    expect(settingsDiff(BASE_SETTINGS, { ...BASE_SETTINGS, preemptionMode: 'swap', enablePrefixCaching: !BASE_SETTINGS.enablePrefixCaching, maxQueueLength: 6 })).toEqual([
      { key: 'enablePrefixCaching', label: 'prefix cache', a: BASE_SETTINGS.enablePrefixCaching ? 'on' : 'off', b: BASE_SETTINGS.enablePrefixCaching ? 'off' : 'on' },
      { key: 'preemptionMode', label: 'preemption', a: 'recompute', b: 'swap' },
      { key: 'maxQueueLength', label: 'queue cap', a: 'none', b: '6' },
    ]);
  });
});
