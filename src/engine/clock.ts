/**
 * Injectable clocks (milliseconds). The GPU engine runs on real time; the simulator and tests run
 * on a VirtualClock that the engine advances by each step's StepOutput.durationMs.
 */

export interface Clock {
  nowMs(): number;
}

/** Time that moves only when told to. */
export class VirtualClock implements Clock {
  private timeMs: number;
  constructor(startMs = 0) {
    this.timeMs = startMs;
  }
  nowMs(): number {
    return this.timeMs;
  }
  advance(durationMs: number): void {
    if (!(durationMs >= 0)) throw new RangeError(`a clock cannot go back (advance by ${durationMs} ms)`);
    this.timeMs += durationMs;
  }
  /** Jumps forward to timeMs (no-op if it is in the past). */
  advanceTo(timeMs: number): void {
    if (timeMs > this.timeMs) this.timeMs = timeMs;
  }
}

/** performance.now(), relative to construction. */
export class RealClock implements Clock {
  private readonly originMs = performance.now();
  nowMs(): number {
    return performance.now() - this.originMs;
  }
}

export function isVirtualClock(clock: Clock): clock is VirtualClock {
  return clock instanceof VirtualClock;
}
