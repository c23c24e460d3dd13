import { describe, expect, it } from 'vitest';
import { keepRouterDecision, rendezvous, route, ROUTER_DECISIONS_FULL, ROUTER_DECISIONS_MAX, ROUTER_DECISION_SAMPLE_EVERY, type RouteCandidate } from '../../../../src/sim/fleet/router.ts';

const cands = (...xs: [string, number, number][]): RouteCandidate[] => xs.map(([id, outstanding, kvUsage]) => ({ id, outstanding, kvUsage }));

describe('router policies', () => {
  it('round-robin takes turns and says whose turn it was', () => {
    const c = cands(['r0', 5, 0.9], ['r1', 0, 0], ['r2', 9, 0.1]);
    const state = { nextTurn: 0 };
    const picks = [0, 1, 2, 3].map(() => route('round-robin', c, { id: 'q' }, state));
    expect(picks.map((p) => p.replica)).toEqual(['r0', 'r1', 'r2', 'r0']);
    expect(picks[0].reason).toBe("round-robin: r0's turn (5 outstanding)");
  });

  it('least outstanding picks the fewest, ties to the lowest id', () => {
    expect(route('least-outstanding', cands(['r0', 3, 0], ['r1', 1, 0], ['r2', 1, 0]), { id: 'q' }, { nextTurn: 0 })).toEqual({ replica: 'r1', reason: 'least outstanding: r1 has 1' });
  });

  it('least KV picks the lowest usage, ties to fewer outstanding', () => {
    expect(route('least-kv', cands(['r0', 0, 0.5], ['r1', 4, 0.2], ['r2', 2, 0.2]), { id: 'q' }, { nextTurn: 0 })).toEqual({ replica: 'r2', reason: 'least KV usage: r2 at 20%' });
  });

  it('prefix affinity sends one prefix to one replica, whatever the load below the cap', () => {
    const c = cands(['r0', 0, 0], ['r1', 0, 0], ['r2', 0, 0], ['r3', 0, 0]);
    const home = rendezvous('t/p7', c).id;
    for (let load = 0; load <= 8; load++) {
      const loaded = c.map((x) => (x.id === home ? { ...x, outstanding: load } : x));
      const r = route('prefix-affinity', loaded, { id: 'q', prefixKey: 't/p7' }, { nextTurn: 0 }, 8);
      expect(r.replica).toBe(home);
      expect(r.reason).toContain('by rendezvous hash');
    }
    // Over the cap (9 above the least loaded): least outstanding instead, with the reason.
    const over = c.map((x) => (x.id === home ? { ...x, outstanding: 9 } : x));
    const r = route('prefix-affinity', over, { id: 'q', prefixKey: 't/p7' }, { nextTurn: 0 }, 8);
    expect(r.replica).not.toBe(home);
    expect(r.reason).toMatch(/over cap 8 above least loaded/);
    // No prefix: least outstanding.
    expect(route('prefix-affinity', cands(['r0', 2, 0], ['r1', 1, 0]), { id: 'q' }, { nextTurn: 0 }).replica).toBe('r1');
  });

  it('rendezvous hashing is consistent: removing a replica moves only its prefixes, adding one takes only a share', () => {
    const four = cands(['r0', 0, 0], ['r1', 0, 0], ['r2', 0, 0], ['r3', 0, 0]);
    const keys = Array.from({ length: 400 }, (_, i) => `tenant/p${i}`);
    const before = new Map(keys.map((k) => [k, rendezvous(k, four).id]));
    const three = four.filter((c) => c.id !== 'r2');
    let moved = 0;
    for (const k of keys) {
      const after = rendezvous(k, three).id;
      if (before.get(k) !== 'r2') expect(after).toBe(before.get(k));
      else moved++;
    }
    expect(moved).toBeGreaterThan(50); // about a quarter of 400
    expect(moved).toBeLessThan(150);
    const five = [...four, { id: 'r4', outstanding: 0, kvUsage: 0 }];
    let taken = 0;
    for (const k of keys) {
      const after = rendezvous(k, five).id;
      if (after === 'r4') taken++;
      else expect(after).toBe(before.get(k));
    }
    expect(taken).toBeGreaterThan(40); // about a fifth
    expect(taken).toBeLessThan(130);
  });

  it('refuses an empty candidate list', () => {
    expect(() => route('round-robin', [], { id: 'q' }, { nextTurn: 0 })).toThrow(RangeError);
  });

  it('keeps all decisions up to the cap, then one in ten, bounded', () => {
    expect(keepRouterDecision(0, 0)).toBe(true);
    expect(keepRouterDecision(ROUTER_DECISIONS_FULL - 1, ROUTER_DECISIONS_FULL - 1)).toBe(true);
    expect(keepRouterDecision(ROUTER_DECISIONS_FULL, ROUTER_DECISIONS_FULL)).toBe(true);
    expect(keepRouterDecision(ROUTER_DECISIONS_FULL + 1, ROUTER_DECISIONS_FULL + 1)).toBe(false);
    expect(keepRouterDecision(ROUTER_DECISIONS_FULL + ROUTER_DECISION_SAMPLE_EVERY, ROUTER_DECISIONS_FULL + 1)).toBe(true);
    expect(keepRouterDecision(10 ** 7, ROUTER_DECISIONS_MAX)).toBe(false);
  });
});
