/**
 * Issue 11, imports: every bad workload, trace or saved run is refused whole, at once, with every
 * problem named by its path; nothing hangs, nothing throws a TypeError, and whatever is accepted
 * generates requests the engine takes. The reproductions first, then seeded fuzzing.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Engine } from '../../../src/engine/engine.ts';
import { VirtualClock } from '../../../src/engine/clock.ts';
import { FakeExecutor } from '../../../src/engine/testing/fakeExecutor.ts';
import { validateEngineConfig, type SchedulerConfig } from '../../../src/engine/config.ts';
import { validateRequestSpec, type RequestSpec } from '../../../src/engine/request.ts';
import { InvalidInputError, type Problem } from '../../../src/engine/schema.ts';
import {
  exportTrace,
  generateWorkload,
  importTrace,
  InvalidWorkloadError,
  MAX_PARALLEL_SAMPLES,
  MAX_TRACE_REQUESTS,
  MAX_WORKLOAD_PROMPT_TOKENS,
  Rng,
  validateTrace,
  validateWorkload,
  type WorkloadSpec,
} from '../../../src/engine/workload.ts';
import { MAX_RUN_EVENTS, makeSavedRun, parseImport, replaySavedRun, serializeRun, validateRun, type SavedRun } from '../../../src/export/saved-run.ts';
import { MAX_N } from '../../../src/serve/requests.ts';

/** JSON as servelab writes it: non-finite numbers as {"$num": "..."} (parseImport reads them back). */
const toJson = (v: unknown) => JSON.stringify(v, (_k, x: unknown) => (typeof x === 'number' && !Number.isFinite(x) ? { $num: String(x) } : x));

const good: WorkloadSpec = {
  seed: 5,
  numRequests: 12,
  vocabSize: 60,
  arrival: { kind: 'bursty', ratePerS: 50, burstiness: 0.3 },
  promptTokens: { kind: 'uniform', min: 3, max: 12 },
  outputTokens: { kind: 'lognormal', median: 6, sigma: 0.5, min: 2, max: 16 },
  tenants: [
    { name: 'gold', weight: 1, priority: 0, deadlineMs: 5000 },
    { name: 'free', weight: 2, priority: 1 },
  ],
};

/** The Error `f` throws, and how long it took to throw it. */
function refusal(f: () => unknown): { error: Error; ms: number } {
  const t0 = performance.now();
  try {
    f();
  } catch (e) {
    return { error: e as Error, ms: performance.now() - t0 };
  }
  throw new Error('accepted');
}

describe('workload reproductions (issue 11): refused at once, with the path and the reason', () => {
  const bursty = (burstiness: unknown) => ({ ...good, arrival: { kind: 'bursty', ratePerS: 5, burstiness } });
  it.each([
    ['burstiness "x"', bursty('x'), /arrival\.burstiness must be a finite number from 0\.001 to 1000, got "x"/],
    ['burstiness NaN', bursty(NaN), /arrival\.burstiness must be .*, got NaN/],
    ['burstiness -Infinity', bursty(-Infinity), /arrival\.burstiness must be .*, got -Infinity/],
    ['burstiness 0', bursty(0), /arrival\.burstiness must be .*, got 0/],
    ['promptTokens fixed at 1e8', { ...good, promptTokens: { kind: 'fixed', value: 1e8 } }, /promptTokens\.value must be an integer from 1 to 100000, got 100000000/],
    ['ratePerS 0', { ...good, arrival: { kind: 'poisson', ratePerS: 0 } }, /arrival\.ratePerS must be a finite number from 0\.01 to 1000000, got 0 \(requests per second; at 0 the requests would never arrive\)/],
    ['tenant priority "high"', { ...good, tenants: [{ name: 'gold', weight: 1, priority: 'high' }] }, /tenants\[0\]\.priority must be a finite number, got "high"/],
    ['tenant priority Infinity', { ...good, tenants: [{ name: 'gold', weight: 1, priority: Infinity }] }, /tenants\[0\]\.priority must be a finite number, got Infinity/],
    ['tenant weight NaN', { ...good, tenants: [{ name: 'gold', weight: NaN }] }, /tenants\[0\]\.weight must be a finite number > 0 and <= 1000000000, got NaN/],
  ])('%s', (_name, spec, reason) => {
    // Programmatic callers get the same refusal as an imported file.
    const direct = refusal(() => generateWorkload(spec as WorkloadSpec));
    expect(direct.error).toBeInstanceOf(InvalidWorkloadError);
    expect(direct.error.message).toMatch(/^workload: /);
    expect(direct.error.message).toMatch(reason);
    expect(direct.ms).toBeLessThan(200);
    const imported = refusal(() => parseImport(toJson(spec)));
    expect(imported.error.message).toBe(direct.error.message);
    expect(imported.ms).toBeLessThan(200);
  });

  it('lists every problem of one file, each with its path', () => {
    const bad = {
      seed: 1.5,
      numRequests: 0,
      arrival: { kind: 'poisson', ratePerS: -1, burstiness: 2 },
      promptTokens: { kind: 'uniform', min: 9, max: 3 },
      outputTokens: { kind: 'zipf' },
      sharedPrefix: { fraction: 2, numTokens: 8 },
      parallelSampling: { fraction: 0.5, n: 17 },
      tenants: [{ name: '', weight: 0, deadlineMs: -5 }, { name: 'a', weight: 1 }, { name: 'a', weight: 1 }],
      temperature: -1,
      burstyness: 3,
    };
    const { error } = refusal(() => validateWorkload(bad));
    const paths = (error as InvalidWorkloadError).problems.map((p) => p.path);
    expect(paths).toEqual([
      'burstyness',
      'seed',
      'numRequests',
      'arrival.burstiness',
      'arrival.ratePerS',
      'promptTokens',
      'outputTokens.kind',
      'sharedPrefix.fraction',
      'tenants[0].name',
      'tenants[0].weight',
      'tenants[0].deadlineMs',
      'parallelSampling.n',
      'temperature',
    ]);
    expect(error.message).toMatch(/burstyness is not a known field/);
    expect(error.message).toMatch(/promptTokens: min \(9\) must be <= max \(3\)/);
    expect(error.message).toMatch(/outputTokens\.kind must be one of "fixed", "uniform", "lognormal", "bimodal", got "zipf"/);
    // 13 problems: the message shows 10 and counts the rest.
    expect(error.message).toMatch(/; and 3 more$/);
    // Tenant names repeat: found once the tenants are otherwise fine.
    const dup = refusal(() => validateWorkload({ ...good, tenants: [{ name: 'a', weight: 1 }, { name: 'a', weight: 1 }] }));
    expect(dup.error.message).toBe('workload: tenants[1].name repeats tenants[0].name "a"');
  });

  it('bounds what one workload can build in memory', () => {
    expect(() => generateWorkload({ ...good, numRequests: 10_001 })).toThrow(/numRequests must be an integer from 1 to 10000/);
    const heavy = { ...good, numRequests: 10_000, promptTokens: { kind: 'fixed' as const, value: 100_000 } };
    expect(() => generateWorkload(heavy)).toThrow(new RegExp(`numRequests × the longest prompt could make 1000000000 prompt tokens; at most ${MAX_WORKLOAD_PROMPT_TOKENS}`));
    // A shared prefix counts too: each request that takes one adds a token of its own.
    const prefixed = { ...good, numRequests: 10_000, promptTokens: { kind: 'fixed' as const, value: 4 }, sharedPrefix: { fraction: 1, numTokens: 100_000, numPrefixes: 2 } };
    expect(() => generateWorkload(prefixed)).toThrow(/\(and the shared prefixes\) could make 1000210000 prompt tokens/);
  });

  it('a workload whose tenants had priority "high" runs to the end once the priority is a number: nothing is lost', async () => {
    const bad = { ...good, tenants: [{ name: 'gold', weight: 1, priority: 'high' }, { name: 'free', weight: 1, priority: 2 }] };
    expect(() => parseImport(JSON.stringify(bad))).toThrow(/tenants\[0\]\.priority must be a finite number, got "high"/);
    const fixed = parseImport(JSON.stringify({ ...bad, tenants: [{ name: 'gold', weight: 1, priority: 0 }, { name: 'free', weight: 1, priority: 2 }] }));
    if (fixed.kind !== 'workload') throw new Error(fixed.kind);
    const specs = generateWorkload(fixed.workload);
    expect(specs).toHaveLength(12);
    const engine = new Engine({
      executor: new FakeExecutor({ vocabSize: 60, emitLogits: true }),
      clock: new VirtualClock(),
      config: { blockSize: 4, numGpuBlocks: 24, numCpuBlocks: 8, maxNumBatchedTokens: 32, maxNumSeqs: 4, maxModelLen: 64, policy: 'priority' },
      checkInvariants: true,
    });
    for (const s of specs) engine.submit(s);
    await engine.runUntilIdle();
    const ended = new Set(engine.eventLog.flatMap((e) => (e.type === 'finished' || e.type === 'rejected' || e.type === 'failed' ? [e.requestId] : [])));
    expect([...ended].sort()).toEqual(specs.map((s) => s.requestId).sort());
    expect(engine.eventLog.filter((e) => e.type === 'finished')).toHaveLength(12);
  });

  it('the serving front door and the generator agree on the most parallel samples', () => {
    expect(MAX_PARALLEL_SAMPLES).toBe(MAX_N);
  });
});

describe('gamma sampling terminates', () => {
  it('refuses parameters it could never accept a sample for', () => {
    const rng = new Rng(3);
    for (const [shape, scale] of [[NaN, 1], [-Infinity, 1], [Infinity, 1], [0, 1], [-2, 1], [1, 0], [1, NaN], [1, Infinity]]) {
      expect(() => rng.gamma(shape, scale)).toThrow(RangeError);
    }
    expect(() => rng.exponential(0)).toThrow(/rate must be a finite number > 0, got 0/);
  });

  it('draws finite, non-negative samples across the accepted burstiness range, with the mean shape × scale', () => {
    for (const shape of [0.001, 0.01, 0.3, 1, 2.5, 40, 1000]) {
      const rng = new Rng(17);
      let sum = 0;
      const n = 4000;
      for (let i = 0; i < n; i++) {
        const g = rng.gamma(shape, 2 / shape);
        expect(Number.isFinite(g) && g >= 0).toBe(true);
        sum += g;
      }
      // Mean 2 whatever the shape (the variance 4 / shape makes tiny shapes noisy).
      expect(Math.abs(sum / n - 2)).toBeLessThan(shape < 0.1 ? 2 : 0.25);
    }
  });
});

const trace = (requests: unknown[]) => ({ format: 'servelab-trace', version: 1, requests });
const req = (i: number, extra: Record<string, unknown> = {}) => ({ requestId: `r${i}`, promptTokenIds: [1, 5 + i, 7], maxTokens: 4, arrivalMs: i * 10, ...extra });

describe('trace reproductions: one bad request refuses the whole file, with its index', () => {
  it('names the request and the reason, through parseImport and importTrace', () => {
    const requests = Array.from({ length: 8 }, (_, i) => req(i));
    requests[3] = req(3, { priority: 'high' });
    requests[6] = req(6, { sampling: { temperature: -1 }, maxTokens: 0 });
    const text = JSON.stringify(trace(requests));
    for (const f of [() => parseImport(text), () => importTrace(text)]) {
      const { error, ms } = refusal(f);
      expect(error).toBeInstanceOf(InvalidInputError);
      expect(error.message).toBe(
        'trace: request 3: priority must be a finite number, got "high"; request 6: maxTokens must be a positive integer, got 0; request 6: temperature must be a finite number >= 0, got -1',
      );
      expect(ms).toBeLessThan(200);
    }
    expect((refusal(() => importTrace(text)).error as InvalidInputError).problems.map((p) => p.path)).toEqual(['requests[3].priority', 'requests[6].maxTokens', 'requests[6].sampling.temperature']);
  });

  it('lists 10 problems and counts the rest', () => {
    const requests = Array.from({ length: 30 }, (_, i) => req(i, i % 2 ? { deadlineMs: 0 } : {}));
    const { error } = refusal(() => importTrace(JSON.stringify(trace(requests))));
    expect(error.message.match(/request \d+: deadlineMs must be a number > 0/g)).toHaveLength(10);
    expect(error.message).toMatch(/^trace: request 1: .*; request 19: .*; and 5 more$/);
  });

  it('refuses repeated request ids, non-finite values written as $num, late arrivals and more than 10,000 requests', () => {
    expect(() => importTrace(JSON.stringify(trace([req(0), req(1), req(2, { requestId: 'r0' })])))).toThrow("trace: request 2: requestId \"r0\" repeats request 0's");
    expect(() => parseImport(toJson(trace([req(0), req(1, { arrivalMs: Infinity })])))).toThrow('trace: request 1: arrivalMs must be a finite number, got Infinity');
    expect(() => importTrace(JSON.stringify(trace([req(0, { arrivalMs: -5 })])))).toThrow(/request 0: arrivalMs must be from 0 to 604800000/);
    const many = Array.from({ length: MAX_TRACE_REQUESTS + 1 }, () => ({ promptTokenIds: [1], maxTokens: 1 }));
    const { error, ms } = refusal(() => importTrace(JSON.stringify(trace(many))));
    expect(error.message).toBe('trace: requests must be an array of 1 to 10000 items, got an array of 10001 (the recorded requests)');
    expect(ms).toBeLessThan(500);
    expect(() => importTrace(JSON.stringify(trace([])))).toThrow(/requests must be an array of 1 to 10000 items, got an array of 0/);
    expect(() => importTrace(JSON.stringify({ ...trace([req(0)]), note: 'x' }))).toThrow(/trace: note is not a known field/);
    expect(() => importTrace('{"format":"servelab-trace","version":2,"requests":[]}')).toThrow('trace: unknown format "servelab-trace" version 2');
    expect(() => importTrace('[')).toThrow(/^trace: not JSON/);
  });

  it('checks token ids against a vocabulary when given one; a good trace round-trips', () => {
    const w = generateWorkload({ ...good, numRequests: 20 });
    expect(importTrace(exportTrace(w), { vocabSize: 60 })).toEqual(w);
    expect(() => importTrace(exportTrace(w), { vocabSize: 10 })).toThrow(/request 0: promptTokenIds: token \d+ is \d+, outside the vocabulary \(0\.\.9\)/);
  });
});

/** A small recorded run (a rejection, preemptions, a cancel). */
async function recordedRun(): Promise<SavedRun> {
  const config: Partial<SchedulerConfig> = { blockSize: 4, numGpuBlocks: 10, numCpuBlocks: 8, maxNumBatchedTokens: 32, maxNumSeqs: 4, maxModelLen: 64 };
  const engine = new Engine({ executor: new FakeExecutor({ emitLogits: true }), clock: new VirtualClock(), config, checkInvariants: true });
  for (const s of generateWorkload({ seed: 9, numRequests: 5, vocabSize: 60, arrival: { kind: 'poisson', ratePerS: 300 }, promptTokens: { kind: 'uniform', min: 3, max: 10 }, outputTokens: { kind: 'uniform', min: 3, max: 8 } })) {
    engine.submit(s);
  }
  engine.submit({ requestId: 'huge', promptTokenIds: Array.from({ length: 60 }, (_, i) => 3 + (i % 50)), maxTokens: 4 });
  for (let i = 0; i < 3; i++) await engine.step();
  engine.cancel('w9-1');
  await engine.runUntilIdle();
  return makeSavedRun('small run', 'fake', engine.config, engine.eventLog);
}

describe('saved runs are checked whole', () => {
  it('checks the config with the engine, after merging the defaults', async () => {
    const run = await recordedRun();
    const data = JSON.parse(serializeRun(run)) as Record<string, unknown>;
    // A partial config is completed with the defaults, as the engine completes it.
    const partial = validateRun({ ...data, config: { blockSize: 4, numGpuBlocks: 10, numCpuBlocks: 8, maxNumBatchedTokens: 32, maxNumSeqs: 4, maxModelLen: 64 } });
    expect(validateEngineConfig(partial.config)).toEqual([]);
    expect(partial.config.policy).toBe('fcfs');
    expect((await replaySavedRun(partial)).diff.equal).toBe(true);

    const bad = { ...data, config: { blockSize: 0, policy: 'lifo', maxNumSeqs: '4', turbo: true, fairShare: { prefillTokenWeight: 1, decodeTokenWeight: 2, tenantWeights: { a: 'x' } } } };
    const { error } = refusal(() => validateRun(bad));
    expect((error as InvalidInputError).problems.map((p) => p.path)).toEqual(['config.maxNumSeqs', 'config.turbo', 'config.fairShare.tenantWeights.a', 'config.blockSize', 'config.policy']);
    expect(error.message).toMatch(/^saved run: config\.maxNumSeqs must be a number, got "4"; config\.turbo is not one of the engine settings/);
    expect(error.message).toMatch(/config: blockSize must be a positive integer, got 0; config: unknown policy lifo/);
    // Objects whose printing would throw (a "toString" field) are refused by type first.
    expect(() => parseImport(JSON.stringify({ ...data, config: { maxQueueLength: { toString: 1 } } }))).toThrow('saved run: config.maxQueueLength must be a number, got an object');
  });

  it('accepts what the engine logs: a run reconfigured while it ran round-trips and replays', async () => {
    const engine = new Engine({ executor: new FakeExecutor({ emitLogits: true }), clock: new VirtualClock(), config: { blockSize: 4, numGpuBlocks: 16, maxNumSeqs: 4, maxModelLen: 64 }, checkInvariants: true });
    // A saved run holds the configuration the run started with; the changes are in its log.
    const startConfig = { ...engine.config };
    for (let i = 0; i < 4; i++) engine.submit({ requestId: `q${i}`, promptTokenIds: [1, 5, 6 + i], maxTokens: 5, priority: i, tenant: i % 2 ? 'a' : 'b' });
    await engine.step();
    engine.reconfigure({ maxNumSeqs: 2, policy: 'priority', maxQueueLength: Infinity });
    await engine.runUntilIdle();
    expect(engine.eventLog.some((e) => e.type === 'reconfigure')).toBe(true);
    const parsed = parseImport(serializeRun(makeSavedRun('reconfigured', 'fake', startConfig, engine.eventLog)));
    if (parsed.kind !== 'run') throw new Error(parsed.kind);
    expect((await replaySavedRun(parsed.run)).diff.equal).toBe(true);
    const changes = { ...engine.eventLog.find((e) => e.type === 'reconfigure')!, changes: { maxNumSeqs: '2', warp: 9 } };
    expect(() => validateRun({ ...parsed.run, events: [changes] } as unknown as Record<string, unknown>)).toThrow(
      /^saved run: events\[0\]\.changes\.maxNumSeqs must be a number, got "2"; events\[0\]\.changes\.warp is not one of the engine settings/,
    );
  });

  it('checks every event, names it by index, and bounds the log', async () => {
    const run = await recordedRun();
    const data = structuredClone(run) as unknown as { events: Record<string, unknown>[] } & Record<string, unknown>;
    const submit = data.events.findIndex((e) => e.type === 'submit');
    const step = data.events.findIndex((e) => e.type === 'step');
    const events = structuredClone(data.events);
    (events[submit].request as Record<string, unknown>).priority = 'high';
    events[step].sampled = [[0, -1]];
    events.push({ type: 'teleported', timeMs: 1 });
    const { error } = refusal(() => parseImport(toJson({ ...data, events })));
    expect(error.message).toBe(
      `saved run: events[${submit}].request: priority must be a finite number, got "high"; events[${step}].sampled[0] must be a [seqId, tokenId] pair of integers >= 0, got an array of 2; events[${events.length - 1}].type must be one of "submit", "cancel", "reconfigure", "queued", "rejected", "scheduled", "token", "preempted", "finished", "failed", "stepFailed", "executorReplaced", "adapterRegistered", "step", got "teleported" (an engine event)`,
    );
    const tooMany = new Array<unknown>(MAX_RUN_EVENTS + 1).fill(data.events[0]);
    const big = refusal(() => validateRun({ ...data, events: tooMany }));
    expect(big.error.message).toBe(`saved run: events must be an array of at most ${MAX_RUN_EVENTS} items, got an array of ${MAX_RUN_EVENTS + 1} (the run's event log)`);
    expect(big.ms).toBeLessThan(500);
    // A run whose executor failed once (stepFailed, executorReplaced) is a run like any other.
    const failedStep = { type: 'stepFailed', timeMs: 3, startMs: 2, stepIndex: 1, message: 'device lost' };
    expect(() => validateRun({ ...data, events: [...data.events, failedStep, { type: 'executorReplaced', timeMs: 4, stepIndex: 1 }] })).not.toThrow();
    expect(() => validateRun({ ...data, name: '   ' })).toThrow('saved run: name is blank: a saved run needs a name');
    expect(() => validateRun({ ...data, version: 2 })).toThrow('saved run: version must be 1, got 2 (the saved-run format this servelab reads)');
  });
});

// ---------------------------------------------------------------------------------------------
// Fuzzing: valid inputs, mutated.

type Node = { path: string; parent: Record<string, unknown> | unknown[] | null; key: string | number };

/** Every node under the root (not the root itself), with the path the validators use. */
function nodes(v: unknown, path = '', out: Node[] = []): Node[] {
  if (Array.isArray(v)) {
    v.forEach((x, i) => {
      const p = `${path}[${i}]`;
      out.push({ path: p, parent: v, key: i });
      nodes(x, p, out);
    });
  } else if (typeof v === 'object' && v !== null) {
    for (const [k, x] of Object.entries(v)) {
      const p = path === '' ? k : `${path}.${k}`;
      out.push({ path: p, parent: v as Record<string, unknown>, key: k });
      nodes(x, p, out);
    }
  }
  return out;
}

/** Containers (objects) a field can be added to, the root included. */
function objects(root: unknown): { path: string; obj: Record<string, unknown> }[] {
  const isObj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
  const out = isObj(root) ? [{ path: '', obj: root }] : [];
  for (const n of nodes(root)) {
    const x = Array.isArray(n.parent) ? n.parent[n.key as number] : (n.parent as Record<string, unknown>)[n.key as string];
    if (isObj(x)) out.push({ path: n.path, obj: x });
  }
  return out;
}

const garbage: fc.Arbitrary<unknown> = fc.oneof(
  { arbitrary: fc.constantFrom(NaN, Infinity, -Infinity), weight: 3 },
  { arbitrary: fc.constantFrom(0, -0, -1, 0.5, 1.5, 1e8, 1e300, -1e300, 2 ** 53, 2 ** 31, '', 'x', 'high', '1', null, true, false, [], {}), weight: 3 },
  fc.integer(),
  fc.double(),
  fc.string({ maxLength: 6 }),
  fc.string({ minLength: 300, maxLength: 3000 }),
  fc.array(fc.integer({ min: -3, max: 600 }), { maxLength: 6 }),
  fc.anything({ maxDepth: 3, maxKeys: 4 }),
);

const fieldName = fc.oneof(fc.constantFrom('extra', '__proto__', 'constructor', 'toString', 'kind', 'burstyness', 'value', 'hasOwnProperty'), fc.string({ minLength: 1, maxLength: 12 }));

type Mutation = { op: 'delete' | 'set' | 'add'; pick: number; value: unknown; key: string };
const mutation: fc.Arbitrary<Mutation> = fc.record({ op: fc.constantFrom('delete', 'set', 'set', 'add'), pick: fc.nat(), value: garbage, key: fieldName });

/** Applies the mutations in turn (each to the result of the last); returns the paths it touched. */
function mutate(root: unknown, ms: readonly Mutation[]): string[] {
  const touched: string[] = [];
  for (const m of ms) {
    if (m.op === 'add') {
      const targets = objects(root);
      const t = targets[m.pick % targets.length];
      // An own property even for "__proto__", as JSON.parse makes it.
      Object.defineProperty(t.obj, m.key, { value: m.value, enumerable: true, writable: true, configurable: true });
      touched.push(t.path === '' ? m.key : `${t.path}.${m.key}`);
      continue;
    }
    const all = nodes(root);
    if (all.length === 0) continue;
    const n = all[m.pick % all.length];
    if (m.op === 'delete') {
      if (Array.isArray(n.parent)) n.parent.splice(n.key as number, 1);
      else delete (n.parent as Record<string, unknown>)[n.key as string];
    } else if (Array.isArray(n.parent)) n.parent[n.key as number] = m.value;
    else (n.parent as Record<string, unknown>)[n.key as string] = m.value;
    touched.push(n.path);
  }
  return touched;
}

const under = (a: string, b: string) => a === b || a.startsWith(`${b}.`) || a.startsWith(`${b}[`);
const parentOf = (p: string) => p.replace(/(\.[^.[\]]*|\[\d+\])$/, '');

/** A problem caused by one of the mutations: at, above or below a touched path, or beside it in the same object. */
function explained(p: Problem, touched: readonly string[]): boolean {
  return touched.some((m) => under(p.path, m) || under(m, p.path) || (parentOf(m) !== '' && under(p.path, parentOf(m))));
}

const FILE_LEVEL = /^(the file is not a JSON object|unknown file: |this is a Chrome trace)/;
const CASE_MS = 2000;

function expectNamedRefusal(e: unknown, label: string, touched: readonly string[], extra: (p: Problem) => boolean = () => false): void {
  expect(e).not.toBeInstanceOf(TypeError);
  expect(e).toBeInstanceOf(InvalidInputError);
  const err = e as InvalidInputError;
  expect(err.message.startsWith(`${label}: `)).toBe(true);
  expect(err.problems.length).toBeGreaterThan(0);
  for (const p of err.problems) {
    expect(p.path, p.message).not.toBe('');
    if (!explained(p, touched) && !extra(p)) throw new Error(`problem ${JSON.stringify(p)} is not explained by the mutations at ${touched.join(', ')}`);
  }
  // The message shows the first ten problems, each naming its path (or its request).
  for (const p of err.problems.slice(0, 10)) expect(err.message).toContain(p.message);
}

const lengthDist = (maxLen: number) =>
  fc.oneof(
    fc.record({ kind: fc.constant('fixed' as const), value: fc.integer({ min: 1, max: maxLen }) }),
    fc.tuple(fc.integer({ min: 1, max: maxLen }), fc.integer({ min: 1, max: maxLen })).map(([a, b]) => ({ kind: 'uniform' as const, min: Math.min(a, b), max: Math.max(a, b) })),
    fc
      .record({ median: fc.double({ min: 1, max: maxLen, noNaN: true }), sigma: fc.double({ min: 0, max: 5, noNaN: true }), a: fc.integer({ min: 1, max: maxLen }), b: fc.integer({ min: 1, max: maxLen }) })
      .map(({ median, sigma, a, b }) => ({ kind: 'lognormal' as const, median, sigma, min: Math.min(a, b), max: Math.max(a, b) })),
    fc.record({ kind: fc.constant('bimodal' as const), short: fc.integer({ min: 1, max: maxLen }), long: fc.integer({ min: 1, max: maxLen }), longFraction: fc.double({ min: 0, max: 1, noNaN: true }) }),
  );

const validWorkload: fc.Arbitrary<WorkloadSpec> = fc.record(
  {
    seed: fc.oneof(fc.integer(), fc.constantFrom(Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, 0)),
    numRequests: fc.integer({ min: 1, max: 30 }),
    arrival: fc.oneof(
      fc.constant({ kind: 'batch' as const }),
      fc.record({ kind: fc.constant('poisson' as const), ratePerS: fc.double({ min: 0.01, max: 1e6, noNaN: true }) }),
      fc.record({ kind: fc.constant('bursty' as const), ratePerS: fc.double({ min: 0.01, max: 1e6, noNaN: true }), burstiness: fc.double({ min: 0.001, max: 1000, noNaN: true }) }),
    ),
    promptTokens: lengthDist(40),
    outputTokens: lengthDist(200),
    vocabSize: fc.integer({ min: 4, max: 1000 }),
    sharedPrefix: fc.record({ fraction: fc.double({ min: 0, max: 1, noNaN: true }), numTokens: fc.integer({ min: 1, max: 24 }), numPrefixes: fc.integer({ min: 1, max: 4 }) }, { requiredKeys: ['fraction', 'numTokens'] }),
    tenants: fc.uniqueArray(
      fc.record(
        { name: fc.string({ minLength: 1, maxLength: 8 }), weight: fc.double({ min: 0.001, max: 1000, noNaN: true }), priority: fc.integer({ min: -5, max: 5 }), deadlineMs: fc.double({ min: 1, max: 1e6, noNaN: true }) },
        { requiredKeys: ['name', 'weight'] },
      ),
      { maxLength: 4, selector: (t) => t.name },
    ),
    parallelSampling: fc.record({ fraction: fc.double({ min: 0, max: 1, noNaN: true }), n: fc.integer({ min: 1, max: 16 }) }),
    temperature: fc.double({ min: 0, max: 10, noNaN: true }),
    predictionNoiseSigma: fc.double({ min: 0, max: 3, noNaN: true }),
  },
  { requiredKeys: ['seed', 'numRequests', 'arrival', 'promptTokens', 'outputTokens'] },
);

/** generateWorkload's output for an accepted spec: every request is one the engine takes. */
function expectGoodRequests(spec: WorkloadSpec, requests: RequestSpec[]): void {
  expect(requests).toHaveLength(spec.numRequests);
  let last = 0;
  for (const r of requests) {
    expect(validateRequestSpec(r, { vocabSize: spec.vocabSize ?? 512 })).toEqual([]);
    expect(r.arrivalMs! >= last).toBe(true);
    last = r.arrivalMs!;
  }
}

/** The budget rule names numRequests whatever changed the lengths. */
const budget = (p: Problem) => p.path === 'numRequests' && / could make \d+ prompt tokens/.test(p.message);

/** Values a hostile file puts anywhere. */
const HOSTILE: readonly unknown[] = [NaN, Infinity, -Infinity, 0, -0, -1, 0.5, 1e8, 1e300, -1e300, 2 ** 53, '', 'x', 'high', 'a'.repeat(1000), null, true, [], {}, [1, 'x'], { a: { b: [NaN] } }];

/** Every node of `base`, deleted, then set to each hostile value: one mutation per case. */
function* sweep(base: unknown): Generator<{ value: unknown; touched: string[] }> {
  const count = nodes(base).length;
  for (let i = 0; i < count; i++) {
    const deleted = structuredClone(base);
    yield { value: deleted, touched: mutate(deleted, [{ op: 'delete', pick: i, value: undefined, key: '' }]) };
    for (const h of HOSTILE) {
      const v = structuredClone(base);
      yield { value: v, touched: mutate(v, [{ op: 'set', pick: i, value: structuredClone(h), key: '' }]) };
    }
  }
}

describe('every field, every hostile value (exhaustive single mutations)', () => {
  const full: WorkloadSpec[] = [
    {
      seed: 3,
      numRequests: 6,
      vocabSize: 100,
      arrival: { kind: 'bursty', ratePerS: 20, burstiness: 0.2 },
      promptTokens: { kind: 'lognormal', median: 8, sigma: 0.7, min: 2, max: 30 },
      outputTokens: { kind: 'bimodal', short: 2, long: 40, longFraction: 0.3 },
      sharedPrefix: { fraction: 0.5, numTokens: 6, numPrefixes: 2 },
      tenants: [
        { name: 'gold', weight: 1, priority: 0, deadlineMs: 900 },
        { name: 'free', weight: 2, priority: 3, deadlineMs: 5000 },
      ],
      parallelSampling: { fraction: 0.5, n: 3 },
      temperature: 0.8,
      predictionNoiseSigma: 0.4,
    },
    { seed: 4, numRequests: 5, arrival: { kind: 'poisson', ratePerS: 3 }, promptTokens: { kind: 'fixed', value: 9 }, outputTokens: { kind: 'uniform', min: 1, max: 12 } },
    { seed: 5, numRequests: 4, arrival: { kind: 'batch' }, promptTokens: { kind: 'uniform', min: 1, max: 3 }, outputTokens: { kind: 'fixed', value: 2 } },
  ];

  it('workloads: accepted and generated, or refused naming the changed field', () => {
    let n = 0;
    for (const base of full) {
      for (const { value, touched } of sweep(base)) {
        n++;
        let direct: string | null = null;
        try {
          expectGoodRequests(value as WorkloadSpec, generateWorkload(value as WorkloadSpec));
        } catch (e) {
          expectNamedRefusal(e, 'workload', touched, budget);
          direct = (e as Error).message;
        }
        // The same file imported: the same verdict, word for word.
        let imported: string | null = null;
        try {
          parseImport(toJson(value));
        } catch (e) {
          imported = (e as Error).message;
        }
        if (!FILE_LEVEL.test(imported ?? '')) expect(imported).toBe(direct);
      }
    }
    // 3 bases: (1 deletion + 21 hostile values) per node.
    expect(n).toBe(22 * full.reduce((a, b) => a + nodes(b).length, 0));
    expect(n).toBeGreaterThan(1300);
  });

  it('traces: accepted with every request valid, or refused naming the request', () => {
    const base = trace([
      { requestId: 'a', promptTokenIds: [1, 5, 9], maxTokens: 4, n: 2, sampling: { temperature: 0.7, topP: 0.9, topK: 5, seed: 3 }, stopTokenIds: [2], priority: 1, tenant: 't', deadlineMs: 800, arrivalMs: 5, predictedOutputTokens: 3, cacheSalt: 's' },
      { requestId: 'b', promptTokenIds: [1], maxTokens: 1 },
    ]);
    let n = 0;
    for (const { value, touched } of sweep(base)) {
      n++;
      try {
        const requests = validateTrace(value);
        for (const r of requests) expect(validateRequestSpec(r)).toEqual([]);
      } catch (e) {
        expectNamedRefusal(e, 'trace', touched);
        for (const p of (e as InvalidInputError).problems) {
          const i = /^requests\[(\d+)\]/.exec(p.path);
          if (i) expect(p.message.startsWith(`request ${i[1]}: `)).toBe(true);
        }
      }
    }
    expect(n).toBeGreaterThan(500);
  });

  it('saved runs: the config and one event of each type, accepted or refused naming the field', async () => {
    const run = await recordedRun();
    const seen = new Set<string>();
    const events = run.events.filter((e) => !seen.has(e.type) && seen.add(e.type));
    const base = JSON.parse(toJson({ ...run, events })) as unknown;
    let n = 0;
    for (const { value, touched } of sweep(base)) {
      n++;
      try {
        const parsed = parseImport(toJson(value));
        if (parsed.kind !== 'run') throw new Error(parsed.kind);
        expect(validateEngineConfig(parsed.run.config)).toEqual([]);
      } catch (e) {
        expect(e).not.toBeInstanceOf(TypeError);
        if (FILE_LEVEL.test((e as Error).message)) expect(touched).toEqual(['format']);
        else expectNamedRefusal(e, 'saved run', touched);
      }
    }
    expect(n).toBeGreaterThan(1000);
  });
});

describe('fuzzing (seeded)', () => {
  it('workloads: 600 mutated specs, each accepted and generated, or refused naming the mutated path', () => {
    let accepted = 0;
    let refused = 0;
    fc.assert(
      fc.property(validWorkload, fc.array(mutation, { minLength: 1, maxLength: 3 }), (base, ms) => {
        // The unmutated spec is always accepted.
        expectGoodRequests(base, generateWorkload(base));
        const spec = structuredClone(base) as unknown as Record<string, unknown>;
        const touched = mutate(spec, ms);
        const t0 = performance.now();
        // Programmatic: generateWorkload runs the same check.
        let direct: unknown = null;
        try {
          expectGoodRequests(spec as unknown as WorkloadSpec, generateWorkload(spec as unknown as WorkloadSpec));
          accepted++;
        } catch (e) {
          direct = e;
          refused++;
          expectNamedRefusal(e, 'workload', touched, budget);
        }
        // Imported: the same verdict (JSON has no NaN or Infinity: they travel as {"$num": ...}).
        let imported: unknown = null;
        try {
          const parsed = parseImport(toJson(spec));
          expect(parsed.kind).toBe('workload');
          if (parsed.kind === 'workload') expectGoodRequests(parsed.workload, generateWorkload(parsed.workload));
        } catch (e) {
          imported = e;
          expect(e).not.toBeInstanceOf(TypeError);
          if (!FILE_LEVEL.test((e as Error).message)) expectNamedRefusal(e, 'workload', touched, budget);
          // A file is routed as a workload by numRequests or arrival; without either it is unknown.
          else expect(Object.hasOwn(spec, 'numRequests') && Object.hasOwn(spec, 'arrival')).toBe(false);
        }
        // What JSON cannot carry (undefined, -0, functions) aside, both ways agree.
        if (direct === null) expect(imported).toBe(null);
        expect(performance.now() - t0).toBeLessThan(CASE_MS);
      }),
      { seed: 20_251_011, numRuns: 600 },
    );
    // Both outcomes were exercised.
    expect(accepted).toBeGreaterThan(20);
    expect(refused).toBeGreaterThan(300);
  });

  const validRequest: fc.Arbitrary<RequestSpec> = fc.record(
    {
      promptTokenIds: fc.array(fc.integer({ min: 0, max: 600 }), { minLength: 1, maxLength: 12 }),
      maxTokens: fc.integer({ min: 1, max: 200 }),
      n: fc.integer({ min: 1, max: 4 }),
      sampling: fc.record({ temperature: fc.double({ min: 0, max: 2, noNaN: true }), topP: fc.double({ min: 0, max: 1, noNaN: true }), topK: fc.integer({ min: 0, max: 40 }), seed: fc.integer() }, { requiredKeys: [] }),
      stopTokenIds: fc.array(fc.integer({ min: 0, max: 600 }), { maxLength: 3 }),
      priority: fc.integer({ min: -9, max: 9 }),
      tenant: fc.string({ minLength: 1, maxLength: 8 }),
      deadlineMs: fc.double({ min: 1, max: 1e6, noNaN: true }),
      arrivalMs: fc.double({ min: 0, max: 1e6, noNaN: true }),
      predictedOutputTokens: fc.integer({ min: 1, max: 500 }),
      cacheSalt: fc.string({ maxLength: 8 }),
    },
    { requiredKeys: ['promptTokenIds', 'maxTokens'] },
  );
  const validTrace = fc.array(validRequest, { minLength: 1, maxLength: 12 }).map((rs) => trace(rs.map((r, i) => (i % 3 === 2 ? r : { requestId: `q${i}`, ...r }))));

  it('traces: 400 mutated traces, each accepted with every request valid, or refused naming the request', () => {
    let accepted = 0;
    let refused = 0;
    fc.assert(
      fc.property(validTrace, fc.array(mutation, { minLength: 1, maxLength: 3 }), fc.nat(), (base, ms, dup) => {
        expect(validateTrace(structuredClone(base))).toHaveLength(base.requests.length);
        const t = structuredClone(base) as ReturnType<typeof trace>;
        const touched = mutate(t, ms);
        // Now and then one request takes another's id.
        const rs = Array.isArray(t.requests) ? (t.requests as Record<string, unknown>[]) : [];
        const withIds = rs.filter((r) => typeof r === 'object' && r !== null && typeof r.requestId === 'string');
        if (dup % 4 === 0 && withIds.length >= 2) {
          const j = rs.indexOf(withIds[withIds.length - 1]);
          withIds[withIds.length - 1].requestId = withIds[0].requestId;
          touched.push(`requests[${j}].requestId`);
        }
        const t0 = performance.now();
        const repeats = (p: Problem) => / repeats request \d+'s$/.test(p.message);
        const check = (requests: RequestSpec[]) => {
          expect(requests.length).toBeLessThanOrEqual(MAX_TRACE_REQUESTS);
          for (const r of requests) expect(validateRequestSpec(r)).toEqual([]);
          const ids = requests.flatMap((r) => (r.requestId === undefined ? [] : [r.requestId]));
          expect(new Set(ids).size).toBe(ids.length);
        };
        let direct: unknown = null;
        try {
          check(validateTrace(t));
          accepted++;
        } catch (e) {
          direct = e;
          refused++;
          expectNamedRefusal(e, 'trace', touched, repeats);
          // A bad request is named by its index.
          for (const p of (e as InvalidInputError).problems) {
            const i = /^requests\[(\d+)\]/.exec(p.path);
            if (i) expect(p.message.startsWith(`request ${i[1]}: `)).toBe(true);
          }
        }
        let imported: unknown = null;
        try {
          const parsed = parseImport(toJson(t));
          expect(parsed.kind).toBe('trace');
          if (parsed.kind === 'trace') check(parsed.requests);
        } catch (e) {
          imported = e;
          expect(e).not.toBeInstanceOf(TypeError);
          if (FILE_LEVEL.test((e as Error).message)) expect(touched.some((m) => !m.startsWith('requests'))).toBe(true);
          else expectNamedRefusal(e, 'trace', touched, repeats);
        }
        if (direct === null) expect(imported).toBe(null);
        expect(performance.now() - t0).toBeLessThan(CASE_MS);
      }),
      { seed: 11_2025, numRuns: 400 },
    );
    expect(accepted).toBeGreaterThan(20);
    expect(refused).toBeGreaterThan(200);
  });

  it('saved runs: 200 mutated runs, each accepted with a valid config, or refused naming the path', async () => {
    const run = await recordedRun();
    const base = JSON.parse(serializeRun(run)) as Record<string, unknown>;
    let refused = 0;
    fc.assert(
      fc.property(fc.array(mutation, { minLength: 1, maxLength: 3 }), (ms) => {
        const data = structuredClone(base);
        const touched = mutate(data, ms);
        const t0 = performance.now();
        try {
          const parsed = parseImport(toJson(data));
          expect(parsed.kind).toBe('run');
          if (parsed.kind === 'run') expect(validateEngineConfig(parsed.run.config)).toEqual([]);
        } catch (e) {
          refused++;
          expect(e).not.toBeInstanceOf(TypeError);
          if (FILE_LEVEL.test((e as Error).message)) expect(touched.some((m) => m === 'format' || !/[.[]/.test(m))).toBe(true);
          else expectNamedRefusal(e, 'saved run', touched);
        }
        expect(performance.now() - t0).toBeLessThan(CASE_MS);
      }),
      { seed: 4242, numRuns: 200 },
    );
    expect(refused).toBeGreaterThan(50);
  });
});
