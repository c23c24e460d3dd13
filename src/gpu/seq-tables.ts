/**
 * GpuSeqTables: every running sequence's block table kept on the GPU between steps, one row per
 * sequence, updated in place. A step writes only the entries that changed since the sequence's
 * last step (a decode step: one new entry every blockSize tokens; a copy-on-write: the replaced
 * block), all of them in ONE queue.writeBuffer of the dirty span, instead of re-uploading every
 * table every step. Paged attention reads a token's table at its row (tableOffsets).
 *
 * The executor is not told when a sequence ends, so rows are recycled least-recently-used: a
 * sequence absent from a step keeps its row (and its entries) until a newcomer needs the room;
 * the table grows (doubling its rows) only when every row is in the current step. Whatever a row
 * held before, each step compares the sequence's table with the row's mirror and rewrites what
 * differs, so a recycled or stale row is always corrected before the step reads it.
 *
 * One per KV geometry (block ids index that pool); owns and destroys its buffer.
 */
import type { ScheduledSeq } from '../engine/types.ts';
import { STORAGE_USAGE } from './buffers.ts';
import { isBlock } from './kv-pool.ts';

const INITIAL_ROWS = 64;

export class GpuSeqTables {
  /** Entries per row: the most blocks a sequence's positions can reach. */
  readonly rowEntries: number;
  private capacityRows = 0;
  private buf: GPUBuffer | null = null; // [capacityRows, rowEntries] u32 block ids
  private mirror = new Uint32Array(0); // [capacityRows, rowEntries] what the GPU holds
  private length = new Uint32Array(0); // [capacityRows] valid entries per row
  private owner = new Float64Array(0); // [capacityRows] seqId, or -1 for a free row
  private lastUsed = new Float64Array(0); // [capacityRows] step counter when last used
  private readonly rowOf = new Map<number, number>(); // seqId -> row
  private offsets = new Uint32Array(INITIAL_ROWS); // [>= seqs of a step] update()'s result, pooled
  private useCounter = 0;
  /** Bumped when the buffer is replaced (bind groups and programs bound to it are stale). */
  generation = 0;
  /** Entries written by the last update() (tests, benchmarks). */
  lastWrittenEntries = 0;

  /** `numBlocks`: the KV pool's blocks; an entry outside them is refused (RangeError) before it is written. */
  constructor(
    private readonly device: GPUDevice,
    blockSize: number,
    maxPositions: number,
    private readonly numBlocks = 2 ** 32,
  ) {
    this.rowEntries = Math.max(1, Math.ceil(maxPositions / blockSize));
    this.grow(INITIAL_ROWS);
  }

  /** The GPU buffer: [rows, rowEntries] u32. */
  get buffer(): GPUBuffer {
    return this.buf!;
  }

  /**
   * Brings the rows of this step's sequences up to date (one write of the changed span); returns
   * where each sequence's table starts ([i] for seqs[i]: row * rowEntries), in an array reused
   * by the next call. Each changed entry is checked against the pool's blocks (a RangeError;
   * the entries changed before it are still written, so the mirror stays what the GPU holds).
   */
  update(seqs: readonly ScheduledSeq[]): Uint32Array {
    if (this.offsets.length < seqs.length) this.offsets = new Uint32Array(2 ** Math.ceil(Math.log2(seqs.length)));
    const offsets = this.offsets;
    const stamp = ++this.useCounter;
    let lo = Number.POSITIVE_INFINITY;
    let hi = -1;
    let written = 0;
    try {
      for (let i = 0; i < seqs.length; i++) {
        const seq = seqs[i];
        const row = this.rowFor(seq.seqId, stamp);
        const base = row * this.rowEntries;
        const table = seq.blockTable;
        const n = Math.min(table.length, this.rowEntries);
        const mirror = this.mirror;
        const valid = this.length[row];
        for (let k = 0; k < n; k++) {
          const block = table[k];
          if (mirror[base + k] !== block || k >= valid) {
            if (!isBlock(block, this.numBlocks)) {
              this.length[row] = Math.min(valid, k); // what follows is not known to be on the GPU
              throw new RangeError(`sequence ${seq.seqId}: block ${block} is out of range (${this.numBlocks} blocks)`);
            }
            mirror[base + k] = block;
            if (base + k < lo) lo = base + k;
            if (base + k > hi) hi = base + k;
            written++;
          }
        }
        this.length[row] = n;
        offsets[i] = base;
      }
    } finally {
      this.lastWrittenEntries = written;
      if (hi >= lo) this.device.queue.writeBuffer(this.buf!, lo * 4, this.mirror, lo, hi - lo + 1);
    }
    return offsets;
  }

  destroy(): void {
    this.buf?.destroy();
    this.buf = null;
  }

  /** The row of a sequence: its own, a free one, the least recently used one, or a new one. */
  private rowFor(seqId: number, stamp: number): number {
    let row = this.rowOf.get(seqId);
    if (row === undefined) {
      row = this.freeRow(stamp);
      const previous = this.owner[row];
      if (previous >= 0) this.rowOf.delete(previous);
      this.owner[row] = seqId;
      this.length[row] = 0; // nothing of the previous owner counts as written for this one
      this.rowOf.set(seqId, row);
    }
    this.lastUsed[row] = stamp;
    return row;
  }

  private freeRow(stamp: number): number {
    let oldest = -1;
    for (let r = 0; r < this.capacityRows; r++) {
      if (this.owner[r] < 0) return r;
      if (this.lastUsed[r] !== stamp && (oldest < 0 || this.lastUsed[r] < this.lastUsed[oldest])) oldest = r;
    }
    if (oldest >= 0) return oldest;
    const first = this.capacityRows;
    this.grow(2 * this.capacityRows);
    return first;
  }

  /** A bigger buffer holding every row as the mirror has it (one upload). */
  private grow(rows: number): void {
    const mirror = new Uint32Array(rows * this.rowEntries);
    mirror.set(this.mirror);
    const length = new Uint32Array(rows);
    length.set(this.length);
    const owner = new Float64Array(rows).fill(-1);
    owner.set(this.owner);
    const lastUsed = new Float64Array(rows);
    lastUsed.set(this.lastUsed);
    const buf = this.device.createBuffer({ label: 'sequence block tables', size: mirror.byteLength, usage: STORAGE_USAGE });
    if (this.capacityRows > 0) this.device.queue.writeBuffer(buf, 0, mirror, 0, this.capacityRows * this.rowEntries);
    this.buf?.destroy();
    this.buf = buf;
    this.mirror = mirror;
    this.length = length;
    this.owner = owner;
    this.lastUsed = lastUsed;
    this.capacityRows = rows;
    this.generation++;
  }
}
