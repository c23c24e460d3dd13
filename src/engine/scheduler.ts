/**
 * The iteration-level scheduler (vLLM v1 style): each step it decides which sequences compute
 * how many tokens, within a token budget (maxNumBatchedTokens) and a sequence cap (maxNumSeqs).
 * Running requests go first (one decode token each, or the next chunk of a prompt: chunked
 * prefill), then swapped-out and waiting ones in policy order. When the KV cache manager says
 * memory is short, the scheduler preempts the running request the policy ranks last, by
 * recompute, swap or abort. A static-batching mode (request-level batches, padded) runs on the
 * same machinery for comparison.
 *
 * Invariants (assertInvariants, after every step in tests):
 *  1. every live request is in exactly the queue its state names (waiting/running/swapped);
 *  2. waiting requests hold no KV blocks; swapped requests hold CPU blocks only;
 *  3. every GPU-resident sequence has numSlots === numComputedTokens (tokens cached equal tokens
 *     computed), and a running sequence without blocks has computed nothing;
 *  4. finished sequences and ended requests hold no blocks; the KV manager tracks no other
 *     sequences;
 *  5. running requests occupy at most maxNumSeqs sequence slots;
 *  6. the KV cache manager's own invariants hold;
 *  7. LoRA: exactly the running requests with an adapter pin a slot, the one holding their adapter
 *     (so a step's rows use at most maxLoras distinct adapters).
 */
import type { BlockCopy, BlockSwap, LogitRow, LoraSlotLoad, ScheduledSeq, SeqOutput, StepOutput, StepPlan } from './types.ts';
import { LoraSlotManager, type LoraEvent, type LoraSlotView } from './loraSlots.ts';
import { KvCacheManager, type KvBlockView, type KvStats } from './kvCacheManager.ts';
import { createPolicy, lastRankReason, type Policy } from './policies.ts';
import { assertValidConfig, DEFAULT_SCHEDULER_CONFIG, validateLiveChanges, type SchedulerConfig } from './config.ts';
import { MAX_MASK_HISTORY, Request, Sequence, createSequenceSampler, disposeConstraints, type FailReason, type FinishReason, type RejectReason } from './request.ts';
import { applyBitmask, bitmaskWords } from './constraint.ts';
import type { Decision, EngineEvent, KvEvent, PreemptionMode, StepMask } from './events.ts';
import { Heap } from './heap.ts';
import { logitRowsOf, proposeNgram, verifyDrafts, type VerifyResult } from './speculative.ts';

export { DEFAULT_SCHEDULER_CONFIG, LIVE_CONFIG_KEYS, type BatchingMode, type SchedulerConfig } from './config.ts';
export type { StepMask } from './events.ts';

/** One sequence's work this step. */
export interface SeqWork {
  seq: Sequence;
  startPosition: number;
  numNewTokens: number;
  copies: BlockCopy[];
  /** Prompt tokens this allocation took from the prefix cache (startPosition, for a new seq). */
  numCachedTokens: number;
  /**
   * Speculative decoding: draft tokens computed after the sequence's last token (their rows are
   * the last numNewTokens - 1 of the work; [] for ordinary work).
   */
  draftTokenIds: number[];
}

/** One sequence's speculative verification in a step. */
export interface DraftOutcome {
  seqId: number;
  requestId: string;
  /** Draft tokens scheduled (proposed and given rows). */
  numDraftTokens: number;
  /** Drafts accepted (a prefix of them). */
  numAcceptedTokens: number;
}

/** Replay: the tokens a sequence appended in a step and how many drafts they accepted. */
export type VerifyFn = (seq: Sequence, out: SeqOutput, drafts: readonly number[]) => VerifyResult;

/** A scheduled step: the executor's plan plus what update() needs. */
export interface ScheduledStep {
  plan: StepPlan;
  work: SeqWork[];
  numPrefillTokens: number;
  /** Decode rows, draft rows included. */
  numDecodeTokens: number;
  /** Draft rows (part of numDecodeTokens). */
  numDraftTokens: number;
}

/**
 * Recent service rates, from which the time a request still needs is bounded from below
 * (deadline admission): its uncomputed tokens at the prefill rate plus its remaining output at
 * the inter-token latency. Zeros (no steps yet) reject only deadlines already past.
 */
export interface ServiceRates {
  /** Tokens computed per ms over recent steps. */
  tokensPerMs: number;
  /** Median inter-token latency (ms). */
  itlMs: number;
}

interface StepContext {
  budget: number;
  scheduled: Map<Request, SeqWork[]>;
  /** Requests that may not be preempted this step (admitted or swapped in during it). */
  protectedRequests: Set<Request>;
  swapOut: BlockSwap[];
  swapIn: BlockSwap[];
  numPreempted: number;
  /** Adapters to load into slots before this step's forward pass. */
  loraLoads: LoraSlotLoad[];
}

export class Scheduler {
  readonly config: SchedulerConfig;
  private readonly kv: KvCacheManager;
  /** LoRA adapter slots (maxLoras): which adapter each holds, which running requests pin it. */
  private readonly lora: LoraSlotManager;
  private policyImpl: Policy;
  /** Running requests, in admission order. */
  readonly running: Request[] = [];
  /** Swapped-out requests. */
  readonly swapped: Request[] = [];
  /** Every request not yet ended. */
  readonly live = new Set<Request>();
  readonly requests = new Map<string, Request>();
  readonly seqById = new Map<number, Sequence>();
  /** Set by the engine before each step's admissions (recent rates; zeros: no estimate). */
  serviceRates: ServiceRates = { tokensPerMs: 0, itlMs: 0 };
  /** Index of the last non-empty step planned (steps count from 1; empty plans take no index). */
  stepIndex = 0;
  numPreemptions = 0;
  private nextSeqId = 0;
  /** The index the step being planned will get (events during planning carry it). */
  private planningIndex = 1;
  private readonly inFlightByTenant = new Map<string, number>();
  /** Live requests with a deadline, earliest first (ended ones leave lazily). */
  private readonly byDeadline = new Heap<Request>((a, b) => a.deadlineAtMs < b.deadlineAtMs || (a.deadlineAtMs === b.deadlineAtMs && a.order < b.order));
  /** Live requests, oldest arrival first, for timeouts (ended ones leave lazily). */
  private readonly byArrival = new Heap<Request>((a, b) => a.arrivalMs < b.arrivalMs || (a.arrivalMs === b.arrivalMs && a.order < b.order));
  private numLiveWithDeadline = 0;
  /** Decisions since the last takeDecisions(), in order (the engine drains them once per step). */
  private decisions: Decision[] = [];
  /** Static batching: the current request-level batch and each member's padded prefill progress. */
  private staticBatch: Request[] = [];
  private staticPaddedPromptLen = 0;
  private readonly staticProgress = new Map<Request, number>();
  /** Structured output: masks applied since the last takeMasks(), for the step record. */
  private masks: StepMask[] = [];
  /** One bitmask buffer, reused for every constrained row. */
  private bitmask = new Int32Array(0);

  constructor(config: Partial<SchedulerConfig>, private readonly emit: (e: EngineEvent) => void = () => {}) {
    this.config = assertValidConfig({ ...DEFAULT_SCHEDULER_CONFIG, ...config });
    const c = this.config;
    this.kv = new KvCacheManager({
      blockSize: c.blockSize,
      numGpuBlocks: c.numGpuBlocks,
      numCpuBlocks: c.numCpuBlocks,
      enablePrefixCaching: c.enablePrefixCaching && c.batching === 'continuous',
    });
    this.policyImpl = createPolicy(c.policy, c.fairShare);
    this.lora = new LoraSlotManager(c.maxLoras);
  }

  get policy(): Policy {
    return this.policyImpl;
  }

  /**
   * Applies the settings that may change while requests are in flight (budgets, policy,
   * preemption mode, admission limits). The KV geometry, prefix caching, the context length and
   * the batching mode are fixed for an engine's life: changing those throws.
   */
  reconfigure(changes: Partial<SchedulerConfig>): void {
    const next = this.checkLiveChanges(changes);
    const policyChanged = next.policy !== this.config.policy || JSON.stringify(next.fairShare) !== JSON.stringify(this.config.fairShare);
    Object.assign(this.config, changes);
    if (policyChanged) {
      // The waiting queue moves to the new policy's order; fair-share counters start afresh.
      const old = this.policyImpl;
      this.policyImpl = createPolicy(next.policy, next.fairShare);
      for (let r = old.waiting.pop(); r; r = old.waiting.pop()) this.policyImpl.waiting.push(r);
    }
  }

  /**
   * Throws for changes this scheduler cannot apply, without touching it; returns the new config.
   * Lowering maxNumSeqs below what is running is applied safely in continuous batching (the next
   * step preempts the requests the policy ranks last until the rest fit); a static batch cannot
   * shed members, so there the change must wait until the batch has ended.
   */
  checkLiveChanges(changes: Partial<SchedulerConfig>): SchedulerConfig {
    const next = validateLiveChanges(this.config, changes);
    let widest: Request | null = null;
    for (const r of this.live) if (!widest || r.n > widest.n) widest = r;
    if (widest && next.maxNumSeqs < widest.n) {
      // It could never be scheduled again.
      throw new RangeError(`maxNumSeqs ${next.maxNumSeqs} is below the ${widest.n} parallel samples of request ${widest.requestId} in flight; it must stay >= ${widest.n} until that request ends`);
    }
    if (this.config.batching === 'static') {
      const slots = this.numRunningSeqSlots();
      if (next.maxNumSeqs < slots) {
        throw new RangeError(`maxNumSeqs ${next.maxNumSeqs} is below the ${slots} sequences of the static batch now running; change it after the batch ends`);
      }
    }
    return next;
  }

  // ---- the KV cache, read through its small API ----

  /** The pool as plain data (block tables, hashes, owners), for snapshots. */
  kvBlockView(): KvBlockView {
    return this.kv.blockView();
  }
  /** The scheduler's decisions with their reasons since the last call (the engine drains them once per step). */
  takeDecisions(): Decision[] {
    const d = this.decisions;
    this.decisions = [];
    return d;
  }
  private decide(requestId: string, kind: Decision['kind'], reason: string): void {
    // Idle steps add decisions too; keep a bounded tail until the next step record takes them.
    if (this.decisions.length >= 512) this.decisions.splice(0, 256);
    this.decisions.push({ requestId, kind, reason });
  }
  /** "3 free blocks, r12 needs 5": the last allocation that failed. */
  private shortfallText(who: string): string {
    const sf = this.kv.lastShortfall;
    return `${sf.numFree} free block${sf.numFree === 1 ? '' : 's'}, ${who} need${who === 'it' ? 's' : 's'} ${sf.numNeeded}`;
  }

  /** LoRA slot events since the last call (the engine drains them once per step). */
  takeLoraEvents(): LoraEvent[] {
    return this.lora.takeEvents();
  }
  /** The adapter slots as plain data, for snapshots. */
  loraSlotView(): LoraSlotView[] {
    return this.lora.view();
  }
  /** Adapter loads and evictions since the engine started. */
  loraStats(): { numLoads: number; numEvictions: number } {
    return { numLoads: this.lora.numLoads, numEvictions: this.lora.numEvictions };
  }
  /** Null when `req` can get its adapter's slot now (or needs none), else why not, in words. */
  private loraWaitReason(req: Request): string | null {
    if (req.adapter === null || this.lora.canAcquire(req.adapter)) return null;
    return `its LoRA adapter ${req.adapter} is in no slot and all maxLoras ${this.config.maxLoras} slots are pinned by running requests (${this.lora.describePins()})`;
  }

  /** KV events since the last call (the engine drains them once per step). */
  takeKvEvents(): KvEvent[] {
    return this.kv.takeEvents();
  }
  kvGauges(): { usage: number; fragmentation: number; cpuUsage: number; numFreeGpuBlocks: number; numFreeCpuBlocks: number; stats: Readonly<KvStats> } {
    const kv = this.kv;
    return { usage: kv.usage(), fragmentation: kv.fragmentation(), cpuUsage: kv.cpuUsage(), numFreeGpuBlocks: kv.numFreeGpuBlocks, numFreeCpuBlocks: kv.numFreeCpuBlocks, stats: kv.stats };
  }

  /** KV blocks in use / total, [0, 1] (cheap: kvGauges() also walks every block for fragmentation). */
  kvUsage(): number {
    return this.kv.usage();
  }

  get waiting(): Request[] {
    return this.policy.waiting.toArray();
  }
  get numWaiting(): number {
    return this.policy.waiting.size;
  }
  /** True while any request is queued, running or swapped. */
  hasWork(): boolean {
    return this.live.size > 0;
  }
  /** Sequence slots taken by running requests. */
  numRunningSeqSlots(): number {
    let n = 0;
    for (const r of this.running) n += r.numSeqSlots();
    return n;
  }

  /** Admission control. Creates the request's first sequence; returns null or why it was rejected. */
  add(request: Request, nowMs: number): { reason: RejectReason; detail: string } | null {
    const c = this.config;
    const P = request.numPromptTokens;
    const reject = (reason: RejectReason, detail: string) => {
      disposeConstraints(request);
      request.state = 'rejected';
      request.endReason = reason;
      request.finishedMs = nowMs;
      this.requests.set(request.requestId, request);
      this.emit({ type: 'rejected', timeMs: nowMs, requestId: request.requestId, reason, detail });
      this.decide(request.requestId, 'rejected', `${request.requestId} rejected (${reason.replace(/_/g, ' ')}): ${detail}`);
      return { reason, detail };
    };
    // The engine refuses duplicates at submit; a duplicate here must not replace the original.
    if (this.requests.has(request.requestId)) throw new Error(`duplicate requestId ${request.requestId}`);
    if (P < 1) return reject('invalid', 'empty prompt');
    if (!Number.isInteger(request.maxTokens) || request.maxTokens < 1) return reject('invalid', `maxTokens must be a positive integer, got ${request.maxTokens}`);
    if (!Number.isInteger(request.n) || request.n < 1) return reject('invalid', `n must be a positive integer, got ${request.n}`);
    if (request.n > c.maxNumSeqs) return reject('invalid', `n = ${request.n} exceeds maxNumSeqs = ${c.maxNumSeqs}`);
    if (P >= c.maxModelLen) return reject('prompt_too_long', `prompt of ${P} tokens leaves no room in maxModelLen = ${c.maxModelLen}`);
    if (!c.enableChunkedPrefill && P > c.maxNumBatchedTokens) {
      return reject('prompt_too_long', `prompt of ${P} tokens exceeds maxNumBatchedTokens = ${c.maxNumBatchedTokens} without chunked prefill`);
    }
    const worstBlocks = request.n * this.kv.blocksFor(Math.min(P + request.maxTokens, c.maxModelLen));
    if (worstBlocks > c.numGpuBlocks) {
      return reject('exceeds_kv_capacity', `needs up to ${worstBlocks} blocks alone; the GPU pool has ${c.numGpuBlocks}`);
    }
    if (this.policy.waiting.size >= c.maxQueueLength) return reject('queue_full', `${this.policy.waiting.size} requests waiting (cap ${c.maxQueueLength})`);
    const quota = c.tenantMaxInFlight[request.tenant];
    const inFlight = this.inFlightByTenant.get(request.tenant) ?? 0;
    if (quota !== undefined && inFlight >= quota) return reject('tenant_quota', `tenant ${request.tenant} has ${inFlight} requests in flight (quota ${quota})`);
    if (request.deadlineAtMs !== Infinity && nowMs + this.estimateServiceMs(request) > request.deadlineAtMs) {
      return reject('deadline_unmeetable', `deadline at ${request.deadlineAtMs.toFixed(1)} ms cannot be met (now ${nowMs.toFixed(1)} ms)`);
    }

    const seq = new Sequence(this.nextSeqId++, request, 0, request.promptTokenIds.slice(), [], createSequenceSampler(request, 0));
    seq.constraint = request.constraints?.[0] ?? null;
    request.seqs.push(seq);
    this.seqById.set(seq.seqId, seq);
    this.requests.set(request.requestId, request);
    this.policy.onArrival(request, new Set([...this.inFlightByTenant].filter(([, k]) => k > 0).map(([t]) => t)));
    this.live.add(request);
    this.inFlightByTenant.set(request.tenant, inFlight + 1);
    if (request.deadlineAtMs !== Infinity) {
      this.numLiveWithDeadline++;
      this.byDeadline.push(request);
    }
    this.byArrival.push(request);
    request.state = 'waiting';
    this.policy.waiting.push(request);
    this.emit({ type: 'queued', timeMs: nowMs, requestId: request.requestId });
    return null;
  }

  /** Cancels a live request (no-op for unknown or ended ones). */
  cancel(requestId: string, nowMs: number, reason: FailReason = 'cancelled'): boolean {
    const r = this.requests.get(requestId);
    if (!r || r.isDone) return false;
    this.fail(r, reason, nowMs);
    return true;
  }

  /**
   * A lower bound on the time a request still needs: its uncomputed tokens at the recent token
   * rate, plus its remaining output (predicted, at most the context) at the median inter-token
   * latency.
   */
  estimateServiceMs(r: Request): number {
    const { tokensPerMs, itlMs } = this.serviceRates;
    const prefillMs = tokensPerMs > 0 ? r.numUncomputedTokens() / tokensPerMs : 0;
    const generated = r.seqs.length > 0 ? r.seqs[0].numOutputTokens : 0;
    const predicted = r.spec.predictedOutputTokens;
    const remainingOutput = predicted !== undefined ? Math.min(this.config.maxModelLen, Math.max(1, predicted - generated)) : 1;
    return prefillMs + (remainingOutput - 1) * itlMs;
  }

  /** The most estimateServiceMs() can return for any request this engine holds. */
  private maxServiceMs(): number {
    const { tokensPerMs, itlMs } = this.serviceRates;
    const c = this.config;
    return (tokensPerMs > 0 ? (c.maxNumSeqs * c.maxModelLen) / tokensPerMs : 0) + c.maxModelLen * itlMs;
  }

  /**
   * Times out old requests and drops waiting ones whose deadline can no longer be met. Both are
   * read from heaps (oldest arrival, earliest deadline), so a step's cost does not grow with the
   * queue: only requests within reach of their timeout or deadline are looked at.
   */
  expire(nowMs: number): void {
    const timeout = this.config.requestTimeoutMs;
    for (let r = this.byArrival.peek(); r; r = this.byArrival.peek()) {
      if (r.isDone) this.byArrival.pop();
      else if (nowMs - r.arrivalMs >= timeout) {
        this.byArrival.pop();
        this.decide(r.requestId, 'timedOut', `${r.requestId} timed out: ${(nowMs - r.arrivalMs).toFixed(0)} ms since it arrived (requestTimeoutMs ${timeout})`);
        this.fail(r, 'timeout', nowMs);
      } else break;
    }
    if (this.byArrival.size > 2 * this.live.size + 64) this.byArrival.rebuild([...this.live]);
    if (this.numLiveWithDeadline === 0) {
      if (this.byDeadline.size > 0) this.byDeadline.rebuild([]);
      return;
    }
    // estimateServiceMs(r) <= maxServiceMs(), so a deadline beyond this horizon cannot be missed yet.
    const horizon = nowMs + this.maxServiceMs();
    const stillLive: Request[] = [];
    for (let r = this.byDeadline.peek(); r && r.deadlineAtMs < horizon; r = this.byDeadline.peek()) {
      this.byDeadline.pop();
      if (r.isDone) continue;
      if (r.state === 'waiting' && nowMs + this.estimateServiceMs(r) > r.deadlineAtMs) {
        this.policy.waiting.remove(r);
        this.end(r, 'rejected', 'deadline_unmeetable', nowMs);
        const detail = `deadline at ${r.deadlineAtMs.toFixed(1)} ms cannot be met while waiting (now ${nowMs.toFixed(1)} ms, at least ${this.estimateServiceMs(r).toFixed(1)} ms of work left)`;
        this.emit({ type: 'rejected', timeMs: nowMs, requestId: r.requestId, reason: 'deadline_unmeetable', detail });
        this.decide(r.requestId, 'rejected', `${r.requestId} rejected (deadline unmeetable): ${detail}`);
      } else stillLive.push(r);
    }
    for (const r of stillLive) this.byDeadline.push(r);
    if (this.byDeadline.size > 2 * this.numLiveWithDeadline + 64) this.byDeadline.rebuild([...this.live].filter((r) => r.deadlineAtMs !== Infinity));
  }

  /** Decides the next step. The plan may be empty (nothing runnable). */
  schedule(nowMs: number): ScheduledStep {
    this.planningIndex = this.stepIndex + 1;
    const ctx: StepContext = {
      budget: this.config.maxNumBatchedTokens,
      scheduled: new Map(),
      protectedRequests: new Set(),
      swapOut: [],
      swapIn: [],
      numPreempted: 0,
      loraLoads: [],
    };
    let numPaddingTokens = 0;
    if (this.config.batching === 'static') numPaddingTokens = this.scheduleStatic(ctx, nowMs);
    else this.scheduleContinuous(ctx, nowMs);
    return this.buildStep(ctx, numPaddingTokens);
  }

  /** Applies a step's results: computed tokens, sampling, stops. Returns the sampled tokens. */
  update(
    step: ScheduledStep,
    output: StepOutput,
    nowMs: number,
    sample: (seq: Sequence, out: SeqOutput) => number = (seq, out) => seq.sampler.sample(out),
    verify: VerifyFn = (seq, out, drafts) => verifyDrafts(seq.sampler, drafts, logitRowsOf(out)),
  ): { sampled: [number, number][]; drafts: DraftOutcome[] } {
    const outBySeq = new Map(output.outputs.map((o) => [o.seqId, o]));
    const sampled: [number, number][] = [];
    const drafts: DraftOutcome[] = [];
    const served = new Map<Request, [number, number]>();
    for (const w of step.work) {
      const seq = w.seq;
      if (seq.isFinished || seq.request.isDone) continue;
      // Draft positions count once verified (below); until then only the real tokens are computed.
      seq.numComputedTokens = w.startPosition + w.numNewTokens - w.draftTokenIds.length;
      this.kv.commitComputed(seq, seq.numComputedTokens);
      const isDecode = isDecodeWork(w);
      const acc = served.get(seq.request) ?? [0, 0];
      acc[isDecode ? 1 : 0] += w.numNewTokens;
      served.set(seq.request, acc);
    }
    for (const [r, [numPrefill, numDecode]] of served) this.policy.onServed(r, numPrefill, numDecode);
    for (const w of step.work) {
      const seq = w.seq;
      if (seq.isFinished || seq.request.isDone) continue;
      if (w.startPosition + w.numNewTokens - w.draftTokenIds.length !== seq.numTokens) continue;
      const out = outBySeq.get(seq.seqId);
      if (!out) throw new Error(`step ${step.plan.stepIndex}: the executor returned no output for seq ${seq.seqId}, which needed logits`);
      const req = seq.request;
      if (w.draftTokenIds.length > 0) {
        const verified = seq.constraint ? this.maskedDraftOutput(seq, out, w.draftTokenIds, step.plan.stepIndex) : out;
        this.applyVerified(seq, w, verify(seq, verified, w.draftTokenIds), nowMs, sampled, drafts);
        continue;
      }
      let targets = [seq];
      if (!req.forked) {
        req.forked = true;
        for (let i = 1; i < req.n; i++) {
          const child = new Sequence(this.nextSeqId++, req, i, seq.tokenIds.slice(), seq.blockHashes.slice(), createSequenceSampler(req, i));
          child.constraint = req.constraints?.[i] ?? null;
          this.kv.fork(seq, child);
          child.numComputedTokens = seq.numComputedTokens;
          req.seqs.push(child);
          this.seqById.set(child.seqId, child);
        }
        targets = req.seqs.slice();
      }
      for (const t of targets) {
        const c = t.constraint;
        const tokenId = sample(t, c ? this.maskedOutput(t, out, step.plan.stepIndex) : out);
        if (c && !c.acceptToken(tokenId)) {
          throw new Error(`step ${step.plan.stepIndex}: seq ${t.seqId} (${req.requestId}) sampled token ${tokenId}, which its constraint refuses`);
        }
        sampled.push([t.seqId, tokenId]);
        this.appendToken(t, tokenId, nowMs);
        // A grammar ends by accepting a stop token (appendToken has finished the sequence then);
        // a constraint that ends otherwise ends its sequence too.
        if (c && !t.isFinished && c.isTerminated()) this.finishSeq(t, 'stop', nowMs);
      }
    }
    return { sampled, drafts };
  }

  /**
   * A verified draft step: appends the accepted drafts and the target's token (stopping early
   * when the sequence finishes), then rolls the KV back to the accepted positions: the slots of
   * rejected drafts are dropped, blocks that held only them are freed, and the prefix cache is
   * offered only blocks of accepted tokens.
   */
  private applyVerified(seq: Sequence, w: SeqWork, result: VerifyResult, nowMs: number, sampled: [number, number][], drafts: DraftOutcome[]): void {
    const numDraft = w.draftTokenIds.length;
    const { tokens, numAccepted } = result;
    if (!(Number.isInteger(numAccepted) && numAccepted >= 0 && numAccepted <= numDraft && tokens.length >= 1 && tokens.length <= numAccepted + 1)) {
      throw new Error(`seq ${seq.seqId}: a verification of ${numDraft} drafts returned ${tokens.length} tokens with ${numAccepted} accepted`);
    }
    drafts.push({ seqId: seq.seqId, requestId: seq.request.requestId, numDraftTokens: numDraft, numAcceptedTokens: numAccepted });
    seq.request.numDraftTokens += numDraft;
    seq.request.numAcceptedDraftTokens += numAccepted;
    const computedBefore = seq.numComputedTokens;
    const c = seq.constraint;
    for (const tokenId of tokens) {
      if (c && !c.acceptToken(tokenId)) {
        throw new Error(`seq ${seq.seqId} (${seq.request.requestId}) verified token ${tokenId}, which its constraint refuses`);
      }
      sampled.push([seq.seqId, tokenId]);
      this.appendToken(seq, tokenId, nowMs);
      if (seq.isFinished || seq.request.isDone) return; // its blocks are freed
    }
    seq.numComputedTokens = computedBefore + numAccepted;
    this.kv.truncate(seq, seq.numComputedTokens);
    this.kv.commitComputed(seq, seq.numComputedTokens);
    if (c && c.isTerminated()) this.finishSeq(seq, 'stop', nowMs);
  }

  /**
   * Structured output with drafts: each verification row masked by the constraint in the state
   * that row continues (row i after drafts 1..i, accepted tentatively and rolled back after), so
   * greedy verification compares drafts with the masked argmax and rejection sampling draws from
   * the masked distribution: the tokens are what the constrained sequence would sample without
   * speculation. The proposer already cut the drafts at the first token the constraint refuses.
   */
  private maskedDraftOutput(seq: Sequence, out: SeqOutput, draftTokenIds: readonly number[], stepIndex: number): SeqOutput {
    const c = seq.constraint!;
    const rows = logitRowsOf(out);
    const masked: LogitRow[] = [];
    let numAccepted = 0;
    try {
      for (let i = 0; i < rows.length; i++) {
        const m = this.maskedOutput(seq, { seqId: out.seqId, ...rows[i] }, stepIndex);
        masked.push({ argmax: m.argmax, logits: m.logits });
        if (i === draftTokenIds.length) break;
        if (!c.acceptToken(draftTokenIds[i])) {
          throw new Error(`step ${stepIndex}: seq ${seq.seqId}'s draft token ${draftTokenIds[i]} is refused by its constraint (the proposer checks drafts)`);
        }
        numAccepted++;
      }
    } finally {
      if (numAccepted > 0) c.rollback(numAccepted);
    }
    const last = masked[masked.length - 1];
    return { seqId: out.seqId, argmax: last.argmax, logits: last.logits, rows: masked };
  }

  /** Drains the masks applied since the last call (the engine does, once per step). */
  takeMasks(): StepMask[] {
    const m = this.masks;
    this.masks = [];
    return m;
  }

  /**
   * A constrained sequence's output with every token its constraint forbids at -Infinity (a
   * copy: n > 1 siblings share one row) and the masked argmax, so any sampler draws only
   * allowed tokens. Timed (host ms) into the request's and the step's mask figures.
   */
  private maskedOutput(seq: Sequence, out: SeqOutput, stepIndex: number): SeqOutput {
    const t0 = performance.now();
    if (!out.logits) {
      throw new Error(`step ${stepIndex}: seq ${seq.seqId} is constrained but the executor returned no logits row (ScheduledSeq.constrained asks for one)`);
    }
    const V = out.logits.length;
    const words = bitmaskWords(V);
    if (this.bitmask.length !== words) this.bitmask = new Int32Array(words);
    this.bitmask.fill(0);
    seq.constraint!.fillNextTokenBitmask(this.bitmask);
    const logits = out.logits.slice();
    const { numAllowed, argmax } = applyBitmask(logits, this.bitmask);
    if (numAllowed === 0) throw new Error(`step ${stepIndex}: seq ${seq.seqId}'s constraint allows no token`);
    const ms = performance.now() - t0;
    this.observeMasks([{ seqId: seq.seqId, requestId: seq.request.requestId, ms, numAllowed, vocabSize: V }]);
    return { seqId: out.seqId, argmax, logits };
  }

  /** Counts masks into their requests' figures and the step's list (a replay hands in recorded ones). */
  observeMasks(masks: readonly StepMask[]): void {
    for (const m of masks) {
      // By request: a sequence that ended in this step has already left seqById.
      const seq = this.requests.get(m.requestId)?.seqs.find((x) => x.seqId === m.seqId);
      const stats = seq?.request.mask;
      if (seq && stats) {
        stats.numTokens++;
        stats.totalMs += m.ms;
        if (seq.index === 0 && stats.allowedFractions.length < MAX_MASK_HISTORY) stats.allowedFractions.push(m.numAllowed / m.vocabSize);
      }
      this.masks.push(m);
    }
  }

  private scheduleContinuous(ctx: StepContext, nowMs: number): void {
    // maxNumSeqs was lowered below what runs: the requests ranked last make room.
    for (let over = this.numRunningSeqSlots() - this.config.maxNumSeqs; over > 0; ) {
      const victim = this.pickVictim(ctx);
      if (!victim) break;
      const why = `maxNumSeqs is ${this.config.maxNumSeqs} and running requests held ${this.numRunningSeqSlots()} sequences`;
      over -= victim.numSeqSlots();
      this.preempt(victim, ctx, nowMs, false, `${why}; ${lastRankReason(this.policy, victim)}`);
    }
    const order = this.running.slice().sort((a, b) => this.policy.compare(a, b));
    for (const req of order) {
      if (ctx.budget <= 0) break;
      if (req.state !== 'running') continue; // preempted earlier this step
      const res = this.scheduleRequest(req, ctx.budget, () => {
        const victim = this.pickVictim(ctx);
        if (!victim || victim === req) return false;
        this.preempt(victim, ctx, nowMs, false, `${this.shortfallText(req.requestId)}; ${lastRankReason(this.policy, victim)}`);
        return true;
      });
      if (res.memoryShort) {
        // Nobody ranks below it: it yields its own memory.
        this.preempt(req, ctx, nowMs, res.work.length > 0, `${this.shortfallText('it')} and no other running request ranks below it`);
        continue;
      }
      this.commitWork(ctx, req, res.work);
    }
    if (ctx.numPreempted > 0) {
      // Memory is tight: admit nothing new this step.
      const head = this.policy.waiting.peek() ?? this.swapped[0];
      if (head) this.decideWaits(head, `memory is tight (${ctx.numPreempted} preempted this step), so nothing new is admitted`);
      return;
    }

    const swappedOrder = this.swapped.slice().sort((a, b) => this.policy.compare(a, b));
    let swapIdx = 0;
    let numSeqSlots = this.numRunningSeqSlots();
    /** Waiting requests passed over this step because their adapter has no slot (as vLLM skips them). */
    const skippedForLora: Request[] = [];
    while (ctx.budget > 0) {
      const fromSwap = swappedOrder[swapIdx];
      const fromWait = this.policy.waiting.peek();
      const cand = fromSwap && (!fromWait || this.policy.compare(fromSwap, fromWait) <= 0) ? fromSwap : fromWait;
      if (!cand) break;
      if (numSeqSlots + cand.numSeqSlots() > this.config.maxNumSeqs) {
        this.decideWaits(cand, `${numSeqSlots} of maxNumSeqs ${this.config.maxNumSeqs} sequence slots are taken and it needs ${cand.numSeqSlots()}`);
        break;
      }
      const loraWait = this.loraWaitReason(cand);
      if (loraWait) {
        // Not head-of-line blocking: it keeps its place, and requests behind it may go first.
        this.decideWaits(cand, `${loraWait}; requests behind it may go first`);
        if (cand === fromSwap) swapIdx++;
        else skippedForLora.push(this.policy.waiting.pop()!);
        continue;
      }
      if (cand === fromSwap) {
        const seqIds = cand.activeSeqs().filter((s) => this.kv.location(s.seqId) === 'cpu').map((s) => s.seqId);
        // Room to swap in plus a block per sequence to grow, unless it would run alone.
        const margin = this.running.length > 0 ? seqIds.length : 0;
        const numToSwapIn = this.kv.numBlocksToSwapIn(seqIds);
        if (numToSwapIn + margin > this.kv.numFreeGpuBlocks) {
          this.decideWaits(cand, `swapping it back in needs ${numToSwapIn + margin} free blocks (${numToSwapIn} + ${margin} to grow), ${this.kv.numFreeGpuBlocks} free`);
          break;
        }
        ctx.swapIn.push(...this.kv.swapIn(seqIds)!);
        this.decide(cand.requestId, 'swappedIn', `${cand.requestId} swapped back in: ${numToSwapIn} blocks from the CPU pool`);
        swapIdx++;
        this.swapped.splice(this.swapped.indexOf(cand), 1);
        const res = this.scheduleRequest(cand, ctx.budget, () => false);
        this.commitWork(ctx, cand, res.work);
        this.startRunning(cand, ctx, nowMs, true);
      } else {
        const res = this.scheduleRequest(cand, ctx.budget, (r) => this.preemptForWaiting(r, ctx, nowMs));
        if (res.memoryShort || res.work.length === 0) {
          if (res.memoryShort) this.decideWaits(cand, this.shortfallText('it'));
          else this.decideWaits(cand, `${ctx.budget} tokens of the step's budget are left and its prompt needs ${cand.numUncomputedTokens()} at once (chunked prefill is off)`);
          // All or nothing for a waiting request: give back what this attempt took.
          for (const s of cand.activeSeqs()) {
            this.kv.free(s.seqId);
            s.numComputedTokens = 0;
          }
          break;
        }
        this.policy.waiting.pop();
        this.commitWork(ctx, cand, res.work);
        this.startRunning(cand, ctx, nowMs, cand.numPreemptions > 0);
        const numNew = res.work.reduce((a, w) => a + w.numNewTokens, 0);
        const cached = res.work.reduce((a, w) => a + w.numCachedTokens, 0);
        const total = cand.numUncomputedTokens() + cached;
        this.decide(
          cand.requestId,
          cand.numPreemptions > 0 ? 'resumed' : 'admitted',
          `${cand.requestId} ${cand.numPreemptions > 0 ? 'resumed (recomputes its tokens)' : 'admitted'}: ${numNew} of ${total} tokens this step${numNew < total - cached ? ' (a prefill chunk)' : ''}` +
            `${cached > 0 ? `, ${cached} from the prefix cache` : ''}; ${this.kv.numFreeGpuBlocks} blocks free after`,
        );
      }
      numSeqSlots += cand.numSeqSlots();
    }
    for (const r of skippedForLora) this.policy.waiting.push(r);
    if (ctx.budget <= 0) {
      const head = this.policy.waiting.peek();
      let numDraft = 0;
      for (const ws of ctx.scheduled.values()) for (const w of ws) numDraft += w.draftTokenIds.length;
      // Speculation's draft rows count against the budget like any other row.
      const drafts = numDraft > 0 ? `, ${numDraft} of it by speculative draft tokens` : '';
      if (head) this.decideWaits(head, `the step's token budget (maxNumBatchedTokens ${this.config.maxNumBatchedTokens}) is used up${drafts}`);
    }
  }

  /** "r81 waits: …, and 5 more behind it". */
  private decideWaits(r: Request, why: string): void {
    const behind = this.policy.waiting.size + this.swapped.length - 1;
    this.decide(r.requestId, 'waits', `${r.requestId} waits: ${why}${behind > 0 ? `; ${behind} more behind it` : ''}`);
  }

  /** Priority policy: a waiting request may preempt a strictly lower-priority running one. */
  private preemptForWaiting(cand: Request, ctx: StepContext, nowMs: number): boolean {
    if (this.policy.name !== 'priority') return false;
    const victim = this.pickVictim(ctx);
    if (!victim || victim.priority <= cand.priority) return false;
    this.preempt(victim, ctx, nowMs, false, `waiting ${cand.requestId} (priority ${cand.priority}) needs memory (${this.shortfallText('it')}); ${lastRankReason(this.policy, victim)}`);
    return true;
  }

  /**
   * Schedules as many of a request's active sequences as the budget allows. On a memory
   * shortage it asks onMemoryShort to free some (true: retry) or gives up (memoryShort: true).
   */
  private scheduleRequest(req: Request, budget: number, onMemoryShort: (req: Request) => boolean): { work: SeqWork[]; memoryShort: boolean } {
    const work: SeqWork[] = [];
    let used = 0;
    for (const seq of req.activeSeqs()) {
      if (budget - used <= 0) break;
      for (;;) {
        const w = this.scheduleSeq(seq, budget - used);
        if (w === 'no-budget') break;
        if (w === 'no-memory') {
          if (onMemoryShort(req)) continue;
          return { work, memoryShort: true };
        }
        work.push(w);
        used += w.numNewTokens;
        break;
      }
    }
    return { work, memoryShort: false };
  }

  private scheduleSeq(seq: Sequence, budget: number): SeqWork | 'no-budget' | 'no-memory' {
    let cached: readonly number[] = [];
    let start = seq.numComputedTokens;
    if (!this.kv.has(seq.seqId)) {
      if (seq.numComputedTokens !== 0) throw new Error(`seq ${seq.seqId} computed ${seq.numComputedTokens} tokens but holds no blocks`);
      const prefix = this.kv.findCachedPrefix(seq);
      cached = prefix.blockIds;
      start = prefix.numTokens;
    }
    const remaining = seq.numTokens - start;
    const numNew = Math.min(remaining, budget);
    if (numNew <= 0 || (!this.config.enableChunkedPrefill && numNew < remaining)) return 'no-budget';
    const reserve =
      this.config.kvPreallocation === 'max-length' ? Math.min(seq.request.numPromptTokens + seq.request.maxTokens, this.config.maxModelLen) : 0;
    // A decode step may carry draft tokens; when memory cannot hold them it runs without (drafts never preempt).
    const draftTokenIds = numNew === 1 && remaining === 1 && seq.numOutputTokens > 0 ? this.proposeDrafts(seq, budget - 1) : [];
    let withDrafts = draftTokenIds;
    let alloc = withDrafts.length > 0 ? this.kv.allocateSlots(seq, numNew + withDrafts.length, cached, reserve) : null;
    if (!alloc) {
      withDrafts = [];
      alloc = this.kv.allocateSlots(seq, numNew, cached, reserve);
    }
    if (!alloc) return 'no-memory';
    // Cache hits count as computed; a recompute or a rollback resets this to 0.
    if (cached.length > 0) seq.numComputedTokens = start;
    return { seq, startPosition: start, numNewTokens: numNew + withDrafts.length, copies: alloc.copies, numCachedTokens: cached.length > 0 ? start : 0, draftTokenIds: withDrafts };
  }

  /**
   * The draft tokens a decoding sequence verifies this step: the proposer's plain token list,
   * cut to the budget left after its own token, to what its max_tokens and the context can still
   * take (the step appends the accepted drafts plus one), and to numSpeculativeTokens; a
   * constrained sequence's drafts end before the first token its grammar refuses.
   */
  private proposeDrafts(seq: Sequence, budgetLeft: number): number[] {
    const c = this.config;
    if (c.speculativeMethod !== 'ngram' || c.batching !== 'continuous') return [];
    const room = Math.min(budgetLeft, seq.request.maxTokens - seq.numOutputTokens - 1, c.maxModelLen - seq.numTokens - 1, c.numSpeculativeTokens);
    if (room <= 0) return [];
    const drafts = proposeNgram(seq.tokenIds, room, c.promptLookupMax, c.promptLookupMin);
    const constraint = seq.constraint;
    if (!constraint || drafts.length === 0) return drafts;
    // Structured output: drafts up to the first token the grammar refuses, and none that would end
    // the grammar (every verification row then has a next-token mask). Checked and rolled back.
    let ok = 0;
    try {
      while (ok < drafts.length && constraint.acceptToken(drafts[ok])) {
        ok++;
        if (constraint.isTerminated()) {
          ok--;
          constraint.rollback(1);
          break;
        }
      }
    } finally {
      if (ok > 0) constraint.rollback(ok);
    }
    return drafts.slice(0, ok);
  }

  private commitWork(ctx: StepContext, req: Request, work: SeqWork[]): void {
    if (work.length === 0) return;
    const prev = ctx.scheduled.get(req) ?? [];
    ctx.scheduled.set(req, prev.concat(work));
    for (const w of work) {
      ctx.budget -= w.numNewTokens;
      req.numCachedPromptTokens += w.numCachedTokens;
    }
  }

  /** The running request that ranks last and may be preempted this step. */
  private pickVictim(ctx: StepContext): Request | null {
    let victim: Request | null = null;
    for (const r of this.running) {
      if (ctx.protectedRequests.has(r)) continue;
      if (!victim || this.policy.compare(r, victim) > 0) victim = r;
    }
    return victim;
  }

  /**
   * Preempts a running request; `dirty` means it holds slots allocated this step and not in the
   * plan; `why` is the cause in words (logged with the event and as the step's decision).
   */
  private preempt(req: Request, ctx: StepContext, nowMs: number, dirty: boolean, why: string): void {
    const work = ctx.scheduled.get(req);
    if (work) {
      ctx.scheduled.delete(req);
      for (const w of work) ctx.budget += w.numNewTokens;
    }
    this.running.splice(this.running.indexOf(req), 1);
    this.lora.release(req.requestId);
    req.numPreemptions++;
    this.numPreemptions++;
    ctx.numPreempted++;
    const mode = this.config.preemptionMode;
    const emit = (actual: PreemptionMode) => {
      const reason = `${req.requestId} preempted by ${actual}: ${why}`;
      this.emit({ type: 'preempted', timeMs: nowMs, stepIndex: this.planningIndex, requestId: req.requestId, mode: actual, reason });
      this.decide(req.requestId, 'preempted', reason);
    };
    if (mode === 'abort') {
      emit('abort');
      this.fail(req, 'preempted', nowMs);
      return;
    }
    // A request already scheduled this step has slots (and maybe copies) beyond what it has
    // computed; swapping those out would move unwritten blocks, so it is recomputed instead.
    // So is one whose swap-out the CPU pool cannot hold.
    if (mode === 'swap' && !work && !dirty) {
      const seqIds = req.activeSeqs().filter((s) => this.kv.location(s.seqId) === 'gpu').map((s) => s.seqId);
      const swaps = this.kv.swapOut(seqIds);
      if (swaps) {
        emit('swap');
        ctx.swapOut.push(...swaps);
        req.state = 'swapped';
        this.swapped.push(req);
        return;
      }
    }
    emit('recompute');
    for (const s of req.activeSeqs()) {
      this.kv.free(s.seqId);
      s.numComputedTokens = 0;
    }
    req.state = 'waiting';
    this.policy.waiting.push(req);
  }

  /**
   * The executor's memory is gone (a lost GPU device): every running and swapped request is
   * preempted by recompute (its generated tokens and sampler kept), every block freed and the
   * prefix cache emptied. Nothing is lost: the requests wait to be prefilled again.
   */
  requeueAllForRecompute(nowMs: number): void {
    const victims = [...this.running, ...this.swapped];
    this.running.length = 0;
    this.swapped.length = 0;
    this.staticBatch = [];
    this.staticProgress.clear();
    for (const req of victims) {
      req.numPreemptions++;
      this.numPreemptions++;
      const reason = `${req.requestId} preempted by recompute: the executor lost its memory (a failed step or a lost GPU device)`;
      this.emit({ type: 'preempted', timeMs: nowMs, stepIndex: this.planningIndex, requestId: req.requestId, mode: 'recompute', reason });
      this.decide(req.requestId, 'preempted', reason);
      for (const s of req.activeSeqs()) s.numComputedTokens = 0;
      req.state = 'waiting';
      this.policy.waiting.push(req);
    }
    this.kv.freeAll();
    this.lora.clear();
  }

  private startRunning(req: Request, ctx: StepContext, nowMs: number, resumed: boolean): void {
    const work = ctx.scheduled.get(req);
    if (work) {
      // Swapped back in: its blocks came from the CPU pool, not the prefix cache (keep the last figure).
      const cached = work.reduce((sum, w) => sum + w.numCachedTokens, 0);
      if (!(resumed && req.state === 'swapped')) req.numCachedPromptTokensLastAdmission = Math.min(cached, req.numPromptTokens);
    }
    req.state = 'running';
    this.running.push(req);
    ctx.protectedRequests.add(req);
    if (req.adapter !== null) {
      const got = this.lora.acquire(req.adapter, req.requestId);
      if (!got) throw new Error(`${req.requestId} was admitted without a LoRA slot for ${req.adapter}`);
      if (got.load) ctx.loraLoads.push({ slot: got.slot, adapter: req.adapter });
    }
    if (Number.isNaN(req.firstScheduledMs)) req.firstScheduledMs = nowMs;
    this.emit({ type: 'scheduled', timeMs: nowMs, stepIndex: this.planningIndex, requestId: req.requestId, numCachedTokens: req.numCachedPromptTokens, resumed });
  }

  /**
   * Static batching: a batch is formed only when the previous one has wholly ended; its members
   * reserve their worst-case memory up front, prefill in lockstep with prompts left-padded to
   * the longest, then decode together; ended members ride along as padding until the last ends.
   */
  private scheduleStatic(ctx: StepContext, nowMs: number): number {
    const head = this.policy.waiting.peek();
    if (head && !this.staticBatch.every((r) => r.isDone)) {
      const live = this.staticBatch.filter((r) => !r.isDone).length;
      this.decideWaits(head, `waiting for the static batch to drain: ${live} of its ${this.staticBatch.length} requests still running`);
    }
    if (this.staticBatch.every((r) => r.isDone)) {
      this.staticBatch = [];
      this.staticProgress.clear();
      let reservedBlocks = 0;
      let numSeqSlots = 0;
      for (;;) {
        const cand = this.policy.waiting.peek();
        if (!cand) break;
        const need = cand.n * this.kv.blocksFor(Math.min(cand.numPromptTokens + cand.maxTokens, this.config.maxModelLen));
        if (reservedBlocks + need > this.kv.numFreeGpuBlocks) {
          this.decideWaits(cand, `the static batch reserves worst-case memory: it needs ${need} blocks, ${this.kv.numFreeGpuBlocks - reservedBlocks} are left`);
          break;
        }
        if (numSeqSlots + cand.n > this.config.maxNumSeqs) {
          this.decideWaits(cand, `the static batch is full (maxNumSeqs ${this.config.maxNumSeqs})`);
          break;
        }
        const loraWait = this.loraWaitReason(cand);
        if (loraWait) {
          this.decideWaits(cand, loraWait);
          break;
        }
        this.policy.waiting.pop();
        this.decide(cand.requestId, 'admitted', `${cand.requestId} admitted to the static batch: ${need} blocks reserved for its worst case`);
        reservedBlocks += need;
        numSeqSlots += cand.n;
        this.staticBatch.push(cand);
        this.startRunning(cand, ctx, nowMs, false);
      }
      this.staticPaddedPromptLen = Math.max(0, ...this.staticBatch.map((r) => r.numPromptTokens));
      for (const r of this.staticBatch) this.staticProgress.set(r, 0);
    }
    const Pmax = this.staticPaddedPromptLen;
    let numPadding = 0;
    const prefilling = this.staticBatch.some((r) => this.staticProgress.get(r)! < Pmax);
    if (prefilling) {
      for (const r of this.staticBatch) {
        const v = this.staticProgress.get(r)!;
        const chunk = Math.min(Pmax - v, ctx.budget);
        if (chunk <= 0) continue;
        const realStart = Pmax - r.numPromptTokens;
        const numReal = Math.max(0, Math.min(v + chunk, Pmax) - Math.max(v, realStart));
        numPadding += chunk - numReal;
        ctx.budget -= chunk - numReal;
        this.staticProgress.set(r, v + chunk);
        if (numReal > 0 && !r.isDone) {
          const w = this.scheduleSeq(r.seqs[0], numReal);
          if (typeof w === 'string') throw new Error(`static batch member ${r.requestId} could not get its reserved memory (${w})`);
          this.commitWork(ctx, r, [w]);
        }
      }
      return numPadding;
    }
    for (const r of this.staticBatch) {
      if (r.isDone) {
        numPadding += r.n;
        continue;
      }
      for (const s of r.seqs) {
        if (s.isFinished) {
          numPadding++;
          continue;
        }
        const w = this.scheduleSeq(s, 1);
        if (typeof w === 'string') throw new Error(`static batch member ${r.requestId} could not get its reserved memory (${w})`);
        this.commitWork(ctx, r, [w]);
      }
    }
    return numPadding;
  }

  private buildStep(ctx: StepContext, numPaddingTokens: number): ScheduledStep {
    const bs = this.kv.blockSize;
    const seqs: ScheduledSeq[] = [];
    const work: SeqWork[] = [];
    const copies: BlockCopy[] = [];
    let numPrefillTokens = 0;
    let numDecodeTokens = 0;
    let numDraftTokens = 0;
    for (const ws of ctx.scheduled.values()) {
      for (const w of ws) {
        const { seq, startPosition, numNewTokens, draftTokenIds } = w;
        const blockTable = this.kv.blockTable(seq.seqId).slice();
        const slots = new Array<number>(numNewTokens);
        for (let k = 0; k < numNewTokens; k++) {
          const p = startPosition + k;
          slots[k] = blockTable[Math.floor(p / bs)] * bs + (p % bs);
        }
        seqs.push({
          seqId: seq.seqId,
          requestId: seq.request.requestId,
          tokenIds: seq.tokenIds.slice(startPosition, startPosition + numNewTokens - draftTokenIds.length).concat(draftTokenIds),
          startPosition,
          slots,
          blockTable,
          needsLogits: startPosition + numNewTokens - draftTokenIds.length === seq.numTokens,
          ...(draftTokenIds.length > 0 ? { numLogitRows: draftTokenIds.length + 1 } : {}),
          sampling: seq.sampler.params,
          ...(seq.request.adapter !== null ? { loraSlot: this.lora.slotOf(seq.request.requestId) } : {}),
        });
        if (seq.request.constraints) seqs[seqs.length - 1].constrained = true;
        copies.push(...w.copies);
        work.push(w);
        if (isDecodeWork(w)) numDecodeTokens += numNewTokens;
        else numPrefillTokens += numNewTokens;
        numDraftTokens += draftTokenIds.length;
      }
    }
    const isEmpty = seqs.length === 0 && ctx.swapOut.length === 0 && ctx.swapIn.length === 0 && numPaddingTokens === 0;
    if (!isEmpty) this.stepIndex = this.planningIndex;
    const plan: StepPlan = {
      stepIndex: this.planningIndex,
      seqs,
      copies,
      swapOut: ctx.swapOut,
      swapIn: ctx.swapIn,
      numBatchedTokens: numPrefillTokens + numDecodeTokens,
    };
    if (numPaddingTokens > 0) plan.numPaddingTokens = numPaddingTokens;
    if (ctx.loraLoads.length > 0) plan.loraLoads = ctx.loraLoads;
    return { plan, work, numPrefillTokens, numDecodeTokens, numDraftTokens };
  }

  private appendToken(seq: Sequence, tokenId: number, nowMs: number): void {
    const req = seq.request;
    if (Number.isNaN(req.firstTokenMs)) req.firstTokenMs = nowMs;
    if (seq.index === 0) {
      if (!Number.isNaN(req.lastTokenMs)) req.interTokenLatenciesMs.push(nowMs - req.lastTokenMs);
      req.lastTokenMs = nowMs;
    }
    if (req.stopTokenIds.has(tokenId)) {
      seq.stopTokenId = tokenId;
      this.finishSeq(seq, 'stop', nowMs);
      return;
    }
    seq.tokenIds.push(tokenId);
    this.emit({ type: 'token', timeMs: nowMs, requestId: req.requestId, seqId: seq.seqId, seqIndex: seq.index, tokenId, index: seq.numOutputTokens - 1 });
    if (seq.numOutputTokens >= req.maxTokens || seq.numTokens >= this.config.maxModelLen) this.finishSeq(seq, 'length', nowMs);
  }

  private finishSeq(seq: Sequence, reason: FinishReason, nowMs: number): void {
    seq.finishReason = reason;
    this.kv.free(seq.seqId);
    const req = seq.request;
    if (req.seqs.length === req.n && req.seqs.every((s) => s.isFinished)) {
      this.end(req, 'finished', req.seqs[0].finishReason, nowMs);
      this.emit({
        type: 'finished',
        timeMs: nowMs,
        requestId: req.requestId,
        reasons: req.seqs.map((s) => s.finishReason!),
        numOutputTokens: req.seqs.map((s) => s.numOutputTokens),
      });
    }
  }

  private fail(req: Request, reason: FailReason, nowMs: number): void {
    if (req.state === 'waiting') this.policy.waiting.remove(req);
    this.end(req, 'failed', reason, nowMs);
    this.emit({ type: 'failed', timeMs: nowMs, requestId: req.requestId, reason });
  }

  /** Takes a request out of every queue and frees its memory. */
  private end(req: Request, state: 'finished' | 'failed' | 'rejected', reason: Request['endReason'], nowMs: number): void {
    disposeConstraints(req);
    const i = this.running.indexOf(req);
    if (i >= 0) this.running.splice(i, 1);
    this.lora.release(req.requestId);
    const j = this.swapped.indexOf(req);
    if (j >= 0) this.swapped.splice(j, 1);
    for (const s of req.seqs) {
      this.kv.free(s.seqId);
      this.seqById.delete(s.seqId);
    }
    req.state = state;
    req.endReason = reason;
    req.finishedMs = nowMs;
    if (this.live.delete(req)) {
      this.inFlightByTenant.set(req.tenant, (this.inFlightByTenant.get(req.tenant) ?? 1) - 1);
      if (req.deadlineAtMs !== Infinity) this.numLiveWithDeadline--;
    }
  }

  assertInvariants(): void {
    this.kv.assertInvariants();
    const waitingSet = new Set(this.policy.waiting.toArray());
    if (waitingSet.size !== this.policy.waiting.size) throw new Error('a request is in the waiting queue twice');
    const runningSet = new Set(this.running);
    const swappedSet = new Set(this.swapped);
    if (runningSet.size !== this.running.length) throw new Error('a request is in the running queue twice');
    if (swappedSet.size !== this.swapped.length) throw new Error('a request is in the swapped queue twice');
    let numKvSeqs = 0;
    for (const r of this.live) {
      const inQueues = [waitingSet.has(r), runningSet.has(r), swappedSet.has(r)].filter(Boolean).length;
      if (inQueues !== 1) throw new Error(`request ${r.requestId} (${r.state}) is in ${inQueues} queues`);
      const expected = r.state === 'waiting' ? waitingSet : r.state === 'running' ? runningSet : r.state === 'swapped' ? swappedSet : null;
      if (!expected?.has(r)) throw new Error(`request ${r.requestId} has state ${r.state} but sits in another queue`);
      for (const s of r.seqs) {
        const loc = this.kv.location(s.seqId);
        if (loc) numKvSeqs++;
        if (s.isFinished) {
          if (loc) throw new Error(`finished seq ${s.seqId} still holds blocks`);
          continue;
        }
        if (r.state === 'waiting' && loc) throw new Error(`waiting request ${r.requestId} seq ${s.seqId} holds ${loc} blocks`);
        if (r.state === 'swapped' && loc === 'gpu') throw new Error(`swapped request ${r.requestId} seq ${s.seqId} holds GPU blocks`);
        if (r.state === 'running' && loc === 'cpu') throw new Error(`running request ${r.requestId} seq ${s.seqId} is in the CPU pool`);
        if (loc === 'gpu' && this.kv.numSlots(s.seqId) !== s.numComputedTokens) {
          throw new Error(`seq ${s.seqId} has ${this.kv.numSlots(s.seqId)} KV slots but ${s.numComputedTokens} computed tokens`);
        }
        if (!loc && s.numComputedTokens !== 0) throw new Error(`seq ${s.seqId} has ${s.numComputedTokens} computed tokens and no blocks`);
      }
    }
    const numTracked = this.kv.numTrackedSeqs;
    if (numTracked !== numKvSeqs) throw new Error(`the KV cache manager tracks ${numTracked} sequences but live requests own ${numKvSeqs}`);
    this.lora.assertInvariants(new Set(this.running.filter((r) => r.adapter !== null).map((r) => r.requestId)));
    for (const r of this.running) {
      if (r.adapter !== null && this.lora.slotHolding(r.adapter) !== this.lora.slotOf(r.requestId)) throw new Error(`running ${r.requestId} does not pin the slot of its adapter ${r.adapter}`);
    }
    if (this.numRunningSeqSlots() > this.config.maxNumSeqs) throw new Error(`running requests take ${this.numRunningSeqSlots()} sequence slots (max ${this.config.maxNumSeqs})`);
  }
}

/** A decode token: the newest sampled token of a sequence, fed for the first time (with its drafts, if any). */
export function isDecodeWork(w: SeqWork): boolean {
  return w.numNewTokens - w.draftTokenIds.length === 1 && w.seq.numOutputTokens > 0 && w.startPosition === w.seq.numTokens - 1;
}
