/** The real-engine suite on Dawn for Node (SwiftShader's Vulkan here, see node-setup.ts). */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { create, globals } from 'webgpu';
import { loadKernelSources } from '../../src/gpu/kernel-sources.node.ts';
import { engineSuite } from './engine.suite.ts';

Object.assign(globalThis, globals);
const gpu = create([]);
const root = resolve(import.meta.dirname, '../..');

engineSuite('Dawn for Node', () => gpu, loadKernelSources(), {
  read: async (path) => new Uint8Array(await readFile(resolve(root, path))),
});
