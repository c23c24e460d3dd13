/**
 * Host-time profiling of engine steps (the overhead benchmark, tests). An optional sink handed to
 * the Engine (EngineOptions.profile) and to an executor (GpuExecutorOptions.profile): each times
 * its phases with performance.now() and adds the milliseconds here. Without a sink nothing is
 * timed (one `if` per phase), so it costs nothing when off.
 *
 * Engine phases (Engine.step):
 *   schedule      service rates, admitting arrivals, expiry and Scheduler.schedule
 *   execute       the executor's execute(), as the engine sees it (everything below the line)
 *   sample        the samplers (Sequence.sampler.sample, or the replay override), inside update
 *   update        Scheduler.update without the sampling, and the metrics' observations
 *   record        the step view, the 'step' event, deferred cancels and the step record
 *   invariants    assertInvariants() (when checkInvariants is on)
 *   snapshot      Engine.snapshot(), per call (outside step(); not part of a step's time)
 * Executor phases (GpuExecutor.execute):
 *   pack          kv.checkBlocks, ActivationArena.ensure, GpuSeqTables.update (the changed
 *                 block-table entries' write) and packStep (the plan into the pooled input arrays)
 *   swapOut       swap-outs: copies, their own submit and the wait for their readback
 *   upload        swap-in writes, ActivationArena.upload (the step inputs' one write)
 *   encode        beginStep, the forward program (recorded on a step shape's first use, then
 *                 replayed), the readback copies, resolving the timestamps, finish()
 *                 (a step encoded ahead, when it is this one: only looking it up)
 *   submit        the queue.submit() call
 *   prepare       after the submit, while the GPU runs the step: encoding the next step ahead
 *                 (decode steps: the same shape again; GpuExecutor.prepareNext)
 *   readbackWait  from the wait for the readbacks (after prepare) until they (and the
 *                 timestamps) are mapped and copied out
 *   output        the read-back argmax/logits turned into SeqOutputs
 *   gpu           GPU time from timestamp queries (not host time; only where the device has them)
 *   submitRunDelay   of submit, the time the thread waited for a CPU (run-queue delay, see below)
 *   readbackRunDelay of readbackWait, the same
 *
 * Run-queue delay: time a thread was ready to run but waited for a CPU (Linux's schedstat
 * run_delay). Where the sink can read it (StepProfile's `runDelayMs`, given by a Node benchmark),
 * the GPU executor reads it around queue.submit() and the readback wait; the overhead benchmark
 * reads it around each step, so a step's host phases can be told apart from the time the host
 * thread was descheduled (on SwiftShader the emulated GPU's threads, woken by the submit, take the
 * CPU from it; on a shared machine, other processes).
 */

export const ENGINE_PHASES = ['schedule', 'execute', 'sample', 'update', 'record', 'invariants', 'snapshot'] as const;
export const EXECUTOR_PHASES = ['pack', 'swapOut', 'upload', 'encode', 'submit', 'prepare', 'readbackWait', 'output', 'gpu', 'submitRunDelay', 'readbackRunDelay'] as const;

export type EnginePhase = (typeof ENGINE_PHASES)[number];
export type ExecutorPhase = (typeof EXECUTOR_PHASES)[number];
export type ProfilePhase = EnginePhase | ExecutorPhase;

/** What the engine and executors write to: milliseconds per phase. */
export interface ProfileSink {
  add(phase: ProfilePhase, ms: number): void;
  /** One engine step ran (the engine calls this once per step that reached the executor). */
  countStep(): void;
  /**
   * This thread's run-queue delay so far, in ms (a cumulative counter: only differences count);
   * absent where the platform has no such counter (browsers, non-Linux).
   */
  readonly runDelayMs?: () => number;
}

/** A ProfileSink that sums: total milliseconds and calls per phase, and the steps that ran. */
export class StepProfile implements ProfileSink {
  readonly totalMs = {} as Record<ProfilePhase, number>;
  readonly calls = {} as Record<ProfilePhase, number>;
  numSteps = 0;

  /** `runDelayMs`: the thread's cumulative run-queue delay (see ProfileSink), where it can be read. */
  constructor(readonly runDelayMs?: () => number) {
    this.reset();
  }

  add(phase: ProfilePhase, ms: number): void {
    this.totalMs[phase] += ms;
    this.calls[phase]++;
  }

  countStep(): void {
    this.numSteps++;
  }

  /** Forgets everything (e.g. after warm-up steps). */
  reset(): void {
    for (const p of [...ENGINE_PHASES, ...EXECUTOR_PHASES]) {
      this.totalMs[p] = 0;
      this.calls[p] = 0;
    }
    this.numSteps = 0;
  }

  /** Mean microseconds per step of a phase (0 before any step). */
  usPerStep(phase: ProfilePhase): number {
    return this.numSteps > 0 ? (this.totalMs[phase] * 1000) / this.numSteps : 0;
  }

  /** Mean microseconds per call of a phase (null when it was never called). */
  usPerCall(phase: ProfilePhase): number | null {
    return this.calls[phase] > 0 ? (this.totalMs[phase] * 1000) / this.calls[phase] : null;
  }

  /** A copy of the totals (to diff around one step). */
  totals(): Record<ProfilePhase, number> {
    return { ...this.totalMs };
  }
}
