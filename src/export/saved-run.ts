/**
 * Saved runs: a run's event log with the engine settings and the model it ran on. Replaying a
 * saved run re-runs the engine from the log's inputs with the recorded tokens and step times
 * (replayEventLog) and compares the replayed log with the saved one, event by event.
 *
 * Runs travel as JSON files too; JSON has no Infinity (a setting such as maxQueueLength may be
 * one), so numbers that are not finite are written as {"$num": "Infinity"} and read back.
 */
import type { EngineEvent } from '../engine/events.ts';
import { replayEventLog } from '../engine/replay.ts';
import type { SchedulerConfig } from '../engine/scheduler.ts';
import { importTrace, type WorkloadSpec } from '../engine/workload.ts';
import type { RequestSpec } from '../engine/request.ts';

export interface SavedRun {
  format: 'servelab-run';
  version: 1;
  id: string;
  name: string;
  /** ISO date. */
  savedAt: string;
  modelName: string;
  /** The engine's whole configuration when the run was recorded. */
  config: SchedulerConfig;
  events: EngineEvent[];
}

export function makeSavedRun(name: string, modelName: string, config: SchedulerConfig, events: readonly EngineEvent[], now = new Date()): SavedRun {
  const clean = name.trim();
  if (clean === '') throw new Error('a saved run needs a name');
  if (clean.length > 120) throw new Error('a run name is at most 120 characters');
  if (!events.some((e) => e.type === 'step')) throw new Error('nothing to save yet: the run has no engine steps');
  return {
    format: 'servelab-run',
    version: 1,
    id: `${now.getTime().toString(36)}-${Math.floor(Math.random() * 36 ** 4).toString(36)}`,
    name: clean,
    savedAt: now.toISOString(),
    modelName,
    config: structuredCloneSafe(config),
    events: structuredCloneSafe(events as EngineEvent[]),
  };
}

function structuredCloneSafe<T>(v: T): T {
  return JSON.parse(JSON.stringify(v, encodeNumbers), decodeNumbers) as T;
}

function encodeNumbers(_key: string, v: unknown): unknown {
  return typeof v === 'number' && !Number.isFinite(v) ? { $num: String(v) } : v;
}

function decodeNumbers(_key: string, v: unknown): unknown {
  if (typeof v === 'object' && v !== null && '$num' in v && Object.keys(v).length === 1) {
    const n = Number((v as { $num: string }).$num);
    return Number.isNaN(n) ? NaN : n;
  }
  return v;
}

export function serializeRun(run: SavedRun): string {
  return JSON.stringify(run, encodeNumbers);
}

export type LogDiff = { equal: true; numEvents: number } | { equal: false; index: number; expected: EngineEvent | undefined; actual: EngineEvent | undefined; numExpected: number; numActual: number };

/** Deep equality that ignores key order (events are plain JSON-like data). */
export function sameValue(a: unknown, b: unknown): boolean {
  if (Object.is(a, b)) return true;
  if (typeof a !== typeof b || typeof a !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    const bb = b as unknown[];
    return a.length === bb.length && a.every((x, i) => sameValue(x, bb[i]));
  }
  const ka = Object.keys(a as object).filter((k) => (a as Record<string, unknown>)[k] !== undefined);
  const kb = Object.keys(b as object).filter((k) => (b as Record<string, unknown>)[k] !== undefined);
  if (ka.length !== kb.length) return false;
  return ka.every((k) => sameValue((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

/** The first event where two logs differ, or that they are equal. */
export function compareEventLogs(expected: readonly EngineEvent[], actual: readonly EngineEvent[]): LogDiff {
  const n = Math.max(expected.length, actual.length);
  for (let i = 0; i < n; i++) {
    if (!sameValue(expected[i], actual[i])) {
      return { equal: false, index: i, expected: expected[i], actual: actual[i], numExpected: expected.length, numActual: actual.length };
    }
  }
  return { equal: true, numEvents: expected.length };
}

/**
 * The part of a log a replay reproduces: everything up to the engine's last step, and the
 * cancellations that step deferred. What follows (the scheduling of a step still in flight when
 * the log was taken, inputs not yet acted on) has no step to replay it with.
 */
export function replayableEvents(events: readonly EngineEvent[]): EngineEvent[] {
  let last = -1;
  events.forEach((e, i) => {
    if (e.type === 'step') last = i;
  });
  if (last < 0) return [];
  let end = last + 1;
  while (end < events.length) {
    const e = events[end];
    if (e.type !== 'failed' || e.reason !== 'cancelled' || e.timeMs !== (events[last] as { timeMs: number }).timeMs) break;
    end++;
  }
  return events.slice(0, end);
}

export interface ReplayResult {
  diff: LogDiff;
  /** Events after the last step, which no replay reproduces (see replayableEvents). */
  numLeftOut: number;
  replayed: EngineEvent[];
  /** Wall time the replay took on this machine. */
  elapsedMs: number;
}

/** Re-runs the saved run from its log and compares the two logs. */
export async function replaySavedRun(run: SavedRun): Promise<ReplayResult> {
  const started = performance.now();
  const log = replayableEvents(run.events);
  let replayed: EngineEvent[];
  try {
    const engine = await replayEventLog(log, { config: run.config, modelName: run.modelName, checkInvariants: true });
    replayed = [...engine.eventLog];
  } catch (e) {
    throw new Error(`the replay of "${run.name}" failed: ${(e as Error).message}`);
  }
  return { diff: compareEventLogs(log, replayed), numLeftOut: run.events.length - log.length, replayed, elapsedMs: performance.now() - started };
}

/** What an imported JSON file holds. */
export type Imported =
  | { kind: 'run'; run: SavedRun }
  | { kind: 'trace'; requests: RequestSpec[] }
  | { kind: 'workload'; workload: WorkloadSpec };

const maxImportBytes = 64 * 1024 * 1024;

/** Reads a saved run, a servelab request trace, or a workload spec; throws a clear Error otherwise. */
export function parseImport(text: string): Imported {
  if (text.length > maxImportBytes) throw new Error(`the file is over the ${maxImportBytes / 1024 ** 2} MiB import limit`);
  let data: unknown;
  try {
    data = JSON.parse(text, decodeNumbers);
  } catch (e) {
    throw new Error(`the file is not JSON: ${(e as Error).message}`);
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) throw new Error('the file is not a JSON object');
  const o = data as Record<string, unknown>;
  if (o.format === 'servelab-run') return { kind: 'run', run: validateRun(o) };
  if (o.format === 'servelab-trace') return { kind: 'trace', requests: importTrace(text) };
  if ('traceEvents' in o) {
    throw new Error('this is a Chrome trace (a picture of a run); import a saved run, a request trace or a workload instead');
  }
  if ('numRequests' in o || 'arrival' in o) return { kind: 'workload', workload: validateWorkload(o) };
  throw new Error('unknown file: expected a servelab saved run, a servelab trace ({"format": "servelab-trace"}) or a workload spec');
}

function validateRun(o: Record<string, unknown>): SavedRun {
  if (o.version !== 1) throw new Error(`saved run: unknown version ${String(o.version)}`);
  if (typeof o.name !== 'string' || o.name.trim() === '') throw new Error('saved run: missing name');
  if (typeof o.modelName !== 'string') throw new Error('saved run: missing modelName');
  if (typeof o.config !== 'object' || o.config === null) throw new Error('saved run: missing config');
  if (!Array.isArray(o.events)) throw new Error('saved run: events must be an array');
  const types = new Set(['submit', 'cancel', 'reconfigure', 'queued', 'rejected', 'scheduled', 'token', 'preempted', 'finished', 'failed', 'step']);
  o.events.forEach((e: unknown, i) => {
    if (typeof e !== 'object' || e === null || !types.has((e as { type?: string }).type ?? '')) throw new Error(`saved run: event ${i} is not an engine event`);
    if (typeof (e as { timeMs?: unknown }).timeMs !== 'number') throw new Error(`saved run: event ${i} has no timeMs`);
  });
  return {
    format: 'servelab-run',
    version: 1,
    id: typeof o.id === 'string' && /^[\w-]{1,64}$/.test(o.id) ? o.id : `import-${Date.now().toString(36)}`,
    name: o.name.slice(0, 120),
    savedAt: typeof o.savedAt === 'string' ? o.savedAt : new Date().toISOString(),
    modelName: o.modelName,
    config: o.config as SchedulerConfig,
    events: o.events as EngineEvent[],
  };
}

function validateWorkload(o: Record<string, unknown>): WorkloadSpec {
  const w = o as unknown as WorkloadSpec;
  const int = (v: unknown, name: string, max: number) => {
    if (!Number.isInteger(v) || (v as number) < 0 || (v as number) > max) throw new Error(`workload: ${name} must be an integer from 0 to ${max}`);
  };
  int(w.seed, 'seed', 2 ** 32);
  int(w.numRequests, 'numRequests', 10_000);
  const kinds = ['batch', 'poisson', 'bursty'];
  if (typeof w.arrival !== 'object' || w.arrival === null || !kinds.includes((w.arrival as { kind: string }).kind)) {
    throw new Error(`workload: arrival.kind must be one of ${kinds.join(', ')}`);
  }
  const lengthKinds = ['fixed', 'uniform', 'lognormal', 'bimodal'];
  for (const key of ['promptTokens', 'outputTokens'] as const) {
    const d = w[key] as unknown;
    if (typeof d !== 'object' || d === null || !lengthKinds.includes((d as { kind?: string }).kind ?? '')) {
      throw new Error(`workload: ${key} must be a length distribution (${lengthKinds.join(', ')})`);
    }
  }
  return w;
}
