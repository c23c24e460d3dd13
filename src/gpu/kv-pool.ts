/**
 * GpuKvPool owns the paged KV cache in GPU memory for one KvGeometry: per layer one K and one V
 * buffer (split so a big model stays under maxStorageBufferBindingSize), created together and
 * destroyed together. A new geometry is a new pool; whoever holds the pool destroys the old one.
 * It also checks a step's block ids (block tables, copies, swaps) against its geometry.
 */
import type { KvGeometry, StepPlan } from '../engine/types.ts';
import { checkHostKvPool, kvDim as kvDimOf, type ModelConfig } from '../model/types.ts';
import { createStorageBuffer } from './buffers.ts';

/** Throws a RangeError when `geometry` is malformed or one layer's K (or V) would not fit a buffer. */
export function checkKvGeometry(device: GPUDevice, config: ModelConfig, geometry: KvGeometry): void {
  const { blockSize, numGpuBlocks, numCpuBlocks } = geometry;
  if (!Number.isInteger(blockSize) || blockSize <= 0) throw new RangeError(`KV geometry: blockSize must be a positive integer, got ${blockSize}`);
  if (!Number.isInteger(numGpuBlocks) || numGpuBlocks <= 0) throw new RangeError(`KV geometry: numGpuBlocks must be a positive integer, got ${numGpuBlocks}`);
  if (!Number.isInteger(numCpuBlocks) || numCpuBlocks < 0) throw new RangeError(`KV geometry: numCpuBlocks must be a non-negative integer, got ${numCpuBlocks}`);
  const layerBytes = numGpuBlocks * blockSize * kvDimOf(config) * 4;
  const limit = Math.min(device.limits.maxStorageBufferBindingSize, device.limits.maxBufferSize);
  if (layerBytes > limit) {
    throw new RangeError(`KV geometry: one layer of the pool needs ${layerBytes} bytes, over this GPU's ${limit}-byte buffer limit; use fewer blocks`);
  }
  checkHostKvPool(config, blockSize, numCpuBlocks, 'swap');
}

export class GpuKvPool {
  readonly geometry: Readonly<KvGeometry>;
  readonly k: readonly GPUBuffer[]; // [numLayers] of [numGpuBlocks, blockSize, kvDim] f32
  readonly v: readonly GPUBuffer[]; // [numLayers] of [numGpuBlocks, blockSize, kvDim] f32
  /** Floats in one block of one layer's K (or V): blockSize * kvDim. */
  readonly blockFloats: number;

  /** `geometry` must have passed checkKvGeometry. */
  constructor(device: GPUDevice, config: ModelConfig, geometry: KvGeometry) {
    this.geometry = { ...geometry };
    this.blockFloats = geometry.blockSize * kvDimOf(config);
    const layerBytes = geometry.numGpuBlocks * this.blockFloats * 4;
    const k: GPUBuffer[] = [];
    const v: GPUBuffer[] = [];
    for (let l = 0; l < config.numLayers; l++) {
      k.push(createStorageBuffer(device, layerBytes, `K cache layer ${l}`));
      v.push(createStorageBuffer(device, layerBytes, `V cache layer ${l}`));
    }
    this.k = k;
    this.v = v;
  }

  /**
   * Throws a RangeError when the plan's swaps or copies name a GPU or CPU block outside this
   * pool's geometry. (The sequences' block tables are checked by GpuSeqTables.update, entry by
   * entry as they change: an entry already on the GPU was checked when it was written.)
   */
  checkBlocks(plan: StepPlan): void {
    const g = this.geometry;
    for (const swaps of [plan.swapOut, plan.swapIn]) {
      for (const s of swaps) {
        if (!isBlock(s.gpuBlock, g.numGpuBlocks) || !isBlock(s.cpuBlock, g.numCpuBlocks)) throw new RangeError(`swap of GPU block ${s.gpuBlock} / CPU block ${s.cpuBlock} is out of range`);
      }
    }
    for (const cp of plan.copies) {
      if (!isBlock(cp.srcBlock, g.numGpuBlocks) || !isBlock(cp.dstBlock, g.numGpuBlocks)) throw new RangeError(`copy of block ${cp.srcBlock} to ${cp.dstBlock} is out of range`);
    }
  }

  destroy(): void {
    for (const b of this.k) b.destroy();
    for (const b of this.v) b.destroy();
  }
}

/** Whether `b` is a block id of a pool of `numBlocks` blocks. */
export function isBlock(b: number, numBlocks: number): boolean {
  return Number.isInteger(b) && b >= 0 && b < numBlocks;
}
