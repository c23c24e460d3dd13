/** The real-engine suite in Chromium (vitest browser mode; SwiftShader WebGPU on machines without a GPU). */
import { kernelSources } from '../../src/gpu/kernel-sources.ts';
import { engineSuite } from './engine.suite.ts';

engineSuite('Chromium', () => navigator.gpu, kernelSources, {
  // The dev server serves public/ at the root and the rest of the project by its path.
  read: async (path) => {
    const url = `/${path.replace(/^public\//, '')}`;
    const response = await fetch(url);
    if (!response.ok) throw new Error(`fetching ${url} failed: ${response.status}`);
    return new Uint8Array(await response.arrayBuffer());
  },
}, false);
