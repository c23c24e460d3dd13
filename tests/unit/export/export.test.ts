import { describe, expect, it } from 'vitest';
import { Engine } from '../../../src/engine/engine.ts';
import { VirtualClock } from '../../../src/engine/clock.ts';
import { FakeExecutor } from '../../../src/engine/testing/fakeExecutor.ts';
import { generateWorkload, exportTrace } from '../../../src/engine/workload.ts';
import type { SchedulerConfig } from '../../../src/engine/scheduler.ts';
import type { EngineEvent } from '../../../src/engine/events.ts';
import { chromeTrace, validateChromeTrace, STEPS_TID } from '../../../src/export/chrome-trace.ts';
import { latencyCsv, requestLatencies, LATENCY_CSV_COLUMNS } from '../../../src/export/latency-csv.ts';
import { compareEventLogs, makeSavedRun, parseImport, replaySavedRun, replayableEvents, serializeRun } from '../../../src/export/saved-run.ts';

const config: Partial<SchedulerConfig> = { blockSize: 4, numGpuBlocks: 14, numCpuBlocks: 16, maxNumBatchedTokens: 32, maxNumSeqs: 8, maxModelLen: 128 };

/** A run with preemptions (a small KV pool), a rejection and a cancel. */
async function recordedRun(extra: Partial<SchedulerConfig> = {}) {
  const engine = new Engine({ executor: new FakeExecutor({ emitLogits: true }), clock: new VirtualClock(), config: { ...config, ...extra }, checkInvariants: true });
  const specs = generateWorkload({
    seed: 3,
    numRequests: 10,
    vocabSize: 60,
    arrival: { kind: 'poisson', ratePerS: 300 },
    promptTokens: { kind: 'uniform', min: 4, max: 20 },
    outputTokens: { kind: 'uniform', min: 6, max: 18 },
  });
  for (const s of specs) engine.submit(s);
  // Too long for the pool: rejected at admission.
  engine.submit({ requestId: 'huge', promptTokenIds: Array.from({ length: 100 }, (_, i) => 3 + (i % 50)), maxTokens: 4 });
  await engine.init();
  for (let i = 0; i < 4; i++) await engine.step();
  engine.cancel('w3-1');
  await engine.runUntilIdle();
  return { engine, config: engine.config };
}

describe('chromeTrace', () => {
  it('writes valid Trace Event Format with a track per request and an engine-steps track', async () => {
    const { engine } = await recordedRun();
    const log = engine.eventLog;
    const trace = chromeTrace(log, { model: 'fake' });
    expect(trace.displayTimeUnit).toBe('ms');
    expect(validateChromeTrace(JSON.parse(JSON.stringify(trace)))).toEqual([]);
    const names = trace.traceEvents.filter((e) => e.ph === 'M' && e.name === 'thread_name').map((e) => e.args!.name);
    expect(names[0]).toBe('engine steps');
    const submitted = log.filter((e) => e.type === 'submit').length;
    expect(names.length).toBe(1 + submitted);

    const steps = log.filter((e): e is Extract<EngineEvent, { type: 'step' }> => e.type === 'step');
    const stepSlices = trace.traceEvents.filter((e) => e.ph === 'X' && e.tid === STEPS_TID);
    expect(stepSlices.length).toBe(steps.length);
    // Microseconds from the first event; a step's slice spans startMs..timeMs.
    const t0 = Math.min(...log.map((e) => ('startMs' in e ? e.startMs : e.timeMs)));
    expect(stepSlices[3].ts).toBeCloseTo((steps[3].startMs - t0) * 1000, 3);
    expect(stepSlices[3].dur).toBeCloseTo((steps[3].timeMs - steps[3].startMs) * 1000, 3);

    const phases = new Set(trace.traceEvents.filter((e) => e.ph === 'X' && e.tid !== STEPS_TID).map((e) => e.name));
    for (const p of ['queued', 'prefill', 'decode', 'preempted', 'recompute']) expect(phases).toContain(p);
    const ends = trace.traceEvents.filter((e) => e.ph === 'i').map((e) => e.name);
    expect(ends).toContain('rejected: exceeds_kv_capacity');
    expect(ends).toContain('failed: cancelled');
    // Each request's phases never overlap on its track.
    const byTid = new Map<number, { ts: number; dur: number }[]>();
    for (const e of trace.traceEvents) if (e.ph === 'X' && e.tid !== STEPS_TID) byTid.set(e.tid, [...(byTid.get(e.tid) ?? []), { ts: e.ts, dur: e.dur! }]);
    for (const slices of byTid.values()) {
      for (let i = 1; i < slices.length; i++) expect(slices[i].ts).toBeGreaterThanOrEqual(slices[i - 1].ts + slices[i - 1].dur - 1e-3);
    }
  });

  it('labels a swap preemption and closes phases left open', () => {
    const log: EngineEvent[] = [
      { type: 'submit', timeMs: 0, stepIndex: 0, request: { requestId: 'a', promptTokenIds: [3, 4], maxTokens: 5, arrivalMs: 0 } },
      { type: 'queued', timeMs: 1, requestId: 'a' },
      { type: 'scheduled', timeMs: 1, stepIndex: 0, requestId: 'a', numCachedTokens: 0, resumed: false },
      { type: 'step', timeMs: 3, startMs: 1, stepIndex: 0, durationMs: 2, numSeqs: 1, numPrefillTokens: 2, numDecodeTokens: 0, numPaddingTokens: 0, sampled: [[0, 7]] },
      { type: 'token', timeMs: 3, requestId: 'a', seqId: 0, seqIndex: 0, tokenId: 7, index: 0 },
      { type: 'preempted', timeMs: 4, stepIndex: 1, requestId: 'a', mode: 'swap' },
      { type: 'scheduled', timeMs: 6, stepIndex: 2, requestId: 'a', numCachedTokens: 0, resumed: true },
    ];
    const x = chromeTrace(log).traceEvents.filter((e) => e.ph === 'X' && e.tid === 1);
    expect(x.map((e) => e.name)).toEqual(['queued', 'prefill', 'decode', 'preempted (swap)', 'decode']);
    expect(x[4].args).toMatchObject({ unfinished: true });
    expect(x[1]).toMatchObject({ ts: 1000, dur: 2000 });
  });

  it('reports what is wrong with a malformed trace', () => {
    expect(validateChromeTrace({ traceEvents: [{ name: 'x', ph: 'X', ts: 1, pid: 1, tid: 1 }] })).toEqual(['traceEvents[0].dur is not a duration']);
    expect(validateChromeTrace([])).toEqual(['traceEvents is not an array']);
  });
});

describe('latencyCsv', () => {
  it('has one row per submitted request with consistent latencies', async () => {
    const { engine } = await recordedRun();
    const rows = requestLatencies(engine.eventLog);
    expect(rows.length).toBe(11);
    const byId = new Map(rows.map((r) => [r.requestId, r]));
    expect(byId.get('huge')).toMatchObject({ outcome: 'rejected', reason: 'exceeds_kv_capacity', ttftMs: null });
    expect(byId.get('w3-1')).toMatchObject({ outcome: 'failed', reason: 'cancelled' });
    const finished = rows.filter((r) => r.outcome === 'finished');
    expect(finished.length).toBe(9);
    for (const r of finished) {
      expect(r.queueMs!).toBeGreaterThanOrEqual(0);
      expect(r.ttftMs!).toBeGreaterThanOrEqual(r.queueMs!);
      expect(r.e2eMs!).toBeGreaterThanOrEqual(r.ttftMs!);
      const req = engine.getRequest(r.requestId)!;
      expect(r.ttftMs).toBeCloseTo(req.firstTokenMs - req.arrivalMs, 6);
      expect(r.e2eMs).toBeCloseTo(req.finishedMs - req.arrivalMs, 6);
      expect(r.numPreemptions).toBe(req.numPreemptions);
    }
    expect(rows.some((r) => r.numPreemptions > 0)).toBe(true);
    const csv = latencyCsv(engine.eventLog);
    const lines = csv.trimEnd().split('\r\n');
    expect(lines[0]).toBe(LATENCY_CSV_COLUMNS.join(','));
    expect(lines.length).toBe(12);
    for (const l of lines) expect(l.split(',').length).toBe(LATENCY_CSV_COLUMNS.length);
  });

  it('quotes commas and defuses spreadsheet formulas in text fields', () => {
    const log: EngineEvent[] = [{ type: 'submit', timeMs: 0, stepIndex: 0, request: { requestId: 'r', promptTokenIds: [3], maxTokens: 1, arrivalMs: 0, tenant: '=cmd,"x"' } }];
    expect(latencyCsv(log).split('\r\n')[1]).toBe(`r,"'=cmd,""x""",0,1,1,0,0,,,,,,,,0,in flight,`);
  });
});

describe('saved runs', () => {
  it('replays a saved run identically, also after a JSON round trip', async () => {
    const { engine, config: c } = await recordedRun({ preemptionMode: 'swap' });
    const run = makeSavedRun('swap run', 'fake', c, engine.eventLog);
    const result = await replaySavedRun(run);
    expect(result.diff).toEqual({ equal: true, numEvents: engine.eventLog.length });
    const parsed = parseImport(serializeRun(run));
    expect(parsed.kind).toBe('run');
    if (parsed.kind !== 'run') return;
    expect(parsed.run.config.maxQueueLength).toBe(Infinity);
    expect((await replaySavedRun(parsed.run)).diff.equal).toBe(true);
  });

  it('finds the first event where a tampered log differs', async () => {
    const { engine, config: c } = await recordedRun();
    const run = makeSavedRun('r', 'fake', c, engine.eventLog);
    const i = run.events.findIndex((e) => e.type === 'token');
    const tampered = structuredClone(run.events);
    (tampered[i] as { tokenId: number }).tokenId = 5;
    const d = compareEventLogs(run.events, tampered);
    expect(d.equal).toBe(false);
    if (!d.equal) expect(d.index).toBe(i);
  });

  it('replays a log taken while a step was in flight up to its last finished step', async () => {
    const engine = new Engine({ executor: new FakeExecutor({ emitLogits: true }), clock: new VirtualClock(), config, checkInvariants: true });
    for (let i = 0; i < 4; i++) engine.submit({ requestId: `q${i}`, promptTokenIds: [3, 4, 5 + i], maxTokens: 6 });
    for (let i = 0; i < 3; i++) await engine.step();
    const inFlight = engine.step();
    engine.cancel('q1');
    // Taken now: the in-flight step's scheduling and the cancel are logged, its step event is not.
    const snapshot = [...engine.eventLog];
    await inFlight;
    const run = makeSavedRun('mid-step', 'fake', engine.config, snapshot);
    const kept = replayableEvents(snapshot);
    expect(kept[kept.length - 1].type).toBe('step');
    const result = await replaySavedRun(run);
    expect(result.diff.equal).toBe(true);
    expect(result.numLeftOut).toBe(snapshot.length - kept.length);
    expect(result.numLeftOut).toBeGreaterThan(0);
  });

  it('refuses to save a run without steps or a name', () => {
    expect(() => makeSavedRun('x', 'm', {} as SchedulerConfig, [])).toThrow(/no engine steps/);
    expect(() => makeSavedRun('  ', 'm', {} as SchedulerConfig, [])).toThrow(/needs a name/);
  });
});

describe('parseImport', () => {
  it('recognises traces and workloads and explains anything else', () => {
    const trace = exportTrace([{ requestId: 'a', promptTokenIds: [3, 4], maxTokens: 2 }]);
    expect(parseImport(trace)).toMatchObject({ kind: 'trace', requests: [{ requestId: 'a' }] });
    const w = { seed: 1, numRequests: 4, arrival: { kind: 'poisson', ratePerS: 2 }, promptTokens: { kind: 'fixed', value: 8 }, outputTokens: { kind: 'fixed', value: 8 } };
    expect(parseImport(JSON.stringify(w))).toMatchObject({ kind: 'workload', workload: { numRequests: 4 } });
    expect(() => parseImport('{"traceEvents": []}')).toThrow(/Chrome trace/);
    expect(() => parseImport('nope')).toThrow(/not JSON/);
    expect(() => parseImport('{"a": 1}')).toThrow(/unknown file/);
    expect(() => parseImport(JSON.stringify({ ...w, numRequests: -1 }))).toThrow(/numRequests/);
  });
});
