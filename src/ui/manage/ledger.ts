/**
 * The page's own account of every request it handed to an engine worker, so none is ever
 * silently lost: not when the engine preempts it, not when the GPU device is lost, not when the
 * worker itself dies (the worker's memory, and its event log, die with it). Plain TS, no DOM.
 *
 * Each entry ends in exactly one outcome: finished, failed (with a reason) or rejected. Entries
 * of a worker that died are failed with reason 'worker_crashed' at the moment the page learns it.
 */
import type { RequestView } from '../../engine/engine.ts';
import type { StreamEvent } from '../../../workers/protocol.ts';

export type LedgerState = 'submitted' | 'pending' | 'waiting' | 'running' | 'swapped' | 'finished' | 'failed' | 'rejected';

export interface LedgerEntry {
  requestId: string;
  /** Which worker (1, 2, ... after restarts) served it. */
  workerGeneration: number;
  /** The prompt text, when it was submitted as text. */
  prompt: string | null;
  /** Streamed text of the first sequence. */
  text: string;
  state: LedgerState;
  /** Finish, fail or reject reason once ended. */
  reason: string | null;
  message: string | null;
  numPreemptions: number;
  numOutputTokens: number;
  source: 'prompt' | 'workload' | 'trace' | 'fault';
}

export const TERMINAL: ReadonlySet<LedgerState> = new Set(['finished', 'failed', 'rejected']);

export class RequestLedger {
  private readonly entries = new Map<string, LedgerEntry>();
  /** Bumped on every change (for views that poll). */
  version = 0;

  add(requestId: string, workerGeneration: number, source: LedgerEntry['source'], prompt: string | null = null): LedgerEntry {
    const key = ledgerKey(workerGeneration, requestId);
    const existing = this.entries.get(key);
    if (existing) return existing;
    const e: LedgerEntry = { requestId, workerGeneration, prompt, text: '', state: 'submitted', reason: null, message: null, numPreemptions: 0, numOutputTokens: 0, source };
    this.entries.set(key, e);
    this.version++;
    return e;
  }

  get(workerGeneration: number, requestId: string): LedgerEntry | undefined {
    return this.entries.get(ledgerKey(workerGeneration, requestId));
  }

  /** Streamed text and outcomes of requests submitted as text. */
  onStream(workerGeneration: number, e: StreamEvent): void {
    const entry = this.get(workerGeneration, e.requestId);
    if (!entry || TERMINAL.has(entry.state)) return;
    if (e.type === 'text') {
      if (e.seqIndex === 0) entry.text += e.delta;
      if (entry.state === 'submitted' || entry.state === 'waiting') entry.state = 'running';
    } else if (e.type === 'done') {
      entry.text = e.texts[0] ?? entry.text;
      entry.state = 'finished';
      entry.reason = e.reasons.join(' ');
    } else {
      entry.state = isRejectReason(e.reason) ? 'rejected' : 'failed';
      entry.reason = e.reason;
      entry.message = e.message;
    }
    this.version++;
  }

  /** States from an engine snapshot (live requests and recently ended ones). */
  onSnapshot(workerGeneration: number, requests: readonly RequestView[], texts: Record<string, string[]> = {}): void {
    for (const r of requests) {
      const entry = this.get(workerGeneration, r.requestId);
      if (!entry) continue;
      if (TERMINAL.has(entry.state)) {
        // Ended already (its stream said so first): only the final counts come from the engine.
        if (TERMINAL.has(r.state) && entry.reason !== 'worker_crashed') {
          entry.numPreemptions = r.numPreemptions;
          entry.numOutputTokens = Math.max(0, ...r.outputTokenIds.map((t) => t.length));
          this.version++;
        }
        continue;
      }
      entry.numPreemptions = r.numPreemptions;
      entry.numOutputTokens = Math.max(0, ...r.outputTokenIds.map((t) => t.length));
      const t = texts[r.requestId]?.[0];
      if (t !== undefined && t.length >= entry.text.length) entry.text = t;
      entry.state = r.state;
      if (TERMINAL.has(r.state)) entry.reason = r.endReason;
      this.version++;
    }
  }

  /**
   * The worker of this generation is gone: every request it had that had not ended fails now.
   * Returns how many.
   */
  failGeneration(workerGeneration: number, reason: string, message: string): number {
    let n = 0;
    for (const e of this.entries.values()) {
      if (e.workerGeneration !== workerGeneration || TERMINAL.has(e.state)) continue;
      e.state = 'failed';
      e.reason = reason;
      e.message = message;
      n++;
    }
    if (n > 0) this.version++;
    return n;
  }

  list(): LedgerEntry[] {
    return [...this.entries.values()];
  }

  /** How many requests are in each state; `total` equals the sum of the others. */
  counts(): Record<LedgerState | 'total' | 'inFlight', number> {
    const c: Record<LedgerState | 'total' | 'inFlight', number> = { submitted: 0, pending: 0, waiting: 0, running: 0, swapped: 0, finished: 0, failed: 0, rejected: 0, total: 0, inFlight: 0 };
    for (const e of this.entries.values()) {
      c[e.state]++;
      c.total++;
      if (!TERMINAL.has(e.state)) c.inFlight++;
    }
    return c;
  }

  clear(): void {
    this.entries.clear();
    this.version++;
  }
}

/** One key per request per worker (request ids restart with each worker). */
export const ledgerKey = (generation: number, requestId: string) => `${generation}/${requestId}`;

const REJECT_REASONS = new Set(['queue_full', 'tenant_quota', 'prompt_too_long', 'exceeds_kv_capacity', 'deadline_unmeetable', 'invalid']);
function isRejectReason(reason: string): boolean {
  return REJECT_REASONS.has(reason);
}
