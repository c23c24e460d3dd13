/**
 * servelab's generator for people and scripts: prints exactly what llama2.c's run.c prints for the
 * same arguments (the prompt pieces, then each generated piece, a final newline) to stdout, and
 * stats to stderr.
 *
 *   npm run -s generate -- --prompt "Once upon a time" --steps 256 --temperature 0
 */
import { parseArgs } from 'node:util';
import { generate } from '../src/model/generate.ts';
import { loadModel } from '../src/model/load.ts';
import { ReferenceModel } from '../src/model/reference.ts';
import { createSampler } from '../src/engine/sampler.ts';
import { builtinModelPath, builtinTokenizerPath, fail, parseNumber, readBytes } from './cli-args.ts';

const usage = `usage: npm run -s generate -- [options]
  --prompt TEXT        the prompt (default: none, as run.c without -i)
  --steps N            positions to run, prompt included (default 256; 0 = the whole context)
  --temperature T      0 = greedy (default 1.0, as run.c)
  --top-p P            nucleus sampling in (0,1); 0 or 1 disables it (default 0.9, as run.c)
  --top-k K            keep the K most likely tokens (default 0 = off)
  --seed S             RNG seed (default: the current time, as run.c)
  --model FILE         llama2.c .bin or .gguf (default: the built-in stories260K.bin)
  --tokenizer FILE     llama2.c tokenizer for a .bin model (default: the built-in tok512.bin)
  --backend cpu        which executor runs the model (cpu: the reference forward pass)
  --quiet              no stats on stderr`;

let args;
try {
  args = parseArgs({
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
      quiet: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  }).values;
} catch (e) {
  fail(`${(e as Error).message}\n${usage}`);
}
if (args.help) {
  process.stdout.write(`${usage}\n`);
  process.exit(0);
}

const backend = args.backend ?? 'cpu';
if (backend !== 'cpu') fail(`unknown --backend ${JSON.stringify(backend)} (available: cpu)`);

// run.c's parameter rules: negative temperature becomes 0, an out-of-range top-p becomes 0.9.
let temperature = parseNumber('temperature', args.temperature, 1.0);
if (temperature < 0) temperature = 0;
let topP = parseNumber('top-p', args['top-p'], 0.9);
if (topP < 0 || topP > 1) topP = 0.9;
const topK = parseNumber('top-k', args['top-k'], 0, { integer: true, min: 0 });
const steps = parseNumber('steps', args.steps, 256, { integer: true });
let seed = parseNumber('seed', args.seed, 0, { integer: true });
if (seed <= 0) seed = Math.floor(Date.now() / 1000);

const modelPath = args.model ?? builtinModelPath;
const modelBytes = readBytes(modelPath, 'model');
const tokenizerBytes = args.tokenizer || !args.model ? readBytes(args.tokenizer ?? builtinTokenizerPath, 'tokenizer') : undefined;

let loaded;
try {
  loaded = loadModel(modelBytes, modelPath, tokenizerBytes, args.tokenizer ?? builtinTokenizerPath);
} catch (e) {
  fail((e as Error).message);
}
const { model, tokenizer } = loaded;
const reference = new ReferenceModel(model);
const sampler = createSampler({ temperature, topP, topK, seed });

const started = performance.now();
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
const totalMs = performance.now() - started;
if (!args.quiet) {
  const numTokens = result.tokens.length - 1;
  process.stderr.write(
    `backend ${backend}, ${model.source.name}: ${result.numPromptTokens} prompt tokens (BOS included), ` +
      `${result.numGenerated} generated, ${totalMs.toFixed(1)} ms, ` +
      `achieved tok/s: ${(numTokens / (totalMs / 1000)).toFixed(1)}\n`,
  );
}
