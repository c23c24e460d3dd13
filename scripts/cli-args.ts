/** Small helpers shared by the command-line scripts. */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, type ParseArgsConfig } from 'node:util';

export const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const builtinModelPath = resolve(projectRoot, 'public/models/stories260K.bin');
export const builtinTokenizerPath = resolve(projectRoot, 'public/models/tok512.bin');

/** Prints a message for the user and exits with status 1 (no stack trace for expected errors). */
export function fail(message: string): never {
  process.stderr.write(`error: ${message}\n`);
  process.exit(1);
}

/**
 * A bad command line: one line naming the problem and where to look, exit status 2 (the usual
 * status for a usage error), no usage dump and no stack trace.
 */
export function usageError(message: string): never {
  process.stderr.write(`error: ${message} (see --help)\n`);
  process.exit(2);
}

/** A one-line note on stderr about how an option was read (a run.c rule applied, say). */
export function notice(message: string): void {
  process.stderr.write(`note: ${message}\n`);
}

type Options = NonNullable<ParseArgsConfig['options']>;

/**
 * The next argument is the value of an option that takes one, whatever it starts with, unless it
 * is a long option (then the value is missing): `--steps -1`, `--seed -5` and `--prompt -x` become `--steps=-1`,
 * `--seed=-5` and `--prompt=-x` (util.parseArgs would refuse them as ambiguous).
 */
export function joinOptionValues(argv: readonly string[], options: Options): string[] {
  const takesValue = new Set(Object.entries(options).filter(([, o]) => o.type === 'string').map(([name]) => `--${name}`));
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      out.push(...argv.slice(i));
      break;
    }
    if (!takesValue.has(a)) out.push(a);
    else if (i + 1 < argv.length && !argv[i + 1].startsWith('--')) out.push(`${a}=${argv[++i]}`);
    else usageError(`${a} needs a value (${a}=VALUE for a value that starts with --)`);
  }
  return out;
}

/** util.parseArgs (strict, no positionals) with negative values allowed and one-line errors. */
export function parseCommandLine<O extends Options>(argv: readonly string[], options: O) {
  try {
    return parseArgs({ args: joinOptionValues(argv, options), options, strict: true, allowPositionals: false }).values;
  } catch (e) {
    // parseArgs explains over several lines; its first sentence names the problem.
    const first = (e as Error).message.split('\n')[0].replace(/\. To specify .*$/, '').replace(/\.$/, '');
    usageError(first.charAt(0).toLowerCase() + first.slice(1));
  }
}

export function readBytes(path: string, what: string): Uint8Array {
  try {
    return new Uint8Array(readFileSync(path));
  } catch (e) {
    fail(`cannot read ${what} ${path}: ${(e as Error).message}`);
  }
}

/** A numeric option's value; anything else is a usage error (exit status 2). */
export function parseNumber(name: string, raw: string | undefined, fallback: number, opts: { integer?: boolean; min?: number; max?: number } = {}): number {
  if (raw === undefined) return fallback;
  const v = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(v)) usageError(`--${name} must be a number, got ${JSON.stringify(raw)}`);
  if (opts.integer && !Number.isInteger(v)) usageError(`--${name} must be an integer, got ${raw}`);
  if (opts.min !== undefined && v < opts.min) usageError(`--${name} must be >= ${opts.min}, got ${raw}`);
  if (opts.max !== undefined && v > opts.max) usageError(`--${name} must be <= ${opts.max}, got ${raw}`);
  return v;
}
