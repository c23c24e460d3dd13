/**
 * The engine's settings in one place: validateEngineConfig returns every problem, each naming its
 * key; validateLiveChanges refuses the settings fixed for an engine's life; the Scheduler
 * constructor and Engine.reconfigure throw exactly those messages.
 */
import { describe, expect, it } from 'vitest';
import {
  assertValidConfig,
  DEFAULT_HOST_SETTINGS,
  DEFAULT_SCHEDULER_CONFIG,
  fixedKeysChanged,
  LIVE_CONFIG_KEYS,
  validateEngineConfig,
  validateLiveChanges,
  type SchedulerConfig,
} from '../../../src/engine/config.ts';
import { VirtualClock } from '../../../src/engine/clock.ts';
import { Engine } from '../../../src/engine/engine.ts';
import { Scheduler } from '../../../src/engine/scheduler.ts';
import { FakeExecutor } from '../../../src/engine/testing/fakeExecutor.ts';

const withDefaults = (c: Partial<SchedulerConfig>): SchedulerConfig => ({ ...DEFAULT_SCHEDULER_CONFIG, ...c });

/** The message of what `fn` throws (it must throw a RangeError). */
function thrown(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(RangeError);
    return (e as Error).message;
  }
  throw new Error('expected a throw');
}

const newEngine = (config: Partial<SchedulerConfig> = {}) =>
  new Engine({ executor: new FakeExecutor({ stopTokenId: 1, stopEvery: 1000 }), clock: new VirtualClock(), config: { blockSize: 4, numGpuBlocks: 32, maxModelLen: 128, ...config } });

/** Settings fixed for an engine's life, with a valid other value each. */
const FIXED_CHANGES: Partial<SchedulerConfig> = {
  blockSize: 8,
  numGpuBlocks: 64,
  numCpuBlocks: 8,
  enablePrefixCaching: false,
  maxModelLen: 64,
  batching: 'static',
  kvPreallocation: 'max-length',
};

/** Settings that change live, with a valid other value each. */
const LIVE_CHANGES: Partial<SchedulerConfig> = {
  maxNumBatchedTokens: 64,
  maxNumSeqs: 3,
  enableChunkedPrefill: false,
  policy: 'sjf',
  preemptionMode: 'swap',
  fairShare: { prefillTokenWeight: 2, decodeTokenWeight: 1, tenantWeights: { a: 2 } },
  maxQueueLength: 10,
  tenantMaxInFlight: { a: 2 },
  requestTimeoutMs: 5000,
};

describe('validateEngineConfig', () => {
  it('finds nothing wrong with the defaults (and the host defaults on top)', () => {
    expect(validateEngineConfig(DEFAULT_SCHEDULER_CONFIG)).toEqual([]);
    expect(validateEngineConfig(withDefaults(DEFAULT_HOST_SETTINGS))).toEqual([]);
    expect(validateEngineConfig(withDefaults({ ...LIVE_CHANGES, maxNumBatchedTokens: 512 }))).toEqual([]);
    expect(validateEngineConfig(withDefaults(FIXED_CHANGES))).toEqual([]);
    expect(assertValidConfig(DEFAULT_SCHEDULER_CONFIG)).toBe(DEFAULT_SCHEDULER_CONFIG);
  });

  it('returns one problem per bad key, all at once, each message naming its key', () => {
    const problems = validateEngineConfig(
      withDefaults({ blockSize: 0, numCpuBlocks: -1, policy: 'x' as SchedulerConfig['policy'], enableChunkedPrefill: false, maxNumBatchedTokens: 100, maxModelLen: 512 }),
    );
    expect(problems.map((p) => p.key)).toEqual(['blockSize', 'numCpuBlocks', 'maxNumBatchedTokens', 'policy']);
    for (const p of problems) expect(p.message).toContain(p.key === 'maxNumBatchedTokens' ? 'maxNumBatchedTokens (100)' : p.key);
    expect(problems[0].message).toBe('blockSize must be a positive integer, got 0');
    expect(problems[1].message).toBe('numCpuBlocks must be an integer >= 0, got -1');
    expect(problems[2].message).toMatch(/without chunked prefill maxNumBatchedTokens \(100\) must be >= maxModelLen \(512\)/);
    expect(problems[3].message).toMatch(/unknown policy x \(one of fcfs, priority, edf, sjf, fair\)/);
  });

  it('checks every key', () => {
    const cases: [Partial<SchedulerConfig>, keyof SchedulerConfig, RegExp][] = [
      [{ blockSize: 1.5 }, 'blockSize', /blockSize must be a positive integer, got 1.5/],
      [{ blockSize: 512 }, 'blockSize', /blockSize must be at most 256, got 512/],
      [{ numGpuBlocks: 0 }, 'numGpuBlocks', /numGpuBlocks must be a positive integer/],
      [{ numCpuBlocks: 0.5 }, 'numCpuBlocks', /numCpuBlocks must be an integer >= 0/],
      [{ maxNumBatchedTokens: -4 }, 'maxNumBatchedTokens', /maxNumBatchedTokens must be a positive integer/],
      [{ maxNumSeqs: Number.NaN }, 'maxNumSeqs', /maxNumSeqs must be a positive integer, got NaN/],
      [{ maxModelLen: 0 }, 'maxModelLen', /maxModelLen must be a positive integer/],
      [{ preemptionMode: 'kill' as SchedulerConfig['preemptionMode'] }, 'preemptionMode', /unknown preemption mode kill/],
      [{ batching: 'dynamic' as SchedulerConfig['batching'] }, 'batching', /batching must be continuous or static, got dynamic/],
      [{ kvPreallocation: 'all' as SchedulerConfig['kvPreallocation'] }, 'kvPreallocation', /kvPreallocation must be none or max-length, got all/],
      [{ maxQueueLength: -1 }, 'maxQueueLength', /maxQueueLength must be an integer >= 0 or Infinity, got -1/],
      [{ maxQueueLength: 2.5 }, 'maxQueueLength', /maxQueueLength/],
      [{ requestTimeoutMs: 0 }, 'requestTimeoutMs', /requestTimeoutMs must be > 0/],
      [{ tenantMaxInFlight: { a: 2, b: 0 } }, 'tenantMaxInFlight', /tenant b's quota must be a positive integer, got 0/],
      [{ fairShare: { prefillTokenWeight: -1, decodeTokenWeight: 1, tenantWeights: {} } }, 'fairShare', /fair-share token weights must be finite numbers >= 0/],
      [{ fairShare: { prefillTokenWeight: 1, decodeTokenWeight: 1, tenantWeights: { a: 0 } } }, 'fairShare', /tenant a's fair-share weight must be a finite number > 0, got 0/],
      [{ fairShare: { prefillTokenWeight: 1, decodeTokenWeight: Infinity, tenantWeights: {} } }, 'fairShare', /finite numbers >= 0/],
      [{ maxNumSeq: 4 } as Partial<SchedulerConfig>, 'maxNumSeq' as keyof SchedulerConfig, /unknown setting "maxNumSeq" \(known: blockSize, /],
      [{ enablePrefixCaching: 'yes' as unknown as boolean }, 'enablePrefixCaching', /enablePrefixCaching must be true or false, got yes/],
      [{ enableChunkedPrefill: 1 as unknown as boolean }, 'enableChunkedPrefill', /enableChunkedPrefill must be true or false/],
    ];
    for (const [change, key, message] of cases) {
      const problems = validateEngineConfig(withDefaults(change));
      expect(problems, JSON.stringify(change)).toHaveLength(1);
      expect(problems[0].key).toBe(key);
      expect(problems[0].message).toMatch(message);
    }
    // Infinity is allowed where it means "no limit".
    expect(validateEngineConfig(withDefaults({ maxQueueLength: Infinity, requestTimeoutMs: Infinity }))).toEqual([]);
    // With chunked prefill a small budget is fine.
    expect(validateEngineConfig(withDefaults({ maxNumBatchedTokens: 16, enableChunkedPrefill: true }))).toEqual([]);
  });

  it('is pure: it does not change its argument', () => {
    const c = withDefaults({ blockSize: 0 });
    const copy = structuredClone(c);
    validateEngineConfig(c);
    expect(c).toEqual(copy);
  });
});

describe('validateLiveChanges', () => {
  it('refuses the fixed settings, naming each one it would change', () => {
    for (const [key, value] of Object.entries(FIXED_CHANGES) as [keyof SchedulerConfig, unknown][]) {
      expect(LIVE_CONFIG_KEYS.has(key)).toBe(false);
      expect(thrown(() => validateLiveChanges(DEFAULT_SCHEDULER_CONFIG, { [key]: value }))).toBe(
        `${key} cannot change while the engine runs; start a new engine`,
      );
    }
    const message = thrown(() => validateLiveChanges(DEFAULT_SCHEDULER_CONFIG, { blockSize: 8, policy: 'sjf', numGpuBlocks: 10 }));
    expect(message).toBe('blockSize, numGpuBlocks cannot change while the engine runs; start a new engine');
    expect(fixedKeysChanged(DEFAULT_SCHEDULER_CONFIG, { blockSize: 8, policy: 'sjf', numGpuBlocks: 10 })).toEqual(['blockSize', 'numGpuBlocks']);
  });

  it('accepts the live settings (and a fixed one given its current value), returning the new config', () => {
    const current = structuredClone(DEFAULT_SCHEDULER_CONFIG);
    for (const [key, value] of Object.entries(LIVE_CHANGES) as [keyof SchedulerConfig, unknown][]) {
      expect(LIVE_CONFIG_KEYS.has(key)).toBe(true);
      expect(validateLiveChanges(current, { [key]: value })).toEqual({ ...current, [key]: value });
    }
    const all = validateLiveChanges(current, { ...LIVE_CHANGES, maxNumBatchedTokens: 512, blockSize: current.blockSize });
    expect(all).toEqual({ ...current, ...LIVE_CHANGES, maxNumBatchedTokens: 512 });
    expect(current).toEqual(DEFAULT_SCHEDULER_CONFIG); // not touched
  });

  it('a live change that makes the config invalid is refused with its problems', () => {
    expect(thrown(() => validateLiveChanges(DEFAULT_SCHEDULER_CONFIG, { maxNumSeqs: 0, policy: 'y' as SchedulerConfig['policy'] }))).toBe(
      'maxNumSeqs must be a positive integer, got 0; unknown policy y (one of fcfs, priority, edf, sjf, fair)',
    );
    expect(thrown(() => validateLiveChanges(DEFAULT_SCHEDULER_CONFIG, { enableChunkedPrefill: false, maxNumBatchedTokens: 256 }))).toMatch(
      /maxNumBatchedTokens \(256\) must be >= maxModelLen \(512\)/,
    );
  });
});

describe('the scheduler and the engine throw the validation messages', () => {
  const bad: Partial<SchedulerConfig> = { blockSize: 0, numCpuBlocks: -1, policy: 'x' as SchedulerConfig['policy'], enableChunkedPrefill: false, maxNumBatchedTokens: 100, maxModelLen: 512 };
  const expected = validateEngineConfig(withDefaults(bad))
    .map((p) => p.message)
    .join('; ');

  it('the Scheduler constructor and the Engine constructor refuse a bad config with every problem', () => {
    expect(expected.split('; ')).toHaveLength(4);
    expect(thrown(() => new Scheduler(bad))).toBe(expected);
    expect(thrown(() => newEngine(bad))).toBe(expected);
    expect(() => new Scheduler({})).not.toThrow();
  });

  it('Engine.reconfigure and Scheduler.reconfigure refuse fixed and invalid changes with the same messages, changing nothing', () => {
    const engine = newEngine();
    const scheduler = new Scheduler({ blockSize: 4, numGpuBlocks: 32, maxModelLen: 128 });
    const before = structuredClone(engine.config);
    const changes: Partial<SchedulerConfig>[] = [
      { blockSize: 8 },
      { numGpuBlocks: 64, numCpuBlocks: 3 },
      { maxModelLen: 64, policy: 'sjf' },
      { maxNumSeqs: 0 },
      { policy: 'x' as SchedulerConfig['policy'], maxNumBatchedTokens: -1 },
      { enableChunkedPrefill: false, maxNumBatchedTokens: 64 },
    ];
    for (const change of changes) {
      const want = thrown(() => validateLiveChanges(engine.config, change));
      expect(thrown(() => engine.reconfigure(change))).toBe(want);
      expect(thrown(() => scheduler.reconfigure(change))).toBe(want);
      expect(engine.config).toEqual(before);
      expect(scheduler.config).toEqual(before);
    }
    expect(thrown(() => engine.reconfigure({ blockSize: 8 }))).toBe('blockSize cannot change while the engine runs; start a new engine');
    engine.reconfigure({ policy: 'priority', maxNumSeqs: 4 });
    expect(engine.config).toMatchObject({ policy: 'priority', maxNumSeqs: 4 });
  });
});

describe('validateEngineConfig with hostile values', () => {
  it('names objects and arrays it cannot print instead of throwing', () => {
    const odd = { toString: 1 } as unknown;
    const problems = validateEngineConfig({ ...DEFAULT_SCHEDULER_CONFIG, policy: odd as never, maxNumSeqs: [] as never, batching: odd as never });
    expect(problems.map((p) => p.message)).toEqual(
      expect.arrayContaining([expect.stringMatching(/maxNumSeqs must be a positive integer, got an array/), expect.stringMatching(/unknown policy an object/), expect.stringMatching(/batching must be continuous or static, got an object/)]),
    );
  });
});
