/**
 * The one interface every view drives an engine through: the lab, compare mode, the manage
 * panel (each over a supervised worker, WorkerEngine) and the simulated mode (SimEngine, an
 * in-page engine on a virtual clock). A driver brings the engine's snapshots into a LabState,
 * which the views render, and carries play, pause, single steps and speed.
 */
import type { LabState } from './state.svelte.ts';

export interface EngineDriver {
  /** What the views render (reactive). */
  readonly state: LabState;
  readonly playing: boolean;
  readonly speedIndex: number;
  /** True while a pause or a single step is still landing (false once the shown state is exact). */
  readonly settling: boolean;
  play(): void;
  /** Stops stepping; resolves once the step in flight (if any) is shown. */
  pause(): Promise<void>;
  toggle(): void;
  /** Exactly one step (pausing first when playing); resolves once it is shown. */
  step(): Promise<void>;
  setSpeed(index: number): void;
  dispose(): void;
}

/**
 * Two engines driven as one (compare mode): play, pause, step and speed go to both; the state
 * and the play state are side A's. It owns neither side (dispose does nothing). The sides are
 * read through getters, so a caller whose sides change (component props) passes getters.
 */
export function pairedDriver(a: () => EngineDriver, b: () => EngineDriver): EngineDriver {
  const pair: EngineDriver = {
    get state() {
      return a().state;
    },
    get playing() {
      return a().playing;
    },
    get speedIndex() {
      return a().speedIndex;
    },
    get settling() {
      return a().settling || b().settling;
    },
    play() {
      a().play();
      b().play();
    },
    async pause() {
      await Promise.all([a().pause(), b().pause()]);
    },
    toggle() {
      if (pair.playing) void pair.pause();
      else pair.play();
    },
    async step() {
      await Promise.all([a().step(), b().step()]);
    },
    setSpeed(index: number) {
      a().setSpeed(index);
      b().setSpeed(index);
    },
    dispose() {},
  };
  return pair;
}
