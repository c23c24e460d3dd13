/**
 * Compare mode as a controlled experiment: two engines on one GPU take turns, one step each (A,
 * then B), so neither starves the other and each step's measured time is its own. Each side's
 * latencies stay on its own engine clock. The workers' own loops stay paused; this driver steps
 * them. It owns neither engine (dispose hands them back to their own loops).
 */
import type { EngineDriver } from './driver.ts';
import { SPEEDS, type WorkerEngine } from './worker-engine.svelte.ts';

/** How long to wait before looking again when neither side had anything to run. */
const IDLE_POLL_MS = 150;

export class LockstepDriver implements EngineDriver {
  playing = $state(true);
  speedIndex = $state(0);
  /** Steps taken in turn since the driver started (A's and B's). */
  rounds = $state(0);
  private numSettling = $state(0);
  private running: Promise<void> | null = null;
  private disposed = false;
  private wake: (() => void) | null = null;

  constructor(
    private readonly a: WorkerEngine,
    private readonly b: WorkerEngine,
  ) {
    for (const side of [a, b]) {
      side.externallyDriven = true;
      void side.engine.pause().catch(() => {});
    }
    this.playing = a.playing;
    if (this.playing) this.start();
  }

  get state() {
    return this.a.state;
  }

  /** True from a pause or step asked for until both sides show the state it landed on. */
  get settling(): boolean {
    return this.numSettling > 0 || this.a.settling || this.b.settling;
  }

  play(): void {
    this.playing = true;
    this.a.play();
    this.b.play();
    this.start();
  }

  async pause(): Promise<void> {
    this.playing = false;
    this.numSettling++;
    try {
      this.wake?.();
      await this.running;
      await Promise.all([this.a.pause(), this.b.pause()]);
    } finally {
      this.numSettling--;
    }
  }

  toggle(): void {
    if (this.playing) void this.pause().catch(() => {});
    else this.play();
  }

  /** One step of each side, A then B; resolves once both are shown. */
  async step(): Promise<void> {
    this.numSettling++;
    try {
      if (this.playing) await this.pause();
      await this.a.step();
      await this.b.step();
    } finally {
      this.numSettling--;
    }
  }

  setSpeed(index: number): void {
    this.speedIndex = index;
    this.a.speedIndex = index;
    this.b.speedIndex = index;
    this.wake?.();
  }

  dispose(): void {
    this.disposed = true;
    this.playing = false;
    this.wake?.();
    for (const side of [this.a, this.b]) {
      side.externallyDriven = false;
      if (side.playing) side.play();
    }
  }

  private start(): void {
    if (this.running || this.disposed) return;
    this.running = this.loop().finally(() => (this.running = null));
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const self = this;
      function done() {
        clearTimeout(timer);
        self.wake = null;
        resolve();
      }
      this.wake = done;
    });
  }

  private async loop(): Promise<void> {
    let last = [-1, -1];
    while (this.playing && !this.disposed) {
      const started = performance.now();
      let indexes: number[];
      try {
        // Strictly in turn: B's step starts after A's has landed.
        const ia = await this.a.stepQuietly();
        const ib = await this.b.stepQuietly();
        indexes = [ia, ib];
      } catch {
        // A side is restarting (a crash, new settings): look again shortly.
        await this.sleep(IDLE_POLL_MS);
        continue;
      }
      const moved = indexes[0] !== last[0] || indexes[1] !== last[1];
      last = indexes;
      if (moved) this.rounds++;
      const interval = moved ? SPEEDS[this.speedIndex].minStepIntervalMs - (performance.now() - started) : IDLE_POLL_MS;
      // Always yield, so snapshot pulls and inputs get through.
      await this.sleep(Math.max(0, interval));
    }
  }
}
