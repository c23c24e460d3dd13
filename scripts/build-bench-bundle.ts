/**
 * Builds dist-node/bench.mjs: the benchmark CLI (scripts/bench.ts, the real engine included) as
 * one self-contained ES module that imports only `webgpu`, with the WGSL kernels inlined. That is
 * what travels to a machine with a real GPU (../shared/device/README.md):
 *
 *   npm run bench:bundle
 *   VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json node dist-node/bench.mjs scaling --backend webgpu
 *   (on the GPU machine)  . .devkit/unpack.sh && node dist-node/bench.mjs scaling --backend webgpu --json $OUT/scaling.json
 *                         node dist-node/bench.mjs overhead --json $OUT/overhead.json   (host time per step by phase)
 */
import { build, type Plugin } from 'esbuild';
import { resolve } from 'node:path';
import { loadKernelSources } from '../src/gpu/kernel-sources.node.ts';
import { projectRoot } from './cli-args.ts';

/** Replaces the fs-reading kernel loader with the sources themselves. */
const inlineKernels: Plugin = {
  name: 'inline-kernels',
  setup(b) {
    b.onLoad({ filter: /kernel-sources\.node\.ts$/ }, () => {
      // Read and with their includes resolved, as the Node loader does.
      const sources = loadKernelSources(resolve(projectRoot, 'kernels'));
      return {
        contents: `const sources = ${JSON.stringify(sources)};\nexport const defaultKernelDir = '(inlined)';\nexport function loadKernelSources() { return { ...sources }; }\n`,
        loader: 'ts',
      };
    });
  },
};

await build({
  entryPoints: [resolve(projectRoot, 'scripts/bench.ts')],
  outfile: resolve(projectRoot, 'dist-node/bench.mjs'),
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  external: ['webgpu'],
  plugins: [inlineKernels],
  logLevel: 'warning',
  banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" },
});
process.stdout.write('wrote dist-node/bench.mjs\n');
