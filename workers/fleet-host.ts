/**
 * What the fleet worker does, without the worker: runs fleets one after the other with runFleet,
 * reporting progress over all of them (at most every 1%), and names the run an error came from.
 * Pure TS: the unit tests drive it in Node.
 */
import { runFleet } from '../src/sim/fleet/fleet.ts';
import { fleetPreset } from '../src/sim/fleet/presets.ts';
import { FLEET_PRESET_IDS, type FleetPresetId, type FleetSpec } from '../src/sim/fleet/types.ts';
import type { FleetApi, FleetProgress, FleetRun } from './fleet-protocol.ts';

export async function runFleets(runs: readonly { label: string; spec: FleetSpec }[], onProgress?: FleetProgress): Promise<FleetRun[]> {
  if (runs.length === 0) throw new RangeError('no fleet to run');
  const out: FleetRun[] = [];
  let reported = -1;
  const report = (fraction: number, label: string) => {
    if (!onProgress) return;
    if (fraction < 1 && fraction - reported < 0.01) return;
    reported = fraction;
    onProgress(fraction, label);
  };
  for (let i = 0; i < runs.length; i++) {
    const { label, spec } = runs[i];
    report(i / runs.length, label);
    try {
      const result = await runFleet(spec, { onProgress: (f) => report((i + Math.min(1, Math.max(0, f))) / runs.length, label) });
      out.push({ label, result });
    } catch (e) {
      const err = e as Error;
      const message = `run "${label}" (${spec.name}): ${err.message}`;
      throw err instanceof RangeError ? new RangeError(message) : new Error(message);
    }
  }
  report(1, runs[runs.length - 1].label);
  return out;
}

export const fleetApi: FleetApi = {
  runPreset(id: FleetPresetId, onProgress?: FleetProgress) {
    if (!FLEET_PRESET_IDS.includes(id)) return Promise.reject(new RangeError(`unknown fleet preset "${String(id)}" (one of ${FLEET_PRESET_IDS.join(', ')})`));
    return runFleets(fleetPreset(id).runs, onProgress);
  },
  runSpecs: (runs, onProgress) => runFleets(runs, onProgress),
};
