/**
 * servelab's generator for people and scripts: prints exactly what llama2.c's run.c prints for the
 * same arguments (the prompt pieces, then each generated piece, a final newline) to stdout, and
 * stats to stderr.
 *
 *   npm run -s generate -- --prompt "Once upon a time" --steps 256 --temperature 0
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { LoraAdapter } from '../src/engine/types.ts';
import { readAdapterDir, shippedAdaptersDir } from './adapters.ts';
import { Engine } from '../src/engine/engine.ts';
import type { Executor } from '../src/engine/types.ts';
import { effectiveSteps, generate, runcRequest, runcText } from '../src/model/generate.ts';
import { loadModel, type LoadedModel } from '../src/model/load.ts';
import { isWeightType, modelWeightBytes, modelWeightType, WEIGHT_TYPES } from '../src/model/quant.ts';
import { CpuReferenceExecutor, ReferenceModel } from '../src/model/reference.ts';
import { createSampler, isGreedyTemperature } from '../src/engine/sampler.ts';
import { MAX_LORA_RANK, MAX_NUM_SPECULATIVE_TOKENS, validateEngineConfig, DEFAULT_SCHEDULER_CONFIG, type SchedulerConfig } from '../src/engine/config.ts';
import { builtinModelPath, builtinTokenizerPath, fail, notice, parseCommandLine, parseNumber, readBytes, usageError } from './cli-args.ts';
import type { ResponseFormat } from '../src/engine/constraint.ts';
import { stopTokenIdsOf } from '../src/serve/requests.ts';
import { GrammarService, parseResponseFormat, ResponseFormatError } from '../src/serve/structured.ts';
import { checkJsonOutput } from '../src/serve/json-check.ts';

const usage = `usage: npm run -s generate -- [options]
  --prompt TEXT        the prompt (default: none, as run.c without -i)
  --steps N            positions to run, prompt included (default 256; 0 = the whole context;
                       negative is 0, as run.c); a prompt longer than the context is refused
  --temperature T      0 = greedy (default 1.0, as run.c); negative is 0, as run.c
  --top-p P            nucleus sampling in (0,1); 0 or 1 disables it (default 0.9, as run.c);
                       outside 0..1 it is 0.9, as run.c
  --top-k K            keep the K most likely tokens (default 0 = off)
  --seed S             RNG seed, an integer in -2147483648..2147483647 as run.c's atoi reads it;
                       negative S is 2^64 + S, 0 = the current time (default, as run.c)
  --model FILE         llama2.c .bin or .gguf (default: the built-in stories260K.bin)
  --tokenizer FILE     llama2.c tokenizer for a .bin model (default: the built-in tok512.bin)
  --backend B          cpu (the reference forward pass, default) or webgpu (the paged, batched engine)
  --quantize Q         quantize the f32 weights on load: q8_0 or q4_0 (ggml's blocks of 32; f32,
                       the default, keeps them); a Q8_0/Q4_0 GGUF file loads as it is
  --prompts-file F     run every line of F as a prompt, all at once through continuous batching;
                       prints one JSON line per prompt, in input order: {"prompt": ..., "text": ...}
  --lora NAME=DIR      register the PEFT LoRA adapter in DIR (adapter_config.json and
                       adapter_model.safetensors) as NAME; repeatable. The adapters shipped in
                       public/adapters/ (tom, happy, noise) are known by name without it
  --model-adapter NAME run the prompt(s) with LoRA adapter NAME (through the engine, on either
                       backend: each row adds its own x·A·B)
  --response-format F  json_object: the output is a JSON object (structured output, XGrammar);
                       json_schema: needs --json-schema. Only the generated JSON is printed (no
                       prompt), no whitespace outside strings; stderr says whether it is complete
                       and valid. Runs on the engine (--backend cpu or webgpu)
  --json-schema FILE   the output follows the JSON schema in FILE (implies --response-format json_schema)
  --speculative M      speculative decoding: ngram (prompt lookup, as vLLM's method "ngram") or
                       off (default); runs through the engine on either backend. Greedy output is
                       byte-identical to a run without it
  --num-speculative-tokens K   draft tokens per sequence per step, 1..${MAX_NUM_SPECULATIVE_TOKENS} (default 4)
  --prompt-lookup-max N        longest n-gram matched against the prompt and output (default 4)
  --prompt-lookup-min N        shortest n-gram matched (default 2)
  --quiet              no stats on stderr
A negative value may follow its option (--seed -5). Where a run.c rule changes a value, a note
on stderr says so. A bad option is one line on stderr and exit status 2.`;

/**
 * run.c's seed: `rng_seed = atoi(arg)` into an unsigned long long, the clock when it is 0. So a
 * negative seed S is the state 2^64 + S (repeatable; the sampler's XorShiftRng takes S modulo 2^64
 * the same way), and only atoi's range, a 32-bit int, has a run.c counterpart: beyond it atoi's
 * result is undefined, and forms atoi reads differently from Number ("1e3", "0x10", "5.5") are
 * refused rather than taken to mean something run.c would not.
 */
function parseSeed(raw: string | undefined): number {
  if (raw === undefined) return 0;
  const text = raw.trim();
  const range = '-2147483648..2147483647, as run.c reads it with atoi';
  if (!/^[+-]?\d+$/.test(text)) usageError(`--seed must be a decimal integer (${range}), got ${JSON.stringify(raw)}`);
  const v = Number(text);
  if (v < -(2 ** 31) || v > 2 ** 31 - 1) usageError(`--seed must be in ${range}, got ${raw}`);
  return v;
}

const args = parseCommandLine(process.argv.slice(2), {
  prompt: { type: 'string' },
  steps: { type: 'string' },
  temperature: { type: 'string' },
  'top-p': { type: 'string' },
  'top-k': { type: 'string' },
  seed: { type: 'string' },
  model: { type: 'string' },
  tokenizer: { type: 'string' },
  backend: { type: 'string' },
  quantize: { type: 'string' },
  'prompts-file': { type: 'string' },
  lora: { type: 'string', multiple: true },
  'model-adapter': { type: 'string' },
  'response-format': { type: 'string' },
  'json-schema': { type: 'string' },
  speculative: { type: 'string' },
  'num-speculative-tokens': { type: 'string' },
  'prompt-lookup-max': { type: 'string' },
  'prompt-lookup-min': { type: 'string' },
  quiet: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
});
if (args.help) {
  process.stdout.write(`${usage}\n`);
  process.exit(0);
}

const backend = args.backend ?? 'cpu';
if (backend !== 'cpu' && backend !== 'webgpu') usageError(`unknown --backend ${JSON.stringify(backend)} (available: cpu, webgpu)`);
const quantize = args.quantize ?? 'f32';
if (!isWeightType(quantize)) usageError(`unknown --quantize ${JSON.stringify(quantize)} (available: ${WEIGHT_TYPES.join(', ')})`);
if (args['prompts-file'] !== undefined && args.prompt !== undefined) usageError('give either --prompt or --prompts-file, not both');
/** Structured output: the response format asked for (null: free text, run.c's output). */
const responseFormat: ResponseFormat | null = (() => {
  const kind = args['response-format'] ?? (args['json-schema'] !== undefined ? 'json_schema' : undefined);
  if (kind === undefined) return null;
  if (kind !== 'json_object' && kind !== 'json_schema') usageError(`unknown --response-format ${JSON.stringify(kind)} (available: json_object, json_schema)`);
  if (kind === 'json_object') {
    if (args['json-schema'] !== undefined) usageError('--json-schema goes with --response-format json_schema, not json_object');
    return { type: 'json_object' };
  }
  const file = args['json-schema'];
  if (file === undefined) usageError('--response-format json_schema needs --json-schema FILE');
  const text = new TextDecoder().decode(readBytes(file, 'JSON schema'));
  let schema: unknown;
  try {
    schema = JSON.parse(text);
  } catch (e) {
    usageError(`--json-schema ${file} is not JSON: ${(e as Error).message}`);
  }
  try {
    return parseResponseFormat({ type: 'json_schema', json_schema: { name: basename(file).replace(/\.[^.]*$/, '') || 'schema', schema } });
  } catch (e) {
    if (e instanceof ResponseFormatError) usageError(`--json-schema ${file}: ${e.message}`);
    throw e;
  }
})();

const speculativeMethod = args.speculative ?? 'off';
if (speculativeMethod !== 'off' && speculativeMethod !== 'ngram') usageError(`unknown --speculative ${JSON.stringify(speculativeMethod)} (available: ngram, off)`);
const speculative: Pick<SchedulerConfig, 'speculativeMethod' | 'numSpeculativeTokens' | 'promptLookupMax' | 'promptLookupMin'> = {
  speculativeMethod,
  numSpeculativeTokens: parseNumber('num-speculative-tokens', args['num-speculative-tokens'], DEFAULT_SCHEDULER_CONFIG.numSpeculativeTokens, { integer: true, min: 1, max: MAX_NUM_SPECULATIVE_TOKENS }),
  promptLookupMax: parseNumber('prompt-lookup-max', args['prompt-lookup-max'], DEFAULT_SCHEDULER_CONFIG.promptLookupMax, { integer: true, min: 1, max: 64 }),
  promptLookupMin: parseNumber('prompt-lookup-min', args['prompt-lookup-min'], DEFAULT_SCHEDULER_CONFIG.promptLookupMin, { integer: true, min: 1, max: 64 }),
};
if (speculative.promptLookupMin > speculative.promptLookupMax) usageError(`--prompt-lookup-min (${speculative.promptLookupMin}) must be <= --prompt-lookup-max (${speculative.promptLookupMax})`);
if (speculativeMethod === 'off' && (args['num-speculative-tokens'] ?? args['prompt-lookup-max'] ?? args['prompt-lookup-min']) !== undefined) {
  usageError('--num-speculative-tokens and --prompt-lookup-max/min need --speculative ngram');
}

// run.c's parameter rules, each said out loud: a negative temperature is 0, a top-p outside 0..1
// is 0.9, negative steps are 0 (the whole context), a seed of 0 is the clock.
let temperature = parseNumber('temperature', args.temperature, 1.0);
if (temperature < 0) {
  notice(`--temperature ${args.temperature} is negative; as run.c, it is 0: sampling greedily`);
  temperature = 0;
} else if (temperature > 0 && isGreedyTemperature(temperature)) {
  notice(`temperature ${args.temperature} is too small to divide by; sampling greedily`);
}
let topP = parseNumber('top-p', args['top-p'], 0.9);
if (topP < 0 || topP > 1) {
  notice(`--top-p ${args['top-p']} is outside 0..1; as run.c, using 0.9`);
  topP = 0.9;
}
const topK = parseNumber('top-k', args['top-k'], 0, { integer: true, min: 0 });
let steps = parseNumber('steps', args.steps, 256, { integer: true });
if (steps < 0) {
  notice(`--steps ${args.steps} is negative; as run.c, it is 0: the whole context`);
  steps = 0;
}
let seed = parseSeed(args.seed);
if (seed === 0) {
  seed = Math.floor(Date.now() / 1000); // run.c: (unsigned int)time(NULL)
  if (args.seed !== undefined) notice(`--seed 0 means the current time, as in run.c: seed ${seed} (give it to repeat this run)`);
} else if (seed < 0) {
  notice(`--seed ${seed} is run.c's unsigned seed 2^64 - ${-seed} = ${2n ** 64n + BigInt(seed)}: repeatable, not the clock`);
}

const modelPath = args.model ?? builtinModelPath;
const modelBytes = readBytes(modelPath, 'model');
const tokenizerBytes = args.tokenizer || !args.model ? readBytes(args.tokenizer ?? builtinTokenizerPath, 'tokenizer') : undefined;

let loaded: LoadedModel;
try {
  loaded = loadModel(modelBytes, modelPath, tokenizerBytes, args.tokenizer ?? builtinTokenizerPath, { quantize });
} catch (e) {
  fail((e as Error).message);
}
const { model, tokenizer } = loaded;

// LoRA: --lora NAME=DIR adapters, then the shipped ones by name (only the one asked for is read).
const loraDirs = new Map<string, string>();
for (const item of args.lora ?? []) {
  const eq = item.indexOf('=');
  if (eq <= 0 || eq === item.length - 1) usageError(`--lora takes NAME=DIR, got ${JSON.stringify(item)}`);
  loraDirs.set(item.slice(0, eq), item.slice(eq + 1));
}
const adapterName = args['model-adapter'];
let adapters: LoraAdapter[] = [];
try {
  adapters = [...loraDirs].map(([name, dir]) => readAdapterDir(name, dir, model.config));
  if (adapterName !== undefined && !loraDirs.has(adapterName)) {
    const shipped = join(shippedAdaptersDir, adapterName);
    if (!/^[\w.-]+$/.test(adapterName) || !existsSync(shipped)) usageError(`--model-adapter ${adapterName}: no such adapter (give --lora ${adapterName}=DIR, or one of: ${readdirSync(shippedAdaptersDir).filter((n) => !n.includes('.')).join(', ')})`);
    adapters.push(readAdapterDir(adapterName, shipped, model.config));
  }
} catch (e) {
  fail((e as Error).message);
}
const sampling = { temperature, topP, topK, seed };
const started = performance.now();
const seqLen = model.config.seqLen;

/**
 * Refuses a prompt that does not fit the model's context, before any work: run.c would print its
 * first seq_len tokens and generate nothing. A prompt of P tokens (BOS included) needs P
 * positions; the last one's token is sampled, so P = seq_len still generates one token. A prompt
 * that fits but uses up --steps is run as run.c runs it, with a note.
 */
function checkPromptLength(prompt: string, where: string): void {
  const numTokens = tokenizer.encode(prompt, true, false).length;
  if (numTokens > seqLen) {
    process.stderr.write(
      `error: ${where}is ${numTokens} tokens (BOS included), longer than the context of ${basename(model.source.name)}: ` +
        `${seqLen} tokens at most\n`,
    );
    process.exit(2);
  }
  const s = effectiveSteps(steps, seqLen);
  if (numTokens > s) {
    const printed = numTokens - 1 > s ? `only its first ${s} tokens are printed and ` : '';
    notice(`${where}is ${numTokens} tokens (BOS included) and --steps is ${s}: as run.c, ${printed}nothing is generated`);
  }
}

/** The paged, batched engine on the chosen executor: every prompt at once, run.c's text for each. */
let numGeneratedTokens = 0;
/** Structured output: per prompt, how it ended and what masking cost. */
const structuredResults: { finishReason: string; maskMs: number; numMasked: number; text: string }[] = [];
let compileMs = 0;

/** One line on stderr per structured output: complete and valid, or cut by max tokens. */
function structuredNotes(): void {
  if (!responseFormat) return;
  structuredResults.forEach((r, i) => {
    const check = checkJsonOutput(r.text, responseFormat, r.finishReason);
    const which = structuredResults.length > 1 ? `output ${i + 1}: ` : '';
    notice(`${which}finish_reason ${r.finishReason}; JSON ${check.status}${check.message ? ` (${check.message})` : ''}`);
  });
  if (args.quiet) return;
  const masked = structuredResults.reduce((a, r) => a + r.numMasked, 0);
  const ms = structuredResults.reduce((a, r) => a + r.maskMs, 0);
  process.stderr.write(`structured output: grammar compiled in ${compileMs.toFixed(0)} ms; ${masked} masked tokens, ${(masked ? ms / masked : 0).toFixed(3)} ms per mask\n`);
}

async function runEngine(promptList: string[]): Promise<Uint8Array[]> {
  let executor: Executor;
  let cleanup = () => {};
  if (backend === 'webgpu') {
    const { nodeGpuExecutor } = await import('./node-gpu.ts');
    ({ executor, cleanup } = await nodeGpuExecutor(model));
  } else {
    executor = new CpuReferenceExecutor(model);
  }
  const blockSize = 16;
  const requests = promptList.map((p) => runcRequest(tokenizer, p, steps, model.config.seqLen));
  const blocksNeeded = requests.reduce((n, r) => n + Math.ceil((r.promptTokenIds.length + r.maxTokens) / blockSize), 0);
  const maxRank = Math.max(16, ...adapters.map((a) => a.rank));
  if (maxRank > MAX_LORA_RANK) fail(`a LoRA adapter of rank ${maxRank} exceeds the kernels' ${MAX_LORA_RANK}`);
  const config: Partial<SchedulerConfig> = {
    maxLoras: Math.max(1, adapters.length),
    maxLoraRank: maxRank,
    blockSize,
    numGpuBlocks: Math.max(8, Math.min(blocksNeeded, 4096)),
    numCpuBlocks: 0,
    maxNumBatchedTokens: 512,
    maxNumSeqs: 64,
    // run.c samples one token at the last position without feeding it back: a sequence may hold
    // seqLen + 1 tokens, the last never computed (positions stay below seqLen).
    maxModelLen: model.config.seqLen + 1,
    ...speculative,
  };
  const problems = validateEngineConfig({ ...DEFAULT_SCHEDULER_CONFIG, ...config });
  if (problems.length > 0) usageError(problems.map((p) => p.message).join('; '));
  const engine = new Engine({ executor, config });
  for (const a of adapters) engine.registerAdapter(a);
  const adapter = adapterName ? { adapter: adapterName } : {};
  let ids: (string | null)[];
  if (responseFormat) {
    const { loadXGrammarNode } = await import('../src/serve/xgrammar.node.ts');
    const service = new GrammarService(await loadXGrammarNode(), tokenizer, stopTokenIdsOf(loaded));
    const t0 = performance.now();
    try {
      await service.compile(responseFormat);
    } catch (e) {
      if (e instanceof ResponseFormatError) usageError(e.message);
      throw e;
    }
    compileMs = performance.now() - t0;
    ids = [];
    for (const r of requests) {
      if (r.maxTokens <= 0) {
        ids.push(null);
        continue;
      }
      const { constraints } = await service.constraints(responseFormat, 1);
      ids.push(engine.submit({ ...r, stopTokenIds: stopTokenIdsOf(loaded), sampling, responseFormat, ...adapter }, { constraints }));
    }
  } else {
    ids = requests.map((r) => (r.maxTokens > 0 ? engine.submit({ ...r, sampling, ...adapter }) : null));
  }
  try {
    await engine.runUntilIdle();
  } catch (e) {
    fail(`the ${backend} engine failed: ${(e as Error).message}`);
  } finally {
    cleanup();
  }
  let numOverflowed = 0;
  const texts = requests.map((r, i) => {
    const id = ids[i];
    const req = id === null ? undefined : engine.getRequest(id)!;
    const seq = req?.seqs[0];
    const sampled = seq?.outputTokenIds ?? [];
    numGeneratedTokens += sampled.length;
    numOverflowed += seq?.sampler.numOverflowedSteps ?? 0;
    if (responseFormat) {
      // Structured output: the generated text alone (it is the JSON), each piece after its predecessor.
      const all = [...r.promptTokenIds, ...sampled];
      const pieces = sampled.map((t, k) => tokenizer.pieceBytes(all[r.promptTokenIds.length + k - 1], t, false));
      const bytes = Buffer.concat(pieces);
      structuredResults.push({ finishReason: seq?.finishReason ?? 'length', maskMs: req?.mask?.totalMs ?? 0, numMasked: req?.mask?.numTokens ?? 0, text: new TextDecoder().decode(bytes) });
      return new Uint8Array(bytes);
    }
    return runcText(tokenizer, r.promptTokenIds, sampled, steps, model.config.seqLen);
  });
  overflowNotice(numOverflowed, numGeneratedTokens);
  const spec = engine.metricsSummary().spec;
  if (speculativeMethod !== 'off' && !args.quiet) {
    process.stderr.write(
      `speculative ngram (k ${speculative.numSpeculativeTokens}, lookup ${speculative.promptLookupMin}..${speculative.promptLookupMax}): ` +
        (spec.numDraftTokens === 0
          ? 'no drafts proposed (no n-gram of the prompt or output recurred), '
          : `${spec.numAcceptedTokens} of ${spec.numDraftTokens} draft tokens accepted (${(100 * spec.acceptanceRate).toFixed(1)}%), ` +
            `mean accepted length ${spec.meanAcceptedLength.toFixed(2)}, `) +
        `${engine.metrics.numSteps} engine steps\n`,
    );
  }
  return texts;
}

/** Says how many tokens were sampled greedily because logit / temperature overflowed float32. */
function overflowNotice(numOverflowed: number, numSampled: number): void {
  if (numOverflowed === 0) return;
  notice(
    `temperature ${args.temperature} is too small to divide by for ${numOverflowed} of ${numSampled} sampled tokens ` +
      `(a logit / temperature overflowed float32); those were sampled greedily`,
  );
}

function stats(numPrompts: number, numTokens: number): void {
  if (args.quiet) return;
  const totalMs = performance.now() - started;
  process.stderr.write(
    `backend ${backend}, ${model.source.name} (${modelWeightType(model)} weights, ${modelWeightBytes(model)} bytes)${adapterName ? ` + LoRA ${adapterName}` : ''}: ${numPrompts} prompt(s), ${numTokens} tokens generated, ` +
      `${totalMs.toFixed(1)} ms, achieved tok/s: ${(numTokens / (totalMs / 1000)).toFixed(1)}\n`,
  );
}

if (args['prompts-file'] !== undefined) {
  let raw: string;
  try {
    raw = readFileSync(args['prompts-file'], 'utf8');
  } catch (e) {
    fail(`cannot read --prompts-file ${args['prompts-file']}: ${(e as Error).message}`);
  }
  const lines = raw.split(/\r?\n/);
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  if (lines.length === 0) fail(`--prompts-file ${args['prompts-file']} has no prompts`);
  lines.forEach((line, i) => checkPromptLength(line, `the prompt on line ${i + 1} of ${args['prompts-file']} `));
  const texts = await runEngine(lines);
  const decoder = new TextDecoder();
  process.stdout.write(
    lines
      .map((p, i) => {
        const line: Record<string, unknown> = { prompt: p, text: decoder.decode(texts[i]) };
        if (responseFormat) line.finish_reason = structuredResults[i].finishReason;
        return `${JSON.stringify(line)}\n`;
      })
      .join(''),
  );
  structuredNotes();
  stats(lines.length, numGeneratedTokens);
} else if (backend === 'webgpu' || adapterName !== undefined || responseFormat || speculativeMethod !== 'off') {
  // An adapter runs through the engine on the CPU too (the reference adds each row's LoRA).
  checkPromptLength(args.prompt ?? '', 'the prompt ');
  const [bytes] = await runEngine([args.prompt ?? '']);
  process.stdout.write(bytes);
  if (responseFormat) process.stdout.write('\n');
  structuredNotes();
  stats(1, numGeneratedTokens);
} else {
  checkPromptLength(args.prompt ?? '', 'the prompt ');
  const reference = new ReferenceModel(model);
  const sampler = createSampler(sampling);
  const pending: Uint8Array[] = [];
  const result = generate({
    tokenizer,
    prompt: args.prompt ?? '',
    steps,
    seqLen: model.config.seqLen,
    forward: (token, pos) => reference.forward(token, pos),
    sample: (logits) => sampler.sampleLogits(logits),
    onPiece: (bytes) => pending.push(bytes),
  });
  process.stdout.write(Buffer.concat(pending));
  overflowNotice(sampler.numOverflowedSteps, result.numGenerated);
  stats(1, result.numGenerated);
}
process.exitCode = 0;
