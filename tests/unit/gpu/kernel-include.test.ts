/**
 * Shared WGSL (kernels/lib/): the include lines are resolved the same way by the Vite loader
 * (kernel-sources.ts, `?raw`) and the Node loader (kernel-sources.node.ts, from disk), and a bad
 * include is refused with the kernel and the file named.
 */
import { describe, expect, it } from 'vitest';
import { includedPaths, resolveIncludes } from '../../../src/gpu/kernel-include.ts';
import { KERNEL_NAMES } from '../../../src/gpu/kernel-names.ts';
import { kernelLibs, kernelSources } from '../../../src/gpu/kernel-sources.ts';
import { loadKernelSources } from '../../../src/gpu/kernel-sources.node.ts';

describe('WGSL includes', () => {
  it('replaces an include line with the shared file, and only such lines', () => {
    const libs = { 'lib/a.wgsl': 'fn a() -> u32 { return 1u; }' };
    const source = 'override N: u32;\n  // @include lib/a.wgsl\nfn main() {} // @include lib/a.wgsl is not a line of its own\n';
    expect(includedPaths(source)).toEqual(['lib/a.wgsl']);
    expect(resolveIncludes('k', source, libs)).toBe('override N: u32;\nfn a() -> u32 { return 1u; }\nfn main() {} // @include lib/a.wgsl is not a line of its own\n');
  });

  it('refuses a missing file and a shared file that includes another, naming them', () => {
    expect(() => resolveIncludes('matmul_gemv', '// @include lib/missing.wgsl', {})).toThrow(/kernel matmul_gemv includes lib\/missing\.wgsl, which is not among the shared WGSL files/);
    expect(() => resolveIncludes('k', '// @include lib/a.wgsl', { 'lib/a.wgsl': '// @include lib/b.wgsl' })).toThrow(/lib\/a\.wgsl includes another file/);
  });

  it('both loaders give the same sources, with every include resolved; the matmul kernels share the dequantization, gemv and lanes their input reads', () => {
    const fromDisk = loadKernelSources();
    for (const name of KERNEL_NAMES) {
      expect(fromDisk[name], name).toBe(kernelSources[name]);
      expect(includedPaths(kernelSources[name]), name).toEqual([]);
    }
    for (const name of ['matmul_gemv', 'matmul_lanes', 'matmul_tiled'] as const) expect(kernelSources[name]).toContain(kernelLibs['lib/quant.wgsl']);
    for (const name of ['matmul_gemv', 'matmul_lanes'] as const) {
      expect(kernelSources[name]).toContain(kernelLibs['lib/matmul_vec4.wgsl']);
      // Defined once, in the shared files.
      expect(kernelSources[name].match(/fn quantWeight4\(/g), name).toHaveLength(1);
      expect(kernelSources[name].match(/fn weight4\(/g), name).toHaveLength(1);
      expect(kernelSources[name].match(/fn silu4\(/g), name).toHaveLength(1);
    }
  });
});
