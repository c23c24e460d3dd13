/**
 * Saved runs: a run's event log with the engine settings and the model it ran on. Replaying a
 * saved run re-runs the engine from the log's inputs with the recorded tokens and step times
 * (replayEventLog) and compares the replayed log with the saved one, event by event.
 *
 * Runs travel as JSON files too; JSON has no Infinity (a setting such as maxQueueLength may be
 * one), so numbers that are not finite are written as {"$num": "Infinity"} and read back.
 */
import type { EngineEvent } from '../engine/events.ts';
import { MAX_LORA_RANK } from '../engine/config.ts';
import { replayEventLog } from '../engine/replay.ts';
import { DEFAULT_SCHEDULER_CONFIG, validateEngineConfig, type SchedulerConfig } from '../engine/config.ts';
import { validateTrace, validateWorkload, type WorkloadSpec } from '../engine/workload.ts';
import { MAX_ID_LENGTH, validateRequestSpec, type RequestSpec } from '../engine/request.ts';
import { check, fieldPath, InvalidInputError, show, type NumberSchema, type ObjectSchema, type Problem, type Schema, type StringSchema } from '../engine/schema.ts';

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

/**
 * Reads a saved run, a servelab request trace, or a workload spec, each checked whole against its
 * schema; throws one Error naming every problem (the first 10, then how many more) otherwise.
 * Nothing of a refused file is returned.
 */
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
  if (o.format === 'servelab-trace') return { kind: 'trace', requests: validateTrace(o) };
  if (Object.hasOwn(o, 'traceEvents')) {
    throw new Error('this is a Chrome trace (a picture of a run); import a saved run, a request trace or a workload instead');
  }
  if (Object.hasOwn(o, 'numRequests') || Object.hasOwn(o, 'arrival')) return { kind: 'workload', workload: validateWorkload(o) };
  throw new Error('unknown file: expected a servelab saved run, a servelab trace ({"format": "servelab-trace"}) or a workload spec');
}

/** Events one saved run holds at most. */
export const MAX_RUN_EVENTS = 1_000_000;
/** Longest saved-run name. */
export const MAX_RUN_NAME = 120;

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Engine settings shaped like the defaults: known keys only, each of its default's type (an
 * object default with keys is a nested setting; an empty one, a tenant -> number map). Checked
 * before validateEngineConfig, whose messages print the values.
 */
function settingsShapeProblems(v: unknown, like: Record<string, unknown>, path: string, what: string): Problem[] {
  if (!isPlainObject(v)) return [{ path, message: `${path} must be an object of ${what}, got ${show(v)}` }];
  const out: Problem[] = [];
  const keys = Object.keys(like);
  for (const key of Object.keys(v)) {
    const at = fieldPath(path, key);
    const value = v[key];
    if (!keys.includes(key)) {
      out.push({ path: at, message: `${at} is not one of the ${what} (known: ${keys.join(', ')})` });
      continue;
    }
    const def = like[key];
    if (isPlainObject(def) && Object.keys(def).length > 0) out.push(...settingsShapeProblems(value, def, at, `${key} settings`));
    else if (isPlainObject(def)) {
      if (!isPlainObject(value)) out.push({ path: at, message: `${at} must be an object (tenant -> number), got ${show(value)}` });
      else {
        for (const [tenant, x] of Object.entries(value)) {
          if (typeof x !== 'number') out.push({ path: fieldPath(at, tenant), message: `${at}: tenant ${show(tenant)} must map to a number, got ${show(x)}` });
        }
      }
    } else if (typeof value !== typeof def) out.push({ path: at, message: `${at} must be a ${typeof def}, got ${show(value)}` });
  }
  return out;
}

const DEFAULTS = DEFAULT_SCHEDULER_CONFIG as unknown as Record<string, unknown>;

/**
 * A saved engine configuration: known settings of the right types and, with
 * DEFAULT_SCHEDULER_CONFIG merged in (as the engine merges it), one validateEngineConfig accepts.
 */
function configProblems(v: unknown, path: string): Problem[] {
  const out = settingsShapeProblems(v, DEFAULTS, path, 'engine settings');
  if (!isPlainObject(v)) return out;
  // The engine's own check sees the well-shaped settings (and the defaults for the rest).
  const wellShaped = Object.entries(v).filter(([key, x]) => Object.hasOwn(DEFAULTS, key) && settingsShapeProblems({ [key]: x }, DEFAULTS, path, 'engine settings').length === 0);
  const merged = { ...DEFAULT_SCHEDULER_CONFIG, ...(Object.fromEntries(wellShaped) as Partial<SchedulerConfig>) };
  for (const p of validateEngineConfig(merged)) out.push({ path: `${path}.${p.key}`, message: `${path}: ${p.message}` });
  return out;
}

const int0: NumberSchema = { type: 'number', integer: true, min: 0, max: Number.MAX_SAFE_INTEGER };
const timeMs: NumberSchema = { type: 'number' };
const requestId: StringSchema = { type: 'string', minLength: 1, maxLength: MAX_ID_LENGTH };
const text = (maxLength: number): StringSchema => ({ type: 'string', maxLength });
const event = (fields: Record<string, Schema>): ObjectSchema => ({
  type: 'object',
  // Fields an event type may gain are the engine's to add; what replay and the views read is checked.
  unknownFields: 'allow',
  fields: { timeMs, ...fields },
});

const submittedRequest: Schema = {
  type: 'custom',
  describe: 'a request',
  check: (r, path) => {
    const out = validateRequestSpec(r, {}).map((p) => ({ path: p.field === 'request' ? path : `${path}.${p.field}`, message: `${path}: ${p.message}` }));
    const o = r as Record<string, unknown>;
    if (out.length === 0 && typeof o.requestId !== 'string') out.push({ path: `${path}.requestId`, message: `${path}.requestId is required: a submitted request has its id` });
    if (out.length === 0 && !(typeof o.arrivalMs === 'number' && Number.isFinite(o.arrivalMs))) out.push({ path: `${path}.arrivalMs`, message: `${path}.arrivalMs is required: a submitted request has its arrival time` });
    return out;
  },
};

const sampledPairs: Schema = {
  type: 'array',
  maxItems: 1_000_000,
  items: {
    type: 'custom',
    describe: 'a [seqId, tokenId] pair',
    check: (v, path) =>
      Array.isArray(v) && v.length === 2 && v.every((x) => Number.isSafeInteger(x) && (x as number) >= 0)
        ? []
        : [{ path, message: `${path} must be a [seqId, tokenId] pair of integers >= 0, got ${show(v)}` }],
  },
};

const draftTriples: Schema = {
  type: 'array',
  maxItems: 1_000_000,
  optional: true,
  items: {
    type: 'custom',
    describe: 'a [seqId, numDraftTokens, numAcceptedTokens] triple',
    check: (v, path) =>
      Array.isArray(v) && v.length === 3 && v.every((x) => Number.isSafeInteger(x) && (x as number) >= 0) && v[2] <= v[1]
        ? []
        : [{ path, message: `${path} must be a [seqId, numDraftTokens, numAcceptedTokens] triple of integers >= 0 with accepted <= drafts, got ${show(v)}` }],
  },
};

const EVENT_SCHEMA: Schema = {
  type: 'union',
  tag: 'type',
  why: 'an engine event',
  variants: {
    submit: event({ stepIndex: int0, request: submittedRequest }),
    cancel: event({ stepIndex: int0, requestId }),
    reconfigure: event({
      stepIndex: int0,
      // Checked against the running configuration when the replay applies them.
      changes: { type: 'custom', describe: 'engine setting changes', check: (v, path) => settingsShapeProblems(v, DEFAULTS, path, 'engine settings') },
    }),
    queued: event({ requestId }),
    rejected: event({ requestId, reason: text(100), detail: text(10_000) }),
    scheduled: event({ stepIndex: int0, requestId, numCachedTokens: int0, resumed: { type: 'boolean' } }),
    token: event({ requestId, seqId: int0, seqIndex: int0, tokenId: int0, index: int0 }),
    preempted: event({ stepIndex: int0, requestId, mode: text(100) }),
    finished: event({
      requestId,
      reasons: { type: 'array', maxItems: 1024, items: { type: 'literal', values: ['stop', 'length'] } },
      numOutputTokens: { type: 'array', maxItems: 1024, items: int0 },
    }),
    failed: event({ requestId, reason: text(100) }),
    stepFailed: event({ startMs: timeMs, stepIndex: int0, message: text(100_000) }),
    executorReplaced: event({ stepIndex: int0 }),
    adapterRegistered: event({
      stepIndex: int0,
      adapter: {
        type: 'object',
        fields: {
          name: requestId,
          rank: { type: 'number', integer: true, min: 1, max: MAX_LORA_RANK },
          scale: { type: 'number', min: -1e9, max: 1e9 },
        },
      },
    }),
    step: event({
      startMs: timeMs,
      stepIndex: int0,
      durationMs: { type: 'number', min: 0 },
      numSeqs: int0,
      numPrefillTokens: int0,
      numDecodeTokens: int0,
      numPaddingTokens: int0,
      sampled: sampledPairs,
      masks: {
        type: 'array',
        optional: true,
        maxItems: 1_000_000,
        items: {
          type: 'object',
          fields: {
            seqId: int0,
            requestId,
            ms: { type: 'number', min: 0, why: 'host ms the mask took' },
            numAllowed: int0,
            vocabSize: { type: 'number', integer: true, min: 1, why: 'the vocabulary the mask covers' },
          },
        },
      },
      drafts: draftTriples,
    }),
  },
};

const RUN_SCHEMA: ObjectSchema = {
  type: 'object',
  fields: {
    format: { type: 'literal', values: ['servelab-run'] },
    version: { type: 'literal', values: [1], why: 'the saved-run format this servelab reads' },
    id: { type: 'string', maxLength: 200, optional: true },
    name: { type: 'string', minLength: 1, maxLength: MAX_RUN_NAME },
    savedAt: { type: 'string', maxLength: 100, optional: true },
    modelName: { type: 'string', maxLength: 200, why: 'the model it ran on' },
    config: { type: 'custom', describe: 'the engine settings', check: configProblems },
    events: { type: 'array', maxItems: MAX_RUN_EVENTS, items: EVENT_SCHEMA, why: "the run's event log" },
  },
  refine: (o) => ((o.name as string).trim() === '' ? [{ path: 'name', message: 'name is blank: a saved run needs a name' }] : []),
};

/** Every problem of a saved run against RUN_SCHEMA, each with its path ([] when it is fine). */
export function runProblems(o: unknown): Problem[] {
  return check(RUN_SCHEMA, o, 'the saved run');
}

/**
 * A saved run from a file, checked whole: its fields, its configuration (complete after merging
 * the defaults, valid for the engine) and every event. Throws one Error naming every problem.
 */
export function validateRun(o: Record<string, unknown>): SavedRun {
  const problems = runProblems(o);
  if (problems.length > 0) throw new InvalidInputError('saved run', problems);
  const id = o.id;
  return {
    format: 'servelab-run',
    version: 1,
    id: typeof id === 'string' && /^[\w-]{1,64}$/.test(id) ? id : `import-${Date.now().toString(36)}`,
    name: (o.name as string).trim(),
    savedAt: typeof o.savedAt === 'string' ? o.savedAt : new Date().toISOString(),
    modelName: o.modelName as string,
    config: { ...DEFAULT_SCHEDULER_CONFIG, ...(o.config as Partial<SchedulerConfig>) },
    events: o.events as EngineEvent[],
  };
}

export { validateWorkload };
