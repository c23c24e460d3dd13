/**
 * GpuLoraSlots owns the LoRA adapter slots on the GPU: one storage buffer of maxLoras regions, each
 * holding one adapter, and the host-memory store of registered adapters it loads them from (a plan's
 * loraLoads: slot <- adapter name, written with one queue.writeBuffer per load before the pass).
 * Created per configure()d geometry (maxLoras, maxLoraRank) and destroyed by its executor.
 *
 *   lora [maxLoras, slotStride] f32; a slot's region:
 *     [scale, 0, 0, 0 | per layer l, per module m (LORA_MODULES order): A [R, in_m] | B [out_m, R]]
 *   R = maxLoraRank: an adapter of rank r < R fills A's first r rows and B's first r columns; the
 *   rest stays zero, so it adds nothing (kernels/lora_bgmv.wgsl sums all R).
 *
 * `moduleMask` says which (layer, module) pairs any loaded slot changes: the forward pass skips the
 * others (the mask is part of ForwardPrograms' key, so a step records its dispatches once per mask).
 */
import { LORA_MODULES, type LoraAdapter, type LoraModule, type LoraSlotLoad } from '../engine/types.ts';
import { loraModuleShape } from '../model/lora.ts';
import type { ModelConfig } from '../model/types.ts';
import { createStorageBuffer } from './buffers.ts';

/** Where a (layer, module)'s A and B start in a slot's region (floats). */
export interface LoraModuleOffsets {
  a: number;
  b: number;
}

export interface LoraLayout {
  rank: number; // R = maxLoraRank
  slotStride: number; // floats per slot
  offsets: Record<LoraModule, LoraModuleOffsets>[]; // [numLayers]
}

export function loraLayout(c: ModelConfig, maxRank: number): LoraLayout {
  let at = 4; // scale, padded to a vec4
  const offsets = Array.from({ length: c.numLayers }, () => {
    const layer = {} as Record<LoraModule, LoraModuleOffsets>;
    for (const m of LORA_MODULES) {
      const [out, inDim] = loraModuleShape(c, m);
      layer[m] = { a: at, b: at + maxRank * inDim };
      at += maxRank * (inDim + out);
    }
    return layer;
  });
  return { rank: maxRank, slotStride: at, offsets };
}

/** One adapter as a slot's region (the host side of a load). */
export function packLoraSlot(c: ModelConfig, layout: LoraLayout, adapter: LoraAdapter): Float32Array<ArrayBuffer> {
  const R = layout.rank;
  if (adapter.rank > R) throw new RangeError(`adapter ${adapter.name}: rank ${adapter.rank} exceeds the slots' rank ${R}`);
  if (adapter.layers.length > c.numLayers) throw new RangeError(`adapter ${adapter.name}: ${adapter.layers.length} layers, the model has ${c.numLayers}`);
  const region = new Float32Array(layout.slotStride);
  region[0] = adapter.scale;
  const r = adapter.rank;
  adapter.layers.forEach((layer, l) => {
    for (const m of LORA_MODULES) {
      const w = layer[m];
      if (!w) continue;
      const [out, inDim] = loraModuleShape(c, m);
      if (w.a.length !== r * inDim || w.b.length !== out * r) throw new RangeError(`adapter ${adapter.name}: layer ${l} ${m} is not [${r}, ${inDim}] / [${out}, ${r}]`);
      const o = layout.offsets[l][m];
      region.set(w.a, o.a); // A rows 0..r-1 (row length inDim in both)
      for (let i = 0; i < out; i++) for (let k = 0; k < r; k++) region[o.b + i * R + k] = w.b[i * r + k];
    }
  });
  return region;
}

export class GpuLoraSlots {
  readonly layout: LoraLayout;
  /** The slots' buffer; null when maxLoras is 0. */
  readonly buffer: GPUBuffer | null;
  /** What each slot holds (adapter name), null when empty. */
  private readonly held: (LoraAdapter | null)[];
  /** [numLayers * LORA_MODULES.length] 1 when a loaded adapter changes that (layer, module). */
  private mask: Uint8Array;
  /** The mask as a string, for program keys ("" when no slot changes anything). */
  maskKey = '';

  constructor(
    private readonly device: GPUDevice,
    private readonly c: ModelConfig,
    readonly maxLoras: number,
    maxRank: number,
    /** Registered adapters (host memory), shared with the executor across geometries. */
    private readonly store: ReadonlyMap<string, LoraAdapter>,
  ) {
    this.layout = loraLayout(c, maxRank);
    this.buffer = maxLoras > 0 ? createStorageBuffer(device, maxLoras * this.layout.slotStride * 4, 'lora slots') : null;
    this.held = new Array<LoraAdapter | null>(maxLoras).fill(null);
    this.mask = new Uint8Array(c.numLayers * LORA_MODULES.length);
  }

  /** Carries out a plan's loads (one writeBuffer each); throws for an unknown adapter or slot. */
  load(loads: readonly LoraSlotLoad[]): void {
    if (loads.length === 0) return;
    for (const { slot, adapter } of loads) {
      if (!this.buffer || !(slot >= 0 && slot < this.maxLoras)) throw new RangeError(`LoRA slot ${slot} does not exist (maxLoras ${this.maxLoras})`);
      const a = this.store.get(adapter);
      if (!a) throw new Error(`adapter ${adapter} was never registered with this executor`);
      const region = packLoraSlot(this.c, this.layout, a);
      this.device.queue.writeBuffer(this.buffer, slot * this.layout.slotStride * 4, region);
      this.held[slot] = a;
    }
    this.mask.fill(0);
    for (const a of this.held) {
      if (!a) continue;
      a.layers.forEach((layer, l) => LORA_MODULES.forEach((m, i) => layer[m] && (this.mask[l * LORA_MODULES.length + i] = 1)));
    }
    this.maskKey = this.mask.some((v) => v) ? Array.from(this.mask).join('') : '';
  }

  /** Whether a loaded adapter changes this layer's module. */
  uses(layer: number, m: LoraModule): boolean {
    return this.mask[layer * LORA_MODULES.length + LORA_MODULES.indexOf(m)] === 1;
  }

  /** Whether the slot holds an adapter. */
  isLoaded(slot: number): boolean {
    return this.held[slot] != null;
  }

  destroy(): void {
    this.buffer?.destroy();
  }
}
