/**
 * Arrivals paced by the work done. A generated workload says when each request arrives ("Poisson,
 * 8 per second"), but whether requests pile up depends on how long the steps take: the same
 * arrivals that queue on a software GPU (a step of this model: tens of milliseconds) find an idle
 * engine on a real one (a step: about a millisecond), and a scenario's preemptions, waits and
 * full KV cache never happen. So a workload's arrival times are read on a reference clock that
 * advances by what each step would take on a reference device (REFERENCE_STEP: the stand-in
 * model's cost in the tour tests, the order of the real model's step on a software GPU: its
 * steps measured 3.4x and 4.3x that in two scenarios in Chromium with SwiftShader here), not by the step's measured time:
 * a request due at t ms is submitted once the steps run so far add up to t reference ms. While
 * nothing is in the system the reference clock jumps to the next arrival, as the engine clock does.
 *
 * The run then unfolds step for step alike on any GPU and on a busy or quiet machine. Only the
 * arrival times are the workload's; every latency is still measured on the engine clock (the
 * steps' own measured time), from the moment the request was submitted. `figures` says how the
 * measured time of the steps compares with the reference (the views show it). Pure: no DOM.
 */
import type { StepRecord } from '../engine/engine.ts';

/** A reference step: `baseMs` plus `perTokenMs` for each token computed (prefill, decode and draft rows). */
export const REFERENCE_STEP = { baseMs: 20, perTokenMs: 0.1 } as const;

/** What the step would take on the reference device (0 for a step that computed nothing or failed). */
export function referenceStepMs(step: Pick<StepRecord, 'seqs' | 'failed'>): number {
  if (step.failed !== undefined || step.seqs.length === 0) return 0;
  let tokens = 0;
  for (const s of step.seqs) tokens += s.numPrefillTokens + s.numDecodeTokens;
  return REFERENCE_STEP.baseMs + REFERENCE_STEP.perTokenMs * tokens;
}

/** How the steps of a paced run compare with the reference. */
export interface PacingFigures {
  /** Reference ms of the steps run so far (the clock the arrivals are read on). */
  referenceMs: number;
  /** Measured ms of the same steps (their durationMs, on the engine clock). */
  engineMs: number;
  /** Requests not yet submitted. */
  numHeld: number;
}

export class ArrivalPacer<T> {
  /** The reference clock: reference ms of every step run since the pacer started, plus idle jumps. */
  private nowMs = 0;
  private stepsReferenceMs = 0;
  private stepsEngineMs = 0;
  /** Requests not yet due, by arrival (ties keep their order: the sort is stable). */
  private held: { atMs: number; item: T }[] = [];

  /** Adds requests due `offsetMs` reference ms from now. */
  add(items: readonly { offsetMs: number; item: T }[]): void {
    for (const { offsetMs, item } of items) {
      if (!(offsetMs >= 0 && Number.isFinite(offsetMs))) throw new RangeError(`an arrival offset must be a finite number of ms >= 0, got ${offsetMs}`);
      this.held.push({ atMs: this.nowMs + offsetMs, item });
    }
    this.held.sort((a, b) => a.atMs - b.atMs);
  }

  /** Requests still held. */
  get size(): number {
    return this.held.length;
  }

  /** A step ran: the reference clock moves by what it would take on the reference device. */
  onStep(step: Pick<StepRecord, 'seqs' | 'failed' | 'durationMs'>): void {
    const ms = referenceStepMs(step);
    if (ms === 0) return;
    this.nowMs += ms;
    this.stepsReferenceMs += ms;
    this.stepsEngineMs += step.durationMs;
  }

  /**
   * The requests to submit now: every one the reference clock has reached (delay 0). When the
   * engine has nothing to do (`idle`) and none is due, the next ones too, with `delayMs` until
   * they arrive (the reference clock jumps to them; the caller sets their arrival that far ahead
   * on the engine clock, whose idle wait and jump then take over).
   */
  release(idle: boolean): { item: T; delayMs: number }[] {
    const out: { item: T; delayMs: number }[] = [];
    while (this.held.length > 0 && this.held[0].atMs <= this.nowMs) out.push({ item: this.held.shift()!.item, delayMs: 0 });
    if (out.length === 0 && idle && this.held.length > 0) {
      const atMs = this.held[0].atMs;
      const delayMs = atMs - this.nowMs;
      this.nowMs = atMs;
      while (this.held.length > 0 && this.held[0].atMs <= atMs) out.push({ item: this.held.shift()!.item, delayMs });
    }
    return out;
  }

  /** Empties the pacer; returns what it held (the caller ends those requests). */
  drop(): T[] {
    return this.held.splice(0).map((h) => h.item);
  }

  get figures(): PacingFigures {
    return { referenceMs: this.stepsReferenceMs, engineMs: this.stepsEngineMs, numHeld: this.held.length };
  }
}
