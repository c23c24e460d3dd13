/**
 * GpuExecutor's host-time profiling on Dawn for Node (SwiftShader here): every executor phase is
 * timed once per step with a non-negative time, the GPU time and span come from timestamp
 * queries where the device has them, and the golden texts are unchanged with profiling on.
 * No wall-clock thresholds.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { create, globals } from 'webgpu';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.ts';
import { ENGINE_PHASES, EXECUTOR_PHASES, StepProfile } from '../../src/engine/profile.ts';
import { acquireDevice, type GpuContext } from '../../src/gpu/device.ts';
import { GpuExecutor } from '../../src/gpu/executor.ts';
import { loadKernelSources } from '../../src/gpu/kernel-sources.node.ts';
import { GpuRuntime } from '../../src/gpu/step.ts';
import { runcRequest, runcText } from '../../src/model/generate.ts';
import { loadModel, type LoadedModel } from '../../src/model/load.ts';

Object.assign(globalThis, globals);
const gpu = create([]);
const root = resolve(import.meta.dirname, '../..');
const read = (path: string) => new Uint8Array(readFileSync(resolve(root, path)));
const decoder = new TextDecoder();

describe('GpuExecutor profiling (Dawn for Node)', () => {
  let ctx: GpuContext;
  let runtime: GpuRuntime;
  let loaded: LoadedModel;

  beforeAll(async () => {
    ctx = await acquireDevice(gpu);
    runtime = GpuRuntime.fromContext(ctx, loadKernelSources());
    loaded = loadModel(read('public/models/stories260K.bin'), 'stories260K.bin', read('public/models/tok512.bin'));
  });

  afterAll(() => {
    runtime?.destroy();
    ctx?.destroy();
  });

  it('times every phase of every step, and the golden texts are unchanged with profiling on', async () => {
    // A run-queue delay counter that grows by 1 ms a read: the executor reads it around the
    // submit and the readback wait, so each of those phases gains exactly 1 ms a step.
    let delayReads = 0;
    const profile = new StepProfile(() => delayReads++);
    const executor = new GpuExecutor(ctx, runtime, loaded.model, { validate: true, profile });
    const engine = new Engine({ executor, config: { maxModelLen: 512, blockSize: 16, numGpuBlocks: 64, numCpuBlocks: 0 }, checkInvariants: true, profile });
    // The goldens' first 48 steps (the whole 256 is engine.suite's): greedy, batched together,
    // one sampled request beside them so the logits readback is timed too.
    const steps = 48;
    const a = runcRequest(loaded.tokenizer, 'Once upon a time', steps, 512);
    const b = runcRequest(loaded.tokenizer, '', steps, 512);
    const idA = engine.submit({ ...a, sampling: { temperature: 0 } });
    const idB = engine.submit({ ...b, sampling: { temperature: 0 } });
    const idC = engine.submit({ ...runcRequest(loaded.tokenizer, 'The little dog', steps, 512), sampling: { temperature: 0.8, seed: 3 } });
    const spans: { begin: bigint; end: bigint }[] = [];
    let ran = 0;
    while (engine.hasWork()) {
      const before = engine.stepIndex;
      if ((await engine.step()).kind !== 'ran') continue;
      ran++;
      engine.snapshot(before);
      if (executor.lastGpuSpanNs) spans.push(executor.lastGpuSpanNs);
    }
    const text = (id: string, prompt: number[]) => decoder.decode(runcText(loaded.tokenizer, prompt, engine.getRequest(id)!.seqs[0].outputTokenIds, steps, 512));
    const golden = (name: string) => decoder.decode(read(`tests/fixtures/stories260K.${name}.t0.n256.txt`));
    const textA = text(idA, a.promptTokenIds);
    const textB = text(idB, b.promptTokenIds);
    expect(textA.length).toBeGreaterThan(40);
    expect(golden('once-upon-a-time').startsWith(textA.slice(0, -1))).toBe(true);
    expect(golden('no-prompt').startsWith(textB.slice(0, -1))).toBe(true);
    expect(engine.getRequest(idC)!.state).toBe('finished');

    expect(profile.numSteps).toBe(ran);
    for (const phase of ['pack', 'swapOut', 'upload', 'encode', 'output', 'submit', 'readbackWait'] as const) {
      // submit() adds to encode once more (finish()), beside the executor's own laps; the
      // dispatch parameters have no per-step upload (their arena slots are written once).
      const perStep = phase === 'encode' ? 2 : 1;
      expect(profile.calls[phase], phase).toBe(perStep * ran);
    }
    for (const phase of ['submitRunDelay', 'readbackRunDelay'] as const) {
      expect([profile.calls[phase], profile.totalMs[phase]], phase).toEqual([ran, ran]);
    }
    // Read before and after the submit, and when the wait for the readbacks starts and ends.
    expect(delayReads).toBe(4 * ran);
    // Decode steps encode the next step ahead (timed as 'prepare'), and most of them are used.
    expect(profile.calls.prepare).toBeGreaterThan(ran / 2);
    expect(executor.preparedSteps.used).toBeGreaterThan(ran / 2);
    // Each one encoded was used or dropped, but for the last, which may still be waiting.
    const settled = executor.preparedSteps.used + executor.preparedSteps.dropped;
    expect(settled === profile.calls.prepare || settled === profile.calls.prepare - 1).toBe(true);
    for (const phase of [...ENGINE_PHASES, ...EXECUTOR_PHASES]) {
      expect(profile.totalMs[phase], phase).toBeGreaterThanOrEqual(0);
      if (phase !== 'gpu') expect(profile.calls[phase], phase).toBeGreaterThan(0);
    }
    // The executor's phases happen inside the engine's execute().
    const inside = profile.totalMs.pack + profile.totalMs.swapOut + profile.totalMs.upload + profile.totalMs.encode + profile.totalMs.submit + profile.totalMs.prepare + profile.totalMs.readbackWait + profile.totalMs.output;
    expect(inside).toBeLessThanOrEqual(profile.totalMs.execute);

    if (ctx.hasTimestampQuery) {
      expect(profile.calls.gpu).toBe(ran);
      expect(spans).toHaveLength(ran);
      for (let i = 0; i < spans.length; i++) {
        expect(spans[i].end >= spans[i].begin).toBe(true);
        // One step at a time: a step's passes start after the previous step's ended.
        if (i > 0) expect(spans[i].begin >= spans[i - 1].end).toBe(true);
      }
    } else {
      expect(profile.calls.gpu).toBe(0);
      expect(spans).toHaveLength(0);
    }
    executor.dispose();
  });

  it('without a profile the executor still reports the last step\'s GPU span where timestamps exist', async () => {
    const executor = new GpuExecutor(ctx, runtime, loaded.model);
    const engine = new Engine({ executor, config: { maxModelLen: 512, blockSize: 16, numGpuBlocks: 16, numCpuBlocks: 0 }, checkInvariants: false });
    engine.submit({ ...runcRequest(loaded.tokenizer, 'Once upon a time', 8, 512), sampling: { temperature: 0 } });
    await engine.runUntilIdle();
    expect(executor.lastGpuSpanNs === null).toBe(!ctx.hasTimestampQuery);
    executor.dispose();
  });
});
