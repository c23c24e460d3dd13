/**
 * RunLoop with a fake target whose steps land when the test says so: one step at a time, ever;
 * pause() resolves once the step in flight has landed; single steps while paused; slow motion;
 * errors; attaching another target (or none).
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { RunLoop, type RunLoopTarget } from '../../../src/serve/run-loop.ts';

/** A target whose step() returns a promise the test resolves (or rejects) with land()/fail(). */
class FakeTarget implements RunLoopTarget {
  /** Steps started. */
  numSteps = 0;
  /** Steps in flight now, and the most ever at once. */
  active = 0;
  maxActive = 0;
  work = true;
  /** What msUntilNextArrival() answers. */
  nextArrivalMs: number | null = null;
  /** Steps land at once (after a microtask) with this result, instead of waiting for land(). */
  autoLand: boolean | null = null;
  private readonly waiting: { resolve: (ran: boolean) => void; reject: (e: Error) => void }[] = [];

  step(): Promise<boolean> {
    this.numSteps++;
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    if (this.autoLand !== null) {
      const ran = this.autoLand;
      return Promise.resolve().then(() => {
        this.active--;
        return ran;
      });
    }
    return new Promise<boolean>((resolve, reject) => this.waiting.push({ resolve, reject }));
  }

  hasWork(): boolean {
    return this.work;
  }

  msUntilNextArrival(): number | null {
    return this.nextArrivalMs;
  }

  get inFlight(): number {
    return this.waiting.length;
  }

  /** Lands the step in flight. */
  land(ran = true): void {
    const w = this.waiting.shift();
    if (!w) throw new Error('no step in flight');
    this.active--;
    w.resolve(ran);
  }

  fail(e: Error): void {
    const w = this.waiting.shift();
    if (!w) throw new Error('no step in flight');
    this.active--;
    w.reject(e);
  }
}

/** Lets pending promise callbacks and zero-delay timers run (real timers). */
async function settle(rounds = 5): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((r) => setTimeout(r, 0));
}

async function until(cond: () => boolean, timeoutMs = 2000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 1));
  }
}

function newLoop() {
  const errors: Error[] = [];
  let numOnStep = 0;
  const loop = new RunLoop({ onError: (e) => errors.push(e), onStep: () => numOnStep++ });
  return { loop, errors, onSteps: () => numOnStep };
}

describe('RunLoop: pause and single steps', () => {
  it('pause() resolves only after the step in flight lands, and no step starts while paused', async () => {
    const { loop, onSteps } = newLoop();
    const t = new FakeTarget();
    await loop.attach(t);
    await until(() => t.inFlight === 1);
    let paused = false;
    const pausing = loop.pause().then(() => (paused = true));
    expect(loop.paused).toBe(true);
    await settle();
    expect(paused).toBe(false); // the step is still in flight
    t.land();
    await pausing;
    expect(paused).toBe(true);
    expect(t.numSteps).toBe(1);
    await settle(10);
    expect(t.numSteps).toBe(1);
    expect(onSteps()).toBe(1);
  });

  it('after pause, each stepOnce() runs exactly one step, two quick calls run two, never at once', async () => {
    const { loop } = newLoop();
    const t = new FakeTarget();
    await loop.attach(t);
    await until(() => t.inFlight === 1);
    const pausing = loop.pause();
    t.land();
    await pausing;
    expect(t.numSteps).toBe(1);

    const a = loop.stepOnce();
    const b = loop.stepOnce();
    await settle();
    expect(t.numSteps).toBe(2); // the second waits for the first
    expect(t.active).toBe(1);
    t.land();
    await expect(a).resolves.toBe(true);
    await until(() => t.inFlight === 1);
    expect(t.numSteps).toBe(3);
    t.land(false);
    await expect(b).resolves.toBe(false); // it says whether the step ran
    await settle(10);
    expect(t.numSteps).toBe(3);
    expect(t.maxActive).toBe(1);
    expect(loop.paused).toBe(true);
  });

  it('a single step asked for while a step is in flight runs after it, not beside it', async () => {
    const { loop } = newLoop();
    const t = new FakeTarget();
    await loop.attach(t);
    await until(() => t.inFlight === 1);
    const single = loop.stepOnce();
    void loop.pause();
    await settle();
    expect(t.numSteps).toBe(1);
    t.land();
    await until(() => t.inFlight === 1);
    expect(t.numSteps).toBe(2);
    t.land();
    await expect(single).resolves.toBe(true);
    await settle(10);
    expect(t.numSteps).toBe(2);
    expect(t.maxActive).toBe(1);
  });

  it('stepOnce() and the playing loop never step at once', async () => {
    const { loop } = newLoop();
    const t = new FakeTarget();
    await loop.attach(t);
    const singles: Promise<boolean>[] = [];
    for (let i = 0; i < 20; i++) {
      await until(() => t.inFlight === 1);
      if (i % 3 === 0) singles.push(loop.stepOnce(), loop.stepOnce());
      await settle(1);
      expect(t.active).toBe(1);
      t.land();
    }
    await loop.attach(null);
    while (t.inFlight > 0) t.land();
    await Promise.all(singles);
    expect(t.maxActive).toBe(1);
    expect(t.numSteps).toBeGreaterThanOrEqual(20);
  });

  it('resume() continues stepping', async () => {
    const { loop } = newLoop();
    const t = new FakeTarget();
    t.autoLand = true;
    await loop.attach(t);
    await until(() => t.numSteps >= 3);
    await loop.pause();
    const atPause = t.numSteps;
    await settle(10);
    expect(t.numSteps).toBe(atPause);
    loop.resume();
    expect(loop.paused).toBe(false);
    await until(() => t.numSteps >= atPause + 3);
    await loop.attach(null);
    expect(t.maxActive).toBe(1);
  });

  it('stops when the target has no work and starts again on kick()', async () => {
    const { loop } = newLoop();
    const t = new FakeTarget();
    t.autoLand = true;
    t.work = false;
    await loop.attach(t);
    await settle(10);
    expect(t.numSteps).toBe(0);
    t.work = true;
    loop.kick();
    await until(() => t.numSteps >= 2);
    t.work = false;
    await settle(10);
    const n = t.numSteps;
    await settle(10);
    expect(t.numSteps).toBe(n);
    t.work = true;
    loop.kick();
    await until(() => t.numSteps > n);
    await loop.attach(null);
  });

  it('work that arrives as the loop finds none is not lost', async () => {
    const { loop } = newLoop();
    const t = new FakeTarget();
    t.autoLand = true;
    let idleChecks = 0;
    // The first time the loop finds no work, new work arrives (with its kick) at that very moment.
    t.hasWork = () => {
      if (t.numSteps < 2) return true;
      if (idleChecks++ === 0) {
        queueMicrotask(() => {
          t.hasWork = () => true;
          loop.kick();
        });
        return false;
      }
      return true;
    };
    await loop.attach(t);
    await until(() => t.numSteps >= 5, 500);
    await loop.attach(null);
  });
});

describe('RunLoop: slow motion and idle waits (fake timers)', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  const fakeTimers = () => vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance', 'Date'] });

  it('with a least interval between steps, the loop waits between them', async () => {
    fakeTimers();
    const { loop } = newLoop();
    const t = new FakeTarget();
    t.autoLand = true;
    loop.setMinStepInterval(100);
    expect(loop.minStepIntervalMs).toBe(100);
    await loop.attach(t);
    await vi.advanceTimersByTimeAsync(0);
    expect(t.numSteps).toBe(1);
    await vi.advanceTimersByTimeAsync(60);
    expect(t.numSteps).toBe(1);
    await vi.advanceTimersByTimeAsync(40);
    expect(t.numSteps).toBe(2);
    await vi.advanceTimersByTimeAsync(300);
    expect(t.numSteps).toBe(5);
    // Back to full speed: the change wakes the loop at once.
    loop.setMinStepInterval(0);
    await vi.advanceTimersByTimeAsync(0);
    expect(t.numSteps).toBeGreaterThan(5);
    await loop.attach(null);
  });

  it('inputs (kick) do not cut the least interval short', async () => {
    fakeTimers();
    const { loop } = newLoop();
    const t = new FakeTarget();
    t.autoLand = true;
    loop.setMinStepInterval(100);
    await loop.attach(t);
    await vi.advanceTimersByTimeAsync(0);
    expect(t.numSteps).toBe(1);
    for (let i = 0; i < 5; i++) {
      await vi.advanceTimersByTimeAsync(10);
      loop.kick();
    }
    await vi.advanceTimersByTimeAsync(10);
    expect(t.numSteps).toBe(1);
    await vi.advanceTimersByTimeAsync(40);
    expect(t.numSteps).toBe(2);
    await loop.attach(null);
  });

  it('a step that finds nothing runnable sleeps until the next arrival (or a kick)', async () => {
    fakeTimers();
    const { loop } = newLoop();
    const t = new FakeTarget();
    t.autoLand = false; // nothing runnable yet
    t.nextArrivalMs = 500;
    await loop.attach(t);
    await vi.advanceTimersByTimeAsync(0);
    expect(t.numSteps).toBe(1);
    await vi.advanceTimersByTimeAsync(400);
    expect(t.numSteps).toBe(1);
    await vi.advanceTimersByTimeAsync(100);
    expect(t.numSteps).toBe(2);
    loop.kick(); // a submission: look again now
    await vi.advanceTimersByTimeAsync(0);
    expect(t.numSteps).toBe(3);
    await loop.attach(null);
  });

  it('the interval must be between 0 and 10000 ms', () => {
    const { loop } = newLoop();
    for (const bad of [-1, 10_001, Number.NaN]) expect(() => loop.setMinStepInterval(bad)).toThrow(RangeError);
    expect(loop.minStepIntervalMs).toBe(0);
  });
});

describe('RunLoop: errors and targets', () => {
  it('onError gets a step error; the loop stops and starts again after attach(newTarget)', async () => {
    const { loop, errors } = newLoop();
    const t = new FakeTarget();
    await loop.attach(t);
    await until(() => t.inFlight === 1);
    t.fail(new Error('device lost'));
    await until(() => errors.length === 1);
    expect(errors[0].message).toBe('device lost');
    await settle(10);
    expect(t.numSteps).toBe(1); // the loop did not go on with the broken target
    const t2 = new FakeTarget();
    await loop.attach(t2);
    await until(() => t2.inFlight === 1);
    t2.land();
    await until(() => t2.inFlight === 1);
    expect(t2.numSteps).toBe(2);
    expect(t.numSteps).toBe(1);
    const pausing = loop.pause();
    t2.land();
    await pausing;
    expect(errors).toHaveLength(1);
  });

  it('a single step that throws rejects stepOnce() (the loop is still usable)', async () => {
    const { loop } = newLoop();
    const t = new FakeTarget();
    await loop.attach(t);
    await until(() => t.inFlight === 1);
    const pausing = loop.pause();
    t.land();
    await pausing;
    const single = loop.stepOnce();
    await until(() => t.inFlight === 1);
    t.fail(new Error('boom'));
    await expect(single).rejects.toThrow('boom');
    const again = loop.stepOnce();
    await until(() => t.inFlight === 1);
    t.land();
    await expect(again).resolves.toBe(true);
  });

  it('attach(null) waits for the step in flight, then stops stepping', async () => {
    const { loop } = newLoop();
    const t = new FakeTarget();
    await loop.attach(t);
    await until(() => t.inFlight === 1);
    let detached = false;
    const detaching = loop.attach(null).then(() => (detached = true));
    await settle();
    expect(detached).toBe(false);
    t.land();
    await detaching;
    await settle(10);
    expect(t.numSteps).toBe(1);
    await expect(loop.stepOnce()).resolves.toBe(false); // nothing to step
    loop.kick();
    loop.resume();
    await settle(10);
    expect(t.numSteps).toBe(1);
  });

  it('attach(other) moves stepping to the other target only', async () => {
    const { loop } = newLoop();
    const a = new FakeTarget();
    const b = new FakeTarget();
    a.autoLand = true;
    b.autoLand = true;
    await loop.attach(a);
    await until(() => a.numSteps >= 2);
    await loop.attach(b);
    const n = a.numSteps;
    await until(() => b.numSteps >= 3);
    expect(a.numSteps).toBe(n);
    await loop.attach(null);
  });
});
