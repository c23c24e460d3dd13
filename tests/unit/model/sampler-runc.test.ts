/**
 * The sampler against run.c's float arithmetic. The texts below are what run.c prints for these
 * arguments (its logits are bit-identical to the CPU reference's, see golden.test.ts): the first
 * was reported from run.c itself, the rest come from fixtures/runc-sampler.c, run.c's sampling
 * step in C floats. Each of these seeds used to sample differently when the temperature division
 * and the softmax's subtraction and exp were done in double.
 *
 * Where a C compiler and glibc are installed, the oracle is built and compared with the TypeScript
 * sampler directly: the same texts token by token, bit-equal probabilities on random logits, and
 * expf equal to glibc's.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createSampler, expf, probabilities, XorShiftRng } from '../../../src/engine/sampler.ts';
import { generate } from '../../../src/model/generate.ts';
import { ReferenceModel } from '../../../src/model/reference.ts';
import { builtin, root } from './helpers.ts';

interface Case {
  temperature: number;
  topP: number;
  seed: number;
  /** run.c's stdout for `--prompt "" --steps 12`. */
  text: string;
}

const cases: Case[] = [
  // Reported from run.c; the double-arithmetic sampler printed "One day, a little girl named Lily went".
  { temperature: 0.8, topP: 0.9, seed: 1807648, text: 'Once upon a time, there was a little girl\n' },
  // was "One day, a little boy named Tim went"
  { temperature: 0.8, topP: 0.9, seed: 5737694, text: 'Once upon a time, there was a little girl\n' },
  // was "very famous sheep was very happy and"
  { temperature: 0.8, topP: 1, seed: 643703, text: 'loved to make people w\n' },
  // was "One day, a boy named Tim went to"
  { temperature: 0.8, topP: 1, seed: 660680, text: 'Max and Sam were playing in the\n' },
  // was "Uer thin andHe was eating the"
  { temperature: 1.5, topP: 1, seed: 640988, text: '3 hard hurriced that f\n' },
  // was "“I play drew trees there wear"
  { temperature: 1.5, topP: 1, seed: 1001802, text: '”den missed something\n' },
  // A negative seed is run.c's 2^64 + seed.
  { temperature: 0.8, topP: 0.9, seed: -5, text: 'Once upon a time, there was a little boy\n' },
];

const text = (b: Uint8Array) => Buffer.from(b).toString('utf8');

/** run.c's generate loop on the CPU reference, sampling each position with `sample`. */
function runGenerate(sample: (logits: Float32Array) => number, steps = 12) {
  const { model, tokenizer } = builtin();
  const ref = new ReferenceModel(model);
  return generate({ tokenizer, prompt: '', steps, seqLen: model.config.seqLen, forward: (t, p) => ref.forward(t, p), sample });
}

function sampleText(c: Omit<Case, 'text'>): string {
  const sampler = createSampler({ temperature: c.temperature, topP: c.topP, topK: 0, seed: c.seed });
  return text(runGenerate((l) => sampler.sampleLogits(l)).bytes);
}

const generator = (args: string[]) =>
  execFileSync(process.execPath, [resolve(root, 'node_modules/tsx/dist/cli.mjs'), resolve(root, 'scripts/generate.ts'), '--quiet', ...args], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
  }).toString('utf8');

function generatorError(args: string[]): { status?: number; stderr: string } {
  try {
    generator(args);
  } catch (e) {
    const err = e as { status?: number; stderr?: Buffer };
    return { status: err.status, stderr: String(err.stderr) };
  }
  return { status: 0, stderr: '' };
}

describe("the sampler is run.c's float arithmetic", () => {
  it.each(cases)('T $temperature, top-p $topP, seed $seed samples run.c\'s text', (c) => {
    expect(sampleText(c)).toBe(c.text);
  });

  it('npm run -s generate -- --prompt "" --steps 12 --temperature 0.8 --top-p 0.9 --seed 1807648 prints run.c\'s text', () => {
    const stdout = generator(['--prompt', '', '--steps', '12', '--temperature', '0.8', '--top-p', '0.9', '--seed', '1807648']);
    expect(stdout).toBe('Once upon a time, there was a little girl\n');
  });

  it("expf is glibc's, which is not Math.fround(Math.exp(x))", () => {
    const bits = (v: number) => new Uint32Array(Float32Array.of(v).buffer)[0];
    const float = (b: number) => new Float32Array(Uint32Array.of(b).buffer)[0];
    // [x, glibc 2.36's expf(x)] as float bits; Math.fround(Math.exp(x)) is 1 ulp lower for each.
    for (const [x, want] of [
      [0xc1be8d85, 0x2e46f490],
      [0xc1868070, 0x33566ec9],
      [0xc179c6d7, 0x34324860],
      [0xbfc5cbd9, 0x3e5a5e95],
    ]) {
      expect(bits(expf(float(x)))).toBe(want);
      expect(bits(Math.exp(float(x)))).toBe(want - 1);
    }
    expect(expf(0)).toBe(1);
    expect(expf(-Infinity)).toBe(0);
    expect(expf(-104)).toBe(0);
    expect(expf(89)).toBe(Infinity);
    expect(expf(NaN)).toBeNaN();
  });

  it('temperature and top-p are float32, as run.c reads them', () => {
    // The double nearest 0.8 and the float nearest 0.8 are the same sampler.
    const logits = Float32Array.from({ length: 64 }, (_, i) => Math.sin(i * 1.7) * 4);
    expect(probabilities(logits, 0.8, 0)).toEqual(probabilities(logits, Math.fround(0.8), 0));
    const a = createSampler({ temperature: 0.8, topP: 0.9, topK: 0, seed: 3 });
    const b = createSampler({ temperature: Math.fround(0.8), topP: Math.fround(0.9), topK: 0, seed: 3 });
    for (let i = 0; i < 200; i++) expect(a.sampleLogits(logits)).toBe(b.sampleLogits(logits));
    // A temperature that is 0 as a float is greedy, as in run.c.
    expect(createSampler({ temperature: 1e-50, topP: 0.9, topK: 0, seed: 3 }).sampleLogits(logits)).toBe(
      createSampler({ temperature: 0, topP: 0.9, topK: 0, seed: 3 }).sampleLogits(logits),
    );
  });
});

describe("seeds as run.c's", () => {
  it('a negative seed is the state 2^64 + seed', () => {
    expect(new XorShiftRng(-5).state).toBe(2n ** 64n - 5n);
    const a = new XorShiftRng(-5);
    const b = new XorShiftRng(2n ** 64n - 5n);
    for (let i = 0; i < 10; i++) expect(a.nextU32()).toBe(b.nextU32());
  });

  it('a non-integer seed is refused', () => {
    expect(() => createSampler({ temperature: 1, topP: 0.9, topK: 0, seed: 1.5 })).toThrow(/seed must be an integer/);
  });

  it('--seed -5 is repeatable and is the state 2^64 - 5', () => {
    const args = ['--prompt', '', '--steps', '12', '--temperature', '0.8', '--top-p', '0.9'];
    const first = generator([...args, '--seed', '-5']);
    expect(first).toBe('Once upon a time, there was a little boy\n');
    expect(generator([...args, '--seed=-5'])).toBe(first);
    // In process: the sampler starts from the 64-bit state 2^64 - 5 and prints the same.
    expect(createSampler({ temperature: 0.8, topP: 0.9, topK: 0, seed: -5 }).rng.state).toBe(2n ** 64n - 5n);
    expect(sampleText({ temperature: 0.8, topP: 0.9, seed: -5 })).toBe(first);
  });

  it('the generator refuses a seed run.c would not read the same way', () => {
    for (const bad of ['1.5', '0x10']) {
      const r = generatorError(['--steps', '2', `--seed=${bad}`]);
      expect(r.status).toBe(2);
      expect(r.stderr).toContain('--seed must be a decimal integer');
    }
    const r = generatorError(['--steps', '2', '--seed', '2147483648']);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('--seed must be in -2147483648..2147483647');
  });
});

const cc = ['cc', 'gcc', 'clang'].find((c) => spawnSync(c, ['--version']).status === 0);
// run.c's arithmetic is glibc's expf; another C library's expf rounds some values differently.
const glibc = Boolean((process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header?.glibcVersionRuntime);

describe.skipIf(!cc || !glibc)('against run.c\'s sampler in C (fixtures/runc-sampler.c)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'runc-sampler-'));
  const exe = join(dir, 'runc-sampler');
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  let built = false;
  const build = () => {
    if (built) return;
    execFileSync(cc!, ['-O2', '-std=c11', '-ffp-contract=off', '-o', exe, resolve(import.meta.dirname, 'fixtures/runc-sampler.c'), '-lm']);
    built = true;
  };

  /** The oracle over rows of logits: for each row the sampled index and the probabilities' float bits. */
  function oracle(temperature: number, topP: number, seed: number, rows: Float32Array[]): { index: number; probBits: number[] }[] {
    build();
    const input = Buffer.concat([Buffer.from(Int32Array.of(rows[0].length).buffer), ...rows.map((r) => Buffer.from(r.buffer, r.byteOffset, r.byteLength))]);
    const out = execFileSync(exe, [String(temperature), String(topP), String(seed), '--probs'], { input, maxBuffer: 1 << 26 });
    return out
      .toString()
      .trim()
      .split('\n')
      .map((line) => {
        const [index, ...bits] = line.split(' ');
        return { index: Number(index), probBits: bits.map((h) => parseInt(h, 16)) };
      });
  }

  const bitsOf = (p: Float32Array) => [...new Uint32Array(p.buffer, p.byteOffset, p.length)];

  it("expf equals the C library's bit for bit", () => {
    build();
    let s = 987654321;
    const rand = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
    const xs = Float32Array.from({ length: 400_000 }, (_, i) => [-rand() * 110, -rand() * 20, (rand() - 0.5) * 180, -rand()][i % 4]);
    xs.set([-Infinity, 0, -0, NaN, -103.97, -103.3, -104, 88.7, 88.73, 89, -87.3, 1e-30]);
    const want = execFileSync(exe, ['--expf'], { input: Buffer.from(xs.buffer), maxBuffer: 1 << 26 })
      .toString()
      .trim()
      .split('\n')
      .map((h) => parseInt(h, 16));
    const got = new Float32Array(xs.length);
    xs.forEach((x, i) => (got[i] = expf(x)));
    const gotBits = bitsOf(got);
    const mismatches = want.flatMap((w, i) => (w === gotBits[i] ? [] : [`expf(${xs[i]}): want ${w.toString(16)}, got ${gotBits[i].toString(16)}`]));
    expect(mismatches.slice(0, 5)).toEqual([]);
  });

  it.each(cases)('T $temperature, top-p $topP, seed $seed: the same token at every position', (c) => {
    // Run the reference with the TypeScript sampler, keeping each position's logits; the oracle
    // then samples the same rows. Equal tokens at every row means equal trajectories.
    const rows: Float32Array[] = [];
    const sampler = createSampler({ temperature: c.temperature, topP: c.topP, topK: 0, seed: c.seed });
    const r = runGenerate((l) => {
      rows.push(Float32Array.from(l));
      return sampler.sampleLogits(l);
    });
    expect(text(r.bytes)).toBe(c.text);
    const sampled = r.tokens.slice(r.numPromptTokens);
    const want = oracle(c.temperature, c.topP, c.seed, rows).map((o) => o.index);
    // generate stops at BOS without keeping it: the oracle's last token may be that BOS.
    expect(want.slice(0, sampled.length)).toEqual(sampled);
    if (want.length > sampled.length) expect(want[sampled.length]).toBe(1);
  });

  it('bit-equal probabilities and equal choices on random logits', () => {
    let s = 12345;
    const rand = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
    const rows = Array.from({ length: 60 }, (_, k) => {
      const scale = [0.5, 3, 12, 40][k % 4];
      return Float32Array.from({ length: 512 }, () => (rand() - 0.5) * scale);
    });
    for (const [temperature, topP, seed] of [
      [0.8, 0.9, 7],
      [0.8, 1, 11],
      [1.5, 1, 13],
      [0.3, 0.95, 17],
      [1, 0.5, -3],
      [2, 0.9, 2147483647],
      [0.7, 0.99, 99],
    ]) {
      const want = oracle(temperature, topP, seed, rows);
      const sampler = createSampler({ temperature, topP, topK: 0, seed });
      rows.forEach((row, i) => {
        expect(bitsOf(probabilities(row, temperature, 0)), `T ${temperature} row ${i}`).toEqual(want[i].probBits);
        expect(sampler.sampleLogits(row), `T ${temperature} p ${topP} seed ${seed} row ${i}`).toBe(want[i].index);
      });
    }
  });
});
