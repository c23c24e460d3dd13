/**
 * The bridge to real vLLM, inward: the results file `vllm bench serve --save-result --save-detailed`
 * writes (tests/fixtures/vllm-bench-serve-result.json, shaped as vllm/benchmarks/serve.py writes it;
 * see tests/fixtures/README.md) read into per-request latencies and P50/P90/P99 that agree with
 * vLLM's own summary; every wrong file refused whole, with each problem named.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseVllmBenchResult, vllmDateWords, VllmResultError } from '../../../src/export/vllm-results.ts';
import { fixturesDir } from '../model/helpers.ts';

const text = readFileSync(resolve(fixturesDir, 'vllm-bench-serve-result.json'), 'utf8');
const fixture = (): Record<string, unknown> => JSON.parse(text) as Record<string, unknown>;

/** The VllmResultError `json` gets (failing when it parses, or throws anything else). */
function refused(json: string): VllmResultError {
  try {
    parseVllmBenchResult(json);
  } catch (e) {
    if (e instanceof VllmResultError) return e;
    throw e;
  }
  throw new Error('the file was accepted');
}

describe('reading vllm bench serve results', () => {
  it('reads the run and each request', () => {
    const run = parseVllmBenchResult(text);
    expect(run.modelId).toBe('meta-llama/Llama-2-7b-hf');
    expect(run.tokenizerId).toBe('meta-llama/Llama-2-7b-hf');
    expect(vllmDateWords(run.date)).toBe('2026-12-01 09:15:12');
    expect(run.requestRate).toBe(4);
    expect(run.burstiness).toBe(1);
    expect(run.numPrompts).toBe(8);
    expect(run.requests).toHaveLength(8);
    expect([run.completed, run.failed]).toEqual([7, 1]);
    expect(run.e2eSource).toBe('latencies');
    const failed = run.requests.filter((r) => r.error !== '');
    expect(failed).toHaveLength(1);
    expect(failed[0].error).toMatch(/ServerDisconnectedError/);
    const f = fixture();
    expect(run.requests[0].ttftMs).toBeCloseTo((f.ttfts as number[])[0] * 1000, 9);
    expect(run.requests[0].itlMs).toHaveLength((f.output_lens as number[])[0] - 1);
  });

  it("gives the percentiles vLLM's own summary gives (failed requests left out)", () => {
    const run = parseVllmBenchResult(text);
    const f = fixture();
    const names = { ttft: 'ttft', tpot: 'tpot', itl: 'itl', e2e: 'e2el' } as const;
    for (const [ours, theirs] of Object.entries(names) as [keyof typeof names, string][]) {
      for (const p of ['p50', 'p90', 'p99'] as const) expect(run.stats[ours][p]).toBeCloseTo(f[`${p}_${theirs}_ms`] as number, 6);
    }
    expect(run.stats.ttft.count).toBe(7);
    expect(run.stats.itl.count).toBe((f.output_lens as number[]).reduce((a, n) => a + Math.max(0, n - 1), 0));
    const inputs = (f.input_lens as number[]).filter((_, i) => (f.errors as string[])[i] === '');
    expect(run.meanInputLen).toBeCloseTo(inputs.reduce((a, b) => a + b, 0) / inputs.length, 9);
  });

  it('takes E2E as TTFT + ITLs from a file of an earlier version (no latencies)', () => {
    const f = fixture();
    delete f.latencies;
    delete f.start_times;
    delete f.failed;
    const run = parseVllmBenchResult(JSON.stringify(f));
    expect(run.e2eSource).toBe('ttft + itls');
    expect(run.failed).toBe(1);
    // The fixture's latencies are TTFT + ITLs + 4 µs of client overhead.
    expect(Math.abs(run.stats.e2e.p50 - (fixture().p50_e2el_ms as number))).toBeLessThan(0.01);
  });

  it('reads a run that sent fewer requests than --num-prompts asked (--no-oversample on a short dataset)', () => {
    const f = fixture();
    f.num_prompts = 1000;
    const run = parseVllmBenchResult(JSON.stringify(f));
    expect(run.numPrompts).toBe(1000);
    expect(run.requests).toHaveLength(8);
  });

  it("reads Python's bare NaN and Infinity in summary fields", () => {
    const run = parseVllmBenchResult(text.replace(/"std_itl_ms": [^,]+,/, '"std_itl_ms": NaN,').replace('"request_rate": 4.0', '"request_rate": "inf"'));
    expect(run.requestRate).toBe(Infinity);
  });
});

describe('refusing a wrong file', () => {
  it('not JSON', () => {
    expect(refused('{"date": ').message).toMatch(/^vllm bench serve results: not JSON/);
  });

  it('the dataset instead of the results', () => {
    expect(refused('{"prompt": "Once upon a time", "output_tokens": 16}\n{"prompt": "Tom", "output_tokens": 8}\n').message).toMatch(/a benchmark dataset .* not the results of a run/);
  });

  it('several runs appended to one file', () => {
    expect(refused(`${text}\n${text}`).message).toMatch(/--append-result/);
  });

  it("servelab's own files", () => {
    expect(refused(JSON.stringify({ format: 'servelab-trace', version: 1, requests: [] })).message).toMatch(/servelab request trace/);
    expect(refused(JSON.stringify({ seed: 1, numRequests: 4, arrival: { kind: 'batch' } })).message).toMatch(/servelab workload/);
  });

  it('a run saved without --save-detailed', () => {
    const f = fixture();
    for (const k of ['input_lens', 'output_lens', 'ttfts', 'itls', 'errors', 'generated_texts', 'start_times']) delete f[k];
    expect(refused(JSON.stringify(f)).message).toMatch(/saved without --save-detailed; run it again with --save-result --save-detailed/);
  });

  it('not an object', () => {
    expect(refused('[1, 2]').message).toMatch(/a JSON object, got an array/);
  });

  it('names every problem at once', () => {
    const f = fixture();
    (f.ttfts as unknown[])[2] = 'fast';
    (f.itls as unknown[])[4] = 0.006;
    (f.output_lens as unknown[]).pop();
    f.request_rate = -1;
    delete f.model_id;
    const e = refused(JSON.stringify(f));
    expect(e.problems).toEqual(
      expect.arrayContaining([
        'model_id must be the served model\'s name, got undefined',
        'request_rate must be a number > 0 or "inf", got -1',
        'output_lens has 7 entries but ttfts has 8: one entry per request in each',
      ]),
    );
    const g = fixture();
    (g.ttfts as unknown[])[2] = 'fast';
    (g.itls as unknown[])[4] = 0.006;
    const bad = refused(JSON.stringify(g));
    expect(bad.problems).toEqual([
      'ttfts[2] must each be a number of seconds >= 0, got "fast" at 2',
      'itls[4] must each be a list of numbers of seconds >= 0, got 0.006 at 4',
    ]);
  });

  it('a run where every request failed', () => {
    const f = fixture();
    f.errors = (f.errors as string[]).map(() => 'Server disconnected');
    expect(refused(JSON.stringify(f)).message).toMatch(/every request failed \(8\)/);
  });
});
