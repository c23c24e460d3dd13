import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { RequestLedger } from '../../../src/ui/manage/ledger.ts';
import { checkUrls, fitModel, nameFromPath, pickFiles } from '../../../src/ui/manage/model-sources.ts';
import { peekModelConfig } from '../../../src/model/peek.ts';
import { tinyllamaShapes } from '../../../src/model/synthetic.ts';
import type { RequestView } from '../../../src/engine/engine.ts';

const view = (requestId: string, state: RequestView['state'], extra: Partial<RequestView> = {}): RequestView => ({
  requestId, state, tenant: 'default', priority: 0, n: 1, arrivalMs: 0, deadlineAtMs: Infinity, firstScheduledMs: NaN, firstTokenMs: NaN, finishedMs: NaN,
  numPromptTokens: 3, numCachedPromptTokens: 0, numCachedPromptTokensLastAdmission: 0, numPreemptions: 0, numDraftTokens: 0, numAcceptedDraftTokens: 0, endReason: null, responseFormat: null, mask: null, adapter: null, seqIds: [0], numComputedTokens: [0], outputTokenIds: [[]], ...extra,
});

describe('RequestLedger', () => {
  it('accounts for every request across a worker crash', () => {
    const l = new RequestLedger();
    for (const id of ['r1', 'r2', 'r3', 'r4']) l.add(id, 1, 'prompt', 'hi');
    l.onStream(1, { type: 'text', requestId: 'r1', seqIndex: 0, delta: 'Once' });
    l.onStream(1, { type: 'done', requestId: 'r1', texts: ['Once upon'], reasons: ['stop'] });
    l.onStream(1, { type: 'error', requestId: 'r2', reason: 'exceeds_kv_capacity', message: 'too long' });
    l.onSnapshot(1, [view('r3', 'running', { numPreemptions: 2, outputTokenIds: [[5, 6, 7]] }), view('r4', 'waiting')]);
    expect(l.get(1, 'r3')).toMatchObject({ state: 'running', numPreemptions: 2, numOutputTokens: 3 });
    expect(l.failGeneration(1, 'worker_crashed', 'gone')).toBe(2);
    // Late news from the dead worker changes nothing.
    l.onStream(1, { type: 'done', requestId: 'r3', texts: ['x'], reasons: ['stop'] });
    l.add('r1', 2, 'prompt');
    const c = l.counts();
    expect(c).toMatchObject({ total: 5, finished: 1, rejected: 1, failed: 2, inFlight: 1 });
    expect(c.finished + c.failed + c.rejected + c.inFlight).toBe(c.total);
    expect(l.get(1, 'r1')).toMatchObject({ text: 'Once upon', state: 'finished', reason: 'stop' });
    expect(l.get(1, 'r4')).toMatchObject({ state: 'failed', reason: 'worker_crashed' });
    expect(l.get(2, 'r1')?.state).toBe('submitted');
  });
});

describe('model sources', () => {
  it('validates URLs and turns Hugging Face blob pages into downloads', () => {
    expect(checkUrls('https://huggingface.co/karpathy/tinyllamas/blob/main/stories15M.bin', '', 'https://x.test/')).toEqual({
      ok: true, modelUrl: 'https://huggingface.co/karpathy/tinyllamas/resolve/main/stories15M.bin', tokenizerUrl: null,
    });
    expect(checkUrls('javascript:alert(1)', '', 'https://x.test/')).toMatchObject({ ok: false, reason: expect.stringContaining('only http(s)') });
    expect(checkUrls('https://a.test/m.bin', 'file:///etc/passwd', 'https://x.test/')).toMatchObject({ ok: false, reason: expect.stringContaining('tokenizer URL') });
    expect(checkUrls('/models/stories260K.bin', '/models/tok512.bin', 'https://x.test/app/')).toMatchObject({ ok: true, modelUrl: 'https://x.test/models/stories260K.bin' });
  });

  it('names models and tells the model file from the tokenizer', () => {
    expect(nameFromPath('https://h.test/a/stories15M.bin?download=1')).toBe('stories15M');
    const f = (name: string, size: number) => ({ name, size }) as File;
    expect(pickFiles([f('tokenizer.bin', 400_000), f('stories15M.bin', 60e6)])).toMatchObject({ model: { name: 'stories15M.bin' }, tokenizer: { name: 'tokenizer.bin' } });
    expect(pickFiles([f('a.bin', 10), f('b.bin', 20)])).toMatchObject({ model: { name: 'b.bin' } });
    expect(pickFiles([])).toEqual({ error: 'no file chosen' });
  });

  it('estimates a model against adapter limits before loading it', () => {
    const small = { maxBufferSize: 64 * 1024 ** 2, maxStorageBufferBindingSize: 64 * 1024 ** 2 } as never;
    const fit = fitModel(tinyllamaShapes.stories110M, { numGpuBlocks: 128, blockSize: 16, maxNumBatchedTokens: 256 }, { limits: small } as never);
    expect(fit.estimate.weightBytes).toBeGreaterThan(400 * 1024 ** 2);
    expect(fit.problems.length).toBeGreaterThan(0);
    expect(fitModel(tinyllamaShapes.stories15M, {}, null).problems).toEqual([]);
  });
});

describe('peekModelConfig', () => {
  it('reads the shape from the first bytes of the built-in files', () => {
    const bin = new Uint8Array(readFileSync('public/models/stories260K.bin'));
    expect(peekModelConfig(bin.subarray(0, 28))).toMatchObject({ ok: true, format: 'llama2c', config: { dim: 64, numLayers: 5, numKvHeads: 4, vocabSize: 512 } });
    const gguf = new Uint8Array(readFileSync('public/models/stories260K.gguf'));
    expect(peekModelConfig(gguf)).toMatchObject({ ok: true, format: 'gguf', config: { dim: 64, hiddenDim: 172, numLayers: 5, vocabSize: 512 } });
    expect(peekModelConfig(gguf.subarray(0, 100))).toMatchObject({ ok: false, needMoreBytes: true });
    expect(peekModelConfig(new Uint8Array(28).fill(255))).toMatchObject({ ok: false, needMoreBytes: false });
  });
});
