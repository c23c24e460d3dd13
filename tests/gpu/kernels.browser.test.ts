/** The kernel suite in Chromium (vitest browser mode; SwiftShader WebGPU on machines without a GPU). */
import { kernelSources } from '../../src/gpu/kernel-sources.ts';
import { forwardSuite } from './forward.suite.ts';
import { kernelSuite } from './kernels.suite.ts';

kernelSuite('Chromium', () => navigator.gpu, kernelSources);
forwardSuite('Chromium', () => navigator.gpu, kernelSources);
