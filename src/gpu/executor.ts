/**
 * The real engine on WebGPU: GpuExecutor implements the engine's Executor. One engine step = one
 * batched forward pass over every scheduled token of every running sequence (prefill chunks and
 * decode tokens mixed), recorded into ONE compute pass and ONE submit (forward.ts), with the
 * argmax (and, for sampled rows, the logits) read back in the same submit.
 *
 * Per step: swap-outs are read back first (their own small submit: the blocks leave GPU memory
 * before anything can overwrite them), swap-ins and the step's inputs are uploaded with
 * queue.writeBuffer, then the pass is recorded and submitted.
 *
 * Ownership, each group created and destroyed by one owner:
 *   GpuWeights      (weights.ts)      model tensors + RoPE table, for the executor's life
 *   GpuKvPool       (kv-pool.ts)      paged K/V per layer, one per configure()d geometry
 *   GpuSeqTables    (seq-tables.ts)   the sequences' block tables, kept between steps, one per geometry
 *   CpuSwapPool     (swap.ts)         CPU swap space for that geometry (plain memory)
 *   ActivationArena (activations.ts)  per-step activations and inputs, grown as steps need
 *   GpuLoraSlots    (lora-slots.ts)   the LoRA adapter slots (maxLoras regions), one per geometry;
 *                                     registered adapters stay in host memory (a Map) until loaded
 * The executor holds one of each and, in dispose(), has each destroy its own group once.
 */
import type { ProfileSink } from '../engine/profile.ts';
import type { Executor, KvGeometry, LogitRow, LoraAdapter, SeqOutput, StepOutput, StepPlan } from '../engine/types.ts';
import type { Model } from '../model/types.ts';
import { ActivationArena, type Activations } from './activations.ts';
import type { GpuContext } from './device.ts';
import { encodeForward, ForwardPrograms, type ForwardProgram, type ForwardStep } from './forward.ts';
import { checkKvGeometry, GpuKvPool } from './kv-pool.ts';
import { GpuLoraSlots } from './lora-slots.ts';
import { packStep } from './pack.ts';
import { createStorageBuffer } from './buffers.ts';
import type { KernelName } from './kernel-names.ts';
import type { OverrideValues } from './registry.ts';
import type { DispatchTarget, GpuRuntime, StepEncoder } from './step.ts';
import { firstTierTuning, type KernelTuning } from './tuning.ts';
import { GpuSeqTables } from './seq-tables.ts';
import { CpuSwapPool } from './swap.ts';
import { GpuWeights } from './weights.ts';

/** The GPU device was lost (driver reset, GPU removed, or destroyed on purpose) during a step. */
export class DeviceLostError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DeviceLostError';
  }
}

export interface GpuExecutorOptions {
  /** Measure each step's GPU time with timestamp queries when the device has them (default true). */
  timestamps?: boolean;
  /** Wrap each step in a validation error scope (tests). */
  validate?: boolean;
  /** Tokens per step to size activations for up front (they grow on demand). */
  initialTokens?: number;
  /**
   * Host-time profiling (benchmarks, tests): each execute() adds its phases to it (pack, swapOut,
   * upload, encode, submit, readbackWait, output; and 'gpu', the timestamp queries' GPU time,
   * where the device has them). Absent: nothing is timed.
   */
  profile?: ProfileSink;
  /**
   * Encode the next step ahead (default true): right after a decode-only step is submitted, the
   * same step shape is encoded for the step after it, while the GPU runs this one; the next
   * execute() submits it when its shape and buffers match (else it is dropped). See prepareNext.
   */
  prepareSteps?: boolean;
  /**
   * In a decode step (each sequence one token), rotate and write K/V inside paged_attention
   * (default true, where the runtime's tuning allows: KernelTuning.fuseRopeKv): one dispatch
   * fewer per layer, the same bits. False: rope_kv_write as its own dispatch (benchmarks compare).
   */
  fuseRopeKv?: boolean;
}

/**
 * A step encoded ahead of its plan (GpuExecutor.prepareNext): the forward program it replays and
 * what it reads, finished and waiting to be submitted by the next execute() whose step has exactly
 * this program (same shape, same buffers), the same kept-tokens target and the same reads.
 */
interface PreparedStep {
  step: StepEncoder;
  program: ForwardProgram;
  /** Async scheduling: where its argmax is copied for the step after it (null: not kept). */
  keepInto: GPUBuffer | null;
  /** Whether it reads the logits back (temperature > 0 or structured rows), besides the argmax. */
  readsLogits: boolean;
  argmaxRead: number;
  logitsRead: number;
}

/** Kept-token rows the executor's `sampled` buffer starts with (it grows by powers of two). */
const INITIAL_SAMPLED_ROWS = 256;
/** warmUp({ deferRest }): the rest compiles this long after the first step ends (its tokens reach the page first)... */
const REST_AFTER_STEP_MS = 400;
/** ...or after this long with no step. */
const REST_IDLE_MS = 1500;

export class GpuExecutor implements Executor {
  readonly name: string;
  readonly vocabSize: number;
  /**
   * Async scheduling: plans may carry PLACEHOLDER_TOKEN_ID rows; the embedding reads them from
   * the previous plan's argmax kept on the device (StepPlan.keepSampledTokens). execute() submits
   * its step before its promise settles (unless the plan swaps blocks out, which it reads back first).
   */
  readonly tokenFeedback = true;
  /** Async scheduling: the last kept step's argmax per logits row [rows] u32 (grown by powers of two). */
  private sampled: GPUBuffer;
  private sampledCapacity = INITIAL_SAMPLED_ROWS;
  /** Async scheduling: seqId -> its row in `sampled`, for the step after one that kept its tokens (else null). */
  private keptRows: Map<number, number> | null = null;
  private readonly device: GPUDevice;
  private readonly weights: GpuWeights;
  private readonly act: ActivationArena;
  private readonly programs: ForwardPrograms;
  private kv: GpuKvPool | null = null; // set by configure()
  private swap: CpuSwapPool | null = null; // set by configure()
  private tables: GpuSeqTables | null = null; // set by configure()
  private lora: GpuLoraSlots | null = null; // set by configure()
  /** Registered LoRA adapters, by name (host memory; loaded into slots by the plans' loraLoads). */
  private readonly adapters = new Map<string, LoraAdapter>();
  private disposed = false;
  private lostMessage: string | null = null;
  /** Dispatches recorded by the last step (for benchmarks). */
  lastNumDispatches = 0;
  /**
   * Decode steps rotate and write K/V inside paged_attention (options.fuseRopeKv, default true).
   * May change between steps: a benchmark alternates it over windows of one run.
   */
  fuseRopeKv: boolean;
  /** The next step, encoded ahead (see prepareNext); null when none is waiting. */
  private prepared: PreparedStep | null = null;
  /** Steps encoded ahead: submitted as they were (used) or dropped because the step differed (benchmarks, tests). */
  readonly preparedSteps = { used: 0, dropped: 0 };
  /** GPU time of the last step from timestamp queries, when the device has them. */
  lastGpuTimeMs: number | null = null;
  /** The last step's first-pass start and last-pass end on the GPU's clock (ns), when timestamps exist. */
  lastGpuSpanNs: { begin: bigint; end: bigint } | null = null;

  constructor(
    readonly ctx: GpuContext,
    readonly runtime: GpuRuntime,
    readonly model: Model,
    private readonly options: GpuExecutorOptions = {},
  ) {
    this.fuseRopeKv = options.fuseRopeKv ?? true;
    this.device = ctx.device;
    this.vocabSize = model.config.vocabSize;
    this.name = `webgpu: ${ctx.adapter.vendor} ${ctx.adapter.architecture}`.trim();
    ctx.onLost((loss) => (this.lostMessage = `the GPU device was lost (${loss.reason}): ${loss.message || 'no details'}`));
    this.weights = new GpuWeights(this.device, model);
    this.act = new ActivationArena(this.device, model.config);
    this.programs = new ForwardPrograms(runtime, model.config, this.weights);
    this.sampled = createStorageBuffer(this.device, INITIAL_SAMPLED_ROWS * 4, 'kept sampled tokens');
  }

  /** Bytes of the weights as uploaded (quantized matrices as their blocks), the RoPE table aside. */
  get weightBytes(): number {
    return this.weights.weightBytes;
  }

  /** How each uploaded matrix is stored, for tests: [embedding, per layer wqkv, wo, w13, w2..., classifier]. */
  get weightTypes(): string[] {
    const w = this.weights;
    return [w.embedding.type, ...w.layers.flatMap((l) => [l.wqkv.type, l.wo.type, l.w13.type, l.w2.type]), w.wcls.type];
  }

  checkGeometry(geometry: KvGeometry): void {
    checkKvGeometry(this.device, this.model.config, geometry);
  }

  configure(geometry: KvGeometry): void {
    this.assertUsable();
    checkKvGeometry(this.device, this.model.config, geometry);
    this.dropPrepared();
    this.kv?.destroy();
    this.tables?.destroy();
    this.kv = new GpuKvPool(this.device, this.model.config, geometry);
    this.tables = new GpuSeqTables(this.device, geometry.blockSize, this.model.config.seqLen, geometry.numGpuBlocks);
    this.swap = new CpuSwapPool(this.kv);
    this.lora?.destroy();
    this.lora = new GpuLoraSlots(this.device, this.model.config, geometry.maxLoras ?? 0, geometry.maxLoraRank ?? 16, this.adapters);
    this.act.ensure(this.options.initialTokens ?? 64, 16, 16);
    // A new KV pool: no step before it feeds the next.
    this.keptRows = null;
  }

  registerAdapter(adapter: LoraAdapter): void {
    this.adapters.set(adapter.name, adapter);
  }

  private assertUsable(): void {
    if (this.disposed) throw new Error('the GPU executor was disposed');
    if (this.lostMessage || this.ctx.isLost) throw new DeviceLostError(this.lostMessage ?? 'the GPU device was lost');
  }

  async execute(plan: StepPlan): Promise<StepOutput> {
    this.assertUsable();
    const kv = this.kv;
    const swap = this.swap!;
    if (!kv) throw new Error('the GPU executor needs configure() before execute()');
    const started = performance.now();
    const prof = this.options.profile;
    // Profiling: `t` is where the phase being timed began.
    let t = started;
    const lap = (phase: 'pack' | 'swapOut' | 'upload' | 'encode' | 'prepare' | 'output'): void => {
      const now = performance.now();
      prof!.add(phase, now - t);
      t = now;
    };
    const c = this.model.config;
    kv.checkBlocks(plan);
    // Pack into the arena's pooled input arrays (sized for this step first); the block tables are
    // updated in place on the GPU. Placeholder rows read the previous step's kept tokens:
    // keptRowOf finds a sequence's row there.
    let numTokens = 0;
    let numLogitRows = 0;
    let oneTokenPerSeq = true; // a decode step
    for (const s of plan.seqs) {
      numTokens += s.tokenIds.length;
      if (s.tokenIds.length !== 1) oneTokenPerSeq = false;
      if (s.needsLogits) numLogitRows += Math.max(1, s.numLogitRows ?? 1);
    }
    const a = this.act.ensure(numTokens, numLogitRows, plan.copies.length);
    const kept = this.keptRows;
    const packed = packStep(plan, kv.geometry.blockSize, c.vocabSize, c.seqLen, a.into, this.tables!.update(plan.seqs), kept ? (seqId) => kept.get(seqId) ?? -1 : undefined);
    // This step's placeholders read `readSampled`; what it keeps goes to this.sampled (a bigger
    // buffer when its rows outgrow the old one, which is destroyed once this step is submitted).
    const readSampled = this.sampled;
    let retired: GPUBuffer | null = null;
    const keep = plan.keepSampledTokens === true && packed.logitRows.length > 0;
    if (keep && packed.logitRows.length > this.sampledCapacity) {
      while (this.sampledCapacity < packed.logitRows.length) this.sampledCapacity *= 2;
      retired = readSampled;
      this.sampled = createStorageBuffer(this.device, this.sampledCapacity * 4, 'kept sampled tokens');
    }
    // Set before anything is awaited: the next plan may be packed before this one is read back.
    this.keptRows = keep ? new Map(packed.logitSeqIds.map((seqId, r) => [seqId, r])) : null;
    if (prof) lap('pack');

    try {
      if (plan.swapOut.length > 0) await swap.swapOut(this.device, kv, plan.swapOut);
      this.assertUsable();
      if (prof) lap('swapOut');
      if (plan.swapIn.length > 0) swap.swapIn(this.device, kv, plan.swapIn);

      const numRows = packed.logitRows.length;
      const numCopies = plan.copies.length;
      // LoRA: load the plan's adapters into their slots, then each token row's slot (or none)
      const lora = this.lora!;
      if (plan.loraLoads) lora.load(plan.loraLoads);
      let hasLora = false;
      if (plan.seqs.some((s) => (s.loraSlot ?? -1) >= 0)) {
        let row = 0;
        for (const s of plan.seqs) {
          const slot = s.loraSlot ?? -1;
          if (slot >= 0 && !lora.isLoaded(slot)) throw new Error(`sequence ${s.seqId}: adapter slot ${slot} holds no adapter`);
          a.loraSlotsView.fill(slot >= 0 ? slot : 0xffffffff, row, row + s.tokenIds.length);
          row += s.tokenIds.length;
        }
        hasLora = true;
      }
      this.act.upload(a, packed, plan.copies, hasLora);
      if (prof) lap('upload');

      // The forward pass of this step's shape (recorded on its first use and replayed after): the
      // step encoded ahead when it is this one, else encoded now.
      const shape: ForwardStep = { numTokens, numRows, numCopies, lora: hasLora ? lora : null, sampled: readSampled, fuseRopeKv: oneTokenPerSeq && this.fuseRopeKv };
      const readsLogits = packed.logitsWanted.some(Boolean);
      let encoded = this.takePrepared(kv, a, shape, keep, readsLogits);
      if (!encoded) {
        const step = this.runtime.beginStep({ label: `step ${plan.stepIndex}`, timestamps: this.options.timestamps ?? true, validate: this.options.validate, profile: prof });
        encoded = this.encodeStep(step, a, this.programs.get(kv, this.tables!, a, shape), numRows, keep, readsLogits);
      }
      const { step, argmaxRead, logitsRead } = encoded;
      this.lastNumDispatches = step.numDispatches;
      if (prof) lap('encode');
      // submitNow() times its own parts (the rest of encode, submit, and the readback wait from
      // wait()) into the profile.
      const submitted = step.submitNow();
      retired?.destroy();
      // While the GPU runs this step: a decode step is most often followed by one of the same
      // shape (the same sequences decoding again), so that one is encoded now.
      const decodeOnly = numRows > 0 && numRows === numTokens && numCopies === 0 && plan.swapIn.length === 0 && plan.swapOut.length === 0 && !plan.loraLoads;
      if (decodeOnly && (this.options.prepareSteps ?? true)) {
        if (prof) t = performance.now();
        this.prepareNext(kv, a, { ...shape, sampled: this.sampled }, keep, readsLogits, plan.stepIndex + 1);
        if (prof) lap('prepare');
      }
      const result = await submitted.wait();
      if (prof) t = performance.now();
      this.assertUsable();

      const outputs: SeqOutput[] = [];
      if (argmaxRead >= 0) {
        const argmax = new Uint32Array(result.reads[argmaxRead]);
        const logits = logitsRead >= 0 ? new Float32Array(result.reads[logitsRead]) : null;
        const seqIds = packed.logitSeqIds;
        // A sequence verifying drafts has consecutive rows: one output with every row, the last on top.
        let rows: LogitRow[] | null = null;
        for (let r = 0; r < seqIds.length; r++) {
          const seqId = seqIds[r];
          const rowLogits = logits && packed.logitsWanted[r] ? logits.slice(r * c.vocabSize, (r + 1) * c.vocabSize) : undefined;
          const last = seqIds[r + 1] !== seqId;
          if (!last || rows) {
            const row: LogitRow = { argmax: argmax[r] };
            if (rowLogits) row.logits = rowLogits;
            (rows ??= []).push(row);
          }
          if (!last) continue;
          const out: SeqOutput = rowLogits ? { seqId, argmax: argmax[r], logits: rowLogits } : { seqId, argmax: argmax[r] };
          if (rows) out.rows = rows;
          outputs.push(out);
          rows = null;
        }
      }
      this.lastGpuTimeMs = result.gpuTimeMs;
      this.lastGpuSpanNs = result.gpuSpanNs;
      if (prof) {
        lap('output');
        if (result.gpuTimeMs !== null) prof.add('gpu', result.gpuTimeMs);
      }
      if (this.restGate && !this.restAfterStep) {
        // warmUp({ deferRest }): the first step is done; the rest compiles once its tokens are out.
        this.restAfterStep = true;
        clearTimeout(this.restTimer);
        this.restTimer = setTimeout(() => this.restGate?.(true), REST_AFTER_STEP_MS);
      }
      // The engine clock: the step's GPU time where timestamp queries exist, else its wall time.
      const wallMs = performance.now() - started;
      return { outputs, durationMs: result.gpuTimeMs ?? wallMs, wallMs };
    } catch (e) {
      // A destroyed device first fails the step's pending work (an aborted mapAsync, say); its
      // lost promise settles a moment later. Give it that moment before calling the error a bug.
      if (await this.settlesAsLost()) throw new DeviceLostError(this.lostMessage ?? `the GPU device was lost: ${(e as Error).message}`);
      throw e;
    }
  }

  /**
   * Records a step's forward program into `step`, with the argmax kept on the GPU for the next
   * step (async scheduling) and the readbacks it needs; returns the step with its read indices.
   */
  private encodeStep(step: StepEncoder, a: Activations, program: ForwardProgram, numRows: number, keep: boolean, readsLogits: boolean): PreparedStep {
    step.replay(program.dispatches);
    const keepInto = keep && program.hasLogits ? this.sampled : null;
    // Async scheduling: the tokens stay where the next step's embedding reads them.
    if (keepInto) step.copyBuffer(a.argmax, 0, keepInto, 0, numRows * 4);
    const argmaxRead = program.hasLogits ? step.read(a.argmax, numRows * 4) : -1;
    const logitsRead = program.hasLogits && readsLogits ? step.read(a.logits, numRows * this.model.config.vocabSize * 4) : -1;
    return { step, program, keepInto, readsLogits, argmaxRead, logitsRead };
  }

  /**
   * Encodes the step after this one ahead, as `shape` (this step's): called right after a decode
   * step is submitted, while the GPU runs it, so the next execute() of that shape only uploads
   * its inputs and submits (a queue's writes land before any later submit, whenever its commands
   * were encoded). The host work is the same; it is done while the GPU is busy instead of while
   * it waits, and right after the last encoding, when it costs the host least (measured: the same
   * WebGPU calls cost 2-10x more on a thread that has just waited). A step that differs (a
   * sequence joined or left, buffers grew, the parameter arena started over) drops it.
   */
  private prepareNext(kv: GpuKvPool, a: Activations, shape: ForwardStep, keep: boolean, readsLogits: boolean, stepIndex: number): void {
    const step = this.runtime.beginStep({ label: `step ${stepIndex} (encoded ahead)`, timestamps: this.options.timestamps ?? true, validate: this.options.validate, profile: this.options.profile });
    try {
      const prepared = this.encodeStep(step, a, this.programs.get(kv, this.tables!, a, shape), shape.numRows, keep, readsLogits);
      step.finish();
      this.prepared = prepared;
    } catch {
      // An optimisation only: the next step encodes itself (and meets any real error there).
      step.discard();
    }
  }

  /**
   * The step encoded ahead when the step being executed is exactly it (same program: shape and
   * buffers; same kept-tokens target; same reads), else null (the encoded one is dropped). Called
   * before beginStep(), so no new parameter generation has started since it was encoded.
   */
  private takePrepared(kv: GpuKvPool, a: Activations, shape: ForwardStep, keep: boolean, readsLogits: boolean): PreparedStep | null {
    const p = this.prepared;
    if (!p) return null;
    this.prepared = null;
    const program = this.programs.get(kv, this.tables!, a, shape);
    const keepInto = keep && program.hasLogits ? this.sampled : null;
    if (program === p.program && keepInto === p.keepInto && readsLogits === p.readsLogits) {
      this.preparedSteps.used++;
      return p;
    }
    p.step.discard();
    this.preparedSteps.dropped++;
    return null;
  }

  private dropPrepared(): void {
    if (!this.prepared) return;
    this.prepared.step.discard();
    this.prepared = null;
    this.preparedSteps.dropped++;
  }

  /**
   * Gets the pipelines a base-model step needs compiled, and the activation buffers sized for the
   * largest step, before any measured step — without running a step. The forward pass of each
   * step shape that selects different specialisations (token rows and logit rows in the kernels'
   * row-count classes 1, 2, 4, 8+, the largest step) is recorded into a collector that only notes
   * each dispatch's kernel and override values (no GPU work, no buffers touched); the distinct
   * specialisations are then compiled with createComputePipelineAsync, all asked for at once (a
   * driver may compile them in parallel; Chromium on SwiftShader runs them on its worker threads,
   * ~50-150 ms of CPU each). Steps find them in the registry's cache afterwards.
   *
   * In two tiers: it returns once the pipelines of the runtime's first tier are compiled (every
   * matmul as gemv in the smallest row class: firstTierTuning), and steps use that tier until the
   * rest are compiled too — the other row classes (and the tiled kernel), the copy-on-write copy
   * and the LoRA gathers — then the runtime's own tuning again (`warmedUp` settles then). The
   * bits are the same either way; only the speed of steps with many rows differs meanwhile.
   * With `deferRest` the rest starts compiling only after the first step (REST_AFTER_STEP_MS after
   * it ends) or after REST_IDLE_MS without one, so that a first prompt's step does not share the
   * CPU with those compiles (the lab's launch: page open → first token); else at once.
   */
  async warmUp(shape: { maxTokens: number; maxSeqs: number; deferRest?: boolean }): Promise<void> {
    const kv = this.kv;
    if (!kv) throw new Error('the GPU executor needs configure() before warmUp()');
    this.restGate?.(true); // an earlier warm-up's rest, still waiting: compiled now
    const c = this.model.config;
    const maxTokens = Math.max(1, shape.maxTokens);
    const maxRows = Math.max(1, Math.min(shape.maxSeqs, maxTokens));
    const a = this.act.ensure(maxTokens, maxRows, 1);
    const tables = this.tables!;
    type Spec = { kernel: KernelName; overrides: OverrideValues };
    const collect = (into: Map<string, Spec>, tuning: Readonly<KernelTuning>): DispatchTarget => ({
      tuning,
      dispatch: (kernel, _bindings, _workgroups, options = {}) => {
        const overrides = options.overrides ?? {};
        into.set(`${kernel}:${JSON.stringify(overrides)}`, { kernel, overrides });
      },
    });
    const full = this.runtime.fullTuning;
    const first = firstTierTuning(full);
    const firstSpecs = new Map<string, Spec>();
    const laterSpecs = new Map<string, Spec>();
    // Small shapes first: the registry compiles in the order asked, and a first prompt needs them.
    // The matmuls pick gemv (by row-count class) or the tiled kernel by rows, so these sizes
    // reach every specialisation a step up to maxTokens rows can use.
    const sizes = [...new Set([8, 1, 4, 2, maxTokens].map((n) => Math.min(n, maxTokens)))];
    for (const [tuning, into] of [[first, firstSpecs], [full, laterSpecs]] as const) {
      for (const numTokens of sizes) {
        encodeForward(collect(into, tuning), c, this.weights, kv, tables, a, { numTokens, numRows: Math.min(numTokens, maxRows), numCopies: 0, lora: null });
      }
      // A decode step's attention (rope_kv_write inside it, where the tuning says so).
      encodeForward(collect(into, tuning), c, this.weights, kv, tables, a, { numTokens: 1, numRows: 1, numCopies: 0, lora: null, fuseRopeKv: this.fuseRopeKv });
    }
    // A block copy, and (with adapter slots) one forward pass with adapter rows in every (layer,
    // module): the gather's pipelines (one per projection shape: q, k|v, o, w1|w3, w2; independent
    // of the row count). No adapter is loaded yet: only the shapes count.
    const numTokens = sizes[0];
    encodeForward(collect(laterSpecs, full), c, this.weights, kv, tables, a, { numTokens, numRows: Math.min(numTokens, maxRows), numCopies: 1, lora: null });
    const slots = this.lora;
    if (slots?.buffer) {
      const everyModule: GpuLoraSlots = Object.assign(Object.create(slots) as GpuLoraSlots, { uses: () => true });
      encodeForward(collect(laterSpecs, full), c, this.weights, kv, tables, a, { numTokens, numRows: Math.min(numTokens, maxRows), numCopies: 0, lora: everyModule });
    }
    for (const key of firstSpecs.keys()) laterSpecs.delete(key);
    const registry = this.runtime.registry;
    const compile = (specs: Map<string, Spec>) => Promise.all([...specs.values()].map((s) => registry.pipelineAsync(s.kernel, s.overrides)));
    // Steps use the first tier until the rest is compiled (released however that ends: a step
    // compiles what it needs itself, and meets a real compile error there).
    const release = laterSpecs.size > 0 ? this.runtime.holdFirstTier() : () => {};
    const firstDone = compile(firstSpecs);
    // The rest: compiled once the gate opens (true), or skipped (false: disposed before that).
    let gate!: (compileRest: boolean) => void;
    const rest = new Promise<boolean>((resolve) => (gate = resolve)).then((go) => (go ? compile(laterSpecs) : undefined)).then(release, release);
    this.warmedUp = firstDone.then(() => rest);
    this.warmedUp.catch(() => {});
    if (!shape.deferRest || laterSpecs.size === 0) gate(true);
    else {
      // The first prompt's steps get the CPU to themselves (a software adapter compiles on it).
      this.restGate = (go) => {
        clearTimeout(this.restTimer);
        this.restGate = null;
        gate(go);
      };
    }
    await firstDone;
    this.assertUsable();
    if (this.restGate) this.restTimer = setTimeout(() => this.restGate?.(true), REST_IDLE_MS);
  }

  /**
   * warmUp({ deferRest }): opens the rest's gate (true: compile it; false: the executor is
   * disposed, the runtime's first tier released without it); null once opened or when none waits.
   */
  private restGate: ((compileRest: boolean) => void) | null = null;
  private restTimer: ReturnType<typeof setTimeout> | undefined;
  private restAfterStep = false;

  /**
   * Settles when everything warmUp() asked for is compiled, the pipelines it did not wait for
   * included (resolved at once before any warmUp()).
   */
  warmedUp: Promise<void> = Promise.resolve();

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
    // A warm-up's rest not begun: the runtime (shared with the next executor) leaves its first tier.
    this.restGate?.(false);
    this.dropPrepared();
    if (this.ctx.isLost) return;
    this.weights.destroy();
    this.kv?.destroy();
    this.tables?.destroy();
    this.lora?.destroy();
    this.act.destroy();
    this.sampled.destroy();
  }
}
