/**
 * LoRA adapter slots (vLLM's max_loras): which adapter each GPU adapter slot holds, which running
 * requests pin it, and least-recently-used eviction. Pure bookkeeping, like the KV block pool: the
 * executor carries out the loads the scheduler puts in a StepPlan (loraLoads), and the slots'
 * story is told as LoraEvents (drained once per step into the step record, like KV events).
 *
 * A running request pins its adapter's slot from admission until it ends or is preempted; a slot
 * whose adapter no running request uses stays loaded (a later request reuses it without a load)
 * until a load needs the slot: then the least recently used unpinned one is evicted.
 */

/** What the adapter slots did (carried in the step record beside the KV events). */
export type LoraEvent =
  /** Adapter `adapter` was loaded into `slot` (from host memory), for `requestId`. */
  | { type: 'loraLoaded'; slot: number; adapter: string; requestId: string }
  /** The least recently used unpinned adapter left its slot to make room. */
  | { type: 'loraEvicted'; slot: number; adapter: string }
  /** Every slot forgotten (the executor's memory was lost). */
  | { type: 'loraCleared' };

/** One slot as the views draw it. */
export interface LoraSlotView {
  slot: number;
  /** The adapter it holds; null when empty. */
  adapter: string | null;
  /** Running requests using it, in the order they pinned it. */
  requestIds: string[];
  /** Times an adapter was loaded into this slot. */
  numLoads: number;
}

interface Slot {
  adapter: string | null;
  pins: Set<string>; // requestIds
  lastUsed: number; // acquisition counter, for LRU
  numLoads: number;
}

export class LoraSlotManager {
  private readonly slots: Slot[]; // [maxLoras]
  private readonly slotOfAdapter = new Map<string, number>();
  private readonly slotOfRequest = new Map<string, number>();
  private clock = 0;
  private events: LoraEvent[] = [];
  /** Totals since the engine started. */
  numLoads = 0;
  numEvictions = 0;

  constructor(readonly maxLoras: number) {
    this.slots = Array.from({ length: maxLoras }, () => ({ adapter: null, pins: new Set<string>(), lastUsed: 0, numLoads: 0 }));
  }

  /** The slot a request pins, or -1. */
  slotOf(requestId: string): number {
    return this.slotOfRequest.get(requestId) ?? -1;
  }

  /** The slot holding an adapter, or -1. */
  slotHolding(adapter: string): number {
    return this.slotOfAdapter.get(adapter) ?? -1;
  }

  /** Slot a new adapter would go to (free first, then the least recently used unpinned), or -1 when every slot is pinned. */
  private victimSlot(): number {
    let best = -1;
    for (let i = 0; i < this.slots.length; i++) {
      const s = this.slots[i];
      if (s.pins.size > 0) continue;
      if (s.adapter === null) return i;
      if (best < 0 || s.lastUsed < this.slots[best].lastUsed) best = i;
    }
    return best;
  }

  /** Whether acquire(adapter) would succeed now. */
  canAcquire(adapter: string): boolean {
    return this.slotOfAdapter.has(adapter) || this.victimSlot() >= 0;
  }

  /**
   * Pins a slot holding `adapter` for `requestId` (loading it, maybe evicting another, when it is
   * not loaded). Returns the slot and whether it must be loaded, or null when every slot is pinned.
   */
  acquire(adapter: string, requestId: string): { slot: number; load: boolean } | null {
    const held = this.slotOfRequest.get(requestId);
    if (held !== undefined) {
      if (this.slots[held].adapter !== adapter) throw new Error(`request ${requestId} already pins slot ${held} for another adapter`);
      return { slot: held, load: false };
    }
    let slot = this.slotOfAdapter.get(adapter) ?? -1;
    let load = false;
    if (slot < 0) {
      slot = this.victimSlot();
      if (slot < 0) return null;
      const s = this.slots[slot];
      if (s.adapter !== null) {
        this.events.push({ type: 'loraEvicted', slot, adapter: s.adapter });
        this.slotOfAdapter.delete(s.adapter);
        this.numEvictions++;
      }
      s.adapter = adapter;
      s.numLoads++;
      this.slotOfAdapter.set(adapter, slot);
      this.numLoads++;
      this.events.push({ type: 'loraLoaded', slot, adapter, requestId });
      load = true;
    }
    const s = this.slots[slot];
    s.pins.add(requestId);
    s.lastUsed = ++this.clock;
    this.slotOfRequest.set(requestId, slot);
    return { slot, load };
  }

  /** The request stops using its slot (ended or preempted); the adapter stays loaded. */
  release(requestId: string): void {
    const slot = this.slotOfRequest.get(requestId);
    if (slot === undefined) return;
    this.slots[slot].pins.delete(requestId);
    this.slotOfRequest.delete(requestId);
  }

  /** The executor lost its memory: every slot is empty and unpinned. */
  clear(): void {
    for (const s of this.slots) {
      s.adapter = null;
      s.pins.clear();
    }
    this.slotOfAdapter.clear();
    this.slotOfRequest.clear();
    this.events.push({ type: 'loraCleared' });
  }

  /** "a: r1, r2; b: r3": who pins what (for decisions). */
  describePins(): string {
    return this.slots.map((s, i) => `slot ${i} ${s.adapter ?? '(empty)'}: ${[...s.pins].join(', ') || 'unpinned'}`).join('; ');
  }

  /** Events since the last call. */
  takeEvents(): LoraEvent[] {
    const e = this.events;
    this.events = [];
    return e;
  }

  view(): LoraSlotView[] {
    return this.slots.map((s, slot) => ({ slot, adapter: s.adapter, requestIds: [...s.pins], numLoads: s.numLoads }));
  }

  /** Pins name requests that exist; adapters and slots agree. */
  assertInvariants(runningIds: ReadonlySet<string>): void {
    for (const [id, slot] of this.slotOfRequest) {
      if (!runningIds.has(id)) throw new Error(`request ${id} pins adapter slot ${slot} but is not running`);
      if (!this.slots[slot].pins.has(id)) throw new Error(`request ${id} maps to slot ${slot}, which does not list it`);
    }
    for (const [adapter, slot] of this.slotOfAdapter) if (this.slots[slot].adapter !== adapter) throw new Error(`adapter ${adapter} maps to slot ${slot}, which holds ${this.slots[slot].adapter}`);
    let pins = 0;
    for (const s of this.slots) pins += s.pins.size;
    if (pins !== this.slotOfRequest.size) throw new Error(`adapter slots list ${pins} pins for ${this.slotOfRequest.size} requests`);
  }
}
