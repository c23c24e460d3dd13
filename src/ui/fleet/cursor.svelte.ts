/**
 * The fleet view's time cursor: plays a finished simulated run back on its own clock (simulated
 * seconds per wall second, the speed), or stands where the scrubber puts it. Every fleet panel
 * renders the fleet at `tS`. Keys (App.svelte): space toggles play, → steps one sample.
 */

/** Playback speeds: simulated seconds per wall-clock second. */
export const FLEET_SPEEDS: readonly { label: string; simSPerS: number }[] = [
  { label: '1×', simSPerS: 1 },
  { label: '2×', simSPerS: 2 },
  { label: '5×', simSPerS: 5 },
  { label: '10×', simSPerS: 10 },
  { label: '20×', simSPerS: 20 },
  { label: '50×', simSPerS: 50 },
  { label: '100×', simSPerS: 100 },
];

/** The speed that plays a run of `durationS` in about `wallS` seconds (the nearest one at or below). */
export function speedIndexFor(durationS: number, wallS = 25): number {
  const want = durationS / wallS;
  let best = 0;
  for (let i = 0; i < FLEET_SPEEDS.length; i++) if (FLEET_SPEEDS[i].simSPerS <= want) best = i;
  return best;
}

export class FleetCursor {
  /** Simulated time shown, s. */
  tS = $state(0);
  durationS = $state(0);
  playing = $state(false);
  speedIndex = $state(0);
  /** One → step, s (the run's sampling interval). */
  stepS = 1;
  private raf = 0;
  private lastWall = 0;

  /** A new run to play: back to the start, paused, at a speed that plays it in ~25 s. */
  load(durationS: number, stepS: number): void {
    this.pause();
    this.durationS = Math.max(0, durationS);
    this.stepS = stepS > 0 ? stepS : 1;
    this.tS = 0;
    this.speedIndex = speedIndexFor(this.durationS);
  }

  play(): void {
    if (this.playing || this.durationS <= 0) return;
    if (this.tS >= this.durationS) this.tS = 0;
    this.playing = true;
    this.lastWall = performance.now();
    this.raf = requestAnimationFrame(this.frame);
  }

  pause(): void {
    this.playing = false;
    if (this.raf) cancelAnimationFrame(this.raf);
    this.raf = 0;
  }

  toggle(): void {
    if (this.playing) this.pause();
    else this.play();
  }

  /** One sample forward (pausing first). */
  step(): void {
    this.pause();
    this.seek(this.tS + this.stepS);
  }

  /** Moves the cursor to tS (clamped to the run); within a microsecond of the end is the end (a range input rounds its value). */
  seek(tS: number): void {
    const t = Math.min(this.durationS, Math.max(0, Number.isFinite(tS) ? tS : 0));
    this.tS = this.durationS - t < 1e-6 ? this.durationS : t;
  }

  toEnd(): void {
    this.pause();
    this.tS = this.durationS;
  }

  setSpeed(index: number): void {
    if (Number.isInteger(index) && index >= 0 && index < FLEET_SPEEDS.length) this.speedIndex = index;
  }

  dispose(): void {
    this.pause();
  }

  private frame = (now: number): void => {
    if (!this.playing) return;
    // A long gap (a background tab) moves at most a quarter second of wall time.
    const dtS = Math.min(0.25, Math.max(0, (now - this.lastWall) / 1000));
    this.lastWall = now;
    const next = this.tS + dtS * FLEET_SPEEDS[this.speedIndex].simSPerS;
    if (next >= this.durationS) {
      this.tS = this.durationS;
      this.pause();
      return;
    }
    this.tS = next;
    this.raf = requestAnimationFrame(this.frame);
  };
}
