import { describe, expect, it } from 'vitest';
import { runFleet } from '../../../../src/sim/fleet/fleet.ts';
import { fleetPreset } from '../../../../src/sim/fleet/presets.ts';
import { fleetChromeTrace, FLEET_PID, FRONT_DOOR_PID, MODERATION_PID, REPLICA_PID_BASE } from '../../../../src/export/fleet-trace.ts';
import { validateChromeTrace } from '../../../../src/export/chrome-trace.ts';

describe('fleet Chrome trace', () => {
  it('is a valid trace: a process per replica, request spans with nested phases, decisions and counters', async () => {
    const spec = fleetPreset('spot-loss').runs[0].spec;
    const r = await runFleet({
      ...spec,
      workload: { ...spec.workload, numRequests: 300 },
      moderation: { input: { medianMs: 20, sigma: 0.3, concurrency: 4 }, output: { everyTokens: 32, medianMs: 20, sigma: 0.3, concurrency: 4 }, flagRate: 0.05, inputFlagRate: 0.02 },
    });
    const trace = JSON.parse(JSON.stringify(fleetChromeTrace(r)));
    expect(validateChromeTrace(trace)).toEqual([]);
    const ev = trace.traceEvents as { name: string; ph: string; pid: number; tid: number; ts: number; dur?: number; cat?: string; args?: Record<string, unknown> }[];
    const processes = ev.filter((e) => e.name === 'process_name').map((e) => e.pid);
    expect(processes).toContain(FLEET_PID);
    expect(processes).toContain(FRONT_DOOR_PID);
    for (let k = 0; k < r.replicas.length; k++) expect(processes).toContain(REPLICA_PID_BASE + k);
    // Every phase span lies inside its request's span on the same lane.
    const requests = ev.filter((e) => e.cat === 'request');
    const phases = ev.filter((e) => e.cat === 'phase');
    expect(requests.length).toBeGreaterThanOrEqual(300);
    for (const p of phases.slice(0, 500)) {
      const parent = requests.find((q) => q.name === p.args!.request && q.pid === p.pid && q.tid === p.tid && q.ts <= p.ts + 1e-3 && p.ts + p.dur! <= q.ts + q.dur! + 1e-3);
      expect(parent, JSON.stringify(p)).toBeDefined();
    }
    // Lanes never overlap.
    const byLane = new Map<string, typeof requests>();
    for (const q of requests) byLane.set(`${q.pid}/${q.tid}`, [...(byLane.get(`${q.pid}/${q.tid}`) ?? []), q]);
    for (const list of byLane.values()) {
      list.sort((a, b) => a.ts - b.ts);
      for (let i = 1; i < list.length; i++) expect(list[i].ts).toBeGreaterThanOrEqual(list[i - 1].ts + list[i - 1].dur! - 1e-3);
    }
    expect(ev.some((e) => e.cat === 'router' && e.ph === 'i')).toBe(true);
    expect(ev.some((e) => e.cat === 'autoscaler' && e.ph === 'i')).toBe(true);
    expect(ev.some((e) => e.name === 'lost' && e.ph === 'i')).toBe(true);
    expect(ev.some((e) => e.ph === 'C' && e.name === 'KV usage')).toBe(true);
    expect(ev.some((e) => e.ph === 'C' && e.name === 'replicas')).toBe(true);
    expect(phases.some((e) => e.name === 'recompute')).toBe(true);
    expect(phases.some((e) => e.name === 'moderation' && e.pid === FRONT_DOOR_PID)).toBe(true);
    const checks = ev.filter((e) => e.cat === 'moderation');
    expect(checks.length).toBe(r.requests.reduce((a, q) => a + (q.moderationChecks?.length ?? 0), 0));
    expect(checks.every((e) => e.pid === MODERATION_PID)).toBe(true);
    expect(checks.some((e) => e.name.endsWith('(flagged)'))).toBe(true);
  });
});
