/**
 * Scheduling policies: an order over requests (who is admitted first, who is preempted last)
 * and the waiting queue that serves that order.
 *  - fcfs: arrival time.
 *  - priority: lower `priority` first, then arrival.
 *  - edf: earliest absolute deadline first (no deadline = last), then arrival.
 *  - sjf: shortest predicted remaining work (tokens) first, then arrival.
 *  - fair: token-based fair share across tenants, the Virtual Token Counter of Sheng et al.
 *    ("Fairness in Serving Large Language Models", OSDI '24): each tenant's counter grows by
 *    the weighted tokens it is served; the backlogged tenant with the smallest counter goes
 *    next; a tenant returning from idle is lifted to the smallest active counter so it cannot
 *    bank credit. Within a tenant, arrival order.
 * The preemption victim is always the running request that ranks last.
 */
import type { Request } from './request.ts';
import { Heap } from './heap.ts';

export type PolicyName = 'fcfs' | 'priority' | 'edf' | 'sjf' | 'fair';
export const POLICY_NAMES: readonly PolicyName[] = ['fcfs', 'priority', 'edf', 'sjf', 'fair'];

export interface FairShareConfig {
  /** Counter cost of one prefill (prompt) token. */
  prefillTokenWeight: number;
  /** Counter cost of one generated token. */
  decodeTokenWeight: number;
  /** A tenant's share; counters grow by cost / weight (default 1). */
  tenantWeights: Record<string, number>;
}

export const DEFAULT_FAIR_SHARE: FairShareConfig = { prefillTokenWeight: 1, decodeTokenWeight: 2, tenantWeights: {} };

function byArrival(a: Request, b: Request): number {
  return a.arrivalMs - b.arrivalMs || a.order - b.order;
}

/** A policy: a total order over requests plus its waiting queue. */
export interface Policy {
  readonly name: PolicyName;
  /** Negative when a should be served before b. */
  compare(a: Request, b: Request): number;
  readonly waiting: WaitingQueue;
  /** Tokens were computed for a request (fair share accounting). */
  onServed(request: Request, numPrefillTokens: number, numDecodeTokens: number): void;
  /** A request joined the system (fair share: lift an idle tenant's counter). */
  onArrival(request: Request, activeTenants: ReadonlySet<string>): void;
  /** Tenant counters, for display (fair share only; empty otherwise). */
  counters(): Record<string, number>;
}

export interface WaitingQueue {
  readonly size: number;
  push(r: Request): void;
  peek(): Request | undefined;
  pop(): Request | undefined;
  remove(r: Request): boolean;
  /** In service order (a copy). */
  toArray(): Request[];
}

class HeapQueue implements WaitingQueue {
  private readonly heap: Heap<Request>;
  constructor(private readonly compare: (a: Request, b: Request) => number) {
    this.heap = new Heap((a, b) => compare(a, b) < 0);
  }
  get size(): number {
    return this.heap.size;
  }
  push(r: Request): void {
    this.heap.push(r);
  }
  peek(): Request | undefined {
    return this.heap.peek();
  }
  pop(): Request | undefined {
    return this.heap.pop();
  }
  remove(r: Request): boolean {
    return this.heap.remove(r);
  }
  toArray(): Request[] {
    return this.heap.values().slice().sort(this.compare);
  }
}

/** Per-tenant FCFS heaps; the backlogged tenant with the smallest counter is served next. */
class FairQueue implements WaitingQueue {
  private readonly tenants = new Map<string, Heap<Request>>();
  private total = 0;
  constructor(private readonly counter: (tenant: string) => number) {}
  get size(): number {
    return this.total;
  }
  push(r: Request): void {
    let h = this.tenants.get(r.tenant);
    if (!h) {
      h = new Heap((a, b) => byArrival(a, b) < 0);
      this.tenants.set(r.tenant, h);
    }
    h.push(r);
    this.total++;
  }
  private headTenant(): Heap<Request> | undefined {
    let best: Heap<Request> | undefined;
    let bestKey = Infinity;
    let bestName = '';
    for (const [name, h] of this.tenants) {
      if (h.size === 0) continue;
      const key = this.counter(name);
      if (key < bestKey || (key === bestKey && name < bestName)) {
        best = h;
        bestKey = key;
        bestName = name;
      }
    }
    return best;
  }
  peek(): Request | undefined {
    return this.headTenant()?.peek();
  }
  pop(): Request | undefined {
    const h = this.headTenant();
    if (!h) return undefined;
    this.total--;
    return h.pop();
  }
  remove(r: Request): boolean {
    const ok = this.tenants.get(r.tenant)?.remove(r) ?? false;
    if (ok) this.total--;
    return ok;
  }
  toArray(): Request[] {
    const all: Request[] = [];
    for (const h of this.tenants.values()) all.push(...h.values());
    return all.sort((a, b) => this.counter(a.tenant) - this.counter(b.tenant) || byArrival(a, b));
  }
}

export function createPolicy(name: PolicyName, fair: FairShareConfig = DEFAULT_FAIR_SHARE): Policy {
  const noop = () => {};
  switch (name) {
    case 'fcfs':
      return { name, compare: byArrival, waiting: new HeapQueue(byArrival), onServed: noop, onArrival: noop, counters: () => ({}) };
    case 'priority': {
      const compare = (a: Request, b: Request) => a.priority - b.priority || byArrival(a, b);
      return { name, compare, waiting: new HeapQueue(compare), onServed: noop, onArrival: noop, counters: () => ({}) };
    }
    case 'edf': {
      const compare = (a: Request, b: Request) =>
        a.deadlineAtMs === b.deadlineAtMs ? byArrival(a, b) : a.deadlineAtMs < b.deadlineAtMs ? -1 : 1;
      return { name, compare, waiting: new HeapQueue(compare), onServed: noop, onArrival: noop, counters: () => ({}) };
    }
    case 'sjf': {
      // The waiting key is fixed while a request waits, so the heap stays valid.
      const compare = (a: Request, b: Request) => a.predictedRemainingTokens() - b.predictedRemainingTokens() || byArrival(a, b);
      return { name, compare, waiting: new HeapQueue(compare), onServed: noop, onArrival: noop, counters: () => ({}) };
    }
    case 'fair': {
      const counters = new Map<string, number>();
      const counter = (t: string) => counters.get(t) ?? 0;
      const weight = (t: string) => fair.tenantWeights[t] ?? 1;
      const compare = (a: Request, b: Request) => counter(a.tenant) - counter(b.tenant) || byArrival(a, b);
      return {
        name,
        compare,
        waiting: new FairQueue(counter),
        onServed(r, numPrefill, numDecode) {
          const cost = numPrefill * fair.prefillTokenWeight + numDecode * fair.decodeTokenWeight;
          counters.set(r.tenant, counter(r.tenant) + cost / weight(r.tenant));
        },
        onArrival(r, activeTenants) {
          if (activeTenants.has(r.tenant)) return;
          let minActive = Infinity;
          for (const t of activeTenants) minActive = Math.min(minActive, counter(t));
          if (minActive !== Infinity) counters.set(r.tenant, Math.max(counter(r.tenant), minActive));
        },
        counters: () => Object.fromEntries(counters),
      };
    }
  }
}

/**
 * Why `r` ranks last among the running requests under `policy`, in words (the preemption
 * victim's reason), e.g. "lowest priority (3), newest".
 */
export function lastRankReason(policy: Policy, r: Request): string {
  switch (policy.name) {
    case 'fcfs':
      return `ranks last under fcfs: the newest arrival (${r.arrivalMs.toFixed(0)} ms)`;
    case 'priority':
      return `ranks last under priority: lowest priority (${r.priority}), then newest`;
    case 'edf':
      return `ranks last under edf: ${r.deadlineAtMs === Infinity ? 'no deadline' : `the latest deadline (${r.deadlineAtMs.toFixed(0)} ms)`}`;
    case 'sjf':
      return `ranks last under sjf: the most work left (${r.predictedRemainingTokens()} tokens predicted)`;
    case 'fair':
      return `ranks last under fair share: tenant ${r.tenant} has the largest counter (${(policy.counters()[r.tenant] ?? 0).toFixed(0)})`;
  }
}
