/** The kernel suite on Dawn for Node (SwiftShader's Vulkan here, see node-setup.ts). */
import { create, globals } from 'webgpu';
import { describe, expect, it } from 'vitest';
import { kernelSources } from '../../src/gpu/kernel-sources.ts';
import { loadKernelSources } from '../../src/gpu/kernel-sources.node.ts';
import { KERNEL_NAMES } from '../../src/gpu/kernel-names.ts';
import { forwardSuite } from './forward.suite.ts';
import { kernelSuite } from './kernels.suite.ts';

Object.assign(globalThis, globals);
const gpu = create([]);

describe('kernel sources', () => {
  it('the fs loader (tsx/Node scripts) returns the same WGSL as the ?raw bundle', () => {
    const fromDisk = loadKernelSources();
    for (const name of KERNEL_NAMES) expect(fromDisk[name]).toBe(kernelSources[name]);
  });
});

kernelSuite('Dawn for Node', () => gpu, kernelSources);
forwardSuite('Dawn for Node', () => gpu, kernelSources);
