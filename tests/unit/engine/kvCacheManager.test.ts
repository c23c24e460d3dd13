import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { KvCacheManager, type KvSeq } from '../../../src/engine/kvCacheManager.ts';
import { BlockPool } from '../../../src/engine/blockPool.ts';

function seq(seqId: number, tokenIds: number[], cacheKey = 0): KvSeq & { tokenIds: number[] } {
  return { seqId, tokenIds, cacheKey, blockHashes: [] };
}

function manager(numGpuBlocks: number, blockSize = 4, numCpuBlocks = 8, enablePrefixCaching = true): KvCacheManager {
  return new KvCacheManager({ blockSize, numGpuBlocks, numCpuBlocks, enablePrefixCaching });
}

const range = (a: number, b: number) => Array.from({ length: b - a }, (_, i) => a + i);

describe('BlockPool', () => {
  it('takes from the head, revives retained blocks and puts uncached frees first, cached ones last', () => {
    const pool = new BlockPool(5);
    expect([pool.allocate(), pool.allocate(), pool.allocate()]).toEqual([0, 1, 2]);
    expect(pool.freeQueue()).toEqual([3, 4]);
    pool.cache(1, 111);
    pool.release(1); // cached: to the tail
    pool.release(0); // uncached: to the head
    expect(pool.freeQueue()).toEqual([0, 3, 4, 1]);
    pool.retain(1); // a cache hit revives it out of the middle of the queue
    expect(pool.freeQueue()).toEqual([0, 3, 4]);
    expect(pool.refCount(1)).toBe(1);
    pool.release(1);
    pool.allocate();
    pool.allocate();
    pool.allocate();
    expect(pool.lookup(111)).toBe(1);
    expect(pool.allocate()).toBe(1); // eviction of the last cached free block
    expect(pool.lookup(111)).toBe(-1);
    expect(pool.numEvictions).toBe(1);
    pool.assertConsistent();
  });

  it('refuses to release a free block', () => {
    const pool = new BlockPool(2);
    expect(() => pool.release(0)).toThrow(/already free/);
  });
});

describe('KvCacheManager scripted scenarios', () => {
  it('allocates block ids in order and frees tail first', () => {
    const kv = manager(8, 4, 8, false);
    const a = seq(0, range(0, 10));
    const b = seq(1, range(100, 104));
    expect(kv.allocateSlots(a, 10)).toEqual({ newBlockIds: [0, 1, 2], copies: [] });
    expect(kv.allocateSlots(b, 4)).toEqual({ newBlockIds: [3], copies: [] });
    expect(kv.freeQueue()).toEqual([4, 5, 6, 7]);
    expect(kv.slotOf(0, 9)).toBe(2 * 4 + 1);
    kv.free(0);
    // Uncached blocks go to the head, released tail first, so the head block leads.
    expect(kv.freeQueue()).toEqual([0, 1, 2, 4, 5, 6, 7]);
    kv.assertInvariants();
  });

  it('returns null and changes nothing when memory is short', () => {
    const kv = manager(4);
    const a = seq(0, range(0, 12));
    expect(kv.allocateSlots(a, 12)?.newBlockIds).toEqual([0, 1, 2]);
    const b = seq(1, range(0, 8));
    expect(kv.allocateSlots(b, 8)).toBeNull();
    expect(kv.has(1)).toBe(false);
    expect(kv.freeQueue()).toEqual([3]);
    a.tokenIds.push(12);
    expect(kv.allocateSlots(a, 1)?.newBlockIds).toEqual([3]);
    a.tokenIds.push(13, 14, 15, 16);
    expect(kv.allocateSlots(a, 4)).toBeNull();
    expect(kv.blockTable(0)).toEqual([0, 1, 2, 3]);
    kv.assertInvariants();
  });

  it('reuses cached prefix blocks, keeps LRU order among cached free blocks and evicts the oldest', () => {
    const kv = manager(8);
    const a = seq(0, range(0, 10));
    kv.allocateSlots(a, 10);
    kv.commitComputed(a, 10); // blocks 0 and 1 are full: cached
    kv.free(0);
    // Block 2 (partial, uncached) to the head; cached 1 then 0 to the tail (tail first).
    expect(kv.freeQueue()).toEqual([2, 3, 4, 5, 6, 7, 1, 0]);

    const b = seq(1, [...range(0, 8), 50, 51, 52]);
    const hit = kv.findCachedPrefix(b);
    expect(hit).toEqual({ blockIds: [0, 1], numTokens: 8 });
    expect(kv.allocateSlots(b, 3, hit.blockIds)).toEqual({ newBlockIds: [2], copies: [] });
    expect(kv.refCount(0)).toBe(1);
    expect(kv.stats.numPrefixHitTokens).toBe(8);
    expect(kv.stats.numPrefixQueryTokens).toBe(11 + 10);

    // A whole-prompt hit still leaves the last token to compute.
    const c = seq(2, range(0, 8));
    expect(kv.findCachedPrefix(c)).toEqual({ blockIds: [0], numTokens: 4 });
    // A different cache key never shares.
    expect(kv.findCachedPrefix(seq(3, range(0, 10), 7)).blockIds).toEqual([]);
    kv.assertInvariants();

    // Fill the pool: the cached free blocks are evicted least recently used first.
    kv.free(1); // releases 2 (head), then 1 and 0 (cached, tail)
    expect(kv.freeQueue()).toEqual([2, 3, 4, 5, 6, 7, 1, 0]);
    const d = seq(4, range(200, 228));
    expect(kv.allocateSlots(d, 28)?.newBlockIds).toEqual([2, 3, 4, 5, 6, 7, 1]);
    expect(kv.numEvictions).toBe(1);
    expect(kv.findCachedPrefix(seq(5, range(0, 10))).blockIds).toEqual([0]);
    kv.assertInvariants();
  });

  it('copies a shared partial block on the first write (copy-on-write) and writes in place after', () => {
    const kv = manager(8);
    const parent = seq(0, range(0, 6));
    kv.allocateSlots(parent, 6);
    kv.commitComputed(parent, 6);
    const child = seq(1, parent.tokenIds.slice());
    child.blockHashes.push(...parent.blockHashes);
    kv.fork(parent, child);
    expect(kv.blockTable(1)).toEqual([0, 1]);
    expect([kv.refCount(0), kv.refCount(1)]).toEqual([2, 2]);
    child.tokenIds.push(9);
    expect(kv.allocateSlots(child, 1)).toEqual({ newBlockIds: [], copies: [{ srcBlock: 1, dstBlock: 2 }] });
    expect(kv.blockTable(1)).toEqual([0, 2]);
    parent.tokenIds.push(8);
    expect(kv.allocateSlots(parent, 1)).toEqual({ newBlockIds: [], copies: [] });
    expect(kv.stats.numCowCopies).toBe(1);
    kv.assertInvariants();
  });

  it('swaps out to the CPU pool and back in, sharing blocks within a request', () => {
    const kv = manager(6, 4, 3);
    const a = seq(0, range(0, 6));
    kv.allocateSlots(a, 6);
    const a2 = seq(1, a.tokenIds.slice());
    kv.fork(a, a2);
    const other = seq(2, range(50, 58));
    kv.allocateSlots(other, 8); // blocks 2, 3
    expect(kv.swapOut([0, 1])).toEqual([
      { gpuBlock: 0, cpuBlock: 0 },
      { gpuBlock: 1, cpuBlock: 1 },
    ]);
    expect(kv.location(0)).toBe('cpu');
    expect(kv.blockTable(1)).toEqual([0, 1]);
    expect([0, 1, 2].map((c) => kv.cpuRefCount(c))).toEqual([2, 2, 0]);
    expect(kv.numFreeGpuBlocks).toBe(4);
    kv.assertInvariants();
    // Too big for the CPU pool: nothing changes.
    expect(kv.swapOut([2])).toBeNull();
    expect(kv.location(2)).toBe('gpu');
    kv.allocateSlots(seq(3, range(0, 12)), 12); // takes 0, 1, 4 (uncached frees at the head)
    expect(kv.numFreeGpuBlocks).toBe(1);
    expect(kv.swapIn([0, 1])).toBeNull();
    kv.free(3); // 4, 1, 0 to the head, in that order
    expect(kv.freeQueue()).toEqual([0, 1, 4, 5]);
    expect(kv.swapIn([0, 1])).toEqual([
      { gpuBlock: 0, cpuBlock: 0 },
      { gpuBlock: 1, cpuBlock: 1 },
    ]);
    expect(kv.blockTable(0)).toEqual([0, 1]);
    expect(kv.blockTable(1)).toEqual([0, 1]);
    expect(kv.refCount(0)).toBe(2);
    expect(kv.numFreeCpuBlocks).toBe(3);
    kv.assertInvariants();
  });

  it('assertInvariants reports a corrupted reference count', () => {
    const kv = manager(4);
    kv.allocateSlots(seq(0, range(0, 4)), 4);
    (kv['pool']['refCounts'] as Int32Array)[0] = 2; // corrupt it from the inside (tests only)
    expect(() => kv.assertInvariants()).toThrow(/refCount 2 but 1 table entries/);
  });
});

/**
 * Property test: random operations, with a shadow "executor" that stores the token of every
 * written slot and carries out copies and swaps. After every operation the invariants hold and
 * every sequence reads back exactly its own tokens through its block table.
 */
describe('KvCacheManager property test', () => {
  type Op =
    | { kind: 'new'; prefix: number; extra: number[]; reserve: number }
    | { kind: 'append'; pick: number; extra: number[] }
    | { kind: 'fork'; pick: number }
    | { kind: 'free'; pick: number }
    | { kind: 'swapOut'; pick: number }
    | { kind: 'swapIn'; pick: number };
  const tokens = fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 1, maxLength: 9 });
  const op: fc.Arbitrary<Op> = fc.oneof(
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('new' as const), prefix: fc.integer({ min: 0, max: 2 }), extra: tokens, reserve: fc.integer({ min: -12, max: 12 }) }) },
    { weight: 4, arbitrary: fc.record({ kind: fc.constant('append' as const), pick: fc.nat(), extra: tokens }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('fork' as const), pick: fc.nat() }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('free' as const), pick: fc.nat() }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('swapOut' as const), pick: fc.nat() }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('swapIn' as const), pick: fc.nat() }) },
  );
  const prefixes = [[], range(0, 8), [...range(0, 8), 5, 5, 5, 5, 6]];

  it('keeps invariants and contents over 10,000 random operations', () => {
    let numOps = 0;
    fc.assert(
      fc.property(fc.array(op, { minLength: 400, maxLength: 400 }), fc.boolean(), (ops, prefixCaching) => {
        const bs = 4;
        const kv = new KvCacheManager({ blockSize: bs, numGpuBlocks: 24, numCpuBlocks: 12, enablePrefixCaching: prefixCaching });
        const gpu = new Int32Array(24 * bs).fill(-1);
        const cpu = new Int32Array(12 * bs).fill(-1);
        const live: (KvSeq & { tokenIds: number[] })[] = [];
        let nextId = 0;
        const write = (s: KvSeq & { tokenIds: number[] }, from: number) => {
          const table = kv.blockTable(s.seqId);
          for (let p = from; p < s.tokenIds.length; p++) gpu[table[Math.floor(p / bs)] * bs + (p % bs)] = s.tokenIds[p];
          kv.commitComputed(s, s.tokenIds.length);
        };
        const applySwaps = (swaps: { gpuBlock: number; cpuBlock: number }[], out: boolean) => {
          for (const { gpuBlock, cpuBlock } of swaps) {
            if (out) cpu.set(gpu.subarray(gpuBlock * bs, gpuBlock * bs + bs), cpuBlock * bs);
            else gpu.set(cpu.subarray(cpuBlock * bs, cpuBlock * bs + bs), gpuBlock * bs);
          }
        };
        for (const o of ops) {
          numOps++;
          const onGpu = live.filter((s) => kv.location(s.seqId) === 'gpu');
          const onCpu = live.filter((s) => kv.location(s.seqId) === 'cpu');
          if (o.kind === 'new') {
            const s = seq(nextId++, [...prefixes[o.prefix], ...o.extra]);
            const hit = kv.findCachedPrefix(s);
            // reserve > 0: max-length preallocation of that many extra slots.
            const reserveTokens = o.reserve > 0 ? s.tokenIds.length + o.reserve : 0;
            const res = kv.allocateSlots(s, s.tokenIds.length - hit.numTokens, hit.blockIds, reserveTokens);
            if (res) {
              expect(res.copies).toEqual([]);
              live.push(s);
              write(s, hit.numTokens);
            } else expect(kv.has(s.seqId)).toBe(false);
          } else if (o.kind === 'append' && onGpu.length) {
            const s = onGpu[o.pick % onGpu.length];
            const before = s.tokenIds.length;
            s.tokenIds.push(...o.extra);
            const res = kv.allocateSlots(s, o.extra.length);
            if (res) {
              for (const c of res.copies) gpu.copyWithin(c.dstBlock * bs, c.srcBlock * bs, c.srcBlock * bs + bs);
              write(s, before);
            } else {
              s.tokenIds.length = before;
              expect(kv.numSlots(s.seqId)).toBe(before);
            }
          } else if (o.kind === 'fork' && onGpu.length) {
            const p = onGpu[o.pick % onGpu.length];
            const c = seq(nextId++, p.tokenIds.slice());
            c.blockHashes.push(...p.blockHashes);
            kv.fork(p, c);
            live.push(c);
          } else if (o.kind === 'free' && live.length) {
            const s = live.splice(o.pick % live.length, 1)[0];
            kv.free(s.seqId);
          } else if (o.kind === 'swapOut' && onGpu.length) {
            const s = onGpu[o.pick % onGpu.length];
            const swaps = kv.swapOut([s.seqId]);
            if (swaps) applySwaps(swaps, true);
          } else if (o.kind === 'swapIn' && onCpu.length) {
            const s = onCpu[o.pick % onCpu.length];
            const swaps = kv.swapIn([s.seqId]);
            if (swaps) applySwaps(swaps, false);
          }
          kv.assertInvariants();
          for (const s of live) {
            const table = kv.blockTable(s.seqId);
            const mem = kv.location(s.seqId) === 'gpu' ? gpu : cpu;
            for (let p = 0; p < s.tokenIds.length; p++) {
              const got = mem[table[Math.floor(p / bs)] * bs + (p % bs)];
              if (got !== s.tokenIds[p]) throw new Error(`seq ${s.seqId} position ${p}: read ${got}, wrote ${s.tokenIds[p]}`);
            }
          }
        }
        for (const s of live) kv.free(s.seqId);
        kv.assertInvariants();
        // Nothing leaked: every block is free again.
        expect(kv.numFreeGpuBlocks).toBe(24);
        expect(kv.numFreeCpuBlocks).toBe(12);
      }),
      { numRuns: 25, seed: 42 },
    );
    expect(numOps).toBe(10_000);
  });
});

describe('KvCacheManager max-length preallocation', () => {
  it('reserves the final length up front and gives forks private blocks before their first write', () => {
    const kv = manager(8);
    const a = seq(0, range(0, 5));
    expect(kv.allocateSlots(a, 5, [], 12)).toEqual({ newBlockIds: [0, 1, 2], copies: [] });
    a.tokenIds.push(5, 6, 7);
    expect(kv.allocateSlots(a, 3)).toEqual({ newBlockIds: [], copies: [] });
    const b = seq(1, a.tokenIds.slice());
    kv.fork(a, b);
    b.tokenIds.push(9);
    // Position 8 opens block 2, reserved and shared but empty: a fresh block, no copy.
    expect(kv.allocateSlots(b, 1)).toEqual({ newBlockIds: [], copies: [] });
    expect(kv.blockTable(1)).toEqual([0, 1, 3]);
    kv.assertInvariants();
  });
});
