import { describe, expect, it } from 'vitest';
import { flashesFromKvEvents } from '../../../src/ui/views/kv-flashes.ts';
import type { KvEvent } from '../../../src/engine/events.ts';

const flashes = (events: KvEvent[]) => Object.fromEntries(flashesFromKvEvents(events));

describe('flashesFromKvEvents', () => {
  it('maps each event to a flash on its block', () => {
    expect(
      flashes([
        { type: 'allocated', blockId: 0, seqId: 1 },
        { type: 'cacheHit', blockId: 1, seqId: 2 },
        { type: 'freed', blockId: 2 },
        { type: 'shared', blockId: 3, seqId: 4 },
      ]),
    ).toEqual({ g0: 'alloc', g1: 'hit', g2: 'free', g3: 'share' });
  });

  it('shows an allocation right after the eviction of the same block as an eviction', () => {
    expect(
      flashes([
        { type: 'evicted', blockId: 5, hash: 123 },
        { type: 'allocated', blockId: 5, seqId: 1 },
        { type: 'allocated', blockId: 6, seqId: 1 },
      ]),
    ).toEqual({ g5: 'evict', g6: 'alloc' });
    // An eviction of another block, or one before an earlier reuse, does not colour a later allocation.
    expect(
      flashes([
        { type: 'evicted', blockId: 5, hash: 123 },
        { type: 'allocated', blockId: 5, seqId: 1 },
        { type: 'freed', blockId: 5 },
        { type: 'allocated', blockId: 5, seqId: 2 },
      ]),
    ).toEqual({ g5: 'alloc' });
  });

  it('marks the copy-on-write destination, not the shared source', () => {
    expect(
      flashes([
        { type: 'allocated', blockId: 7, seqId: 2 },
        { type: 'copied', srcBlockId: 3, dstBlockId: 7, seqId: 2 },
      ]),
    ).toEqual({ g7: 'cow' });
  });

  it('flashes both ends of a swap, and a swap-out is not shown as a free', () => {
    expect(
      flashes([
        { type: 'swappedOut', blockId: 4, cpuBlockId: 0 },
        { type: 'swappedOut', blockId: 9, cpuBlockId: 1 },
        { type: 'freed', blockId: 9 },
        { type: 'freed', blockId: 4 },
      ]),
    ).toEqual({ g4: 'swap', c0: 'swap', g9: 'swap', c1: 'swap' });
    expect(
      flashes([
        { type: 'evicted', blockId: 2, hash: 9 },
        { type: 'swappedIn', cpuBlockId: 3, blockId: 2 },
      ]),
    ).toEqual({ g2: 'swap', c3: 'swap' });
  });

  it('shows the last thing that happened to a block across several steps', () => {
    expect(
      flashes([
        { type: 'allocated', blockId: 0, seqId: 1 },
        { type: 'cached', blockId: 0, hash: 42 },
        { type: 'freed', blockId: 0 },
        { type: 'cacheHit', blockId: 0, seqId: 2 },
      ]),
    ).toEqual({ g0: 'hit' });
    expect(flashes([{ type: 'allocated', blockId: 1, seqId: 1 }, { type: 'freed', blockId: 1 }])).toEqual({ g1: 'free' });
  });

  it('does not flash cache bookkeeping', () => {
    expect(flashes([{ type: 'cached', blockId: 0, hash: 1 }, { type: 'cacheCleared' }])).toEqual({});
    expect(flashes([])).toEqual({});
  });
});
