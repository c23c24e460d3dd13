/**
 * Host-time profiling (src/engine/profile.ts): the engine fills every phase for the steps it
 * runs, on the fake executor and on the CPU reference; nothing is timed without a sink;
 * profiling changes no token. And the overhead benchmark's arithmetic and JSON shape (no
 * wall-clock thresholds: only structure and invariants).
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { VirtualClock } from '../../../src/engine/clock.ts';
import { Engine } from '../../../src/engine/engine.ts';
import { ENGINE_PHASES, EXECUTOR_PHASES, StepProfile, type ProfilePhase } from '../../../src/engine/profile.ts';
import type { SchedulerConfig } from '../../../src/engine/scheduler.ts';
import { FakeExecutor } from '../../../src/engine/testing/fakeExecutor.ts';
import type { Executor } from '../../../src/engine/types.ts';
import { loadModel } from '../../../src/model/load.ts';
import { CpuReferenceExecutor } from '../../../src/model/reference.ts';
import { medianRow, overheadBench, overheadSettings, rowFromSteps, type OverheadRow, type StepSample } from '../../../src/sim/bench/overhead.ts';
import type { Backend } from '../../../src/sim/bench/types.ts';

const config: Partial<SchedulerConfig> = { blockSize: 8, numGpuBlocks: 64, numCpuBlocks: 0, maxNumBatchedTokens: 32, maxNumSeqs: 8, maxModelLen: 128 };

function submitSome(engine: Engine, vocabSize: number): void {
  for (let i = 0; i < 4; i++) {
    const prompt = [1, ...Array.from({ length: 3 + i * 5 }, (_, k) => 3 + ((i * 13 + k * 7) % (vocabSize - 3)))];
    engine.submit({ promptTokenIds: prompt, maxTokens: 6, stopTokenIds: [], sampling: { temperature: i % 2 === 0 ? 0 : 0.8, seed: i + 1 } });
  }
}

async function runSteps(engine: Engine, maxSteps: number): Promise<number> {
  let ran = 0;
  for (let i = 0; i < maxSteps && engine.hasWork(); i++) {
    const before = engine.stepIndex;
    if ((await engine.step()).kind === 'ran') ran++;
    engine.snapshot(before);
  }
  return ran;
}

function outputs(engine: Engine): number[][][] {
  return [...engine.requests()].map((r) => r.seqs.map((s) => s.outputTokenIds.slice()));
}

function expectEnginePhasesFilled(profile: StepProfile, numSteps: number, invariants: boolean): void {
  expect(profile.numSteps).toBe(numSteps);
  for (const phase of ENGINE_PHASES) {
    if (phase === 'invariants' && !invariants) continue;
    expect(profile.calls[phase], phase).toBeGreaterThan(0);
  }
  for (const phase of [...ENGINE_PHASES, ...EXECUTOR_PHASES]) {
    expect(profile.totalMs[phase], phase).toBeGreaterThanOrEqual(0);
    expect(Number.isFinite(profile.totalMs[phase]), phase).toBe(true);
  }
  // One lap each per step that ran (record is split around the invariant check when it is on).
  for (const phase of ['schedule', 'execute', 'sample', 'update'] as const) expect(profile.calls[phase], phase).toBe(numSteps);
  expect(profile.calls.record).toBe(invariants ? 2 * numSteps : numSteps);
  expect(profile.calls.snapshot).toBe(numSteps);
}

describe('engine profiling', () => {
  afterEach(() => vi.restoreAllMocks());

  it('fills every engine phase with non-negative times on the fake executor, and changes no token', async () => {
    const profile = new StepProfile();
    const profiled = new Engine({ executor: new FakeExecutor({ vocabSize: 64, emitLogits: true }), clock: new VirtualClock(), config, checkInvariants: true, profile });
    const plain = new Engine({ executor: new FakeExecutor({ vocabSize: 64, emitLogits: true }), clock: new VirtualClock(), config, checkInvariants: true });
    submitSome(profiled, 64);
    submitSome(plain, 64);
    const ran = await runSteps(profiled, 50);
    await runSteps(plain, 50);
    expect(ran).toBeGreaterThan(3);
    expectEnginePhasesFilled(profile, ran, true);
    // The fake executor times nothing of its own.
    for (const phase of EXECUTOR_PHASES) expect(profile.calls[phase], phase).toBe(0);
    expect(outputs(profiled)).toEqual(outputs(plain));
    expect(profiled.eventLog.map((e) => ({ ...e, timeMs: 0 }))).toEqual(plain.eventLog.map((e) => ({ ...e, timeMs: 0 })));
    expect(profile.usPerStep('execute')).toBeGreaterThanOrEqual(0);
    expect(profile.usPerCall('snapshot')).not.toBeNull();

    profile.reset();
    expect(profile.numSteps).toBe(0);
    for (const phase of [...ENGINE_PHASES, ...EXECUTOR_PHASES]) expect([profile.totalMs[phase], profile.calls[phase]]).toEqual([0, 0]);
    expect(profile.usPerCall('snapshot')).toBeNull();
  });

  it('fills every engine phase on the CPU reference executor (the real model), tokens unchanged', async () => {
    const root = resolve(import.meta.dirname, '../../..');
    const model = loadModel(new Uint8Array(readFileSync(resolve(root, 'public/models/stories260K.bin'))), 'stories260K.bin', new Uint8Array(readFileSync(resolve(root, 'public/models/tok512.bin')))).model;
    const make = (profile?: StepProfile) => new Engine({ executor: new CpuReferenceExecutor(model), clock: new VirtualClock(), config, checkInvariants: false, profile });
    const profile = new StepProfile();
    const profiled = make(profile);
    const plain = make();
    submitSome(profiled, model.config.vocabSize);
    submitSome(plain, model.config.vocabSize);
    const ran = await runSteps(profiled, 50);
    await runSteps(plain, 50);
    expectEnginePhasesFilled(profile, ran, false);
    expect(profile.calls.invariants).toBe(0);
    expect(outputs(profiled)).toEqual(outputs(plain));
  });

  it('times nothing without a sink: no performance.now() call in a step or a snapshot', async () => {
    const engine = new Engine({ executor: new FakeExecutor({ vocabSize: 64, emitLogits: true }), clock: new VirtualClock(), config, checkInvariants: false });
    submitSome(engine, 64);
    await engine.step(); // configure and first step outside the spy
    const now = vi.spyOn(performance, 'now');
    const ran = await runSteps(engine, 5);
    expect(ran).toBe(5);
    expect(now).not.toHaveBeenCalled();
  });

  it('an executor that times its own phases adds them beside the engine\'s', async () => {
    const profile = new StepProfile();
    const fake = new FakeExecutor({ vocabSize: 64, emitLogits: true });
    const timed: Executor = {
      name: 'timed fake',
      configure: (g) => fake.configure(g),
      async execute(plan) {
        profile.add('pack', 0.01);
        profile.add('readbackWait', 0.5);
        return fake.executeSync(plan);
      },
      dispose: () => fake.dispose(),
    };
    const engine = new Engine({ executor: timed, clock: new VirtualClock(), config, checkInvariants: false, profile });
    submitSome(engine, 64);
    const ran = await runSteps(engine, 50);
    expect(profile.calls.pack).toBe(ran);
    expect(profile.totalMs.readbackWait).toBeCloseTo(0.5 * ran, 9);
    expect(profile.usPerStep('pack')).toBeCloseTo(10, 6);
  });
});

function sample(wallMs: number, phases: Partial<Record<ProfilePhase, number>>, runDelayMs?: number): StepSample {
  const phaseMs = {} as Record<ProfilePhase, number>;
  for (const p of [...ENGINE_PHASES, ...EXECUTOR_PHASES]) phaseMs[p] = phases[p] ?? 0;
  return { wallMs, phaseMs, runDelayMs };
}

describe('overhead benchmark arithmetic', () => {
  const shape = { kind: 'decode' as const, batch: 4, tokensPerStep: 4, prefillTokensPerStep: 0 };

  it('GPU steps: host = wall - readback wait, executor host = pack + upload + encode + submit + output, medians over steps', () => {
    const gpuStep = (wallMs: number, waitMs: number) =>
      sample(wallMs, { schedule: 0.1, execute: wallMs - 0.5, sample: 0.01, update: 0.2, record: 0.05, pack: 0.03, upload: 0.02, encode: 0.3, submit: 0.4, readbackWait: waitMs, output: 0.01, gpu: 2, snapshot: 0.07 });
    const row = rowFromSteps([gpuStep(10, 8), gpuStep(11, 9), gpuStep(50, 10)], shape, 50, 20);
    expect(row.numSteps).toBe(3);
    expect(row.stepWallUs).toBeCloseTo(11_000, 6);
    expect(row.hostUsPerStep).toBeCloseTo(2000, 6); // 10 - 8, 11 - 9, 50 - 10: median 2 ms
    expect(row.hostUsPerStepMean).toBeCloseTo((2000 + 2000 + 40_000) / 3, 6);
    expect(row.readbackWaitUs).toBeCloseTo(9000, 6);
    expect(row.executorHostUs).toBeCloseTo(760, 6);
    expect(row.engineUs).toBeCloseTo(360, 6);
    expect(row.otherUs).toBeCloseTo(2000 - 760 - 360, 6);
    expect(row.gpuTimeUs).toBeCloseTo(2000, 6);
    expect(row.snapshotUs).toBeCloseTo(70, 6);
    expect(row.profilerUs).toBeCloseTo(1, 9); // 20 calls x 50 ns
    expect([row.prepareSteps, row.preparedUsedShare]).toEqual([null, null]); // not told
  });

  it('steps encoded ahead: prepare counts in executor host but not in what the GPU waits for; the share of steps that ran one', () => {
    const gpuStep = sample(10, { schedule: 0.1, execute: 9.5, update: 0.2, pack: 0.05, upload: 0.05, encode: 0.02, submit: 0.2, prepare: 0.3, readbackWait: 8, output: 0.03, gpu: 7 });
    const row = rowFromSteps([gpuStep, gpuStep, gpuStep, gpuStep], shape, 50, 20, { on: true, used: 3 });
    expect(row.prepareUs).toBeCloseTo(300, 6);
    expect(row.executorHostUs).toBeCloseTo(650, 6); // 50 + 50 + 20 + 200 + 300 + 30
    expect(row.exposedHostUs).toBeCloseTo(350, 6);
    expect(row.prepareSteps).toBe(true);
    expect(row.preparedUsedShare).toBeCloseTo(0.75, 9);
  });

  it('run-queue delay: the step\'s less the readback wait\'s is the host\'s; host cpu = host less it; unknown: null', () => {
    const gpuStep = (runDelayMs: number | undefined) =>
      sample(10, { schedule: 0.1, execute: 9.5, update: 0.2, pack: 0.05, encode: 0.3, submit: 0.8, submitRunDelay: 0.6, readbackWait: 8, readbackRunDelay: 1.5, output: 0.05 }, runDelayMs);
    const row = rowFromSteps([gpuStep(2.3), gpuStep(2.2), gpuStep(2.4)], shape, 50, 20);
    expect(row.hostUsPerStep).toBeCloseTo(2000, 6);
    expect(row.hostRunDelayUs).toBeCloseTo(800, 6); // 2.3 - 1.5 ms
    expect(row.submitRunDelayUs).toBeCloseTo(600, 6);
    expect(row.hostCpuUsPerStep).toBeCloseTo(1200, 6);
    // A delay accounted inside the readback wait only never makes host time negative.
    expect(rowFromSteps([gpuStep(1)], shape, 50, 20).hostRunDelayUs).toBe(0);
    const unknown = rowFromSteps([gpuStep(undefined)], shape, 50, 20);
    expect([unknown.hostRunDelayUs, unknown.submitRunDelayUs, unknown.hostCpuUsPerStep]).toEqual([null, null, null]);
  });

  it('host-only executors: host = wall - execute, the GPU executor\'s phases null', () => {
    const row = rowFromSteps([sample(3, { schedule: 0.2, execute: 2, sample: 0.1, update: 0.3, record: 0.1 })], shape, 50, 10);
    expect(row.hostUsPerStep).toBeCloseTo(1000, 6);
    expect(row.executeUs).toBeCloseTo(2000, 6);
    for (const k of ['packUs', 'uploadUs', 'encodeUs', 'submitUs', 'prepareUs', 'outputUs', 'readbackWaitUs', 'executorHostUs', 'exposedHostUs', 'prepareSteps', 'preparedUsedShare', 'gpuTimeUs', 'snapshotUs', 'hostRunDelayUs', 'hostCpuUsPerStep'] as const) expect(row[k], k).toBeNull();
    expect(row.otherUs).toBeCloseTo(1000 - 700, 6);
  });

  it('medianRow takes each numeric field\'s median over the windows', () => {
    const base = rowFromSteps([sample(3, { execute: 2 })], shape, 50, 10);
    const rows: OverheadRow[] = [5, 1, 3].map((h) => ({ ...base, hostUsPerStep: h, scheduleUs: 10 * h }));
    const m = medianRow(rows);
    expect(m.hostUsPerStep).toBe(3);
    expect(m.scheduleUs).toBe(30);
    expect(m.packUs).toBeNull();
    expect(m.kind).toBe('decode');
  });

  it('reads its options and refuses bad ones', () => {
    expect(overheadSettings({})).toMatchObject({ batches: [1, 16, 64, 256], steps: 16, warm: 2, repeats: 3, mixed: true, mixedDecodes: 63, mixedChunk: 128, temperature: 0 });
    expect(overheadSettings({ batches: '2,8', mixed: 'off', temperature: '0.7' })).toMatchObject({ batches: [2, 8], mixed: false, temperature: 0.7 });
    expect(() => overheadSettings({ batches: '0' })).toThrow(/--batches/);
    expect(() => overheadSettings({ steps: '1.5' })).toThrow(/--steps/);
    expect(() => overheadSettings({ mixed: 'maybe' })).toThrow(/--mixed/);
    expect(overheadSettings({}).prepareSteps).toBe('on');
    expect(overheadSettings({ 'prepare-steps': 'both' }).prepareSteps).toBe('both');
    expect(() => overheadSettings({ 'prepare-steps': 'sometimes' })).toThrow(/--prepare-steps/);
    expect(overheadSettings({}).fuseRopeKv).toBe('on');
    expect(overheadSettings({ 'fuse-rope-kv': 'both' }).fuseRopeKv).toBe('both');
    expect(() => overheadSettings({ 'fuse-rope-kv': 'yes' })).toThrow(/--fuse-rope-kv must be off, on or both/);
    expect(() => overheadSettings({ bogus: '1' })).toThrow(/unknown option --bogus/);
  });

  it('runs on a fake backend and gives the issue\'s JSON shape', async () => {
    const backend: Backend = {
      name: 'fake',
      realModel: { name: 'fake', maxModelLen: 512, vocabSize: 64 },
      makeExecutor: () => new FakeExecutor({ vocabSize: 64, emitLogits: true }),
      realExecutor: () => new FakeExecutor({ vocabSize: 64, emitLogits: true }),
      describe: () => 'test machine',
      makeClock: () => new VirtualClock(),
    };
    const options = { batches: '1,4', steps: '3', warm: '1', repeats: '2', 'mixed-decodes': '3', 'mixed-chunk': '16', temperature: '0.5' };
    const result = await overheadBench.run({ backend, seed: 1, options, log: () => undefined });
    const json = result.json as { byBatch: OverheadRow[]; mixed: OverheadRow; machine: string; backend: string };
    expect(json.machine).toBe('test machine');
    expect(json.byBatch.map((r) => r.batch)).toEqual([1, 4]);
    for (const r of [...json.byBatch, json.mixed]) {
      for (const k of ['hostUsPerStep', 'scheduleUs', 'sampleUs', 'updateUs', 'recordUs', 'executeUs', 'stepWallUs', 'snapshotUs'] as const) {
        expect(r[k], k).not.toBeNull();
        expect(r[k] as number, k).toBeGreaterThanOrEqual(0);
      }
      expect(r.packUs).toBeNull();
      expect(r.readbackWaitUs).toBeNull();
      expect(r.numSteps).toBe(3);
    }
    expect(json.mixed).toMatchObject({ kind: 'mixed', batch: 4, tokensPerStep: 19, prefillTokensPerStep: 16 });
    expect(result.table[0]).toContain('host');
    expect(result.table).toHaveLength(1 + 3);
    await expect(overheadBench.run({ backend: { ...backend, realExecutor: undefined }, seed: 1, options: {}, log: () => undefined })).rejects.toThrow(/--backend webgpu, cpu or fake/);
  });
});
