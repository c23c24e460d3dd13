/**
 * What the KV grid flashes, read from the KV events the engine recorded (StepRecord.kvEvents)
 * instead of guessed from two snapshots. Pure: a batch of events in, one flash per block out.
 *
 * Keys name a block: `g${blockId}` for a GPU block, `c${cpuBlockId}` for a CPU swap block.
 * A block touched more than once in a batch shows its last event, with two exceptions that keep
 * the cause of a move visible: an allocation right after the block's eviction shows 'evict', and
 * the 'freed' that a swap-out leaves behind keeps 'swap'. 'cached' and 'cacheCleared' do not flash.
 */
import type { KvEvent, KvEventType } from '../../engine/events.ts';

export type FlashKind = 'alloc' | 'free' | 'hit' | 'evict' | 'cow' | 'share' | 'swap';

export const gpuKey = (blockId: number): string => `g${blockId}`;
export const cpuKey = (cpuBlockId: number): string => `c${cpuBlockId}`;

/** One flash per block the events touched, in order of first touch. */
export function flashesFromKvEvents(events: Iterable<KvEvent>): Map<string, FlashKind> {
  const out = new Map<string, FlashKind>();
  /** The previous event on each block in this batch. */
  const last = new Map<string, KvEventType>();
  const mark = (key: string, type: KvEventType, kind: FlashKind) => {
    out.set(key, kind);
    last.set(key, type);
  };
  for (const e of events) {
    switch (e.type) {
      case 'allocated': {
        const k = gpuKey(e.blockId);
        mark(k, e.type, last.get(k) === 'evicted' ? 'evict' : 'alloc');
        break;
      }
      case 'evicted':
        mark(gpuKey(e.blockId), e.type, 'evict');
        break;
      case 'freed': {
        const k = gpuKey(e.blockId);
        mark(k, e.type, last.get(k) === 'swappedOut' ? 'swap' : 'free');
        break;
      }
      case 'cacheHit':
        mark(gpuKey(e.blockId), e.type, 'hit');
        break;
      case 'shared':
        mark(gpuKey(e.blockId), e.type, 'share');
        break;
      case 'copied':
        mark(gpuKey(e.dstBlockId), e.type, 'cow');
        break;
      case 'swappedOut':
      case 'swappedIn':
        mark(gpuKey(e.blockId), e.type, 'swap');
        mark(cpuKey(e.cpuBlockId), e.type, 'swap');
        break;
      case 'cached':
      case 'cacheCleared':
        break;
    }
  }
  return out;
}
