/**
 * Replaying an event log: the inputs (submit, cancel) are fed back before the steps they preceded,
 * the clock is set to each recorded step's start and end, and every sampled token and step
 * duration comes from the log. The replayed engine's event log equals the original one, for runs
 * on real hardware and a real clock too. (On a virtual clock with a deterministic executor, simply
 * running the same inputs again gives the same log; replay also needs no executor.)
 * EventLogReplay stops part-way and goes on later, so a view can show the run as it was at any step.
 */
import type { Executor, SeqOutput, StepOutput, StepPlan } from './types.ts';
import type { Clock } from './clock.ts';
import { Engine, type EngineOptions } from './engine.ts';
import type { EngineEvent } from './events.ts';

type StepEvent = Extract<EngineEvent, { type: 'step' }>;
type FailedStepEvent = Extract<EngineEvent, { type: 'stepFailed' }>;
type InputEvent = Extract<EngineEvent, { type: 'submit' | 'cancel' | 'reconfigure' }>;

/** A clock the replay sets by hand. */
class ReplayClock implements Clock {
  timeMs = 0;
  nowMs(): number {
    return this.timeMs;
  }
}

class ReplayExecutor implements Executor {
  readonly name = 'replay';
  constructor(
    private readonly steps: Map<number, StepEvent>,
    private readonly clock: ReplayClock,
    /** Inputs that arrived while step k was in flight, applied while the replay's step k is. */
    private readonly duringStep: Map<number, InputEvent[]>,
    private readonly apply: (e: InputEvent) => void,
    private readonly failedSteps: Map<number, FailedStepEvent>,
  ) {}
  configure(): void {}
  async execute(plan: StepPlan): Promise<StepOutput> {
    const failed = this.failedSteps.get(plan.stepIndex);
    if (failed) {
      for (const e of this.duringStep.get(plan.stepIndex) ?? []) this.apply(e);
      this.clock.timeMs = failed.timeMs;
      throw new Error(failed.message); // the recorded failure, verbatim, so the log matches
    }
    const rec = this.steps.get(plan.stepIndex);
    if (!rec) throw new Error(`replay: the log has no step ${plan.stepIndex}`);
    const sampled = new Map(rec.sampled);
    const outputs: SeqOutput[] = [];
    for (const s of plan.seqs) {
      if (!s.needsLogits) continue;
      const tokenId = sampled.get(s.seqId);
      if (tokenId === undefined) throw new Error(`replay: step ${plan.stepIndex} recorded no token for seq ${s.seqId}; the run diverged`);
      const out: SeqOutput = { seqId: s.seqId, argmax: tokenId };
      // Draft rows: the engine's verifyOverride takes the recorded tokens; the rows only keep the shape.
      if ((s.numLogitRows ?? 1) > 1) out.rows = Array.from({ length: s.numLogitRows! }, () => ({ argmax: tokenId }));
      outputs.push(out);
    }
    for (const e of this.duringStep.get(plan.stepIndex) ?? []) this.apply(e);
    this.clock.timeMs = rec.timeMs;
    return { outputs, durationMs: rec.durationMs };
  }
  dispose(): void {}
}

/** What a replay engine is built with (the run's starting config; views may keep more history). */
export type ReplayOptions = Pick<EngineOptions, 'config' | 'modelName' | 'checkInvariants' | 'numStepRecords' | 'numRecentEndedInSnapshot'>;

/**
 * A replay that can stop part-way: advanceTo(i) replays the log's events before index i, and a
 * later call goes on from there (a recording moves forward without starting over). Replaying a
 * whole log with advanceTo(log.length) is replayEventLog().
 */
export class EventLogReplay {
  /** The engine being replayed into; its state is the run's after the events replayed so far. */
  readonly engine: Engine;
  private readonly log: readonly EngineEvent[];
  private readonly clock: ReplayClock;
  private readonly nextStepStartMs: number[];
  private readonly inputBeforeNextStep: boolean[];
  private readonly apply: (e: InputEvent) => void;
  /** Index of the next event to replay. */
  private next = 0;
  private idleStepMs = -Infinity;
  /** An input or a step came after the last idle step replayed (so another one may differ). */
  private changedSinceIdle = true;
  private afterRequeue = false;
  private lastStepIndex = 0;

  private constructor(log: readonly EngineEvent[], options: ReplayOptions) {
    this.log = log;
    const clock = (this.clock = new ReplayClock());
    const steps = new Map<number, StepEvent>();
    const failedSteps = new Map<number, FailedStepEvent>();
    const duringStep = new Map<number, InputEvent[]>();
    let lastStepIndex = 0;
    for (const e of log) {
      if (e.type === 'step' || e.type === 'stepFailed') {
        if (e.type === 'step') steps.set(e.stepIndex, e);
        else failedSteps.set(e.stepIndex, e);
        lastStepIndex = e.stepIndex;
      } else if ((e.type === 'submit' || e.type === 'cancel' || e.type === 'reconfigure') && e.stepIndex > lastStepIndex) {
        // Logged with the index of a step not finished yet: it came in while that step ran.
        duringStep.set(e.stepIndex, [...(duringStep.get(e.stepIndex) ?? []), e]);
      }
    }
    this.apply = (e: InputEvent) => {
      clock.timeMs = e.timeMs;
      if (e.type === 'submit') this.engine.submit(e.request);
      else if (e.type === 'cancel') this.engine.cancel(e.requestId);
      else this.engine.reconfigure(e.changes);
    };
    this.engine = new Engine({
      ...options,
      executor: new ReplayExecutor(steps, clock, duringStep, this.apply, failedSteps),
      clock,
      recordEvents: true,
      maskOverride: (stepIndex) => steps.get(stepIndex)?.masks,
      sampleOverride: (stepIndex, seqId) => {
        const hit = steps.get(stepIndex)?.sampled.find(([id]) => id === seqId);
        if (!hit) throw new Error(`replay: step ${stepIndex} recorded no token for seq ${seqId}; the run diverged`);
        return hit[1];
      },
      verifyOverride: (stepIndex, seqId) => {
        const rec = steps.get(stepIndex);
        const draft = rec?.drafts?.find(([id]) => id === seqId);
        if (!rec || !draft) throw new Error(`replay: step ${stepIndex} recorded no draft verification for seq ${seqId}; the run diverged`);
        return { tokens: rec.sampled.filter(([id]) => id === seqId).map(([, t]) => t), numAccepted: draft[2] };
      },
    });
    // Admission and timeouts also run in steps that plan nothing, and those are not logged as
    // steps. An event of such an idle step comes before the next logged step's start, or before
    // an input that precedes the next logged step (an idle step at the very time a step starts).
    // Inputs given between steps (not while one was in flight: those carry the next step's index).
    const isInputBetweenSteps = new Array<boolean>(log.length).fill(false);
    for (let i = 0, last = 0; i < log.length; i++) {
      const e = log[i];
      if (e.type === 'step' || e.type === 'stepFailed') last = e.stepIndex;
      else if ((e.type === 'submit' || e.type === 'cancel' || e.type === 'reconfigure') && e.stepIndex <= last) isInputBetweenSteps[i] = true;
    }
    this.nextStepStartMs = new Array<number>(log.length);
    this.inputBeforeNextStep = new Array<boolean>(log.length);
    for (let i = log.length - 1, next = Infinity, input = false; i >= 0; i--) {
      const e = log[i];
      if (e.type === 'step' || e.type === 'stepFailed') {
        next = e.startMs;
        input = false;
      }
      this.nextStepStartMs[i] = next;
      this.inputBeforeNextStep[i] = input;
      if (isInputBetweenSteps[i]) input = true;
    }
  }

  /** A replay of `log`, positioned before its first event. */
  static async start(log: readonly EngineEvent[], options: ReplayOptions): Promise<EventLogReplay> {
    const replay = new EventLogReplay(log, options);
    await replay.engine.init();
    return replay;
  }

  /** Index of the next event to replay (log.length once the whole log is replayed). */
  get position(): number {
    return this.next;
  }

  /** Replays the events from the current position up to (not including) index `end`. */
  async advanceTo(end: number): Promise<void> {
    const { engine, clock, log } = this;
    end = Math.min(end, log.length);
    for (; this.next < end; this.next++) {
      const i = this.next;
      const e = log[i];
      // Preemptions right after a failed step or a new executor are its requeue, not an idle step's.
      if (e.type !== 'preempted') this.afterRequeue = e.type === 'stepFailed' || e.type === 'executorReplaced';
      const fromIdleStep =
        e.type === 'queued' || e.type === 'rejected' || (e.type === 'preempted' && !this.afterRequeue) || (e.type === 'failed' && e.reason === 'timeout');
      if (fromIdleStep && (e.timeMs < this.nextStepStartMs[i] || this.inputBeforeNextStep[i]) && (e.timeMs > this.idleStepMs || this.changedSinceIdle)) {
        clock.timeMs = e.timeMs;
        const r = await engine.step();
        if (r.kind !== 'idle') throw new Error(`replay: an idle step at ${e.timeMs} ms planned work; the run diverged`);
        this.idleStepMs = e.timeMs;
        this.changedSinceIdle = false;
        continue;
      }
      if (e.type === 'step' || e.type === 'stepFailed' || e.type === 'submit' || e.type === 'cancel' || e.type === 'reconfigure' || e.type === 'executorReplaced') {
        this.changedSinceIdle = true;
      }
      if (e.type === 'step') {
        clock.timeMs = e.startMs;
        const r = await engine.step();
        if (r.kind !== 'ran' || r.step.stepIndex !== e.stepIndex) throw new Error(`replay: step ${e.stepIndex} did not run the same way`);
        this.lastStepIndex = e.stepIndex;
      } else if (e.type === 'stepFailed') {
        clock.timeMs = e.startMs;
        const failed = await engine.step().then(
          () => false,
          () => true,
        );
        if (!failed) throw new Error(`replay: step ${e.stepIndex} should have failed; the run diverged`);
        this.lastStepIndex = e.stepIndex;
      } else if (e.type === 'executorReplaced') {
        clock.timeMs = e.timeMs;
        engine.requeueAfterExecutorLoss();
      } else if (e.type === 'adapterRegistered') {
        // The name, rank and scale: enough to admit and schedule its requests (tokens come from the log).
        clock.timeMs = e.timeMs;
        engine.registerAdapter(e.adapter);
      } else if ((e.type === 'submit' || e.type === 'cancel' || e.type === 'reconfigure') && e.stepIndex <= this.lastStepIndex) {
        this.apply(e);
      }
    }
  }
}

/** Re-runs a logged run; returns the engine, whose eventLog should equal `log`. */
export async function replayEventLog(log: readonly EngineEvent[], options: ReplayOptions): Promise<Engine> {
  const replay = await EventLogReplay.start(log, options);
  await replay.advanceTo(log.length);
  return replay.engine;
}
