/**
 * A run as a recording: the engine's event log, replayed (src/engine/replay.ts) up to any step, gives
 * the engine's snapshot as it was right after that step — the KV blocks, the queues, the requests,
 * the metrics and every step record since the start. The views render that snapshot through a
 * LabState of its own, so a paused run can be scrubbed back and forth.
 *
 * Step k's state is the log replayed up to and including step k's 'step' (or 'stepFailed') event;
 * step 0 is the log before the first step (the requests submitted, nothing run). Moving forward
 * goes on from the replay already made; moving back replays from the start. Pure TS: no DOM.
 */
import type { EngineSnapshot } from '../../engine/engine.ts';
import type { EngineEvent } from '../../engine/events.ts';
import type { SchedulerConfig } from '../../engine/config.ts';
import { EventLogReplay } from '../../engine/replay.ts';

export interface RecordingOptions {
  /** The configuration the engine started with (changes made live are 'reconfigure' events in the log). */
  config: Partial<SchedulerConfig>;
  modelName?: string;
  /** Check the engine's invariants after every replayed step (tests). */
  checkInvariants?: boolean;
  /**
   * While replaying, hand the event loop a turn after this many milliseconds (0: never), so a
   * long replay does not freeze the page.
   */
  sliceMs?: number;
}

/** Raised when a newer request made a replay in progress pointless. */
export class SupersededError extends Error {
  constructor() {
    super('a newer step was asked for');
    this.name = 'SupersededError';
  }
}

export class Recording {
  /** The last step the log holds (0: none ran). */
  readonly lastStep: number;
  /** ends[k]: the index in the log just after the event that closes step k (ends[0]: before the first step). */
  private readonly ends: number[];
  private replay: EventLogReplay | null = null;
  /** The step the replay stands at (-1: none made yet). */
  private replayStep = -1;
  /** Replays run one at a time, in the order asked. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    readonly log: readonly EngineEvent[],
    private readonly options: RecordingOptions,
  ) {
    const closing = new Map<number, number>();
    let firstStepAt = log.length;
    let lastStep = 0;
    log.forEach((e, i) => {
      if (e.type !== 'step' && e.type !== 'stepFailed') return;
      if (firstStepAt === log.length) firstStepAt = i;
      closing.set(e.stepIndex, i + 1);
      lastStep = Math.max(lastStep, e.stepIndex);
    });
    this.lastStep = lastStep;
    this.ends = [firstStepAt];
    for (let k = 1; k <= lastStep; k++) this.ends.push(closing.get(k) ?? this.ends[k - 1]);
  }

  /** True when step k (an integer, 0 .. lastStep) is in this recording. */
  has(k: number): boolean {
    return Number.isInteger(k) && k >= 0 && k <= this.lastStep;
  }

  /**
   * The engine's snapshot right after step k, with every step record from step 1 to k (oldest
   * first) and every request seen so far. The snapshot is a copy: later replays leave it as it is.
   * `isStale` is asked between steps; when it says true the replay stops with a SupersededError
   * (what was replayed so far is kept for the next request).
   */
  snapshotAt(k: number, isStale: () => boolean = () => false): Promise<EngineSnapshot> {
    if (!this.has(k)) return Promise.reject(new RangeError(`step ${k} is not in this recording (steps 0 to ${this.lastStep})`));
    const run = this.queue.then(() => this.replayTo(k, isStale));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async replayTo(k: number, isStale: () => boolean): Promise<EngineSnapshot> {
    if (!this.replay || this.replayStep > k) {
      this.replay = null;
      this.replayStep = -1;
      this.replay = await EventLogReplay.start(this.log, {
        config: this.options.config,
        modelName: this.options.modelName,
        checkInvariants: this.options.checkInvariants ?? false,
        numStepRecords: Infinity,
        numRecentEndedInSnapshot: Infinity,
      });
    }
    const replay = this.replay;
    const sliceMs = this.options.sliceMs ?? 0;
    let sliceStart = now();
    for (let s = this.replayStep + 1; s <= k; s++) {
      if (isStale()) throw new SupersededError();
      try {
        await replay.advanceTo(this.ends[s]);
      } catch (e) {
        // A replay that failed part-way is no use to anyone: the next request starts afresh.
        this.replay = null;
        this.replayStep = -1;
        throw e;
      }
      this.replayStep = s;
      if (sliceMs > 0 && now() - sliceStart >= sliceMs) {
        await new Promise((resolve) => setTimeout(resolve, 0));
        sliceStart = now();
      }
    }
    const snap = replay.engine.snapshot(0);
    // Step records never change once made; everything else is copied (request views share the
    // replay's live token arrays, which the next replay would grow).
    const { recentSteps, lastStep, ...rest } = snap;
    return { ...structuredClone(rest), recentSteps, lastStep };
  }
}

function now(): number {
  return typeof performance !== 'undefined' ? performance.now() : Date.now();
}
