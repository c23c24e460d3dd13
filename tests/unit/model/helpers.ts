import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { expect } from 'vitest';
import { loadModel, type LoadedModel } from '../../../src/model/load.ts';
import { ModelFormatError } from '../../../src/model/types.ts';

export const root = resolve(import.meta.dirname, '../../..');
export const modelsDir = resolve(root, 'public/models');
export const fixturesDir = resolve(root, 'tests/fixtures');

export const readModelFile = (name: string): Uint8Array => new Uint8Array(readFileSync(resolve(modelsDir, name)));

let cached: LoadedModel | undefined;
/** The built-in stories260K (llama2.c .bin + tok512.bin), read once per test file. */
export function builtin(): LoadedModel {
  cached ??= loadModel(readModelFile('stories260K.bin'), 'stories260K.bin', readModelFile('tok512.bin'), 'tok512.bin');
  return cached;
}

/**
 * The golden texts: llama2.c's run.c output for stories260K, greedy (copied from ../shared/golden,
 * produced by Andrej Karpathy's llama2.c reference implementation).
 */
export const golden = {
  onceUponATime: new Uint8Array(readFileSync(resolve(fixturesDir, 'stories260K.once-upon-a-time.t0.n256.txt'))),
  noPrompt: new Uint8Array(readFileSync(resolve(fixturesDir, 'stories260K.no-prompt.t0.n256.txt'))),
};

/** The ModelFormatError `fn` throws (failing the test when it throws anything else, or nothing). */
export function formatError(fn: () => unknown): ModelFormatError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught, 'should throw').toBeInstanceOf(ModelFormatError);
  return caught as ModelFormatError;
}
