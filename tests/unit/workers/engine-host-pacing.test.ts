/**
 * A generated workload's arrivals are paced by the work done (src/serve/arrival-pacer.ts), on the
 * real model (CPU reference, whose steps take whatever the machine gives them): each request is
 * submitted at the first step boundary where the reference time of the steps run has reached its
 * offset (or, with nothing in the system, ahead of it), so two runs of one workload run the same
 * steps, however long each step took.
 */
import { describe, expect, it } from 'vitest';
import { loadKernelSources } from '../../../src/gpu/kernel-sources.node.ts';
import { generateWorkload, type WorkloadSpec } from '../../../src/engine/workload.ts';
import { REFERENCE_STEP } from '../../../src/serve/arrival-pacer.ts';
import { EngineHost } from '../../../workers/engine-host.ts';
import { builtin } from '../model/helpers.ts';

const workload: WorkloadSpec = {
  seed: 17,
  numRequests: 10,
  arrival: { kind: 'poisson', ratePerS: 25 },
  promptTokens: { kind: 'uniform', min: 8, max: 24 },
  outputTokens: { kind: 'uniform', min: 8, max: 40 },
};

async function run(): Promise<{ host: EngineHost; steps: string[] }> {
  const host = new EngineHost({ gpu: undefined, kernelSources: loadKernelSources() });
  await host.setModel(builtin());
  await host.pause();
  const ids = await host.runScenario({ workload, realPrompts: false });
  expect(ids).toHaveLength(10);
  // Held: only the requests due at once are in the engine; the rest count as not yet arrived.
  expect(host.snapshot()!.queues.pending).toBe(10);
  expect(host.status.arrivalPacing?.numHeld).toBeGreaterThan(0);
  host.resume();
  for (const end = Date.now() + 120_000; host.hasWork(); ) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
  const steps = host.eventLog().flatMap((e) => (e.type === 'step' ? [`${e.numSeqs}:${e.numPrefillTokens}:${e.numDecodeTokens}`] : []));
  return { host, steps };
}

describe('EngineHost: arrivals paced by the work done', () => {
  it('submits each request once the steps before it add up to its offset in reference time', async () => {
    const { host } = await run();
    const offsets = generateWorkload({ ...workload, vocabSize: 512 }).map((s) => s.arrivalMs ?? 0);
    let referenceMs = 0;
    /** Reference time before the last step (a request due by then would have come a step earlier). */
    let beforeLastStep = -Infinity;
    let engineMs = 0;
    let live = 0;
    let k = 0;
    for (const e of host.eventLog()) {
      if (e.type === 'step' && e.numSeqs > 0) {
        beforeLastStep = referenceMs;
        referenceMs += REFERENCE_STEP.baseMs + REFERENCE_STEP.perTokenMs * (e.numPrefillTokens + e.numDecodeTokens);
        engineMs += e.durationMs;
      } else if (e.type === 'submit') {
        const offset = offsets[k++];
        if (live === 0 && referenceMs < offset) {
          // Nothing in the system: handed over ahead of time, arriving that much later on the engine clock.
          expect(e.request.arrivalMs! - e.timeMs).toBeCloseTo(offset - referenceMs, 6);
          referenceMs = offset;
        } else {
          expect(referenceMs).toBeGreaterThanOrEqual(offset);
          expect(beforeLastStep).toBeLessThan(offset);
          expect(e.request.arrivalMs).toBe(e.timeMs);
        }
        live++;
      } else if (e.type === 'finished' || e.type === 'failed' || e.type === 'rejected') live--;
    }
    expect(k).toBe(10);
    const figures = host.status.arrivalPacing!;
    expect(figures.numHeld).toBe(0);
    expect(figures.engineMs).toBeCloseTo(engineMs, 6);
    await host.reset();
  });

  it('two runs of one workload run the same steps, whatever each step took', async () => {
    const a = await run();
    const b = await run();
    expect(a.steps.length).toBeGreaterThan(20);
    expect(b.steps).toEqual(a.steps);
    await a.host.reset();
    await b.host.reset();
  });
});
