/**
 * The Guide's figures for the two lab entries that need the worker's host: structured output
 * (XGrammar masks, the end-of-request JSON checks) and LoRA adapters per customer. Each runs its
 * scenario on the real model (CPU reference executor, shipped adapters) with the scenario's
 * settings, the views' LabState fed from the host's snapshots as the page feeds it.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadKernelSources } from '../../../src/gpu/kernel-sources.node.ts';
import { loadXGrammarNode } from '../../../src/serve/xgrammar.node.ts';
import { EngineHost } from '../../../workers/engine-host.ts';
import { LabState } from '../../../src/ui/lab/state.svelte.ts';
import { scenarioById } from '../../../src/ui/lab/scenarios.ts';
import { hostSettings } from '../../../src/ui/lab/settings.ts';
import { GUIDE } from '../../../src/ui/guide/entries.ts';
import { guideFigure } from '../../../src/ui/guide/figures.ts';
import { builtin, root } from '../model/helpers.ts';

const files = (name: string) => ({
  config: readFileSync(resolve(root, 'public/adapters', name, 'adapter_config.json'), 'utf8'),
  weights: new Uint8Array(readFileSync(resolve(root, 'public/adapters', name, 'adapter_model.safetensors'))),
});

/** Runs a lab scenario on the host to the end, feeding a LabState from its snapshots. */
async function runOnHost(scenarioId: string): Promise<LabState> {
  const sc = scenarioById(scenarioId)!;
  const host = new EngineHost({ gpu: undefined, kernelSources: loadKernelSources(), xgrammar: loadXGrammarNode, settings: hostSettings(sc.settings), readShippedAdapter: async (name) => files(name) });
  await host.setModel(builtin());
  await host.ensureAdapters((sc.workload.tenants ?? []).map((t) => t.adapter));
  await host.runScenario({ workload: sc.workload });
  const state = new LabState();
  const end = Date.now() + 90_000;
  for (;;) {
    const snap = host.snapshot(state.lastStep);
    if (snap) state.ingest(snap);
    if (!host.hasWork()) break;
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
  return state;
}

const labFigure = (n: number, state: LabState) => {
  const e = GUIDE[n - 1];
  if (e.target.kind !== 'lab') throw new Error(`entry ${n} is not a lab entry`);
  return guideFigure(e, { lab: { run: state, scenarioId: e.target.scenarioId }, compare: null, calc: null, sim: null, simEarlier: [], fleet: null });
};

describe('Guide figures on the real model', () => {
  it('14: the JSON outputs validate and the masks have a cost per token', async () => {
    const state = await runOnHost('structured-output');
    const f = labFigure(14, state)!;
    const json = state.requests.filter((r) => r.view.responseFormat !== null);
    const checks = json.flatMap((r) => r.structured?.checks ?? []);
    const valid = checks.filter((c) => c.status === 'valid').length;
    expect(checks.length).toBe(json.length);
    expect(checks.some((c) => c.status === 'invalid')).toBe(false);
    expect(f.text).toMatch(new RegExp(`^${valid} of ${checks.length} finished JSON outputs parse and match the schema`));
    const tokens = json.reduce((s, r) => s + (r.view.mask?.numTokens ?? 0), 0);
    expect(f.text).toContain(`over ${tokens.toLocaleString('en-US')} tokens`);
    expect(f.text).toContain(`${state.requests.length - json.length} free-text requests shared the batches`);
  }, 120_000);

  it('16: several customers’ adapters share a batch, and two slots make the engine load and evict', async () => {
    const state = await runOnHost('lora-tenants');
    const f = labFigure(16, state)!;
    const lora = state.snap!.loraStats;
    expect(lora.numEvictions).toBeGreaterThan(0); // three adapters, two slots
    expect(f.text).toMatch(/^Up to [23] adapters \((?:happy|noise|tom)(?:, (?:happy|noise|tom))+\)( and the base model)? ran in one batch/);
    const s = (n: number) => (n === 1 ? '' : 's');
    expect(f.text).toContain(`with 2 adapter slots the engine made ${lora.numLoads} adapter load${s(lora.numLoads)} and ${lora.numEvictions} eviction${s(lora.numEvictions)}`);
  }, 120_000);
});
