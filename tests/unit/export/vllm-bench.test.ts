/**
 * The bridge to real vLLM, outward: the lab's workloads as vLLM's custom dataset for `vllm bench
 * serve` (one `{"prompt", "output_tokens"}` line per request, as vllm/benchmarks/datasets.py's
 * CustomDataset reads it), prompts of exactly the lab's token lengths on the lab's tokenizer, shared
 * prefixes still shared, and the command line with the arrival process vLLM's benchmark means.
 */
import { describe, expect, it } from 'vitest';
import { generateWorkload, type WorkloadSpec } from '../../../src/engine/workload.ts';
import { benchPrompts, fitPromptText } from '../../../src/serve/bench-prompts.ts';
import { scenarioSpecs } from '../../../src/serve/requests.ts';
import { storyText } from '../../../src/serve/story-prompts.ts';
import { arrivalFlags, benchServeCommand, customDatasetJsonl, labBenchBundleInput, shellWord, vllmBenchBundle, type BenchBundleInput } from '../../../src/export/vllm-bench.ts';
import { SCENARIOS } from '../../../src/ui/lab/scenarios.ts';
import { builtin } from '../model/helpers.ts';

const loaded = builtin();
const { tokenizer } = loaded;

/** The requests as the lab's engine runs them (the worker's runScenario). */
const labSpecs = (workload: WorkloadSpec) => {
  let k = 0;
  return scenarioSpecs({ workload }, loaded, () => `r${k++}`, 0);
};

function bundleOf(workload: WorkloadSpec, label = 'test'): ReturnType<typeof vllmBenchBundle> & { input: BenchBundleInput } {
  const bench = benchPrompts(workload, loaded);
  const input = labBenchBundleInput(label, workload, bench, 'servelab-test');
  return { ...vllmBenchBundle(input), input };
}

/** The command line as the shell splits it (backslash-newlines joined, single quotes undone). */
function argv(command: string): string[] {
  const out: string[] = [];
  const re = /'((?:[^']|'\\'')*)'|"([^"]*)"|(\S+)/g;
  for (const m of command.replace(/\\\n/g, ' ').matchAll(re)) out.push(m[1] !== undefined ? m[1].replace(/'\\''/g, "'") : (m[2] ?? m[3]));
  return out;
}

const flag = (args: string[], name: string): string | undefined => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};

describe('the lab workloads as vLLM custom datasets', () => {
  it.each(SCENARIOS.map((s) => [s.id, s] as const))('%s: every line parses, has the documented fields, and holds the lab request it replaces', (_id, s) => {
    const specs = labSpecs(s.workload);
    const b = bundleOf(s.workload, s.title);
    expect(b.jsonl.endsWith('\n')).toBe(true);
    const lines = b.jsonl.slice(0, -1).split('\n');
    expect(lines).toHaveLength(specs.length);
    lines.forEach((text, i) => {
      const line = JSON.parse(text) as Record<string, unknown>;
      // CustomDataset: a "prompt" column (text), "output_tokens" an integer (--custom-output-len -1).
      expect(Object.keys(line)).toEqual(['prompt', 'output_tokens']);
      expect(typeof line.prompt).toBe('string');
      expect(Number.isInteger(line.output_tokens)).toBe(true);
      expect(line.output_tokens).toBe(specs[i].maxTokens);
      // vLLM counts len(tokenizer(prompt).input_ids), BOS included: the lab's prompt length, on the lab's tokenizer.
      expect(tokenizer.encode(line.prompt as string, true, false).length).toBe(specs[i].promptTokenIds.length);
    });
    expect(b.input.losses.lengthMismatches).toBe(0);
  });

  it('writes the lab prompts themselves where their text re-encodes to the same tokens', () => {
    const s = SCENARIOS.find((x) => x.id === 'short-vs-long')!;
    const specs = labSpecs(s.workload);
    const prompts = benchPrompts(s.workload, loaded).prompts;
    const same = prompts.filter((p, i) => JSON.stringify(tokenizer.encode(p.prompt, true, false)) === JSON.stringify(specs[i].promptTokenIds)).length;
    expect(same).toBe(prompts.length);
  });

  it('keeps shared prefixes shared: the same text prefix wherever the lab shares the system prompt tokens', () => {
    const s = SCENARIOS.find((x) => x.id === 'prefix-caching')!;
    const numTokens = s.workload.sharedPrefix!.numTokens;
    const specs = labSpecs(s.workload);
    const prompts = benchPrompts(s.workload, loaded).prompts;
    const byPrefix = new Map<string, string[]>();
    specs.forEach((spec, i) => {
      if (spec.promptTokenIds.length <= numTokens) return;
      const key = spec.promptTokenIds.slice(0, numTokens).join(',');
      byPrefix.set(key, [...(byPrefix.get(key) ?? []), prompts[i].prompt]);
    });
    const shared = [...byPrefix.entries()].filter(([, texts]) => texts.length > 1);
    expect(shared.length).toBeGreaterThan(0);
    for (const [key, texts] of shared) {
      const prefixText = tokenizer.decode(key.split(',').map(Number));
      expect(prefixText.length).toBeGreaterThan(20);
      for (const t of texts) expect(t.startsWith(prefixText)).toBe(true);
      // On the tokenizer, the shared text is the shared tokens (but possibly the last, merged with what follows).
      for (const t of texts) expect(tokenizer.encode(t, true, false).slice(0, numTokens - 1)).toEqual(key.split(',').map(Number).slice(0, numTokens - 1));
    }
    // The note says so, with the lab's figures (the same input the Runs panel builds).
    const p = s.workload.sharedPrefix!;
    const { note } = bundleOf(s.workload);
    expect(note).toContain(`${p.numPrefixes ?? 1} prefix(es) of ${p.numTokens} tokens, ${Math.round(p.fraction * 100)}% of requests`);
    expect(bundleOf(SCENARIOS.find((x) => x.id === 'short-vs-long')!.workload).note).not.toContain('prefix(es) of');
  });

  it('counts what a text benchmark cannot carry', () => {
    const byId = (id: string) => benchPrompts(SCENARIOS.find((x) => x.id === id)!.workload, loaded).losses;
    expect(byId('parallel-sampling').parallelSampling).toBeGreaterThan(0);
    expect(byId('priority-preemption').tenantFields).toBeGreaterThan(0);
    expect(byId('structured-output').structured).toBeGreaterThan(0);
    expect(byId('short-vs-long')).toEqual({ parallelSampling: 0, tenantFields: 0, structured: 0, lengthMismatches: 0 });
    const note = bundleOf(SCENARIOS.find((x) => x.id === 'parallel-sampling')!.workload).note;
    expect(note).toMatch(/asked for n > 1 parallel samples; the benchmark sends each once/);
  });

  it('fits the text when the decoded tokens re-encode to another length', () => {
    // Single-character pieces decode to a word the tokenizer encodes in fewer tokens.
    const piece = (s: string) => tokenizer.vocab.pieces.findIndex((p) => new TextDecoder().decode(p) === s);
    const ids = [tokenizer.vocab.bosId, ...'Once'.split('').map(piece)];
    expect(ids.every((id) => id >= 0)).toBe(true);
    const plain = tokenizer.decode(ids);
    expect(tokenizer.encode(plain, true, false).length).toBeLessThan(ids.length);
    const fit = fitPromptText(tokenizer, ids, 1, tokenizer.encode(storyText(200), false, false));
    expect(fit.numTokens).toBe(ids.length);
    expect(tokenizer.encode(fit.text, true, false).length).toBe(ids.length);
    expect(fit.text.startsWith('Once')).toBe(true);
  });
});

describe('the vllm bench serve command line', () => {
  const cmd = (arrival: WorkloadSpec['arrival']) =>
    argv(benchServeCommand({ datasetPath: 'd.jsonl', resultFilename: 'r.json', numPrompts: 24, arrival, seed: 42, temperature: 0 }));

  it('replays the dataset as vLLM documents it: custom dataset, output lengths from the file, held with --ignore-eos, per-request results saved', () => {
    const a = cmd({ kind: 'poisson', ratePerS: 4 });
    expect(a.slice(0, 3)).toEqual(['vllm', 'bench', 'serve']);
    expect(flag(a, '--dataset-name')).toBe('custom');
    expect(flag(a, '--dataset-path')).toBe('d.jsonl');
    expect(flag(a, '--custom-output-len')).toBe('-1');
    expect(flag(a, '--num-prompts')).toBe('24');
    expect(flag(a, '--seed')).toBe('42');
    expect(flag(a, '--temperature')).toBe('0');
    expect(flag(a, '--result-filename')).toBe('r.json');
    expect(flag(a, '--percentile-metrics')).toBe('ttft,tpot,itl,e2el');
    expect(flag(a, '--metric-percentiles')).toBe('50,90,99');
    expect(flag(a, '--model')).toBe('$MODEL');
    for (const f of ['--ignore-eos', '--skip-chat-template', '--disable-shuffle', '--save-result', '--save-detailed']) expect(a).toContain(f);
  });

  it('states the arrival process as --request-rate and --burstiness', () => {
    expect(flag(cmd({ kind: 'batch' }), '--request-rate')).toBe('inf');
    const p = cmd({ kind: 'poisson', ratePerS: 2.5 });
    expect([flag(p, '--request-rate'), flag(p, '--burstiness')]).toEqual(['2.5', '1']);
    const b = cmd({ kind: 'bursty', ratePerS: 8, burstiness: 0.25 });
    expect([flag(b, '--request-rate'), flag(b, '--burstiness')]).toEqual(['8', '0.25']);
    expect(arrivalFlags({ kind: 'batch' })).toEqual({ requestRate: 'inf', burstiness: 1 });
  });

  it("means by burstiness what vLLM's get_request means: gamma gaps of shape burstiness and mean 1/rate", () => {
    // vLLM: gap ~ Gamma(shape = burstiness, scale = 1 / (rate * burstiness)): mean 1/rate, CV 1/sqrt(burstiness).
    for (const [rate, burstiness] of [
      [4, 0.25],
      [4, 1],
      [10, 4],
    ]) {
      const specs = generateWorkload({ seed: 3, numRequests: 10_000, arrival: { kind: 'bursty', ratePerS: rate, burstiness }, promptTokens: { kind: 'fixed', value: 4 }, outputTokens: { kind: 'fixed', value: 1 } });
      const gaps = specs.map((s, i) => ((s.arrivalMs ?? 0) - (i > 0 ? (specs[i - 1].arrivalMs ?? 0) : 0)) / 1000);
      const mean = gaps.reduce((x, y) => x + y, 0) / gaps.length;
      const sd = Math.sqrt(gaps.reduce((x, g) => x + (g - mean) ** 2, 0) / gaps.length);
      expect(mean).toBeCloseTo(1 / rate, 2);
      expect(sd / mean).toBeGreaterThan(0.93 / Math.sqrt(burstiness));
      expect(sd / mean).toBeLessThan(1.07 / Math.sqrt(burstiness));
    }
    // A batch workload arrives all at once, as --request-rate inf sends it.
    const batch = generateWorkload({ seed: 1, numRequests: 5, arrival: { kind: 'batch' }, promptTokens: { kind: 'fixed', value: 4 }, outputTokens: { kind: 'fixed', value: 1 } });
    expect(batch.every((s) => s.arrivalMs === 0)).toBe(true);
  });

  it('quotes a model name for the shell', () => {
    expect(shellWord('meta-llama/Llama-2-7b-hf')).toBe('meta-llama/Llama-2-7b-hf');
    expect(argv(shellWord("my model's dir"))).toEqual(["my model's dir"]);
    const a = argv(benchServeCommand({ model: '/models/a b', datasetPath: 'd.jsonl', resultFilename: 'r.json', numPrompts: 1, arrival: { kind: 'batch' }, seed: 0, temperature: 0.7 }));
    expect(flag(a, '--model')).toBe('/models/a b');
    expect(flag(a, '--temperature')).toBe('0.7');
  });

  it('bundles the command into the note with both clocks and the tokenizer caveat', () => {
    const s = SCENARIOS.find((x) => x.id === 'prefix-caching')!;
    const b = bundleOf(s.workload, s.title);
    expect(b.note).toContain(b.command);
    expect(b.note).toContain('vllm serve "$MODEL"');
    expect(b.note).toMatch(/engine clock/);
    expect(b.note).toMatch(/wall clock/);
    expect(b.note).toMatch(/stories260K.*512 tokens/);
    expect(b.note).toMatch(/input_lens/);
    expect(b.datasetFileName).toBe('servelab-test.jsonl');
    expect(b.command).toContain('--result-filename servelab-test.vllm-result.json');
  });

  it('refuses what vLLM would refuse', () => {
    expect(() => customDatasetJsonl([])).toThrow('no requests');
    expect(() => customDatasetJsonl([{ prompt: 'a', promptTokens: 2, outputTokens: 0 }])).toThrow('request 0: output_tokens must be an integer >= 1');
    expect(() => customDatasetJsonl([{ prompt: '', promptTokens: 1, outputTokens: 3 }])).toThrow('request 0: the prompt is empty');
    expect(() => benchServeCommand({ datasetPath: 'd', resultFilename: 'r', numPrompts: 0, arrival: { kind: 'batch' }, seed: 0, temperature: 0 })).toThrow('num-prompts');
  });
});
