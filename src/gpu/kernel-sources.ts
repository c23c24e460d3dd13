/**
 * The WGSL source of every kernel in kernels/, bundled by Vite (`?raw`; also works under Vitest).
 * Scripts run by tsx/Node outside Vite cannot import `?raw`: they use
 * kernel-sources.node.ts (same record, read from disk). KernelRegistry takes either.
 */
import argmax from '../../kernels/argmax.wgsl?raw';
import blockCopy from '../../kernels/block_copy.wgsl?raw';
import embedding from '../../kernels/embedding.wgsl?raw';
import loraBgmv from '../../kernels/lora_bgmv.wgsl?raw';
import matmulGemv from '../../kernels/matmul_gemv.wgsl?raw';
import matmulLanes from '../../kernels/matmul_lanes.wgsl?raw';
import matmulTiled from '../../kernels/matmul_tiled.wgsl?raw';
import pagedAttention from '../../kernels/paged_attention.wgsl?raw';
import rmsnorm from '../../kernels/rmsnorm.wgsl?raw';
import ropeKvWrite from '../../kernels/rope_kv_write.wgsl?raw';
import quantLib from '../../kernels/lib/quant.wgsl?raw';
import matmulVec4Lib from '../../kernels/lib/matmul_vec4.wgsl?raw';
import { resolveIncludes, type KernelLibs } from './kernel-include.ts';
import type { KernelName, KernelSources } from './kernel-names.ts';

/** kernels/lib/: the WGSL the kernels include (see kernel-include.ts). */
export const kernelLibs: KernelLibs = { 'lib/quant.wgsl': quantLib, 'lib/matmul_vec4.wgsl': matmulVec4Lib };

const raw = {
  argmax,
  block_copy: blockCopy,
  embedding,
  lora_bgmv: loraBgmv,
  matmul_gemv: matmulGemv,
  matmul_lanes: matmulLanes,
  matmul_tiled: matmulTiled,
  paged_attention: pagedAttention,
  rmsnorm,
  rope_kv_write: ropeKvWrite,
} satisfies Record<KernelName, string>;

export const kernelSources: KernelSources = Object.fromEntries(
  Object.entries(raw).map(([name, source]) => [name, resolveIncludes(name, source, kernelLibs)]),
) as Record<KernelName, string>;
