/**
 * Flattens a StepPlan into the typed arrays the WebGPU forward pass uploads: one row per
 * scheduled token (sequences' tokens mixed in one batch), each with its own position, KV slot and
 * block table, plus the rows whose logits are needed. Pure: no GPU calls. The executor packs into
 * pooled arrays (PackInto) with the block tables already on the GPU; without them every array is
 * new and the tables are concatenated into blockTables.
 */
import { PLACEHOLDER_TOKEN_ID, type StepPlan } from '../engine/types.ts';
import { FROM_SAMPLED } from './kernels.ts';

export interface PackedStep {
  numTokens: number;
  tokenIds: Uint32Array; // [numTokens]
  positions: Uint32Array; // [numTokens]
  slots: Uint32Array; // [numTokens] physical KV slot: block * blockSize + offset
  /** Where the token's sequence's block table starts in blockTables (or in GpuSeqTables, packed with PackInto). */
  tableOffsets: Uint32Array; // [numTokens]
  blockTables: Uint32Array; // [sum of the sequences' table lengths]; empty when packed with PackInto
  /** Token rows whose logits are needed (a sequence's last scheduled token, or its last numLogitRows). */
  logitRows: Uint32Array; // [numLogitRows]
  logitSeqIds: number[]; // [numLogitRows] a sequence with several rows appears once per row, consecutively
  /** Whether that row's full logits must come back to the CPU (non-greedy sampling). */
  logitsWanted: boolean[]; // [numLogitRows]
}

/**
 * Pooled per-token arrays to pack into (the executor's ActivationArena mirror), at least
 * numTokens long, and where each sequence's block table already lies on the GPU (GpuSeqTables).
 * With them packStep allocates no per-token arrays, returns views of these, and leaves
 * blockTables empty.
 */
export interface PackInto {
  tokenIds: Uint32Array; // [>= numTokens]
  positions: Uint32Array; // [>= numTokens]
  slots: Uint32Array; // [>= numTokens]
  tableOffsets: Uint32Array; // [>= numTokens]
  /** Where the logit rows go (the arena's section: then upload() has nothing to copy); absent: a new array. */
  logitRows?: Uint32Array; // [>= numLogitRows]
}

/**
 * Async scheduling: the logits row of the previous step whose kept token a sequence's
 * PLACEHOLDER_TOKEN_ID stands for (-1: that step kept none for it).
 */
export type KeptRowOf = (seqId: number) => number;

export function packStep(plan: StepPlan, blockSize: number, vocabSize: number, maxPositions: number, into?: PackInto, seqTableOffsets?: Uint32Array, keptRowOf?: KeptRowOf): PackedStep {
  const numTokens = plan.seqs.reduce((n, s) => n + s.tokenIds.length, 0);
  const numTableEntries = into ? 0 : plan.seqs.reduce((n, s) => n + s.blockTable.length, 0);
  const numLogitRows = plan.seqs.reduce((n, s) => n + (s.needsLogits ? Math.max(1, s.numLogitRows ?? 1) : 0), 0);
  if (into && !(seqTableOffsets && seqTableOffsets.length >= plan.seqs.length && into.tokenIds.length >= numTokens && (!into.logitRows || into.logitRows.length >= numLogitRows))) {
    throw new RangeError(`packStep: the pooled arrays have no room for ${numTokens} tokens and ${numLogitRows} logit rows of ${plan.seqs.length} sequences`);
  }
  const p: PackedStep = {
    numTokens,
    tokenIds: into ? into.tokenIds.subarray(0, numTokens) : new Uint32Array(numTokens),
    positions: into ? into.positions.subarray(0, numTokens) : new Uint32Array(numTokens),
    slots: into ? into.slots.subarray(0, numTokens) : new Uint32Array(numTokens),
    tableOffsets: into ? into.tableOffsets.subarray(0, numTokens) : new Uint32Array(numTokens),
    blockTables: new Uint32Array(numTableEntries),
    logitRows: into?.logitRows ? into.logitRows.subarray(0, numLogitRows) : new Uint32Array(numLogitRows),
    logitSeqIds: [],
    logitsWanted: [],
  };
  let row = 0;
  let tableOffset = 0;
  for (let i = 0; i < plan.seqs.length; i++) {
    const seq = plan.seqs[i];
    if (seqTableOffsets) tableOffset = seqTableOffsets[i];
    if (seq.slots.length !== seq.tokenIds.length) {
      throw new Error(`sequence ${seq.seqId}: ${seq.tokenIds.length} tokens but ${seq.slots.length} slots`);
    }
    const lastPos = seq.startPosition + seq.tokenIds.length - 1;
    if (lastPos >= maxPositions) throw new RangeError(`sequence ${seq.seqId}: position ${lastPos} is beyond the context (${maxPositions})`);
    if (Math.floor(lastPos / blockSize) >= seq.blockTable.length) {
      throw new RangeError(`sequence ${seq.seqId}: position ${lastPos} is beyond its block table of ${seq.blockTable.length} blocks`);
    }
    if (!into) p.blockTables.set(seq.blockTable, tableOffset);
    for (let k = 0; k < seq.tokenIds.length; k++) {
      let token = seq.tokenIds[k];
      if (token === PLACEHOLDER_TOKEN_ID) {
        // The embedding reads the previous step's token of this row on the device.
        const keptRow = keptRowOf ? keptRowOf(seq.seqId) : -1;
        if (keptRow < 0) throw new Error(`sequence ${seq.seqId}: a placeholder token at position ${seq.startPosition + k}, but the previous step kept no token for it`);
        token = (FROM_SAMPLED | keptRow) >>> 0;
      } else if (!(token >= 0 && token < vocabSize)) throw new RangeError(`sequence ${seq.seqId}: token id ${token} is outside the vocabulary`);
      const pos = seq.startPosition + k;
      const expected = seq.blockTable[Math.floor(pos / blockSize)] * blockSize + (pos % blockSize);
      if (seq.slots[k] !== expected) {
        throw new Error(`sequence ${seq.seqId}: slot ${seq.slots[k]} of position ${pos} disagrees with its block table (${expected})`);
      }
      p.tokenIds[row] = token;
      p.positions[row] = pos;
      p.slots[row] = seq.slots[k];
      p.tableOffsets[row] = tableOffset;
      row++;
    }
    if (seq.needsLogits && seq.tokenIds.length > 0) {
      // The trailing numLogitRows rows (a verified token and its drafts), in row order.
      const numRows = seq.numLogitRows ?? 1;
      if (!(Number.isInteger(numRows) && numRows >= 1 && numRows <= seq.tokenIds.length)) {
        throw new RangeError(`sequence ${seq.seqId}: numLogitRows ${numRows} for ${seq.tokenIds.length} tokens`);
      }
      for (let r = numRows; r >= 1; r--) {
        p.logitRows[p.logitSeqIds.length] = row - r;
        p.logitSeqIds.push(seq.seqId);
        // Sampled rows and constrained rows (masked on the CPU, greedy too) come back whole.
        p.logitsWanted.push(seq.sampling.temperature > 0 || seq.constrained === true);
      }
    }
    if (!seqTableOffsets) tableOffset += seq.blockTable.length;
  }
  if (p.logitSeqIds.length !== p.logitRows.length) p.logitRows = p.logitRows.subarray(0, p.logitSeqIds.length);
  return p;
}
