import { describe, expect, it } from 'vitest';
import { DEFAULT_CALC_SETUP, DEFAULT_SIM_DEPLOYMENT, readUrl, writeQuery, type UrlState } from '../../../src/ui/lab/url.ts';
import { SCENARIOS, scenarioById } from '../../../src/ui/lab/scenarios.ts';
import { BASE_SETTINGS, BASE_WORKLOAD_FORM } from '../../../src/ui/lab/settings.ts';
import { FLEET_PRESET_IDS, type FleetPresetId } from '../../../src/sim/fleet/types.ts';

const state = (over: Partial<UrlState>): UrlState => ({
  view: 'lab',
  scenarioId: null,
  settings: null,
  workload: null,
  compare: null,
  theme: 'dark',
  presenter: false,
  guide: null,
  calc: null,
  sim: null,
  ...over,
});

describe('the URL holds the demo', () => {
  it('is empty for the defaults and round-trips a scenario with changed settings', () => {
    expect(writeQuery(state({}))).toBe('');
    const sc = SCENARIOS[4];
    const s = state({ scenarioId: sc.id, settings: { ...sc.settings, preemptionMode: 'swap', numGpuBlocks: 40, maxQueueLength: 12 }, theme: 'light', presenter: true });
    const q = writeQuery(s);
    expect(q).toContain(`scenario=${sc.id}`);
    expect(q).toContain('preempt=swap');
    expect(q).not.toContain('policy='); // unchanged from the scenario: not written
    const back = readUrl(q);
    expect(back).toEqual({ ...s, settings: s.settings });
  });

  it('round-trips the weights (a model option) on the lab and on each compare side; garbage is ignored', () => {
    const s = state({ scenarioId: 'none', settings: { ...BASE_SETTINGS, weights: 'q8_0' } });
    const q = writeQuery(s);
    expect(q).toContain('wt=q8_0');
    expect(readUrl(q)).toEqual(s);
    const sc = scenarioById('quantize-to-fit')!;
    const c = state({ view: 'compare', scenarioId: sc.id, compare: { a: { ...sc.compare.a.settings, weights: 'q8_0' }, b: sc.compare.b.settings } });
    const qc = writeQuery(c);
    expect(qc).toContain('a.wt=q8_0');
    expect(readUrl(qc).compare).toEqual(c.compare);
    expect(readUrl('?wt=q5_1&gpu=40').settings?.weights).toBe('f32');
  });

  it('round-trips speculative decoding settings and ignores values out of range', () => {
    const s = state({ scenarioId: 'none', settings: { ...BASE_SETTINGS, speculativeMethod: 'ngram', numSpeculativeTokens: 6, promptLookupMax: 5, promptLookupMin: 1 } });
    const q = writeQuery(s);
    expect(q).toContain('spec=ngram');
    expect(q).toContain('k=6');
    expect(q).toContain('lmax=5');
    expect(q).toContain('lmin=1');
    expect(readUrl(q)).toEqual(s);
    const bad = readUrl('?scenario=none&spec=eagle&k=99&lmax=2&lmin=3').settings!;
    expect(bad.speculativeMethod).toBe(BASE_SETTINGS.speculativeMethod);
    expect(bad.numSpeculativeTokens).toBe(BASE_SETTINGS.numSpeculativeTokens);
    expect([bad.promptLookupMin, bad.promptLookupMax]).toEqual([BASE_SETTINGS.promptLookupMin, BASE_SETTINGS.promptLookupMax]);
    expect(scenarioById('speculative-decoding')!.compare.b.settings.speculativeMethod).toBe('ngram');
  });

  it("round-trips the lab with no scenario (scenario=none: your prompts on an empty engine)", () => {
    const s = state({ scenarioId: 'none', settings: { ...BASE_SETTINGS, numGpuBlocks: 40 } });
    const q = writeQuery(s);
    expect(q).toContain('scenario=none');
    expect(q).toContain('gpu=40');
    expect(readUrl(q)).toEqual(s);
    // A custom workload wins over 'none'; an unknown scenario is the default.
    expect(writeQuery(state({ scenarioId: 'none', workload: BASE_WORKLOAD_FORM }))).not.toContain('scenario=');
    expect(readUrl('?scenario=nonsense').scenarioId).toBeNull();
  });

  it('round-trips a custom workload (only changed fields are written) and drops the scenario', () => {
    const workload = { ...BASE_WORKLOAD_FORM, numRequests: 64, burstiness: 0, promptMedian: 16, outputMedian: 160, lengthSigma: 0, n: 2, temperature: 0.8 };
    const s = state({ workload, settings: { ...BASE_SETTINGS, numGpuBlocks: 320, maxNumSeqs: 64 } });
    const q = writeQuery(s);
    expect(q).toContain('w=1');
    expect(q).toContain('wn=64');
    expect(q).not.toContain('wseed'); // the default seed
    const back = readUrl(q);
    expect(back.workload).toEqual(workload);
    expect(back.settings).toEqual(s.settings);
    expect(back.scenarioId).toBeNull();
    // `w=1` alone: the default form.
    expect(readUrl('?w=1').workload).toEqual(BASE_WORKLOAD_FORM);
  });

  it('clamps a hand-edited workload into range and ignores garbage', () => {
    const w = readUrl('?wn=100000&wo=9999&wp=-5&wrate=abc&wten=2.6&wtemp=&wburst=Infinity').workload!;
    expect(w.numRequests).toBe(200);
    expect(w.outputMedian).toBe(480);
    expect(w.promptMedian).toBe(1);
    expect(w.ratePerS).toBe(BASE_WORKLOAD_FORM.ratePerS);
    expect(w.numTenants).toBe(3);
    expect(w.temperature).toBe(BASE_WORKLOAD_FORM.temperature);
    expect(w.burstiness).toBe(BASE_WORKLOAD_FORM.burstiness);
  });

  it("round-trips compare mode's per-side settings relative to the scenario's sides", () => {
    const sc = scenarioById('kv-exhausted') ?? SCENARIOS[4];
    const a = { ...sc.compare.a.settings, preemptionMode: 'abort' as const };
    const b = { ...sc.compare.b.settings, numCpuBlocks: 8 };
    const s = state({ view: 'compare', scenarioId: sc.id, compare: { a, b } });
    const q = writeQuery(s);
    expect(q).toContain('a.preempt=abort');
    expect(q).toContain('b.cpu=8');
    const back = readUrl(q);
    expect(back.compare).toEqual({ a, b });
    expect(back.view).toBe('compare');
    // Unchanged sides write nothing.
    expect(writeQuery(state({ view: 'compare', scenarioId: sc.id, compare: { a: sc.compare.a.settings, b: sc.compare.b.settings } }))).toBe(`?view=compare&scenario=${sc.id}`);
  });

  it('round-trips the fleet view with a preset; an unknown preset or view is ignored', () => {
    for (const id of FLEET_PRESET_IDS) {
      const s = state({ view: 'fleet', fleetPresetId: id });
      const q = writeQuery(s);
      expect(q).toBe(`?view=fleet&fleet=${id}`);
      expect(readUrl(q)).toEqual(s);
    }
    expect(readUrl('?view=fleet')).toEqual(state({ view: 'fleet' }));
    expect(readUrl('?view=fleet&fleet=nonsense')).toEqual(state({ view: 'fleet' }));
    expect(readUrl('?view=fleets&fleet=spike').view).toBe('lab');
    // A preset id that is not one is never written.
    expect(writeQuery(state({ view: 'fleet', fleetPresetId: 'nope' as FleetPresetId }))).toBe('?view=fleet');
  });

  it('ignores out-of-range or unknown settings', () => {
    const s = readUrl('?gpu=2&seqs=999&bs=7&policy=nope&preempt=maybe&batching=x&qcap=-1&view=nowhere&scenario=nope');
    expect(s.view).toBe('lab');
    expect(s.scenarioId).toBeNull();
    expect(s.settings).toEqual(BASE_SETTINGS);
  });
});

describe('compare side labels', () => {
  it("name the scenario's side, or what was edited away from it", async () => {
    const { sideLabel, describeChanges } = await import('../../../src/ui/lab/settings.ts');
    const base = SCENARIOS[4].compare.b.settings;
    expect(sideLabel('swap', base, base)).toBe('swap');
    expect(sideLabel('swap', base, { ...base, preemptionMode: 'abort', numCpuBlocks: 8 })).toBe('swap, edited: preemption abort, 8 CPU blocks');
    expect(describeChanges(base, { ...base, maxQueueLength: 5, enablePrefixCaching: !base.enablePrefixCaching })).toEqual(['prefix cache ' + (base.enablePrefixCaching ? 'off' : 'on'), 'queue cap 5']);
  });

  it('round-trips the Guide entry, the calculator inputs and the simulated deployment; garbage is ignored', () => {
    const g = state({ view: 'compare', scenarioId: 'static-vs-continuous', guide: 1 });
    expect(writeQuery(g)).toBe('?view=compare&scenario=static-vs-continuous&guide=1');
    expect(readUrl(writeQuery(g))).toEqual(g);
    expect(readUrl('?view=guide').view).toBe('guide');
    for (const bad of ['0', '19', '2.5', 'x']) expect(readUrl(`?guide=${bad}`).guide).toBeNull();

    const c = state({ view: 'calculator', calc: { ...DEFAULT_CALC_SETUP, modelId: 'llama-3-8b', hardwareId: 'l4', tensorParallel: 2, pipelineParallel: 4, contextTokens: 8192, numSeqs: 3, bytesPerElement: 1 } });
    const qc = writeQuery(c);
    expect(qc).toBe('?view=calculator&cmodel=llama-3-8b&chw=l4&ctp=2&cpp=4&cctx=8192&cseqs=3&ckv=1');
    expect(readUrl(qc)).toEqual(c);
    // The defaults write nothing; unknown presets and degrees fall back to the defaults.
    expect(writeQuery(state({ view: 'calculator', calc: DEFAULT_CALC_SETUP }))).toBe('?view=calculator');
    expect(readUrl('?view=calculator&cmodel=gpt-9&chw=tpu&ctp=3&cpp=16&ckv=3&cctx=-1').calc).toEqual(DEFAULT_CALC_SETUP);
    expect(readUrl('?cmodel=__proto__').calc?.modelId).toBe(DEFAULT_CALC_SETUP.modelId);

    const s = state({ view: 'simulated', sim: { ...DEFAULT_SIM_DEPLOYMENT, tensorParallel: 1, pipelineParallel: 8 }, guide: 9 });
    const qs = writeQuery(s);
    expect(qs).toBe('?view=simulated&stp=1&spp=8&guide=9');
    expect(readUrl(qs)).toEqual(s);
    expect(readUrl('?view=simulated&stp=5&spp=0&smodel=nope').sim).toEqual(DEFAULT_SIM_DEPLOYMENT);
    expect(readUrl('?view=simulated').sim).toBeNull();
    // The weight format: written when not 16-bit, an unknown one ignored.
    const w = state({ view: 'simulated', sim: { ...DEFAULT_SIM_DEPLOYMENT, weights: 'q4_0' } });
    expect(writeQuery(w)).toBe('?view=simulated&swt=q4_0');
    expect(readUrl('?view=simulated&swt=q4_0').sim?.weights).toBe('q4_0');
    expect(readUrl('?view=simulated&swt=fp3').sim).toEqual(DEFAULT_SIM_DEPLOYMENT);
  });
});
