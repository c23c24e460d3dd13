/**
 * LoRA through the worker's host (Node, CPU reference): shipped adapters load when a request
 * first names one (OpenAI style `model: "stories260K:tom"` or `adapter`), unknown adapters are
 * refused at submit, a user's PEFT files load under their own name, and a scenario's tenants
 * bring their adapters; the adapters survive a restart of the engine (new settings).
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadKernelSources } from '../../../src/gpu/kernel-sources.node.ts';
import { loadXGrammarNode } from '../../../src/serve/xgrammar.node.ts';
import { CompletionParamsError } from '../../../src/serve/requests.ts';
import { EngineHost } from '../../../workers/engine-host.ts';
import type { StreamEvent } from '../../../workers/protocol.ts';
import { builtin, root } from '../model/helpers.ts';

const files = (name: string) => ({
  config: readFileSync(resolve(root, 'public/adapters', name, 'adapter_config.json'), 'utf8'),
  weights: new Uint8Array(readFileSync(resolve(root, 'public/adapters', name, 'adapter_model.safetensors'))),
});

async function textOf(host: EngineHost, params: Parameters<EngineHost['submit']>[0]): Promise<string> {
  const events: StreamEvent[] = [];
  host.submit(params, (e) => events.push(e));
  const end = Date.now() + 30_000;
  while (!events.some((e) => e.type !== 'text')) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
  const done = events.at(-1)!;
  if (done.type !== 'done') throw new Error(`request ended with ${JSON.stringify(done)}`);
  return done.texts[0];
}

describe('EngineHost with LoRA adapters', () => {
  it('loads a shipped adapter when first named, serves it beside the base model, refuses unknown ones', async () => {
    const asked: string[] = [];
    const host = new EngineHost({
      gpu: undefined,
      kernelSources: loadKernelSources(),
      settings: { maxLoras: 2 },
      readShippedAdapter: async (name) => (asked.push(name), ['tom', 'happy', 'noise'].includes(name) ? files(name) : null),
    });
    await host.setModel(builtin());
    await host.ensureAdapters(['tom']);
    const tom = await textOf(host, { prompt: 'Once upon a time', max_tokens: 20, model: 'stories260K:tom' });
    const base = await textOf(host, { prompt: 'Once upon a time', max_tokens: 20 });
    expect(base).toContain('Lily');
    expect(tom).toContain('Tom');
    expect(() => host.submit({ prompt: 'x', adapter: 'nope' })).toThrow(CompletionParamsError);
    expect(() => host.submit({ prompt: 'x', adapter: 'nope' })).toThrow(/unknown LoRA adapter "nope" \(loaded: tom\)/);
    expect(() => host.submit({ prompt: 'x', adapter: 'tom', model: 'stories260K:happy' })).toThrow(/name different adapters/);
    await host.ensureAdapters(['nope']);
    expect(asked).toEqual(['tom', 'nope']);
    // a user's own files under their own name; a new engine (restart) keeps the adapters
    expect(host.addAdapter('mine', files('happy').config, files('happy').weights)).toMatchObject({ name: 'mine', rank: 4, scale: 2 });
    await host.configure({ numGpuBlocks: 96 });
    const mine = await textOf(host, { prompt: 'Once upon a time', max_tokens: 20, adapter: 'mine' });
    expect(mine).toContain('happy');
    expect(host.snapshot()!.adapters.map((a) => a.name).sort()).toEqual(['mine', 'tom']);
    expect(() => host.addAdapter('mine', files('tom').config, files('tom').weights)).toThrow(/mine is already registered/);
    expect(() => host.addAdapter('bad', '{"r": 4, "target_modules": ["c_attn"]}', files('tom').weights)).toThrow(/target module "c_attn" is not one this model has/);
  });

  it('a scenario whose tenants name adapters gets them loaded and runs them', async () => {
    const host = new EngineHost({ gpu: undefined, kernelSources: loadKernelSources(), settings: { maxLoras: 1 }, readShippedAdapter: async (name) => files(name) });
    await host.setModel(builtin());
    const workload = {
      seed: 3,
      numRequests: 6,
      arrival: { kind: 'poisson' as const, ratePerS: 100 },
      promptTokens: { kind: 'uniform' as const, min: 8, max: 12 },
      outputTokens: { kind: 'uniform' as const, min: 6, max: 10 },
      tenants: [
        { name: 'a', weight: 1, adapter: 'tom' },
        { name: 'b', weight: 1, adapter: 'happy' },
      ],
    };
    await host.ensureAdapters(workload.tenants.map((t) => t.adapter));
    const ids = await host.runScenario({ workload });
    const end = Date.now() + 60_000;
    while (host.hasWork()) {
      if (Date.now() > end) throw new Error('timed out');
      await new Promise((r) => setTimeout(r, 10));
    }
    const snap = host.snapshot(0)!;
    expect(ids.every((id) => snap.requests.find((r) => r.requestId === id)?.state === 'finished')).toBe(true);
    expect(new Set(snap.requests.map((r) => r.adapter))).toEqual(new Set(['tom', 'happy']));
    expect(snap.loraStats.numEvictions).toBeGreaterThan(0); // one slot, two adapters
  });
  it('a structured (response_format) request with an adapter: JSON from the adapted model, beside a speculative free request', async () => {
    const host = new EngineHost({ gpu: undefined, kernelSources: loadKernelSources(), xgrammar: loadXGrammarNode, settings: { speculativeMethod: 'ngram' }, readShippedAdapter: async (name) => files(name) });
    await host.setModel(builtin());
    await host.ensureAdapters(['tom']);
    const events: StreamEvent[] = [];
    const id = await host.submitCompletion({ prompt: 'Lily', max_tokens: 60, temperature: 0, model: 'stories260K:tom', response_format: { type: 'json_object' } }, (e) => events.push(e));
    const free = textOf(host, { prompt: 'Once upon a time', max_tokens: 40, temperature: 0, adapter: 'tom' });
    await expect(host.submitCompletion({ prompt: 'x', adapter: 'nope', response_format: { type: 'json_object' } })).rejects.toThrow(CompletionParamsError);
    expect(await free).toContain('Tom');
    const end = Date.now() + 60_000;
    while (!events.some((e) => e.type !== 'text')) {
      if (Date.now() > end) throw new Error('timed out');
      await new Promise((r) => setTimeout(r, 5));
    }
    const done = events.at(-1)!;
    expect(done.type).toBe('done');
    if (done.type !== 'done') return;
    expect(done.texts[0].startsWith('{')).toBe(true);
    const view = host.snapshot(0)!.requests.find((r) => r.requestId === id)!;
    expect(view.adapter).toBe('tom');
    expect(view.responseFormat).toBe('json_object');
    expect(view.mask!.numTokens).toBeGreaterThan(0);
  }, 120_000);
});
