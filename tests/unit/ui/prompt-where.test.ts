import { describe, expect, it } from 'vitest';
import { whereIsRequest } from '../../../src/ui/controls/prompt-where.ts';
import { BASE_SETTINGS } from '../../../src/ui/lab/settings.ts';

type Req = { requestId: string; state: string; numPromptTokens: number; numPreemptions: number; numComputedTokens: number[]; outputTokenIds: number[][] };

function snap(requests: Req[], opts: { running?: string[]; waiting?: string[]; batching?: 'static' | 'continuous'; maxNumSeqs?: number; free?: number; paused?: boolean } = {}) {
  const blocks = 16;
  const refCount = new Int32Array(blocks).fill(1);
  for (let b = 0; b < (opts.free ?? blocks); b++) refCount[b] = 0;
  return {
    queues: { running: opts.running ?? [], waiting: opts.waiting ?? [], swapped: [], pending: 0 },
    requests: requests as never,
    config: { ...BASE_SETTINGS, numGpuBlocks: blocks, batching: opts.batching ?? 'continuous', maxNumSeqs: opts.maxNumSeqs ?? 8 } as never,
    gpuBlocks: { refCount, numFilled: new Int32Array(blocks), ownerSeqId: new Int32Array(blocks), cached: new Uint8Array(blocks) },
    host: { paused: opts.paused ?? false },
  };
}

const req = (id: string, state: string, extra: Partial<Req> = {}): Req => ({ requestId: id, state, numPromptTokens: 20, numPreemptions: 0, numComputedTokens: [0], outputTokenIds: [[]], ...extra });

describe('where a prompt is until its first token', () => {
  it('not in the snapshot yet', () => {
    expect(whereIsRequest(null, 'r1')).toContain('joins the scheduler');
    expect(whereIsRequest(snap([]), 'r1')).toBe("sent: it joins the scheduler's queue at the next engine step");
    expect(whereIsRequest(snap([], { paused: true }), 'r1')).toContain('the engine is paused');
  });

  it('behind a static batch: how many still decode', () => {
    const s = snap([req('r9', 'waiting'), req('r1', 'running'), req('r2', 'running'), req('r3', 'running')], { running: ['r1', 'r2', 'r3'], waiting: ['r8', 'r9'], batching: 'static' });
    const w = whereIsRequest(s, 'r9')!;
    expect(w).toContain('waiting for the static batch to drain: 3 of its requests still decoding');
    expect(w).toContain('1 request ahead');
  });

  it('queued under continuous batching: slots full, memory short, or next step', () => {
    const running = ['a', 'b'];
    expect(whereIsRequest(snap([req('r5', 'waiting')], { running, waiting: ['x', 'y', 'r5'], maxNumSeqs: 2 }), 'r5')).toBe('queued: all 2 batch slots are busy · 2 requests ahead in the queue');
    expect(whereIsRequest(snap([req('r5', 'waiting', { numPromptTokens: 40 })], { waiting: ['r5'], free: 1 }), 'r5')).toBe('queued: waiting for KV memory (its prompt needs 3 blocks, 1 free) · first in the queue');
    expect(whereIsRequest(snap([req('r5', 'waiting')], { waiting: ['r5'] }), 'r5')).toBe('queued: to be admitted at the next step · first in the queue');
  });

  it('prefill progress, then nothing once a token is out', () => {
    expect(whereIsRequest(snap([req('r1', 'running', { numComputedTokens: [8] })]), 'r1')).toBe('prefill: 8 of 20 prompt tokens computed');
    expect(whereIsRequest(snap([req('r1', 'running', { numComputedTokens: [20] })]), 'r1')).toContain('first token comes with the next step');
    expect(whereIsRequest(snap([req('r1', 'running', { numComputedTokens: [21], outputTokenIds: [[7]] })]), 'r1')).toBeNull();
  });

  it('preempted, swapped, paused', () => {
    expect(whereIsRequest(snap([req('r1', 'waiting', { numPreemptions: 2 })], { waiting: ['r1'] }), 'r1')).toMatch(/^preempted 2 times, back in the queue/);
    expect(whereIsRequest(snap([req('r1', 'swapped')]), 'r1')).toContain('swapped out to CPU memory');
    expect(whereIsRequest(snap([req('r1', 'waiting')], { waiting: ['r1'], paused: true }), 'r1')).toContain('the engine is paused');
  });
});
