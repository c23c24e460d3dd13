/**
 * Node-only loader of the kernel sources (for tsx scripts and benchmarks outside Vite, where
 * `?raw` imports do not work): reads kernels/<name>.wgsl from disk. Never import this from code
 * that runs in the browser; use kernel-sources.ts there.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { includedPaths, resolveIncludes } from './kernel-include.ts';
import { KERNEL_NAMES, type KernelName, type KernelSources } from './kernel-names.ts';

/** The repository's kernels/ folder, next to src/. */
export const defaultKernelDir: string = fileURLToPath(new URL('../../kernels/', import.meta.url));

export function loadKernelSources(kernelDir: string = defaultKernelDir): KernelSources {
  const sources = {} as Record<KernelName, string>;
  for (const name of KERNEL_NAMES) {
    const source = readFileSync(join(kernelDir, `${name}.wgsl`), 'utf8');
    // The shared files it includes, read from kernels/ (see kernel-include.ts).
    const libs = Object.fromEntries(includedPaths(source).map((path) => [path, readFileSync(join(kernelDir, path), 'utf8')]));
    sources[name] = resolveIncludes(name, source, libs);
  }
  return sources;
}
