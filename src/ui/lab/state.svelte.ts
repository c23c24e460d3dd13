/**
 * What the views render, accumulated on the main thread from the snapshots an engine hands up
 * (the real one in the worker, or the simulated one): the latest snapshot, a bounded history of
 * steps with a stable slot per sequence (the batch timeline), a time series of the gauges, and
 * one record per request that outlives the snapshot's window of recently ended requests.
 */
import { hsl } from 'd3';
import type { RequestView } from '../../engine/engine.ts';
import type { Decision } from '../../engine/events.ts';
import type { HostStatus, ModelSummary, StepRecord, StructuredView, ViewSnapshot } from '../../../workers/protocol.ts';

/** A snapshot from either engine: the simulated one has no host, no model file and no text. */
export type LabSnapshot = Omit<ViewSnapshot, 'host' | 'model'> & { host: HostStatus | null; model: ModelSummary | null };

export type CellKind = 'prefill' | 'decode' | 'pad';

/** One sequence's cell in one step of the timeline. */
export interface TimelineCell {
  slot: number;
  requestId: string;
  seqId: number;
  kind: CellKind;
  numTokens: number;
  /** First step of this sequence in this slot (a join). */
  joined: boolean;
  /** Speculative decoding: draft tokens verified in this cell, and how many were accepted (0 and 0 without). */
  numDraftTokens: number;
  numAcceptedTokens: number;
}

export interface TimelineColumn {
  stepIndex: number;
  startMs: number;
  durationMs: number;
  cells: TimelineCell[];
  numPaddingTokens: number;
  numCopies: number;
  numSwapOut: number;
  numSwapIn: number;
  /** Slots whose sequence finished / was preempted in this step. */
  finishedSlots: number[];
  preemptedSlots: number[];
  numRejected: number;
}

export interface SeriesPoint {
  tMs: number;
  ttftP50: number;
  ttftP99: number;
  tpotP50: number;
  e2eP50: number;
  tokensPerS: number;
  queueDepth: number;
  kvUsage: number;
  numRunning: number;
}

export interface RequestRecord {
  requestId: string;
  /** Arrival order on this engine (colour and sort key). */
  order: number;
  color: string;
  view: RequestView;
  texts: string[];
  prompt: string | null;
  /** Structured output: its format, compile figures and end-of-request JSON checks (null: free text, or a replay). */
  structured: StructuredView | null;
  /** Engine times of preemptions and of the following resumption (NaN while still out). */
  preemptions: { atMs: number; resumedMs: number }[];
  /** The scheduler's decisions naming this request, oldest first (the same words in a row are one entry). */
  decisions: DecisionRun[];
}

/** One decision about a request, or the same decision repeated over consecutive steps ('waits'). */
export interface DecisionRun {
  kind: Decision['kind'];
  reason: string;
  /** The step records that carried it: the first and the last, and how many. */
  fromStep: number;
  toStep: number;
  count: number;
}

export interface LabStateOptions {
  /** Steps kept for the timeline and the step inspector (default 600). */
  maxSteps?: number;
  /** Take each request's colour and order from this state where it knows the request (a recording's views match the live ones). */
  orderFrom?: LabState;
}

export interface LatencySamples {
  ttftMs: number[];
  tpotMs: number[];
  e2eMs: number[];
}

const MAX_COLUMNS = 600;
const MAX_SERIES = 400;
const MAX_RECORDS = 2000;
const ENDED = new Set(['finished', 'failed', 'rejected']);

/** Each LabState gets its own runIds, so a view handed another state sees a new run. */
let nextRunId = 0;

/** A stable, distinct colour per request: golden-angle hues. */
export function requestColor(order: number): string {
  return hsl((order * 137.508 + 200) % 360, 0.62, 0.56).formatHex();
}

export class LabState {
  snap = $state.raw<LabSnapshot | null>(null);
  columns = $state.raw<TimelineColumn[]>([]);
  series = $state.raw<SeriesPoint[]>([]);
  requests = $state.raw<RequestRecord[]>([]);
  /** The step records behind `columns` (same steps, same order): what the step inspector shows. */
  steps = $state.raw<StepRecord[]>([]);
  samples = $state.raw<LatencySamples>({ ttftMs: [], tpotMs: [], e2eMs: [] });
  /** Max slots ever used (the timeline's rows). */
  numSlotsUsed = $state(0);
  /** Changed by reset(), so views drop their own per-run memory (animations, hover); unique across states. */
  runId = $state(nextRunId++);
  /**
   * The least time between two updates the frame governor allows (0: every frame). Views
   * animate frame by frame only while this is short; otherwise their animations advance with
   * the updates, so frames stay smooth on a machine where each repaint is expensive.
   */
  updateIntervalMs = $state(0);

  private records = new Map<string, RequestRecord>();
  private seqToRequest = new Map<number, string>();
  private slotOfSeq = new Map<number, number>();
  private lastSeenStep = new Map<number, number>();
  private padSlots = new Set<number>();
  private lastStepIndex = 0;
  private nextOrder = 0;
  private counted = new Set<string>();
  private readonly maxSteps: number;
  private readonly orderFrom: LabState | null;

  constructor(options: LabStateOptions = {}) {
    this.maxSteps = options.maxSteps ?? MAX_COLUMNS;
    this.orderFrom = options.orderFrom ?? null;
  }

  get lastStep(): number {
    return this.lastStepIndex;
  }

  reset(): void {
    this.snap = null;
    this.columns = [];
    this.steps = [];
    this.series = [];
    this.requests = [];
    this.samples = { ttftMs: [], tpotMs: [], e2eMs: [] };
    this.numSlotsUsed = 0;
    this.records.clear();
    this.seqToRequest.clear();
    this.slotOfSeq.clear();
    this.lastSeenStep.clear();
    this.padSlots.clear();
    this.counted.clear();
    this.lastStepIndex = 0;
    this.nextOrder = 0;
    this.runId = nextRunId++;
  }

  record(requestId: string): RequestRecord | undefined {
    return this.records.get(requestId);
  }

  /** Colour of a sequence's request (grey when unknown). */
  colorOfSeq(seqId: number): string {
    const id = this.seqToRequest.get(seqId);
    return (id && this.records.get(id)?.color) || '#888888';
  }

  requestOfSeq(seqId: number): string | undefined {
    return this.seqToRequest.get(seqId);
  }

  /** The record of step k, if it is among the steps kept. */
  stepRecord(k: number): StepRecord | undefined {
    const steps = this.steps;
    if (steps.length === 0) return undefined;
    const guess = steps[k - steps[0].stepIndex];
    return guess?.stepIndex === k ? guess : steps.find((st) => st.stepIndex === k);
  }

  ingest(s: LabSnapshot): void {
    const byId = new Map<string, RequestView>();
    const source = this.orderFrom;
    // New requests in the source's order, so a recording's table lists them as the live one does.
    const incoming = source ? [...s.requests].sort((a, b) => (source.record(a.requestId)?.order ?? Infinity) - (source.record(b.requestId)?.order ?? Infinity)) : s.requests;
    for (const r of incoming) {
      byId.set(r.requestId, r);
      let rec = this.records.get(r.requestId);
      if (!rec) {
        const known = source?.record(r.requestId);
        const order = known ? known.order : this.nextOrder;
        this.nextOrder = Math.max(this.nextOrder, order + 1);
        rec = { requestId: r.requestId, order, color: known?.color ?? requestColor(order), view: r, texts: [], prompt: null, structured: null, preemptions: [], decisions: [] };
        this.records.set(r.requestId, rec);
      }
      for (const seqId of r.seqIds) this.seqToRequest.set(seqId, r.requestId);
      // A new object per update: the views' keyed lists see the change.
      rec = { ...rec, view: r, texts: s.texts[r.requestId] ?? rec.texts, prompt: s.prompts[r.requestId] ?? rec.prompt, structured: s.structured?.[r.requestId] ?? rec.structured };
      this.records.set(r.requestId, rec);
    }
    if (s.recentSteps.length > 0) {
      const cols = this.columns.slice();
      const steps = this.steps.slice();
      const withDecisions = new Set<string>();
      for (const st of s.recentSteps) {
        if (st.stepIndex <= this.lastStepIndex) continue;
        cols.push(this.column(st, s));
        steps.push(st);
        this.noteDecisions(st, withDecisions);
        this.lastStepIndex = st.stepIndex;
      }
      if (cols.length > this.maxSteps) cols.splice(0, cols.length - this.maxSteps);
      if (steps.length > this.maxSteps) steps.splice(0, steps.length - this.maxSteps);
      this.columns = cols;
      this.steps = steps;
    }
    this.observeSamples(byId);
    if (this.records.size > MAX_RECORDS) {
      for (const [id, rec] of this.records) {
        if (!ENDED.has(rec.view.state)) continue;
        this.records.delete(id);
        if (this.records.size <= MAX_RECORDS * 0.8) break;
      }
    }
    this.requests = [...this.records.values()];
    const m = s.metrics;
    const last = this.series[this.series.length - 1];
    if (!last || s.nowMs - last.tMs >= 100 || s.nowMs < last.tMs) {
      const point: SeriesPoint = {
        tMs: s.nowMs,
        ttftP50: m.ttftMs.p50,
        ttftP99: m.ttftMs.p99,
        tpotP50: m.tpotMs.p50,
        e2eP50: m.e2eMs.p50,
        tokensPerS: m.prefillTokensPerS + m.decodeTokensPerS,
        queueDepth: s.queues.waiting.length + s.queues.swapped.length,
        kvUsage: m.kvUsage,
        numRunning: s.queues.running.length,
      };
      const series = this.series.length >= MAX_SERIES ? this.series.slice(1) : this.series.slice();
      series.push(point);
      this.series = series;
    }
    this.snap = s;
  }

  /** Files each decision of the step under its request (a repeat of the last one in words extends it). */
  private noteDecisions(st: StepRecord, copied: Set<string>): void {
    for (const d of st.decisions ?? []) {
      let rec = this.records.get(d.requestId);
      if (!rec) continue;
      if (!copied.has(d.requestId)) {
        // A fresh record and list once per update: records already handed to the views stay as they were.
        rec = { ...rec, decisions: rec.decisions.slice() };
        this.records.set(d.requestId, rec);
        copied.add(d.requestId);
      }
      const list = rec.decisions;
      const last = list[list.length - 1];
      if (last && last.kind === d.kind && last.reason === d.reason) list[list.length - 1] = { ...last, toStep: st.stepIndex, count: last.count + 1 };
      else list.push({ kind: d.kind, reason: d.reason, fromStep: st.stepIndex, toStep: st.stepIndex, count: 1 });
    }
  }

  private observeSamples(byId: Map<string, RequestView>): void {
    let changed = false;
    const next: LatencySamples = { ttftMs: this.samples.ttftMs, tpotMs: this.samples.tpotMs, e2eMs: this.samples.e2eMs };
    for (const [id, r] of byId) {
      if (r.state !== 'finished' || this.counted.has(id)) continue;
      this.counted.add(id);
      if (!changed) {
        next.ttftMs = next.ttftMs.slice();
        next.tpotMs = next.tpotMs.slice();
        next.e2eMs = next.e2eMs.slice();
        changed = true;
      }
      if (Number.isFinite(r.firstTokenMs)) next.ttftMs.push(r.firstTokenMs - r.arrivalMs);
      if (Number.isFinite(r.finishedMs)) next.e2eMs.push(r.finishedMs - r.arrivalMs);
      const numOut = Math.max(...r.outputTokenIds.map((o) => o.length), 0);
      if (numOut > 1 && Number.isFinite(r.firstTokenMs)) next.tpotMs.push((r.finishedMs - r.firstTokenMs) / (numOut - 1));
    }
    if (changed) this.samples = next;
  }

  /** Places one step's sequences in slots (a sequence keeps its slot while it lives). */
  private column(st: StepRecord, s: LabSnapshot): TimelineColumn {
    const isStatic = s.config.batching === 'static';
    const cells: TimelineCell[] = [];
    const present = new Set<number>();
    for (const q of st.seqs) {
      present.add(q.seqId);
      this.seqToRequest.set(q.seqId, q.requestId);
      let slot = this.slotOfSeq.get(q.seqId);
      const joined = slot === undefined;
      if (slot === undefined) {
        slot = this.freeSlot();
        this.slotOfSeq.set(q.seqId, slot);
        this.padSlots.delete(slot);
      }
      this.lastSeenStep.set(q.seqId, st.stepIndex);
      const kind: CellKind = q.numPrefillTokens > 0 ? 'prefill' : 'decode';
      cells.push({
        slot,
        requestId: q.requestId,
        seqId: q.seqId,
        kind,
        numTokens: q.numPrefillTokens + q.numDecodeTokens,
        joined,
        numDraftTokens: q.numDraftTokens ?? 0,
        numAcceptedTokens: q.numAcceptedTokens ?? 0,
      });
    }
    const finishedSlots: number[] = [];
    const preemptedSlots: number[] = [];
    const ended = new Set(st.finished);
    const preempted = new Set(st.preempted);
    for (const [seqId, slot] of [...this.slotOfSeq]) {
      const requestId = this.seqToRequest.get(seqId) ?? '';
      const rec = this.records.get(requestId);
      const gone = ended.has(requestId);
      if (preempted.has(requestId)) {
        preemptedSlots.push(slot);
        this.slotOfSeq.delete(seqId);
        const p = rec?.preemptions;
        if (p) p.push({ atMs: st.startMs, resumedMs: NaN });
      } else if (gone) {
        finishedSlots.push(slot);
        this.slotOfSeq.delete(seqId);
        if (isStatic) this.padSlots.add(slot);
      } else if (!present.has(seqId) && st.stepIndex - (this.lastSeenStep.get(seqId) ?? st.stepIndex) > 8) {
        this.slotOfSeq.delete(seqId);
      }
    }
    for (const q of st.seqs) {
      const rec = this.records.get(q.requestId);
      const open = rec?.preemptions[rec.preemptions.length - 1];
      if (open && Number.isNaN(open.resumedMs) && open.atMs < st.startMs) open.resumedMs = st.startMs;
    }
    if (isStatic) {
      // A static batch holds its slots until every member is done: finished members ride along as padding.
      if (this.slotOfSeq.size === 0) this.padSlots.clear();
      else for (const slot of this.padSlots) cells.push({ slot, requestId: '', seqId: -1, kind: 'pad', numTokens: 0, joined: false, numDraftTokens: 0, numAcceptedTokens: 0 });
    } else {
      this.padSlots.clear();
    }
    let maxSlot = this.numSlotsUsed;
    for (const c of cells) maxSlot = Math.max(maxSlot, c.slot + 1);
    if (maxSlot !== this.numSlotsUsed) this.numSlotsUsed = maxSlot;
    return {
      stepIndex: st.stepIndex,
      startMs: st.startMs,
      durationMs: st.durationMs,
      cells,
      numPaddingTokens: st.numPaddingTokens,
      numCopies: st.numCopies,
      numSwapOut: st.numSwapOut,
      numSwapIn: st.numSwapIn,
      finishedSlots,
      preemptedSlots,
      numRejected: st.rejected.length,
    };
  }

  private freeSlot(): number {
    const used = new Set(this.slotOfSeq.values());
    for (const p of this.padSlots) used.add(p);
    let slot = 0;
    while (used.has(slot)) slot++;
    return slot;
  }
}
