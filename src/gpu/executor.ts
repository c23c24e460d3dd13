/**
 * The real engine on WebGPU: one engine step = one batched forward pass over every scheduled
 * token of every running sequence (prefill chunks and decode tokens mixed), recorded into ONE
 * compute pass and ONE submit, with K/V read and written through each sequence's block table.
 *
 * Per step: swap-outs are read back first (their own small submit: the blocks leave GPU memory
 * before anything can overwrite them), swap-ins and the step's inputs are uploaded with
 * queue.writeBuffer, then one pass records
 *   [block_copy per layer, for copy-on-write]
 *   embedding
 *   per layer: matmul qkv (fused RMSNorm) · rope_kv_write · paged_attention · matmul wo (+= x)
 *              · matmul w1|w3 (fused RMSNorm) · matmul w2 (fused SwiGLU, += x)
 *   matmul logits for the rows that need them (gathered, fused final RMSNorm) · argmax
 * and the argmax (and, for sampled rows, the logits) come back in the same submit.
 *
 * Buffers: one per tensor (W_qkv = [wq; wk; wv] and W_13 = [w1; w3] concatenated so each is one
 * matmul), and the KV pool split per layer and per K/V, so big models stay under
 * maxStorageBufferBindingSize. The CPU swap pool is ordinary memory (Float32Array per layer).
 */
import type { Executor, KvGeometry, SeqOutput, StepOutput, StepPlan } from '../engine/types.ts';
import { headSize as headSizeOf, kvDim as kvDimOf, type Model } from '../model/types.ts';
import { BufferUsage, createBufferFromData, createStorageBuffer, MAP_MODE_READ, writeBuffer } from './buffers.ts';
import type { GpuContext } from './device.ts';
import {
  encodeArgmax,
  encodeBlockCopy,
  encodeEmbedding,
  encodeMatmul,
  encodePagedAttention,
  encodeRopeKvWrite,
  type MatmulArgs,
} from './kernels.ts';
import { packStep } from './pack.ts';
import { buildRopeTable } from './rope-table.ts';
import type { GpuRuntime } from './step.ts';

/** The GPU device was lost (driver reset, GPU removed, or destroyed on purpose) during a step. */
export class DeviceLostError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DeviceLostError';
  }
}

interface LayerBuffers {
  rmsAtt: GPUBuffer; // [dim]
  wqkv: GPUBuffer; // [dim + 2 kvDim, dim]
  wo: GPUBuffer; // [dim, dim]
  rmsFfn: GPUBuffer; // [dim]
  w13: GPUBuffer; // [2 hiddenDim, dim]
  w2: GPUBuffer; // [dim, hiddenDim]
}

interface Activations {
  capacityTokens: number;
  capacityRows: number;
  capacityTableEntries: number;
  x: GPUBuffer; // [T, dim] residual stream
  qkv: GPUBuffer; // [T, dim + 2 kvDim]
  att: GPUBuffer; // [T, dim]
  gateUp: GPUBuffer; // [T, 2 hiddenDim]
  logits: GPUBuffer; // [R, vocab]
  argmax: GPUBuffer; // [R] u32
  tokenIds: GPUBuffer; // [T] u32
  positions: GPUBuffer; // [T] u32
  slots: GPUBuffer; // [T] u32
  tableOffsets: GPUBuffer; // [T] u32
  blockTables: GPUBuffer; // [E] u32
  logitRows: GPUBuffer; // [R] u32
  copies: GPUBuffer; // [C, 2] u32
  capacityCopies: number;
}

export interface GpuExecutorOptions {
  /** Measure each step's GPU time with timestamp queries when the device has them (default true). */
  timestamps?: boolean;
  /** Wrap each step in a validation error scope (tests). */
  validate?: boolean;
  /** Tokens per step to size activations for up front (they grow on demand). */
  initialTokens?: number;
  /**
   * Keep each row's arithmetic independent of how many rows share the step (default true): every
   * matmul uses one kernel whatever the batch, instead of switching gemv -> tiled above a row
   * count (their reduction orders differ, so a sequence's logits would depend on its batch).
   */
  batchInvariant?: boolean;
}

const nextPow2 = (n: number): number => 2 ** Math.ceil(Math.log2(Math.max(1, n)));

export class GpuExecutor implements Executor {
  readonly name: string;
  private readonly device: GPUDevice;
  private readonly layers: LayerBuffers[];
  private readonly embedding: GPUBuffer; // [vocab, dim]
  private readonly rmsFinal: GPUBuffer; // [dim]
  private readonly wcls: GPUBuffer; // [vocab, dim] (the embedding buffer when tied)
  private readonly ropeTable: GPUBuffer; // [seqLen, headSize / 2, 2]
  private kCache: GPUBuffer[] = []; // per layer [numGpuBlocks * blockSize, kvDim]
  private vCache: GPUBuffer[] = [];
  private swapK: Float32Array[] = []; // per layer [numCpuBlocks * blockSize, kvDim]
  private swapV: Float32Array[] = [];
  private geometry: KvGeometry | null = null;
  private act: Activations | null = null;
  private disposed = false;
  private lostMessage: string | null = null;
  /** Dispatches recorded by the last step (for benchmarks). */
  lastNumDispatches = 0;
  /** GPU time of the last step from timestamp queries, when the device has them. */
  lastGpuTimeMs: number | null = null;

  constructor(
    readonly ctx: GpuContext,
    readonly runtime: GpuRuntime,
    readonly model: Model,
    private readonly options: GpuExecutorOptions = {},
  ) {
    this.device = ctx.device;
    this.name = `webgpu: ${ctx.adapter.vendor} ${ctx.adapter.architecture}`.trim();
    ctx.onLost((loss) => (this.lostMessage = `the GPU device was lost (${loss.reason}): ${loss.message || 'no details'}`));
    const c = model.config;
    const w = model.weights;
    const dim = c.dim;
    const kvDim = kvDimOf(c);
    const upload = (data: Float32Array, label: string) => createBufferFromData(this.device, data, label);
    this.layers = w.layers.map((lw, l) => {
      const wqkv = new Float32Array((dim + 2 * kvDim) * dim);
      wqkv.set(lw.wq, 0);
      wqkv.set(lw.wk, dim * dim);
      wqkv.set(lw.wv, (dim + kvDim) * dim);
      const w13 = new Float32Array(2 * c.hiddenDim * dim);
      w13.set(lw.w1, 0);
      w13.set(lw.w3, c.hiddenDim * dim);
      return {
        rmsAtt: upload(lw.rmsAtt, `layer ${l} rms_att`),
        wqkv: upload(wqkv, `layer ${l} wqkv`),
        wo: upload(lw.wo, `layer ${l} wo`),
        rmsFfn: upload(lw.rmsFfn, `layer ${l} rms_ffn`),
        w13: upload(w13, `layer ${l} w13`),
        w2: upload(lw.w2, `layer ${l} w2`),
      };
    });
    this.embedding = upload(w.tokenEmbedding, 'token embedding');
    this.rmsFinal = upload(w.rmsFinal, 'rms_final');
    this.wcls = w.wcls === w.tokenEmbedding ? this.embedding : upload(w.wcls, 'classifier');
    this.ropeTable = upload(buildRopeTable(c.seqLen, headSizeOf(c), c.ropeTheta), 'rope table');
  }

  configure(geometry: KvGeometry): void {
    this.assertUsable();
    const { blockSize, numGpuBlocks, numCpuBlocks } = geometry;
    if (!Number.isInteger(blockSize) || blockSize <= 0) throw new RangeError(`KV geometry: blockSize must be a positive integer, got ${blockSize}`);
    if (!Number.isInteger(numGpuBlocks) || numGpuBlocks <= 0) throw new RangeError(`KV geometry: numGpuBlocks must be a positive integer, got ${numGpuBlocks}`);
    if (!Number.isInteger(numCpuBlocks) || numCpuBlocks < 0) throw new RangeError(`KV geometry: numCpuBlocks must be a non-negative integer, got ${numCpuBlocks}`);
    const c = this.model.config;
    const kvDim = kvDimOf(c);
    const layerBytes = numGpuBlocks * blockSize * kvDim * 4;
    const limit = Math.min(this.device.limits.maxStorageBufferBindingSize, this.device.limits.maxBufferSize);
    if (layerBytes > limit) {
      throw new RangeError(`KV geometry: one layer of the pool needs ${layerBytes} bytes, over this GPU's ${limit}-byte buffer limit; use fewer blocks`);
    }
    for (const b of [...this.kCache, ...this.vCache]) b.destroy();
    this.kCache = [];
    this.vCache = [];
    for (let l = 0; l < c.numLayers; l++) {
      this.kCache.push(createStorageBuffer(this.device, layerBytes, `K cache layer ${l}`));
      this.vCache.push(createStorageBuffer(this.device, layerBytes, `V cache layer ${l}`));
    }
    const swapFloats = numCpuBlocks * blockSize * kvDim;
    this.swapK = Array.from({ length: c.numLayers }, () => new Float32Array(swapFloats));
    this.swapV = Array.from({ length: c.numLayers }, () => new Float32Array(swapFloats));
    this.geometry = { ...geometry };
    this.ensureActivations(this.options.initialTokens ?? 64, 16, 64, 16);
  }

  private assertUsable(): void {
    if (this.disposed) throw new Error('the GPU executor was disposed');
    if (this.lostMessage || this.ctx.isLost) throw new DeviceLostError(this.lostMessage ?? 'the GPU device was lost');
  }

  /** The matmul kernel for this shape: fixed per shape when batch invariance is on. */
  private strategy(inDim: number, xStride = inDim): MatmulArgs['strategy'] {
    if (this.options.batchInvariant === false) return 'auto';
    return inDim % 4 === 0 && xStride % 4 === 0 ? 'gemv' : 'tiled';
  }

  /** (Re)allocates step buffers when a step needs more room than they have (powers of two). */
  private ensureActivations(numTokens: number, numRows: number, numTableEntries: number, numCopies: number): Activations {
    const a = this.act;
    if (a && a.capacityTokens >= numTokens && a.capacityRows >= numRows && a.capacityTableEntries >= numTableEntries && a.capacityCopies >= numCopies) {
      return a;
    }
    const c = this.model.config;
    const kvDim = kvDimOf(c);
    const t = nextPow2(Math.max(numTokens, a?.capacityTokens ?? 0));
    const r = nextPow2(Math.max(numRows, a?.capacityRows ?? 0));
    const e = nextPow2(Math.max(numTableEntries, a?.capacityTableEntries ?? 0));
    const cp = nextPow2(Math.max(numCopies, a?.capacityCopies ?? 0));
    if (a) this.destroyActivations(a);
    const buf = (floats: number, label: string) => createStorageBuffer(this.device, floats * 4, label);
    this.act = {
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
    return this.act;
  }

  private destroyActivations(a: Activations): void {
    for (const v of Object.values(a)) if (typeof v === 'object' && v !== null && 'destroy' in v) (v as GPUBuffer).destroy();
  }

  /** Moves blocks GPU -> CPU pool: one copy per block and layer into one staging buffer, one map. */
  private async swapOut(plan: StepPlan): Promise<void> {
    const g = this.geometry!;
    const kvDim = kvDimOf(this.model.config);
    const blockFloats = g.blockSize * kvDim;
    const blockBytes = blockFloats * 4;
    const numLayers = this.model.config.numLayers;
    const staging = this.device.createBuffer({
      label: 'swap-out staging',
      size: plan.swapOut.length * numLayers * 2 * blockBytes,
      usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST,
    });
    const encoder = this.device.createCommandEncoder({ label: 'swap out' });
    let offset = 0;
    for (const s of plan.swapOut) {
      for (let l = 0; l < numLayers; l++) {
        encoder.copyBufferToBuffer(this.kCache[l], s.gpuBlock * blockBytes, staging, offset, blockBytes);
        encoder.copyBufferToBuffer(this.vCache[l], s.gpuBlock * blockBytes, staging, offset + blockBytes, blockBytes);
        offset += 2 * blockBytes;
      }
    }
    this.device.queue.submit([encoder.finish()]);
    try {
      await staging.mapAsync(MAP_MODE_READ);
      const data = new Float32Array(staging.getMappedRange());
      let o = 0;
      for (const s of plan.swapOut) {
        for (let l = 0; l < numLayers; l++) {
          this.swapK[l].set(data.subarray(o, o + blockFloats), s.cpuBlock * blockFloats);
          this.swapV[l].set(data.subarray(o + blockFloats, o + 2 * blockFloats), s.cpuBlock * blockFloats);
          o += 2 * blockFloats;
        }
      }
    } finally {
      staging.destroy();
    }
  }

  private swapIn(plan: StepPlan): void {
    const g = this.geometry!;
    const blockFloats = g.blockSize * kvDimOf(this.model.config);
    for (const s of plan.swapIn) {
      for (let l = 0; l < this.model.config.numLayers; l++) {
        const from = s.cpuBlock * blockFloats;
        writeBuffer(this.device, this.kCache[l], this.swapK[l].subarray(from, from + blockFloats), s.gpuBlock * blockFloats * 4);
        writeBuffer(this.device, this.vCache[l], this.swapV[l].subarray(from, from + blockFloats), s.gpuBlock * blockFloats * 4);
      }
    }
  }

  private checkBlocks(plan: StepPlan): void {
    const g = this.geometry!;
    const gpuOk = (b: number) => Number.isInteger(b) && b >= 0 && b < g.numGpuBlocks;
    const cpuOk = (b: number) => Number.isInteger(b) && b >= 0 && b < g.numCpuBlocks;
    for (const s of [...plan.swapOut, ...plan.swapIn]) {
      if (!gpuOk(s.gpuBlock) || !cpuOk(s.cpuBlock)) throw new RangeError(`swap of GPU block ${s.gpuBlock} / CPU block ${s.cpuBlock} is out of range`);
    }
    for (const cp of plan.copies) {
      if (!gpuOk(cp.srcBlock) || !gpuOk(cp.dstBlock)) throw new RangeError(`copy of block ${cp.srcBlock} to ${cp.dstBlock} is out of range`);
    }
    for (const seq of plan.seqs) {
      for (const b of seq.blockTable) if (!gpuOk(b)) throw new RangeError(`sequence ${seq.seqId}: block ${b} is out of range (${g.numGpuBlocks} blocks)`);
    }
  }

  async execute(plan: StepPlan): Promise<StepOutput> {
    this.assertUsable();
    const g = this.geometry;
    if (!g) throw new Error('the GPU executor needs configure() before execute()');
    const started = performance.now();
    const c = this.model.config;
    const dim = c.dim;
    const kvDim = kvDimOf(c);
    const headSize = headSizeOf(c);
    this.checkBlocks(plan);
    const packed = packStep(plan, g.blockSize, c.vocabSize, c.seqLen);

    try {
      if (plan.swapOut.length > 0) await this.swapOut(plan);
      this.assertUsable();
      if (plan.swapIn.length > 0) this.swapIn(plan);

      const numTokens = packed.numTokens;
      const numRows = packed.logitRows.length;
      const a = this.ensureActivations(numTokens, numRows, packed.blockTables.length, plan.copies.length);
      if (numTokens > 0) {
        writeBuffer(this.device, a.tokenIds, packed.tokenIds);
        writeBuffer(this.device, a.positions, packed.positions);
        writeBuffer(this.device, a.slots, packed.slots);
        writeBuffer(this.device, a.tableOffsets, packed.tableOffsets);
        writeBuffer(this.device, a.blockTables, packed.blockTables);
      }
      if (numRows > 0) writeBuffer(this.device, a.logitRows, packed.logitRows);
      if (plan.copies.length > 0) {
        const pairs = new Uint32Array(plan.copies.length * 2);
        plan.copies.forEach((cp, i) => {
          pairs[2 * i] = cp.srcBlock;
          pairs[2 * i + 1] = cp.dstBlock;
        });
        writeBuffer(this.device, a.copies, pairs);
      }

      const step = this.runtime.beginStep({ label: `step ${plan.stepIndex}`, timestamps: this.options.timestamps ?? true, validate: this.options.validate });
      if (plan.copies.length > 0) {
        for (let l = 0; l < c.numLayers; l++) {
          encodeBlockCopy(step, { copies: a.copies, kCache: this.kCache[l], vCache: this.vCache[l], numCopies: plan.copies.length, kvDim, blockSize: g.blockSize });
        }
      }
      let argmaxRead = -1;
      let logitsRead = -1;
      if (numTokens > 0) {
        const qkvStride = dim + 2 * kvDim;
        encodeEmbedding(step, { tokenIds: a.tokenIds, embedding: this.embedding, out: a.x, numTokens, dim });
        for (let l = 0; l < c.numLayers; l++) {
          const lb = this.layers[l];
          encodeMatmul(step, { x: a.x, w: lb.wqkv, y: a.qkv, rows: numTokens, inDim: dim, outDim: qkvStride, norm: { weight: lb.rmsAtt, eps: c.normEps }, strategy: this.strategy(dim) });
          encodeRopeKvWrite(step, {
            qkv: a.qkv,
            positions: a.positions,
            slots: a.slots,
            ropeTable: this.ropeTable,
            kCache: this.kCache[l],
            vCache: this.vCache[l],
            numTokens,
            dim,
            kvDim,
            headSize,
          });
          encodePagedAttention(step, {
            q: a.qkv,
            kCache: this.kCache[l],
            vCache: this.vCache[l],
            blockTables: a.blockTables,
            blockTableOffsets: a.tableOffsets,
            positions: a.positions,
            out: a.att,
            numTokens,
            numHeads: c.numHeads,
            numKvHeads: c.numKvHeads,
            headSize,
            blockSize: g.blockSize,
            qStride: qkvStride,
          });
          encodeMatmul(step, { x: a.att, w: lb.wo, y: a.x, rows: numTokens, inDim: dim, outDim: dim, accumulate: true, strategy: this.strategy(dim) });
          encodeMatmul(step, { x: a.x, w: lb.w13, y: a.gateUp, rows: numTokens, inDim: dim, outDim: 2 * c.hiddenDim, norm: { weight: lb.rmsFfn, eps: c.normEps }, strategy: this.strategy(dim) });
          encodeMatmul(step, { x: a.gateUp, w: lb.w2, y: a.x, rows: numTokens, inDim: c.hiddenDim, outDim: dim, swigluInput: true, accumulate: true, strategy: this.strategy(c.hiddenDim, 2 * c.hiddenDim) });
        }
        if (numRows > 0) {
          encodeMatmul(step, {
            x: a.x,
            w: this.wcls,
            y: a.logits,
            rows: numRows,
            inDim: dim,
            outDim: c.vocabSize,
            norm: { weight: this.rmsFinal, eps: c.normEps },
            rowIds: a.logitRows,
            strategy: this.strategy(dim),
          });
          encodeArgmax(step, { logits: a.logits, out: a.argmax, numRows, vocabSize: c.vocabSize });
          argmaxRead = step.read(a.argmax, numRows * 4);
          if (packed.logitsWanted.some(Boolean)) logitsRead = step.read(a.logits, numRows * c.vocabSize * 4);
        }
      }
      this.lastNumDispatches = step.numDispatches;
      const result = await step.submit();
      this.assertUsable();

      const outputs: SeqOutput[] = [];
      if (argmaxRead >= 0) {
        const argmax = new Uint32Array(result.reads[argmaxRead]);
        const logits = logitsRead >= 0 ? new Float32Array(result.reads[logitsRead]) : null;
        packed.logitSeqIds.forEach((seqId, r) => {
          const out: SeqOutput = { seqId, argmax: argmax[r] };
          if (logits && packed.logitsWanted[r]) out.logits = logits.slice(r * c.vocabSize, (r + 1) * c.vocabSize);
          outputs.push(out);
        });
      }
      this.lastGpuTimeMs = result.gpuTimeMs;
      return { outputs, durationMs: performance.now() - started };
    } catch (e) {
      // A destroyed device first fails the step's pending work (an aborted mapAsync, say); its
      // lost promise settles a moment later. Give it that moment before calling the error a bug.
      if (await this.settlesAsLost()) throw new DeviceLostError(this.lostMessage ?? `the GPU device was lost: ${(e as Error).message}`);
      throw e;
    }
  }

  private async settlesAsLost(): Promise<boolean> {
    if (this.lostMessage || this.ctx.isLost) return true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const lost = await Promise.race([
      this.ctx.lost.then(() => true),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), 250))),
    ]);
    clearTimeout(timer);
    return lost;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    if (this.ctx.isLost) return;
    for (const l of this.layers) for (const b of Object.values(l)) b.destroy();
    if (this.wcls !== this.embedding) this.wcls.destroy();
    this.embedding.destroy();
    this.rmsFinal.destroy();
    this.ropeTable.destroy();
    for (const b of [...this.kCache, ...this.vCache]) b.destroy();
    if (this.act) this.destroyActivations(this.act);
  }
}
