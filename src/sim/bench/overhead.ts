/**
 * `bench overhead --backend webgpu|cpu|fake`: the host time of one engine step, split by phase
 * (issue 16, "Never let the GPU wait"). The engine and the executor time their phases into a
 * StepProfile (src/engine/profile.ts); this benchmark drives the real Engine through steady
 * states and reads the profile after every step:
 *
 *   decode at batch 1, 16, 64, 256   every sequence decoding one token per step (--batches)
 *   mixed                            one prefill chunk (--mixed-chunk, 128 tokens) + --mixed-decodes
 *                                    (63) decodes per step
 *
 * Per step: the engine's serving core (schedule = service rates + admission + expiry + schedule;
 * sample; update = Scheduler.update without the sampling + metrics; record = step view, event,
 * step record), the executor's host side (pack, upload, encode, submit, output: GpuExecutor
 * only), the readback wait (submit until the results are mapped), and `other` (the rest of the
 * step's wall time: awaits, microtask hops, the executor's own checks). hostUsPerStep is the
 * step's wall time minus what is not host work: the readback wait (and swap-out waits) on the
 * GPU; the whole execute() on the CPU reference and the fake executor, whose execute is the
 * model (or nothing) rather than host overhead. Engine.snapshot() is called once after every
 * step, as the worker's view pulls do at most, and timed per call (not part of a step).
 *
 * Each configuration is measured in --repeats windows of --steps steps (after --warm steps). In
 * a window each phase is its median over the steps (a GC pause or a busy neighbour on a shared
 * machine lands in one phase of one step instead of being spread over all) and the totals are
 * the sums of those medians (the plain means are kept as hostUsPerStepMean and stepWallUsMean);
 * the row is the median over the windows.
 *
 * Run-queue delay (Linux, where the backend can read it: Backend.threadRunDelayMs): the time the
 * engine's thread was ready to run but waited for a CPU, read around each step and, by the GPU
 * executor, around queue.submit() and the readback wait. hostRunDelayUs is the part of it that
 * fell in the step's host time (the step's less the readback wait's), submitRunDelayUs the part
 * inside queue.submit(): on SwiftShader the submit wakes the emulated GPU's threads, which take
 * the CPU from the host thread (on a 2-core machine, for up to a scheduler slice), and on a shared
 * machine other processes do the same anywhere. hostCpuUsPerStep = each step's host time less its
 * run-queue delay, the median over the steps (robust where hostRunDelayUs, a median of its own,
 * is as large as host time itself): the host work, as a thread with a CPU of its own would spend
 * it. Timing is
 * performance.now(): each timed phase costs one call (its price is measured and reported),
 * sampling two per sampled token.
 */
import { VirtualClock } from '../../engine/clock.ts';
import { Engine, type StepRecord } from '../../engine/engine.ts';
import { StepProfile, type ProfilePhase } from '../../engine/profile.ts';
import { formatNum } from './format.ts';
import type { Backend, BenchCommand, BenchContext } from './types.ts';

export interface OverheadRow {
  kind: 'decode' | 'mixed';
  /** Sequences per step. */
  batch: number;
  tokensPerStep: number;
  prefillTokensPerStep: number;
  numSteps: number;
  /**
   * Host time per step: a step's wall time less its readback wait (GPU) or less execute() (cpu,
   * fake), as the sum of its phases' medians (engineUs + executorHostUs + otherUs).
   */
  hostUsPerStep: number;
  /** The serving core: schedule + sample + update + record. */
  engineUs: number;
  /** GpuExecutor's host side: pack + upload + encode + submit + prepare + output (null for other executors). */
  executorHostUs: number | null;
  /**
   * The part of executorHostUs the GPU waits for, between the readback of one step and the
   * submit of the next: executorHostUs less prepareUs (null for other executors).
   */
  exposedHostUs: number | null;
  /** Whether the GpuExecutor encoded decode steps ahead (null for other executors). */
  prepareSteps: boolean | null;
  /** Of the measured steps, the share that ran a step encoded ahead (null for other executors). */
  preparedUsedShare: number | null;
  scheduleUs: number;
  packUs: number | null;
  uploadUs: number | null;
  encodeUs: number | null;
  submitUs: number | null;
  /**
   * After the submit, while the GPU runs the step: the next step encoded ahead (GpuExecutor's
   * prepareNext; host work, counted in executorHostUs, done while the GPU is busy).
   */
  prepareUs: number | null;
  outputUs: number | null;
  sampleUs: number;
  updateUs: number;
  recordUs: number;
  /** hostUsPerStep minus the phases above. */
  otherUs: number;
  /** submit() until the readbacks are mapped (GPU); null for other executors. */
  readbackWaitUs: number | null;
  /** The whole execute() as the engine sees it. */
  executeUs: number;
  /** GPU time from timestamp queries, where the device has them. */
  gpuTimeUs: number | null;
  /** Engine.snapshot(), per call. */
  snapshotUs: number | null;
  stepWallUs: number;
  /** Means over the steps (the other per-step fields are medians): GC pauses and interruptions included. */
  hostUsPerStepMean: number;
  stepWallUsMean: number;
  /** performance.now() calls the profiling itself made per step, times their measured price. */
  profilerUs: number;
  /**
   * Of hostUsPerStep, the time the thread waited for a CPU (run-queue delay; GPU executor on
   * Linux only, else null), and of that, the part inside queue.submit() (also in submitUs).
   */
  hostRunDelayUs: number | null;
  submitRunDelayUs: number | null;
  /** Each step's host time less its run-queue delay, the median over the steps (null where the delay is not known). */
  hostCpuUsPerStep: number | null;
}

export interface OverheadSettings {
  batches: number[];
  steps: number;
  warm: number;
  repeats: number;
  promptTokens: number;
  temperature: number;
  mixed: boolean;
  mixedDecodes: number;
  mixedChunk: number;
  snapshot: boolean;
  /**
   * The engine's asyncScheduling for the decode rows: off (default), on, or both (each decode row
   * measured off, then on, with the on/off ratios of step wall time and tok/s).
   */
  asyncScheduling: 'off' | 'on' | 'both';
  /**
   * GpuExecutor's prepareSteps (encoding a decode step's successor ahead, while the GPU runs it)
   * for the decode rows: on (default), off, or both (each decode row measured on, then off).
   */
  prepareSteps: 'off' | 'on' | 'both';
  /**
   * GpuExecutor's fuseRopeKv (a decode step's rope_kv_write done inside paged_attention, one
   * dispatch fewer per layer) for the decode rows: on (default), off, or both (each decode row
   * measured on, then off, with the on/off ratios of executor host time and GPU time).
   */
  fuseRopeKv: 'off' | 'on' | 'both';
}

function intList(name: string, raw: string | undefined, fallback: number[]): number[] {
  if (raw === undefined) return fallback;
  const v = raw.split(',').map((s) => Number(s.trim()));
  if (v.length === 0 || v.some((n) => !Number.isInteger(n) || n < 1 || n > 4096)) {
    throw new Error(`overhead: --${name} must be integers from 1 to 4096 separated by commas, got ${JSON.stringify(raw)}`);
  }
  return v;
}

function num(name: string, raw: string | undefined, fallback: number, min: number, max: number, integer = true): number {
  if (raw === undefined) return fallback;
  const v = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(v) || (integer && !Number.isInteger(v)) || v < min || v > max) {
    throw new Error(`overhead: --${name} must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max}, got ${JSON.stringify(raw)}`);
  }
  return v;
}

function flag(name: string, raw: string | undefined, fallback: boolean): boolean {
  if (raw === undefined) return fallback;
  if (raw === 'on' || raw === 'true' || raw === '1') return true;
  if (raw === 'off' || raw === 'false' || raw === '0') return false;
  throw new Error(`overhead: --${name} must be on or off, got ${JSON.stringify(raw)}`);
}

/** An option measured off, on or both ways (--async-scheduling, --prepare-steps, --fuse-rope-kv). */
function offOnBoth(name: string, raw: string | undefined, fallback: 'off' | 'on'): 'off' | 'on' | 'both' {
  const v = raw ?? fallback;
  if (v !== 'off' && v !== 'on' && v !== 'both') throw new Error(`overhead: --${name} must be off, on or both, got ${JSON.stringify(v)}`);
  return v;
}

export function overheadSettings(options: Record<string, string>): OverheadSettings {
  const known = new Set(['batches', 'steps', 'warm', 'repeats', 'prompt', 'temperature', 'mixed', 'mixed-decodes', 'mixed-chunk', 'snapshot', 'async-scheduling', 'prepare-steps', 'fuse-rope-kv']);
  const prepareSteps = offOnBoth('prepare-steps', options['prepare-steps'], 'on');
  const fuseRopeKv = offOnBoth('fuse-rope-kv', options['fuse-rope-kv'], 'on');
  const asyncScheduling = offOnBoth('async-scheduling', options['async-scheduling'], 'off');
  for (const key of Object.keys(options)) if (!known.has(key)) throw new Error(`overhead: unknown option --${key} (known: ${[...known].map((k) => `--${k}`).join(', ')})`);
  return {
    batches: intList('batches', options.batches, [1, 16, 64, 256]),
    steps: num('steps', options.steps, 16, 1, 10_000),
    warm: num('warm', options.warm, 2, 0, 10_000),
    repeats: num('repeats', options.repeats, 3, 1, 100),
    promptTokens: num('prompt', options.prompt, 16, 1, 100_000),
    temperature: num('temperature', options.temperature, 0, 0, 100, false),
    mixed: flag('mixed', options.mixed, true),
    mixedDecodes: num('mixed-decodes', options['mixed-decodes'], 63, 0, 4096),
    mixedChunk: num('mixed-chunk', options['mixed-chunk'], 128, 1, 100_000),
    snapshot: flag('snapshot', options.snapshot, true),
    asyncScheduling,
    prepareSteps,
    fuseRopeKv,
  };
}

/** Nanoseconds one performance.now() call takes here (the fastest of a few batches: the machine may be busy). */
export function timerNsPerCall(): number {
  const runs: number[] = [];
  let sink = 0;
  for (let r = 0; r < 9; r++) {
    const n = 10_000;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) sink += performance.now();
    runs.push(((performance.now() - t0) * 1e6) / n);
  }
  if (sink === -1) runs.push(0); // keeps the loop from being optimised away
  return Math.min(...runs);
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Every field the median over the windows (null where every window has null). */
export function medianRow(rows: readonly OverheadRow[]): OverheadRow {
  const out = { ...rows[0] } as Record<string, unknown>;
  for (const key of Object.keys(out)) {
    const values = rows.map((r) => (r as unknown as Record<string, unknown>)[key]);
    if (values.every((v) => typeof v === 'number')) out[key] = median(values as number[]);
  }
  return out as unknown as OverheadRow;
}

/** What one measured step cost: its wall time and each phase's milliseconds (and its snapshot's). */
export interface StepSample {
  wallMs: number;
  phaseMs: Record<ProfilePhase, number>;
  /** The thread's run-queue delay over the step (null: not readable here). */
  runDelayMs?: number | null;
}

/** The per-step fields of a row, in µs, from one step (null: the executor has no such phase). */
function stepFields(sample: StepSample, gpuExecutor: boolean, hasGpuTime: boolean) {
  const us = (p: ProfilePhase) => sample.phaseMs[p] * 1000;
  const stepWallUs = sample.wallMs * 1000;
  const scheduleUs = us('schedule');
  const sampleUs = us('sample');
  const updateUs = us('update');
  const recordUs = us('record') + us('invariants');
  const engineUs = scheduleUs + sampleUs + updateUs + recordUs;
  const executeUs = us('execute');
  const hostUsPerStep = gpuExecutor ? stepWallUs - us('readbackWait') - us('swapOut') : stepWallUs - executeUs;
  const executorHostUs = gpuExecutor ? us('pack') + us('upload') + us('encode') + us('submit') + us('prepare') + us('output') : null;
  const gpuOnly = (p: ProfilePhase) => (gpuExecutor ? us(p) : null);
  // The step's run-queue delay outside the readback wait (a GPU executor's; elsewhere execute()
  // is not host time and its delay is not told apart).
  const hostRunDelayUs = gpuExecutor && sample.runDelayMs != null ? Math.max(0, sample.runDelayMs * 1000 - us('readbackRunDelay')) : null;
  return {
    hostUsPerStep,
    engineUs,
    executorHostUs,
    scheduleUs,
    packUs: gpuOnly('pack'),
    uploadUs: gpuOnly('upload'),
    encodeUs: gpuOnly('encode'),
    submitUs: gpuOnly('submit'),
    prepareUs: gpuOnly('prepare'),
    outputUs: gpuOnly('output'),
    sampleUs,
    updateUs,
    recordUs,
    otherUs: hostUsPerStep - engineUs - (executorHostUs ?? 0),
    readbackWaitUs: gpuOnly('readbackWait'),
    executeUs,
    gpuTimeUs: hasGpuTime ? us('gpu') : null,
    stepWallUs,
    hostRunDelayUs,
    submitRunDelayUs: hostRunDelayUs === null ? null : us('submitRunDelay'),
    hostCpuUsPerStep: hostRunDelayUs === null ? null : hostUsPerStep - hostRunDelayUs,
  };
}

/**
 * One window's row: every phase is its median over the window's steps (a GC pause, or the
 * thread descheduled on a busy machine, lands in one phase of one step and is left out instead
 * of being spread over the rest), the snapshot's over its calls, and the totals (hostUsPerStep,
 * engineUs, executorHostUs) are the sums of those medians, so a row adds up; hostUsPerStepMean
 * and stepWallUsMean are the plain means over the steps (pauses included).
 * `timedCallsPerStep`: the performance.now() calls profiling made per step (for profilerUs).
 */
export function rowFromSteps(
  samples: readonly StepSample[],
  shape: { kind: 'decode' | 'mixed'; batch: number; tokensPerStep: number; prefillTokensPerStep: number },
  timerNs: number,
  timedCallsPerStep: number,
  prepared: { on: boolean; used: number } | null = null,
): OverheadRow {
  if (samples.length === 0) throw new Error('overhead: no step was measured');
  const gpuExecutor = samples.some((x) => x.phaseMs.submit > 0);
  const hasGpuTime = samples.some((x) => x.phaseMs.gpu > 0);
  const perStep = samples.map((x) => stepFields(x, gpuExecutor, hasGpuTime));
  const field = <K extends keyof (typeof perStep)[0]>(k: K) => {
    const values = perStep.map((f) => f[k]);
    return (values[0] === null ? null : median(values as number[])) as (typeof perStep)[0][K];
  };
  const snapshots = samples.map((x) => x.phaseMs.snapshot * 1000).filter((v) => v > 0);
  const mean = (values: number[]) => values.reduce((a, v) => a + v, 0) / values.length;
  const phases = {
    scheduleUs: field('scheduleUs'),
    packUs: field('packUs'),
    uploadUs: field('uploadUs'),
    encodeUs: field('encodeUs'),
    submitUs: field('submitUs'),
    prepareUs: field('prepareUs'),
    outputUs: field('outputUs'),
    sampleUs: field('sampleUs'),
    updateUs: field('updateUs'),
    recordUs: field('recordUs'),
    otherUs: field('otherUs'),
  };
  const hostRunDelayUs = field('hostRunDelayUs');
  // The totals are sums of the phases' medians, so that a row adds up.
  const engineUs = phases.scheduleUs + phases.sampleUs + phases.updateUs + phases.recordUs;
  const executorHostUs = gpuExecutor ? phases.packUs! + phases.uploadUs! + phases.encodeUs! + phases.submitUs! + phases.prepareUs! + phases.outputUs! : null;
  return {
    ...shape,
    numSteps: samples.length,
    hostUsPerStep: engineUs + (executorHostUs ?? 0) + phases.otherUs,
    engineUs,
    executorHostUs,
    ...phases,
    readbackWaitUs: field('readbackWaitUs'),
    executeUs: field('executeUs'),
    gpuTimeUs: field('gpuTimeUs'),
    snapshotUs: snapshots.length > 0 ? median(snapshots) : null,
    stepWallUs: field('stepWallUs'),
    hostUsPerStepMean: mean(perStep.map((f) => f.hostUsPerStep)),
    stepWallUsMean: mean(perStep.map((f) => f.stepWallUs)),
    profilerUs: (timedCallsPerStep * timerNs) / 1000,
    hostRunDelayUs,
    submitRunDelayUs: field('submitRunDelayUs'),
    hostCpuUsPerStep: field('hostCpuUsPerStep'),
    exposedHostUs: executorHostUs === null ? null : executorHostUs - phases.prepareUs!,
    prepareSteps: gpuExecutor && prepared ? prepared.on : null,
    preparedUsedShare: gpuExecutor && prepared ? prepared.used / samples.length : null,
  };
}

/** A prompt of `length` tokens, different for each `k`: BOS then ids from 3 up. */
function prompt(k: number, length: number, vocabSize: number): number[] {
  return [1, ...Array.from({ length: length - 1 }, (_, i) => 3 + ((k * 31 + i * 7) % (vocabSize - 3)))];
}

interface Setup {
  backend: Backend;
  settings: OverheadSettings;
  maxModelLen: number;
  vocabSize: number;
  timerNs: number;
  log: (line: string) => void;
}

/** Builds an engine with a profile on a fresh executor of the backend (warmed up where it can be). */
async function profiledEngine(setup: Setup, config: { numGpuBlocks: number; maxNumSeqs: number; maxNumBatchedTokens: number; asyncScheduling?: boolean }, prepareSteps = true, fuseRopeKv = setup.settings.fuseRopeKv !== 'off') {
  const profile = new StepProfile(setup.backend.threadRunDelayMs);
  const executor = await setup.backend.realExecutor!({ profile, prepareSteps, fuseRopeKv });
  const engine = new Engine({
    executor,
    // As the worker's host runs it: a virtual engine clock, events recorded, no invariant checks.
    clock: new VirtualClock(),
    checkInvariants: false,
    profile,
    vocabSize: setup.vocabSize,
    config: { blockSize: 16, numCpuBlocks: 0, maxModelLen: setup.maxModelLen, enablePrefixCaching: false, enableChunkedPrefill: true, ...config },
  });
  await engine.init();
  if (executor.warmUp) await executor.warmUp({ maxTokens: config.maxNumBatchedTokens, maxSeqs: config.maxNumSeqs });
  await executor.warmedUp;
  return { engine, executor, profile };
}

/**
 * Runs `numSteps` steps, each checked by `expect` (a reason when the step is not the one to
 * measure), with a snapshot after each when asked; returns what each step cost.
 */
async function runSteps(engine: Engine, profile: StepProfile, numSteps: number, expect: (r: StepRecord) => string | null, snapshot: boolean): Promise<StepSample[]> {
  const samples: StepSample[] = [];
  for (let i = 0; i < numSteps; i++) {
    const since = engine.stepIndex;
    const before = profile.totals();
    const delay0 = profile.runDelayMs?.();
    const t0 = performance.now();
    const r = await engine.step();
    const wallMs = performance.now() - t0;
    const runDelayMs = delay0 === undefined ? null : profile.runDelayMs!() - delay0;
    if (r.kind !== 'ran') throw new Error('overhead: the engine went idle while measuring');
    const why = expect(r.step);
    if (why) throw new Error(`overhead: step ${r.step.stepIndex} is not the step being measured: ${why}`);
    if (snapshot) engine.snapshot(since);
    const after = profile.totals();
    const phaseMs = {} as Record<ProfilePhase, number>;
    for (const p of Object.keys(after) as ProfilePhase[]) phaseMs[p] = after[p] - before[p];
    samples.push({ wallMs, phaseMs, runDelayMs });
  }
  return samples;
}

function tokens(r: StepRecord): { prefill: number; decode: number } {
  let prefill = 0;
  let decode = 0;
  for (const s of r.seqs) {
    prefill += s.numPrefillTokens;
    decode += s.numDecodeTokens;
  }
  return { prefill, decode };
}

/**
 * performance.now() calls that profiling adds to a step: the engine's start and its schedule,
 * execute, update and record laps (5); GpuExecutor's pack, swapOut, upload and encode laps, the
 * restart after submit() and the output lap (6) and submit()'s start and its five laps (6); two
 * per sampled token; two per snapshot.
 */
function timedCalls(gpu: boolean, sampledPerStep: number, snapshot: boolean): number {
  return 5 + (gpu ? 12 : 0) + 2 * sampledPerStep + (snapshot ? 2 : 0);
}

/** A GpuExecutor's count of steps it ran as encoded ahead (null for other executors). */
function preparedUsed(executor: object): number | null {
  const p = (executor as { preparedSteps?: { used: number } }).preparedSteps;
  return p ? p.used : null;
}

async function measureDecode(setup: Setup, batch: number, asyncScheduling = false, prepareSteps = true): Promise<OverheadRow> {
  return (await measureDecodeVariants(setup, batch, asyncScheduling, prepareSteps, [setup.settings.fuseRopeKv !== 'off']))[0];
}

/**
 * Decode rows of one engine, one per value of the GpuExecutor's fuseRopeKv in `fuse`: with two,
 * the windows alternate between them (on, off, then off, on, ...), so both see the same machine.
 */
async function measureDecodeVariants(setup: Setup, batch: number, asyncScheduling: boolean, prepareSteps: boolean, fuse: readonly boolean[]): Promise<OverheadRow[]> {
  const { settings: s } = setup;
  // Room for every decode plus 256 prompt tokens a step while the batch fills; the first prompts
  // prefilled decode while later ones still prefill, so their contexts need room for those steps.
  const maxNumBatchedTokens = batch + 256;
  const rampSteps = Math.ceil((batch * s.promptTokens) / 256) + 1;
  // With two variants, each window also has the one step that switches to it.
  const windowSteps = fuse.length > 1 ? s.steps + 1 : s.steps;
  const perSeqTokens = s.promptTokens + rampSteps + s.warm + fuse.length * s.repeats * windowSteps + 2;
  if (perSeqTokens > setup.maxModelLen) {
    throw new Error(`overhead: --prompt + --warm + --repeats x --steps and the prefill steps (${perSeqTokens}) must fit the model's ${setup.maxModelLen}-token context`);
  }
  const blocksPerSeq = Math.ceil(perSeqTokens / 16);
  const { engine, executor, profile } = await profiledEngine(setup, { numGpuBlocks: batch * blocksPerSeq + 1, maxNumSeqs: batch, maxNumBatchedTokens, asyncScheduling }, prepareSteps, fuse[0]);
  try {
    for (let b = 0; b < batch; b++) {
      engine.submit({ promptTokenIds: prompt(b, s.promptTokens, setup.vocabSize), maxTokens: perSeqTokens - s.promptTokens, stopTokenIds: [], sampling: { temperature: s.temperature, seed: b + 1 } });
    }
    const pureDecode = (r: StepRecord): string | null => {
      const t = tokens(r);
      return r.seqs.length === batch && t.prefill === 0 && t.decode === batch ? null : `${r.seqs.length} sequences, ${t.prefill} prefill + ${t.decode} decode tokens (want ${batch} decodes)`;
    };
    // Prefill every prompt, until a step decodes the whole batch.
    for (let i = 0; ; i++) {
      const r = await engine.step();
      if (r.kind === 'ran' && pureDecode(r.step) === null) break;
      if (i > 10_000) throw new Error('overhead: the batch never reached steady decode');
    }
    await runSteps(engine, profile, s.warm, pureDecode, s.snapshot);
    const rows: OverheadRow[][] = fuse.map(() => []);
    const fused = executor as { fuseRopeKv?: boolean };
    for (let k = 0; k < s.repeats; k++) {
      for (let j = 0; j < fuse.length; j++) {
        const v = k % 2 === 0 ? j : fuse.length - 1 - j;
        if (fuse.length > 1 && fused.fuseRopeKv !== undefined && fused.fuseRopeKv !== fuse[v]) {
          fused.fuseRopeKv = fuse[v];
          await runSteps(engine, profile, 1, pureDecode, false); // the step encoded ahead as the other variant is dropped here
        }
        const usedBefore = preparedUsed(executor);
        const samples = await runSteps(engine, profile, s.steps, pureDecode, s.snapshot);
        const usedAfter = preparedUsed(executor);
        const prepared = usedBefore === null || usedAfter === null ? null : { on: prepareSteps, used: usedAfter - usedBefore };
        rows[v].push(rowFromSteps(samples, { kind: 'decode', batch, tokensPerStep: batch, prefillTokensPerStep: 0 }, setup.timerNs, timedCalls(profile.calls.submit > 0, batch, s.snapshot), prepared));
      }
    }
    return rows.map(medianRow);
  } finally {
    executor.dispose();
  }
}

async function measureMixed(setup: Setup): Promise<OverheadRow> {
  const { settings: s } = setup;
  const decodes = s.mixedDecodes;
  const chunk = s.mixedChunk;
  // Each prefill request spans several steps' chunks (its last chunk samples its one token).
  const chunksPerPrompt = Math.max(1, Math.min(3, Math.floor((setup.maxModelLen - 1) / chunk)));
  const prefillLen = chunksPerPrompt * chunk;
  if (prefillLen >= setup.maxModelLen) throw new Error(`overhead: --mixed-chunk ${chunk} must be below the model's ${setup.maxModelLen}-token context`);
  const measured = s.warm + s.repeats * s.steps;
  const perSeqTokens = s.promptTokens + measured + 2 + 64; // decoders; a few steps to settle
  if (perSeqTokens > setup.maxModelLen) throw new Error(`overhead: the mixed step's decoders need ${perSeqTokens} positions, over the model's ${setup.maxModelLen}`);
  const blocksPerSeq = Math.ceil(perSeqTokens / 16);
  const { engine, executor, profile } = await profiledEngine(setup, {
    numGpuBlocks: decodes * blocksPerSeq + Math.ceil((prefillLen + 1) / 16) + 1,
    maxNumSeqs: decodes + 1,
    maxNumBatchedTokens: decodes + chunk,
  });
  try {
    for (let b = 0; b < decodes; b++) {
      engine.submit({ promptTokenIds: prompt(b, s.promptTokens, setup.vocabSize), maxTokens: perSeqTokens - s.promptTokens, stopTokenIds: [], sampling: { temperature: s.temperature, seed: b + 1 } });
    }
    for (let i = 0; decodes > 0; i++) {
      const r = await engine.step();
      if (r.kind === 'ran' && r.step.seqs.length === decodes && tokens(r.step).prefill === 0) break;
      if (i > 10_000) throw new Error('overhead: the decoders never reached steady decode');
    }
    // Prefill-only requests (one output token), one after another: every step is one chunk of
    // one of them plus every decode.
    const numPrefills = Math.ceil(measured / chunksPerPrompt) + 2;
    for (let k = 0; k < numPrefills; k++) {
      engine.submit({ promptTokenIds: prompt(10_000 + k, prefillLen, setup.vocabSize), maxTokens: 1, stopTokenIds: [], sampling: { temperature: s.temperature, seed: k + 1 } });
    }
    const mixedStep = (r: StepRecord): string | null => {
      const t = tokens(r);
      return r.seqs.length === decodes + 1 && t.prefill === chunk && t.decode === decodes
        ? null
        : `${r.seqs.length} sequences, ${t.prefill} prefill + ${t.decode} decode tokens (want ${chunk} + ${decodes})`;
    };
    await runSteps(engine, profile, s.warm, mixedStep, s.snapshot);
    const rows: OverheadRow[] = [];
    for (let k = 0; k < s.repeats; k++) {
      const usedBefore = preparedUsed(executor);
      const samples = await runSteps(engine, profile, s.steps, mixedStep, s.snapshot);
      // A prefill request samples on its last chunk only.
      const sampled = decodes + 1 / chunksPerPrompt;
      const usedAfter = preparedUsed(executor);
      const prepared = usedBefore === null || usedAfter === null ? null : { on: true, used: usedAfter - usedBefore };
      rows.push(rowFromSteps(samples, { kind: 'mixed', batch: decodes + 1, tokensPerStep: decodes + chunk, prefillTokensPerStep: chunk }, setup.timerNs, timedCalls(profile.calls.submit > 0, sampled, s.snapshot), prepared));
    }
    return medianRow(rows);
  } finally {
    executor.dispose();
  }
}

const us = (v: number | null): string => (v === null ? '-' : formatNum(v, 0));

function table(rows: OverheadRow[]): string[][] {
  return [
    ['step', 'seqs', 'tokens', 'host', 'host mean', 'schedule', 'pack', 'upload', 'encode', 'submit', 'prepare', 'output', 'sample', 'update', 'record', 'other', 'executor host', 'exposed', 'ahead', 'readback wait', 'execute', 'GPU', 'snapshot', 'wall', 'run delay', 'in submit', 'host cpu'],
    ...rows.map((r) => [
      r.kind,
      String(r.batch),
      String(r.tokensPerStep),
      us(r.hostUsPerStep),
      us(r.hostUsPerStepMean),
      us(r.scheduleUs),
      us(r.packUs),
      us(r.uploadUs),
      us(r.encodeUs),
      us(r.submitUs),
      us(r.prepareUs),
      us(r.outputUs),
      us(r.sampleUs),
      us(r.updateUs),
      us(r.recordUs),
      us(r.otherUs),
      us(r.executorHostUs),
      us(r.exposedHostUs),
      r.preparedUsedShare === null ? '-' : `${formatNum(r.preparedUsedShare * 100, 0)}%`,
      us(r.readbackWaitUs),
      us(r.executeUs),
      us(r.gpuTimeUs),
      us(r.snapshotUs),
      us(r.stepWallUs),
      us(r.hostRunDelayUs),
      us(r.submitRunDelayUs),
      us(r.hostCpuUsPerStep),
    ]),
  ];
}

export const overheadBench: BenchCommand = {
  name: 'overhead',
  description: 'host time per engine step by phase (schedule, pack, upload, encode, sample, update...) at batch 1/16/64/256 and a mixed step (webgpu by default, cpu or fake)',
  defaultBackend: 'webgpu',
  async run(ctx: BenchContext) {
    const backend = ctx.backend;
    if (!backend.realExecutor || !backend.realModel) {
      throw new Error(`overhead: the ${backend.name} backend runs no real executor: use --backend webgpu, cpu or fake`);
    }
    const settings = overheadSettings(ctx.options);
    const setup: Setup = {
      backend,
      settings,
      maxModelLen: backend.realModel.maxModelLen,
      vocabSize: backend.realModel.vocabSize ?? 512,
      timerNs: timerNsPerCall(),
      log: ctx.log,
    };
    const machine = backend.describe ? await backend.describe() : backend.name;
    ctx.log(`overhead: ${backend.realModel.name} on ${backend.name} (${machine}); ${settings.repeats} x ${settings.steps} steps per row after ${settings.warm} warm-up steps, temperature ${settings.temperature}`);
    const byBatch: OverheadRow[] = [];
    const asyncByBatch: OverheadRow[] = [];
    const notPreparedByBatch: OverheadRow[] = [];
    const unfusedByBatch: OverheadRow[] = [];
    for (const batch of settings.batches) {
      if (settings.asyncScheduling !== 'on') {
        if (settings.prepareSteps !== 'off') {
          ctx.log(`overhead: decode batch ${batch}...`);
          if (settings.fuseRopeKv === 'both') {
            ctx.log(`overhead: decode batch ${batch}, rope_kv_write fused into paged_attention and not, windows alternating...`);
            const [on, off] = await measureDecodeVariants(setup, batch, false, true, [true, false]);
            byBatch.push(on);
            unfusedByBatch.push(off);
          } else {
            byBatch.push(await measureDecode(setup, batch));
          }
        }
        if (settings.prepareSteps !== 'on') {
          ctx.log(`overhead: decode batch ${batch}, steps not encoded ahead...`);
          (settings.prepareSteps === 'off' ? byBatch : notPreparedByBatch).push(await measureDecode(setup, batch, false, false));
        }
      }
      if (settings.asyncScheduling !== 'off') {
        ctx.log(`overhead: decode batch ${batch}, asyncScheduling on...`);
        asyncByBatch.push(await measureDecode(setup, batch, true));
      }
    }
    // On / off per batch: a step's wall time (its inverse is tok/s: one token per sequence a step).
    const asyncRatios = asyncByBatch.flatMap((on) => {
      const off = byBatch.find((r) => r.batch === on.batch);
      return off
        ? [{ batch: on.batch, stepWallUs: { off: off.stepWallUs, on: on.stepWallUs }, tokPerSOnOverOff: off.stepWallUs / on.stepWallUs, stepWallOnOverOff: on.stepWallUs / off.stepWallUs }]
        : [];
    });
    let mixed: OverheadRow | null = null;
    if (settings.mixed) {
      ctx.log(`overhead: mixed step (${settings.mixedChunk}-token prefill chunk + ${settings.mixedDecodes} decodes)...`);
      mixed = await measureMixed(setup);
    }
    const rows = [...byBatch, ...(mixed ? [mixed] : []), ...notPreparedByBatch, ...unfusedByBatch, ...asyncByBatch];
    // Fused / not, per batch: the executor's host time (fewer dispatches to encode and submit) and the GPU's.
    const fuseRatios = unfusedByBatch.flatMap((off) => {
      const on = byBatch.find((r) => r.batch === off.batch);
      return on && on.executorHostUs !== null && off.executorHostUs !== null
        ? [{ batch: off.batch, executorHostUs: { off: off.executorHostUs, on: on.executorHostUs }, prepareUs: { off: off.prepareUs, on: on.prepareUs }, submitUs: { off: off.submitUs, on: on.submitUs }, gpuTimeUs: { off: off.gpuTimeUs, on: on.gpuTimeUs }, executorHostOnOverOff: on.executorHostUs / off.executorHostUs, gpuTimeOnOverOff: on.gpuTimeUs !== null && off.gpuTimeUs !== null ? on.gpuTimeUs / off.gpuTimeUs : null }]
        : [];
    });
    // Encoded ahead / not, per batch: the executor's host time, and the part of it the GPU waits for.
    const prepareRatios = notPreparedByBatch.flatMap((off) => {
      const on = byBatch.find((r) => r.batch === off.batch);
      return on && on.executorHostUs !== null && off.executorHostUs !== null && on.exposedHostUs !== null && off.exposedHostUs !== null
        ? [{ batch: off.batch, executorHostUs: { off: off.executorHostUs, on: on.executorHostUs }, exposedHostUs: { off: off.exposedHostUs, on: on.exposedHostUs }, exposedOnOverOff: on.exposedHostUs / off.exposedHostUs, executorHostOnOverOff: on.executorHostUs / off.executorHostUs }]
        : [];
    });
    const gpu = rows.some((r) => r.readbackWaitUs !== null);
    const b64 = byBatch.find((r) => r.batch === 64);
    return {
      table: table(rows),
      json: {
        benchmark: 'overhead',
        backend: backend.name,
        model: backend.realModel.name,
        machine,
        date: new Date().toISOString(),
        settings,
        timerNsPerCall: setup.timerNs,
        byBatch,
        mixed,
        ...(asyncByBatch.length > 0 ? { asyncScheduling: { byBatch: asyncByBatch, ratios: asyncRatios } } : {}),
        ...(notPreparedByBatch.length > 0 ? { stepsNotEncodedAhead: { byBatch: notPreparedByBatch, ratios: prepareRatios } } : {}),
        ...(unfusedByBatch.length > 0 ? { ropeKvNotFused: { byBatch: unfusedByBatch, ratios: fuseRatios } } : {}),
      },
      notes: [
        'µs per step (snapshot: per call): each phase the median over a window\'s steps, then over the windows; host = the sum of its phases (' +
          (gpu
            ? 'a step\'s wall time less its readback wait; executor host = pack + upload + encode + submit + prepare + output; prepare = encoding the next decode step ahead, after the submit, while the GPU runs this one; exposed = executor host less prepare, the host work the GPU waits for between steps; ahead = the share of measured steps that ran a step encoded ahead'
            : 'a step\'s wall time less execute(), the model itself') +
          '; other = the rest: awaits, microtask hops, the executor\'s checks); host mean = the plain mean of each step\'s host time, pauses and preemptions included.',
        `profiling cost: performance.now() takes ${formatNum(setup.timerNs, 0)} ns here; about ${formatNum(rows[0].profilerUs, 1)} µs per step at batch ${rows[0].batch} and ${formatNum(rows[rows.length - 1].profilerUs, 1)} µs for the last row are the profiler's own (sample is timed per token)`,
        ...(gpu && rows.every((r) => r.gpuTimeUs === null) ? ['GPU: this device has no timestamp queries (GPU column empty)'] : []),
        ...(b64 && b64.executorHostUs !== null
          ? [`batch 64: executor host ${formatNum(b64.executorHostUs, 0)} µs per step (encode ${us(b64.encodeUs)}, upload ${us(b64.uploadUs)}, pack ${us(b64.packUs)}, submit ${us(b64.submitUs)}, prepare ${us(b64.prepareUs)}, output ${us(b64.outputUs)}); exposed to the GPU ${us(b64.exposedHostUs)}`]
          : []),
        ...(notPreparedByBatch.length > 0
          ? [
              `the ${notPreparedByBatch.length} decode rows after the mixed one run without steps encoded ahead`,
              ...prepareRatios.map((r) => `batch ${r.batch}: encoded ahead on/off: executor host ${us(r.executorHostUs.off)} -> ${us(r.executorHostUs.on)} µs (${formatNum(r.executorHostOnOverOff, 2)}x), exposed to the GPU ${us(r.exposedHostUs.off)} -> ${us(r.exposedHostUs.on)} µs (${formatNum(r.exposedOnOverOff, 2)}x)`),
            ]
          : []),
        ...(unfusedByBatch.length > 0
          ? [
              `the ${unfusedByBatch.length} decode rows after those run with rope_kv_write as its own dispatch (fuseRopeKv off), in the same engine as the fused row of their batch, the windows alternating`,
              ...fuseRatios.map((r) => `batch ${r.batch}: rope_kv_write fused into paged_attention on/off: executor host ${us(r.executorHostUs.off)} -> ${us(r.executorHostUs.on)} µs (${formatNum(r.executorHostOnOverOff, 2)}x; prepare ${us(r.prepareUs.off)} -> ${us(r.prepareUs.on)}, submit ${us(r.submitUs.off)} -> ${us(r.submitUs.on)})${r.gpuTimeOnOverOff !== null ? `, GPU ${us(r.gpuTimeUs.off)} -> ${us(r.gpuTimeUs.on)} µs (${formatNum(r.gpuTimeOnOverOff, 2)}x)` : ''}`),
            ]
          : []),
        ...(rows.some((r) => r.hostRunDelayUs !== null)
          ? ['run delay: of the host time, the thread waited for a CPU this long (Linux run-queue delay, /proc/thread-self/schedstat; "in submit": inside queue.submit(), where SwiftShader\'s threads, woken by the submit, take the CPU); host cpu = each step\'s host less its run delay, the median over the steps']
          : []),
        ...(asyncByBatch.length > 0
          ? [
              `the last ${asyncByBatch.length} decode rows run with asyncScheduling on: step n + 1 is planned and submitted before step n is read, so its readback wait overlaps the next step's host work and "host" (wall - readback wait) is not comparable with the rows above; compare the wall time`,
              ...asyncRatios.map((a) => `batch ${a.batch}: async scheduling on/off step wall ${us(a.stepWallUs.off)} -> ${us(a.stepWallUs.on)} µs (${formatNum(a.stepWallOnOverOff, 2)}x), tok/s ${formatNum(a.tokPerSOnOverOff, 2)}x`),
            ]
          : []),
        `machine: ${machine}`,
      ],
    };
  },
};
