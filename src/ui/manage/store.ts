/**
 * What servelab remembers between visits, in IndexedDB (idb-keyval): the manage panel's
 * settings, named scenarios (engine settings + a workload) and saved runs (event logs).
 * Values are stored by structured clone, so Infinity in a setting survives.
 */
import { createStore, del, entries, get, set, type UseStore } from 'idb-keyval';
import type { WorkloadSpec } from '../../engine/workload.ts';
import type { SavedRun } from '../../export/saved-run.ts';
import type { EngineSettings } from '../../../workers/protocol.ts';

export interface ManageSettings {
  /** The engine settings runs start with. */
  engine: EngineSettings;
  workload: WorkloadSpec;
}

export interface NamedScenario {
  name: string;
  engine: EngineSettings;
  workload: WorkloadSpec;
  savedAt: string;
}

export interface RunSummary {
  id: string;
  name: string;
  savedAt: string;
  modelName: string;
  numEvents: number;
  numRequests: number;
}

let store: UseStore | null = null;
const db = () => (store ??= createStore('servelab', 'kv'));

const SETTINGS_KEY = 'settings';
const scenarioKey = (name: string) => `scenario:${name}`;
const runKey = (id: string) => `run:${id}`;
const runIndexKey = 'runs';

export async function loadSettings(): Promise<ManageSettings | undefined> {
  return get<ManageSettings>(SETTINGS_KEY, db());
}

export async function saveSettings(s: ManageSettings): Promise<void> {
  await set(SETTINGS_KEY, plainCopy(s), db());
}

export async function listScenarios(): Promise<NamedScenario[]> {
  const all = await entries<string, NamedScenario>(db());
  return all
    .filter(([k]) => typeof k === 'string' && k.startsWith('scenario:'))
    .map(([, v]) => v)
    .sort((a, b) => a.name.localeCompare(b.name));
}

export async function saveScenario(s: NamedScenario): Promise<void> {
  const name = s.name.trim();
  if (name === '') throw new Error('a scenario needs a name');
  if (name.length > 80) throw new Error('a scenario name is at most 80 characters');
  await set(scenarioKey(name), plainCopy({ ...s, name }), db());
}

export async function deleteScenario(name: string): Promise<void> {
  await del(scenarioKey(name), db());
}

/** Run summaries, newest first (the event logs themselves load on demand). */
export async function listRuns(): Promise<RunSummary[]> {
  return ((await get<RunSummary[]>(runIndexKey, db())) ?? []).slice().sort((a, b) => b.savedAt.localeCompare(a.savedAt));
}

export async function saveRun(run: SavedRun): Promise<RunSummary> {
  const summary: RunSummary = {
    id: run.id,
    name: run.name,
    savedAt: run.savedAt,
    modelName: run.modelName,
    numEvents: run.events.length,
    numRequests: run.events.filter((e) => e.type === 'submit').length,
  };
  await set(runKey(run.id), run, db());
  const index = ((await get<RunSummary[]>(runIndexKey, db())) ?? []).filter((r) => r.id !== run.id);
  await set(runIndexKey, [...index, summary], db());
  return summary;
}

export async function loadRun(id: string): Promise<SavedRun> {
  const run = await get<SavedRun>(runKey(id), db());
  if (!run) throw new Error(`saved run ${id} is gone (deleted in another tab?)`);
  return run;
}

export async function deleteRun(id: string): Promise<void> {
  await del(runKey(id), db());
  const index = ((await get<RunSummary[]>(runIndexKey, db())) ?? []).filter((r) => r.id !== id);
  await set(runIndexKey, index, db());
}

/** Svelte state proxies cannot be structured-cloned: store plain copies (Infinity kept). */
function plainCopy<T>(v: T): T {
  if (Array.isArray(v)) return v.map((x) => plainCopy(x)) as T;
  if (typeof v === 'object' && v !== null) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (x !== undefined) out[k] = plainCopy(x);
    return out as T;
  }
  return v;
}
