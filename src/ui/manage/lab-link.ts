/**
 * How the manage panel reaches the lab: it acts on the lab's own engine (faults, models, runs),
 * and takes the lab's run to save as a named scenario or hands a saved one back to run there.
 * Prompts and workloads are sent with the lab's controls: the app has one of each.
 */
import type { WorkloadSpec } from '../../engine/workload.ts';
import type { EngineSettings } from '../../../workers/protocol.ts';
import { BASE_SETTINGS, type LabSettings } from '../lab/settings.ts';
import type { ViewName } from '../lab/url.ts';

export interface LabRun {
  /** What runs, in words ("2. 8 vs 400 output tokens", "Your prompts"). */
  label: string;
  /** The engine's settings as they are now (a fault may have changed them). */
  settings: EngineSettings;
  /** The workload the lab runs (null: none, just your prompts). */
  workload: WorkloadSpec | null;
}

export interface LabLink {
  /** The view open beside the panel. */
  view: ViewName;
  current(): LabRun;
  /** Runs a saved scenario in the lab. */
  onrun(name: string, settings: EngineSettings, workload: WorkloadSpec): void;
}

/** The lab's settings out of an engine's (anything missing takes the lab's base value). */
export function labSettingsOf(e: EngineSettings): LabSettings {
  const out = { ...BASE_SETTINGS } as Record<keyof LabSettings, unknown>;
  for (const k of Object.keys(BASE_SETTINGS) as (keyof LabSettings)[]) if (e[k] !== undefined) out[k] = e[k];
  return out as LabSettings;
}
