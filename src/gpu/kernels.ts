/**
 * Typed entry points for every kernel in kernels/: each `planX(args)` turns shapes and buffers
 * into a DispatchPlan (kernel name, named bindings, workgroup counts by the kernel's dispatch
 * formula, override constants, params); `encodeX(step, args)` records it into a step.
 * Plans can also be compiled ahead of the first step with warmUp(). Workgroup sizes come from a
 * KernelTuning (tuning.ts): `encodeX` uses the step's runtime tuning, `planX(args, tuning)` takes
 * one (default GPU_TUNING).
 *
 * Buffer shape conventions (all f32 unless noted; T = tokens of the step, rows of different
 * sequences mixed):
 *   activations  [T, width]           rows in the step's token order
 *   weights      [out, in]            row-major as in llama2.c; f32, or ggml Q8_0 / Q4_0 blocks of
 *                                     32 weights of a row (weightType; in a multiple of 32)
 *   K / V cache  [numBlocks * blockSize, kvDim] per layer; slot = block * blockSize + offset
 *   qkv          [T, dim + 2 * kvDim] the fused Q|K|V projection output (W = [wq; wk; wv])
 *   ffn gate/up  [T, 2 * hiddenDim]   the fused W1|W3 projection output (W = [w1; w3])
 *
 * One layer of the forward pass in 6 dispatches (see the report in tests/gpu and the header of
 * each kernel):
 *   matmul   qkv  = rmsnorm(x; rmsAtt) · [wq;wk;wv]ᵀ          (norm: rmsAtt)
 *   ropeKvWrite   rotate q in qkv, write rotated k and v into this layer's cache slots
 *   pagedAttention att = attention(q of qkv, cache, block tables)   (qStride = dim + 2 kvDim)
 *   matmul   x   += att · woᵀ                                  (accumulate)
 *   matmul   gu   = rmsnorm(x; rmsFfn) · [w1;w3]ᵀ            (norm: rmsFfn)
 *   matmul   x   += (silu(g) * u) · w2ᵀ                       (swigluInput, accumulate)
 * then: matmul logits = rmsnorm(x[rowIds]; rmsFinal) · wclsᵀ (norm + rowIds), argmax.
 */
import type { WeightType } from '../model/quant.ts';
import type { KernelName } from './kernel-names.ts';
import type { BufferBinding, KernelRegistry, OverrideValues } from './registry.ts';
import type { DispatchTarget, Workgroups } from './step.ts';
import { GPU_TUNING, type KernelTuning } from './tuning.ts';

export interface DispatchPlan {
  kernel: KernelName;
  bindings: Record<string, BufferBinding | undefined>;
  workgroups: Workgroups;
  overrides: OverrideValues;
  params?: Record<string, number>;
}

export function encodePlan(step: DispatchTarget, plan: DispatchPlan): void {
  step.dispatch(plan.kernel, plan.bindings, plan.workgroups, { overrides: plan.overrides, params: plan.params });
}

/** Compiles the pipelines of these plans without blocking (before the first step). */
export async function warmUp(registry: KernelRegistry, plans: readonly DispatchPlan[]): Promise<void> {
  await Promise.all(plans.map((p) => registry.pipelineAsync(p.kernel, p.overrides)));
}

const ceilDiv = (a: number, b: number): number => Math.ceil(a / b);

/** The WTYPE override of the kernels that read weights (matmul_gemv, matmul_tiled, embedding). */
export const WTYPE: Readonly<Record<WeightType, number>> = { f32: 0, q8_0: 1, q4_0: 2 };

function checkWeightType(kernel: string, type: WeightType, inDim: number): void {
  if (!(type in WTYPE)) throw new RangeError(`${kernel}: unknown weight type ${String(type)}`);
  if (type !== 'f32' && inDim % 32 !== 0) {
    throw new RangeError(`${kernel}: ${type} weights need rows that are a multiple of 32, got ${inDim}`);
  }
}
const nextPow2 = (n: number): number => 2 ** Math.ceil(Math.log2(Math.max(1, n)));

function assertPositiveInts(kernel: string, values: Record<string, number>): void {
  for (const [k, v] of Object.entries(values)) {
    if (!Number.isInteger(v) || v < 0) throw new RangeError(`${kernel}: ${k} must be a non-negative integer, got ${v}`);
  }
}

// ---------------------------------------------------------------------------------------------

export interface EmbeddingArgs {
  tokenIds: BufferBinding; // [numTokens] u32
  embedding: BufferBinding; // [vocabSize, dim] f32, or [vocabSize, dim / 32] blocks
  out: BufferBinding; // [numTokens, dim]
  numTokens: number;
  dim: number;
  /** How the embedding is stored (default f32). */
  weightType?: WeightType;
  /**
   * Async scheduling: the previous step's sampled tokens [rows] u32, read for token ids
   * 0x80000000 | row (FROM_SAMPLED). Absent: tokenIds is bound in its place (no id has the bit).
   */
  sampled?: BufferBinding;
}

/** embedding.wgsl: a token id with this bit set is the previous step's token of logits row (id & ~bit). */
export const FROM_SAMPLED = 0x80000000;

/** kernels/embedding.wgsl: dispatch (numTokens). */
export function planEmbedding(a: EmbeddingArgs, tuning: Readonly<KernelTuning> = GPU_TUNING): DispatchPlan {
  assertPositiveInts('embedding', { numTokens: a.numTokens, dim: a.dim });
  const weightType = a.weightType ?? 'f32';
  checkWeightType('embedding', weightType, a.dim);
  return {
    kernel: 'embedding',
    bindings: { tokenIds: a.tokenIds, emb: a.embedding, x: a.out, sampled: a.sampled ?? a.tokenIds },
    workgroups: [a.numTokens],
    overrides: { DIM: a.dim, WTYPE: WTYPE[weightType], WG: tuning.rowThreads },
  };
}

export const encodeEmbedding = (step: DispatchTarget, a: EmbeddingArgs): void => encodePlan(step, planEmbedding(a, step.tuning));

// ---------------------------------------------------------------------------------------------

export interface RmsNormArgs {
  x: BufferBinding; // [numRows, dim]
  weight: BufferBinding; // [dim]
  out: BufferBinding; // [numRows, dim], not aliasing x
  numRows: number;
  dim: number;
  eps: number;
}

/** kernels/rmsnorm.wgsl: dispatch (numRows). */
export function planRmsNorm(a: RmsNormArgs, tuning: Readonly<KernelTuning> = GPU_TUNING): DispatchPlan {
  assertPositiveInts('rmsnorm', { numRows: a.numRows, dim: a.dim });
  return {
    kernel: 'rmsnorm',
    bindings: { x: a.x, w: a.weight, out: a.out },
    workgroups: [a.numRows],
    overrides: { DIM: a.dim, EPS: a.eps, WG: tuning.rowThreads },
  };
}

export const encodeRmsNorm = (step: DispatchTarget, a: RmsNormArgs): void => encodePlan(step, planRmsNorm(a, step.tuning));

// ---------------------------------------------------------------------------------------------

export interface MatmulArgs {
  x: BufferBinding; // [numXRows, xStride]
  w: BufferBinding; // [outDim, inDim] f32, or [outDim, inDim / 32] blocks (weightType)
  y: BufferBinding; // [rows, yStride]
  /** Output rows (= X rows, or rowIds.length with rowIds). */
  rows: number;
  inDim: number;
  outDim: number;
  /** Row stride of X in floats (default inDim; >= 2*inDim with swigluInput). */
  xStride?: number;
  /** Row stride of Y in floats (default outDim). */
  yStride?: number;
  /** Y += X·Wᵀ (residual add fused). */
  accumulate?: boolean;
  /** Fused RMSNorm of each X row with this weight [inDim] and eps. */
  norm?: { weight: BufferBinding; eps: number };
  /** X rows hold [gate | up] (each inDim wide); the input is silu(gate) * up. */
  swigluInput?: boolean;
  /** Output row r reads X row rowIds[r]: [rows] u32. */
  rowIds?: BufferBinding;
  /** How W is stored (default f32); quantized W needs inDim a multiple of 32. */
  weightType?: WeightType;
  /**
   * 'auto' (default), when inDim and xStride are multiples of 4: lanes from tuning.lanesMinRows
   * rows, else gemv up to tuning.gemvMaxRows rows, tiled above (and tiled when they are not).
   * Whichever it is, a row's bits are the same: the tiled and lanes kernels reduce each output in
   * the gemv kernel's order (LANES = the gemv plan's WG), so the choice never changes results.
   */
  strategy?: 'auto' | 'gemv' | 'lanes' | 'tiled';
}

/**
 * The K split every matmul kernel reduces by: gemv's threads per workgroup (each thread one
 * strided part of IN/4, then the parts summed in order), the tiled and lanes kernels' LANES.
 */
export function matmulLanes(inDim: number, tuning: Readonly<KernelTuning>): number {
  return Math.min(tuning.gemvThreads, nextPow2(ceilDiv(inDim, 4)));
}

/**
 * kernels/matmul_gemv.wgsl: dispatch (ceil(outDim / 4), ceil(rows / ROWS)), ROWS from tuning.gemvRowClasses
 * by `rows`; kernels/matmul_lanes.wgsl: dispatch (ceil(ceil(outDim / 4) / tuning.lanesThreads),
 * ceil(rows / 4)); kernels/matmul_tiled.wgsl: dispatch (ceil(outDim / 32), ceil(rows / 32)).
 */
export function planMatmul(a: MatmulArgs, tuning: Readonly<KernelTuning> = GPU_TUNING): DispatchPlan {
  const xStride = a.xStride ?? (a.swigluInput ? 2 * a.inDim : a.inDim);
  const yStride = a.yStride ?? a.outDim;
  assertPositiveInts('matmul', { rows: a.rows, inDim: a.inDim, outDim: a.outDim, xStride, yStride });
  if (a.norm && a.swigluInput) throw new Error('matmul: norm and swigluInput cannot be combined');
  if (xStride < (a.swigluInput ? 2 * a.inDim : a.inDim)) throw new RangeError(`matmul: xStride ${xStride} is too small`);
  if (yStride < a.outDim) throw new RangeError(`matmul: yStride ${yStride} < outDim ${a.outDim}`);
  const weightType = a.weightType ?? 'f32';
  checkWeightType('matmul', weightType, a.inDim);
  const vec4Ok = a.inDim % 4 === 0 && xStride % 4 === 0;
  const strategy = a.strategy ?? 'auto';
  if ((strategy === 'gemv' || strategy === 'lanes') && !vec4Ok) throw new RangeError(`matmul ${strategy}: inDim and xStride must be multiples of 4`);
  const useLanes = strategy === 'lanes' || (strategy === 'auto' && vec4Ok && a.rows >= tuning.lanesMinRows);
  const gemv = !useLanes && (strategy === 'gemv' || (strategy === 'auto' && vec4Ok && a.rows <= tuning.gemvMaxRows));

  const bindings = { x: a.x, w: a.w, y: a.y, normWeight: a.norm?.weight, rowIds: a.rowIds };
  const common = {
    IN: a.inDim,
    WTYPE: WTYPE[weightType],
    OUT: a.outDim,
    X_STRIDE: xStride,
    Y_STRIDE: yStride,
    NORM_INPUT: a.norm !== undefined,
    SWIGLU_INPUT: a.swigluInput ?? false,
    GATHER_ROWS: a.rowIds !== undefined,
    ACCUMULATE: a.accumulate ?? false,
    EPS: a.norm?.eps ?? 1e-5,
  };
  const lanes = matmulLanes(a.inDim, tuning);
  if (useLanes) {
    const wg = tuning.lanesThreads;
    return {
      kernel: 'matmul_lanes',
      bindings,
      workgroups: [ceilDiv(ceilDiv(a.outDim, 4), wg), ceilDiv(a.rows, 4)],
      overrides: { ...common, LANES: lanes, WG: wg },
      params: { rows: a.rows },
    };
  }
  if (gemv) {
    const classes = tuning.gemvRowClasses;
    const rowsPerGroup = classes.find((n) => n >= a.rows) ?? classes[classes.length - 1];
    const cols = 4;
    return {
      kernel: 'matmul_gemv',
      bindings,
      workgroups: [ceilDiv(a.outDim, cols), ceilDiv(a.rows, rowsPerGroup)],
      overrides: { ...common, ROWS: rowsPerGroup, COLS: cols, WG: lanes },
      params: { rows: a.rows },
    };
  }
  return {
    kernel: 'matmul_tiled',
    bindings,
    workgroups: [ceilDiv(a.outDim, 32), ceilDiv(a.rows, 32)],
    overrides: { ...common, LANES: lanes },
    params: { rows: a.rows },
  };
}

export const encodeMatmul = (step: DispatchTarget, a: MatmulArgs): void => encodePlan(step, planMatmul(a, step.tuning));

// ---------------------------------------------------------------------------------------------

export interface RopeKvWriteArgs {
  qkv: BufferBinding; // [numTokens, qkvStride]: q (dim) | k (kvDim) | v (kvDim); q rotated in place
  positions: BufferBinding; // [numTokens] u32
  slots: BufferBinding; // [numTokens] u32 physical KV slot
  ropeTable: BufferBinding; // [maxPositions, headSize / 2, 2] from buildRopeTable()
  kCache: BufferBinding; // [numSlots, kvDim] this layer
  vCache: BufferBinding; // [numSlots, kvDim] this layer
  numTokens: number;
  dim: number;
  kvDim: number;
  headSize: number;
  /** Default dim + 2 * kvDim. */
  qkvStride?: number;
}

/** kernels/rope_kv_write.wgsl: dispatch (numTokens). */
export function planRopeKvWrite(a: RopeKvWriteArgs, tuning: Readonly<KernelTuning> = GPU_TUNING): DispatchPlan {
  const qkvStride = a.qkvStride ?? a.dim + 2 * a.kvDim;
  assertPositiveInts('rope_kv_write', { numTokens: a.numTokens, dim: a.dim, kvDim: a.kvDim, headSize: a.headSize, qkvStride });
  if (a.headSize % 2 !== 0 || a.dim % a.headSize !== 0 || a.kvDim % a.headSize !== 0) {
    throw new RangeError('rope_kv_write: headSize must be even and divide dim and kvDim');
  }
  return {
    kernel: 'rope_kv_write',
    bindings: { qkv: a.qkv, positions: a.positions, slots: a.slots, ropeTable: a.ropeTable, kCache: a.kCache, vCache: a.vCache },
    workgroups: [a.numTokens],
    overrides: { DIM: a.dim, KV_DIM: a.kvDim, HEAD_SIZE: a.headSize, QKV_STRIDE: qkvStride, WG: tuning.rowThreads },
  };
}

export const encodeRopeKvWrite = (step: DispatchTarget, a: RopeKvWriteArgs): void => encodePlan(step, planRopeKvWrite(a, step.tuning));

// ---------------------------------------------------------------------------------------------

export interface PagedAttentionArgs {
  q: BufferBinding; // [numTokens, qStride]; head h at columns h*headSize (the qkv buffer works)
  kCache: BufferBinding; // [numSlots, kvDim] this layer
  vCache: BufferBinding; // [numSlots, kvDim] this layer
  blockTables: BufferBinding; // [total table entries] u32, every sequence's table concatenated
  blockTableOffsets: BufferBinding; // [numTokens] u32, where the token's sequence's table starts
  positions: BufferBinding; // [numTokens] u32
  out: BufferBinding; // [numTokens, numHeads * headSize]
  numTokens: number;
  numHeads: number;
  numKvHeads: number;
  headSize: number;
  blockSize: number;
  /** Row stride of q in floats (default numHeads * headSize). */
  qStride?: number;
  /**
   * Given: the kernel does rope_kv_write's work too (ROPE_KV): q is the unrotated qkv buffer
   * (qStride numHeads·headSize + 2·kvDim), k and v are rotated and written at each token's position
   * through its block table. Only for a step where each token is its sequence's only one.
   */
  ropeTable?: BufferBinding; // [maxPositions, headSize / 2] vec2<f32> (cos, sin)
}

/** kernels/paged_attention.wgsl: dispatch (numHeads, numTokens), WG = max(tuning.attentionThreads, headSize). */
export function planPagedAttention(a: PagedAttentionArgs, tuning: Readonly<KernelTuning> = GPU_TUNING): DispatchPlan {
  const qStride = a.qStride ?? a.numHeads * a.headSize;
  assertPositiveInts('paged_attention', {
    numTokens: a.numTokens,
    numHeads: a.numHeads,
    numKvHeads: a.numKvHeads,
    headSize: a.headSize,
    blockSize: a.blockSize,
    qStride,
  });
  if (a.numHeads % a.numKvHeads !== 0) throw new RangeError('paged_attention: numKvHeads must divide numHeads');
  const threads = Math.max(tuning.attentionThreads, a.headSize);
  if (threads > 256) throw new RangeError(`paged_attention: headSize ${a.headSize} > 256 is not supported`);
  const ropeKv = a.ropeTable !== undefined;
  if (ropeKv && (a.headSize % 2 !== 0 || qStride !== a.numHeads * a.headSize + 2 * a.numKvHeads * a.headSize)) {
    throw new RangeError('paged_attention with a rope table: headSize must be even and q the qkv buffer (qStride = dim + 2 kvDim)');
  }
  return {
    kernel: 'paged_attention',
    bindings: {
      q: a.q,
      kCache: a.kCache,
      vCache: a.vCache,
      blockTables: a.blockTables,
      positions: a.positions,
      blockTableOffsets: a.blockTableOffsets,
      out: a.out,
      ropeTable: a.ropeTable,
    },
    workgroups: [a.numHeads, a.numTokens],
    overrides: {
      NUM_HEADS: a.numHeads,
      NUM_KV_HEADS: a.numKvHeads,
      HEAD_SIZE: a.headSize,
      BLOCK_SIZE: a.blockSize,
      Q_STRIDE: qStride,
      SCALE: Math.fround(1 / Math.sqrt(a.headSize)),
      WG: threads,
      ROPE_KV: ropeKv,
    },
  };
}

export const encodePagedAttention = (step: DispatchTarget, a: PagedAttentionArgs): void => encodePlan(step, planPagedAttention(a, step.tuning));

// ---------------------------------------------------------------------------------------------

export interface BlockCopyArgs {
  copies: BufferBinding; // [numCopies, 2] u32 (srcBlock, dstBlock)
  kCache: BufferBinding; // [numBlocks * blockSize, kvDim] this layer
  vCache: BufferBinding; // [numBlocks * blockSize, kvDim] this layer
  numCopies: number;
  kvDim: number;
  blockSize: number;
}

/** kernels/block_copy.wgsl: dispatch (ceil(blockSize * kvDim / (4 * WG)), numCopies), once per layer. */
export function planBlockCopy(a: BlockCopyArgs, tuning: Readonly<KernelTuning> = GPU_TUNING): DispatchPlan {
  assertPositiveInts('block_copy', { numCopies: a.numCopies, kvDim: a.kvDim, blockSize: a.blockSize });
  return {
    kernel: 'block_copy',
    bindings: { copies: a.copies, kCache: a.kCache, vCache: a.vCache },
    workgroups: [ceilDiv(a.blockSize * a.kvDim, 4 * tuning.rowThreads), a.numCopies],
    overrides: { KV_DIM: a.kvDim, BLOCK_SIZE: a.blockSize, WG: tuning.rowThreads },
  };
}

export const encodeBlockCopy = (step: DispatchTarget, a: BlockCopyArgs): void => encodePlan(step, planBlockCopy(a, step.tuning));

// ---------------------------------------------------------------------------------------------

export interface ArgmaxArgs {
  logits: BufferBinding; // [numRows, rowStride]
  out: BufferBinding; // [numRows] u32
  numRows: number;
  vocabSize: number;
  /** Default vocabSize. */
  rowStride?: number;
}

/** kernels/argmax.wgsl: dispatch (numRows). */
export function planArgmax(a: ArgmaxArgs, tuning: Readonly<KernelTuning> = GPU_TUNING): DispatchPlan {
  const rowStride = a.rowStride ?? a.vocabSize;
  assertPositiveInts('argmax', { numRows: a.numRows, vocabSize: a.vocabSize, rowStride });
  return {
    kernel: 'argmax',
    bindings: { logits: a.logits, out: a.out },
    workgroups: [a.numRows],
    overrides: { N: a.vocabSize, ROW_STRIDE: rowStride, WG: tuning.rowThreads },
  };
}

export const encodeArgmax = (step: DispatchTarget, a: ArgmaxArgs): void => encodePlan(step, planArgmax(a, step.tuning));

// ---------------------------------------------------------------------------------------------

export interface LoraBgmvArgs {
  x: BufferBinding; // [rows, xStride] the projection's input (before its norm, or [gate | up])
  lora: BufferBinding; // [numSlots, slotStride] adapter slots (lora-slots.ts layout)
  rowSlots: BufferBinding; // [rows] u32, 0xffffffff = base model
  y: BufferBinding; // [rows, yStride] the projection's output, += at columns yOffset..yOffset+outDim
  rows: number;
  inDim: number;
  outDim: number;
  /** Padded rank of every slot (maxLoraRank). */
  rank: number;
  slotStride: number;
  /** Where this (layer, module)'s A [rank, inDim] and B [outDim, rank] start in a slot (floats). */
  aOffset: number;
  bOffset: number;
  yOffset?: number;
  xStride?: number;
  yStride?: number;
  norm?: { weight: BufferBinding; eps: number };
  swigluInput?: boolean;
}

/** kernels/lora_bgmv.wgsl: dispatch (rows); one workgroup per row, base rows return at once. */
export function planLoraBgmv(a: LoraBgmvArgs, tuning: Readonly<KernelTuning> = GPU_TUNING): DispatchPlan {
  const xStride = a.xStride ?? (a.swigluInput ? 2 * a.inDim : a.inDim);
  const yStride = a.yStride ?? a.outDim;
  const yOffset = a.yOffset ?? 0;
  assertPositiveInts('lora_bgmv', { rows: a.rows, inDim: a.inDim, outDim: a.outDim, rank: a.rank, slotStride: a.slotStride, aOffset: a.aOffset, bOffset: a.bOffset, yOffset, xStride, yStride });
  if (a.norm && a.swigluInput) throw new Error('lora_bgmv: norm and swigluInput cannot be combined');
  if (a.rank < 1 || a.rank > 64) throw new RangeError(`lora_bgmv: rank ${a.rank} must be 1..64`);
  if (yOffset + a.outDim > yStride) throw new RangeError(`lora_bgmv: columns ${yOffset}..${yOffset + a.outDim} exceed yStride ${yStride}`);
  void tuning; // one fixed size: RANK threads must exist for the shrink
  return {
    kernel: 'lora_bgmv',
    bindings: { x: a.x, normWeight: a.norm?.weight, lora: a.lora, rowSlots: a.rowSlots, y: a.y },
    workgroups: [a.rows],
    overrides: {
      IN: a.inDim,
      OUT: a.outDim,
      RANK: a.rank,
      SLOT_STRIDE: a.slotStride,
      X_STRIDE: xStride,
      Y_STRIDE: yStride,
      EPS: a.norm?.eps ?? 1e-5,
      WG: 64,
      NORM_INPUT: a.norm !== undefined,
      SWIGLU_INPUT: a.swigluInput ?? false,
    },
    params: { rows: a.rows, aOffset: a.aOffset, bOffset: a.bOffset, yOffset },
  };
}

export const encodeLoraBgmv = (step: DispatchTarget, a: LoraBgmvArgs): void => encodePlan(step, planLoraBgmv(a, step.tuning));
