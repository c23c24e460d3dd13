import { describe, expect, it } from 'vitest';
import { loadKernelSources } from '../../../src/gpu/kernel-sources.node.ts';
import { streamCompletion } from '../../../src/ui/token-stream.ts';
import { EngineHost } from '../../../workers/engine-host.ts';
import type { StreamEvent } from '../../../workers/protocol.ts';
import { builtin } from '../model/helpers.ts';

describe('streamCompletion: a request as an async iterator', () => {
  it('yields the text deltas of the real model, then done, then ends', async () => {
    const host = new EngineHost({ gpu: undefined, kernelSources: loadKernelSources() });
    await host.setModel(builtin());
    const stream = streamCompletion(host, { prompt: 'The cat', max_tokens: 12 });
    const events: StreamEvent[] = [];
    for await (const e of stream) events.push(e);
    expect(await stream.requestId).toMatch(/^r\d+$/);
    const last = events.at(-1)!;
    expect(last.type).toBe('done');
    const text = events.map((e) => (e.type === 'text' ? e.delta : '')).join('');
    expect(text.length).toBeGreaterThan(0);
    if (last.type === 'done') expect(last.texts).toEqual([text]);
  });

  it('ends with the submission error when the request is refused', async () => {
    const host = new EngineHost({ gpu: undefined, kernelSources: loadKernelSources() });
    await host.setModel(builtin());
    const stream = streamCompletion({ submit: (p, cb) => Promise.resolve().then(() => host.submit(p, cb)) }, { prompt: 'x', n: 99 });
    await expect((async () => {
      for await (const _ of stream) void _;
    })()).rejects.toThrow(/n must be an integer from 1 to 16/);
  });
});
