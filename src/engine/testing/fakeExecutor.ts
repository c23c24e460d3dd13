/**
 * TEST DOUBLE: a deterministic stand-in for a model executor, for testing the scheduler and the
 * KV cache manager without a model. Not for production use.
 *
 * It keeps a fake KV cache: every slot stores the token id written there (as if K/V were the
 * token), and it carries out swap and copy instructions on it. For a row that needs logits it
 * reads the sequence's whole context back through its block table and derives the next token
 * from a hash of what it read. So a paging bug (a wrong slot, a missed copy-on-write, a lost
 * swap, a bad prefix-cache hit) changes the generated tokens, and reading a never-written slot
 * throws. fakeNextToken() gives the same token from a plain token list, the reference.
 */
import { PLACEHOLDER_TOKEN_ID, type Executor, type KvGeometry, type LogitRow, type SeqOutput, type StepOutput, type StepPlan } from '../types.ts';
import { hashBlockTokens } from '../hash.ts';

export interface FakeExecutorOptions {
  /** Tokens 0 .. vocabSize-1 (default 64); ids 0-2 are only emitted as stop tokens. */
  vocabSize?: number;
  /** When set, contexts whose hash falls in 1/stopEvery of the space yield this token. */
  stopTokenId?: number;
  stopEvery?: number;
  /** Also return a logits row (needed for temperature > 0; constrained rows always get one). */
  emitLogits?: boolean;
  /**
   * When set, the next token mostly repeats the one repeatPeriod positions back (3 times in 4,
   * by the context hash), so n-gram drafts are often, not always, right (speculative decoding tests).
   */
  repeatPeriod?: number;
  /** With repeatPeriod: always repeat (exactly periodic output, so every n-gram draft is right). */
  repeatExact?: boolean;
  /**
   * Async scheduling: take plans with PLACEHOLDER_TOKEN_ID rows, filled from the previous plan's
   * kept tokens (StepPlan.keepSampledTokens), as the WebGPU executor does on the device.
   */
  tokenFeedback?: boolean;
  /** Step duration (default 1 ms + 0.01 ms per token). */
  durationMs?: (plan: StepPlan) => number;
}

const EMPTY = -1;

function contextHash(tokens: ArrayLike<number>, length: number): number {
  return hashBlockTokens(0, tokens, 0, length, 0x5eed);
}

/** The token the fake model emits after this context (the reference for tests). */
export function fakeNextToken(context: readonly number[], options: FakeExecutorOptions = {}): number {
  return nextFromHash(contextHash(context, context.length), options, context, context.length);
}

function nextFromHash(h: number, options: FakeExecutorOptions, context: ArrayLike<number>, length: number): number {
  const vocab = options.vocabSize ?? 64;
  if (options.stopTokenId !== undefined && h % (options.stopEvery ?? 16) === 0) return options.stopTokenId;
  const period = options.repeatPeriod;
  if (period !== undefined && length >= period && (options.repeatExact || Math.floor(h / 3) % 4 !== 0)) return context[length - period];
  return 3 + (Math.floor(h / 7) % (vocab - 3));
}

/** Logits with the given argmax on top and hash-derived values elsewhere. */
function fakeLogits(h: number, argmax: number, vocab: number): Float32Array {
  const logits = new Float32Array(vocab);
  let x = h % 2147483647 || 1;
  for (let i = 0; i < vocab; i++) {
    x = (x * 48271) % 2147483647;
    logits[i] = (x / 2147483647) * 2;
  }
  logits[argmax] = 3;
  return logits;
}

export class FakeExecutor implements Executor {
  readonly name = 'fake (test double)';
  private blockSize = 0;
  /** [numGpuBlocks * blockSize] token id per slot, -1 = never written. */
  private gpu = new Int32Array(0);
  /** [numCpuBlocks * blockSize] */
  private cpu = new Int32Array(0);
  readonly plans: StepPlan[] = [];
  /** Keep every plan in `plans` (for tests that inspect them). */
  recordPlans = false;
  readonly tokenFeedback: boolean;
  /** Async scheduling: the last plan's sampled token per seqId, when it kept them (else null). */
  private kept: Map<number, number> | null = null;
  /** Placeholder rows filled so far (tests check that async scheduling fed some). */
  numPlaceholdersFilled = 0;

  constructor(private readonly options: FakeExecutorOptions = {}) {
    this.tokenFeedback = options.tokenFeedback ?? false;
  }

  configure(geometry: KvGeometry): void {
    this.blockSize = geometry.blockSize;
    this.gpu = new Int32Array(geometry.numGpuBlocks * geometry.blockSize).fill(EMPTY);
    this.cpu = new Int32Array(geometry.numCpuBlocks * geometry.blockSize).fill(EMPTY);
  }

  async execute(plan: StepPlan): Promise<StepOutput> {
    return this.executeSync(plan);
  }

  executeSync(plan: StepPlan): StepOutput {
    if (this.recordPlans) this.plans.push(plan);
    const bs = this.blockSize;
    const moveBlock = (src: Int32Array, srcBlock: number, dst: Int32Array, dstBlock: number) =>
      dst.set(src.subarray(srcBlock * bs, (srcBlock + 1) * bs), dstBlock * bs);
    for (const s of plan.swapOut) moveBlock(this.gpu, s.gpuBlock, this.cpu, s.cpuBlock);
    for (const s of plan.swapIn) moveBlock(this.cpu, s.cpuBlock, this.gpu, s.gpuBlock);
    for (const c of plan.copies) moveBlock(this.gpu, c.srcBlock, this.gpu, c.dstBlock);
    let numTokens = 0;
    for (const seq of plan.seqs) {
      numTokens += seq.tokenIds.length;
      if (seq.slots.length !== seq.tokenIds.length) throw new Error(`seq ${seq.seqId}: ${seq.slots.length} slots for ${seq.tokenIds.length} tokens`);
      for (let k = 0; k < seq.tokenIds.length; k++) {
        const p = seq.startPosition + k;
        const expected = seq.blockTable[Math.floor(p / bs)] * bs + (p % bs);
        if (seq.slots[k] !== expected) throw new Error(`seq ${seq.seqId} position ${p}: slot ${seq.slots[k]} but its block table says ${expected}`);
        let token = seq.tokenIds[k];
        if (token === PLACEHOLDER_TOKEN_ID) {
          // The previous step's token for this sequence, as the device would read it.
          const kept = this.tokenFeedback ? this.kept?.get(seq.seqId) : undefined;
          if (kept === undefined) throw new Error(`seq ${seq.seqId} position ${p}: a placeholder token, but the previous step kept no token for it`);
          token = kept;
          this.numPlaceholdersFilled++;
        }
        this.gpu[seq.slots[k]] = token;
      }
    }
    const outputs: SeqOutput[] = [];
    for (const seq of plan.seqs) {
      if (!seq.needsLogits) continue;
      const fullLength = seq.startPosition + seq.tokenIds.length;
      const context = new Int32Array(fullLength);
      for (let p = 0; p < fullLength; p++) {
        const v = this.gpu[seq.blockTable[Math.floor(p / bs)] * bs + (p % bs)];
        if (v === EMPTY) throw new Error(`seq ${seq.seqId} reads position ${p}, which was never written`);
        context[p] = v;
      }
      // One row per trailing logits row (draft verification), each seeing the context up to it.
      const numRows = seq.numLogitRows ?? 1;
      const rows: LogitRow[] = [];
      for (let r = 0; r < numRows; r++) {
        const length = fullLength - (numRows - 1 - r);
        const h = contextHash(context, length);
        const argmax = nextFromHash(h, this.options, context, length);
        const row: LogitRow = { argmax };
        if (this.options.emitLogits || seq.constrained) row.logits = fakeLogits(h, argmax, this.options.vocabSize ?? 64);
        rows.push(row);
      }
      const out: SeqOutput = { seqId: seq.seqId, ...rows[numRows - 1] };
      if (numRows > 1) out.rows = rows;
      outputs.push(out);
    }
    this.kept = plan.keepSampledTokens ? new Map(outputs.map((o) => [o.seqId, o.argmax])) : null;
    const durationMs = this.options.durationMs ? this.options.durationMs(plan) : 1 + 0.01 * numTokens;
    return { outputs, durationMs };
  }

  dispose(): void {
    this.gpu = new Int32Array(0);
    this.cpu = new Int32Array(0);
  }
}
