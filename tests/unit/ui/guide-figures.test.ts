/**
 * The Guide's figures, computed from real engine runs: each compare entry runs its scenario's two
 * settings on the real Engine (the fake executor stands in for the model, on a virtual clock) and
 * each lab entry its scenario, the views' LabState fed step by step as the page feeds it; the
 * simulated layouts run the Engine on the roofline SimExecutor. The figures must say what the
 * runs show (continuous batching keeps more sequences at work, the short requests finish sooner,
 * the interactive tenant starts sooner under priority...), and nothing before the run gives it.
 */
import { describe, expect, it } from 'vitest';
import { Engine } from '../../../src/engine/engine.ts';
import { VirtualClock } from '../../../src/engine/clock.ts';
import { FakeExecutor, type FakeExecutorOptions } from '../../../src/engine/testing/fakeExecutor.ts';
import { generateWorkload } from '../../../src/engine/workload.ts';
import { SimExecutor } from '../../../src/sim/simExecutor.ts';
import { HARDWARE_PRESETS, MODEL_PRESETS } from '../../../src/sim/presets.ts';
import { kvCapacity } from '../../../src/sim/kvCalculator.ts';
import { DEFAULT_SCHEDULER_CONFIG } from '../../../src/engine/scheduler.ts';
import { LabState } from '../../../src/ui/lab/state.svelte.ts';
import { scenarioById } from '../../../src/ui/lab/scenarios.ts';
import { fullConfig, type LabSettings } from '../../../src/ui/lab/settings.ts';
import { DEFAULT_CALC_SETUP } from '../../../src/ui/lab/url.ts';
import { GUIDE } from '../../../src/ui/guide/entries.ts';
import { GUIDE_KEYS, guideKeyAction } from '../../../src/ui/guide/keys.ts';
import {
  guideFigure,
  kvArithmeticFigure,
  meanWorkingSeqs,
  median,
  parallelismFigure,
  simLayoutResult,
  tokensPerSecond,
  type GuideSources,
  type RunSource,
  type SimSource,
} from '../../../src/ui/guide/figures.ts';

const NONE: GuideSources = { lab: null, compare: null, calc: null, sim: null, simEarlier: [], fleet: null };

/** Runs a scenario's workload with these settings; the LabState after `maxSteps` steps (or the end). */
async function runScenario(id: string, settings: LabSettings, maxSteps = 5000, fake: FakeExecutorOptions = {}): Promise<LabState> {
  const sc = scenarioById(id)!;
  const engine = new Engine({
    // A step takes 25 ms, about what the tiny model's steps take on a software GPU, so arrivals queue as in the lab.
    executor: new FakeExecutor({ vocabSize: 512, durationMs: () => 25, ...fake }),
    clock: new VirtualClock(),
    config: { ...fullConfig(settings), maxModelLen: 512 },
    checkInvariants: false,
  });
  for (const r of generateWorkload(sc.workload)) engine.submit(r);
  await engine.init();
  const state = new LabState();
  for (let i = 0; engine.hasWork() && i < maxSteps; i++) {
    await engine.step();
    state.ingest({ ...engine.snapshot(state.lastStep), texts: {}, prompts: {}, host: null, model: null });
  }
  return state;
}

async function runCompare(id: string, maxSteps?: number, fake?: FakeExecutorOptions): Promise<{ a: LabState; b: LabState }> {
  const sc = scenarioById(id)!;
  return { a: await runScenario(id, sc.compare.a.settings, maxSteps, fake), b: await runScenario(id, sc.compare.b.settings, maxSteps, fake) };
}

const entry = (n: number) => GUIDE[n - 1];
const compareFigure = (n: number, a: RunSource, b: RunSource) => {
  const t = entry(n).target;
  if (t.kind !== 'compare') throw new Error(`entry ${n} is not a compare entry`);
  return guideFigure(entry(n), { ...NONE, compare: { a, b, scenarioId: t.scenarioId } });
};
const labFigure = (n: number, run: RunSource) => {
  const t = entry(n).target;
  if (t.kind !== 'lab') throw new Error(`entry ${n} is not a lab entry`);
  return guideFigure(entry(n), { ...NONE, lab: { run, scenarioId: t.scenarioId } });
};
/** Numbers in a figure's text, in order. */
const numbers = (text: string) => [...text.matchAll(/-?\d[\d,]*(?:\.\d+)?/g)].map((m) => Number(m[0].replace(/,/g, '')));

describe('the Guide entries', () => {
  it('are the sixteen questions plus speculative decoding and quantization, each with a figure for its target', () => {
    expect(GUIDE.map((e) => e.n)).toEqual(Array.from({ length: 18 }, (_, i) => i + 1));
    for (const e of GUIDE) {
      expect(e.idea.split(/(?<=[.!?])\s+(?=[A-Z])/).length, `entry ${e.n}: two or three sentences`).toBeGreaterThanOrEqual(2);
      expect(e.idea.split(/(?<=[.!?])\s+(?=[A-Z])/).length).toBeLessThanOrEqual(3);
      if (e.target.kind === 'compare' || e.target.kind === 'lab') expect(scenarioById(e.target.scenarioId), `entry ${e.n}`).toBeDefined();
      // No figure without its run, and none from another view's run.
      expect(guideFigure(e, NONE)).toBeNull();
    }
    expect(GUIDE.filter((e) => e.target.kind === 'fleet').map((e) => e.n)).toEqual([4, 10, 11, 12, 13, 15]);
  });

  it('a figure needs the run of its own scenario', async () => {
    const { a, b } = await runCompare('static-vs-continuous', 40);
    expect(guideFigure(entry(1), { ...NONE, compare: { a, b, scenarioId: 'priority-preemption' } })).toBeNull();
    expect(guideFigure(entry(1), { ...NONE, compare: { a, b, scenarioId: 'static-vs-continuous' } })).not.toBeNull();
  });
});

describe('the Guide keys', () => {
  it('step and open the Guide, page keys only while the strip is shown, none of the app keys taken', () => {
    expect(guideKeyAction(GUIDE_KEYS.next, false)).toBe('next');
    expect(guideKeyAction(GUIDE_KEYS.prev, true)).toBe('prev');
    expect(guideKeyAction(GUIDE_KEYS.guide, false)).toBe('guide');
    expect(guideKeyAction('PageDown', true)).toBe('next');
    expect(guideKeyAction('PageUp', true)).toBe('prev');
    expect(guideKeyAction('PageDown', false)).toBeNull(); // scrolls the Guide page
    for (const k of [' ', 'ArrowRight', 'ArrowLeft', 'Enter', 'Escape', 'p', 't', '0', '1', '9']) expect(guideKeyAction(k, true), k).toBeNull();
  });
});

describe('figures from real engine runs', () => {
  it('1: continuous batching keeps more sequences at work than static, and more throughput once half are done', async () => {
    const early = await runCompare('static-vs-continuous', 30);
    const f0 = compareFigure(1, early.a, early.b)!;
    expect(f0.clock).toBe('engine clock');
    expect(f0.text).toContain('The throughput ratio follows');
    const { a, b } = await runCompare('static-vs-continuous');
    expect(meanWorkingSeqs(b)).toBeGreaterThan(meanWorkingSeqs(a));
    const f = compareFigure(1, a, b)!;
    const ratio = tokensPerSecond(b) / tokensPerSecond(a);
    expect(ratio).toBeGreaterThan(1);
    expect(f.text).toContain(`gave ${ratio.toFixed(1)}× the throughput of static`);
    expect(f.text).toContain(`continuous ${meanWorkingSeqs(b).toFixed(1)}, static ${meanWorkingSeqs(a).toFixed(1)}`);
  });

  it('2: the short requests finish sooner with continuous batching', async () => {
    const { a, b } = await runCompare('short-vs-long');
    const f = compareFigure(2, a, b)!;
    expect(f.text).toMatch(/^Short requests \(≤ 56 tokens\) finished in a median .* with static batching vs .* with continuous/);
    expect(f.text).toContain('faster with continuous');
  });

  it('3: the interactive tenant starts sooner under the priority policy, preemptions paid for it', async () => {
    const { a, b } = await runCompare('priority-preemption');
    const f = compareFigure(3, a, b)!;
    const ttft = (s: LabState) => median(s.requests.filter((r) => r.view.tenant === 'interactive').map((r) => r.view.firstTokenMs - r.view.arrivalMs));
    expect(ttft(b)).toBeLessThan(ttft(a));
    expect(f.text).toMatch(/^"interactive" TTFT median: .* under fcfs vs .* under priority; preemptions: \d+ under fcfs, \d+ under priority/);
    expect(b.snap!.metrics.numPreemptions).toBeGreaterThan(0);
  });

  it('6: paged blocks are nearly full, a max-length reservation is many times the pool', async () => {
    const sc = scenarioById('short-vs-long')!;
    const run = await runScenario('short-vs-long', sc.settings, 60);
    const f = labFigure(6, run)!;
    const [numSeqs, filled, used, bs, filledPct, maxLen, reserved] = numbers(f.text);
    expect(bs).toBe(16);
    expect(maxLen).toBe(512);
    expect(reserved).toBe(numSeqs * 512);
    // At most one partly filled block per sequence.
    expect(used * bs - filled).toBeLessThan(numSeqs * bs);
    expect(filledPct).toBe(Math.round((100 * filled) / (used * bs)));
    const ended = await runScenario('short-vs-long', sc.settings);
    expect(labFigure(6, ended)).toBeNull(); // nothing running: the strip keeps the last figure
  });

  it('7: the four samples share their prompt blocks, and partly filled blocks are copied on write', async () => {
    const sc = scenarioById('parallel-sampling')!;
    const run = await runScenario('parallel-sampling', sc.settings, 40, { emitLogits: true });
    const f = labFigure(7, run)!;
    const [shared, maxRef, saved, copies] = numbers(f.text);
    expect(shared).toBeGreaterThan(0);
    expect(maxRef).toBe(4);
    expect(saved).toBeGreaterThanOrEqual(shared);
    expect(copies).toBe(run.columns.reduce((s, c) => s + c.numCopies, 0));
    expect(copies).toBeGreaterThan(0);
  });

  it('8: both preemption modes preempt in 20 blocks; swap moves blocks to the CPU', async () => {
    const { a, b } = await runCompare('kv-exhausted');
    const f = compareFigure(8, a, b)!;
    expect(a.snap!.metrics.numPreemptions).toBeGreaterThan(0);
    expect(f.text).toMatch(/^recompute: \d+ preemptions?, 16 finished, E2E p50 .*; swap: \d+ preemptions?, \d+ blocks? swapped out, 16 finished/);
  });

  it('17: n-gram drafts are accepted and the time per output token drops', async () => {
    const { a, b } = await runCompare('speculative-decoding', undefined, { repeatPeriod: 4 });
    const f = compareFigure(17, a, b)!;
    const spec = b.snap!.metrics.spec;
    expect(spec.acceptanceRate).toBeGreaterThan(0);
    expect(f.text).toContain(`${Math.round(100 * spec.acceptanceRate)}% of ${spec.numDraftTokens.toLocaleString('en-US')} draft tokens accepted`);
    expect(b.snap!.metrics.tpotMs.p50).toBeLessThan(a.snap!.metrics.tpotMs.p50);
  });

  it('18: Q4_0 weights leave more KV blocks and more sequences run at once', async () => {
    const { a, b } = await runCompare('quantize-to-fit');
    const f = compareFigure(18, a, b)!;
    const peak = (s: LabState) => Math.max(...s.series.map((p) => p.numRunning));
    expect(b.snap!.config.numGpuBlocks).toBeGreaterThan(a.snap!.config.numGpuBlocks);
    expect(peak(b)).toBeGreaterThan(peak(a));
    expect(f.text).toContain(`(${b.snap!.config.numGpuBlocks} vs ${a.snap!.config.numGpuBlocks}); up to ${peak(b)} sequences ran at once vs ${peak(a)}`);
  });

  it('5: the calculator arithmetic for Llama-2 70B on 8× H100', () => {
    const f = kvArithmeticFigure(DEFAULT_CALC_SETUP)!;
    // 2 × 80 layers × 8 KV heads × 128 × 2 B, worked by hand.
    expect(f.text).toContain('2 × 80 layers × 8 KV heads × 128 × 2 B = 327,680 B per token');
    expect(f.text).toContain('4,096 tokens = 1.25 GiB per sequence');
    const cap = kvCapacity(MODEL_PRESETS['llama-2-70b'], HARDWARE_PRESETS['h100-sxm'], { tensorParallel: 8, pipelineParallel: 1, bytesPerKvElement: 2 });
    expect(f.text).toContain(`${Math.floor(cap.numKvTokens / 4096).toLocaleString('en-US')} sequences of 4,096 tokens at once`);
    expect(kvArithmeticFigure({ ...DEFAULT_CALC_SETUP, tensorParallel: 1 })!.text).toContain('do not fit');
  });

  it('9: simulated layouts, each run on the roofline executor, compared in one figure', async () => {
    const simRun = async (tp: number, pp: number): Promise<SimSource> => {
      const model = MODEL_PRESETS['llama-2-70b'];
      const hardware = HARDWARE_PRESETS['h100-sxm'];
      const numGpuBlocks = Math.min(kvCapacity(model, hardware, { tensorParallel: tp, pipelineParallel: pp }).numBlocks, 4096);
      const engine = new Engine({
        executor: new SimExecutor({ model, hardware, parallel: { tensorParallel: tp, pipelineParallel: pp } }),
        clock: new VirtualClock(),
        config: { ...DEFAULT_SCHEDULER_CONFIG, blockSize: 16, numGpuBlocks, numCpuBlocks: 0, maxNumSeqs: 64, maxNumBatchedTokens: 8192, maxModelLen: model.maxModelLen },
        checkInvariants: false,
      });
      const reqs = generateWorkload({ seed: 3, numRequests: 40, vocabSize: 32000, arrival: { kind: 'poisson', ratePerS: 20 }, promptTokens: { kind: 'uniform', min: 200, max: 600 }, outputTokens: { kind: 'uniform', min: 50, max: 150 } });
      for (const r of reqs) engine.submit(r);
      await engine.init();
      const state = new LabState();
      while (engine.hasWork()) {
        await engine.step();
        state.ingest({ ...engine.snapshot(state.lastStep), texts: {}, prompts: {}, host: null, model: null });
      }
      const executor = (engine as unknown as { executor: SimExecutor }).executor;
      return { run: state, deployment: { modelId: 'llama-2-70b', hardwareId: 'h100-sxm', tensorParallel: tp, pipelineParallel: pp, weights: 'f16' }, lastCost: executor.lastCost };
    };
    const tp8 = await simRun(8, 1);
    const pp8 = await simRun(1, 8);
    const first = simLayoutResult(tp8)!;
    const second = simLayoutResult(pp8)!;
    expect(first.tokPerS).not.toBe(second.tokPerS);
    const f = parallelismFigure(pp8, [first])!;
    expect(f.clock).toBe('SIMULATED');
    expect(f.text).toContain(`TP 1 × PP 8: ${second.tokPerS.toFixed(0)} generated tokens/s`);
    expect(f.text).toContain(`Earlier: TP 8 × PP 1 gave ${first.tokPerS.toFixed(0)} tokens/s`);
    expect(f.text).toContain('pipeline bubble');
    expect(parallelismFigure(tp8, [])!.text).not.toContain('Earlier');
  });

  it('the median is the middle value (the mean of the two middle ones)', () => {
    expect(median([5, 1, 4, 2, 3])).toBe(3);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(Number.isNaN(median([]))).toBe(true);
  });
});
