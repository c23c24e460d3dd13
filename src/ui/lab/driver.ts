/**
 * The one interface every view drives an engine through: the lab, compare mode (LockstepDriver:
 * two WorkerEngines taking turns), the manage panel (each over a supervised worker,
 * WorkerEngine) and the simulated mode (SimEngine, an
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
