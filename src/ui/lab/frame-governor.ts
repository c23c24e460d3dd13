/**
 * How often the views may take a new engine snapshot, so animation stays smooth.
 *
 * Applying a snapshot repaints every live view. On a real GPU that frame costs a few
 * milliseconds and the views follow the engine at the display's rate. On a software adapter
 * (Chromium + SwiftShader) the model's compute and the page's compositing share the same CPU
 * cores, and the frame that shows a snapshot can take two or three frame intervals. The governor
 * watches the frames right after each update and spaces updates so that the time lost to long
 * frames stays a small share of the wall clock (budgetShare): it adapts both ways, so a fast
 * machine is never throttled and a loaded one degrades to a lower view refresh rate, not to
 * stutter. Pure: it is fed timestamps, it never reads a clock.
 */
export interface FrameGovernorOptions {
  /** The display's frame interval. */
  frameMs: number;
  /** The largest share of wall time that long frames caused by updates may take. */
  budgetShare: number;
  /** Never wait longer than this between updates (the views must stay live). */
  maxIntervalMs: number;
  /**
   * Frames after an update that are charged to it. Not only the next one: on Chromium +
   * SwiftShader with 64 live requests the frame an update lost came 2-5 frames after it (mostly
   * the 4th: the compositor rasters the changed views late), and charging two frames saw almost
   * none of it (updates every ~80-290 ms against the budget's 500).
   */
  framesCharged: number;
  /** Weight of the newest observation in the running estimate (0..1]. */
  alpha: number;
}

/** Frame gaps longer than this are pauses (the tab was hidden), never charged to an update. */
const PAUSE_MS = 1000;

export const DEFAULT_GOVERNOR: FrameGovernorOptions = {
  frameMs: 1000 / 60,
  budgetShare: 0.04,
  maxIntervalMs: 500,
  framesCharged: 6,
  alpha: 0.3,
};

export class FrameGovernor {
  private lastFrame = NaN;
  private lastUpdate = -Infinity;
  private charging = 0;
  private charge = 0;
  /** Running estimate of the time one update costs beyond normal frames, in ms. */
  private excessMs = 0;

  constructor(private readonly o: FrameGovernorOptions = DEFAULT_GOVERNOR) {
    if (!(o.frameMs > 0) || !(o.budgetShare > 0 && o.budgetShare <= 1) || !(o.maxIntervalMs >= 0) || !(o.framesCharged >= 1) || !(o.alpha > 0 && o.alpha <= 1)) {
      throw new RangeError(`invalid frame governor options: ${JSON.stringify(o)}`);
    }
  }

  /** Call on every animation frame with its timestamp. */
  onFrame(now: number): void {
    const delta = now - this.lastFrame;
    this.lastFrame = now;
    if (this.charging === 0 || !Number.isFinite(delta)) return;
    // A gap of seconds is a hidden tab or a sleeping machine, not the cost of an update.
    if (delta > PAUSE_MS) {
      this.charging = 0;
      this.charge = 0;
      return;
    }
    // A frame up to half an interval late is normal jitter, not cost; a later one costs all its lateness.
    if (delta > 1.5 * this.o.frameMs) this.charge += delta - this.o.frameMs;
    if (--this.charging === 0) this.settle();
  }

  private settle(): void {
    this.excessMs += this.o.alpha * (this.charge - this.excessMs);
    this.charging = 0;
    this.charge = 0;
  }

  /** The least time between two updates now. */
  get minIntervalMs(): number {
    return Math.min(this.o.maxIntervalMs, this.excessMs / this.o.budgetShare);
  }

  /** The estimated cost of one update beyond a normal frame, in ms. */
  get updateCostMs(): number {
    return this.excessMs;
  }

  /** Whether an update may be applied at `now`. */
  mayUpdate(now: number): boolean {
    return now - this.lastUpdate >= this.minIntervalMs;
  }

  /** Call when an update was applied (its next frames are charged to it). */
  onUpdate(now: number): void {
    // The previous update's frames are over when the next one begins.
    if (this.charging > 0) this.settle();
    this.lastUpdate = now;
    this.charging = this.o.framesCharged;
    this.charge = 0;
  }
}
