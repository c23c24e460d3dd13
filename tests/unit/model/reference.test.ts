import { describe, expect, it } from 'vitest';
import { CpuReferenceExecutor, ReferenceModel } from '../../../src/model/reference.ts';
import type { ScheduledSeq, StepPlan } from '../../../src/engine/types.ts';
import { builtin } from './helpers.ts';

const greedy = { temperature: 0, topP: 0.9, topK: 0, seed: 1 };

function seq(seqId: number, tokenIds: number[], startPosition: number, blockTable: number[], blockSize: number): ScheduledSeq {
  const slots = tokenIds.map((_, k) => {
    const p = startPosition + k;
    return blockTable[Math.floor(p / blockSize)] * blockSize + (p % blockSize);
  });
  return { seqId, requestId: `r${seqId}`, tokenIds, startPosition, slots, blockTable, needsLogits: true, sampling: greedy };
}

function plan(stepIndex: number, seqs: ScheduledSeq[], extra: Partial<StepPlan> = {}): StepPlan {
  return { stepIndex, seqs, copies: [], swapOut: [], swapIn: [], numBatchedTokens: seqs.reduce((n, s) => n + s.tokenIds.length, 0), ...extra };
}

describe('CPU reference executor (paged) equals the contiguous forward pass', () => {
  const { model, tokenizer } = builtin();
  const promptA = tokenizer.encode('Once upon a time, there was a big dog');
  const promptB = tokenizer.encode('The cat sat');

  function contiguous(tokens: number[]): Float32Array {
    const ref = new ReferenceModel(model);
    let logits = new Float32Array();
    tokens.forEach((t, p) => (logits = ref.forward(t, p).slice()));
    return logits;
  }

  it('two sequences batched in one step, scattered blocks, chunked prefill', async () => {
    const bs = 4;
    const ex = new CpuReferenceExecutor(model);
    ex.configure({ blockSize: bs, numGpuBlocks: 16, numCpuBlocks: 4 });
    const tableA = [9, 2, 14];
    const tableB = [5, 11, 0];
    // Step 0: A's first 6 tokens, all of B. Step 1: the rest of A.
    const out0 = await ex.execute(plan(0, [seq(0, promptA.slice(0, 6), 0, tableA, bs), seq(1, promptB, 0, tableB, bs)]));
    const out1 = await ex.execute(plan(1, [seq(0, promptA.slice(6), 6, tableA, bs)]));
    expect(out0.outputs.map((o) => o.seqId)).toEqual([0, 1]);
    const wantA = contiguous(promptA);
    const wantB = contiguous(promptB);
    expect(out1.outputs[0].logits).toEqual(wantA);
    expect(out0.outputs[1].logits).toEqual(wantB);
  });

  it('copy-on-write copies and swap out/in keep the K/V', async () => {
    const bs = 4;
    const ex = new CpuReferenceExecutor(model);
    ex.configure({ blockSize: bs, numGpuBlocks: 8, numCpuBlocks: 4 });
    const prompt = promptA.slice(0, 7); // blocks 3 (full) and 6 (3 of 4)
    await ex.execute(plan(0, [seq(0, prompt.slice(0, 6), 0, [3, 6], bs)]));
    // Fork: child 1 copies the partial block 6 into 1, then both continue with their own token.
    const out = await ex.execute(plan(1, [seq(0, [prompt[6]], 6, [3, 6], bs), seq(1, [prompt[6]], 6, [3, 1], bs)], { copies: [{ srcBlock: 6, dstBlock: 1 }] }));
    expect(out.outputs[0].logits).toEqual(out.outputs[1].logits);
    // Swap both of seq 0's blocks out, clobber them, swap into other blocks, continue.
    await ex.execute(plan(2, [], { swapOut: [{ gpuBlock: 3, cpuBlock: 0 }, { gpuBlock: 6, cpuBlock: 2 }] }));
    await ex.execute(plan(3, [seq(2, promptB, 0, [3, 6], bs)]));
    const resumed = await ex.execute(plan(4, [seq(0, [prompt[6]], 6, [7, 5], bs)], { swapIn: [{ cpuBlock: 0, gpuBlock: 7 }, { cpuBlock: 2, gpuBlock: 5 }] }));
    expect(resumed.outputs[0].logits).toEqual(contiguous(prompt));
  });

  it('rejects a plan whose slots disagree with the block table', async () => {
    const ex = new CpuReferenceExecutor(model);
    ex.configure({ blockSize: 4, numGpuBlocks: 4, numCpuBlocks: 0 });
    const s = seq(0, [1, 2], 0, [1], 4);
    s.slots = [4, 6];
    await expect(ex.execute(plan(0, [s]))).rejects.toThrow(/disagrees with its block table/);
    expect(() => ex.configure({ blockSize: 0, numGpuBlocks: 4, numCpuBlocks: 0 })).toThrow(/blockSize/);
  });
});
