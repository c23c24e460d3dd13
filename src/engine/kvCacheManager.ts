/**
 * The KV cache manager: per-sequence block tables over the GPU block pool, prefix caching,
 * copy-on-write for forked sequences and a CPU swap pool. It never decides who runs: every
 * operation that needs memory returns null (changing nothing) when memory is short, and the
 * scheduler decides what to do about it. Memory moves it needs are returned as instructions
 * (BlockCopy, BlockSwap) that the executor carries out before the step's forward pass.
 *
 * Invariants (assertInvariants):
 *  1. every GPU block is free (in the free queue, refCount 0) or referenced (refCount > 0);
 *  2. a GPU block's refCount equals the number of GPU-resident block tables entries holding it;
 *     a CPU block's refCount equals the number of swapped-out table entries holding it;
 *  3. a sequence's table is wholly on the GPU or wholly in the CPU pool, never both, and holds
 *     exactly max(ceil(numSlots / blockSize), numReservedBlocks) blocks;
 *  4. the CPU free list holds exactly the CPU blocks with refCount 0, once each;
 *  5. a cached GPU block of a sequence carries the hash of that sequence's own tokens there
 *     (a hit can never hand out K/V of different tokens);
 *  6. the free queue and the cache index are consistent (BlockPool.assertConsistent).
 * The scheduler adds: each live sequence's numSlots equals its numComputedTokens after a step.
 *
 * Sealed: its pool and tables are private. Others read it through a small API (usage(),
 * fragmentation(), blockView(), location(), blockTable()...) and learn what it did from the KV
 * events it records (allocated, freed, cached, cache hit, evicted, copied, swapped out/in),
 * drained once per step with takeEvents(), as vLLM v1's KVCacheManager.take_events() does.
 */
import type { BlockCopy, BlockSwap } from './types.ts';
import type { KvEvent } from './events.ts';
import { BlockPool, NO_HASH } from './blockPool.ts';
import { hashBlockTokens, ROOT_BLOCK_HASH } from './hash.ts';

/** What the manager needs to know about a sequence. */
export interface KvSeq {
  readonly seqId: number;
  /** Every token of the sequence known so far: prompt, then generated tokens. */
  readonly tokenIds: readonly number[];
  /** Extra key mixed into every block hash (e.g. a tenant salt); different keys never share. */
  readonly cacheKey: number;
  /**
   * Content hashes of the sequence's full blocks by logical index, filled in by the manager.
   * They depend on tokens only, so they survive preemption and are copied by a fork.
   */
  readonly blockHashes: number[];
}

export interface KvCacheConfig {
  blockSize: number;
  numGpuBlocks: number;
  numCpuBlocks: number;
  enablePrefixCaching: boolean;
}

export interface KvAllocation {
  /** Blocks appended to the table by this call (fresh allocations, not cache hits). */
  newBlockIds: number[];
  /** Copy-on-write instructions (at most one per call). */
  copies: BlockCopy[];
}

export interface CachedPrefix {
  blockIds: number[];
  numTokens: number;
}

interface SeqBlocks {
  seq: KvSeq;
  blockTable: number[];
  location: 'gpu' | 'cpu';
  /** Token positions 0 .. numSlots-1 have a slot. */
  numSlots: number;
  /** Logical blocks already offered to the prefix cache. */
  numCommittedBlocks: number;
  /** Blocks reserved up front (max-length preallocation); the table never holds fewer. */
  numReservedBlocks: number;
}

export interface KvStats {
  /** Prompt tokens looked up in the prefix cache (on admission) and how many hit. */
  numPrefixQueryTokens: number;
  numPrefixHitTokens: number;
  numPrefixQueries: number;
  numPrefixHits: number;
  numCowCopies: number;
  numSwappedOutBlocks: number;
  numSwappedInBlocks: number;
}

/** The whole pool's state at one moment, for views: plain data (typed arrays), owned by the caller. */
export interface KvBlockView {
  gpu: {
    refCount: Int32Array; // [numGpuBlocks]
    numFilled: Int32Array; // [numGpuBlocks] token slots holding K/V (most of any holder)
    ownerSeqId: Int32Array; // [numGpuBlocks] one holder (lowest seqId), -1 when free
    cached: Uint8Array; // [numGpuBlocks] 1 when the block is in the prefix cache (free + cached = evictable)
    hashes: Float64Array; // [numGpuBlocks] prefix-cache hash, -1 when none
  };
  /** blockId -> every holder, for GPU blocks held by more than one sequence. */
  sharedBlockOwners: Record<number, number[]>;
  cpu: {
    refCount: Int32Array; // [numCpuBlocks]
    ownerSeqId: Int32Array; // [numCpuBlocks] -1 when free
  };
  /** seqId -> its block table (GPU block ids, or CPU block ids while swapped), logical order. */
  blockTables: Record<number, number[]>;
}

export class KvCacheManager {
  readonly blockSize: number;
  readonly numCpuBlocks: number;
  readonly enablePrefixCaching: boolean;
  private readonly pool: BlockPool;
  /** [numCpuBlocks] references to each CPU swap block. */
  private readonly cpuRefCounts: Int32Array;
  /** What happened since the last takeEvents(), in order. */
  private events: KvEvent[] = [];
  private shortfall = { numNeeded: 0, numFree: 0 };
  private readonly statsData: KvStats = {
    numPrefixQueryTokens: 0,
    numPrefixHitTokens: 0,
    numPrefixQueries: 0,
    numPrefixHits: 0,
    numCowCopies: 0,
    numSwappedOutBlocks: 0,
    numSwappedInBlocks: 0,
  };
  /** Free CPU blocks; popped from the end, so block 0 goes first. */
  private readonly cpuFree: number[];
  private readonly seqs = new Map<number, SeqBlocks>();

  constructor(config: KvCacheConfig) {
    if (!Number.isInteger(config.blockSize) || config.blockSize <= 0) throw new RangeError(`blockSize must be a positive integer, got ${config.blockSize}`);
    if (!Number.isInteger(config.numCpuBlocks) || config.numCpuBlocks < 0) throw new RangeError(`numCpuBlocks must be an integer >= 0, got ${config.numCpuBlocks}`);
    this.blockSize = config.blockSize;
    this.numCpuBlocks = config.numCpuBlocks;
    this.enablePrefixCaching = config.enablePrefixCaching;
    this.pool = new BlockPool(config.numGpuBlocks, (e) => this.events.push(e));
    this.cpuRefCounts = new Int32Array(config.numCpuBlocks);
    this.cpuFree = [];
    for (let b = config.numCpuBlocks - 1; b >= 0; b--) this.cpuFree.push(b);
  }

  /** Counters since construction. */
  get stats(): Readonly<KvStats> {
    return this.statsData;
  }

  /** The KV events since the last call, oldest first (the caller owns the array). */
  takeEvents(): KvEvent[] {
    const out = this.events;
    this.events = [];
    return out;
  }

  /** Block tables holding this GPU block. */
  refCount(blockId: number): number {
    return this.pool.refCount(blockId);
  }
  /** Swapped-out table entries holding this CPU block. */
  cpuRefCount(cpuBlockId: number): number {
    return this.cpuRefCounts[cpuBlockId];
  }
  /** Free GPU blocks in the order they will be taken (head first). */
  freeQueue(): number[] {
    return this.pool.freeQueue();
  }
  /** The GPU block caching this content hash, or -1. */
  cachedBlockOf(hash: number): number {
    return this.pool.lookup(hash);
  }
  /** Cached free blocks reused for other content, since construction. */
  get numEvictions(): number {
    return this.pool.numEvictions;
  }

  get numGpuBlocks(): number {
    return this.pool.numBlocks;
  }
  /** What the last allocateSlots() that returned null needed and found (for the scheduler's reasons). */
  get lastShortfall(): Readonly<{ numNeeded: number; numFree: number }> {
    return this.shortfall;
  }
  get numFreeGpuBlocks(): number {
    return this.pool.numFree;
  }
  get numFreeCpuBlocks(): number {
    return this.cpuFree.length;
  }

  has(seqId: number): boolean {
    return this.seqs.has(seqId);
  }
  location(seqId: number): 'gpu' | 'cpu' | null {
    return this.seqs.get(seqId)?.location ?? null;
  }
  blockTable(seqId: number): readonly number[] {
    return this.seqs.get(seqId)?.blockTable ?? [];
  }
  numSlots(seqId: number): number {
    return this.seqs.get(seqId)?.numSlots ?? 0;
  }

  /** Physical slot of a position: blockTable[floor(p / blockSize)] * blockSize + p % blockSize. */
  slotOf(seqId: number, position: number): number {
    const st = this.seqs.get(seqId);
    if (!st || st.location !== 'gpu' || position >= st.numSlots) throw new Error(`seq ${seqId} has no GPU slot for position ${position}`);
    return st.blockTable[Math.floor(position / this.blockSize)] * this.blockSize + (position % this.blockSize);
  }

  /** Blocks needed to hold numTokens positions. */
  blocksFor(numTokens: number): number {
    return Math.ceil(numTokens / this.blockSize);
  }

  /**
   * The longest cached prefix of a not-yet-allocated sequence, in whole blocks. At least the
   * last token is always left to compute, since the step needs its logits (as vLLM does).
   */
  findCachedPrefix(seq: KvSeq): CachedPrefix {
    if (!this.enablePrefixCaching) return { blockIds: [], numTokens: 0 };
    const maxBlocks = Math.floor((seq.tokenIds.length - 1) / this.blockSize);
    this.extendHashes(seq, maxBlocks);
    const blockIds: number[] = [];
    for (let i = 0; i < maxBlocks; i++) {
      const b = this.pool.lookup(seq.blockHashes[i]);
      if (b < 0) break;
      blockIds.push(b);
    }
    return { blockIds, numTokens: blockIds.length * this.blockSize };
  }

  /**
   * Reserves slots for the next numNewTokens positions of a GPU-resident (or new) sequence.
   * A new sequence may start from cache-hit blocks (from findCachedPrefix, same step), and may
   * reserve room for reserveTokens positions up front (contiguous-style max-length
   * preallocation, for comparison with paging). Writing into a block other tables share first
   * gives this sequence a private block (copy-on-write; a copy instruction when the block holds
   * tokens). Returns null, changing nothing, when the free queue cannot cover it.
   */
  allocateSlots(seq: KvSeq, numNewTokens: number, cachedBlockIds: readonly number[] = [], reserveTokens = 0): KvAllocation | null {
    const bs = this.blockSize;
    const st = this.seqs.get(seq.seqId);
    if (st && st.location !== 'gpu') throw new Error(`seq ${seq.seqId} is swapped out; swap it in before allocating`);
    if (st && cachedBlockIds.length > 0) throw new Error(`seq ${seq.seqId} already has blocks; cache hits apply to new sequences only`);
    const numSlotsBefore = st ? st.numSlots : cachedBlockIds.length * bs;
    const numBlocksBefore = st ? st.blockTable.length : cachedBlockIds.length;
    const numSlotsAfter = numSlotsBefore + numNewTokens;
    const numReserved = Math.max(st?.numReservedBlocks ?? 0, Math.ceil(reserveTokens / bs));
    const numNewBlocks = Math.max(0, Math.ceil(numSlotsAfter / bs), numReserved) - numBlocksBefore;
    const sharedIdx: number[] = [];
    if (st && numNewTokens > 0) {
      const last = Math.min(Math.ceil(numSlotsAfter / bs), numBlocksBefore) - 1;
      for (let i = Math.floor(numSlotsBefore / bs); i <= last; i++) if (this.pool.refCount(st.blockTable[i]) > 1) sharedIdx.push(i);
    }
    let numRevived = 0;
    for (const b of cachedBlockIds) if (this.pool.isFree(b)) numRevived++;
    const numNeeded = Math.max(0, numNewBlocks) + sharedIdx.length + numRevived;
    if (numNeeded > this.pool.numFree) {
      this.shortfall = { numNeeded, numFree: this.pool.numFree };
      return null;
    }

    let entry = st;
    if (!entry) {
      entry = { seq, blockTable: [], location: 'gpu', numSlots: 0, numCommittedBlocks: cachedBlockIds.length, numReservedBlocks: 0 };
      this.seqs.set(seq.seqId, entry);
      for (const b of cachedBlockIds) {
        this.pool.retain(b);
        entry.blockTable.push(b);
        this.events.push({ type: 'cacheHit', blockId: b, seqId: seq.seqId });
      }
      if (this.enablePrefixCaching) {
        this.statsData.numPrefixQueries++;
        this.statsData.numPrefixQueryTokens += seq.tokenIds.length;
        this.statsData.numPrefixHitTokens += cachedBlockIds.length * bs;
        if (cachedBlockIds.length > 0) this.statsData.numPrefixHits++;
      }
    }
    entry.numReservedBlocks = numReserved;
    const copies: BlockCopy[] = [];
    for (const i of sharedIdx) {
      // First write into a shared block: this sequence gets a private one.
      const src = entry.blockTable[i];
      const dst = this.pool.allocate();
      this.events.push({ type: 'allocated', blockId: dst, seqId: seq.seqId });
      if (i * bs < numSlotsBefore) {
        copies.push({ srcBlock: src, dstBlock: dst });
        this.events.push({ type: 'copied', srcBlockId: src, dstBlockId: dst, seqId: seq.seqId });
        this.statsData.numCowCopies++;
      }
      this.pool.release(src);
      entry.blockTable[i] = dst;
    }
    const newBlockIds: number[] = [];
    for (let i = 0; i < numNewBlocks; i++) {
      const b = this.pool.allocate();
      this.events.push({ type: 'allocated', blockId: b, seqId: seq.seqId });
      entry.blockTable.push(b);
      newBlockIds.push(b);
    }
    entry.numSlots = numSlotsAfter;
    return { newBlockIds, copies };
  }

  /**
   * After a step computed positions up to numComputedTokens - 1: offers newly completed full
   * blocks to the prefix cache.
   */
  commitComputed(seq: KvSeq, numComputedTokens: number): void {
    const st = this.seqs.get(seq.seqId);
    if (!st || st.location !== 'gpu') throw new Error(`seq ${seq.seqId} has no GPU blocks to commit`);
    if (numComputedTokens > st.numSlots) throw new Error(`seq ${seq.seqId}: ${numComputedTokens} computed tokens but only ${st.numSlots} slots`);
    if (!this.enablePrefixCaching) return;
    const numFull = Math.floor(numComputedTokens / this.blockSize);
    if (numFull <= st.numCommittedBlocks) return;
    this.extendHashes(seq, numFull);
    for (let i = st.numCommittedBlocks; i < numFull; i++) this.pool.cache(st.blockTable[i], seq.blockHashes[i]);
    st.numCommittedBlocks = numFull;
  }

  /**
   * Speculative decoding's rollback: the sequence keeps slots for its first numSlots positions
   * only (the K/V written for rejected drafts beyond them is discarded and will be overwritten);
   * blocks that held nothing but rejected positions go back to the pool, tail first. Full blocks
   * already offered to the prefix cache are never dropped (numSlots must cover them).
   */
  truncate(seq: KvSeq, numSlots: number): void {
    const st = this.seqs.get(seq.seqId);
    if (!st || st.location !== 'gpu') throw new Error(`seq ${seq.seqId} has no GPU blocks to truncate`);
    if (!(Number.isInteger(numSlots) && numSlots >= 0 && numSlots <= st.numSlots)) throw new Error(`seq ${seq.seqId}: cannot truncate ${st.numSlots} slots to ${numSlots}`);
    if (numSlots < st.numCommittedBlocks * this.blockSize) throw new Error(`seq ${seq.seqId}: truncating to ${numSlots} slots would drop committed blocks`);
    const keep = Math.max(Math.ceil(numSlots / this.blockSize), st.numReservedBlocks);
    while (st.blockTable.length > keep) this.pool.release(st.blockTable.pop()!);
    st.numSlots = numSlots;
  }

  /** A child shares all of the parent's blocks (including a partial last one) by reference. */
  fork(parent: KvSeq, child: KvSeq): void {
    const st = this.seqs.get(parent.seqId);
    if (!st || st.location !== 'gpu') throw new Error(`fork: seq ${parent.seqId} has no GPU blocks`);
    if (this.seqs.has(child.seqId)) throw new Error(`fork: seq ${child.seqId} already exists`);
    for (const b of st.blockTable) {
      this.pool.retain(b);
      this.events.push({ type: 'shared', blockId: b, seqId: child.seqId });
    }
    this.seqs.set(child.seqId, {
      seq: child,
      blockTable: st.blockTable.slice(),
      location: 'gpu',
      numSlots: st.numSlots,
      numCommittedBlocks: st.numCommittedBlocks,
      numReservedBlocks: st.numReservedBlocks,
    });
  }

  /** Drops a sequence's blocks, tail first (so a cached prefix outlives its tail). */
  free(seqId: number): void {
    const st = this.seqs.get(seqId);
    if (!st) return;
    for (let i = st.blockTable.length - 1; i >= 0; i--) {
      const b = st.blockTable[i];
      if (st.location === 'gpu') this.pool.release(b);
      else this.releaseCpu(b);
    }
    this.seqs.delete(seqId);
  }

  /** Frees every sequence, on the GPU and in the CPU pool, and empties the prefix cache. */
  freeAll(): void {
    for (const seqId of [...this.seqs.keys()]) this.free(seqId);
    this.pool.clearCache();
  }

  /**
   * Moves these sequences (one request's) to the CPU pool; blocks they share map to one CPU
   * block. A GPU block also held by others (a shared prefix) is copied and stays for them.
   * Returns null, changing nothing, when the CPU pool is too small.
   */
  swapOut(seqIds: readonly number[]): BlockSwap[] | null {
    const entries = seqIds.map((id) => {
      const st = this.seqs.get(id);
      if (!st || st.location !== 'gpu') throw new Error(`swapOut: seq ${id} has no GPU blocks`);
      return st;
    });
    const cpuOf = new Map<number, number>();
    for (const st of entries) for (const b of st.blockTable) cpuOf.set(b, -1);
    if (cpuOf.size > this.cpuFree.length) return null;
    const swaps: BlockSwap[] = [];
    for (const gpuBlock of cpuOf.keys()) {
      const cpuBlock = this.cpuFree.pop()!;
      cpuOf.set(gpuBlock, cpuBlock);
      swaps.push({ gpuBlock, cpuBlock });
      this.events.push({ type: 'swappedOut', blockId: gpuBlock, cpuBlockId: cpuBlock });
    }
    for (const st of entries) {
      for (let i = st.blockTable.length - 1; i >= 0; i--) {
        const g = st.blockTable[i];
        const c = cpuOf.get(g)!;
        this.cpuRefCounts[c]++;
        this.pool.release(g);
        st.blockTable[i] = c;
      }
      st.location = 'cpu';
    }
    this.statsData.numSwappedOutBlocks += swaps.length;
    return swaps;
  }

  /** GPU blocks a swap-in of these sequences needs. */
  numBlocksToSwapIn(seqIds: readonly number[]): number {
    const distinct = new Set<number>();
    for (const id of seqIds) for (const b of this.seqs.get(id)?.blockTable ?? []) distinct.add(b);
    return distinct.size;
  }

  /** Brings swapped sequences back; null (nothing changed) when the GPU pool is too small. */
  swapIn(seqIds: readonly number[]): BlockSwap[] | null {
    const entries = seqIds.map((id) => {
      const st = this.seqs.get(id);
      if (!st || st.location !== 'cpu') throw new Error(`swapIn: seq ${id} is not swapped out`);
      return st;
    });
    const gpuOf = new Map<number, number>();
    for (const st of entries) for (const c of st.blockTable) gpuOf.set(c, -1);
    if (gpuOf.size > this.pool.numFree) return null;
    const swaps: BlockSwap[] = [];
    for (const cpuBlock of gpuOf.keys()) {
      const gpuBlock = this.pool.allocate();
      gpuOf.set(cpuBlock, gpuBlock);
      swaps.push({ gpuBlock, cpuBlock });
      this.events.push({ type: 'swappedIn', cpuBlockId: cpuBlock, blockId: gpuBlock });
    }
    const fresh = new Set<number>(gpuOf.values());
    for (const st of entries) {
      for (let i = 0; i < st.blockTable.length; i++) {
        const c = st.blockTable[i];
        const g = gpuOf.get(c)!;
        // allocate() gave each block its first reference; later holders retain it.
        if (fresh.has(g)) fresh.delete(g);
        else this.pool.retain(g);
        this.releaseCpu(c);
        st.blockTable[i] = g;
      }
      st.location = 'gpu';
      if (this.enablePrefixCaching) {
        for (let i = 0; i < st.numCommittedBlocks; i++) this.pool.cache(st.blockTable[i], st.seq.blockHashes[i]);
      }
    }
    this.statsData.numSwappedInBlocks += swaps.length;
    return swaps;
  }

  /** Share of GPU blocks held by at least one table. */
  usage(): number {
    return (this.pool.numBlocks - this.pool.numFree) / this.pool.numBlocks;
  }

  /** Share of the CPU swap pool in use (0 without one). */
  cpuUsage(): number {
    return this.numCpuBlocks > 0 ? 1 - this.cpuFree.length / this.numCpuBlocks : 0;
  }

  /** Internal fragmentation: the share of token slots in held GPU blocks that hold no K/V. */
  fragmentation(): number {
    const fill = this.blockFill();
    let numUsed = 0;
    let numFilled = 0;
    for (let b = 0; b < fill.length; b++) {
      if (this.pool.refCount(b) > 0) {
        numUsed++;
        numFilled += fill[b];
      }
    }
    return numUsed > 0 ? 1 - numFilled / (numUsed * this.blockSize) : 0;
  }

  /** The whole pool as plain data (copies), for views and snapshots. */
  blockView(): KvBlockView {
    const numGpu = this.pool.numBlocks;
    const ownerSeqId = new Int32Array(numGpu).fill(-1);
    const cpuOwner = new Int32Array(this.numCpuBlocks).fill(-1);
    const holders = new Map<number, number[]>();
    const blockTables: Record<number, number[]> = {};
    for (const [seqId, st] of this.seqs) {
      blockTables[seqId] = st.blockTable.slice();
      for (const b of st.blockTable) {
        if (st.location === 'cpu') {
          if (cpuOwner[b] < 0 || seqId < cpuOwner[b]) cpuOwner[b] = seqId;
          continue;
        }
        if (ownerSeqId[b] < 0 || seqId < ownerSeqId[b]) ownerSeqId[b] = seqId;
        if (this.pool.refCount(b) > 1) {
          const list = holders.get(b) ?? [];
          list.push(seqId);
          holders.set(b, list);
        }
      }
    }
    const hashes = this.pool.copyHashes();
    const cached = new Uint8Array(numGpu);
    for (let b = 0; b < numGpu; b++) cached[b] = hashes[b] !== NO_HASH ? 1 : 0;
    const sharedBlockOwners: Record<number, number[]> = {};
    for (const [b, list] of holders) sharedBlockOwners[b] = list.sort((x, y) => x - y);
    return {
      gpu: { refCount: this.pool.copyRefCounts(), numFilled: this.blockFill(), ownerSeqId, cached, hashes },
      sharedBlockOwners,
      cpu: { refCount: this.cpuRefCounts.slice(), ownerSeqId: cpuOwner },
      blockTables,
    };
  }

  /** Per GPU block: the most token slots any holder fills in it (0 for free blocks). */
  private blockFill(): Int32Array {
    const fill = new Int32Array(this.pool.numBlocks);
    for (const st of this.seqs.values()) {
      if (st.location !== 'gpu') continue;
      for (let i = 0; i < st.blockTable.length; i++) {
        const n = Math.min(this.blockSize, st.numSlots - i * this.blockSize);
        const b = st.blockTable[i];
        if (n > fill[b]) fill[b] = n;
      }
    }
    return fill;
  }

  /** Sequences holding blocks (on the GPU or in the CPU pool). */
  get numTrackedSeqs(): number {
    return this.seqs.size;
  }

  assertInvariants(): void {
    this.pool.assertConsistent();
    const gpuRefs = new Int32Array(this.pool.numBlocks);
    const cpuRefs = new Int32Array(this.numCpuBlocks);
    for (const [seqId, st] of this.seqs) {
      const expectedBlocks = Math.max(Math.ceil(st.numSlots / this.blockSize), st.numReservedBlocks);
      if (st.blockTable.length !== expectedBlocks) {
        throw new Error(`seq ${seqId} holds ${st.blockTable.length} blocks for ${st.numSlots} slots (expected ${expectedBlocks})`);
      }
      for (let i = 0; i < st.blockTable.length; i++) {
        const b = st.blockTable[i];
        if (st.location === 'gpu') {
          if (!(b >= 0 && b < this.pool.numBlocks)) throw new Error(`seq ${seqId} holds invalid GPU block ${b}`);
          gpuRefs[b]++;
          const h = this.pool.hashOf(b);
          if (h !== NO_HASH && i < st.seq.blockHashes.length && st.seq.blockHashes[i] !== h) {
            throw new Error(`seq ${seqId} logical block ${i} is GPU block ${b} cached as ${h}, but its tokens hash to ${st.seq.blockHashes[i]}`);
          }
          if (h !== NO_HASH && (i + 1) * this.blockSize > st.numSlots) throw new Error(`seq ${seqId} has a cached block ${b} that it has not filled`);
        } else {
          if (!(b >= 0 && b < this.numCpuBlocks)) throw new Error(`seq ${seqId} holds invalid CPU block ${b}`);
          cpuRefs[b]++;
        }
      }
    }
    for (let b = 0; b < this.pool.numBlocks; b++) {
      if (gpuRefs[b] !== this.pool.refCount(b)) {
        throw new Error(`GPU block ${b} has refCount ${this.pool.refCount(b)} but ${gpuRefs[b]} table entries hold it`);
      }
    }
    const freeSeen = new Uint8Array(this.numCpuBlocks);
    for (const c of this.cpuFree) {
      if (freeSeen[c]) throw new Error(`CPU block ${c} is in the CPU free list twice`);
      freeSeen[c] = 1;
    }
    for (let c = 0; c < this.numCpuBlocks; c++) {
      if (cpuRefs[c] !== this.cpuRefCounts[c]) throw new Error(`CPU block ${c} has refCount ${this.cpuRefCounts[c]} but ${cpuRefs[c]} table entries hold it`);
      if ((cpuRefs[c] === 0) !== (freeSeen[c] === 1)) {
        throw new Error(`CPU block ${c} is ${freeSeen[c] ? '' : 'not '}in the CPU free list with ${cpuRefs[c]} references`);
      }
    }
  }

  private releaseCpu(c: number): void {
    if (this.cpuRefCounts[c] <= 0) throw new Error(`CPU block ${c} is already free`);
    if (--this.cpuRefCounts[c] === 0) this.cpuFree.push(c);
  }

  private extendHashes(seq: KvSeq, numFullBlocks: number): void {
    const bs = this.blockSize;
    for (let i = seq.blockHashes.length; i < numFullBlocks; i++) {
      const parent = i === 0 ? ROOT_BLOCK_HASH : seq.blockHashes[i - 1];
      seq.blockHashes.push(hashBlockTokens(parent, seq.tokenIds, i * bs, (i + 1) * bs, seq.cacheKey));
    }
  }
}
