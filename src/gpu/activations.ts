/**
 * ActivationArena owns the per-step GPU buffers: the activations the forward pass writes and the
 * step inputs it reads (token ids, positions, KV slots, block table offsets, logit rows, block
 * copies). They are sized for a number of token rows T, logit rows R and copies C, each rounded
 * up to a power of two; a step that needs more replaces the whole set (the old one destroyed here
 * first). The arena destroys its current set once, in destroy(). (The block tables themselves
 * persist between steps in GpuSeqTables.)
 *
 * The inputs share ONE buffer, section by section, each section bound as its own range; their
 * CPU mirror is one pooled Uint32Array that packStep fills in place (token sections and logit rows) and
 * that upload() sends with ONE queue.writeBuffer of the used span:
 *
 *   inputs  [tokenIds T | positions T | slots T | tableOffsets T | logitRows R | copies 2C | loraSlots T] u32
 *
 * (loraSlots is sent only by steps with adapter rows: the executor fills it, upload() extends the write.)
 */
import type { BlockCopy } from '../engine/types.ts';
import { kvDim as kvDimOf, type ModelConfig } from '../model/types.ts';
import { createStorageBuffer } from './buffers.ts';
import type { PackedStep, PackInto } from './pack.ts';

/** A section of the inputs buffer, bound as a range. */
export interface InputRange {
  buffer: GPUBuffer;
  offset: number; // bytes, a multiple of 256
  size: number; // bytes
}

export interface Activations {
  capacityTokens: number; // T
  capacityRows: number; // R
  capacityCopies: number; // C
  x: GPUBuffer; // [T, dim] f32 residual stream
  qkv: GPUBuffer; // [T, dim + 2 kvDim] f32
  att: GPUBuffer; // [T, dim] f32 attention output
  gateUp: GPUBuffer; // [T, 2 hiddenDim] f32
  logits: GPUBuffer; // [R, vocab] f32
  argmax: GPUBuffer; // [R] u32
  tokenIds: InputRange; // [T] u32
  positions: InputRange; // [T] u32
  slots: InputRange; // [T] u32
  tableOffsets: InputRange; // [T] u32, where the token's sequence's row starts in GpuSeqTables
  logitRows: InputRange; // [R] u32
  copies: InputRange; // [C, 2] u32 (src block, dst block)
  loraSlots: InputRange; // [T] u32 LoRA adapter slot per token row, 0xffffffff = base model
  /** The inputs' CPU mirror, [5T + R + 2C] u32, and packStep's views into its token sections. */
  inputData: Uint32Array<ArrayBuffer>;
  into: PackInto;
  /** The CPU mirror's loraSlots section. */
  loraSlotsView: Uint32Array;
}

/** Powers of two, at least 64 elements: every section starts on a 256-byte boundary. */
const capacity = (n: number): number => Math.max(64, 2 ** Math.ceil(Math.log2(Math.max(1, n))));

export class ActivationArena {
  private current: Activations | null = null;
  /** The buffers of `current`, each once. */
  private owned: GPUBuffer[] = [];

  constructor(
    private readonly device: GPUDevice,
    private readonly config: ModelConfig,
  ) {}

  /** The current buffers when they have room for a step of this size, else a bigger set. */
  ensure(numTokens: number, numRows: number, numCopies: number): Activations {
    const a = this.current;
    if (a && a.capacityTokens >= numTokens && a.capacityRows >= numRows && a.capacityCopies >= numCopies) {
      return a;
    }
    const c = this.config;
    const kvDim = kvDimOf(c);
    const t = capacity(Math.max(numTokens, a?.capacityTokens ?? 0));
    const r = capacity(Math.max(numRows, a?.capacityRows ?? 0));
    const cp = capacity(Math.max(numCopies, a?.capacityCopies ?? 0));
    this.destroy();
    const buf = (elements: number, label: string): GPUBuffer => {
      const buffer = createStorageBuffer(this.device, elements * 4, label);
      this.owned.push(buffer);
      return buffer;
    };
    const inputWords = 5 * t + r + 2 * cp;
    const inputs = buf(inputWords, 'step inputs');
    const inputData = new Uint32Array(inputWords);
    let at = 0; // words
    const section = (words: number): { range: InputRange; view: Uint32Array } => {
      const range = { buffer: inputs, offset: at * 4, size: words * 4 };
      const view = inputData.subarray(at, at + words);
      at += words;
      return { range, view };
    };
    const tokenIds = section(t);
    const positions = section(t);
    const slots = section(t);
    const tableOffsets = section(t);
    const logitRows = section(r); // packStep writes here (PackInto.logitRows)
    const copies = section(2 * cp);
    const loraSlots = section(t);
    this.current = {
      capacityTokens: t,
      capacityRows: r,
      capacityCopies: cp,
      x: buf(t * c.dim, 'x'),
      qkv: buf(t * (c.dim + 2 * kvDim), 'qkv'),
      att: buf(t * c.dim, 'attention out'),
      gateUp: buf(t * 2 * c.hiddenDim, 'ffn gate|up'),
      logits: buf(r * c.vocabSize, 'logits'),
      argmax: buf(r, 'argmax'),
      tokenIds: tokenIds.range,
      positions: positions.range,
      slots: slots.range,
      tableOffsets: tableOffsets.range,
      logitRows: logitRows.range,
      copies: copies.range,
      loraSlots: loraSlots.range,
      loraSlotsView: loraSlots.view,
      inputData,
      into: { tokenIds: tokenIds.view, positions: positions.view, slots: slots.view, tableOffsets: tableOffsets.view, logitRows: logitRows.view },
    };
    return this.current;
  }

  /**
   * Sends a step's inputs (packed into a.into by packStep, plus the block copies) with one
   * queue.writeBuffer of the sections the step uses.
   */
  upload(a: Activations, packed: PackedStep, copies: readonly BlockCopy[], withLoraSlots = false): void {
    // Packed elsewhere than into this arena's section: copy the logit rows in.
    if (packed.logitRows.buffer !== a.inputData.buffer || packed.logitRows.byteOffset !== a.logitRows.offset) a.inputData.set(packed.logitRows, a.logitRows.offset / 4);
    const copiesAt = a.copies.offset / 4;
    copies.forEach((cp, i) => {
      a.inputData[copiesAt + 2 * i] = cp.srcBlock;
      a.inputData[copiesAt + 2 * i + 1] = cp.dstBlock;
    });
    const end = withLoraSlots ? a.loraSlots.offset / 4 + packed.numTokens
      : copies.length > 0 ? copiesAt + 2 * copies.length
      : packed.logitRows.length > 0 ? a.logitRows.offset / 4 + packed.logitRows.length
      : packed.numTokens > 0 ? a.tableOffsets.offset / 4 + packed.numTokens
      : 0;
    if (end > 0) this.device.queue.writeBuffer(a.tokenIds.buffer, 0, a.inputData, 0, end);
  }

  /** Destroys the current set (if any); a later ensure() makes a new one. */
  destroy(): void {
    for (const b of this.owned) b.destroy();
    this.owned = [];
    this.current = null;
  }
}
