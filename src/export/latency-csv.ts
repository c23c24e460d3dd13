/**
 * Per-request latencies from a run's event log, and each request's fate. Times are on the
 * engine clock in milliseconds (the same clock as the event log and the Chrome trace).
 */
import type { EngineEvent } from '../engine/events.ts';

export type RequestOutcome = 'finished' | 'failed' | 'rejected' | 'in flight';

export interface RequestLatency {
  requestId: string;
  tenant: string;
  priority: number;
  n: number;
  numPromptTokens: number;
  /** Tokens of the longest sequence. */
  numOutputTokens: number;
  arrivalMs: number;
  firstScheduledMs: number | null;
  firstTokenMs: number | null;
  endMs: number | null;
  /** Arrival to first scheduled. */
  queueMs: number | null;
  /** Arrival to first token. */
  ttftMs: number | null;
  /** Arrival to end. */
  e2eMs: number | null;
  /** Mean time per output token after the first. */
  tpotMs: number | null;
  numPreemptions: number;
  outcome: RequestOutcome;
  /** Finish reasons, fail or reject reason. */
  reason: string;
}

/** Every submitted request, in submission order, with its latencies and how it ended. */
export function requestLatencies(events: readonly EngineEvent[]): RequestLatency[] {
  const rows = new Map<string, RequestLatency>();
  const numTokens = new Map<string, number[]>();
  for (const e of events) {
    if (e.type === 'submit') {
      const r = e.request;
      rows.set(r.requestId, {
        requestId: r.requestId,
        tenant: r.tenant ?? 'default',
        priority: r.priority ?? 0,
        n: r.n ?? 1,
        numPromptTokens: r.promptTokenIds.length,
        numOutputTokens: 0,
        arrivalMs: r.arrivalMs,
        firstScheduledMs: null,
        firstTokenMs: null,
        endMs: null,
        queueMs: null,
        ttftMs: null,
        e2eMs: null,
        tpotMs: null,
        numPreemptions: 0,
        outcome: 'in flight',
        reason: '',
      });
      continue;
    }
    if (!('requestId' in e)) continue;
    const row = rows.get(e.requestId);
    if (!row) continue;
    switch (e.type) {
      case 'scheduled':
        row.firstScheduledMs ??= e.timeMs;
        break;
      case 'token': {
        row.firstTokenMs ??= e.timeMs;
        const counts = numTokens.get(e.requestId) ?? [];
        counts[e.seqIndex] = Math.max(counts[e.seqIndex] ?? 0, e.index + 1);
        numTokens.set(e.requestId, counts);
        break;
      }
      case 'preempted':
        row.numPreemptions++;
        break;
      case 'finished':
        row.outcome = 'finished';
        row.endMs = e.timeMs;
        row.reason = e.reasons.join(' ');
        row.numOutputTokens = Math.max(0, ...e.numOutputTokens);
        break;
      case 'failed':
        row.outcome = 'failed';
        row.endMs = e.timeMs;
        row.reason = e.reason;
        break;
      case 'rejected':
        row.outcome = 'rejected';
        row.endMs = e.timeMs;
        row.reason = e.reason;
        break;
    }
  }
  for (const row of rows.values()) {
    if (row.outcome !== 'finished') row.numOutputTokens = Math.max(0, ...(numTokens.get(row.requestId) ?? [0]).map((x) => x ?? 0));
    if (row.firstScheduledMs !== null) row.queueMs = row.firstScheduledMs - row.arrivalMs;
    if (row.firstTokenMs !== null) row.ttftMs = row.firstTokenMs - row.arrivalMs;
    if (row.endMs !== null) row.e2eMs = row.endMs - row.arrivalMs;
    if (row.outcome === 'finished' && row.firstTokenMs !== null && row.endMs !== null && row.numOutputTokens > 1) {
      row.tpotMs = (row.endMs - row.firstTokenMs) / (row.numOutputTokens - 1);
    }
  }
  return [...rows.values()];
}

export const LATENCY_CSV_COLUMNS = [
  'request_id',
  'tenant',
  'priority',
  'n',
  'prompt_tokens',
  'output_tokens',
  'arrival_ms',
  'first_scheduled_ms',
  'first_token_ms',
  'end_ms',
  'queue_ms',
  'ttft_ms',
  'e2e_ms',
  'tpot_ms',
  'preemptions',
  'outcome',
  'reason',
] as const;

/** RFC 4180 field: quoted when it holds a comma, quote or line break; formula-leading text defused. */
function csvField(v: string | number | null): string {
  if (v === null) return '';
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : v.toFixed(3);
  // A spreadsheet would run a cell starting with = + - @ as a formula: prefix a quote.
  const text = /^[=+\-@\t\r]/.test(v) ? `'${v}` : v;
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/** One header line, then one line per request (submission order); CRLF line ends. */
export function latencyCsv(events: readonly EngineEvent[]): string {
  const lines = [LATENCY_CSV_COLUMNS.join(',')];
  for (const r of requestLatencies(events)) {
    lines.push(
      [
        r.requestId,
        r.tenant,
        r.priority,
        r.n,
        r.numPromptTokens,
        r.numOutputTokens,
        r.arrivalMs,
        r.firstScheduledMs,
        r.firstTokenMs,
        r.endMs,
        r.queueMs,
        r.ttftMs,
        r.e2eMs,
        r.tpotMs,
        r.numPreemptions,
        r.outcome,
        r.reason,
      ]
        .map(csvField)
        .join(','),
    );
  }
  return lines.join('\r\n') + '\r\n';
}
