/**
 * The GPU block pool: `numBlocks` physical KV blocks, their reference counts, the free queue and
 * the prefix-cache index (block hash -> block). It owns no policy: the KV cache manager decides
 * which blocks a sequence gets, the scheduler decides who runs (see DESIGN.md).
 *
 * Invariants (checked by KvCacheManager.assertInvariants):
 *  - a block is in the free queue iff its refCount is 0;
 *  - the free queue is a consistent doubly linked list holding exactly numFree blocks;
 *  - cachedBlockByHash maps h -> b iff blockHash[b] === h (h !== NO_HASH).
 *
 * Free queue order: the head is taken first. Blocks holding nothing reusable (no hash) are put
 * at the head, so they are reused before any cached block is evicted; cached blocks are appended
 * at the tail, so among cached free blocks the head is the least recently used.
 *
 * It reports what it did to its owner as KV events ('evicted', 'freed', 'cached', 'cacheCleared');
 * the KV cache manager adds the ones that need a sequence ('allocated', 'cacheHit', ...).
 */
import type { KvEvent } from './events.ts';

export const NO_HASH = -1;

export class BlockPool {
  readonly numBlocks: number;
  /** [numBlocks] number of block tables holding each block. */
  private readonly refCounts: Int32Array;
  /** [numBlocks] prefix-cache hash of a block's content, NO_HASH when not cached. */
  private readonly blockHashes: Float64Array;
  private readonly cachedBlockByHash = new Map<number, number>();
  /** Evictions of cached free blocks, since construction. */
  private numEvictionsTotal = 0;

  // Doubly linked free queue; index numBlocks is the sentinel (head = next[s], tail = prev[s]).
  private readonly prev: Int32Array;
  private readonly next: Int32Array;
  private numFreeBlocks: number;

  constructor(
    numBlocks: number,
    private readonly emit: (e: KvEvent) => void = () => {},
  ) {
    if (!Number.isInteger(numBlocks) || numBlocks <= 0) throw new RangeError(`numBlocks must be a positive integer, got ${numBlocks}`);
    this.numBlocks = numBlocks;
    this.refCounts = new Int32Array(numBlocks);
    this.blockHashes = new Float64Array(numBlocks).fill(NO_HASH);
    this.prev = new Int32Array(numBlocks + 1);
    this.next = new Int32Array(numBlocks + 1);
    const s = numBlocks;
    this.prev[s] = this.next[s] = s;
    this.numFreeBlocks = 0;
    for (let b = 0; b < numBlocks; b++) this.pushBack(b);
  }

  get numFree(): number {
    return this.numFreeBlocks;
  }

  isFree(blockId: number): boolean {
    return this.refCounts[blockId] === 0;
  }

  /** Block tables holding this block. */
  refCount(blockId: number): number {
    return this.refCounts[blockId];
  }

  /** The block's prefix-cache hash, NO_HASH when it caches nothing. */
  hashOf(blockId: number): number {
    return this.blockHashes[blockId];
  }

  get numEvictions(): number {
    return this.numEvictionsTotal;
  }

  /** Copies of the per-block state, for views: [numBlocks] refCounts and hashes. */
  copyRefCounts(): Int32Array {
    return this.refCounts.slice();
  }
  copyHashes(): Float64Array {
    return this.blockHashes.slice();
  }

  /** Free blocks in queue order, head (next to be taken) first. */
  freeQueue(): number[] {
    const out: number[] = [];
    const s = this.numBlocks;
    for (let b = this.next[s]; b !== s; b = this.next[b]) out.push(b);
    return out;
  }

  /** Takes the head of the free queue (evicting its cached content) with refCount 1. */
  allocate(): number {
    const s = this.numBlocks;
    const b = this.next[s];
    if (b === s) throw new Error('BlockPool.allocate: no free block (the caller must check numFree first)');
    this.unlink(b);
    if (this.blockHashes[b] !== NO_HASH) {
      this.emit({ type: 'evicted', blockId: b, hash: this.blockHashes[b] });
      this.cachedBlockByHash.delete(this.blockHashes[b]);
      this.blockHashes[b] = NO_HASH;
      this.numEvictionsTotal++;
    }
    this.refCounts[b] = 1;
    return b;
  }

  /** One more table holds this block (a prefix-cache hit or a fork); revives a free one. */
  retain(blockId: number): void {
    if (this.refCounts[blockId] === 0) this.unlink(blockId);
    this.refCounts[blockId]++;
  }

  /** One table fewer holds this block; at zero it joins the free queue. */
  release(blockId: number): void {
    if (this.refCounts[blockId] <= 0) throw new Error(`BlockPool.release: block ${blockId} is already free`);
    if (--this.refCounts[blockId] === 0) {
      this.emit({ type: 'freed', blockId });
      if (this.blockHashes[blockId] === NO_HASH) this.pushFront(blockId);
      else this.pushBack(blockId);
    }
  }

  /** The block caching this hash, or -1. */
  lookup(hash: number): number {
    return this.cachedBlockByHash.get(hash) ?? -1;
  }

  /** Registers a full, computed block's content; a no-op if the hash already has a block. */
  cache(blockId: number, hash: number): boolean {
    if (this.blockHashes[blockId] !== NO_HASH || this.cachedBlockByHash.has(hash)) return false;
    this.blockHashes[blockId] = hash;
    this.cachedBlockByHash.set(hash, blockId);
    this.emit({ type: 'cached', blockId, hash });
    return true;
  }

  /** Forgets every cached block's content (the GPU memory behind them was lost). */
  clearCache(): void {
    this.emit({ type: 'cacheCleared' });
    this.blockHashes.fill(NO_HASH);
    this.cachedBlockByHash.clear();
  }

  /** Throws when the free queue or the cache index is inconsistent. */
  assertConsistent(): void {
    const s = this.numBlocks;
    let count = 0;
    const seen = new Uint8Array(this.numBlocks);
    for (let b = this.next[s]; b !== s; b = this.next[b]) {
      if (b < 0 || b >= this.numBlocks) throw new Error(`free queue holds invalid block ${b}`);
      if (seen[b]) throw new Error(`free queue holds block ${b} twice`);
      seen[b] = 1;
      if (this.next[this.prev[b]] !== b) throw new Error(`free queue links broken at block ${b}`);
      if (this.refCounts[b] !== 0) throw new Error(`block ${b} is in the free queue with refCount ${this.refCounts[b]}`);
      if (++count > this.numBlocks) throw new Error('free queue has a cycle');
    }
    if (count !== this.numFreeBlocks) throw new Error(`free queue has ${count} blocks but numFree is ${this.numFreeBlocks}`);
    for (let b = 0; b < this.numBlocks; b++) {
      if (this.refCounts[b] < 0) throw new Error(`block ${b} has negative refCount ${this.refCounts[b]}`);
      if (this.refCounts[b] === 0 && !seen[b]) throw new Error(`block ${b} has refCount 0 but is not in the free queue (leaked)`);
      const h = this.blockHashes[b];
      if (h !== NO_HASH && this.cachedBlockByHash.get(h) !== b) throw new Error(`block ${b} has hash ${h} but the cache index disagrees`);
    }
    for (const [h, b] of this.cachedBlockByHash) {
      if (this.blockHashes[b] !== h) throw new Error(`cache index maps hash ${h} to block ${b}, whose hash is ${this.blockHashes[b]}`);
    }
  }

  private unlink(b: number): void {
    const p = this.prev[b];
    const n = this.next[b];
    this.next[p] = n;
    this.prev[n] = p;
    this.numFreeBlocks--;
  }

  private pushBack(b: number): void {
    const s = this.numBlocks;
    const t = this.prev[s];
    this.next[t] = b;
    this.prev[b] = t;
    this.next[b] = s;
    this.prev[s] = b;
    this.numFreeBlocks++;
  }

  private pushFront(b: number): void {
    const s = this.numBlocks;
    const h = this.next[s];
    this.prev[h] = b;
    this.next[b] = h;
    this.prev[b] = s;
    this.next[s] = b;
    this.numFreeBlocks++;
  }
}
