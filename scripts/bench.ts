/**
 * Serving benchmarks: `npm run bench -- <name> [--json FILE] [--backend sim|webgpu|cpu|fake] [--seed N] [--key value ...]`.
 * Prints a table; with --json writes the machine-readable result. Benchmarks and backends are
 * registered in src/sim/bench/ (registerBench, registerBackend); the real-model backends are
 * loaded when named: webgpu (bench-webgpu.ts), cpu and fake (bench-host.ts).
 */
import { writeFileSync } from 'node:fs';
import { builtinModelPath, builtinTokenizerPath, fail, parseNumber, readBytes } from './cli-args.ts';
import { formatTable, getBackend, getBench, listBackends, listBenches, registerBench } from '../src/sim/bench/index.ts';
import { tokenizerBench } from '../src/sim/bench/tokenizer.ts';
import { quantBench } from '../src/sim/bench/quant.ts';
import { loraBench } from '../src/sim/bench/lora.ts';
import { specBench } from '../src/sim/bench/spec.ts';
import { loadModel } from '../src/model/load.ts';
import { readShippedAdapters } from './adapters.ts';

// The built-in model's tokenizer (tok512.bin), read only when the tokenizer or spec benchmark runs.
const builtinTokenizer = () => loadModel(readBytes(builtinModelPath, 'model'), builtinModelPath, readBytes(builtinTokenizerPath, 'tokenizer'), builtinTokenizerPath).tokenizer;
registerBench(tokenizerBench(() => ({ name: 'tok512.bin', tokenizer: builtinTokenizer() })));
registerBench(specBench(builtinTokenizer));

// LoRA: the built-in model and the adapters shipped in public/adapters/, read only when it runs.
registerBench(
  loraBench(() => {
    const loaded = loadModel(readBytes(builtinModelPath, 'model'), builtinModelPath, readBytes(builtinTokenizerPath, 'tokenizer'), builtinTokenizerPath);
    return { model: loaded.model, tokenizer: loaded.tokenizer, adapters: readShippedAdapters(loaded.model.config) };
  }),
);

// The built-in model (f32) for the quantization benchmark.
registerBench(
  quantBench(() => {
    const loaded = loadModel(readBytes(builtinModelPath, 'model'), builtinModelPath, readBytes(builtinTokenizerPath, 'tokenizer'), builtinTokenizerPath);
    return { name: 'stories260K', ...loaded };
  }),
);

function usage(): string {
  const names = listBenches().map((b) => `  ${b.name.padEnd(10)} ${b.description}`);
  return [
    'usage: npm run bench -- <benchmark> [--json FILE] [--backend NAME] [--seed N] [--requests N]',
    'benchmarks:',
    ...names,
    `backends: ${[...new Set([...listBackends(), 'webgpu', 'cpu', 'fake'])].join(', ')} (--model PATH: the real model, default the built-in stories260K)`,
  ].join('\n');
}

async function main(argv: string[]): Promise<void> {
  const positional: string[] = [];
  const options: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--help' || a === '-h') {
      console.log(usage());
      return;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      if (eq > 0) options[a.slice(2, eq)] = a.slice(eq + 1);
      else {
        const value = argv[i + 1];
        if (value === undefined || value.startsWith('--')) fail(`${a} needs a value`);
        options[a.slice(2)] = value;
        i++;
      }
    } else positional.push(a);
  }
  if (positional.length !== 1) fail(`expected one benchmark name\n${usage()}`);
  const backendName = options.backend ?? getBench(positional[0])?.defaultBackend ?? 'sim';
  // The real engine (Dawn for Node) is loaded only when asked for, and the scaling bench with it.
  if (backendName === 'webgpu' || positional[0] === 'scaling') {
    const { registerWebGpu } = await import('./bench-webgpu.ts');
    registerWebGpu(options.model);
  }
  if (backendName === 'cpu' || backendName === 'fake') {
    const { registerHostBackend } = await import('./bench-host.ts');
    registerHostBackend(backendName, options.model);
  }
  const bench = getBench(positional[0]);
  if (!bench) fail(`unknown benchmark ${JSON.stringify(positional[0])}\n${usage()}`);
  const backend = getBackend(backendName);
  if (!backend) fail(`unknown backend ${JSON.stringify(backendName)} (available: ${listBackends().join(', ')})`);
  const seed = parseNumber('seed', options.seed, 1, { integer: true, min: 0 });
  const jsonPath = options.json;
  const rest = { ...options };
  delete rest.model;
  delete rest.backend;
  delete rest.seed;
  delete rest.json;
  const t0 = performance.now();
  const result = await bench.run({ backend, seed, options: rest, log: (line) => console.log(line) });
  console.log(formatTable(result.table));
  for (const note of result.notes) console.log(note);
  console.log(`(${((performance.now() - t0) / 1000).toFixed(1)} s wall)`);
  if (jsonPath) {
    writeFileSync(jsonPath, JSON.stringify(result.json, null, 2) + '\n');
    console.log(`wrote ${jsonPath}`);
  }
}

main(process.argv.slice(2)).catch((e: unknown) => fail(e instanceof Error ? (e.stack ?? e.message) : String(e)));
