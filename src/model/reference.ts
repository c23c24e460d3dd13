/**
 * The CPU reference forward pass: plain loops over Float32Array in the spirit of llama2.c's run.c.
 * It is the oracle for every WGSL kernel and for the WebGPU engine.
 *
 * One token at a time: embedding -> per layer [RMSNorm, q/k/v, RoPE, write K/V to this token's
 * slot, grouped-query attention over positions 0..pos read through the sequence's slots, wo,
 * residual, RMSNorm, SwiGLU FFN, residual] -> final RMSNorm -> classifier.
 *
 * The K/V cache is addressed by slot, so the same code serves a contiguous cache (slot = pos) and
 * the paged cache of CpuReferenceExecutor (slot = blockTable[pos / blockSize] * blockSize + pos % blockSize).
 */
import { argmax, loraAdd, matvec, matvecQ, rmsnorm, rope, softmax, swiglu } from './ops.ts';
import { dequantizeRow, type QuantizedMatrix } from './quant.ts';
import { checkHostKvPool, headSize as headSizeOf, kvDim as kvDimOf, type Model } from './types.ts';
import type { Executor, KvGeometry, LogitRow, LoraAdapter, LoraModule, SeqOutput, StepOutput, StepPlan } from '../engine/types.ts';

/**
 * Scratch buffers for one token's forward pass. After forwardToken(..., wantLogits false), x is the
 * final residual stream (before the final RMSNorm) and hb the last layer's FFN input to w2
 * (silu(w1 x) * w3 x): scripts/make-adapters.ts trains a last-layer LoRA from them.
 */
export class Scratch {
  readonly x: Float32Array; // [dim] residual stream
  readonly xb: Float32Array; // [dim]
  readonly xb2: Float32Array; // [dim]
  readonly hb: Float32Array; // [hiddenDim]
  readonly hb2: Float32Array; // [hiddenDim]
  readonly q: Float32Array; // [dim]
  readonly k: Float32Array; // [kvDim]
  readonly v: Float32Array; // [kvDim]
  readonly att: Float32Array; // [seqLen]
  readonly logits: Float32Array; // [vocab]
  readonly loraU: Float32Array; // [64] LoRA's A x (ranks up to MAX_LORA_RANK)

  constructor(model: Model) {
    const c = model.config;
    const kvDim = kvDimOf(c);
    this.x = new Float32Array(c.dim);
    this.xb = new Float32Array(c.dim);
    this.xb2 = new Float32Array(c.dim);
    this.hb = new Float32Array(c.hiddenDim);
    this.hb2 = new Float32Array(c.hiddenDim);
    this.q = new Float32Array(c.dim);
    this.k = new Float32Array(kvDim);
    this.v = new Float32Array(kvDim);
    this.att = new Float32Array(c.seqLen);
    this.logits = new Float32Array(c.vocabSize);
    this.loraU = new Float32Array(64);
  }
}

/** K and V of every layer, one array per layer: [numSlots, kvDim] f32. */
export interface KvStore {
  k: Float32Array[];
  v: Float32Array[];
}

export function createKvStore(model: Model, numSlots: number): KvStore {
  const kvDim = kvDimOf(model.config);
  const make = () => Array.from({ length: model.config.numLayers }, () => new Float32Array(numSlots * kvDim));
  return { k: make(), v: make() };
}

/**
 * Runs one token at position `pos` through the model. `slotOf(p)` gives the cache slot of
 * position p of this sequence; the token's own K/V are written to slotOf(pos).
 * Returns the logits (a view of scratch memory) when `wantLogits`, else null.
 */
export function forwardToken(
  model: Model,
  scratch: Scratch,
  kv: KvStore,
  token: number,
  pos: number,
  slotOf: (position: number) => number,
  wantLogits: boolean,
  lora: LoraAdapter | null = null,
): Float32Array | null {
  const c = model.config;
  const w = model.weights;
  const dim = c.dim;
  const kvDim = kvDimOf(c);
  const headSize = headSizeOf(c);
  const kvMul = c.numHeads / c.numKvHeads;
  const s = scratch;
  if (token < 0 || token >= c.vocabSize) throw new RangeError(`token id ${token} is outside the vocabulary (0..${c.vocabSize - 1})`);
  if (pos < 0 || pos >= c.seqLen) throw new RangeError(`position ${pos} is outside the context (0..${c.seqLen - 1})`);

  const q = model.quantized;
  // y = W x through the matrix's own format: quantized matrices are read as blocks (same bits as
  // the dequantized f32 copy in `weights`, which the other readers use).
  const mv = (out: Float32Array, x: Float32Array, f32: Float32Array, qm: QuantizedMatrix | undefined, inDim: number, outDim: number) =>
    qm ? matvecQ(out, x, qm, inDim, outDim) : matvec(out, x, f32, inDim, outDim);
  if (q?.tokenEmbedding) dequantizeRow(q.tokenEmbedding, token, s.x);
  else s.x.set(w.tokenEmbedding.subarray(token * dim, (token + 1) * dim));
  const ownSlot = slotOf(pos);
  const sqrtHead = Math.fround(Math.sqrt(headSize));
  const f = Math.fround;

  for (let l = 0; l < c.numLayers; l++) {
    const lw = w.layers[l];
    const ql = q?.layers[l];
    rmsnorm(s.xb, s.x, lw.rmsAtt, dim, c.normEps);
    mv(s.q, s.xb, lw.wq, ql?.wq, dim, dim);
    mv(s.k, s.xb, lw.wk, ql?.wk, dim, kvDim);
    mv(s.v, s.xb, lw.wv, ql?.wv, dim, kvDim);
    const ll = lora?.layers[l];
    // LoRA: each projection's output += scale · B (A input), from the projection's own input
    const addLora = (m: LoraModule, y: Float32Array, x: Float32Array, inDim: number, outDim: number) => {
      const u = ll?.[m];
      if (u) loraAdd(y, x, u.a, u.b, lora!.rank, inDim, outDim, lora!.scale, s.loraU);
    };
    addLora('q', s.q, s.xb, dim, dim);
    addLora('k', s.k, s.xb, dim, kvDim);
    addLora('v', s.v, s.xb, dim, kvDim);
    rope(s.q, 0, dim, headSize, pos, c.ropeTheta);
    rope(s.k, 0, kvDim, headSize, pos, c.ropeTheta);
    const kc = kv.k[l];
    const vc = kv.v[l];
    kc.set(s.k, ownSlot * kvDim);
    vc.set(s.v, ownSlot * kvDim);

    for (let h = 0; h < c.numHeads; h++) {
      const qOff = h * headSize;
      const kvOff = Math.floor(h / kvMul) * headSize;
      for (let t = 0; t <= pos; t++) {
        const base = slotOf(t) * kvDim + kvOff;
        let score = 0;
        for (let i = 0; i < headSize; i++) score = f(score + f(s.q[qOff + i] * kc[base + i]));
        s.att[t] = score / sqrtHead;
      }
      softmax(s.att, 0, pos + 1);
      for (let i = 0; i < headSize; i++) s.xb[qOff + i] = 0;
      for (let t = 0; t <= pos; t++) {
        const base = slotOf(t) * kvDim + kvOff;
        const a = s.att[t];
        for (let i = 0; i < headSize; i++) s.xb[qOff + i] += f(a * vc[base + i]);
      }
    }
    mv(s.xb2, s.xb, lw.wo, ql?.wo, dim, dim);
    addLora('o', s.xb2, s.xb, dim, dim);
    for (let i = 0; i < dim; i++) s.x[i] += s.xb2[i]; // Float32Array stores round each sum

    rmsnorm(s.xb, s.x, lw.rmsFfn, dim, c.normEps);
    mv(s.hb, s.xb, lw.w1, ql?.w1, dim, c.hiddenDim);
    mv(s.hb2, s.xb, lw.w3, ql?.w3, dim, c.hiddenDim);
    addLora('w1', s.hb, s.xb, dim, c.hiddenDim);
    addLora('w3', s.hb2, s.xb, dim, c.hiddenDim);
    swiglu(s.hb, s.hb2, c.hiddenDim);
    mv(s.xb, s.hb, lw.w2, ql?.w2, c.hiddenDim, dim);
    addLora('w2', s.xb, s.hb, c.hiddenDim, dim);
    for (let i = 0; i < dim; i++) s.x[i] += s.xb[i];
  }
  if (!wantLogits) return null;
  rmsnorm(s.x, s.x, w.rmsFinal, dim, c.normEps);
  mv(s.logits, s.x, w.wcls, q?.wcls, dim, c.vocabSize);
  return s.logits;
}

/** run.c's Transformer: one sequence, a contiguous cache, forward(token, pos) -> logits. */
export class ReferenceModel {
  private readonly scratch: Scratch;
  private readonly kv: KvStore;

  constructor(readonly model: Model) {
    this.scratch = new Scratch(model);
    this.kv = createKvStore(model, model.config.seqLen);
  }

  forward(token: number, pos: number): Float32Array {
    return forwardToken(this.model, this.scratch, this.kv, token, pos, (p) => p, true) as Float32Array;
  }
}

/**
 * The CPU reference as an engine executor: the same paged KV cache as the GPU engine (a pool of
 * blocks per layer, block tables, copy-on-write copies, a CPU swap pool), token by token.
 */
export class CpuReferenceExecutor implements Executor {
  readonly name = 'cpu reference';
  readonly vocabSize: number;
  private readonly scratch: Scratch;
  private geometry: KvGeometry = { blockSize: 16, numGpuBlocks: 0, numCpuBlocks: 0 };
  private pool: KvStore;
  private swapPool: KvStore;
  /** Registered adapters by name (host memory), and what each adapter slot holds. */
  private readonly adapters = new Map<string, LoraAdapter>();
  private loraSlots: (LoraAdapter | null)[] = [];

  constructor(readonly model: Model) {
    this.vocabSize = model.config.vocabSize;
    this.scratch = new Scratch(model);
    this.pool = createKvStore(model, 0);
    this.swapPool = createKvStore(model, 0);
  }

  checkGeometry(geometry: KvGeometry): void {
    const { blockSize, numGpuBlocks, numCpuBlocks } = geometry;
    for (const [name, v] of Object.entries({ blockSize, numGpuBlocks, numCpuBlocks })) {
      if (!Number.isInteger(v) || v < 0 || (name === 'blockSize' && v === 0)) {
        throw new RangeError(`KV geometry: ${name} must be a ${name === 'blockSize' ? 'positive' : 'non-negative'} integer, got ${v}`);
      }
    }
    checkHostKvPool(this.model.config, blockSize, numGpuBlocks, 'KV');
    checkHostKvPool(this.model.config, blockSize, numCpuBlocks, 'swap');
  }

  configure(geometry: KvGeometry): void {
    this.checkGeometry(geometry);
    const { blockSize, numGpuBlocks, numCpuBlocks } = geometry;
    this.geometry = { ...geometry };
    this.loraSlots = [];
    this.pool = createKvStore(this.model, numGpuBlocks * blockSize);
    this.swapPool = createKvStore(this.model, numCpuBlocks * blockSize);
  }

  registerAdapter(adapter: LoraAdapter): void {
    this.adapters.set(adapter.name, adapter);
  }

  private moveBlock(from: KvStore, fromBlock: number, to: KvStore, toBlock: number): void {
    const span = this.geometry.blockSize * kvDimOf(this.model.config);
    for (let l = 0; l < this.model.config.numLayers; l++) {
      to.k[l].set(from.k[l].subarray(fromBlock * span, (fromBlock + 1) * span), toBlock * span);
      to.v[l].set(from.v[l].subarray(fromBlock * span, (fromBlock + 1) * span), toBlock * span);
    }
  }

  async execute(plan: StepPlan): Promise<StepOutput> {
    const started = performance.now();
    for (const s of plan.swapOut) this.moveBlock(this.pool, s.gpuBlock, this.swapPool, s.cpuBlock);
    for (const s of plan.swapIn) this.moveBlock(this.swapPool, s.cpuBlock, this.pool, s.gpuBlock);
    for (const cp of plan.copies) this.moveBlock(this.pool, cp.srcBlock, this.pool, cp.dstBlock);
    for (const load of plan.loraLoads ?? []) {
      const adapter = this.adapters.get(load.adapter);
      if (!adapter) throw new Error(`step ${plan.stepIndex}: adapter ${load.adapter} was never registered with this executor`);
      this.loraSlots[load.slot] = adapter;
    }
    const bs = this.geometry.blockSize;
    const outputs: SeqOutput[] = [];
    for (const seq of plan.seqs) {
      const table = seq.blockTable;
      const slotOf = (p: number) => {
        const block = table[Math.floor(p / bs)];
        if (block === undefined) throw new RangeError(`sequence ${seq.seqId}: position ${p} is beyond its block table`);
        return block * bs + (p % bs);
      };
      const slot = seq.loraSlot ?? -1;
      const lora = slot >= 0 ? this.loraSlots[slot] : null;
      if (lora === undefined || (slot >= 0 && !lora)) throw new Error(`sequence ${seq.seqId}: adapter slot ${slot} holds no adapter`);
      const rows: LogitRow[] = [];
      for (let k = 0; k < seq.tokenIds.length; k++) {
        const pos = seq.startPosition + k;
        if (seq.slots[k] !== slotOf(pos)) {
          throw new Error(`sequence ${seq.seqId}: slot ${seq.slots[k]} of position ${pos} disagrees with its block table`);
        }
        // The trailing numLogitRows rows need logits (one, or a verified token and its drafts).
        const wantLogits = seq.needsLogits && k >= seq.tokenIds.length - (seq.numLogitRows ?? 1);
        const logits = forwardToken(this.model, this.scratch, this.pool, seq.tokenIds[k], pos, slotOf, wantLogits, lora);
        if (logits) rows.push({ argmax: argmax(logits), logits: logits.slice() });
      }
      if (rows.length > 0) {
        const out: SeqOutput = { seqId: seq.seqId, ...rows[rows.length - 1] };
        if (rows.length > 1) out.rows = rows;
        outputs.push(out);
      }
    }
    return { outputs, durationMs: performance.now() - started };
  }

  dispose(): void {
    this.loraSlots = [];
    this.pool = createKvStore(this.model, 0);
    this.swapPool = createKvStore(this.model, 0);
  }
}
