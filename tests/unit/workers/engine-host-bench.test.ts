/**
 * The worker's side of the vLLM export: the engine host turns a workload into text prompts with
 * the loaded model's tokenizer (the page has none), the same requests the host runs for it.
 */
import { describe, expect, it } from 'vitest';
import { loadKernelSources } from '../../../src/gpu/kernel-sources.node.ts';
import type { WorkloadSpec } from '../../../src/engine/workload.ts';
import { EngineHost } from '../../../workers/engine-host.ts';
import { builtin } from '../model/helpers.ts';

const workload: WorkloadSpec = {
  seed: 5,
  numRequests: 6,
  arrival: { kind: 'bursty', ratePerS: 3, burstiness: 0.5 },
  promptTokens: { kind: 'uniform', min: 20, max: 60 },
  outputTokens: { kind: 'fixed', value: 12 },
  sharedPrefix: { fraction: 0.5, numTokens: 16 },
};

describe('EngineHost.benchPrompts', () => {
  it('refuses before a model is loaded', () => {
    const host = new EngineHost({ gpu: undefined, kernelSources: loadKernelSources() });
    expect(() => host.benchPrompts(workload)).toThrow('no model is loaded yet');
  });

  it("gives the workload's requests as text of the lengths the host runs", async () => {
    const host = new EngineHost({ gpu: undefined, kernelSources: loadKernelSources() });
    const loaded = builtin();
    await host.setModel(loaded);
    const bench = host.benchPrompts(workload);
    expect(bench.model).toBe('stories260K.bin');
    expect(bench.vocabSize).toBe(512);
    expect(bench.prompts).toHaveLength(6);
    await host.pause();
    const ids = await host.runScenario({ workload });
    // Arrivals are paced by the work done: run until every request has arrived.
    host.resume();
    for (const end = Date.now() + 60_000; host.hasWork() && Date.now() < end; ) await new Promise((r) => setTimeout(r, 20));
    const submitted = host.eventLog().flatMap((e) => (e.type === 'submit' ? [e.request] : []));
    expect(submitted.map((r) => r.requestId)).toEqual(ids);
    submitted.forEach((r, i) => {
      expect(bench.prompts[i].promptTokens).toBe(r.promptTokenIds.length);
      expect(loaded.tokenizer.encode(bench.prompts[i].prompt, true, false)).toEqual(r.promptTokenIds);
      expect(bench.prompts[i].outputTokens).toBe(r.maxTokens);
    });
    await host.reset();
  });
});
