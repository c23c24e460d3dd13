/**
 * servelab's generator for people and scripts: prints exactly what llama2.c's run.c prints for the
 * same arguments (the prompt pieces, then each generated piece, a final newline) to stdout, and
 * stats to stderr.
 *
 *   npm run -s generate -- --prompt "Once upon a time" --steps 256 --temperature 0
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { Engine } from '../src/engine/engine.ts';
import type { Executor } from '../src/engine/types.ts';
import { effectiveSteps, generate, runcRequest, runcText } from '../src/model/generate.ts';
import { loadModel, type LoadedModel } from '../src/model/load.ts';
import { isWeightType, modelWeightBytes, modelWeightType, WEIGHT_TYPES } from '../src/model/quant.ts';
import { CpuReferenceExecutor, ReferenceModel } from '../src/model/reference.ts';
import { createSampler, isGreedyTemperature } from '../src/engine/sampler.ts';
import { builtinModelPath, builtinTokenizerPath, fail, notice, parseCommandLine, parseNumber, readBytes, usageError } from './cli-args.ts';

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

async function runEngine(promptList: string[]): Promise<Uint8Array[]> {
  let executor: Executor;
  let cleanup = () => {};
  if (backend === 'webgpu') {
    const { nodeGpu } = await import('./node-gpu.ts');
    const { acquireDevice } = await import('../src/gpu/device.ts');
    const { GpuRuntime } = await import('../src/gpu/step.ts');
    const { GpuExecutor } = await import('../src/gpu/executor.ts');
    const { loadKernelSources } = await import('../src/gpu/kernel-sources.node.ts');
    let ctx;
    try {
      ctx = await acquireDevice(await nodeGpu());
    } catch (e) {
      fail((e as Error).message);
    }
    const runtime = GpuRuntime.fromContext(ctx, loadKernelSources());
    executor = new GpuExecutor(ctx, runtime, model);
    cleanup = () => {
      executor.dispose();
      runtime.destroy();
      ctx.destroy();
    };
  } else {
    executor = new CpuReferenceExecutor(model);
  }
  const blockSize = 16;
  const requests = promptList.map((p) => runcRequest(tokenizer, p, steps, model.config.seqLen));
  const blocksNeeded = requests.reduce((n, r) => n + Math.ceil((r.promptTokenIds.length + r.maxTokens) / blockSize), 0);
  const engine = new Engine({
    executor,
    config: {
      blockSize,
      numGpuBlocks: Math.max(8, Math.min(blocksNeeded, 4096)),
      numCpuBlocks: 0,
      maxNumBatchedTokens: 512,
      maxNumSeqs: 64,
      // run.c samples one token at the last position without feeding it back: a sequence may hold
      // seqLen + 1 tokens, the last never computed (positions stay below seqLen).
      maxModelLen: model.config.seqLen + 1,
    },
  });
  const ids = requests.map((r) => (r.maxTokens > 0 ? engine.submit({ ...r, sampling }) : null));
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
    const seq = id === null ? undefined : engine.getRequest(id)!.seqs[0];
    const sampled = seq?.outputTokenIds ?? [];
    numGeneratedTokens += sampled.length;
    numOverflowed += seq?.sampler.numOverflowedSteps ?? 0;
    return runcText(tokenizer, r.promptTokenIds, sampled, steps, model.config.seqLen);
  });
  overflowNotice(numOverflowed, numGeneratedTokens);
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
    `backend ${backend}, ${model.source.name} (${modelWeightType(model)} weights, ${modelWeightBytes(model)} bytes): ${numPrompts} prompt(s), ${numTokens} tokens generated, ` +
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
  process.stdout.write(lines.map((p, i) => `${JSON.stringify({ prompt: p, text: decoder.decode(texts[i]) })}\n`).join(''));
  stats(lines.length, numGeneratedTokens);
} else if (backend === 'webgpu') {
  checkPromptLength(args.prompt ?? '', 'the prompt ');
  const [bytes] = await runEngine([args.prompt ?? '']);
  process.stdout.write(bytes);
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
