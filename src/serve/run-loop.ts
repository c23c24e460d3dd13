/**
 * The one run loop that drives a real-clock engine: step while there is work, sleep until the
 * next arrival when nothing can run, pause and resume, single steps, slow motion (a least time
 * between steps). Inputs wake it at once. One step at a time, ever: a single step asked for
 * while paused waits for the step in flight, and pause() resolves only once the step in flight
 * has landed, so "paused at step N" is exact and the next single step is N + 1.
 */

export interface RunLoopTarget {
  /** One engine iteration; resolves whether a step ran (false: nothing runnable now). */
  step(): Promise<boolean>;
  /**
   * An iteration asked for explicitly (a single step while paused): unlike step(), it need not
   * wait for anything to be due (default: step()).
   */
  stepNow?(): Promise<boolean>;
  /** True while anything is pending, queued, running or swapped. */
  hasWork(): boolean;
  /** How long until the next arrival, in ms (null: none pending). */
  msUntilNextArrival(): number | null;
}

export interface RunLoopOptions {
  /** The loop cannot go on (a step threw): the owner reports it and may start afresh. */
  onError: (e: Error) => void;
  /** After every step that ran (Node drivers; the page pulls snapshots instead). */
  onStep?: () => void;
}

/** Longest sleep while idle or paused (a safety net: inputs wake the loop at once). */
const MAX_SLEEP_MS = 1000;

export class RunLoop {
  private pausedFlag = false;
  private minStepIntervalMsValue = 0;
  private looping = false;
  /** A step is in flight (the one guard against two at once). */
  private busy = false;
  /** The step in flight (or a settled promise). */
  private inFlight: Promise<unknown> = Promise.resolve();
  private wakeUp: (() => void) | null = null;
  private target: RunLoopTarget | null = null;

  constructor(private readonly options: RunLoopOptions) {}

  get paused(): boolean {
    return this.pausedFlag;
  }

  get minStepIntervalMs(): number {
    return this.minStepIntervalMsValue;
  }

  /** Drives `target` from now on (null: nothing to drive). Waits for the step in flight first. */
  async attach(target: RunLoopTarget | null): Promise<void> {
    this.target = null;
    await this.settled();
    this.target = target;
    this.kick();
  }

  /** Resolves once no step is in flight. */
  async settled(): Promise<void> {
    while (this.busy) await this.inFlight;
  }

  /** Stops stepping; resolves once the step in flight (if any) has landed. */
  async pause(): Promise<void> {
    this.pausedFlag = true;
    await this.settled();
  }

  resume(): void {
    this.pausedFlag = false;
    this.kick();
  }

  setMinStepInterval(ms: number): void {
    if (!(ms >= 0 && ms <= 10_000)) throw new RangeError(`the step interval must be between 0 and 10000 ms, got ${ms}`);
    this.minStepIntervalMsValue = ms;
    this.kick();
  }

  /** Exactly one engine iteration after the step in flight, whatever the state. Resolves whether it ran. */
  async stepOnce(): Promise<boolean> {
    await this.settled();
    const target = this.target;
    if (!target) return false;
    const now = target.stepNow ? { ...target, step: () => target.stepNow!() } : target;
    return this.exclusive(now, () => true);
  }

  /** Something changed (a submission, a cancel, new settings): look again now. */
  kick(): void {
    this.wakeUp?.();
    if (this.looping || !this.target) return;
    this.looping = true;
    void this.loop();
  }

  /**
   * Runs one step once no other is in flight and `stillWanted()` holds then (checked in the same
   * turn as the step starts, so nothing can slip in between). Resolves whether a step ran.
   */
  private async exclusive(target: RunLoopTarget, stillWanted: () => boolean): Promise<boolean> {
    await this.settled();
    if (this.busy || !stillWanted()) return this.busy ? this.exclusive(target, stillWanted) : false;
    this.busy = true;
    const p = target.step();
    this.inFlight = p.catch(() => {});
    try {
      return await p;
    } finally {
      this.busy = false;
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wakeUp = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wakeUp = done;
    });
  }

  /** Time left of the least interval after a step that started at `started`. */
  private msUntilDue(started: number): number {
    return Math.max(0, this.minStepIntervalMsValue - (performance.now() - started));
  }

  private async loop(): Promise<void> {
    let error: Error | null = null;
    try {
      for (;;) {
        const target = this.target;
        if (!target || !target.hasWork()) break;
        if (this.pausedFlag) {
          await this.sleep(MAX_SLEEP_MS);
          continue;
        }
        const started = performance.now();
        let wanted = true;
        // A single step may be in flight: wait for it, then step only if still playing.
        const ran = await this.exclusive(target, () => (wanted = !this.pausedFlag && target === this.target));
        if (!wanted) continue;
        if (!ran) {
          const wait = target.msUntilNextArrival();
          await this.sleep(Math.min(wait === null ? MAX_SLEEP_MS : Math.max(0, wait), MAX_SLEEP_MS));
          continue;
        }
        this.options.onStep?.();
        // Always yield to the event loop, so submissions and snapshot requests get through. Slow
        // motion: inputs wake the loop but do not cut the least interval short (a new interval does).
        await this.sleep(this.msUntilDue(started));
        while (this.msUntilDue(started) > 0 && !this.pausedFlag && target === this.target) await this.sleep(this.msUntilDue(started));
      }
    } catch (e) {
      error = e as Error;
    }
    // Cleared in the turn the loop ends, so a kick right after it found no work starts it again
    // (not lost), and before onError, so the owner's recovery (attach()) can start it again too.
    this.looping = false;
    if (error) this.options.onError(error);
  }
}
