/**
 * Replaying an event log: the inputs (submit, cancel) are fed back before the steps they preceded,
 * the clock is set to each recorded step's start and end, and every sampled token and step
 * duration comes from the log. The replayed engine's event log equals the original one, for runs
 * on real hardware and a real clock too. (On a virtual clock with a deterministic executor, simply
 * running the same inputs again gives the same log; replay also needs no executor.)
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
      outputs.push({ seqId: s.seqId, argmax: tokenId });
    }
    for (const e of this.duringStep.get(plan.stepIndex) ?? []) this.apply(e);
    this.clock.timeMs = rec.timeMs;
    return { outputs, durationMs: rec.durationMs };
  }
  dispose(): void {}
}

/** Re-runs a logged run; returns the engine, whose eventLog should equal `log`. */
export async function replayEventLog(
  log: readonly EngineEvent[],
  options: Pick<EngineOptions, 'config' | 'modelName' | 'checkInvariants'>,
): Promise<Engine> {
  const clock = new ReplayClock();
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
  let engine: Engine | null = null;
  const apply = (e: InputEvent) => {
    clock.timeMs = e.timeMs;
    if (e.type === 'submit') engine!.submit(e.request);
    else if (e.type === 'cancel') engine!.cancel(e.requestId);
    else engine!.reconfigure(e.changes);
  };
  engine = new Engine({
    ...options,
    executor: new ReplayExecutor(steps, clock, duringStep, apply, failedSteps),
    clock,
    recordEvents: true,
    sampleOverride: (stepIndex, seqId) => {
      const hit = steps.get(stepIndex)?.sampled.find(([id]) => id === seqId);
      if (!hit) throw new Error(`replay: step ${stepIndex} recorded no token for seq ${seqId}; the run diverged`);
      return hit[1];
    },
  });
  await engine.init();
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
  const nextStepStartMs = new Array<number>(log.length);
  const inputBeforeNextStep = new Array<boolean>(log.length);
  for (let i = log.length - 1, next = Infinity, input = false; i >= 0; i--) {
    const e = log[i];
    if (e.type === 'step' || e.type === 'stepFailed') {
      next = e.startMs;
      input = false;
    }
    nextStepStartMs[i] = next;
    inputBeforeNextStep[i] = input;
    if (isInputBetweenSteps[i]) input = true;
  }
  let idleStepMs = -Infinity;
  /** An input or a step came after the last idle step replayed (so another one may differ). */
  let changedSinceIdle = true;
  let afterRequeue = false;
  lastStepIndex = 0;
  for (const [i, e] of log.entries()) {
    // Preemptions right after a failed step or a new executor are its requeue, not an idle step's.
    if (e.type !== 'preempted') afterRequeue = e.type === 'stepFailed' || e.type === 'executorReplaced';
    const fromIdleStep =
      e.type === 'queued' || e.type === 'rejected' || (e.type === 'preempted' && !afterRequeue) || (e.type === 'failed' && e.reason === 'timeout');
    if (fromIdleStep && (e.timeMs < nextStepStartMs[i] || inputBeforeNextStep[i]) && (e.timeMs > idleStepMs || changedSinceIdle)) {
      clock.timeMs = e.timeMs;
      const r = await engine.step();
      if (r.kind !== 'idle') throw new Error(`replay: an idle step at ${e.timeMs} ms planned work; the run diverged`);
      idleStepMs = e.timeMs;
      changedSinceIdle = false;
      continue;
    }
    if (e.type === 'step' || e.type === 'stepFailed' || e.type === 'submit' || e.type === 'cancel' || e.type === 'reconfigure' || e.type === 'executorReplaced') {
      changedSinceIdle = true;
    }
    if (e.type === 'step') {
      clock.timeMs = e.startMs;
      const r = await engine.step();
      if (r.kind !== 'ran' || r.step.stepIndex !== e.stepIndex) throw new Error(`replay: step ${e.stepIndex} did not run the same way`);
      lastStepIndex = e.stepIndex;
    } else if (e.type === 'stepFailed') {
      clock.timeMs = e.startMs;
      const failed = await engine.step().then(
        () => false,
        () => true,
      );
      if (!failed) throw new Error(`replay: step ${e.stepIndex} should have failed; the run diverged`);
      lastStepIndex = e.stepIndex;
    } else if (e.type === 'executorReplaced') {
      clock.timeMs = e.timeMs;
      engine.requeueAfterExecutorLoss();
    } else if ((e.type === 'submit' || e.type === 'cancel' || e.type === 'reconfigure') && e.stepIndex <= lastStepIndex) {
      apply(e);
    }
  }
  return engine;
}
