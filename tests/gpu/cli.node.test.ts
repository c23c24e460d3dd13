/**
 * The generator on the WebGPU backend, as a user runs it: `--backend webgpu` prints what
 * `--backend cpu` (run.c's text) prints, and `--prompts-file` batches every prompt through the
 * engine and prints each prompt's single-prompt text, in input order.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { writeQuantizedGguf } from '../unit/model/gguf-writer.ts';

const run = promisify(execFile);
const root = resolve(import.meta.dirname, '../..');
const tsx = resolve(root, 'node_modules/tsx/dist/cli.mjs');

async function generate(...args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, [tsx, resolve(root, 'scripts/generate.ts'), '--quiet', ...args], { cwd: root, maxBuffer: 1 << 24 });
  return stdout;
}

describe('npm run generate on the webgpu backend', () => {
  it('a single prompt prints what the cpu backend prints', async () => {
    const args = ['--prompt', 'Tom and Sue found a big box', '--steps', '120', '--temperature', '0'];
    const [gpu, cpu] = await Promise.all([generate('--backend', 'webgpu', ...args), generate('--backend', 'cpu', ...args)]);
    expect(gpu).toBe(cpu);
  });

  it('--prompts-file prints one JSON line per prompt, in input order, each the single-prompt text', async () => {
    const prompts = ['The cat sat on the mat', '', 'Once upon a time, in a big forest, there lived a bear', 'Ben', 'A bird sang'];
    const dir = mkdtempSync(join(tmpdir(), 'servelab-'));
    const file = join(dir, 'prompts.txt');
    writeFileSync(file, `${prompts.join('\n')}\n`);
    const out = await generate('--backend', 'webgpu', '--prompts-file', file, '--steps', '80', '--temperature', '0');
    const lines = out.trimEnd().split('\n').map((l) => JSON.parse(l) as { prompt: string; text: string });
    expect(lines.map((l) => l.prompt)).toEqual(prompts);
    const single = await Promise.all(prompts.map((p) => generate('--backend', 'cpu', '--prompt', p, '--steps', '80', '--temperature', '0')));
    lines.forEach((l, i) => expect(l.text, `prompt ${JSON.stringify(prompts[i])}`).toBe(single[i]));
  });

  it('--quantize q4_0, and a Q4_0 GGUF file as it is, print the same text on both backends (not the f32 text)', async () => {
    const gguf = resolve(root, 'public/models/stories260K.gguf');
    const dir = mkdtempSync(join(tmpdir(), 'servelab-'));
    const file = join(dir, 'stories260K.q4_0.gguf');
    writeFileSync(file, writeQuantizedGguf(new Uint8Array(readFileSync(gguf)), 'q4_0'));
    const args = ['--prompt', 'Lily and Ben', '--steps', '100', '--temperature', '0'];
    const [fromFile, onLoadGpu, onLoadCpu, f32] = await Promise.all([
      generate('--backend', 'webgpu', '--model', file, ...args),
      generate('--backend', 'webgpu', '--model', gguf, '--quantize', 'q4_0', ...args),
      generate('--backend', 'cpu', '--model', gguf, '--quantize', 'q4_0', ...args),
      generate('--backend', 'cpu', '--model', gguf, ...args),
    ]);
    expect(onLoadGpu).toBe(onLoadCpu);
    expect(fromFile).toBe(onLoadCpu);
    expect(onLoadCpu).not.toBe(f32);
    await expect(generate('--model', file, '--quantize', 'q8_0', ...args)).rejects.toThrow(/already quantized/);
  });
});

describe('npm run generate --speculative ngram on the webgpu backend', () => {
  it('with --temperature 0 prints the golden text byte for byte, alone and batched', async () => {
    const spec = ['--speculative', 'ngram', '--num-speculative-tokens', '4'];
    const golden = readFileSync(resolve(root, 'tests/fixtures/stories260K.once-upon-a-time.t0.n256.txt'), 'utf8');
    const goldenNone = readFileSync(resolve(root, 'tests/fixtures/stories260K.no-prompt.t0.n256.txt'), 'utf8');
    expect(await generate('--backend', 'webgpu', '--prompt', 'Once upon a time', '--steps', '256', '--temperature', '0', ...spec)).toBe(golden);
    const dir = mkdtempSync(join(tmpdir(), 'servelab-'));
    const file = join(dir, 'prompts.txt');
    writeFileSync(file, 'Once upon a time\n\n');
    const out = await generate('--backend', 'webgpu', '--prompts-file', file, '--steps', '256', '--temperature', '0', ...spec);
    expect(out.trimEnd().split('\n').map((l) => (JSON.parse(l) as { text: string }).text)).toEqual([golden, goldenNone]);
  });
});
