/**
 * A guided tour as it plays in the lab: the scenario restarts, the engine plays until the next
 * moment happens (TourWatcher, fed every step record as it reaches the page), then pauses; the
 * moment's view is highlighted and its text shown. Next plays on to the following moment, Back
 * shows the previous one again, Skip ends the tour and lets the run go on.
 */
import type { StepRecord } from '../../engine/engine.ts';
import type { EngineDriver } from './driver.ts';
import type { LabSnapshot } from './state.svelte.ts';
import { TourWatcher, runIsLive, type TourMoment } from './tour.ts';

export class TourRun {
  /** The moments found so far, in order. */
  moments = $state.raw<TourMoment[]>([]);
  /** The moment shown (an index into moments; -1: none yet). */
  index = $state(-1);
  /** Playing on until the next moment. */
  seeking = $state(false);
  /** The last moment has been shown and passed. */
  finished = $state(false);
  private readonly watcher: TourWatcher;
  private lastStep = 0;
  /** Steps that reached the page while a moment was shown: looked at when the tour plays on. */
  private readonly pending: StepRecord[] = [];
  private lastSnap: LabSnapshot | null = null;

  constructor(
    readonly scenarioId: string,
    private readonly driver: EngineDriver,
  ) {
    this.watcher = new TourWatcher(scenarioId);
  }

  get length(): number {
    return this.watcher.length;
  }

  /** The moment on screen, if any. */
  get current(): TourMoment | null {
    return this.index >= 0 && !this.seeking ? (this.moments[this.index] ?? null) : null;
  }

  /** Starts from the beginning of a fresh run (the caller has just restarted the scenario). */
  begin(): void {
    this.seeking = true;
    this.driver.play();
  }

  /**
   * New step records reached the page (oldest first), with the latest snapshot. Returns the
   * moment found, after pausing the engine on it.
   */
  feed(steps: readonly StepRecord[], snap: LabSnapshot | null): TourMoment | null {
    for (const step of steps) {
      if (step.stepIndex <= this.lastStep) continue;
      this.lastStep = step.stepIndex;
      this.pending.push(step);
    }
    if (snap) this.lastSnap = snap;
    return this.advance();
  }

  /** Looks at the steps not yet looked at, while seeking; stops at the first moment. */
  private advance(): TourMoment | null {
    const snap = this.lastSnap;
    if (!snap || this.finished || !this.seeking) return null;
    let found: TourMoment | null = null;
    while (!found && this.pending.length > 0) found = this.watcher.observe(this.pending.shift()!, snap);
    if (!found && !runIsLive(snap)) found = this.watcher.finish(snap);
    if (found) this.show(found);
    return found;
  }

  private show(m: TourMoment): void {
    this.moments = [...this.moments, m];
    this.index = this.moments.length - 1;
    this.seeking = false;
    void this.driver.pause();
  }

  /** The next moment: one already found, or play on until it happens. */
  next(): void {
    if (this.seeking) return;
    if (this.index < this.moments.length - 1) {
      this.index++;
      return;
    }
    if (this.watcher.done) {
      this.finished = true;
      this.driver.play();
      return;
    }
    this.seeking = true;
    if (!this.advance()) this.driver.play();
  }

  /** The previous moment again (the engine stays paused). */
  back(): void {
    if (this.seeking || this.index <= 0) return;
    this.index--;
  }
}
