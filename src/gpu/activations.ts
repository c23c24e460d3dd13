/**
 * ActivationArena owns the per-step GPU buffers: the activations the forward pass writes and the
 * step inputs it reads (token ids, positions, KV slots, block tables, logit rows, block copies).
 * They are sized for a number of token rows T, logit rows R, block table entries E and copies C,
 * each rounded up to a power of two; a step that needs more replaces the whole set (the old one
 * destroyed here first). The arena destroys its current set once, in destroy().
 */
import type { BlockCopy } from '../engine/types.ts';
import { kvDim as kvDimOf, type ModelConfig } from '../model/types.ts';
import { createStorageBuffer, writeBuffer } from './buffers.ts';
import type { PackedStep } from './pack.ts';

export interface Activations {
  capacityTokens: number; // T
  capacityRows: number; // R
  capacityTableEntries: number; // E
  capacityCopies: number; // C
  x: GPUBuffer; // [T, dim] f32 residual stream
  qkv: GPUBuffer; // [T, dim + 2 kvDim] f32
  att: GPUBuffer; // [T, dim] f32 attention output
  gateUp: GPUBuffer; // [T, 2 hiddenDim] f32
  logits: GPUBuffer; // [R, vocab] f32
  argmax: GPUBuffer; // [R] u32
  tokenIds: GPUBuffer; // [T] u32
  positions: GPUBuffer; // [T] u32
  slots: GPUBuffer; // [T] u32
  tableOffsets: GPUBuffer; // [T] u32
  blockTables: GPUBuffer; // [E] u32
  logitRows: GPUBuffer; // [R] u32
  copies: GPUBuffer; // [C, 2] u32 (src block, dst block)
}

const nextPow2 = (n: number): number => 2 ** Math.ceil(Math.log2(Math.max(1, n)));

export class ActivationArena {
  private current: Activations | null = null;
  /** The buffers of `current`, each once. */
  private owned: GPUBuffer[] = [];

  constructor(
    private readonly device: GPUDevice,
    private readonly config: ModelConfig,
  ) {}

  /** The current buffers when they have room for a step of this size, else a bigger set. */
  ensure(numTokens: number, numRows: number, numTableEntries: number, numCopies: number): Activations {
    const a = this.current;
    if (a && a.capacityTokens >= numTokens && a.capacityRows >= numRows && a.capacityTableEntries >= numTableEntries && a.capacityCopies >= numCopies) {
      return a;
    }
    const c = this.config;
    const kvDim = kvDimOf(c);
    const t = nextPow2(Math.max(numTokens, a?.capacityTokens ?? 0));
    const r = nextPow2(Math.max(numRows, a?.capacityRows ?? 0));
    const e = nextPow2(Math.max(numTableEntries, a?.capacityTableEntries ?? 0));
    const cp = nextPow2(Math.max(numCopies, a?.capacityCopies ?? 0));
    this.destroy();
    const buf = (elements: number, label: string): GPUBuffer => {
      const buffer = createStorageBuffer(this.device, elements * 4, label);
      this.owned.push(buffer);
      return buffer;
    };
    this.current = {
      capacityTokens: t,
      capacityRows: r,
      capacityTableEntries: e,
      capacityCopies: cp,
      x: buf(t * c.dim, 'x'),
      qkv: buf(t * (c.dim + 2 * kvDim), 'qkv'),
      att: buf(t * c.dim, 'attention out'),
      gateUp: buf(t * 2 * c.hiddenDim, 'ffn gate|up'),
      logits: buf(r * c.vocabSize, 'logits'),
      argmax: buf(r, 'argmax'),
      tokenIds: buf(t, 'token ids'),
      positions: buf(t, 'positions'),
      slots: buf(t, 'slots'),
      tableOffsets: buf(t, 'block table offsets'),
      blockTables: buf(e, 'block tables'),
      logitRows: buf(r, 'logit rows'),
      copies: buf(cp * 2, 'block copies'),
    };
    return this.current;
  }

  /** Queues uploads of a step's inputs into `a` (from ensure() with room for them). */
  upload(a: Activations, packed: PackedStep, copies: readonly BlockCopy[]): void {
    if (packed.numTokens > 0) {
      writeBuffer(this.device, a.tokenIds, packed.tokenIds);
      writeBuffer(this.device, a.positions, packed.positions);
      writeBuffer(this.device, a.slots, packed.slots);
      writeBuffer(this.device, a.tableOffsets, packed.tableOffsets);
      writeBuffer(this.device, a.blockTables, packed.blockTables);
    }
    if (packed.logitRows.length > 0) writeBuffer(this.device, a.logitRows, packed.logitRows);
    if (copies.length > 0) {
      const pairs = new Uint32Array(copies.length * 2);
      copies.forEach((cp, i) => {
        pairs[2 * i] = cp.srcBlock;
        pairs[2 * i + 1] = cp.dstBlock;
      });
      writeBuffer(this.device, a.copies, pairs);
    }
  }

  /** Destroys the current set (if any); a later ensure() makes a new one. */
  destroy(): void {
    for (const b of this.owned) b.destroy();
    this.owned = [];
    this.current = null;
  }
}
