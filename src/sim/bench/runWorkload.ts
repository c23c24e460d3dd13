/**
 * Runs one workload through an Engine on a backend and measures it: latencies per request,
 * throughput over the makespan, and per-step KV slot utilisation and concurrency (weighted by
 * step duration).
 */
import { Engine } from '../../engine/engine.ts';
import { isVirtualClock } from '../../engine/clock.ts';
import type { SchedulerConfig } from '../../engine/scheduler.ts';
import type { RequestSpec } from '../../engine/request.ts';
import { percentile } from '../../engine/metrics.ts';
import type { Backend, ExecutorRequest } from './types.ts';

export interface RunStats {
  numFinished: number;
  numRejected: number;
  numPreemptions: number;
  makespanMs: number;
  numSteps: number;
  numOutputTokens: number;
  /** Generated tokens per second of makespan. */
  throughputTokPerS: number;
  e2eMs: number[];
  ttftMs: number[];
  /** Filled slots / slots in held blocks, averaged over steps weighted by duration. */
  slotUtilization: number;
  /** Running sequences, averaged over steps weighted by duration, and the peak. */
  meanRunningSeqs: number;
  peakRunningSeqs: number;
  meanKvUsage: number;
}

export async function runWorkload(
  backend: Backend,
  executorRequest: ExecutorRequest,
  config: Partial<SchedulerConfig>,
  requests: readonly RequestSpec[],
): Promise<RunStats> {
  const executor = await backend.makeExecutor(executorRequest);
  const clock = backend.makeClock();
  const engine = new Engine({ executor, clock, config, recordEvents: false, checkInvariants: false });
  for (const r of requests) engine.submit(r);
  let weight = 0;
  let utilSum = 0;
  let seqSum = 0;
  let usageSum = 0;
  let peak = 0;
  let numOutputTokens = 0;
  engine.on((e) => {
    if (e.type === 'token') numOutputTokens++;
    if (e.type !== 'step') return;
    const g = engine.gauges();
    const running = g.numRunningSeqs;
    const w = e.durationMs;
    weight += w;
    // Slot utilisation of the held blocks (1 with none held): 1 - internal fragmentation.
    utilSum += w * (1 - g.kvFragmentation);
    seqSum += w * running;
    usageSum += w * g.kvUsage;
    peak = Math.max(peak, running);
  });
  const startMs = clock.nowMs();
  if (isVirtualClock(clock)) await engine.runUntilIdle();
  else {
    while (engine.hasWork()) {
      const r = await engine.step();
      if (r.kind === 'idle') {
        const waitMs = r.nextArrivalMs === null ? 1 : Math.max(0, r.nextArrivalMs - clock.nowMs());
        await new Promise((resolve) => setTimeout(resolve, Math.min(waitMs, 50)));
      }
    }
  }
  const makespanMs = clock.nowMs() - startMs;
  const e2eMs: number[] = [];
  const ttftMs: number[] = [];
  let numFinished = 0;
  let numRejected = 0;
  for (const r of engine.requests()) {
    if (r.state === 'rejected') numRejected++;
    if (r.state !== 'finished') continue;
    numFinished++;
    e2eMs.push(r.finishedMs - r.arrivalMs);
    ttftMs.push(r.firstTokenMs - r.arrivalMs);
  }
  executor.dispose();
  return {
    numFinished,
    numRejected,
    numPreemptions: engine.numPreemptions,
    makespanMs,
    numSteps: engine.metrics.numSteps,
    numOutputTokens,
    throughputTokPerS: makespanMs > 0 ? (numOutputTokens * 1000) / makespanMs : 0,
    e2eMs,
    ttftMs,
    slotUtilization: weight > 0 ? utilSum / weight : 0,
    meanRunningSeqs: weight > 0 ? seqSum / weight : 0,
    peakRunningSeqs: peak,
    meanKvUsage: weight > 0 ? usageSum / weight : 0,
  };
}

export function pct(values: number[], p: number): number {
  return percentile(Float64Array.from(values).sort(), p);
}

/** Fixed-width text table, numbers right-aligned. */
export function formatTable(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows
    .map((r, i) => {
      const line = r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  ');
      return i === 0 ? `${line}\n${widths.map((w) => '-'.repeat(w)).join('  ')}` : line;
    })
    .join('\n');
}
