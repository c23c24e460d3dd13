import { describe, expect, it } from 'vitest';
import { HARDWARE_PRESETS, MODEL_PRESETS } from '../../../src/sim/presets.ts';
import { kvBytesPerToken, kvCapacity, numParams } from '../../../src/sim/kvCalculator.ts';
import { stepCost, type StepShape } from '../../../src/sim/costModel.ts';
import { SimExecutor } from '../../../src/sim/simExecutor.ts';
import { Engine } from '../../../src/engine/engine.ts';
import { VirtualClock } from '../../../src/engine/clock.ts';
import { generateWorkload } from '../../../src/engine/workload.ts';

const MiB = 1024 * 1024;
const h100 = HARDWARE_PRESETS['h100-sxm'];

describe('KV calculator', () => {
  it('gets grouped-query attention right', () => {
    const m70 = MODEL_PRESETS['llama-2-70b'];
    expect(kvBytesPerToken(m70) / MiB).toBeCloseTo(0.3125, 10);
    // The all-heads assumption: 2.6 MB.
    expect(kvBytesPerToken({ ...m70, numKvHeads: m70.numHeads })).toBe(2_621_440);
    expect(kvBytesPerToken(MODEL_PRESETS['llama-2-7b'])).toBe(512 * 1024);
    expect(kvBytesPerToken(MODEL_PRESETS['llama-3-8b'])).toBe(128 * 1024);
  });

  it('counts parameters from the shapes', () => {
    expect(numParams(MODEL_PRESETS['llama-2-7b']) / 1e9).toBeCloseTo(6.74, 2);
    expect(numParams(MODEL_PRESETS['llama-2-13b']) / 1e9).toBeCloseTo(13.0, 1);
    expect(numParams(MODEL_PRESETS['llama-2-70b']) / 1e9).toBeCloseTo(69.0, 0);
    expect(numParams(MODEL_PRESETS['llama-3-8b']) / 1e9).toBeCloseTo(8.03, 2);
    expect(numParams(MODEL_PRESETS.stories15M) / 1e6).toBeCloseTo(15.2, 0);
  });

  it('sizes the KV pool from memory left after the weights', () => {
    const one = kvCapacity(MODEL_PRESETS['llama-2-70b'], h100);
    expect(one.fitsWeights).toBe(false);
    const eight = kvCapacity(MODEL_PRESETS['llama-2-70b'], h100, { tensorParallel: 8 });
    expect(eight.fitsWeights).toBe(true);
    const expected = Math.floor(((80 * 1024 ** 3 * 0.9 - 1e9 - (numParams(MODEL_PRESETS['llama-2-70b']) * 2) / 8) * 8) / kvBytesPerToken(MODEL_PRESETS['llama-2-70b']));
    expect(eight.numKvTokens).toBe(expected);
    expect(eight.numBlocks).toBe(Math.floor(expected / 16));
  });
});

describe('Roofline cost model', () => {
  const m = MODEL_PRESETS['llama-2-7b'];
  const decode = (batch: number, ctx: number): StepShape => ({
    numTokens: batch,
    numLogitRows: batch,
    seqs: Array.from({ length: batch }, () => ({ numQueryTokens: 1, startPosition: ctx })),
    numCopiedBlocks: 0,
    numSwappedBlocks: 0,
    blockSize: 16,
  });
  const one = { tensorParallel: 1, pipelineParallel: 1 };

  it('makes small-batch decode memory-bound and large prefill compute-bound', () => {
    const d = stepCost(decode(1, 100), m, h100, one);
    expect(d.bound).toBe('memory');
    // Weights once: 6.74e9 * 2 bytes at 80% of 3.35 TB/s, plus 2 ms overhead.
    expect(d.totalMs).toBeCloseTo(((6.74e9 * 2) / (3.35e12 * 0.8)) * 1000 + 2, 0);
    const p = stepCost({ ...decode(1, 0), numTokens: 4096, seqs: [{ numQueryTokens: 4096, startPosition: 0 }] }, m, h100, one);
    expect(p.bound).toBe('compute');
    // Decode steps amortise the weights: 64 sequences cost far less than 64 single steps.
    expect(stepCost(decode(64, 100), m, h100, one).totalMs).toBeLessThan(2 * d.totalMs);
  });

  it('charges K/V reads by context length', () => {
    const short = stepCost(decode(32, 100), m, h100, one);
    const long = stepCost(decode(32, 4000), m, h100, one);
    const extraBytes = 32 * 3900 * kvBytesPerToken(m);
    expect(long.memoryMs - short.memoryMs).toBeCloseTo((extraBytes / (3.35e12 * 0.8)) * 1000, 3);
  });

  it('splits work under tensor parallelism but pays all-reduces, and pays bubbles under pipelining', () => {
    const m70 = MODEL_PRESETS['llama-2-70b'];
    const tp1 = stepCost(decode(64, 500), m70, h100, one);
    const tp8 = stepCost(decode(64, 500), m70, h100, { tensorParallel: 8, pipelineParallel: 1 });
    expect(tp8.totalMs).toBeLessThan(tp1.totalMs / 4);
    expect(tp8.commMs).toBeGreaterThan(0);
    const pp4 = stepCost(decode(64, 500), m70, h100, { tensorParallel: 1, pipelineParallel: 4 });
    expect(pp4.bubbleMs).toBeGreaterThan(0);
    // 4 micro-batches through 4 stages: 7 stage times of which 3 are bubble.
    expect(pp4.bubbleMs / (pp4.totalMs - pp4.overheadMs)).toBeCloseTo(3 / 7, 5);
  });
});

describe('Simulated executor', () => {
  it('runs 10,000 requests through the real scheduler in virtual time, quickly', async () => {
    const t0 = performance.now();
    const engine = new Engine({
      executor: new SimExecutor({ model: MODEL_PRESETS['llama-2-70b'], hardware: h100, parallel: { tensorParallel: 8, pipelineParallel: 1 } }),
      clock: new VirtualClock(),
      config: { blockSize: 16, numGpuBlocks: 8192, numCpuBlocks: 0, maxNumSeqs: 256, maxNumBatchedTokens: 8192, maxModelLen: 4096 },
      recordEvents: false,
      checkInvariants: false,
    });
    const requests = generateWorkload({
      seed: 3,
      numRequests: 10_000,
      arrival: { kind: 'poisson', ratePerS: 100 },
      promptTokens: { kind: 'lognormal', median: 200, sigma: 0.8, min: 4, max: 2000 },
      outputTokens: { kind: 'lognormal', median: 60, sigma: 0.8, min: 1, max: 500 },
      sharedPrefix: { fraction: 0.3, numTokens: 64 },
    });
    for (const r of requests) engine.submit(r);
    await engine.runUntilIdle();
    const wallMs = performance.now() - t0;
    const m = engine.metricsSummary();
    expect(m.numFinished).toBe(10_000);
    expect(m.nowMs).toBeGreaterThan(requests[requests.length - 1].arrivalMs!);
    expect(m.prefixCacheHitRate).toBeGreaterThan(0);
    expect(wallMs).toBeLessThan(20_000);
  }, 30_000);

  it('ends sequences at their EOS position and names itself', async () => {
    const sim = new SimExecutor({ model: MODEL_PRESETS['llama-3-8b'], hardware: h100, eosPosition: (id) => (id === 'a' ? 9 : undefined) });
    expect(sim.name).toBe('simulated: Llama-3 8B on H100 SXM');
    const engine = new Engine({ executor: sim, clock: new VirtualClock(), config: { maxModelLen: 512 } });
    engine.submit({ requestId: 'a', promptTokenIds: [5, 6, 7, 8], maxTokens: 100 });
    engine.submit({ requestId: 'b', promptTokenIds: [5, 6, 7, 8], maxTokens: 7 });
    await engine.runUntilIdle();
    expect(engine.getRequest('a')!.seqs[0].numOutputTokens).toBe(5);
    expect(engine.getRequest('a')!.endReason).toBe('stop');
    expect(engine.getRequest('b')!.seqs[0].numOutputTokens).toBe(7);
    expect(sim.lastCost?.totalMs).toBeGreaterThan(0);
  });
});
