/** `bench spec` on the CPU reference (the built-in model), cut small: the JSON's shape and its invariants. */
import { describe, expect, it } from 'vitest';
import { specBench, storyPrompts, type SpecOnFigures, type SpecRunFigures } from '../../../src/sim/bench/spec.ts';
import { VirtualClock } from '../../../src/engine/clock.ts';
import { CpuReferenceExecutor } from '../../../src/model/reference.ts';
import type { Backend } from '../../../src/sim/bench/types.ts';
import { builtin } from '../model/helpers.ts';

describe('bench spec', () => {
  it('reports off and k = 1..2 with identical greedy outputs, 1.0 tokens per step without speculation and more with it', async () => {
    const { model, tokenizer } = builtin();
    const backend: Backend = {
      name: 'cpu',
      realModel: { name: 'stories260K.bin', maxModelLen: model.config.seqLen, vocabSize: model.config.vocabSize },
      makeExecutor: () => new CpuReferenceExecutor(model),
      realExecutor: () => new CpuReferenceExecutor(model),
      makeClock: () => new VirtualClock(),
    };
    const result = await specBench(() => tokenizer).run({ backend, seed: 1, options: { requests: '3', 'max-tokens': '60', 'max-k': '2', k: '2' }, log: () => {} });
    const json = result.json as { off: SpecRunFigures; on: SpecOnFigures; byK: SpecOnFigures[] };
    expect(json.byK.map((r) => r.k)).toEqual([1, 2]);
    expect(json.on.k).toBe(2);
    expect(json.off.tokensPerSeqStep).toBe(1);
    expect(json.off.decodeRowsPerToken).toBe(1);
    expect(json.off.numGeneratedTokens).toBe(180);
    for (const r of json.byK) {
      expect(r.identicalOutputs).toBe(true);
      expect(r.numGeneratedTokens).toBe(180);
      expect(r.tokensPerSeqStep).toBeGreaterThan(1);
      expect(r.stepsPerSeq).toBeLessThan(json.off.stepsPerSeq);
      expect(r.acceptanceRate).toBeGreaterThan(0);
      expect(r.acceptanceRate).toBeLessThan(1);
      expect(r.meanAcceptedLength).toBeGreaterThan(1);
      expect(r.decodeRowsPerToken).toBeGreaterThan(1);
      expect(r.tokPerS).toBeGreaterThan(0);
    }
    expect(result.table).toHaveLength(4);
  }, 60_000);

  it('story prompts are the passages\' opening words', () => {
    const p = storyPrompts(3, 5);
    expect(p).toHaveLength(3);
    for (const x of p) expect(x.split(' ')).toHaveLength(5);
  });
});
