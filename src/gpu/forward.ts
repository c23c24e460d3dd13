/**
 * The forward pass of one engine step, recorded into the step's single compute pass: every
 * scheduled token of every sequence is one row (prefill chunks and decode tokens mixed), and K/V
 * are read and written through each token's block table. Owns no buffers: it reads the weights
 * (GpuWeights), the KV pool (GpuKvPool), the sequences' block tables (GpuSeqTables) and the
 * step's activations and inputs (ActivationArena).
 *
 *   [block_copy per layer, for copy-on-write]
 *   embedding
 *   per layer: matmul qkv (fused RMSNorm) · rope_kv_write · paged_attention · matmul wo (+= x)
 *              (a decode step, each sequence one token: rope_kv_write done inside paged_attention)
 *              · matmul w1|w3 (fused RMSNorm) · matmul w2 (fused SwiGLU, += x)
 *              with adapter rows (LoRA): after each projection, lora_bgmv adds every row's own
 *              scale · B (A input) for the (layer, module)s a loaded adapter changes (base rows skip)
 *   matmul logits for the rows that need them (gathered, fused final RMSNorm) · argmax
 *
 * ForwardPrograms keeps that recording per step shape: a step of the same shape (token rows,
 * logit rows, copies) on the same buffers replays it (StepEncoder.replay) instead of planning and
 * looking up its dispatches again (33 for stories260K, 28 in a decode step); only what changed per step (the inputs) is uploaded.
 */
import { headSize as headSizeOf, kvDim as kvDimOf, type ModelConfig } from '../model/types.ts';
import type { LoraModule } from '../engine/types.ts';
import type { Activations } from './activations.ts';
import {
  encodeArgmax,
  encodeBlockCopy,
  encodeEmbedding,
  encodeLoraBgmv,
  encodeMatmul,
  encodePagedAttention,
  encodeRopeKvWrite,
} from './kernels.ts';
import type { GpuKvPool } from './kv-pool.ts';
import type { GpuSeqTables } from './seq-tables.ts';
import type { GpuLoraSlots } from './lora-slots.ts';
import { ProgramRecorder, type DispatchTarget, type GpuRuntime, type ResolvedDispatch } from './step.ts';
import type { KernelTuning } from './tuning.ts';
import type { GpuWeights } from './weights.ts';

export interface ForwardStep {
  numTokens: number; // rows of x: every scheduled token
  numRows: number; // rows that need logits (gathered through act.logitRows)
  numCopies: number; // copy-on-write block copies (in act.copies)
  /** LoRA: the adapter slots when some row uses one (rows' slots in act.loraSlots); null: a base-only step. */
  lora: GpuLoraSlots | null;
  /**
   * Rotate and write K/V inside paged_attention (with the tuning's fuseRopeKv) instead of a
   * rope_kv_write dispatch. Only for a step where each token is its sequence's only one (a decode
   * step: no token reads a slot another one writes). Absent: false.
   */
  fuseRopeKv?: boolean;
  /**
   * Async scheduling: the previous step's kept tokens, which token ids FROM_SAMPLED | row read
   * (the executor's buffer; absent: none, as in the warm-up).
   */
  sampled?: GPUBuffer;
}

/** Records the step; true when it recorded logits and argmax (numRows rows in a.logits, a.argmax). */
export function encodeForward(
  step: DispatchTarget,
  c: ModelConfig,
  w: GpuWeights,
  kv: GpuKvPool,
  tables: GpuSeqTables,
  a: Activations,
  n: ForwardStep,
): boolean {
  const dim = c.dim;
  const kvDim = kvDimOf(c);
  const headSize = headSizeOf(c);
  const blockSize = kv.geometry.blockSize;
  const qkvStride = dim + 2 * kvDim;
  const T = n.numTokens;
  const fuseRopeKv = n.fuseRopeKv === true && step.tuning.fuseRopeKv;

  // copy-on-write: each copied block's K and V, every layer, before anything writes into them
  if (n.numCopies > 0) {
    for (let l = 0; l < c.numLayers; l++) {
      encodeBlockCopy(step, { copies: a.copies, kCache: kv.k[l], vCache: kv.v[l], numCopies: n.numCopies, kvDim, blockSize });
    }
  }
  if (T === 0) return false;

  // LoRA of one (layer, module), when a loaded adapter changes it: y[:, cols] += scale_row · B (A input_row)
  const slots = n.lora;
  type LoraIo = Pick<Parameters<typeof encodeLoraBgmv>[1], 'x' | 'y' | 'inDim' | 'outDim' | 'yStride' | 'yOffset' | 'norm' | 'swigluInput'>;
  const lora = (m: LoraModule, layer: number, io: LoraIo): void => {
    if (!slots?.buffer || !slots.uses(layer, m)) return;
    const o = slots.layout.offsets[layer][m];
    encodeLoraBgmv(step, { ...io, lora: slots.buffer, rowSlots: a.loraSlots, rows: T, rank: slots.layout.rank, slotStride: slots.layout.slotStride, aOffset: o.a, bOffset: o.b });
  };

  // x = embedding[token]
  encodeEmbedding(step, { tokenIds: a.tokenIds, embedding: w.embedding.buffer, weightType: w.embedding.type, out: a.x, numTokens: T, dim, sampled: n.sampled });

  for (let l = 0; l < c.numLayers; l++) {
    const lw = w.layers[l];
    // qkv = rmsnorm(x; rmsAtt) · [wq; wk; wv]ᵀ
    encodeMatmul(step, { x: a.x, w: lw.wqkv.buffer, weightType: lw.wqkv.type, y: a.qkv, rows: T, inDim: dim, outDim: qkvStride, norm: { weight: lw.rmsAtt, eps: c.normEps } });
    const attNorm = { weight: lw.rmsAtt, eps: c.normEps };
    lora('q', l, { x: a.x, y: a.qkv, inDim: dim, outDim: dim, yStride: qkvStride, yOffset: 0, norm: attNorm });
    lora('k', l, { x: a.x, y: a.qkv, inDim: dim, outDim: kvDim, yStride: qkvStride, yOffset: dim, norm: attNorm });
    lora('v', l, { x: a.x, y: a.qkv, inDim: dim, outDim: kvDim, yStride: qkvStride, yOffset: dim + kvDim, norm: attNorm });
    // rotate q in place; write rotated k and v into this layer's cache at each token's slot
    // (a decode step: paged_attention does it, one dispatch fewer)
    if (!fuseRopeKv) {
      encodeRopeKvWrite(step, { qkv: a.qkv, positions: a.positions, slots: a.slots, ropeTable: w.ropeTable, kCache: kv.k[l], vCache: kv.v[l], numTokens: T, dim, kvDim, headSize });
    }
    // att = attention(q, this layer's cache), each token over its own positions via its block table
    encodePagedAttention(step, {
      q: a.qkv,
      kCache: kv.k[l],
      vCache: kv.v[l],
      blockTables: tables.buffer,
      blockTableOffsets: a.tableOffsets,
      positions: a.positions,
      out: a.att,
      numTokens: T,
      numHeads: c.numHeads,
      numKvHeads: c.numKvHeads,
      headSize,
      blockSize,
      qStride: qkvStride,
      ropeTable: fuseRopeKv ? w.ropeTable : undefined,
    });
    // x += att · woᵀ
    encodeMatmul(step, { x: a.att, w: lw.wo.buffer, weightType: lw.wo.type, y: a.x, rows: T, inDim: dim, outDim: dim, accumulate: true });
    lora('o', l, { x: a.att, y: a.x, inDim: dim, outDim: dim });
    // gateUp = rmsnorm(x; rmsFfn) · [w1; w3]ᵀ
    encodeMatmul(step, { x: a.x, w: lw.w13.buffer, weightType: lw.w13.type, y: a.gateUp, rows: T, inDim: dim, outDim: 2 * c.hiddenDim, norm: { weight: lw.rmsFfn, eps: c.normEps } });
    const ffnNorm = { weight: lw.rmsFfn, eps: c.normEps };
    lora('w1', l, { x: a.x, y: a.gateUp, inDim: dim, outDim: c.hiddenDim, yStride: 2 * c.hiddenDim, yOffset: 0, norm: ffnNorm });
    lora('w3', l, { x: a.x, y: a.gateUp, inDim: dim, outDim: c.hiddenDim, yStride: 2 * c.hiddenDim, yOffset: c.hiddenDim, norm: ffnNorm });
    // x += (silu(gate) * up) · w2ᵀ
    encodeMatmul(step, { x: a.gateUp, w: lw.w2.buffer, weightType: lw.w2.type, y: a.x, rows: T, inDim: c.hiddenDim, outDim: dim, swigluInput: true, accumulate: true });
    lora('w2', l, { x: a.gateUp, y: a.x, inDim: c.hiddenDim, outDim: dim, swigluInput: true });
  }
  if (n.numRows === 0) return false;

  // logits = rmsnorm(x[logitRows]; rmsFinal) · wclsᵀ; argmax per row
  encodeMatmul(step, {
    x: a.x,
    w: w.wcls.buffer,
    weightType: w.wcls.type,
    y: a.logits,
    rows: n.numRows,
    inDim: dim,
    outDim: c.vocabSize,
    norm: { weight: w.rmsFinal, eps: c.normEps },
    rowIds: a.logitRows,
  });
  encodeArgmax(step, { logits: a.logits, out: a.argmax, numRows: n.numRows, vocabSize: c.vocabSize });
  return true;
}

/** One step shape's forward pass, resolved (see ProgramRecorder). */
export interface ForwardProgram {
  readonly dispatches: readonly ResolvedDispatch[];
  /** Whether it ends with logits and argmax (numRows rows in a.logits, a.argmax). */
  readonly hasLogits: boolean;
}

/** Step shapes kept (least recently used dropped first): decode batches and prefill chunk sizes. */
const MAX_PROGRAMS = 64;

/**
 * The forward pass recorded once per step shape and replayed. Valid for one set of buffers: the
 * cache empties itself when the activation set, the KV pool, the block tables' buffer or the
 * runtime's parameter generation or the kept-tokens buffer changes, or the runtime's tuning (a
 * warm-up's first tier ending) (the weights live as long as the executor that holds this cache). Owns no buffers.
 */
export class ForwardPrograms {
  private readonly programs = new Map<string, ForwardProgram>(); // key `${numTokens},${numRows},${numCopies},${fuseRopeKv}`
  private act: Activations | null = null;
  private kv: GpuKvPool | null = null;
  private tables: GpuSeqTables | null = null;
  private tablesGeneration = -1;
  private paramsGeneration = -1;
  private sampled: GPUBuffer | undefined = undefined;
  private tuning: Readonly<KernelTuning> | null = null;
  /** Programs recorded (cache misses), for tests and benchmarks. */
  numRecorded = 0;

  constructor(
    private readonly runtime: GpuRuntime,
    private readonly c: ModelConfig,
    private readonly w: GpuWeights,
  ) {}

  /** The program of this step shape; call after runtime.beginStep() (which may start a new parameter generation). */
  get(kv: GpuKvPool, tables: GpuSeqTables, a: Activations, n: ForwardStep): ForwardProgram {
    if (
      a !== this.act ||
      kv !== this.kv ||
      tables !== this.tables ||
      tables.generation !== this.tablesGeneration ||
      this.runtime.paramsGeneration !== this.paramsGeneration ||
      n.sampled !== this.sampled ||
      this.runtime.tuning !== this.tuning
    ) {
      this.programs.clear();
      this.tuning = this.runtime.tuning;
      this.sampled = n.sampled;
      this.act = a;
      this.kv = kv;
      this.tables = tables;
      this.tablesGeneration = tables.generation;
      this.paramsGeneration = this.runtime.paramsGeneration;
    }
    // A LoRA step also keys on which (layer, module)s the loaded adapters change (their dispatches).
    const key = `${n.numTokens},${n.numRows},${n.numCopies},${n.fuseRopeKv === true}${n.lora ? `,${n.lora.maskKey}` : ''}`;
    let program = this.programs.get(key);
    if (program) {
      this.programs.delete(key); // re-inserted below: most recently used last
    } else {
      const recorder = new ProgramRecorder(this.runtime);
      const hasLogits = encodeForward(recorder, this.c, this.w, kv, tables, a, n);
      program = { dispatches: recorder.dispatches, hasLogits };
      this.numRecorded++;
      if (this.programs.size >= MAX_PROGRAMS) this.programs.delete(this.programs.keys().next().value!);
    }
    this.programs.set(key, program);
    return program;
  }
}
