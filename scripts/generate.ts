/**
 * servelab's generator for people and scripts: prints exactly what llama2.c's run.c prints for the
 * same arguments (the prompt pieces, then each generated piece, a final newline) to stdout, and
 * stats to stderr.
 *
 *   npm run -s generate -- --prompt "Once upon a time" --steps 256 --temperature 0
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Engine } from '../src/engine/engine.ts';
import type { Executor } from '../src/engine/types.ts';
import { generate, runcRequest, runcText } from '../src/model/generate.ts';
import { loadModel, type LoadedModel } from '../src/model/load.ts';
import { CpuReferenceExecutor, ReferenceModel } from '../src/model/reference.ts';
import { createSampler } from '../src/engine/sampler.ts';
import { builtinModelPath, builtinTokenizerPath, fail, parseNumber, readBytes } from './cli-args.ts';

const usage = `usage: npm run -s generate -- [options]
  --prompt TEXT        the prompt (default: none, as run.c without -i)
  --steps N            positions to run, prompt included (default 256; 0 = the whole context)
  --temperature T      0 = greedy (default 1.0, as run.c)
  --top-p P            nucleus sampling in (0,1); 0 or 1 disables it (default 0.9, as run.c)
  --top-k K            keep the K most likely tokens (default 0 = off)
  --seed S             RNG seed, an integer in -2147483648..2147483647 as run.c's atoi reads it;
                       negative S is 2^64 + S, 0 = the current time (default, as run.c)
  --model FILE         llama2.c .bin or .gguf (default: the built-in stories260K.bin)
  --tokenizer FILE     llama2.c tokenizer for a .bin model (default: the built-in tok512.bin)
  --backend B          cpu (the reference forward pass, default) or webgpu (the paged, batched engine)
  --prompts-file F     run every line of F as a prompt, all at once through continuous batching;
                       prints one JSON line per prompt, in input order: {"prompt": ..., "text": ...}
  --quiet              no stats on stderr`;

/**
 * run.c takes `-s -5`; parseArgs refuses `--seed -5` as ambiguous (a value that looks like an
 * option), so a negative integer right after --seed is joined to it: `--seed=-5`.
 */
function joinNegativeSeed(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--seed' && i + 1 < argv.length && /^-\d+$/.test(argv[i + 1])) out.push(`--seed=${argv[++i]}`);
    else out.push(argv[i]);
  }
  return out;
}

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
  if (!/^[+-]?\d+$/.test(text)) fail(`--seed must be a decimal integer (${range}), got ${JSON.stringify(raw)}`);
  const v = Number(text);
  if (v < -(2 ** 31) || v > 2 ** 31 - 1) fail(`--seed must be in ${range}, got ${raw}`);
  return v;
}

function parseCli() {
  return parseArgs({
    args: joinNegativeSeed(process.argv.slice(2)),
    options: {
      prompt: { type: 'string' },
      steps: { type: 'string' },
      temperature: { type: 'string' },
      'top-p': { type: 'string' },
      'top-k': { type: 'string' },
      seed: { type: 'string' },
      model: { type: 'string' },
      tokenizer: { type: 'string' },
      backend: { type: 'string' },
      'prompts-file': { type: 'string' },
      quiet: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  }).values;
}

let parsed: ReturnType<typeof parseCli> | undefined;
try {
  parsed = parseCli();
} catch (e) {
  fail(`${(e as Error).message}\n${usage}`);
}
const args = parsed;
if (args.help) {
  process.stdout.write(`${usage}\n`);
  process.exit(0);
}

const backend = args.backend ?? 'cpu';
if (backend !== 'cpu' && backend !== 'webgpu') fail(`unknown --backend ${JSON.stringify(backend)} (available: cpu, webgpu)`);
if (args['prompts-file'] !== undefined && args.prompt !== undefined) fail('give either --prompt or --prompts-file, not both');

// run.c's parameter rules: negative temperature becomes 0, an out-of-range top-p becomes 0.9.
let temperature = parseNumber('temperature', args.temperature, 1.0);
if (temperature < 0) temperature = 0;
let topP = parseNumber('top-p', args['top-p'], 0.9);
if (topP < 0 || topP > 1) topP = 0.9;
const topK = parseNumber('top-k', args['top-k'], 0, { integer: true, min: 0 });
const steps = parseNumber('steps', args.steps, 256, { integer: true });
let seed = parseSeed(args.seed);
if (seed === 0) seed = Math.floor(Date.now() / 1000); // run.c: (unsigned int)time(NULL)

const modelPath = args.model ?? builtinModelPath;
const modelBytes = readBytes(modelPath, 'model');
const tokenizerBytes = args.tokenizer || !args.model ? readBytes(args.tokenizer ?? builtinTokenizerPath, 'tokenizer') : undefined;

let loaded: LoadedModel;
try {
  loaded = loadModel(modelBytes, modelPath, tokenizerBytes, args.tokenizer ?? builtinTokenizerPath);
} catch (e) {
  fail((e as Error).message);
}
const { model, tokenizer } = loaded;
const sampling = { temperature, topP, topK, seed };
const started = performance.now();

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
  return requests.map((r, i) => {
    const id = ids[i];
    const sampled = id === null ? [] : engine.getRequest(id)!.seqs[0].outputTokenIds;
    numGeneratedTokens += sampled.length;
    return runcText(tokenizer, r.promptTokenIds, sampled, steps, model.config.seqLen);
  });
}

function stats(numPrompts: number, numTokens: number): void {
  if (args.quiet) return;
  const totalMs = performance.now() - started;
  process.stderr.write(
    `backend ${backend}, ${model.source.name}: ${numPrompts} prompt(s), ${numTokens} tokens generated, ` +
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
  const texts = await runEngine(lines);
  const decoder = new TextDecoder();
  process.stdout.write(lines.map((p, i) => `${JSON.stringify({ prompt: p, text: decoder.decode(texts[i]) })}\n`).join(''));
  stats(lines.length, numGeneratedTokens);
} else if (backend === 'webgpu') {
  const [bytes] = await runEngine([args.prompt ?? '']);
  process.stdout.write(bytes);
  stats(1, numGeneratedTokens);
} else {
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
  stats(1, result.numGenerated);
}
process.exitCode = 0;
