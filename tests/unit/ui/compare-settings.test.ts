import { describe, expect, it } from 'vitest';
import { SCENARIOS } from '../../../src/ui/lab/scenarios.ts';
import { BASE_SETTINGS, settingsDiff } from '../../../src/ui/lab/settings.ts';

describe('compare mode is a controlled experiment', () => {
  it.each(SCENARIOS.map((s) => [s.id, s] as const))('%s: the two sides differ in exactly the one setting the scenario names', (_id, s) => {
    const diff = settingsDiff(s.compare.a.settings, s.compare.b.settings);
    expect(diff, JSON.stringify(diff)).toHaveLength(1);
  });

  it('shows each difference as "setting: A | B"', () => {
    expect(settingsDiff(BASE_SETTINGS, { ...BASE_SETTINGS, preemptionMode: 'swap', enablePrefixCaching: !BASE_SETTINGS.enablePrefixCaching, maxQueueLength: 6 })).toEqual([
      { key: 'enablePrefixCaching', label: 'prefix cache', a: BASE_SETTINGS.enablePrefixCaching ? 'on' : 'off', b: BASE_SETTINGS.enablePrefixCaching ? 'off' : 'on' },
      { key: 'preemptionMode', label: 'preemption', a: 'recompute', b: 'swap' },
      { key: 'maxQueueLength', label: 'queue cap', a: 'none', b: '6' },
    ]);
  });
});
