/**
 * The worker's engine host in Node without WebGPU: it falls back to the CPU reference (the real
 * model, slower), streams text, changes settings live where it can, and reports every request it
 * cannot carry over. The WebGPU side (device loss and recovery) is tested in tests/gpu.
 */
import { describe, expect, it } from 'vitest';
import { loadKernelSources } from '../../../src/gpu/kernel-sources.node.ts';
import { generate } from '../../../src/model/generate.ts';
import { parseGguf } from '../../../src/model/gguf.ts';
import { loadModel, type LoadedModel } from '../../../src/model/load.ts';
import { ReferenceModel } from '../../../src/model/reference.ts';
import { createSampler } from '../../../src/engine/sampler.ts';
import { EngineHost } from '../../../workers/engine-host.ts';
import type { StreamEvent } from '../../../workers/protocol.ts';
import { stopTokenIdsOf } from '../../../src/serve/requests.ts';
import { builtin, readModelFile } from '../model/helpers.ts';

function soloText(prompt: string, maxTokens: number): string {
  const { model, tokenizer } = builtin();
  const ref = new ReferenceModel(model);
  const sampler = createSampler({ temperature: 0, topP: 1, topK: 0, seed: 1 });
  const steps = tokenizer.encode(prompt).length - 1 + maxTokens;
  const r = generate({ tokenizer, prompt, steps, seqLen: 512, forward: (t, p) => ref.forward(t, p), sample: (l) => sampler.sampleLogits(l) });
  return new TextDecoder().decode(r.bytes);
}

/** Greedy run.c-style generation: the generated token ids (the stop at BOS excluded). */
function soloTokens(loaded: LoadedModel, prompt: string, maxTokens: number): number[] {
  const { model, tokenizer } = loaded;
  const ref = new ReferenceModel(model);
  const sampler = createSampler({ temperature: 0, topP: 1, topK: 0, seed: 1 });
  const numPrompt = tokenizer.encode(prompt).length;
  const r = generate({ tokenizer, prompt, steps: numPrompt - 1 + maxTokens, seqLen: 512, forward: (t, p) => ref.forward(t, p), sample: (l) => sampler.sampleLogits(l) });
  return r.tokens.slice(numPrompt);
}

/**
 * `gguf` with the u32 metadata value of `key` set to `value`: the key is found as a GGUF string
 * (u64 length, then its bytes), followed by the value's type (4: u32) and the value.
 */
function withMetadataU32(gguf: Uint8Array, key: string, value: number): Uint8Array {
  const copy = gguf.slice();
  const view = new DataView(copy.buffer);
  const keyBytes = new TextEncoder().encode(key);
  const at = Buffer.from(copy).indexOf(Buffer.from(keyBytes));
  expect(at).toBeGreaterThan(8);
  expect(view.getBigUint64(at - 8, true)).toBe(BigInt(keyBytes.length));
  expect(view.getUint32(at + keyBytes.length, true)).toBe(4);
  view.setUint32(at + keyBytes.length + 4, value, true);
  expect(parseGguf(copy).metadata.get(key)).toBe(value);
  return copy;
}

/** Submits `prompt` greedily and resolves with the request's last event. */
async function complete(host: EngineHost, prompt: string, maxTokens: number): Promise<{ last: StreamEvent; streamed: string }> {
  const events: StreamEvent[] = [];
  host.submit({ prompt, max_tokens: maxTokens, temperature: 0 }, (e) => events.push(e));
  await until(() => events.some((e) => e.type !== 'text'));
  const streamed = events.map((e) => (e.type === 'text' ? e.delta : '')).join('');
  return { last: events.at(-1)!, streamed };
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

  it('weights is a model option: q4_0 quantizes the loaded f32 model and restarts the engine; f32 brings the file\'s weights back', async () => {
    const host = new EngineHost({ gpu: undefined, kernelSources: loadKernelSources() });
    await host.setModel(builtin());
    expect(host.snapshot()!.model).toMatchObject({ weights: 'f32', weightBytes: 1040128 });
    const run = async (prompt: string) => {
      const events: StreamEvent[] = [];
      host.submit({ prompt, max_tokens: 40, temperature: 0 }, (e) => events.push(e));
      await until(() => events.some((e) => e.type !== 'text'));
      const done = events.at(-1)!;
      return done.type === 'done' ? `${prompt}${done.texts[0]}\n` : '';
    };
    const inFlight: StreamEvent[] = [];
    host.submit({ prompt: 'A long story', max_tokens: 200 }, (e) => inFlight.push(e));
    expect(await host.configure({ weights: 'q4_0' })).toBe(true);
    expect(inFlight.at(-1)).toMatchObject({ type: 'error', reason: 'engine_restarted' });
    expect(host.snapshot()!.model).toMatchObject({ weights: 'q4_0', weightBytes: 337888 });
    expect(host.getSettings().weights).toBe('q4_0');
    const q4 = loadModel(readModelFile('stories260K.bin'), 'stories260K.bin', readModelFile('tok512.bin'), 'tok512.bin', { quantize: 'q4_0' });
    const prompt = 'Lily and Ben';
    const expected = new TextDecoder().decode(generate({
      tokenizer: q4.tokenizer, prompt, steps: q4.tokenizer.encode(prompt).length - 1 + 40, seqLen: 512,
      forward: ((ref) => (t: number, p: number) => ref.forward(t, p))(new ReferenceModel(q4.model)),
      sample: ((smp) => (l: Float32Array) => smp.sampleLogits(l))(createSampler({ temperature: 0, topP: 1, topK: 0, seed: 1 })),
    }).bytes);
    expect(await run(prompt)).toBe(expected);
    expect(expected).not.toBe(soloText(prompt, 40));
    expect(await host.configure({ weights: 'q4_0' })).toBe(false); // unchanged: nothing restarts
    expect(await host.configure({ weights: 'f32' })).toBe(true);
    expect(await run(prompt)).toBe(soloText(prompt, 40));
    await expect(host.configure({ weights: 'q5' as never })).rejects.toThrow(/weights must be one of f32, q8_0, q4_0/);
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
    await host.pause();
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

  it('a GGUF model whose EOS id is not 2 stops at its own EOS, not at token 2', async () => {
    const prompt = 'Once upon a time';
    const gguf = readModelFile('stories260K.gguf');
    const plain = loadModel(gguf, 'stories260K.gguf');
    const piece = (t: number) => new TextDecoder().decode(plain.tokenizer.vocab.pieces[t]);
    // E: a token the model emits greedily early on (' Lily'), made the EOS of a rewritten file.
    const greedy = soloTokens(plain, prompt, 40);
    const at = greedy.findIndex((t) => piece(t) === ' Lily');
    expect(at).toBeGreaterThan(3);
    const eos = greedy[at];
    expect(eos).not.toBe(2);
    const before = greedy.slice(0, at);
    expect(before).not.toContain(eos);
    const lastPromptToken = plain.tokenizer.encode(prompt).at(-1)!;
    const cut = plain.tokenizer.decode([lastPromptToken, ...before]);
    expect(cut).toBe(', there was a little girl named');

    const rewritten = loadModel(withMetadataU32(gguf, 'tokenizer.ggml.eos_token_id', eos), 'eos.gguf');
    expect([rewritten.tokenizer.vocab.bosId, rewritten.tokenizer.vocab.eosId]).toEqual([1, eos]);
    expect(stopTokenIdsOf(rewritten)).toEqual([eos, 1]);
    expect(stopTokenIdsOf(plain)).toEqual([2, 1]);

    const host = new EngineHost({ gpu: undefined, kernelSources: loadKernelSources() });
    await host.setModel(rewritten);
    expect(host.status.backend).toBe('cpu');
    const stopped = await complete(host, prompt, 200);
    expect(stopped.last).toEqual({ type: 'done', requestId: expect.any(String), texts: [cut], reasons: ['stop'] });
    expect(stopped.streamed).toBe(cut);

    // The unmodified file goes on past that token.
    await host.setModel(plain);
    const goesOn = await complete(host, prompt, 40);
    expect(goesOn.last.type).toBe('done');
    if (goesOn.last.type === 'done') {
      expect(goesOn.last.texts[0].startsWith(`${cut} Lily`)).toBe(true);
      expect(goesOn.last.texts[0]).toBe(plain.tokenizer.decode([lastPromptToken, ...greedy]));
      expect(goesOn.last.reasons).toEqual(['length']);
    }
  });
});

describe('EngineHost and bad input (issue 11)', () => {
  it('one bad request is refused for its caller only; the requests in flight finish', async () => {
    const host = new EngineHost({ gpu: undefined, kernelSources: loadKernelSources() });
    await host.setModel(builtin());
    await host.pause();
    const events: StreamEvent[] = [];
    host.submit({ prompt: 'The dog', max_tokens: 12 }, (e) => events.push(e));
    expect(() => host.submit({ prompt: 'x', stop: 'Lily' as unknown as string[] })).toThrow(/stop must be a list of strings/);
    expect(() => host.submit({ prompt: 'x', priority: Number.NaN })).toThrow(/priority must be a finite number, got NaN/);
    expect(() => host.submit({ prompt: 'x', tenant: '' })).toThrow(/tenant must be a non-empty string/);
    await expect(host.runTrace([{ promptTokenIds: [1, 5], maxTokens: 3 }, { promptTokenIds: [1, 5], maxTokens: 3, priority: 'high' as unknown as number }])).rejects.toThrow(
      /request 1: priority must be a finite number, got "high"/,
    );
    expect(host.snapshot()!.queues.pending).toBe(1); // nothing of the refused trace was submitted
    host.resume();
    await until(() => events.some((e) => e.type !== 'text'));
    expect(events.at(-1)!.type).toBe('done');
  });

  it('settings an executor cannot take are refused before anything stops; the engine and its requests stay', async () => {
    const host = new EngineHost({ gpu: undefined, kernelSources: loadKernelSources() });
    await host.setModel(builtin());
    await host.pause();
    const engine = host.currentEngine;
    const events: StreamEvent[] = [];
    host.submit({ prompt: 'The cat', max_tokens: 12 }, (e) => events.push(e));
    await expect(host.configure({ numGpuBlocks: 1e9 })).rejects.toThrow(/1000000000 KV blocks of 16 tokens need .* GiB of host memory \(limit 1\.00 GiB\)/);
    await expect(host.configure({ maxModelLen: 0 })).rejects.toThrow(/maxModelLen must be a positive integer, got 0/);
    await expect(host.configure({ numCpuBlocks: 5e8 })).rejects.toThrow(/swap blocks/);
    expect(host.currentEngine).toBe(engine);
    expect(host.getSettings().numGpuBlocks).toBe(128);
    expect(events).toEqual([]);
    host.resume();
    await until(() => events.some((e) => e.type !== 'text'));
    expect(events.at(-1)!.type).toBe('done');
    await host.reset();
    expect(await host.configure({ maxNumSeqs: 1 })).toBe(false); // live, with nothing running
  });
});

describe('EngineHost on the engine clock (issue 12)', () => {
  it('a pause and slow motion add nothing to any latency: the clock is the sum of the steps’ own times', async () => {
    const host = new EngineHost({ gpu: undefined, kernelSources: loadKernelSources() });
    await host.setModel(builtin());
    await host.pause();
    const t0 = host.currentEngine!.clock.nowMs();
    const events: StreamEvent[] = [];
    const ids = ['The dog', 'A cat sat', 'Once upon a time'].map((prompt) => host.submit({ prompt, max_tokens: 24 }, (e) => events.push(e)));
    host.setMinStepInterval(30); // slow motion
    host.resume();
    await until(() => (host.currentEngine?.stepIndex ?? 0) >= 5);
    await host.pause();
    await new Promise((r) => setTimeout(r, 1200)); // a presenter explains
    host.setMinStepInterval(0);
    host.resume();
    await until(() => ids.every((id) => events.some((e) => e.requestId === id && e.type === 'done')));
    const engine = host.currentEngine!;
    const stepTime = engine.eventLog.reduce((sum, e) => sum + (e.type === 'step' ? e.durationMs : 0), 0);
    const ends = ids.map((id) => engine.getRequest(id)!);
    const lastEnd = Math.max(...ends.map((r) => r.finishedMs));
    // Every request arrived at t0 and the engine never idled: the clock moved by step times only.
    expect(lastEnd - t0).toBeCloseTo(stepTime, 6);
    for (const r of ends) {
      expect(r.arrivalMs).toBe(t0);
      expect(r.finishedMs - r.arrivalMs).toBeLessThan(1200);
    }
  });

  it('idle time waits in real time for the next arrival and jumps to it; a single step while paused runs the next arrival', async () => {
    const host = new EngineHost({ gpu: undefined, kernelSources: loadKernelSources() });
    await host.setModel(builtin());
    await host.pause();
    const engine = host.currentEngine!;
    await host.runTrace([{ promptTokenIds: [1, 403], maxTokens: 3, arrivalMs: 60_000 }]);
    const before = engine.clock.nowMs();
    expect(await host.stepOnce()).toBe(1); // jumps a minute of idle engine time and runs step 1
    expect(engine.clock.nowMs()).toBeGreaterThanOrEqual(before + 60_000);
    const r = [...engine.requests()][0];
    expect(r.firstScheduledMs - r.arrivalMs).toBe(0); // no queueing: the engine was idle
  });
});
