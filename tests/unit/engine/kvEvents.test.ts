import { describe, expect, it } from 'vitest';
import { KvCacheManager, type KvSeq } from '../../../src/engine/kvCacheManager.ts';
import { Engine, type EngineSnapshot, type StepRecord } from '../../../src/engine/engine.ts';
import { VirtualClock } from '../../../src/engine/clock.ts';
import { FakeExecutor } from '../../../src/engine/testing/fakeExecutor.ts';
import { generateWorkload } from '../../../src/engine/workload.ts';
import type { SchedulerConfig } from '../../../src/engine/config.ts';
import type { RequestSpec } from '../../../src/engine/request.ts';
import type { KvEvent, KvEventType } from '../../../src/engine/events.ts';

const range = (a: number, b: number) => Array.from({ length: b - a }, (_, i) => a + i);
const prompt = (seed: number, length: number) => Array.from({ length }, (_, k) => 3 + ((seed * 31 + k * 7) % 40));

function seq(seqId: number, tokenIds: number[]): KvSeq & { tokenIds: number[] } {
  return { seqId, tokenIds, cacheKey: 0, blockHashes: [] };
}

function manager(numGpuBlocks: number, numCpuBlocks = 8): KvCacheManager {
  return new KvCacheManager({ blockSize: 4, numGpuBlocks, numCpuBlocks, enablePrefixCaching: true });
}

describe('KvCacheManager KV events', () => {
  it('reports a fresh allocation, a full block entering the cache and the frees, tail first', () => {
    const kv = manager(4);
    const a = seq(0, range(0, 6));
    kv.allocateSlots(a, 6);
    expect(kv.takeEvents()).toEqual([
      { type: 'allocated', blockId: 0, seqId: 0 },
      { type: 'allocated', blockId: 1, seqId: 0 },
    ]);
    kv.commitComputed(a, 6);
    expect(kv.takeEvents()).toEqual([{ type: 'cached', blockId: 0, hash: a.blockHashes[0] }]);
    kv.commitComputed(a, 6); // nothing new
    expect(kv.takeEvents()).toEqual([]);
    kv.free(0);
    expect(kv.takeEvents()).toEqual([
      { type: 'freed', blockId: 1 },
      { type: 'freed', blockId: 0 },
    ]);
    kv.assertInvariants();
  });

  it('reports a prefix-cache hit that revives a free cached block', () => {
    const kv = manager(4);
    const a = seq(0, range(0, 6));
    kv.allocateSlots(a, 6);
    kv.commitComputed(a, 6);
    kv.free(0);
    kv.takeEvents();
    const b = seq(1, range(0, 6));
    const hit = kv.findCachedPrefix(b);
    expect(hit.blockIds).toEqual([0]);
    kv.allocateSlots(b, 6 - hit.numTokens, hit.blockIds);
    // Block 1 held nothing cached, so it went back to the head of the free queue.
    expect(kv.takeEvents()).toEqual([
      { type: 'cacheHit', blockId: 0, seqId: 1 },
      { type: 'allocated', blockId: 1, seqId: 1 },
    ]);
    kv.assertInvariants();
  });

  it('reports the eviction of a cached free block before its reuse', () => {
    const kv = manager(3);
    const a = seq(0, range(0, 8));
    kv.allocateSlots(a, 8);
    kv.commitComputed(a, 8);
    kv.free(0); // both cached: the tail of the free queue, so the queue is [2, 1, 0]
    kv.takeEvents();
    kv.allocateSlots(seq(1, range(100, 112)), 12);
    expect(kv.takeEvents()).toEqual([
      { type: 'allocated', blockId: 2, seqId: 1 },
      { type: 'evicted', blockId: 1, hash: a.blockHashes[1] },
      { type: 'allocated', blockId: 1, seqId: 1 },
      { type: 'evicted', blockId: 0, hash: a.blockHashes[0] },
      { type: 'allocated', blockId: 0, seqId: 1 },
    ]);
    expect(kv.numEvictions).toBe(2);
    kv.assertInvariants();
  });

  it('reports a fork as shared blocks and the first write into a shared block as allocated + copied', () => {
    const kv = manager(4);
    const a = seq(0, range(0, 6));
    kv.allocateSlots(a, 6);
    kv.commitComputed(a, 6);
    kv.takeEvents();
    const child = seq(1, a.tokenIds.slice());
    kv.fork(a, child);
    expect(kv.takeEvents()).toEqual([
      { type: 'shared', blockId: 0, seqId: 1 },
      { type: 'shared', blockId: 1, seqId: 1 },
    ]);
    child.tokenIds.push(50);
    expect(kv.allocateSlots(child, 1)?.copies).toEqual([{ srcBlock: 1, dstBlock: 2 }]);
    expect(kv.takeEvents()).toEqual([
      { type: 'allocated', blockId: 2, seqId: 1 },
      { type: 'copied', srcBlockId: 1, dstBlockId: 2, seqId: 1 },
    ]);
    // The parent is the last holder of block 1 now: it writes in place.
    a.tokenIds.push(60);
    kv.allocateSlots(a, 1);
    expect(kv.takeEvents()).toEqual([]);
    kv.free(1);
    expect(kv.takeEvents()).toEqual([{ type: 'freed', blockId: 2 }]); // block 0 is still the parent's
    kv.assertInvariants();
  });

  it('reports swaps out and in with both block ids', () => {
    const kv = manager(8);
    const a = seq(0, range(0, 6));
    kv.allocateSlots(a, 6);
    kv.takeEvents();
    expect(kv.swapOut([0])).toEqual([
      { gpuBlock: 0, cpuBlock: 0 },
      { gpuBlock: 1, cpuBlock: 1 },
    ]);
    expect(kv.takeEvents()).toEqual([
      { type: 'swappedOut', blockId: 0, cpuBlockId: 0 },
      { type: 'swappedOut', blockId: 1, cpuBlockId: 1 },
      { type: 'freed', blockId: 1 },
      { type: 'freed', blockId: 0 },
    ]);
    expect(kv.swapIn([0])).toEqual([
      { gpuBlock: 0, cpuBlock: 0 },
      { gpuBlock: 1, cpuBlock: 1 },
    ]);
    expect(kv.takeEvents()).toEqual([
      { type: 'swappedIn', cpuBlockId: 0, blockId: 0 },
      { type: 'swappedIn', cpuBlockId: 1, blockId: 1 },
    ]);
    kv.assertInvariants();
  });

  it('reports a cleared cache after every block was freed', () => {
    const kv = manager(4);
    const a = seq(0, range(0, 4));
    kv.allocateSlots(a, 4);
    kv.commitComputed(a, 4);
    kv.takeEvents();
    kv.freeAll();
    expect(kv.takeEvents()).toEqual([{ type: 'freed', blockId: 0 }, { type: 'cacheCleared' }]);
    expect(kv.cachedBlockOf(a.blockHashes[0])).toBe(-1);
  });
});

const baseConfig: Partial<SchedulerConfig> = { blockSize: 4, maxNumBatchedTokens: 64, maxNumSeqs: 8, maxModelLen: 64 };

function makeEngine(config: Partial<SchedulerConfig>) {
  return new Engine({ executor: new FakeExecutor({ emitLogits: true }), clock: new VirtualClock(), config: { ...baseConfig, ...config }, checkInvariants: true });
}

/** Runs to the end; the step records, and a snapshot before the first step and after each. */
async function runRecorded(engine: Engine, between?: (stepIndex: number) => void) {
  const records: StepRecord[] = [];
  const snaps: EngineSnapshot[] = [engine.snapshot()];
  for (let guard = 0; engine.hasWork(); guard++) {
    if (guard > 5000) throw new Error('runaway');
    const r = await engine.step();
    if (r.kind !== 'ran') {
      if (r.nextArrivalMs === null) break;
      continue;
    }
    // The snapshot carries the same record to the views.
    const snap = engine.snapshot(r.step.stepIndex - 1);
    expect(snap.recentSteps).toEqual([r.step]);
    records.push(r.step);
    snaps.push(snap);
    between?.(r.step.stepIndex);
  }
  return { records, snaps };
}

const hashes = (engine: Engine, requestId: string, seqIndex = 0) => engine.getRequest(requestId)!.seqs[seqIndex].blockHashes;

describe('Engine step records carry the KV events', () => {
  it('a fresh allocation, cached blocks, a prefix-cache hit for the same prompt, then an eviction', async () => {
    const engine = makeEngine({ numGpuBlocks: 6, numCpuBlocks: 0 });
    const specs: RequestSpec[] = [
      { requestId: 'a', promptTokenIds: prompt(1, 9), maxTokens: 1 },
      { requestId: 'b', promptTokenIds: prompt(1, 9), maxTokens: 1, arrivalMs: 100 },
      { requestId: 'c', promptTokenIds: prompt(2, 20), maxTokens: 1, arrivalMs: 200 },
    ];
    for (const s of specs) engine.submit(s);
    const { records } = await runRecorded(engine);
    expect(records.map((r) => r.finished)).toEqual([['a'], ['b'], ['c']]);
    const ha = hashes(engine, 'a');
    const hc = hashes(engine, 'c');
    expect(records[0].kvEvents).toEqual([
      { type: 'allocated', blockId: 0, seqId: 0 },
      { type: 'allocated', blockId: 1, seqId: 0 },
      { type: 'allocated', blockId: 2, seqId: 0 },
      { type: 'cached', blockId: 0, hash: ha[0] },
      { type: 'cached', blockId: 1, hash: ha[1] },
      { type: 'freed', blockId: 2 },
      { type: 'freed', blockId: 1 },
      { type: 'freed', blockId: 0 },
    ]);
    // The same prompt: its two full blocks hit (the last token is always computed).
    expect(records[1].kvEvents).toEqual([
      { type: 'cacheHit', blockId: 0, seqId: 1 },
      { type: 'cacheHit', blockId: 1, seqId: 1 },
      { type: 'allocated', blockId: 2, seqId: 1 },
      { type: 'freed', blockId: 2 },
      { type: 'freed', blockId: 1 },
      { type: 'freed', blockId: 0 },
    ]);
    // Five blocks from a free queue [2, 3, 4, 5, 1, 0]: the fifth evicts the older cached block.
    expect(records[2].kvEvents).toEqual([
      { type: 'allocated', blockId: 2, seqId: 2 },
      { type: 'allocated', blockId: 3, seqId: 2 },
      { type: 'allocated', blockId: 4, seqId: 2 },
      { type: 'allocated', blockId: 5, seqId: 2 },
      { type: 'evicted', blockId: 1, hash: ha[1] },
      { type: 'allocated', blockId: 1, seqId: 2 },
      { type: 'cached', blockId: 2, hash: hc[0] },
      { type: 'cached', blockId: 3, hash: hc[1] },
      { type: 'cached', blockId: 4, hash: hc[2] },
      { type: 'cached', blockId: 5, hash: hc[3] },
      { type: 'cached', blockId: 1, hash: hc[4] },
      { type: 'freed', blockId: 1 },
      { type: 'freed', blockId: 5 },
      { type: 'freed', blockId: 4 },
      { type: 'freed', blockId: 3 },
      { type: 'freed', blockId: 2 },
    ]);
    expect(engine.kvGauges().stats.numPrefixHitTokens).toBe(8);
  });

  it('copy-on-write for n = 2: shared on the fork, then allocated + copied on the first write', async () => {
    const engine = makeEngine({ numGpuBlocks: 8, numCpuBlocks: 0 });
    engine.submit({ requestId: 'a', promptTokenIds: prompt(1, 6), maxTokens: 3, n: 2, sampling: { temperature: 1, seed: 1 } });
    const { records } = await runRecorded(engine);
    expect(records).toHaveLength(3);
    const [s0, s1] = [hashes(engine, 'a', 0), hashes(engine, 'a', 1)];
    expect(records[0].kvEvents).toEqual([
      { type: 'allocated', blockId: 0, seqId: 0 },
      { type: 'allocated', blockId: 1, seqId: 0 },
      { type: 'cached', blockId: 0, hash: s0[0] },
      { type: 'shared', blockId: 0, seqId: 1 },
      { type: 'shared', blockId: 1, seqId: 1 },
    ]);
    expect(records[1].kvEvents).toEqual([
      { type: 'allocated', blockId: 2, seqId: 0 },
      { type: 'copied', srcBlockId: 1, dstBlockId: 2, seqId: 0 },
    ]);
    expect(records[1].numCopies).toBe(1);
    expect(records[2].kvEvents).toEqual([
      { type: 'cached', blockId: 2, hash: s0[1] },
      { type: 'cached', blockId: 1, hash: s1[1] },
      { type: 'freed', blockId: 2 },
      { type: 'freed', blockId: 1 },
      { type: 'freed', blockId: 0 },
    ]);
  });

  it('swap preemption: swapped out (then freed on the GPU), swapped in later', async () => {
    const engine = makeEngine({ numGpuBlocks: 4, numCpuBlocks: 8, preemptionMode: 'swap' });
    engine.submit({ requestId: 'a', promptTokenIds: prompt(1, 4), maxTokens: 8 });
    engine.submit({ requestId: 'b', promptTokenIds: prompt(2, 4), maxTokens: 8 });
    const { records } = await runRecorded(engine);
    const ha = hashes(engine, 'a');
    const hb = hashes(engine, 'b');
    const out = records.findIndex((r) => r.preempted.includes('b'));
    expect(out).toBeGreaterThan(0);
    expect(records[out].numSwapOut).toBe(2);
    // b's blocks 1 and 3 go to CPU blocks 0 and 1; a's next block evicts b's cached block 3.
    expect(records[out].kvEvents).toEqual([
      { type: 'swappedOut', blockId: 1, cpuBlockId: 0 },
      { type: 'swappedOut', blockId: 3, cpuBlockId: 1 },
      { type: 'freed', blockId: 3 },
      { type: 'freed', blockId: 1 },
      { type: 'evicted', blockId: 3, hash: hb[1] },
      { type: 'allocated', blockId: 3, seqId: 0 },
    ]);
    const into = records.findIndex((r) => r.numSwapIn > 0);
    expect(into).toBeGreaterThan(out);
    expect(records[into - 1].finished).toEqual(['a']);
    // Free queue [3, 1, 2, 0]: block 1 still caches b's first block, which the swap-in evicts
    // and then caches again on block 3 (the events say exactly that).
    expect(records[into].kvEvents).toEqual([
      { type: 'swappedIn', cpuBlockId: 0, blockId: 3 },
      { type: 'evicted', blockId: 1, hash: hb[0] },
      { type: 'swappedIn', cpuBlockId: 1, blockId: 1 },
      { type: 'cached', blockId: 3, hash: hb[0] },
      { type: 'cached', blockId: 1, hash: hb[1] },
      { type: 'evicted', blockId: 2, hash: ha[1] },
      { type: 'allocated', blockId: 2, seqId: 1 },
    ]);
    expect(records.at(-1)!.finished).toEqual(['b']);
    expect(records.at(-1)!.kvEvents).toEqual([
      { type: 'freed', blockId: 2 },
      { type: 'freed', blockId: 1 },
      { type: 'freed', blockId: 3 },
    ]);
  });
});

/** Blocks an event names, by kind of event. */
function blocksOf(events: readonly KvEvent[], types: readonly KvEventType[]): Set<number> {
  const out = new Set<number>();
  for (const e of events) {
    if (!types.includes(e.type)) continue;
    if (e.type === 'copied') out.add(e.dstBlockId);
    else if ('blockId' in e) out.add(e.blockId);
  }
  return out;
}

describe('Engine KV events agree with the snapshots', () => {
  const config: Partial<SchedulerConfig> = { blockSize: 8, numGpuBlocks: 40, numCpuBlocks: 32, maxNumBatchedTokens: 48, maxNumSeqs: 12, maxModelLen: 256 };

  for (const [seed, extra] of [
    [3, { preemptionMode: 'swap', policy: 'priority' }],
    [4, { preemptionMode: 'recompute' }],
    [5, { preemptionMode: 'swap', policy: 'fcfs' }],
  ] as [number, Partial<SchedulerConfig>][]) {
    it(`every block that comes into or goes out of use has its event (seed ${seed}, ${extra.preemptionMode})`, async () => {
      const engine = new Engine({ executor: new FakeExecutor({ stopTokenId: 1, stopEvery: 50, emitLogits: true }), clock: new VirtualClock(), config: { ...config, ...extra }, checkInvariants: true });
      const specs = generateWorkload({
        seed,
        numRequests: 40,
        vocabSize: 60,
        arrival: { kind: 'poisson', ratePerS: 400 },
        promptTokens: { kind: 'uniform', min: 2, max: 60 },
        outputTokens: { kind: 'uniform', min: 1, max: 40 },
        sharedPrefix: { fraction: 0.5, numTokens: 20 },
        parallelSampling: { fraction: 0.25, n: 2 },
        temperature: 0.7,
        tenants: [
          { name: 'a', weight: 2, priority: 1 },
          { name: 'b', weight: 1, priority: 0 },
        ],
      });
      for (const s of specs) engine.submit(s);
      // Cancels between steps: their frees go into the next step's record.
      const { records, snaps } = await runRecorded(engine, (stepIndex) => {
        if (stepIndex === 12 || stepIndex === 30) {
          const live = [...engine.requests()].find((r) => r.state === 'running' || r.state === 'swapped');
          if (live) engine.cancel(live.requestId);
        }
      });
      const seen = new Set<KvEventType>();
      for (let k = 0; k < records.length; k++) {
        const ev = records[k].kvEvents;
        for (const e of ev) seen.add(e.type);
        const prev = snaps[k];
        const next = snaps[k + 1];
        const intoUse = blocksOf(ev, ['allocated', 'cacheHit', 'swappedIn']);
        const outOfUse = blocksOf(ev, ['freed', 'swappedOut']);
        const newlyCached = blocksOf(ev, ['cached']);
        const evicted = blocksOf(ev, ['evicted']);
        const cleared = ev.some((e) => e.type === 'cacheCleared');
        for (let b = 0; b < next.gpuBlocks.refCount.length; b++) {
          const was = prev.gpuBlocks.refCount[b];
          const now = next.gpuBlocks.refCount[b];
          const where = `step ${records[k].stepIndex}, GPU block ${b}`;
          if (was === 0 && now > 0) expect(intoUse.has(b), `${where} came into use`).toBe(true);
          if (was > 0 && now === 0) expect(outOfUse.has(b), `${where} went out of use`).toBe(true);
          if (!prev.gpuBlocks.cached[b] && next.gpuBlocks.cached[b]) expect(newlyCached.has(b), `${where} was cached`).toBe(true);
          if (prev.gpuBlocks.cached[b] && next.blockHashes[b] !== prev.blockHashes[b]) expect(evicted.has(b) || cleared, `${where} lost its content`).toBe(true);
        }
        const swappedOutTo = new Set(ev.flatMap((e) => (e.type === 'swappedOut' ? [e.cpuBlockId] : [])));
        for (let c = 0; c < next.cpuBlocks.refCount.length; c++) {
          if (prev.cpuBlocks.refCount[c] === 0 && next.cpuBlocks.refCount[c] > 0) expect(swappedOutTo.has(c), `step ${records[k].stepIndex}, CPU block ${c}`).toBe(true);
        }
        // An eviction is the first half of a reuse; a copy goes into a block just allocated.
        ev.forEach((e, i) => {
          if (e.type === 'evicted') {
            const n = ev[i + 1];
            expect(n && (n.type === 'allocated' || n.type === 'swappedIn') && n.blockId === e.blockId).toBe(true);
          }
          if (e.type === 'copied') expect(ev[i - 1]).toEqual({ type: 'allocated', blockId: e.dstBlockId, seqId: e.seqId });
        });
      }
      // The events add up to the manager's counters.
      const all = records.flatMap((r) => r.kvEvents);
      const count = (t: KvEventType) => all.filter((e) => e.type === t).length;
      const stats = engine.kvGauges().stats;
      expect(count('cacheHit') * config.blockSize!).toBe(stats.numPrefixHitTokens);
      expect(count('copied')).toBe(stats.numCowCopies);
      expect(count('swappedOut')).toBe(stats.numSwappedOutBlocks);
      expect(count('swappedIn')).toBe(stats.numSwappedInBlocks);
      expect(records.reduce((n, r) => n + r.numCopies, 0)).toBe(count('copied'));
      // Everything ended, so every block was let go as often as it came into use.
      expect(count('allocated') + count('cacheHit') + count('swappedIn')).toBeGreaterThan(0);
      expect(engine.kvGauges().numFreeGpuBlocks).toBe(config.numGpuBlocks);
      const wanted: KvEventType[] = ['allocated', 'freed', 'cached', 'cacheHit', 'evicted', 'shared', 'copied'];
      if (extra.preemptionMode === 'swap') wanted.push('swappedOut', 'swappedIn');
      for (const t of wanted) expect(seen.has(t), `the run produced '${t}' events`).toBe(true);
    });
  }
});
