/**
 * The simulated fleet's workload for `vllm bench serve`: the requests its spec plans (one pool's
 * model; a spike's window alone at the spike's rate), their text written on the lab's tokenizer at
 * the fleet's lengths (shared system prompts shared, nothing else), and the note and command
 * saying what is and is not replayed.
 */
import { describe, expect, it } from 'vitest';
import { fleetBenchBundleInput, fleetBenchWorkload, fleetModels } from '../../../src/export/fleet-vllm.ts';
import { vllmBenchBundle } from '../../../src/export/vllm-bench.ts';
import { benchTextPrompts } from '../../../src/serve/bench-prompts.ts';
import { fleetPreset } from '../../../src/sim/fleet/presets.ts';
import { planFleetWorkload } from '../../../src/sim/fleet/workload.ts';
import { builtin } from '../model/helpers.ts';

const loaded = builtin();
const { tokenizer } = loaded;
const specOf = (id: Parameters<typeof fleetPreset>[0], run = 0) => fleetPreset(id).runs[run].spec;

describe('a fleet workload as the bridge\'s request list', () => {
  it('p99-hunt: every planned request, at the fleet\'s lengths, its arrivals and Poisson rate; shared prefixes keyed', () => {
    const spec = specOf('p99-hunt');
    const plans = planFleetWorkload(spec.workload, () => 8192);
    const w = fleetBenchWorkload(spec);
    expect(w.model).toBe('llama-3-8b');
    expect(w.modelName).toBe('Llama-3 8B');
    expect(w.requests).toHaveLength(700);
    expect(w.numPlanned).toBe(700);
    expect(w.numOtherModels + w.numOutsideWindow).toBe(0);
    w.requests.forEach((r, i) => {
      expect(r.promptTokens).toBe(plans[i].promptTokens);
      expect(r.outputTokens).toBe(plans[i].outputTokens);
      expect(r.arrivalMs).toBe(plans[i].arrivalMs);
      expect(r.prefix?.key).toBe(plans[i].prefixId);
    });
    // The planted change is in the lengths: docs-search's prompts from 60 s on.
    const docs = plans.map((p, i) => [p, w.requests[i]] as const).filter(([p]) => p.tenant === 'docs-search');
    expect(docs.some(([p, r]) => p.arrivalMs >= 60_000 && r.promptTokens > 1000)).toBe(true);
    expect(w.arrival).toEqual({ kind: 'poisson', ratePerS: 4 });
    expect(w.arrivalWords).toContain('Poisson at 4 requests/s');
    expect(w.sharedPrefixes).toHaveLength(1);
    expect(w.sharedPrefixes[0]).toMatchObject({ tenant: 'support', numTokens: 768, numPrefixes: 2 });
    expect(w.sharedPrefixes[0].fraction).toBeCloseTo(plans.filter((p) => p.tenant === 'support').length / 700, 12);
    expect(w.notCarried.join(' ')).toContain('The tenants (chat, support, docs-search)');
    expect(w.notCarried.join(' ')).toContain('2 replica(s) of 1 GPU(s) behind a least-outstanding router');
  });

  it('spike: only the spike window, as its own dataset at the spike\'s rate, and it says what is not replayed', () => {
    const spec = specOf('spike', 1);
    const a = spec.workload.arrival;
    if (a.kind !== 'spike') throw new Error('the spike preset has a spike');
    const plans = planFleetWorkload(spec.workload, () => 8192);
    const inWindow = plans.filter((p) => p.arrivalMs >= a.atS * 1000 && p.arrivalMs < (a.atS + a.durationS) * 1000);
    const w = fleetBenchWorkload(spec);
    expect(w.requests).toHaveLength(inWindow.length);
    expect(w.numOutsideWindow).toBe(plans.length - inWindow.length);
    expect(w.numOutsideWindow).toBeGreaterThan(0);
    expect(w.window).toEqual({ fromS: 30, toS: 60 });
    expect(w.arrival).toEqual({ kind: 'poisson', ratePerS: 20 });
    // Arrivals relative to the window's start.
    w.requests.forEach((r, i) => expect(r.arrivalMs).toBeCloseTo(inWindow[i].arrivalMs - 30_000, 9));
    expect(w.arrivalWords).toMatch(/only the \d+ requests of the spike window \(30-60 s\), replayed at 20 requests\/s; the \d+ requests before and after it are not replayed/);
    expect(w.notCarried.join(' ')).toContain('an autoscaler');
  });

  it('two models: one pool\'s model at its share of the rate; the other model\'s requests counted as left out; an unknown model refused', () => {
    const spec = specOf('two-models');
    expect(fleetModels(spec)).toEqual(['llama-3-8b', 'llama-3-70b']);
    const plans = planFleetWorkload(spec.workload, () => 8192);
    const n70 = plans.filter((p) => p.model === 'llama-3-70b').length;
    const w = fleetBenchWorkload(spec, 'llama-3-70b');
    expect(w.requests).toHaveLength(n70);
    expect(w.numOtherModels).toBe(plans.length - n70);
    expect(w.modelName).toBe('Llama-3 70B');
    expect(w.arrival.kind === 'poisson' && w.arrival.ratePerS).toBeCloseTo((8 * n70) / plans.length, 3);
    expect(w.arrivalWords).toContain(`llama-3-70b's requests are ${n70} of its ${plans.length}, so they go at their share of 8/s`);
    expect(w.notCarried[0]).toContain(`${plans.length - n70} request(s) for the fleet's other model(s) (llama-3-8b)`);
    expect(() => fleetBenchWorkload(spec, 'gpt-5')).toThrow(/no pool serves model "gpt-5" \(the fleet's: llama-3-8b, llama-3-70b\)/);
  });
});

describe('the fleet workload written for vllm bench serve', () => {
  it('each line holds the fleet request\'s length on the lab tokenizer and its output; shared prompts share text, others do not', () => {
    const spec = specOf('p99-hunt');
    const w = fleetBenchWorkload(spec);
    // The first 120 requests (the text is the same function of each request whatever the count).
    const part = { ...w, requests: w.requests.slice(0, 120) };
    const bench = benchTextPrompts(part.requests, loaded);
    expect(bench.losses.lengthMismatches).toBe(0);
    const input = fleetBenchBundleInput(part, bench, { label: 'Fleet: hunt', baseName: 'servelab-fleet-test', seed: spec.workload.seed });
    const b = vllmBenchBundle(input);
    const lines = b.jsonl.trimEnd().split('\n').map((l) => JSON.parse(l) as { prompt: string; output_tokens: number });
    expect(lines).toHaveLength(120);
    const ids = lines.map((l) => tokenizer.encode(l.prompt, true, false));
    lines.forEach((l, i) => {
      expect(Object.keys(l)).toEqual(['prompt', 'output_tokens']);
      expect(ids[i].length).toBe(part.requests[i].promptTokens);
      expect(l.output_tokens).toBe(part.requests[i].outputTokens);
    });
    const common = (x: number[], y: number[]) => {
      let k = 0;
      while (k < x.length && k < y.length && x[k] === y[k]) k++;
      return k;
    };
    const withKey = (key: string) => part.requests.flatMap((r, i) => (r.prefix?.key === key ? [i] : []));
    const [a0, a1] = withKey('support/p0');
    const [b0] = withKey('support/p1');
    expect(a1).toBeDefined();
    // Two requests on one system prompt share (nearly) all of its 768 tokens; different system prompts, only their first few.
    expect(common(ids[a0], ids[a1])).toBeGreaterThanOrEqual(760);
    expect(common(ids[a0], ids[b0])).toBeLessThan(8);
    const plain = part.requests.flatMap((r, i) => (r.prefix ? [] : [i]));
    let most = 0;
    for (let x = 0; x < 20; x++) for (let y = x + 1; y < 20; y++) most = Math.max(most, common(ids[plain[x]], ids[plain[y]]));
    expect(most).toBeLessThan(8);
    // The note: the lengths are the fleet's Llama-3 counts on the lab's tokenizer, and will differ on the server's.
    expect(b.note).toContain(`whose lengths are the simulated fleet's Llama-3 8B token counts, each written exactly that long, BOS included, on the lab's ${bench.model} tokenizer (${bench.vocabSize} tokens)`);
    expect(b.note).toContain("A Llama-3 8B server's own tokenizer (128,256 tokens) counts the same text differently");
    expect(b.note).toContain('support: 2 prefix(es) of 768 tokens');
    expect(b.note).toContain('Poisson at 4 requests/s');
    expect(b.note).toContain("the Lab view's latency panel shows it (not the fleet view)");
    expect(b.command).toContain('--request-rate 4 --burstiness 1');
    expect(b.command.startsWith('vllm bench serve')).toBe(true);
  });

  it('spike: the command says in a comment that only the window is replayed, at the spike\'s rate', () => {
    const w = fleetBenchWorkload(specOf('spike', 0));
    const part = { ...w, requests: w.requests.slice(0, 5) };
    const b = vllmBenchBundle(fleetBenchBundleInput(part, benchTextPrompts(part.requests, loaded), { label: 'Fleet: spike', baseName: 'servelab-fleet-spike', seed: 7 }));
    const [comment, ...rest] = b.command.split('\n');
    expect(comment).toMatch(/^# The spike window only \(30-60 s of the fleet's clock, 5 requests\) at the spike's rate; the \d+ requests before and after it are not replayed\.$/);
    expect(rest[0]).toBe('vllm bench serve \\');
    expect(b.command).toContain('--request-rate 20 --burstiness 1');
    expect(b.note).toContain('vllm bench serve has one arrival rate per run');
    expect(() => fleetBenchBundleInput(w, benchTextPrompts(part.requests, loaded), { label: 'x', baseName: 'x', seed: 7 })).toThrow(RangeError);
    expect(() => benchTextPrompts([{ promptTokens: 0, outputTokens: 4, arrivalMs: 0 }], loaded)).toThrow(/promptTokens must be an integer >= 1/);
  });
});
