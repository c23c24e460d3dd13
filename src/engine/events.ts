/**
 * Engine events: plain JSON objects, streamed to listeners and kept in the event log. Inputs
 * (submit, cancel) are logged with the step before which they took effect, so a log replays.
 */
import type { FailReason, FinishReason, RejectReason, RequestSpec } from './request.ts';
import type { SchedulerConfig } from './scheduler.ts';
import type { LoraAdapterInfo } from './types.ts';

export type PreemptionMode = 'recompute' | 'swap' | 'abort';

/** What the scheduler decided about one request, and why, in words (the step inspector's lines). */
export interface Decision {
  requestId: string;
  kind: 'admitted' | 'resumed' | 'swappedIn' | 'waits' | 'preempted' | 'rejected' | 'timedOut';
  /** E.g. "r76 preempted by recompute: 0 free blocks, r12 needs 1; ranks last under priority: lowest priority (3), then newest". */
  reason: string;
}

export type EngineEvent =
  /** Input: a request was handed to the engine (arrivalMs filled in). */
  | { type: 'submit'; timeMs: number; stepIndex: number; request: RequestSpec & { requestId: string; arrivalMs: number } }
  /** Input: a cancellation. */
  | { type: 'cancel'; timeMs: number; stepIndex: number; requestId: string }
  /** Input: scheduler settings changed while the engine runs (policy, budgets, preemption mode...). */
  | { type: 'reconfigure'; timeMs: number; stepIndex: number; changes: Partial<SchedulerConfig> }
  /** Input: a LoRA adapter was registered (its name, rank and scale; the weights stay with the executor). */
  | { type: 'adapterRegistered'; timeMs: number; stepIndex: number; adapter: LoraAdapterInfo }
  /** The request reached the scheduler and was queued. */
  | { type: 'queued'; timeMs: number; requestId: string }
  | { type: 'rejected'; timeMs: number; requestId: string; reason: RejectReason; detail: string }
  /** First admission, or re-admission after a preemption. */
  | { type: 'scheduled'; timeMs: number; stepIndex: number; requestId: string; numCachedTokens: number; resumed: boolean }
  | { type: 'token'; timeMs: number; requestId: string; seqId: number; seqIndex: number; tokenId: number; index: number }
  | { type: 'preempted'; timeMs: number; stepIndex: number; requestId: string; mode: PreemptionMode; reason?: string }
  | { type: 'finished'; timeMs: number; requestId: string; reasons: FinishReason[]; numOutputTokens: number[] }
  | { type: 'failed'; timeMs: number; requestId: string; reason: FailReason }
  /** The executor failed during a step (a lost GPU device, say); nothing of the step was computed. */
  | { type: 'stepFailed'; timeMs: number; startMs: number; stepIndex: number; message: string }
  /** A new executor took over; every running and swapped request was requeued for recompute. */
  | { type: 'executorReplaced'; timeMs: number; stepIndex: number }
  | {
      type: 'step';
      /** When the step ended; startMs when it was scheduled. */
      timeMs: number;
      startMs: number;
      stepIndex: number;
      durationMs: number;
      numSeqs: number;
      numPrefillTokens: number;
      numDecodeTokens: number;
      numPaddingTokens: number;
      /**
       * Sampled token per seqId this step (including stop tokens), for replay; a sequence that
       * verified drafts has one entry per token it appended, in order.
       */
      sampled: [seqId: number, tokenId: number][];
      /** Structured output: the token masks applied (absent when none), so replays show them too. */
      masks?: StepMask[];
      /** Speculative decoding: per sequence that verified drafts, how many it scheduled and accepted (absent: none). */
      drafts?: [seqId: number, numDraftTokens: number, numAcceptedTokens: number][];
      /** Async scheduling: tokens computed for sequences that had ended before the step was read (a stop read late); absent: none. */
      numDiscardedTokens?: number;
    };

export type EngineEventType = EngineEvent['type'];

/**
 * What the KV cache did, as the block pool and the KV cache manager report it (like vLLM v1's
 * KV cache events): drained once per step with KvCacheManager.takeEvents() and carried in the
 * step's record, so views draw what happened instead of guessing it from two snapshots.
 * Block ids are GPU blocks unless named cpuBlockId.
 */
export type KvEvent =
  /** A free block went to a sequence (after 'evicted' when it held cached content). */
  | { type: 'allocated'; blockId: number; seqId: number }
  /** A cached, free block was reused for other content: its prefix is gone from the cache. */
  | { type: 'evicted'; blockId: number; hash: number }
  /** The last table holding the block let go (a cached block stays in the cache, evictable). */
  | { type: 'freed'; blockId: number }
  /** A full, computed block entered the prefix cache. */
  | { type: 'cached'; blockId: number; hash: number }
  /** A new sequence starts from a cached block (prefix-cache hit; it may revive a free block). */
  | { type: 'cacheHit'; blockId: number; seqId: number }
  /** A forked sequence shares the parent's block by reference. */
  | { type: 'shared'; blockId: number; seqId: number }
  /** Copy-on-write: the sequence's first write into a shared block gets it a private copy. */
  | { type: 'copied'; srcBlockId: number; dstBlockId: number; seqId: number }
  | { type: 'swappedOut'; blockId: number; cpuBlockId: number }
  | { type: 'swappedIn'; cpuBlockId: number; blockId: number }
  /** Every cached block forgotten (the executor's memory was lost). */
  | { type: 'cacheCleared' };

export type KvEventType = KvEvent['type'];
export type EventListener = (event: EngineEvent) => void;

/** One token mask applied in a step (structured output). */
export interface StepMask {
  seqId: number;
  requestId: string;
  /** Host ms to compute the bitmask and apply it to the row. */
  ms: number;
  /** Tokens allowed, of vocabSize. */
  numAllowed: number;
  vocabSize: number;
}
