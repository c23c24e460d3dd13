/**
 * Guided tours: for each scenario, three to six moments found in the run itself (the first
 * step in which a finished request's slot rides along as padding under static batching, the
 * first preemption and its reason, the first prefix-cache hit...). A TourWatcher is fed every
 * step record in order, with a snapshot taken at or after that step, and says when the next
 * moment happens: the lab then pauses, highlights the view named by the moment and shows its
 * text, with the number that shows it, taken from this run. Pure: no DOM, testable in Node.
 *
 * The page pulls snapshots less often than a software GPU runs steps, so it hands the watcher
 * several steps with the latest snapshot, up to a few steps late. A detector whose moment is a
 * passing state (the KV pool full, the request that just finished) reads the step record and the
 * watcher's memory, which are exact; the snapshot serves lasting or growing state (requests
 * finished, tenants' TTFTs, a shared prefix block). tests/unit/ui/tour.test.ts runs every tour
 * handed over that way, its arrivals paced as the lab paces them, with steps 0.02x to 4x the
 * reference time: the same moments at the same steps.
 */
import type { EngineSnapshot, RequestView, StepRecord } from '../../engine/engine.ts';

/** The view a moment points at (each panel carries data-tour-target with one of these). */
export type TourTarget = 'kv-grid' | 'slot-timeline' | 'latency-panel' | 'request-table' | 'step-inspector';

export interface TourMoment {
  /** Stable id within the scenario's tour. */
  id: string;
  /** The step it was found at. */
  stepIndex: number;
  target: TourTarget;
  title: string;
  /** One or two sentences, with this run's numbers. */
  text: string;
}

/** What a detector may read about the engine as of a step. */
export type TourSnapshot = Pick<EngineSnapshot, 'nowMs' | 'stepIndex' | 'metrics' | 'queues' | 'requests' | 'gpuBlocks' | 'fairShareCounters'>;

/** What the watcher remembers across steps (detectors read and write it). */
interface TourMemory {
  /** Requests that ended, in the order their steps recorded it (this step's included). */
  finishedIds: string[];
  numPaddingTokens: number;
  firstAdmitStep: number;
  preempted: Map<string, number>;
  marks: Record<string, number>;
}

interface Detector {
  id: string;
  target: TourTarget;
  title: string;
  /** The moment's text when it happens at this step, else null (asked only while it is the next moment). */
  find(step: StepRecord, snap: TourSnapshot, mem: TourMemory): string | null;
  /** Keeps what it needs from every step, also before its turn (after find, for the same step). */
  track?(step: StepRecord, mem: TourMemory): void;
}

const ms = (v: number) => (Number.isFinite(v) ? (v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v.toFixed(v < 10 ? 1 : 0)} ms`) : '—');
const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
const admitted = (step: StepRecord) => step.decisions.filter((d) => d.kind === 'admitted');
const kvCount = (step: StepRecord, type: string) => step.kvEvents.filter((e) => e.type === type).length;
const ended = (r: RequestView) => r.state === 'finished' || r.state === 'failed' || r.state === 'rejected';
const median = (xs: number[]) => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const ttftsOf = (reqs: readonly RequestView[]) => reqs.filter((r) => Number.isFinite(r.firstTokenMs)).map((r) => r.firstTokenMs - r.arrivalMs);

/** The run's headline numbers, on the engine clock (the closing moment of every tour). */
const wrapUp: Detector = {
  id: 'summary',
  target: 'latency-panel',
  title: 'The run in numbers',
  find: (_step, snap) => {
    const live = snap.queues.running.length + snap.queues.waiting.length + snap.queues.swapped.length + snap.queues.pending;
    if (live > 0) return null;
    const m = snap.metrics;
    const seconds = snap.nowMs / 1000;
    const tokPerS = seconds > 0 ? m.totalGenerationTokens / seconds : NaN;
    return (
      `All requests have ended: ${m.numFinished} finished${m.numRejected ? `, ${m.numRejected} rejected` : ''}${m.numPreemptions ? `, ${plural(m.numPreemptions, 'preemption')}` : ''}. ` +
      `On the engine clock: ${Number.isFinite(tokPerS) ? tokPerS.toFixed(0) : '—'} generated tokens/s, TTFT p50 ${ms(m.ttftMs.p50)}, E2E p50 ${ms(m.e2eMs.p50)} (pauses and slow motion are not counted).`
    );
  },
};

/** The first preemption, in the scheduler's words (the inspector shows the step it happened in). */
function firstPreemption(title: string, after: string): Detector {
  return {
    id: 'first-preemption',
    target: 'step-inspector',
    title,
    find: (step, _snap, mem) => {
      const d = step.decisions.find((x) => x.kind === 'preempted');
      if (!d) return null;
      mem.preempted.set(d.requestId, step.stepIndex);
      return `${d.reason}.${after ? ` ${after}` : ''}`;
    },
  };
}

const TOURS: Record<string, Detector[]> = {
  'static-vs-continuous': [
    {
      id: 'batch-formed',
      target: 'kv-grid',
      title: 'A static batch forms',
      find: (step, _snap, mem) => {
        const a = admitted(step);
        if (a.length < 2) return null;
        mem.firstAdmitStep = step.stepIndex;
        return `${a.length} requests were admitted together as one batch. Each reserved its worst-case KV memory up front (${plural(kvCount(step, 'allocated'), 'block')} allocated in this step), however short its answer turns out.`;
      },
    },
    {
      id: 'waits-for-batch',
      target: 'request-table',
      title: 'New arrivals wait for the whole batch',
      find: (step) => step.decisions.find((d) => d.kind === 'waits' && d.reason.includes('static batch to drain'))?.reason.replace(/^(\S+) waits: waiting/, '$1 waits') ?? null,
    },
    {
      id: 'padding',
      target: 'slot-timeline',
      title: 'Finished, but still in the batch',
      find: (step, _snap, mem) => {
        const decoding = step.seqs.some((s) => s.numDecodeTokens > 0);
        // A static batch starts once the previous one has wholly ended, so the request that ended
        // last is one of this batch's (the padding is its finished members).
        const done = mem.finishedIds.at(-1);
        if (!decoding || step.numPaddingTokens === 0 || done === undefined) return null;
        return `${done} has finished, yet its slot rides along as padding until the longest member ends: ${plural(step.numPaddingTokens, 'padded slot')} in step ${step.stepIndex} compute nothing useful (grey in the timeline).`;
      },
    },
    {
      id: 'next-batch',
      target: 'slot-timeline',
      title: 'Only now does the next batch start',
      track: (step, mem) => {
        mem.numPaddingTokens += step.numPaddingTokens;
      },
      find: (step, _snap, mem) => {
        if (mem.firstAdmitStep < 0 || step.stepIndex <= mem.firstAdmitStep || admitted(step).length === 0) return null;
        return `The first batch has drained; ${plural(admitted(step).length, 'request')} start${admitted(step).length === 1 ? 's' : ''} now. Until here ${plural(mem.numPaddingTokens, 'slot-step')} went to padding. Continuous batching (Compare) refills a slot the step after it frees.`;
      },
    },
    wrapUp,
  ],
  'short-vs-long': [
    {
      id: 'short-passes-long',
      target: 'slot-timeline',
      title: 'A short request passes a long one',
      find: (step, snap) => {
        const done = snap.requests.find((r) => r.state === 'finished' && step.finished.includes(r.requestId));
        if (!done) return null;
        const older = snap.requests.find((r) => r.state === 'running' && r.arrivalMs < done.arrivalMs);
        if (!older) return null;
        return `${done.requestId} finished after ${plural(done.outputTokenIds[0]?.length ?? 0, 'token')} while ${older.requestId}, which arrived earlier, keeps decoding: with continuous batching nobody waits for the longest request.`;
      },
    },
    {
      id: 'long-keeps-going',
      target: 'request-table',
      title: 'Many short requests come and go',
      find: (_step, snap) => {
        const running = snap.requests.filter((r) => r.state === 'running');
        if (running.length === 0) return null;
        const long = running.reduce((a, b) => ((b.outputTokenIds[0]?.length ?? 0) > (a.outputTokenIds[0]?.length ?? 0) ? b : a));
        const passed = snap.requests.filter((r) => r.state === 'finished' && r.arrivalMs > long.arrivalMs).length;
        if (passed < 3) return null;
        return `${passed} requests that arrived after ${long.requestId} have already finished, while ${long.requestId} is still decoding (${plural(long.outputTokenIds[0]?.length ?? 0, 'token')} so far).`;
      },
    },
    {
      id: 'tpot-flat',
      target: 'latency-panel',
      title: 'Time per output token stays flat',
      find: (_step, snap) => {
        const m = snap.metrics;
        if (m.numFinished < 8) return null;
        return `${m.numFinished} requests done. TPOT p50 ${ms(m.tpotMs.p50)}, p90 ${ms(m.tpotMs.p90)}: the long requests do not slow the short ones down, and TTFT p50 is ${ms(m.ttftMs.p50)}.`;
      },
    },
    wrapUp,
  ],
  'priority-preemption': [
    firstPreemption('Memory runs out: a preemption', 'Its KV blocks are freed; it will be recomputed later.'),
    {
      id: 'resumed',
      target: 'kv-grid',
      title: 'The victim comes back',
      find: (step, _snap, mem) => {
        const d = step.decisions.find((x) => x.kind === 'resumed' && mem.preempted.has(x.requestId));
        if (!d) return null;
        return `${d.requestId} resumed in step ${step.stepIndex}, ${plural(step.stepIndex - mem.preempted.get(d.requestId)!, 'step')} after it was preempted: ${d.reason.replace(/^\S+ resumed \(recomputes its tokens\): /, '')}. Recompute costs prefill work but no memory while it waits.`;
      },
    },
    {
      id: 'tenant-ttft',
      target: 'request-table',
      title: 'Interactive requests get their first token sooner',
      find: (_step, snap) => {
        const hi = ttftsOf(snap.requests.filter((r) => r.tenant === 'interactive'));
        const lo = ttftsOf(snap.requests.filter((r) => r.tenant === 'batch'));
        if (hi.length < 3 || lo.length < 3) return null;
        return `TTFT median so far: interactive (priority 0) ${ms(median(hi))}, batch (priority 1) ${ms(median(lo))}. Priority decides who is admitted first and who is preempted.`;
      },
    },
    wrapUp,
  ],
  'prefix-caching': [
    {
      id: 'first-hit',
      target: 'kv-grid',
      title: 'A prefix-cache hit',
      find: (step) => {
        const hits = step.kvEvents.filter((e) => e.type === 'cacheHit');
        if (hits.length === 0) return null;
        const who = step.decisions.find((d) => d.kind === 'admitted' && d.reason.includes('prefix cache'));
        return `${who ? `${who.requestId}'s` : 'A'} prompt starts with the shared system prompt: ${plural(hits.length, 'block')} came straight from the prefix cache, so those tokens need no prefill.`;
      },
    },
    {
      id: 'shared-block',
      target: 'kv-grid',
      title: 'One block, many readers',
      find: (_step, snap) => {
        const rc = snap.gpuBlocks.refCount;
        let best = -1;
        for (let b = 0; b < rc.length; b++) if (best < 0 || rc[b] > rc[best]) best = b;
        if (best < 0 || rc[best] < 3) return null;
        return `Block ${best} is read by ${rc[best]} sequences at once (its reference count): the system prompt's K/V is stored once, not ${rc[best]} times.`;
      },
    },
    {
      id: 'hit-rate',
      target: 'latency-panel',
      title: 'What the cache saved',
      find: (_step, snap) => {
        const m = snap.metrics;
        if (m.numFinished < 8) return null;
        return `${(m.prefixCacheHitRate * 100).toFixed(0)}% of prompt tokens so far were served from the prefix cache (${m.numPrefixHitTokens} of ${m.numPrefixQueryTokens}); TTFT p50 is ${ms(m.ttftMs.p50)}.`;
      },
    },
    wrapUp,
  ],
  'kv-exhausted': [
    {
      id: 'memory-short',
      target: 'kv-grid',
      title: 'The KV pool is full',
      find: (step) => step.decisions.find((d) => (d.kind === 'waits' || d.kind === 'preempted') && /free block/.test(d.reason))?.reason ?? null,
    },
    firstPreemption('A preemption, and why this victim', ''),
    {
      id: 'resumed',
      target: 'slot-timeline',
      title: 'Back in the batch',
      find: (step, _snap, mem) => {
        const d = step.decisions.find((x) => (x.kind === 'resumed' || x.kind === 'swappedIn') && mem.preempted.has(x.requestId));
        if (!d) return null;
        return `${d.reason} — ${plural(step.stepIndex - mem.preempted.get(d.requestId)!, 'step')} after it was preempted.`;
      },
    },
    wrapUp,
  ],
  'traffic-spike': [
    {
      id: 'first-rejection',
      target: 'request-table',
      title: 'Admission control says no',
      find: (step, snap) => {
        const d = step.decisions.find((x) => x.kind === 'rejected');
        return d ? `A burst arrived: ${d.reason}. ${snap.queues.running.length} running now; rejecting early keeps the queue, and everyone else's TTFT, bounded.` : null;
      },
    },
    {
      id: 'bounded',
      target: 'latency-panel',
      title: 'The queue stays bounded',
      find: (_step, snap) => {
        const m = snap.metrics;
        if (m.numFinished < 12) return null;
        return `${m.numFinished} served, ${plural(m.numRejected, 'request')} rejected at the door. The waiting queue never exceeds the cap of 6, so TTFT p90 stays at ${ms(m.ttftMs.p90)}; Compare shows the same burst without a cap.`;
      },
    },
    wrapUp,
  ],
  'parallel-sampling': [
    {
      id: 'fork',
      target: 'kv-grid',
      title: 'One prompt, four samples',
      find: (step) => {
        const shared = step.kvEvents.filter((e) => e.type === 'shared');
        return shared.length > 0 ? `The prompt was prefilled once; its ${plural(shared.length, 'block')} ${shared.length === 1 ? 'is' : 'are'} now shared by every sample (reference count 4 in the grid) instead of being copied.` : null;
      },
    },
    {
      id: 'copy-on-write',
      target: 'kv-grid',
      title: 'Copy-on-write',
      find: (step) => {
        const copied = step.kvEvents.find((e) => e.type === 'copied');
        return copied && copied.type === 'copied'
          ? `A sample wrote its first token into the shared, partly filled last block, so it got a private copy: block ${copied.srcBlockId} was copied to block ${copied.dstBlockId} (${plural(kvCount(step, 'copied'), 'copy')} in this step).`
          : null;
      },
    },
    {
      id: 'different-stories',
      target: 'request-table',
      title: 'Four different stories',
      find: (_step, snap) => {
        const r = snap.requests.find((x) => x.state === 'finished' && x.n > 1);
        if (!r) return null;
        const distinct = new Set(r.outputTokenIds.map((t) => t.join(','))).size;
        return `${r.requestId} finished with ${r.n} samples, ${distinct} of them different (temperature 0.8, seeds differ per sample). Click it to read them.`;
      },
    },
    wrapUp,
  ],
  'structured-output': [
    {
      id: 'first-mask',
      target: 'step-inspector',
      title: 'A token mask',
      find: (step) => {
        const m = step.masks?.[0];
        if (!m) return null;
        const others = step.seqs.filter((q) => !step.masks!.some((x) => x.seqId === q.seqId)).length;
        return `${m.requestId} must follow its JSON schema: before sampling, ${m.numAllowed} of ${m.vocabSize} tokens (${((100 * m.numAllowed) / m.vocabSize).toFixed(1)}%) were allowed, the rest masked out, in ${m.ms.toFixed(3)} ms. ${plural(others, 'other row')} in this step sampled freely.`;
      },
    },
    {
      id: 'mixed-batch',
      target: 'slot-timeline',
      title: 'Constrained and free rows share a step',
      find: (step) => {
        const masked = new Set((step.masks ?? []).map((m) => m.seqId));
        const free = step.seqs.filter((q) => q.numDecodeTokens > 0 && !masked.has(q.seqId)).length;
        if (masked.size < 2 || free < 1) return null;
        const ms = (step.masks ?? []).reduce((a, m) => a + m.ms, 0);
        return `Step ${step.stepIndex} decodes ${plural(masked.size, 'constrained row')} beside ${plural(free, 'free row')}: the masks cost ${ms.toFixed(3)} ms on the CPU in a ${step.durationMs.toFixed(1)} ms step; the free rows are untouched.`;
      },
    },
    {
      id: 'json-done',
      target: 'request-table',
      title: 'A JSON answer ends itself',
      find: (_step, snap) => {
        const r = snap.requests.find((x) => x.state === 'finished' && x.responseFormat && x.endReason === 'stop' && x.mask);
        if (!r) return null;
        const m = r.mask!;
        return `${r.requestId} closed its JSON and the grammar then allowed only the end-of-text token: it finished (stop) after ${r.outputTokenIds[0].length} tokens, ${(m.totalMs / Math.max(1, m.numTokens)).toFixed(3)} ms of masking per token. Click it to see the validated JSON.`;
        },
      },
      wrapUp,
    ],
  'speculative-decoding': [
    {
      id: 'first-drafts',
      target: 'slot-timeline',
      title: 'Drafts verified in the same step',
      find: (step) => {
        const v = step.seqs.find((x) => (x.numDraftTokens ?? 0) > 0);
        if (!v) return null;
        const k = v.numDraftTokens!;
        const a = v.numAcceptedTokens ?? 0;
        return `In step ${step.stepIndex} ${v.requestId} ran its newest token plus ${plural(k, 'draft token')} found earlier in its own text, ${k + 1} rows in one forward pass. ${a} matched the model, so it gained ${plural(a + 1, 'token')} this step (green ticks accepted, red rejected).`;
      },
    },
    {
      id: 'rollback',
      target: 'kv-grid',
      title: 'A rejected draft is rolled back',
      find: (step) => {
        const v = step.seqs.find((x) => (x.numDraftTokens ?? 0) > (x.numAcceptedTokens ?? 0));
        if (!v) return null;
        const rejected = v.numDraftTokens! - (v.numAcceptedTokens ?? 0);
        const freed = kvCount(step, 'freed');
        return `${v.requestId}'s draft ${(v.numAcceptedTokens ?? 0) + 1} of ${v.numDraftTokens} did not match in step ${step.stepIndex}: the K/V of its ${plural(rejected, 'rejected draft')} is discarded by moving its computed-token count back${freed > 0 ? `, and ${plural(freed, 'block')} that held only them went back to the pool` : ''}. Nothing rejected reaches the prefix cache.`;
      },
    },
    {
      id: 'acceptance',
      target: 'latency-panel',
      title: 'Acceptance by position',
      find: (_step, snap) => {
        const sp = snap.metrics.spec;
        if (sp.numDrafts < 20) return null;
        const byPos = sp.draftsPerPos.map((n, i) => `${Math.round((100 * sp.acceptedPerPos[i]) / n)}%`).join(', ');
        return `${sp.numAcceptedTokens} of ${sp.numDraftTokens} draft tokens accepted so far (${Math.round(100 * sp.acceptanceRate)}%); by position ${byPos}: a later draft counts only if every one before it matched. A verification yields ${sp.meanAcceptedLength.toFixed(2)} tokens on average instead of 1.`;
      },
    },
    wrapUp,
  ],
  fairness: [
    {
      id: 'light-served',
      target: 'request-table',
      title: 'The light tenant is not crowded out',
      find: (step, snap) => {
        const d = admitted(step).find((x) => snap.requests.find((r) => r.requestId === x.requestId)?.tenant === 'light');
        const heavyWaiting = snap.requests.filter((r) => r.tenant === 'heavy' && r.state === 'waiting').length;
        return d && heavyWaiting > 0 ? `${d.requestId} from tenant "light" is admitted while ${plural(heavyWaiting, 'request')} from "heavy" wait${heavyWaiting === 1 ? 's' : ''}: the fair policy serves the tenant that has received least.` : null;
      },
    },
    {
      id: 'counters',
      target: 'latency-panel',
      title: 'Virtual token counters',
      find: (_step, snap) => {
        const c = snap.fairShareCounters;
        if (c.heavy === undefined || c.light === undefined || snap.metrics.numFinished < 4) return null;
        return `Counters now: heavy ${c.heavy.toFixed(0)}, light ${c.light.toFixed(0)} (weighted tokens served). The tenant with the smaller counter goes next.`;
      },
    },
    {
      id: 'tenant-ttft',
      target: 'request-table',
      title: 'TTFT by tenant',
      find: (_step, snap) => {
        const heavy = ttftsOf(snap.requests.filter((r) => r.tenant === 'heavy'));
        const light = ttftsOf(snap.requests.filter((r) => r.tenant === 'light'));
        if (heavy.length < 4 || light.length < 2) return null;
        return `TTFT median so far: light ${ms(median(light))}, heavy ${ms(median(heavy))}, although heavy sends four times as many requests.`;
      },
    },
    wrapUp,
  ],
  'lora-tenants': [
    {
      id: 'lora-load',
      target: 'kv-grid',
      title: 'An adapter is loaded into a slot',
      find: (step) => {
        const e = step.loraEvents.find((x) => x.type === 'loraLoaded');
        return e && e.type === 'loraLoaded' ? `Step ${step.stepIndex} loads adapter ${e.adapter} into LoRA slot ${e.slot} for ${e.requestId}: its A and B go from host memory into the GPU slot before the forward pass (the strip under the KV grid).` : null;
      },
    },
    {
      id: 'lora-mixed',
      target: 'slot-timeline',
      title: 'One batch, many adapters',
      find: (step, snap) => {
        const adapterOf = (id: string) => snap.requests.find((r) => r.requestId === id)?.adapter ?? null;
        const used = new Set(step.seqs.map((q) => adapterOf(q.requestId)));
        const adapters = [...used].filter((a): a is string => a !== null);
        if (adapters.length < 2 && !(adapters.length >= 1 && used.has(null))) return null;
        return `Step ${step.stepIndex} runs ${plural(step.seqs.length, 'sequence')} in one batch: ${adapters.join(' and ')}${used.has(null) ? ' and the base model' : ''}. Every row adds its own x·A·B, gathered by its slot index; base rows skip it.`;
      },
    },
    {
      id: 'lora-wait',
      target: 'step-inspector',
      title: 'Waiting for an adapter slot',
      find: (step) => {
        const d = step.decisions.find((x) => x.kind === 'waits' && /LoRA adapter/.test(x.reason));
        return d ? `${d.reason.length > 300 ? `${d.reason.slice(0, 300)}…` : d.reason}.` : null;
      },
    },
    {
      id: 'lora-evict',
      target: 'kv-grid',
      title: 'Least recently used adapter evicted',
      find: (step) => {
        const ev = step.loraEvents.find((x) => x.type === 'loraEvicted');
        const load = step.loraEvents.find((x) => x.type === 'loraLoaded');
        if (!ev || ev.type !== 'loraEvicted') return null;
        return `Step ${step.stepIndex} evicts ${ev.adapter} from slot ${ev.slot} (no running request used it; the least recently used)${load && load.type === 'loraLoaded' ? ` to load ${load.adapter}` : ''}. With 2 slots for 3 adapters, loads and evictions repeat: Compare runs 4 slots.`;
      },
    },
    wrapUp,
  ],
  'quantize-to-fit': [
    {
      id: 'memory-full',
      target: 'kv-grid',
      title: 'The KV cache is full',
      find: (step, snap) => {
        // The step's own figure, not the snapshot's: the page hands the tour several steps with
        // the latest snapshot, and the pool may be full at a step and not at the snapshot.
        const total = snap.gpuBlocks.refCount.length;
        if (total === 0 || step.kvCacheUsage < 1) return null;
        return `Every one of the ${total} KV blocks is held after step ${step.stepIndex}, which ran ${plural(step.seqs.length, 'sequence')}: what the budget leaves beside the weights caps how many users run at once. Compare: f32 weights leave fewer blocks in the same budget.`;
      },
    },
    {
      id: 'memory-bound',
      target: 'step-inspector',
      title: 'Memory, not compute, says no',
      find: (step) => {
        const d = step.decisions.find((x) => x.kind === 'preempted' || (x.kind === 'waits' && /block|memory/.test(x.reason)));
        return d ? `${d.reason}. ${step.seqs.length} sequences ran in step ${step.stepIndex}; more blocks would have let more in.` : null;
      },
    },
    {
      id: 'most-running',
      target: 'slot-timeline',
      title: 'Sequences at once',
      track: (step, mem) => {
        mem.marks.maxRunning = Math.max(mem.marks.maxRunning ?? 0, step.seqs.length);
      },
      find: (_step, snap, mem) => {
        if (snap.metrics.numFinished < 8) return null;
        return `${snap.metrics.numFinished} requests finished so far, at most ${plural(mem.marks.maxRunning ?? 0, 'sequence')} in one step. Quantized weights buy that room; the quality they cost is measured by npm run bench -- quant.`;
      },
    },
    wrapUp,
  ],
};

/** Scenario ids that have a tour. */
export function hasTour(scenarioId: string | null | undefined): boolean {
  return scenarioId != null && scenarioId in TOURS;
}

/** Number of moments a scenario's tour has. */
export function tourLength(scenarioId: string): number {
  return TOURS[scenarioId]?.length ?? 0;
}

/** The ids of a scenario's moments, in the order the tour shows them. */
export function tourMomentIds(scenarioId: string): string[] {
  return (TOURS[scenarioId] ?? []).map((d) => d.id);
}

/**
 * Watches one run for a scenario's moments, in order: feed it every step record (oldest first)
 * with a snapshot taken at or after that step; it returns a moment when the next one happens.
 */
export class TourWatcher {
  private readonly detectors: Detector[];
  private next = 0;
  private lastStep = 0;
  private readonly memory: TourMemory = { finishedIds: [], numPaddingTokens: 0, firstAdmitStep: -1, preempted: new Map(), marks: {} };
  readonly found: TourMoment[] = [];

  constructor(readonly scenarioId: string) {
    const d = TOURS[scenarioId];
    if (!d) throw new RangeError(`no tour for scenario ${scenarioId}`);
    this.detectors = d;
  }

  get done(): boolean {
    return this.next >= this.detectors.length;
  }

  get length(): number {
    return this.detectors.length;
  }

  /** The next moment at this step, if it happens here (each step is looked at once). */
  observe(step: StepRecord, snap: TourSnapshot): TourMoment | null {
    if (step.stepIndex <= this.lastStep) return null;
    this.lastStep = step.stepIndex;
    this.memory.finishedIds.push(...step.finished);
    let moment: TourMoment | null = null;
    const d = this.detectors[this.next];
    const text = d ? d.find(step, snap, this.memory) : null;
    if (d && text !== null) {
      moment = { id: d.id, stepIndex: step.stepIndex, target: d.target, title: d.title, text };
      this.found.push(moment);
      this.next++;
    }
    for (const x of this.detectors) x.track?.(step, this.memory);
    return moment;
  }

  /** The closing moment once the run is over (if the tour has not reached it in a step). */
  finish(snap: TourSnapshot): TourMoment | null {
    if (this.done) return null;
    const last = this.detectors[this.detectors.length - 1];
    const rc = snap.gpuBlocks.refCount;
    const kvCacheUsage = rc.length > 0 ? rc.filter((n) => n > 0).length / rc.length : 0;
    const text = last.find({ stepIndex: snap.stepIndex, startMs: 0, durationMs: 0, seqs: [], numPaddingTokens: 0, numCopies: 0, numSwapOut: 0, numSwapIn: 0, preempted: [], rejected: [], finished: [], kvEvents: [], loraEvents: [], decisions: [], tokenBudget: 0, kvCacheUsage }, snap, this.memory);
    if (text === null) return null;
    this.next = this.detectors.length;
    const moment: TourMoment = { id: last.id, stepIndex: snap.stepIndex, target: last.target, title: last.title, text };
    this.found.push(moment);
    return moment;
  }
}

/** Whether any request is still to be served (the run has not ended). */
export function runIsLive(snap: TourSnapshot): boolean {
  return snap.queues.running.length + snap.queues.waiting.length + snap.queues.swapped.length + snap.queues.pending > 0 || snap.requests.some((r) => !ended(r));
}
