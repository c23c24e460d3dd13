/**
 * The page <-> fleet worker contract: the simulated fleet (src/sim/fleet/) runs in a worker of its
 * own so that a preset's runs (tens of thousands of simulated engine steps) never hold up the page.
 */
import type { FleetPresetId, FleetResult, FleetSpec } from '../src/sim/fleet/types.ts';

/** One finished run of a preset (or of fleets given as specs), with its label. */
export interface FleetRun {
  label: string;
  result: FleetResult;
}

/** Called with the fraction of all the runs done, [0, 1], and the label of the run in progress. */
export type FleetProgress = (fraction: number, label: string) => void;

export interface FleetApi {
  /** Runs every fleet of the preset, one after the other, on the same workload. */
  runPreset(id: FleetPresetId, onProgress?: FleetProgress): Promise<FleetRun[]>;
  /** Runs fleets given as specs; an impossible spec is refused with a RangeError naming its run and field. */
  runSpecs(runs: { label: string; spec: FleetSpec }[], onProgress?: FleetProgress): Promise<FleetRun[]>;
}
