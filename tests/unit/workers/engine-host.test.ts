/**
 * The worker's engine host in Node without WebGPU: it falls back to the CPU reference (the real
 * model, slower), streams text, changes settings live where it can, and reports every request it
 * cannot carry over. The WebGPU side (device loss and recovery) is tested in tests/gpu.
 */
import { describe, expect, it } from 'vitest';
import { loadKernelSources } from '../../../src/gpu/kernel-sources.node.ts';
import { generate } from '../../../src/model/generate.ts';
import { ReferenceModel } from '../../../src/model/reference.ts';
import { createSampler } from '../../../src/engine/sampler.ts';
import { EngineHost } from '../../../workers/engine-host.ts';
import type { StreamEvent } from '../../../workers/protocol.ts';
import { builtin } from '../model/helpers.ts';

function soloText(prompt: string, maxTokens: number): string {
  const { model, tokenizer } = builtin();
  const ref = new ReferenceModel(model);
  const sampler = createSampler({ temperature: 0, topP: 1, topK: 0, seed: 1 });
  const steps = tokenizer.encode(prompt).length - 1 + maxTokens;
  const r = generate({ tokenizer, prompt, steps, seqLen: 512, forward: (t, p) => ref.forward(t, p), sample: (l) => sampler.sampleLogits(l) });
  return new TextDecoder().decode(r.bytes);
}

async function until(cond: () => boolean, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('EngineHost without WebGPU', () => {
  it('runs the CPU reference, streams text and ends with the same text as a solo run', async () => {
    const host = new EngineHost({ gpu: undefined, kernelSources: loadKernelSources() });
    await host.setModel(builtin());
    expect(host.status.backend).toBe('cpu');
    expect(host.status.message).toMatch(/WebGPU unavailable/);
    const events: StreamEvent[] = [];
    const id = host.submit({ prompt: 'Once upon a time', max_tokens: 30 }, (e) => events.push(e));
    await until(() => events.some((e) => e.type !== 'text'));
    const done = events.at(-1)!;
    expect(done.type).toBe('done');
    const streamed = events.filter((e) => e.type === 'text').map((e) => (e.type === 'text' ? e.delta : '')).join('');
    if (done.type === 'done') {
      expect(done.texts[0]).toBe(streamed);
      expect(`Once upon a time${streamed}\n`).toBe(soloText('Once upon a time', 30));
    }
    expect(host.snapshot()!.texts[id][0]).toBe(streamed);
  });

  it('stop strings end a sequence and cut its text before the stop', async () => {
    const host = new EngineHost({ gpu: undefined, kernelSources: loadKernelSources() });
    await host.setModel(builtin());
    const events: StreamEvent[] = [];
    host.submit({ prompt: 'Once upon a time', max_tokens: 60, stop: ['Lily'] }, (e) => events.push(e));
    await until(() => events.some((e) => e.type !== 'text'));
    const done = events.at(-1)!;
    expect(done).toMatchObject({ type: 'done', texts: [', there was a little girl named '], reasons: ['stop'] });
  });

  it('changes the policy live, restarts for a new KV geometry, and reports the requests it drops', async () => {
    const host = new EngineHost({ gpu: undefined, kernelSources: loadKernelSources(), settings: { numGpuBlocks: 64 } });
    await host.setModel(builtin());
    host.pause();
    const events: StreamEvent[] = [];
    host.submit({ prompt: 'The dog', max_tokens: 20 }, (e) => events.push(e));
    expect(await host.configure({ policy: 'priority', maxNumSeqs: 4 })).toBe(false);
    expect(host.currentEngine!.config).toMatchObject({ policy: 'priority', maxNumSeqs: 4 });
    expect(events).toEqual([]);
    expect(await host.configure({ blockSize: 8 })).toBe(true);
    expect(events).toEqual([expect.objectContaining({ type: 'error', reason: 'engine_restarted' })]);
    expect(host.currentEngine!.config.blockSize).toBe(8);
    await expect(host.configure({ numGpuBlocks: 0 })).rejects.toThrow(/numGpuBlocks must be a positive integer/);
    expect(() => host.submit({ prompt: 'x', max_tokens: 0 })).toThrow(/max_tokens must be a positive integer/);
  });
});
