/**
 * A simulated fleet run as a Chrome / Perfetto trace (the Trace Event Format, JSON object form):
 *
 *   pid 1 "fleet"        router decisions and autoscaler decisions as instant events (thread
 *                        "router", thread "autoscaler"); counters: serving / starting replicas,
 *                        arrivals per second, cumulative GPU cost
 *   pid 2 "front door"   the parts of requests before a replica has them: the input moderation
 *                        check, waiting at the router for a serving replica
 *   pid 3 "moderation"   every moderation check, from when a checker took it to its verdict, on
 *                        lanes (as many as checks ran at once); args: its wait for a checker, flagged
 *   pid 10 + k           replica k (in order of creation): one complete event per request's stay
 *                        on it, with its phases (queue, prefill, decode, preempted, recompute,
 *                        moderation) nested inside; instant events at its state changes (cold,
 *                        warming, serving, draining, lost); counters: waiting, running, KV usage
 *
 * Requests are laid out on threads ("lanes") so that each lane holds requests that do not overlap.
 * Times are microseconds of SIMULATED time from the start of the run.
 */
import type { ChromeTrace, TraceEvent } from './chrome-trace.ts';
import type { FleetResult, RequestSpan } from '../sim/fleet/types.ts';

export const FLEET_PID = 1;
export const FRONT_DOOR_PID = 2;
export const MODERATION_PID = 3;
export const REPLICA_PID_BASE = 10;
const ROUTER_TID = 0;
const AUTOSCALER_TID = 1;
const COUNTER_TID = 2;

const us = (s: number): number => Math.round(s * 1e9) / 1e3;

interface Stay {
  requestId: string;
  tenant: string;
  startS: number;
  endS: number;
  spans: RequestSpan[];
  args: Record<string, unknown>;
}

/** Assigns each stay a lane (tid from `firstTid`): the first lane free at its start. */
function lanes(stays: Stay[], firstTid: number): { stay: Stay; tid: number }[] {
  const sorted = [...stays].sort((a, b) => a.startS - b.startS || (a.requestId < b.requestId ? -1 : 1));
  const laneEnd: number[] = [];
  return sorted.map((stay) => {
    let lane = laneEnd.findIndex((end) => end <= stay.startS);
    if (lane < 0) {
      lane = laneEnd.length;
      laneEnd.push(0);
    }
    laneEnd[lane] = stay.endS;
    return { stay, tid: firstTid + lane };
  });
}

export function fleetChromeTrace(result: FleetResult): ChromeTrace {
  const out: TraceEvent[] = [];
  const meta = (pid: number, tid: number, name: 'process_name' | 'thread_name', value: string) => out.push({ name, ph: 'M', ts: 0, pid, tid, args: { name: value } });
  meta(FLEET_PID, 0, 'process_name', 'fleet (SIMULATED)');
  meta(FLEET_PID, ROUTER_TID, 'thread_name', 'router');
  meta(FLEET_PID, AUTOSCALER_TID, 'thread_name', 'autoscaler');
  meta(FRONT_DOOR_PID, 0, 'process_name', 'front door: moderation, router queue');
  const pidOf = new Map<string, number>();
  result.replicas.forEach((r, k) => {
    const pid = REPLICA_PID_BASE + k;
    pidOf.set(r.id, pid);
    const pool = result.spec.pools.find((p) => p.model === r.model);
    const d = pool?.deployment;
    meta(pid, 0, 'process_name', `replica ${r.id}${d ? ` (${d.modelId} on ${d.tensorParallel * d.pipelineParallel}× ${d.hardwareId})` : ''}`);
    meta(pid, 0, 'thread_name', 'state');
    for (const s of r.states) out.push({ name: s.state, ph: 'i', s: 't', ts: us(s.atS), pid, tid: 0, cat: 'replica', args: { reason: s.reason } });
    for (const smp of r.samples) {
      out.push({ name: 'requests', ph: 'C', ts: us(smp.tS), pid, tid: 0, args: { waiting: smp.waiting, running: smp.running } });
      out.push({ name: 'KV usage', ph: 'C', ts: us(smp.tS), pid, tid: 0, args: { kv: Math.round(smp.kvUsage * 1000) / 1000 } });
    }
  });
  for (const d of result.routerDecisions) {
    out.push({ name: `route ${d.requestId} → ${d.replica}`, ph: 'i', s: 't', ts: us(d.atS), pid: FLEET_PID, tid: ROUTER_TID, cat: 'router', args: { policy: d.policy, reason: d.reason } });
  }
  for (const d of result.autoscalerDecisions) {
    out.push({ name: `${d.model}: ${d.from} → ${d.to}`, ph: 'i', s: 't', ts: us(d.atS), pid: FLEET_PID, tid: AUTOSCALER_TID, cat: 'autoscaler', args: { metric: d.metric, value: d.value, reason: d.reason } });
  }
  const se = result.series;
  se.tS.forEach((t, i) => {
    out.push({ name: 'replicas', ph: 'C', ts: us(t), pid: FLEET_PID, tid: COUNTER_TID, args: { serving: se.servingReplicas[i], starting: se.startingReplicas[i] } });
    out.push({ name: 'arrivals/s', ph: 'C', ts: us(t), pid: FLEET_PID, tid: COUNTER_TID, args: { rate: Math.round(se.arrivalsPerS[i] * 100) / 100 } });
    out.push({ name: 'GPU cost USD', ph: 'C', ts: us(t), pid: FLEET_PID, tid: COUNTER_TID, args: { usd: Math.round(se.costUsd[i] * 1e4) / 1e4 } });
  });

  const checks: Stay[] = [];
  for (const req of result.requests) {
    for (const c of req.moderationChecks ?? []) {
      checks.push({
        requestId: req.id,
        tenant: req.tenant,
        startS: c.startS,
        endS: c.doneS,
        spans: [],
        args: { stage: c.stage, waitedMs: Math.round((c.startS - c.submitS) * 1e6) / 1e3, flagged: c.flagged, ...(c.upToToken !== undefined ? { upToToken: c.upToToken } : {}) },
      });
    }
  }
  if (checks.length > 0) {
    meta(MODERATION_PID, 0, 'process_name', 'moderation checks');
    for (const { stay, tid } of lanes(checks, 0)) {
      const stage = stay.args.stage as string;
      out.push({ name: `${stage} check ${stay.requestId}${stay.args.flagged ? ' (flagged)' : ''}`, ph: 'X', ts: us(stay.startS), dur: Math.max(0, us(stay.endS) - us(stay.startS)), pid: MODERATION_PID, tid, cat: 'moderation', args: stay.args });
    }
  }

  // Each request's spans, grouped into stays: consecutive spans on one replica (or at the front door).
  const stays = new Map<number, Stay[]>();
  for (const req of result.requests) {
    const spans = req.spans ?? [];
    let current: Stay | null = null;
    let currentPid = -1;
    const close = () => {
      if (!current) return;
      const list = stays.get(currentPid) ?? [];
      list.push(current);
      stays.set(currentPid, list);
      current = null;
    };
    for (const s of spans) {
      const pid = s.replica !== undefined ? (pidOf.get(s.replica) ?? FRONT_DOOR_PID) : FRONT_DOOR_PID;
      if (!current || pid !== currentPid) {
        close();
        currentPid = pid;
        current = { requestId: req.id, tenant: req.tenant, startS: s.startS, endS: s.endS, spans: [], args: { tenant: req.tenant, model: req.model, promptTokens: req.promptTokens, outputTokens: req.outputTokens, finishReason: req.finishReason, ...(req.reason ? { reason: req.reason } : {}) } };
      }
      (current as Stay).spans.push(s);
      (current as Stay).endS = s.endS;
    }
    close();
  }
  for (const [pid, list] of stays) {
    for (const { stay, tid } of lanes(list, pid === FRONT_DOOR_PID ? 0 : 1)) {
      out.push({ name: stay.requestId, ph: 'X', ts: us(stay.startS), dur: Math.max(0, us(stay.endS) - us(stay.startS)), pid, tid, cat: 'request', args: stay.args });
      for (const s of stay.spans) out.push({ name: s.phase, ph: 'X', ts: us(s.startS), dur: Math.max(0, us(s.endS) - us(s.startS)), pid, tid, cat: 'phase', args: { request: stay.requestId } });
    }
  }
  return {
    traceEvents: out,
    displayTimeUnit: 'ms',
    otherData: {
      source: 'servelab fleet simulation (SIMULATED: roofline cost model, no model runs)',
      fleet: result.spec.name,
      numRequests: result.summary.numRequests,
      durationS: result.summary.durationS,
    },
  };
}
