/**
 * CpuSwapPool owns the KV swap space in CPU memory (ordinary Float32Arrays, per layer and per
 * K/V, nothing to destroy) and moves blocks between it and a GpuKvPool:
 *   swapOut: GPU -> CPU, one copy per block, layer and K/V into one staging buffer, its own submit
 *            and one map, so the blocks leave GPU memory before the step can overwrite them
 *            (the staging buffer is created and destroyed here);
 *   swapIn:  CPU -> GPU with queue.writeBuffer, ahead of the step that reads them.
 */
import type { BlockSwap } from '../engine/types.ts';
import { BufferUsage, MAP_MODE_READ, writeBuffer } from './buffers.ts';
import type { GpuKvPool } from './kv-pool.ts';

export class CpuSwapPool {
  readonly k: readonly Float32Array[]; // [numLayers] of [numCpuBlocks, blockSize, kvDim] f32
  readonly v: readonly Float32Array[]; // [numLayers] of [numCpuBlocks, blockSize, kvDim] f32

  /** Swap space matching `pool`'s geometry (numCpuBlocks blocks of pool.blockFloats per layer). */
  constructor(pool: GpuKvPool) {
    const floats = pool.geometry.numCpuBlocks * pool.blockFloats;
    this.k = Array.from({ length: pool.k.length }, () => new Float32Array(floats));
    this.v = Array.from({ length: pool.v.length }, () => new Float32Array(floats));
  }

  /** Reads `moves`' GPU blocks of every layer back into their CPU blocks. */
  async swapOut(device: GPUDevice, pool: GpuKvPool, moves: readonly BlockSwap[]): Promise<void> {
    const blockFloats = pool.blockFloats;
    const blockBytes = blockFloats * 4;
    const numLayers = pool.k.length;
    const staging = device.createBuffer({
      label: 'swap-out staging',
      size: moves.length * numLayers * 2 * blockBytes,
      usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST,
    });
    const encoder = device.createCommandEncoder({ label: 'swap out' });
    let offset = 0;
    for (const s of moves) {
      for (let l = 0; l < numLayers; l++) {
        encoder.copyBufferToBuffer(pool.k[l], s.gpuBlock * blockBytes, staging, offset, blockBytes);
        encoder.copyBufferToBuffer(pool.v[l], s.gpuBlock * blockBytes, staging, offset + blockBytes, blockBytes);
        offset += 2 * blockBytes;
      }
    }
    device.queue.submit([encoder.finish()]);
    try {
      await staging.mapAsync(MAP_MODE_READ);
      const data = new Float32Array(staging.getMappedRange());
      let o = 0;
      for (const s of moves) {
        for (let l = 0; l < numLayers; l++) {
          this.k[l].set(data.subarray(o, o + blockFloats), s.cpuBlock * blockFloats);
          this.v[l].set(data.subarray(o + blockFloats, o + 2 * blockFloats), s.cpuBlock * blockFloats);
          o += 2 * blockFloats;
        }
      }
    } finally {
      staging.destroy();
    }
  }

  /** Queues uploads of `moves`' CPU blocks of every layer into their GPU blocks. */
  swapIn(device: GPUDevice, pool: GpuKvPool, moves: readonly BlockSwap[]): void {
    const blockFloats = pool.blockFloats;
    for (const s of moves) {
      for (let l = 0; l < pool.k.length; l++) {
        const from = s.cpuBlock * blockFloats;
        writeBuffer(device, pool.k[l], this.k[l].subarray(from, from + blockFloats), s.gpuBlock * blockFloats * 4);
        writeBuffer(device, pool.v[l], this.v[l].subarray(from, from + blockFloats), s.gpuBlock * blockFloats * 4);
      }
    }
  }
}
