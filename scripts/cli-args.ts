/** Small helpers shared by the command-line scripts. */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const builtinModelPath = resolve(projectRoot, 'public/models/stories260K.bin');
export const builtinTokenizerPath = resolve(projectRoot, 'public/models/tok512.bin');

/** Prints a message for the user and exits with status 1 (no stack trace for expected errors). */
export function fail(message: string): never {
  process.stderr.write(`error: ${message}\n`);
  process.exit(1);
}

export function readBytes(path: string, what: string): Uint8Array {
  try {
    return new Uint8Array(readFileSync(path));
  } catch (e) {
    fail(`cannot read ${what} ${path}: ${(e as Error).message}`);
  }
}

export function parseNumber(name: string, raw: string | undefined, fallback: number, opts: { integer?: boolean; min?: number; max?: number } = {}): number {
  if (raw === undefined) return fallback;
  const v = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(v)) fail(`--${name} must be a number, got ${JSON.stringify(raw)}`);
  if (opts.integer && !Number.isInteger(v)) fail(`--${name} must be an integer, got ${raw}`);
  if (opts.min !== undefined && v < opts.min) fail(`--${name} must be >= ${opts.min}, got ${raw}`);
  if (opts.max !== undefined && v > opts.max) fail(`--${name} must be <= ${opts.max}, got ${raw}`);
  return v;
}
