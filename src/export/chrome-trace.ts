/**
 * A run's event log as a Chrome / Perfetto trace (the Trace Event Format, JSON object form):
 * open it in ui.perfetto.dev or chrome://tracing. One process, "servelab engine"; thread 0 is the
 * "engine steps" track (one complete event per step, from when it was scheduled to when its
 * tokens were sampled); every request gets its own track with its phases as complete events:
 *
 *   queued     arrival (or re-queueing) -> scheduled
 *   prefill    scheduled -> its first sampled token (after a recompute preemption: "recompute")
 *   decode     first token of a stint -> finished / failed / preempted
 *   preempted  preempted -> scheduled again ("preempted (swap)" while its KV sits in CPU memory)
 *
 * and an instant event where it ended (finished, failed, rejected). Counters track the batch.
 * Times are microseconds from the log's first event; the engine clock is in milliseconds.
 */
import type { EngineEvent } from '../engine/events.ts';

export interface TraceEvent {
  name: string;
  ph: 'X' | 'i' | 'M' | 'C';
  /** Microseconds. */
  ts: number;
  /** Microseconds ('X' only). */
  dur?: number;
  pid: number;
  tid: number;
  cat?: string;
  /** Instant event scope ('i' only): thread. */
  s?: 't';
  args?: Record<string, unknown>;
}

export interface ChromeTrace {
  traceEvents: TraceEvent[];
  displayTimeUnit: 'ms';
  otherData: Record<string, string | number>;
}

export const ENGINE_PID = 1;
export const STEPS_TID = 0;

type Phase = 'queued' | 'prefill' | 'recompute' | 'decode' | 'preempted' | 'preempted (swap)';

interface Open {
  phase: Phase;
  startMs: number;
  numTokens: number;
}

interface Track {
  tid: number;
  open: Open | null;
  /** Mode of the last preemption: decides what the next stint starts with. */
  lastPreemption: 'recompute' | 'swap' | 'abort' | null;
  ended: boolean;
}

const us = (ms: number, t0: number) => Math.round((ms - t0) * 1000 * 1000) / 1000;

export function chromeTrace(events: readonly EngineEvent[], meta: Record<string, string | number> = {}): ChromeTrace {
  const out: TraceEvent[] = [];
  const t0 = events.length > 0 ? Math.min(...events.map((e) => ('startMs' in e ? e.startMs : e.timeMs))) : 0;
  const tracks = new Map<string, Track>();
  let lastMs = t0;

  out.push({ name: 'process_name', ph: 'M', ts: 0, pid: ENGINE_PID, tid: STEPS_TID, args: { name: 'servelab engine' } });
  out.push({ name: 'thread_name', ph: 'M', ts: 0, pid: ENGINE_PID, tid: STEPS_TID, args: { name: 'engine steps' } });
  out.push({ name: 'thread_sort_index', ph: 'M', ts: 0, pid: ENGINE_PID, tid: STEPS_TID, args: { sort_index: 0 } });

  /** A slice on the engine-steps track, from the step's start to its end (or failure). */
  const stepSlice = (name: string, e: { startMs: number; timeMs: number }, args: Record<string, unknown>): TraceEvent => ({
    name,
    cat: 'engine',
    ph: 'X',
    ts: us(e.startMs, t0),
    dur: Math.max(0, us(e.timeMs, t0) - us(e.startMs, t0)),
    pid: ENGINE_PID,
    tid: STEPS_TID,
    args,
  });

  const track = (requestId: string): Track => {
    let t = tracks.get(requestId);
    if (!t) {
      t = { tid: tracks.size + 1, open: null, lastPreemption: null, ended: false };
      tracks.set(requestId, t);
      out.push({ name: 'thread_name', ph: 'M', ts: 0, pid: ENGINE_PID, tid: t.tid, args: { name: `request ${requestId}` } });
      out.push({ name: 'thread_sort_index', ph: 'M', ts: 0, pid: ENGINE_PID, tid: t.tid, args: { sort_index: t.tid } });
    }
    return t;
  };
  const close = (t: Track, endMs: number, args: Record<string, unknown> = {}) => {
    const o = t.open;
    if (!o) return;
    t.open = null;
    const a: Record<string, unknown> = { ...args };
    if (o.phase === 'decode' || o.phase === 'prefill' || o.phase === 'recompute') a.numTokens = o.numTokens;
    out.push({ name: o.phase, cat: 'request', ph: 'X', ts: us(o.startMs, t0), dur: Math.max(0, us(endMs, t0) - us(o.startMs, t0)), pid: ENGINE_PID, tid: t.tid, args: a });
  };
  const begin = (t: Track, phase: Phase, startMs: number) => {
    close(t, startMs);
    t.open = { phase, startMs, numTokens: 0 };
  };
  const end = (t: Track, e: { timeMs: number }, name: string, args: Record<string, unknown>) => {
    close(t, e.timeMs);
    t.ended = true;
    out.push({ name, cat: 'request', ph: 'i', s: 't', ts: us(e.timeMs, t0), pid: ENGINE_PID, tid: t.tid, args });
  };

  for (const e of events) {
    lastMs = Math.max(lastMs, e.timeMs);
    switch (e.type) {
      case 'submit':
        track(e.request.requestId);
        break;
      case 'queued':
        begin(track(e.requestId), 'queued', e.timeMs);
        break;
      case 'scheduled': {
        const t = track(e.requestId);
        const phase: Phase = !e.resumed ? 'prefill' : t.lastPreemption === 'swap' ? 'decode' : 'recompute';
        begin(t, phase, e.timeMs);
        break;
      }
      case 'token': {
        const t = track(e.requestId);
        if (!t.open) break;
        if (t.open.phase === 'prefill' || t.open.phase === 'recompute') {
          // The prefill ends where its first token is sampled; that token opens the decode stint.
          close(t, e.timeMs, e.index === 0 ? { firstToken: true } : {});
          t.open = { phase: 'decode', startMs: e.timeMs, numTokens: 1 };
        } else if (t.open.phase === 'decode') {
          t.open.numTokens++;
        }
        break;
      }
      case 'preempted': {
        const t = track(e.requestId);
        t.lastPreemption = e.mode;
        close(t, e.timeMs, { preemptedBy: e.mode });
        if (e.mode !== 'abort') begin(t, e.mode === 'swap' ? 'preempted (swap)' : 'preempted', e.timeMs);
        break;
      }
      case 'finished':
        end(track(e.requestId), e, 'finished', { reasons: e.reasons, numOutputTokens: e.numOutputTokens });
        break;
      case 'failed':
        end(track(e.requestId), e, `failed: ${e.reason}`, { reason: e.reason });
        break;
      case 'rejected':
        end(track(e.requestId), e, `rejected: ${e.reason}`, { reason: e.reason, detail: e.detail });
        break;
      case 'cancel':
        out.push({ name: 'cancel', cat: 'input', ph: 'i', s: 't', ts: us(e.timeMs, t0), pid: ENGINE_PID, tid: track(e.requestId).tid, args: {} });
        break;
      case 'reconfigure':
        out.push({ name: 'reconfigure', cat: 'input', ph: 'i', s: 't', ts: us(e.timeMs, t0), pid: ENGINE_PID, tid: STEPS_TID, args: { ...e.changes } });
        break;
      case 'adapterRegistered':
        out.push({ name: `adapter ${e.adapter.name} registered`, cat: 'input', ph: 'i', s: 't', ts: us(e.timeMs, t0), pid: ENGINE_PID, tid: STEPS_TID, args: { ...e.adapter } });
        break;
      case 'stepFailed':
        out.push(stepSlice(`step ${e.stepIndex} failed`, e, { stepIndex: e.stepIndex, message: e.message }));
        break;
      case 'executorReplaced':
        out.push({ name: 'executor replaced (requests recomputed)', cat: 'engine', ph: 'i', s: 't', ts: us(e.timeMs, t0), pid: ENGINE_PID, tid: STEPS_TID, args: {} });
        break;
      case 'step':
        out.push(
          stepSlice(`step ${e.stepIndex}`, e, {
            stepIndex: e.stepIndex,
            executorMs: e.durationMs,
            numSeqs: e.numSeqs,
            numPrefillTokens: e.numPrefillTokens,
            numDecodeTokens: e.numDecodeTokens,
            numPaddingTokens: e.numPaddingTokens,
          }),
        );
        out.push({ name: 'batch', ph: 'C', ts: us(e.startMs, t0), pid: ENGINE_PID, tid: STEPS_TID, args: { prefillTokens: e.numPrefillTokens, decodeTokens: e.numDecodeTokens } });
        break;
    }
  }
  // Requests still in flight when the log was taken: their open phase runs to the last event.
  for (const t of tracks.values()) if (t.open) close(t, lastMs, { unfinished: true });
  return { traceEvents: out, displayTimeUnit: 'ms', otherData: { generator: 'servelab', ...meta } };
}

/** Structural check of the Trace Event Format subset written here (used by tests and imports). */
export function validateChromeTrace(data: unknown): string[] {
  const problems: string[] = [];
  if (typeof data !== 'object' || data === null) return ['not a JSON object'];
  const events = (data as { traceEvents?: unknown }).traceEvents;
  if (!Array.isArray(events)) return ['traceEvents is not an array'];
  events.forEach((e: Partial<TraceEvent>, i) => {
    const where = `traceEvents[${i}]`;
    if (typeof e !== 'object' || e === null) return problems.push(`${where} is not an object`);
    if (typeof e.name !== 'string') problems.push(`${where}.name is not a string`);
    if (!['X', 'i', 'M', 'C'].includes(e.ph as string)) problems.push(`${where}.ph ${String(e.ph)} is not a known phase`);
    if (typeof e.ts !== 'number' || !Number.isFinite(e.ts) || e.ts < 0) problems.push(`${where}.ts is not a time`);
    if (!Number.isInteger(e.pid) || !Number.isInteger(e.tid)) problems.push(`${where} needs integer pid and tid`);
    if (e.ph === 'X' && (typeof e.dur !== 'number' || !(e.dur >= 0))) problems.push(`${where}.dur is not a duration`);
    return undefined;
  });
  return problems;
}
