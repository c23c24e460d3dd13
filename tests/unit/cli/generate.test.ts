/**
 * `npm run -s generate` on bad or unusual input, run as a user runs it (the cpu backend, no GPU):
 * every bad option is one line and exit status 2, never a stack trace or the whole usage; values
 * run.c changes are changed as run.c does with a note on stderr; a prompt longer than the context
 * is refused at once with its length; a temperature too small to divide by samples greedily.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { storyText } from '../../../src/serve/story-prompts.ts';

const root = resolve(import.meta.dirname, '../../..');
const tsx = resolve(root, 'node_modules/tsx/dist/cli.mjs');

interface Result {
  status: number;
  stdout: string;
  stderr: string;
}

function generate(...args: string[]): Promise<Result> {
  return new Promise((done) => {
    execFile(process.execPath, [tsx, resolve(root, 'scripts/generate.ts'), '--quiet', ...args], { cwd: root, maxBuffer: 1 << 24 }, (error, stdout, stderr) => {
      const status = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
      done({ status, stdout, stderr });
    });
  });
}

/** The notes and errors on stderr, one per line. */
const lines = (stderr: string) => stderr.split('\n').filter((l) => l !== '');

const base = ['--prompt', 'Once upon a time', '--steps', '24'];
const timeout = 60_000;

describe('generate: bad options are one line and exit status 2', () => {
  it.each([
    [['--steps', 'abc'], '--steps must be a number, got "abc"'],
    [['--temperature', 'NaN'], '--temperature must be a number, got "NaN"'],
    [['--top-p', 'x'], '--top-p must be a number, got "x"'],
    [['--top-k', '1.5'], '--top-k must be an integer, got 1.5'],
    [['--seed', '1e3'], '--seed must be a decimal integer'],
    [['--steps'], '--steps needs a value'],
    [['--frobnicate'], "unknown option '--frobnicate'"],
    [['--backend', 'tpu'], 'unknown --backend "tpu"'],
  ])('%j', async (args, message) => {
    const r = await generate(...base, ...args);
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
    expect(lines(r.stderr)).toHaveLength(1);
    expect(r.stderr).toContain(`error: ${message}`);
    expect(r.stderr).toContain('(see --help)');
    expect(r.stderr).not.toMatch(/^\s+at |usage:/m);
  }, timeout);
});

describe('generate: negative values follow their option; run.c rules come with a note', () => {
  it('--steps -1 is run.c\'s 0, the whole context, and says so', async () => {
    const [negative, zero] = await Promise.all([generate(...base, '--temperature', '0', '--steps', '-1'), generate(...base, '--temperature', '0', '--steps', '0')]);
    expect(negative.status).toBe(0);
    expect(negative.stdout).toBe(zero.stdout);
    expect(lines(negative.stderr)).toEqual(['note: --steps -1 is negative; as run.c, it is 0: the whole context']);
    expect(zero.stderr).toBe('');
  }, timeout);

  it('--temperature -1 is run.c\'s 0, greedy, and says so', async () => {
    const [negative, zero] = await Promise.all([generate(...base, '--temperature', '-1'), generate(...base, '--temperature', '0')]);
    expect(negative.status).toBe(0);
    expect(negative.stdout).toBe(zero.stdout);
    expect(lines(negative.stderr)).toEqual(['note: --temperature -1 is negative; as run.c, it is 0: sampling greedily']);
  }, timeout);

  it('--top-p 2 is run.c\'s 0.9 and says so', async () => {
    const [outside, p09] = await Promise.all([
      generate(...base, '--temperature', '1', '--seed', '42', '--top-p', '2'),
      generate(...base, '--temperature', '1', '--seed', '42', '--top-p', '0.9'),
    ]);
    expect(outside.status).toBe(0);
    expect(outside.stdout).toBe(p09.stdout);
    expect(lines(outside.stderr)).toEqual(['note: --top-p 2 is outside 0..1; as run.c, using 0.9']);
  }, timeout);

  it('--seed -5 is run.c\'s seed 2^64 - 5, repeatable, and says so', async () => {
    const args = [...base, '--temperature', '1'];
    const [spaced, joined] = await Promise.all([generate(...args, '--seed', '-5'), generate(...args, '--seed=-5')]);
    expect(spaced.status).toBe(0);
    expect(spaced.stdout).toBe(joined.stdout);
    expect(lines(spaced.stderr)).toEqual(["note: --seed -5 is run.c's unsigned seed 2^64 - 5 = 18446744073709551611: repeatable, not the clock"]);
  }, timeout);

  it('--seed 0 is the clock, as run.c, and the note gives the seed to repeat the run', async () => {
    const r = await generate(...base, '--temperature', '1', '--seed', '0');
    expect(r.status).toBe(0);
    const seed = /^note: --seed 0 means the current time, as in run\.c: seed (\d+) \(give it to repeat this run\)$/.exec(lines(r.stderr)[0])?.[1];
    expect(seed).toBeDefined();
    expect((await generate(...base, '--temperature', '1', '--seed', seed!)).stdout).toBe(r.stdout);
  }, timeout);

  it('--prompt takes a value that starts with a dash', async () => {
    const r = await generate('--prompt', '-5 apples', '--steps', '8', '--temperature', '0');
    expect(r.status).toBe(0);
    expect(r.stdout.startsWith('-5 apples')).toBe(true);
  }, timeout);
});

describe('generate: a temperature too small to divide by', () => {
  it('--temperature 1e-45 samples greedily and says so (it was a TypeError)', async () => {
    const [tiny, greedy] = await Promise.all([generate(...base, '--temperature', '1e-45', '--seed', '3'), generate(...base, '--temperature', '0')]);
    expect(tiny.status).toBe(0);
    expect(tiny.stdout).toBe(greedy.stdout);
    expect(lines(tiny.stderr)).toEqual(['note: temperature 1e-45 is too small to divide by; sampling greedily']);
  }, timeout);
});

describe('generate: a temperature that overflows some logits', () => {
  it('--temperature 3e-39 divides, but logits of 1 or more overflow: those tokens are greedy and a note counts them', async () => {
    const [tiny, greedy] = await Promise.all([generate(...base, '--temperature', '3e-39', '--seed', '3'), generate(...base, '--temperature', '0')]);
    expect(tiny.status).toBe(0);
    expect(tiny.stdout).toBe(greedy.stdout);
    expect(lines(tiny.stderr)).toEqual([
      'note: temperature 3e-39 is too small to divide by for 20 of 20 sampled tokens (a logit / temperature overflowed float32); those were sampled greedily',
    ]);
  }, timeout);
});

describe('generate: a prompt longer than the context is refused at once with its length', () => {
  const long = storyText(100_000);

  it('a 100 KB prompt (it ran for minutes with no message)', async () => {
    const r = await generate('--prompt', long, '--temperature', '0');
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
    expect(lines(r.stderr)).toHaveLength(1);
    expect(r.stderr).toMatch(/^error: the prompt is \d{5} tokens \(BOS included\), longer than the context of stories260K\.bin: 512 tokens at most\n$/);
  }, timeout);

  it('on the webgpu backend too, before any device is needed', async () => {
    const r = await generate('--backend', 'webgpu', '--prompt', long);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^error: the prompt is \d{5} tokens \(BOS included\), longer than the context of stories260K\.bin: 512 tokens at most\n$/);
  }, timeout);

  it('a line of --prompts-file, named by its number', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'servelab-'));
    const file = join(dir, 'prompts.txt');
    writeFileSync(file, `Once upon a time\n${long.slice(0, 5000)}\n`);
    const r = await generate('--prompts-file', file, '--temperature', '0');
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(new RegExp(`^error: the prompt on line 2 of ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is \\d+ tokens \\(BOS included\\), longer than the context of stories260K\\.bin: 512 tokens at most\n$`));
  }, timeout);

  it('a prompt of exactly the context still samples one token, as run.c; one that uses up --steps gets a note', async () => {
    // 511 tokens after BOS: the story text encoded, cut at a token boundary by the CLI's own tokenizer.
    const { builtin } = await import('../model/helpers.ts');
    const { tokenizer } = builtin();
    const ids = tokenizer.encode(long, true, false).slice(0, 512);
    const prompt = tokenizer.decode(ids);
    expect(tokenizer.encode(prompt, true, false)).toHaveLength(512);
    const full = await generate('--prompt', prompt, '--steps', '0', '--temperature', '0');
    expect(full.status).toBe(0);
    expect(full.stderr).toBe('');
    expect(full.stdout.startsWith(prompt)).toBe(true);
    expect(full.stdout.length).toBeGreaterThan(prompt.length + 1); // a sampled piece, then the newline
    const used = await generate('--prompt', 'Once upon a time there', '--steps', '3', '--temperature', '0');
    expect(used.status).toBe(0);
    expect(used.stdout).toBe('Once upon a\n');
    expect(lines(used.stderr)).toEqual(['note: the prompt is 6 tokens (BOS included) and --steps is 3: as run.c, only its first 3 tokens are printed and nothing is generated']);
  }, timeout);
});

describe('generate with LoRA adapters', () => {
  it('--model-adapter tom (shipped) renames the girl; --lora NAME=DIR registers one; bad names and dirs are one line', async () => {
    const plain = await generate('--prompt', 'Once upon a time', '--steps', '30', '--temperature', '0');
    const tom = await generate('--prompt', 'Once upon a time', '--steps', '30', '--temperature', '0', '--model-adapter', 'tom');
    const mine = await generate('--prompt', 'Once upon a time', '--steps', '30', '--temperature', '0', '--lora', `mine=${resolve(root, 'public/adapters/tom')}`, '--model-adapter', 'mine');
    expect(plain.stdout).toContain('named Lily');
    expect(tom.status).toBe(0);
    expect(tom.stdout).toContain('named Tom');
    expect(mine.stdout).toBe(tom.stdout);
    const unknown = await generate(...base, '--model-adapter', 'nope');
    expect(unknown.status).toBe(2);
    expect(lines(unknown.stderr)).toEqual(['error: --model-adapter nope: no such adapter (give --lora nope=DIR, or one of: happy, noise, tom) (see --help)']);
    const badDir = await generate(...base, '--lora', 'x=/nonexistent', '--model-adapter', 'x');
    expect(badDir.status).toBe(1);
    expect(lines(badDir.stderr)).toEqual(['error: LoRA adapter x: /nonexistent/adapter_config.json does not exist (a PEFT adapter directory holds adapter_config.json and adapter_model.safetensors)']);
  }, 4 * timeout);
});

describe('generate: structured output (--response-format, --json-schema)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'servelab-json-'));
  const schemaFile = join(dir, 'kid.json');
  const schema = { type: 'object', properties: { name: { type: 'string', maxLength: 10 }, age: { type: 'integer', minimum: 1, maximum: 9 } }, required: ['name', 'age'] };
  writeFileSync(schemaFile, JSON.stringify(schema));

  it('prints the JSON alone, valid against the schema, with a note that it is complete', async () => {
    const r = await generate('--prompt', 'Lily', '--temperature', '0.8', '--seed', '3', '--json-schema', schemaFile);
    expect(r.status).toBe(0);
    const value = JSON.parse(r.stdout) as { name: string; age: number };
    expect(typeof value.name).toBe('string');
    expect(value.name.length).toBeLessThanOrEqual(10);
    expect(Number.isInteger(value.age) && value.age >= 1 && value.age <= 9).toBe(true);
    expect(lines(r.stderr)).toEqual(['note: finish_reason stop; JSON valid']);
  }, timeout);

  it('steps running out first: finish_reason length, the JSON is said to be incomplete', async () => {
    const r = await generate('--response-format', 'json_object', '--temperature', '0', '--steps', '12');
    expect(r.status).toBe(0);
    expect(r.stdout.startsWith('{')).toBe(true);
    expect(() => JSON.parse(r.stdout)).toThrow();
    expect(lines(r.stderr)[0]).toMatch(/^note: finish_reason length; JSON incomplete/);
  }, timeout);

  it.each([
    [['--response-format', 'yaml'], 'unknown --response-format "yaml" (available: json_object, json_schema)'],
    [['--response-format', 'json_schema'], '--response-format json_schema needs --json-schema FILE'],
    [['--response-format', 'json_object', '--json-schema', 'x.json'], '--json-schema goes with --response-format json_schema, not json_object'],
  ])('%j is refused: exit 2, one line', async (args, message) => {
    const r = await generate(...base, ...args);
    expect(r.status).toBe(2);
    expect(lines(r.stderr)).toEqual([`error: ${message} (see --help)`]);
  }, timeout);

  it('an invalid schema file is refused with the reason', async () => {
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ type: 'object', properties: { n: { type: 'integer', minimum: 5, maximum: 1 } } }));
    const r = await generate(...base, '--json-schema', bad);
    expect(r.status).toBe(2);
    expect(lines(r.stderr)).toEqual([`error: --json-schema ${bad}: invalid JSON schema: #/properties/n: minimum 5 is greater than maximum 1 (see --help)`]);
    const notJson = join(dir, 'nope.json');
    writeFileSync(notJson, '{type: object}');
    const r2 = await generate(...base, '--json-schema', notJson);
    expect(r2.status).toBe(2);
    expect(lines(r2.stderr)[0]).toMatch(/^error: --json-schema .*nope\.json is not JSON: /);
  }, timeout);
});

describe('generate --speculative ngram (cpu backend, through the engine)', () => {
  const fixtures = resolve(root, 'tests/fixtures');
  const goldenOnce = readFileSync(resolve(fixtures, 'stories260K.once-upon-a-time.t0.n256.txt'), 'utf8');
  const goldenNone = readFileSync(resolve(fixtures, 'stories260K.no-prompt.t0.n256.txt'), 'utf8');
  const spec = ['--speculative', 'ngram', '--num-speculative-tokens', '5', '--prompt-lookup-max', '4', '--prompt-lookup-min', '1'];

  it('with --temperature 0 prints the golden texts byte for byte, alone', async () => {
    const [once, none] = await Promise.all([
      generate('--prompt', 'Once upon a time', '--steps', '256', '--temperature', '0', ...spec),
      generate('--steps', '256', '--temperature', '0', ...spec),
    ]);
    expect(once.status).toBe(0);
    expect(once.stdout).toBe(goldenOnce);
    expect(none.stdout).toBe(goldenNone);
  }, timeout);

  it('and batched with --prompts-file, each line its golden text; the stats line reports acceptance', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'servelab-spec-'));
    const file = join(dir, 'prompts.txt');
    writeFileSync(file, 'Once upon a time\n\nOnce upon a time\n');
    const r = await new Promise<Result>((done) => {
      execFile(process.execPath, [tsx, resolve(root, 'scripts/generate.ts'), '--prompts-file', file, '--steps', '256', '--temperature', '0', ...spec], { cwd: root, maxBuffer: 1 << 24 }, (error, stdout, stderr) =>
        done({ status: error ? -1 : 0, stdout, stderr }),
      );
    });
    expect(r.status).toBe(0);
    const texts = r.stdout.trimEnd().split('\n').map((l) => (JSON.parse(l) as { text: string }).text);
    expect(texts).toEqual([goldenOnce, goldenNone, goldenOnce]);
    expect(r.stderr).toMatch(/speculative ngram \(k 5, lookup 1\.\.4\): \d+ of \d+ draft tokens accepted/);
  }, timeout);

  it('says when no drafts were proposed instead of a mean over none', async () => {
    // Five tokens after a four-token prompt: no 4-gram can recur, so nothing is ever drafted.
    const args = ['--prompt', 'Once upon a time', '--steps', '9', '--temperature', '0', '--speculative', 'ngram', '--prompt-lookup-min', '4', '--prompt-lookup-max', '4'];
    // Not generate(): that passes --quiet, which hides the stats line.
    const r = await new Promise<Result>((done) => {
      execFile(process.execPath, [tsx, resolve(root, 'scripts/generate.ts'), ...args], { cwd: root }, (error, stdout, stderr) => done({ status: error ? -1 : 0, stdout, stderr }));
    });
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/speculative ngram \(k 4, lookup 4\.\.4\): no drafts proposed/);
    expect(r.stderr).not.toMatch(/mean accepted length/);
  }, timeout);

  it('with --temperature > 0 a seed repeats its text', async () => {
    const args = ['--prompt', 'Once upon a time', '--steps', '80', '--temperature', '0.8', '--seed', '7', ...spec];
    const [a, b] = await Promise.all([generate(...args), generate(...args)]);
    expect(a.status).toBe(0);
    expect(a.stdout.length).toBeGreaterThan(40);
    expect(b.stdout).toBe(a.stdout);
  }, timeout);

  it.each([
    [['--speculative', 'eagle'], 'unknown --speculative "eagle" (available: ngram, off)'],
    [['--speculative', 'ngram', '--num-speculative-tokens', '0'], '--num-speculative-tokens must be >= 1, got 0'],
    [['--speculative', 'ngram', '--prompt-lookup-min', '5', '--prompt-lookup-max', '3'], '--prompt-lookup-min (5) must be <= --prompt-lookup-max (3)'],
    [['--num-speculative-tokens', '3'], '--num-speculative-tokens and --prompt-lookup-max/min need --speculative ngram'],
  ])('%j is one line and exit status 2', async (args, message) => {
    const r = await generate(...base, ...args);
    expect(r.status).toBe(2);
    expect(lines(r.stderr)).toHaveLength(1);
    expect(r.stderr).toContain(message);
  }, timeout);
});
