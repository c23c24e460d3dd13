/**
 * The Guide's proof: for each entry, the figure that makes its point, computed from the run the
 * entry's "Show me" opened (the lab's engine, compare mode's two engines, the simulated mode, the
 * calculator's inputs, a simulated fleet's results) — never written in advance. Null while the run
 * has not yet produced what the figure needs. Pure: no DOM, no Svelte; each figure says which
 * clock its times are on (the engine clock, SIMULATED time, or plain arithmetic).
 */
import type { LabSnapshot, RequestRecord, SeriesPoint, TimelineColumn } from '../lab/state.svelte.ts';
import type { StepRecord } from '../../../workers/protocol.ts';
import type { CalcSetup, SimDeployment } from '../lab/url.ts';
import { FLEET_PRESET_IDS, type FleetPresetId, type FleetResult } from '../../sim/fleet/types.ts';
import { huntEvidence, presetFinding } from '../../sim/fleet/analysis.ts';
import type { StepCost } from '../../sim/costModel.ts';
import { HARDWARE_PRESETS, MODEL_PRESETS } from '../../sim/presets.ts';
import { kvBytesPerToken, kvCapacity } from '../../sim/kvCalculator.ts';
import { scenarioById } from '../lab/scenarios.ts';
import { formatBytes, formatMs } from '../format.ts';
import type { GuideEntry } from './entries.ts';

/** Which clock a figure's times are on. */
export type FigureClock = 'engine clock' | 'SIMULATED' | 'arithmetic';

export interface GuideFigure {
  text: string;
  clock: FigureClock;
}

/** What a figure reads of one engine's run (a LabState has all of it). */
export interface RunSource {
  snap: LabSnapshot | null;
  requests: readonly RequestRecord[];
  /** Timeline columns, oldest first (a bounded window of the latest steps). */
  columns: readonly TimelineColumn[];
  steps: readonly StepRecord[];
  series: readonly SeriesPoint[];
}

/** The simulated mode's run and its deployment. */
export interface SimSource {
  run: RunSource;
  deployment: SimDeployment;
  lastCost: StepCost | null;
}

/** One simulated layout's headline numbers (kept when the user tries another layout). */
export interface SimLayoutResult {
  tensorParallel: number;
  pipelineParallel: number;
  tokPerS: number;
  ttftP50Ms: number;
  numFinished: number;
  virtualS: number;
}

export interface FleetSource {
  presetId: string;
  runs: readonly { label: string; result: FleetResult }[];
}

/** Everything the app can hand the figures; a source absent from the view on screen is null. */
export interface GuideSources {
  /** The lab's engine and the scenario it runs (scenarioId null: a custom workload or your prompts). */
  lab: { run: RunSource; scenarioId: string | null } | null;
  /** Compare mode's two engines and the scenario they run. */
  compare: { a: RunSource; b: RunSource; scenarioId: string | null } | null;
  calc: CalcSetup | null;
  sim: SimSource | null;
  /** Layouts simulated earlier while this entry was shown (not the current one). */
  simEarlier: readonly SimLayoutResult[];
  fleet: FleetSource | null;
}

// ---- helpers ----

const pct = (x: number, digits = 0) => `${(100 * x).toFixed(digits)}%`;
const ratio = (x: number) => (x >= 10 ? x.toFixed(0) : x.toFixed(1));
const int = (n: number) => Math.round(n).toLocaleString('en-US');
const plural = (n: number, word: string, many = `${word}s`) => `${int(n)} ${n === 1 ? word : many}`;
const secs = (s: number) => (Number.isFinite(s) ? `${s.toFixed(s >= 10 ? 1 : 2)} s` : '—');
/** Small sums (a few requests' bills): four decimals. */
const usd4 = (x: number) => `$${x.toFixed(4)}`;

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Generated tokens per second of engine time since the first arrival (compare mode's figure). */
export function tokensPerSecond(run: RunSource): number {
  const snap = run.snap;
  if (!snap || run.requests.length === 0) return NaN;
  const first = Math.min(...run.requests.map((r) => r.view.arrivalMs));
  const seconds = (snap.nowMs - first) / 1000;
  return seconds > 0 ? snap.metrics.totalGenerationTokens / seconds : NaN;
}

const finished = (run: RunSource) => run.requests.filter((r) => r.view.state === 'finished');
const outputLength = (r: RequestRecord) => Math.max(0, ...r.view.outputTokenIds.map((o) => o.length));
const e2eMs = (r: RequestRecord) => r.view.finishedMs - r.view.arrivalMs;
const ttftMs = (r: RequestRecord) => r.view.firstTokenMs - r.view.arrivalMs;
const sum = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0);

function compareLabels(scenarioId: string): { a: string; b: string } {
  const s = scenarioById(scenarioId);
  return { a: s?.compare.a.label ?? 'A', b: s?.compare.b.label ?? 'B' };
}

// ---- the figures, one per entry ----

/** Sequences doing work per step (padding excluded), over the steps the timeline holds. */
export function meanWorkingSeqs(run: RunSource): number {
  const cols = run.columns;
  if (cols.length === 0) return NaN;
  return sum(cols.map((c) => c.cells.filter((x) => x.kind !== 'pad').length)) / cols.length;
}

/**
 * 1: how full each side keeps its batch, and once both sides have finished half their requests,
 * the throughput ratio (earlier it swings with whoever happens to be prefilling).
 */
export function throughputFigure(a: RunSource, b: RunSource, scenarioId: string): GuideFigure | null {
  if (!a.snap || !b.snap || a.columns.length < 2 || b.columns.length < 2) return null;
  const l = compareLabels(scenarioId);
  const wa = meanWorkingSeqs(a);
  const wb = meanWorkingSeqs(b);
  const pad = sum(a.columns.map((c) => c.cells.filter((x) => x.kind === 'pad').length)) / a.columns.length;
  const slots = a.snap.config.maxNumSeqs;
  const total = scenarioById(scenarioId)?.workload.numRequests ?? Infinity;
  const half = Math.min(a.snap.metrics.numFinished, b.snap.metrics.numFinished) >= total / 2;
  const ta = tokensPerSecond(a);
  const tb = tokensPerSecond(b);
  const tput =
    half && ta > 0 && tb > 0
      ? ` With ${Math.min(a.snap.metrics.numFinished, b.snap.metrics.numFinished)} of ${total} requests done on both, ${l.b} batching gave ${ratio(tb / ta)}× the throughput of ${l.a}: ${tb.toFixed(0)} vs ${ta.toFixed(0)} generated tokens/s.`
      : ' The throughput ratio follows once both sides have finished half the requests.';
  return {
    text:
      `Sequences at work per step (of ${slots} slots): ${l.b} ${wb.toFixed(1)}, ${l.a} ${wa.toFixed(1)}${pad > 0 ? ` plus ${pad.toFixed(1)} finished ones riding along as padding` : ''} (steps ${a.columns.length} and ${b.columns.length}).` +
      tput,
    clock: 'engine clock',
  };
}

/** 2: the short requests' median end-to-end time on each side. */
export function shortRequestsFigure(a: RunSource, b: RunSource, scenarioId: string): GuideFigure | null {
  const sc = scenarioById(scenarioId);
  const out = sc?.workload.outputTokens;
  if (!sc || out?.kind !== 'bimodal') return null;
  // Short: closer to the short mode than to the long one (geometric mean of the two lengths).
  const cut = Math.sqrt(out.short * out.long);
  const shortOf = (run: RunSource) => finished(run).filter((r) => outputLength(r) <= cut);
  const sa = shortOf(a);
  const sb = shortOf(b);
  if (sa.length === 0 || sb.length === 0) return null;
  const ma = median(sa.map(e2eMs));
  const mb = median(sb.map(e2eMs));
  const l = compareLabels(scenarioId);
  return {
    text:
      `Short requests (≤ ${Math.floor(cut)} tokens) finished in a median ${formatMs(ma)} with ${l.a} batching vs ${formatMs(mb)} with ${l.b}` +
      ` — ${ratio(Math.max(ma, mb) / Math.min(ma, mb))}× ${mb <= ma ? 'faster' : 'slower'} with ${l.b} (${sa.length} and ${sb.length} finished so far).`,
    clock: 'engine clock',
  };
}

/** 3: the highest-priority tenant's TTFT under each policy, and the preemptions paid for it. */
export function priorityFigure(a: RunSource, b: RunSource, scenarioId: string): GuideFigure | null {
  const sc = scenarioById(scenarioId);
  const tenants = sc?.workload.tenants;
  if (!sc || !tenants?.length || !a.snap || !b.snap) return null;
  const top = [...tenants].sort((x, y) => (x.priority ?? 0) - (y.priority ?? 0))[0].name;
  const ttfts = (run: RunSource) => run.requests.filter((r) => r.view.tenant === top && Number.isFinite(r.view.firstTokenMs)).map(ttftMs);
  const ta = ttfts(a);
  const tb = ttfts(b);
  if (ta.length === 0 || tb.length === 0) return null;
  const l = compareLabels(scenarioId);
  return {
    text:
      `"${top}" TTFT median: ${formatMs(median(ta))} under ${l.a} vs ${formatMs(median(tb))} under ${l.b};` +
      ` preemptions: ${int(a.snap.metrics.numPreemptions)} under ${l.a}, ${int(b.snap.metrics.numPreemptions)} under ${l.b} (${ta.length} and ${tb.length} of its requests started).`,
    clock: 'engine clock',
  };
}

/** 5: the KV arithmetic for the calculator's model and deployment. */
export function kvArithmeticFigure(c: CalcSetup): GuideFigure | null {
  const model = MODEL_PRESETS[c.modelId];
  const hw = HARDWARE_PRESETS[c.hardwareId];
  if (!model || !hw) return null;
  const perToken = kvBytesPerToken(model, c.bytesPerElement);
  const ctx = Math.max(1, Math.min(model.maxModelLen, c.contextTokens));
  const cap = kvCapacity(model, hw, { tensorParallel: c.tensorParallel, pipelineParallel: c.pipelineParallel, bytesPerKvElement: c.bytesPerElement });
  const devices = c.tensorParallel * c.pipelineParallel;
  const fit = cap.fitsWeights
    ? `on ${devices}× ${hw.name} the weights take ${formatBytes(cap.weightBytesPerDevice)} per device and leave room for ${int(cap.numKvTokens)} KV tokens: ${int(Math.floor(cap.numKvTokens / ctx))} sequences of ${int(ctx)} tokens at once.`
    : `on ${devices}× ${hw.name} the weights alone (${formatBytes(cap.weightBytesPerDevice)} per device) do not fit.`;
  return {
    text: `${model.name}: 2 × ${model.numLayers} layers × ${model.numKvHeads} KV heads × ${model.headDim} × ${c.bytesPerElement} B = ${int(perToken)} B per token; ${int(ctx)} tokens = ${formatBytes(perToken * ctx)} per sequence; ${fit}`,
    clock: 'arithmetic',
  };
}

/** 6: how full the paged blocks in use are, against a contiguous max-length reservation. */
export function pagingFigure(run: RunSource): GuideFigure | null {
  const snap = run.snap;
  if (!snap) return null;
  const running = new Set(snap.queues.running);
  const numSeqs = sum(run.requests.filter((r) => running.has(r.requestId)).map((r) => r.view.seqIds.length));
  const { refCount, numFilled } = snap.gpuBlocks;
  let used = 0;
  let filled = 0;
  for (let i = 0; i < refCount.length; i++) {
    if (refCount[i] <= 0) continue;
    used++;
    filled += numFilled[i];
  }
  if (numSeqs === 0 || used === 0) return null;
  const bs = snap.config.blockSize;
  const maxLen = snap.config.maxModelLen;
  const pool = refCount.length * bs;
  const reserved = numSeqs * maxLen;
  return {
    text:
      `Now ${plural(numSeqs, 'sequence')} hold ${int(filled)} tokens of K/V in ${plural(used, 'block')} of ${bs}: ${pct(filled / (used * bs))} of those slots filled.` +
      ` Reserving max_model_len = ${int(maxLen)} tokens for each would take ${int(reserved)} slots, ${ratio(reserved / pool)}× the ${int(pool)} of the whole pool.`,
    clock: 'engine clock',
  };
}

/** 7: shared blocks, their reference counts, copy-on-write copies. */
export function sharingFigure(run: RunSource): GuideFigure | null {
  const snap = run.snap;
  if (!snap) return null;
  let shared = 0;
  let maxRef = 0;
  let saved = 0;
  for (const rc of snap.gpuBlocks.refCount) {
    if (rc > 1) {
      shared++;
      saved += rc - 1;
    }
    maxRef = Math.max(maxRef, rc);
  }
  const copies = sum(run.columns.map((c) => c.numCopies));
  if (shared === 0 && copies === 0) return null;
  return {
    text:
      `Now ${plural(shared, 'block is', 'blocks are')} shared (up to ${maxRef} sequences on one block), saving ${plural(saved, 'block')};` +
      ` ${plural(copies, 'copy-on-write copy', 'copy-on-write copies')} in the last ${plural(run.columns.length, 'step')}` +
      (snap.metrics.prefixCacheHitRate > 0 ? `; prefix-cache hit rate ${pct(snap.metrics.prefixCacheHitRate)}.` : '.'),
    clock: 'engine clock',
  };
}

/** 8: what running out of KV memory cost each preemption mode. */
export function kvFullFigure(a: RunSource, b: RunSource, scenarioId: string): GuideFigure | null {
  if (!a.snap || !b.snap) return null;
  const ma = a.snap.metrics;
  const mb = b.snap.metrics;
  if (ma.numPreemptions + mb.numPreemptions === 0) return null;
  const l = compareLabels(scenarioId);
  const side = (label: string, run: RunSource, m: typeof ma) => {
    const out = sum(run.columns.map((c) => c.numSwapOut));
    const e2e = m.numFinished > 0 ? `, E2E p50 ${formatMs(m.e2eMs.p50)}` : '';
    return `${label}: ${plural(m.numPreemptions, 'preemption')}${out > 0 ? `, ${plural(out, 'block')} swapped out` : ''}, ${m.numFinished} finished${e2e}`;
  };
  return { text: `${side(l.a, a, ma)}; ${side(l.b, b, mb)}.`, clock: 'engine clock' };
}

/** The headline numbers of a simulated run (for the figure, and kept when the layout changes). */
export function simLayoutResult(sim: SimSource): SimLayoutResult | null {
  const snap = sim.run.snap;
  if (!snap || snap.nowMs <= 0 || snap.metrics.totalGenerationTokens === 0) return null;
  return {
    tensorParallel: sim.deployment.tensorParallel,
    pipelineParallel: sim.deployment.pipelineParallel,
    tokPerS: snap.metrics.totalGenerationTokens / (snap.nowMs / 1000),
    ttftP50Ms: snap.metrics.ttftMs.p50,
    numFinished: snap.metrics.numFinished,
    virtualS: snap.nowMs / 1000,
  };
}

const layout = (r: { tensorParallel: number; pipelineParallel: number }) => `TP ${r.tensorParallel} × PP ${r.pipelineParallel}`;

/** 9: the simulated layout's throughput and step cost, beside the layouts tried before it. */
export function parallelismFigure(sim: SimSource, earlier: readonly SimLayoutResult[]): GuideFigure | null {
  const now = simLayoutResult(sim);
  if (!now) return null;
  const model = MODEL_PRESETS[sim.deployment.modelId];
  const hw = HARDWARE_PRESETS[sim.deployment.hardwareId];
  const c = sim.lastCost;
  const step = c ? ` Last step ${formatMs(c.totalMs)}: communication ${formatMs(c.commMs)}${c.bubbleMs > 0 ? `, pipeline bubble ${formatMs(c.bubbleMs)}` : ''}.` : '';
  const others = earlier
    .filter((e) => e.tensorParallel !== now.tensorParallel || e.pipelineParallel !== now.pipelineParallel)
    .map((e) => `${layout(e)} gave ${e.tokPerS.toFixed(0)} tokens/s, TTFT p50 ${formatMs(e.ttftP50Ms)} (this layout: ${ratio(now.tokPerS / e.tokPerS)}× its throughput)`);
  return {
    text:
      `${model?.name ?? sim.deployment.modelId} on ${now.tensorParallel * now.pipelineParallel}× ${hw?.name ?? sim.deployment.hardwareId}, ${layout(now)}: ${now.tokPerS.toFixed(0)} generated tokens/s over ${now.virtualS.toFixed(1)} s, TTFT p50 ${formatMs(now.ttftP50Ms)}.` +
      step +
      (others.length ? ` Earlier: ${others.join('; ')}.` : ''),
    clock: 'SIMULATED',
  };
}

/** 14: JSON outputs that validate, and what the masks cost. */
export function structuredFigure(run: RunSource): GuideFigure | null {
  const json = run.requests.filter((r) => r.view.responseFormat !== null);
  const checks = json.flatMap((r) => r.structured?.checks ?? []);
  const masks = json.map((r) => r.view.mask).filter((m) => m !== null && m.numTokens > 0);
  if (checks.length === 0 && masks.length === 0) return null;
  const valid = checks.filter((c) => c.status === 'valid').length;
  const cut = checks.filter((c) => c.status === 'incomplete').length;
  const tokens = sum(masks.map((m) => m!.numTokens));
  const ms = sum(masks.map((m) => m!.totalMs));
  const fractions = masks.flatMap((m) => m!.allowedFractions);
  const free = run.requests.length - json.length;
  return {
    text:
      `${valid} of ${plural(checks.length, 'finished JSON output')} parse and match the schema${cut ? ` (${cut} cut off by max_tokens)` : ''};` +
      ` masks cost ${tokens > 0 ? formatMs(ms / tokens) : '—'} per token on the CPU over ${plural(tokens, 'token')}${fractions.length ? `, allowing ${pct(sum(fractions) / fractions.length, 1)} of the vocabulary on average` : ''}; ${plural(free, 'free-text request')} shared the batches.`,
    clock: 'engine clock',
  };
}

/** 16: adapters in one batch, and the slots' loads and evictions. */
export function loraFigure(run: RunSource): GuideFigure | null {
  const snap = run.snap;
  if (!snap) return null;
  const adapterOf = new Map(run.requests.map((r) => [r.requestId, r.view.adapter]));
  let best: (string | null)[] = [];
  for (const st of run.steps) {
    const set = new Set(st.seqs.map((q) => adapterOf.get(q.requestId) ?? null));
    if (set.size > best.length) best = [...set];
  }
  if (best.length === 0) return null;
  const named = best.filter((a): a is string => a !== null).sort();
  const base = best.includes(null);
  const { numLoads, numEvictions } = snap.loraStats;
  return {
    text:
      `Up to ${plural(named.length, 'adapter')} (${named.join(', ') || 'none'})${base ? ' and the base model' : ''} ran in one batch;` +
      ` with ${plural(snap.config.maxLoras, 'adapter slot')} the engine made ${plural(numLoads, 'adapter load')} and ${plural(numEvictions, 'eviction')} so far.`,
    clock: 'engine clock',
  };
}

/** 17: draft acceptance and time per output token with and without speculation. */
export function speculativeFigure(a: RunSource, b: RunSource, scenarioId: string): GuideFigure | null {
  if (!a.snap || !b.snap) return null;
  const spec = b.snap.metrics.spec;
  if (spec.numDraftTokens === 0) return null;
  const l = compareLabels(scenarioId);
  const ta = a.snap.metrics.tpotMs.p50;
  const tb = b.snap.metrics.tpotMs.p50;
  const tpot = Number.isFinite(ta) && Number.isFinite(tb) ? ` TPOT p50 ${formatMs(ta)} with ${l.a} vs ${formatMs(tb)} with ${l.b} (${ratio(ta / tb)}×).` : ' TPOT comes with the first finished requests.';
  return {
    text: `${l.b}: ${pct(spec.acceptanceRate)} of ${plural(spec.numDraftTokens, 'draft token')} accepted, ${spec.meanAcceptedLength.toFixed(2)} tokens per verification step.${tpot}`,
    clock: 'engine clock',
  };
}

/** 18: KV blocks and concurrency bought by smaller weights. */
export function quantizationFigure(a: RunSource, b: RunSource, scenarioId: string): GuideFigure | null {
  if (!a.snap || !b.snap || a.series.length === 0 || b.series.length === 0) return null;
  const peak = (run: RunSource) => Math.max(0, ...run.series.map((p) => p.numRunning));
  const pa = peak(a);
  const pb = peak(b);
  if (pa === 0 || pb === 0) return null;
  const l = compareLabels(scenarioId);
  const ka = a.snap.config.numGpuBlocks;
  const kb = b.snap.config.numGpuBlocks;
  return {
    text: `${l.b}: ${ratio(kb / ka)}× the KV blocks of ${l.a} (${kb} vs ${ka}); up to ${pb} sequences ran at once vs ${pa} so far.`,
    clock: 'engine clock',
  };
}

// ---- fleet figures (SIMULATED) ----

/**
 * The preset's point with the figures of its runs: the fleet core's finding (presetFinding, one
 * owner of what each preset shows), then what the entry adds from the same results. Null when the
 * runs are not the preset's own (the finding refuses them).
 */
function fleetFigure(f: FleetSource, extra: (results: FleetResult[]) => string): GuideFigure | null {
  if (!isFleetPresetId(f.presetId) || f.runs.length === 0) return null;
  const results = f.runs.map((r) => r.result);
  let finding: string;
  try {
    finding = presetFinding(f.presetId, results);
  } catch (e) {
    if (e instanceof RangeError) return null;
    throw e;
  }
  const more = extra(results);
  return { text: more ? `${finding} ${more}` : finding, clock: 'SIMULATED' };
}

const isFleetPresetId = (id: string): id is FleetPresetId => (FLEET_PRESET_IDS as readonly string[]).includes(id);

/** 4: the two pools, what consolidating them would cost, and that no request crossed pools. */
export function twoModelsFigure(f: FleetSource): GuideFigure | null {
  return fleetFigure(f, ([r]) => {
    const modelOf = new Map(r.replicas.map((x) => [x.id, x.model]));
    const crossed = r.requests.filter((q) => q.replicas.some((id) => modelOf.get(id) !== q.model)).length;
    return `${crossed} of ${int(r.requests.length)} requests ran on a replica of another model.`;
  });
}

/** 10: fixed vs autoscaled through the spike, and what a cold start took. */
export function spikeFigure(f: FleetSource): GuideFigure | null {
  return fleetFigure(f, (results) => {
    const cold = results.flatMap((r) => r.replicas.filter((x) => x.createdS > 0).map((x) => x.coldStartS));
    return cold.length ? `Each new replica took ${secs(median(cold))} (median) from the order to serving.` : '';
  });
}

/** 11: per-tenant bills, quota refusals, the fleet's cost per million tokens. */
export function billingFigure(f: FleetSource): GuideFigure | null {
  return fleetFigure(f, ([r]) => {
    const bills = [...r.billing.tenants].sort((x, y) => y.usd - x.usd).map((t) => `${t.tenant} ${usd4(t.usd)} (${int(t.promptTokens)} prompt, ${int(t.cachedPromptTokens)} cached, ${int(t.generatedTokens)} generated tokens)`);
    return `Bills: ${bills.join('; ')}.`;
  });
}

/** 12: what a spot loss did to the requests in flight. */
export function spotLossFigure(f: FleetSource): GuideFigure | null {
  return fleetFigure(f, (results) => {
    const parts = f.runs.map(({ label }, i) => {
      const s = results[i].summary;
      const failed = results[i].requests.filter((q) => q.finishReason === 'failed').length;
      return `${label} — ${s.numCompleted} of ${s.numRequests} completed, ${failed} failed with a reason`;
    });
    return `${parts.join('; ')}.`;
  });
}

/**
 * 13: the regression itself, measured in this run — not its cause: the strip must not give the
 * hunt away (the fleet view's "Reveal the cause" shows the answer with the run's figures).
 */
export function p99HuntFigure(f: FleetSource): GuideFigure | null {
  if (f.presetId !== 'p99-hunt' || f.runs.length !== 1) return null;
  const r = f.runs[0].result;
  const e = huntEvidence(r);
  if (!e || !Number.isFinite(e.p99TtftS.before) || !Number.isFinite(e.p99TtftS.after)) return null;
  const s2 = (v: number) => `${v.toFixed(2)} s`;
  return {
    text:
      `In this run P99 TTFT went from ${s2(e.p99TtftS.before)} before t = ${e.atS} s to ${s2(e.p99TtftS.after)} after (SLO ${s2(r.spec.sloTtftS)}); ` +
      `${e.numSlowestAfter} of the ${e.numSlowest} slowest requests arrived after t = ${e.atS} s. Find who and which phase in Slowest requests, then reveal the cause.`,
    clock: 'SIMULATED',
  };
}

/** 15: moderation's share of TTFT, and what the streams it stopped were billed. */
export function moderationFigure(f: FleetSource): GuideFigure | null {
  return fleetFigure(f, (results) => {
    const r = results.find((x) => x.spec.moderation);
    if (!r) return '';
    const started = r.requests.filter((q) => q.ttftS !== undefined && q.ttftS > 0);
    if (started.length === 0) return '';
    const mod = sum(started.map((q) => q.breakdown.moderationS)) / started.length;
    const ttft = sum(started.map((q) => q.ttftS ?? 0)) / started.length;
    const filtered = r.requests.filter((q) => q.finishReason === 'content_filter');
    return (
      `Moderation is ${formatMs(mod * 1000)} of a mean TTFT of ${formatMs(ttft * 1000)} (${pct(mod / ttft)}); ` +
      `the ${plural(filtered.length, 'stopped stream')} ${filtered.length === 1 ? 'was' : 'were'} billed ${usd4(sum(filtered.map((q) => q.billedUsd)))} together, for their prompts and the ${int(sum(filtered.map((q) => q.outputTokens)))} tokens generated before the stops.`
    );
  });
}

/** The figure for an entry from what the app runs now (null: the run has not given it yet, or another view is on screen). */
export function guideFigure(entry: GuideEntry, src: GuideSources): GuideFigure | null {
  const t = entry.target;
  switch (t.kind) {
    case 'compare': {
      const c = src.compare;
      if (!c || c.scenarioId !== t.scenarioId) return null;
      const f = COMPARE_FIGURES[entry.n];
      return f ? f(c.a, c.b, t.scenarioId) : null;
    }
    case 'lab': {
      const l = src.lab;
      if (!l || l.scenarioId !== t.scenarioId) return null;
      const f = LAB_FIGURES[entry.n];
      return f ? f(l.run) : null;
    }
    case 'calculator':
      return src.calc ? kvArithmeticFigure(src.calc) : null;
    case 'simulated':
      return src.sim ? parallelismFigure(src.sim, src.simEarlier) : null;
    case 'fleet': {
      const fl = src.fleet;
      if (!fl || fl.presetId !== t.presetId) return null;
      const f = FLEET_FIGURES[entry.n];
      return f ? f(fl) : null;
    }
  }
}

const COMPARE_FIGURES: Record<number, (a: RunSource, b: RunSource, scenarioId: string) => GuideFigure | null> = {
  1: throughputFigure,
  2: shortRequestsFigure,
  3: priorityFigure,
  8: kvFullFigure,
  17: speculativeFigure,
  18: quantizationFigure,
};
const LAB_FIGURES: Record<number, (run: RunSource) => GuideFigure | null> = { 6: pagingFigure, 7: sharingFigure, 14: structuredFigure, 16: loraFigure };
const FLEET_FIGURES: Record<number, (f: FleetSource) => GuideFigure | null> = { 4: twoModelsFigure, 10: spikeFigure, 11: billingFigure, 12: spotLossFigure, 13: p99HuntFigure, 15: moderationFigure };
