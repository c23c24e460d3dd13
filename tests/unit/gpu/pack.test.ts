import { describe, expect, it } from 'vitest';
import { packStep } from '../../../src/gpu/pack.ts';
import { PLACEHOLDER_TOKEN_ID, type ScheduledSeq, type StepPlan } from '../../../src/engine/types.ts';
import { FROM_SAMPLED } from '../../../src/gpu/kernels.ts';

const greedy = { temperature: 0, topP: 0.9, topK: 0, seed: 1 };
const warm = { ...greedy, temperature: 0.8 };

function seq(seqId: number, tokenIds: number[], startPosition: number, blockTable: number[], needsLogits = true, sampling = greedy): ScheduledSeq {
  const slots = tokenIds.map((_, k) => blockTable[Math.floor((startPosition + k) / 4)] * 4 + ((startPosition + k) % 4));
  return { seqId, requestId: `r${seqId}`, tokenIds, startPosition, slots, blockTable, needsLogits, sampling };
}
const plan = (seqs: ScheduledSeq[]): StepPlan => ({ stepIndex: 0, seqs, copies: [], swapOut: [], swapIn: [], numBatchedTokens: 0 });

describe('packStep', () => {
  it('flattens mixed prefill chunks and decode tokens', () => {
    const p = packStep(plan([seq(7, [1, 50, 60, 70, 80], 0, [3, 9]), seq(8, [99], 6, [2, 5], true, warm), seq(9, [11, 12], 2, [4], false)]), 4, 512, 512);
    expect(p.numTokens).toBe(8);
    expect([...p.tokenIds]).toEqual([1, 50, 60, 70, 80, 99, 11, 12]);
    expect([...p.positions]).toEqual([0, 1, 2, 3, 4, 6, 2, 3]);
    expect([...p.slots]).toEqual([12, 13, 14, 15, 36, 22, 18, 19]);
    expect([...p.blockTables]).toEqual([3, 9, 2, 5, 4]);
    expect([...p.tableOffsets]).toEqual([0, 0, 0, 0, 0, 2, 4, 4]);
    expect([...p.logitRows]).toEqual([4, 5]);
    expect(p.logitSeqIds).toEqual([7, 8]);
    expect(p.logitsWanted).toEqual([false, true]);
  });

  it('async scheduling: a placeholder token becomes FROM_SAMPLED | its row among the previous step\'s kept tokens; without one it is refused', () => {
    const kept = new Map([[7, 0], [8, 2]]);
    const rowOf = (seqId: number) => kept.get(seqId) ?? -1;
    const p = packStep(plan([seq(8, [PLACEHOLDER_TOKEN_ID], 6, [2, 5]), seq(9, [11, 12], 0, [4]), seq(7, [PLACEHOLDER_TOKEN_ID], 3, [1])]), 4, 512, 512, undefined, undefined, rowOf);
    expect([...p.tokenIds]).toEqual([(FROM_SAMPLED | 2) >>> 0, 11, 12, (FROM_SAMPLED | 0) >>> 0]);
    expect([...p.positions]).toEqual([6, 0, 1, 3]);
    expect(p.logitSeqIds).toEqual([8, 9, 7]);
    expect(() => packStep(plan([seq(5, [PLACEHOLDER_TOKEN_ID], 2, [1])]), 4, 512, 512, undefined, undefined, rowOf)).toThrow(/previous step kept no token/);
    expect(() => packStep(plan([seq(7, [PLACEHOLDER_TOKEN_ID], 2, [1])]), 4, 512, 512)).toThrow(/previous step kept no token/);
  });

  it('a constrained greedy row gets its logits read back (the mask is applied on the CPU); a free greedy row does not', () => {
    const constrained = { ...seq(2, [40], 5, [1, 6]), constrained: true };
    const p = packStep(plan([seq(1, [30], 5, [0, 3]), constrained, seq(3, [50], 5, [2, 7], true, warm)]), 4, 512, 512);
    expect(p.logitSeqIds).toEqual([1, 2, 3]);
    expect(p.logitsWanted).toEqual([false, true, true]);
  });

  it('gives a sequence verifying drafts one logits row per trailing row, in order, beside others', () => {
    const verify = { ...seq(8, [99, 41, 42, 43], 6, [2, 5, 6], true, warm), numLogitRows: 4 };
    const p = packStep(plan([seq(7, [1, 50, 60], 0, [3]), verify, seq(9, [11], 2, [4])]), 4, 512, 512);
    expect([...p.logitRows]).toEqual([2, 3, 4, 5, 6, 7]);
    expect(p.logitSeqIds).toEqual([7, 8, 8, 8, 8, 9]);
    expect(p.logitsWanted).toEqual([false, true, true, true, true, false]);
    expect(() => packStep(plan([{ ...verify, numLogitRows: 5 }]), 4, 512, 512)).toThrow(/numLogitRows 5 for 4 tokens/);
  });

  it('packs into pooled arrays (the inputs mirror of the executor) with table offsets from the persistent tables', () => {
    const steps = plan([seq(7, [1, 50, 60, 70, 80], 0, [3, 9]), seq(8, [99], 6, [2, 5], true, warm), seq(9, [11, 12], 2, [4], false)]);
    const fresh = packStep(steps, 4, 512, 512);
    const pool = new Uint32Array(4 * 16).fill(777);
    const into = { tokenIds: pool.subarray(0, 16), positions: pool.subarray(16, 32), slots: pool.subarray(32, 48), tableOffsets: pool.subarray(48, 64) };
    const p = packStep(steps, 4, 512, 512, into, Uint32Array.from([128, 0, 64]));
    expect(p.tokenIds.buffer).toBe(pool.buffer); // views of the pool, nothing per token allocated
    expect([...pool.subarray(0, 8)]).toEqual([...fresh.tokenIds]);
    expect([...pool.subarray(16, 24)]).toEqual([...fresh.positions]);
    expect([...pool.subarray(32, 40)]).toEqual([...fresh.slots]);
    expect([...p.tableOffsets]).toEqual([128, 128, 128, 128, 128, 0, 64, 64]);
    expect(pool[8]).toBe(777); // nothing written past the step's tokens
    expect(p.blockTables.length).toBe(0);
    expect([...p.logitRows]).toEqual([...fresh.logitRows]);
    expect(() => packStep(steps, 4, 512, 512, { ...into, tokenIds: pool.subarray(0, 4) }, Uint32Array.from([0, 0, 0]))).toThrow(/no room for 8 tokens/);
    expect(() => packStep(steps, 4, 512, 512, into, Uint32Array.from([0, 0]))).toThrow(/of 3 sequences/);
  });

  it('rejects plans the kernels would read out of bounds', () => {
    expect(() => packStep(plan([seq(1, [600], 0, [0])]), 4, 512, 512)).toThrow(/outside the vocabulary/);
    expect(() => packStep(plan([seq(1, [5, 6], 3, [0])]), 4, 512, 512)).toThrow(/beyond its block table/);
    expect(() => packStep(plan([seq(1, [5], 600, new Array(200).fill(0))]), 4, 512, 512)).toThrow(/beyond the context/);
    const bad = seq(1, [5], 0, [2]);
    bad.slots = [3];
    expect(() => packStep(plan([bad]), 4, 512, 512)).toThrow(/disagrees with its block table \(8\)/);
  });
});
