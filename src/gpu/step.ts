/**
 * One engine step = one command encoder, ONE compute pass holding every dispatch, ONE submit,
 * then the step's readbacks mapped together. GpuRuntime owns what persists across steps (kernel
 * registry, parameter arena, readback staging pool, timestamp query sets);
 * StepEncoder records one step:
 *
 *   const step = runtime.beginStep({ timestamps: true });
 *   step.dispatch('rmsnorm', { x, w, out }, [numTokens], { overrides: { DIM: 64 } });
 *   ... (or the typed encoders of kernels.ts)
 *   const argmaxRead = step.read(argmaxBuffer, numRows * 4);
 *   const result = await step.submit();      // result.reads[argmaxRead], result.gpuTimeMs
 *
 * Dispatches inside one compute pass are ordered and see each other's writes (WebGPU inserts the
 * barriers), so a whole forward pass can be one pass. copyBuffer() and read() end the current
 * pass (copies cannot sit inside a compute pass); put them before the first or after the last
 * dispatch to keep one pass.
 *
 * Hot path: a dispatch can be resolved once (GpuRuntime.resolve: pipeline, bind group and
 * parameter slot looked up) into a ResolvedDispatch, and a list of them (a program, recorded with
 * a ProgramRecorder) replayed into any later step with StepEncoder.replay(): three WebGPU calls
 * per dispatch, no lookups, no allocation. Parameter slots are content-addressed and persistent:
 * a `params` value is written to the arena once, when first seen, and never per step.
 */
import { align4, BufferUsage, MAP_MODE_READ } from './buffers.ts';
import type { ProfileSink } from '../engine/profile.ts';
import type { GpuContext } from './device.ts';
import type { KernelName, KernelSources } from './kernel-names.ts';
import { KernelRegistry, PARAMS_SLOT_BYTES, type BufferBinding, type OverrideValues, type ParamField } from './registry.ts';
import { firstTierTuning, GPU_TUNING, tuningFor, type KernelTuning } from './tuning.ts';

/** A validation error raised by the WebGPU implementation while a step was recorded or run. */
export class GpuValidationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GpuValidationError';
  }
}

export interface StepOptions {
  label?: string;
  /** Measure GPU time with timestamp queries (ignored when the device lacks 'timestamp-query'). */
  timestamps?: boolean;
  /** Wrap the step in a validation error scope and throw GpuValidationError (tests, debugging). */
  validate?: boolean;
  /**
   * Host-time profiling: submit() adds its parts to it (resolving timestamps and finish() to
   * 'encode', queue.submit() to 'submit', the wait for the readbacks to 'readbackWait'). Absent:
   * nothing is timed.
   */
  profile?: ProfileSink;
}

export interface DispatchOptions {
  /** `override` constants of the kernel (model shapes, variant flags). */
  overrides?: OverrideValues;
  /** Fields of the kernel's `params` uniform (per-step counts such as `rows`). */
  params?: Readonly<Record<string, number>>;
}

/** Where dispatches go: an open step (StepEncoder) or a program being recorded (ProgramRecorder). */
export interface DispatchTarget {
  readonly tuning: Readonly<KernelTuning>;
  dispatch(kernel: KernelName, bindings: Readonly<Record<string, BufferBinding | undefined>>, workgroups: Workgroups, options?: DispatchOptions): void;
}

/** A dispatch with everything looked up: replayed as setPipeline, setBindGroup, dispatchWorkgroups. */
export interface ResolvedDispatch {
  readonly kernel: KernelName;
  readonly pipeline: GPUComputePipeline;
  readonly group: GPUBindGroup;
  /** [the params slot's byte offset] for kernels with a params uniform, else null. */
  readonly dynamicOffsets: readonly number[] | null;
  readonly x: number;
  readonly y: number;
  readonly z: number;
}

export interface StepResult {
  /** Contents of each read(), in the order the reads were recorded. */
  reads: ArrayBuffer[];
  /** GPU time of the step's compute passes in milliseconds; null without timestamps. */
  gpuTimeMs: number | null;
  /**
   * When the step's first pass began and its last pass ended on the GPU's timestamp clock (ns;
   * comparable between steps of one device, e.g. for the idle gap between them); null without
   * timestamps.
   */
  gpuSpanNs: { begin: bigint; end: bigint } | null;
  numDispatches: number;
  numPasses: number;
}

/** Workgroup counts: [x], [x, y] or [x, y, z]. */
export type Workgroups = readonly [number] | readonly [number, number] | readonly [number, number, number];

const SLOTS_PER_CHUNK = 64;
/** Distinct params values kept before the arena starts over (a new paramsGeneration). */
const MAX_PARAM_SLOTS = 64 * SLOTS_PER_CHUNK;
const MAX_TIMED_PASSES = 16;

interface ParamChunk {
  buffer: GPUBuffer; // [SLOTS_PER_CHUNK, 256 bytes] uniform; a slot is written once, when assigned
}

interface TimestampSet {
  querySet: GPUQuerySet;
  resolve: GPUBuffer; // [2 * MAX_TIMED_PASSES] u64 ns
  staging: GPUBuffer;
}

export interface RuntimeOptions {
  /** Whether the device has 'timestamp-query' (defaults to device.features). */
  hasTimestampQuery?: boolean;
  /** Workgroup sizing used by the encoders of kernels.ts (default GPU_TUNING). */
  tuning?: Readonly<KernelTuning>;
}

export class GpuRuntime {
  readonly device: GPUDevice;
  readonly registry: KernelRegistry;
  readonly hasTimestampQuery: boolean;
  /** The workgroup sizing the runtime was made with (steps use it unless a warm-up holds the first tier). */
  readonly fullTuning: Readonly<KernelTuning>;
  /** While a warm-up's later pipelines compile: fullTuning cut to its first tier (firstTierTuning). */
  private heldTuning: Readonly<KernelTuning> | null = null;
  private numHolds = 0;
  private readonly paramChunks: ParamChunk[] = [];
  /** Slot index by params content (the fields' 32-bit words); slots of one generation never change. */
  private readonly paramSlots = new Map<string, number>();
  private readonly paramWords = new ArrayBuffer(PARAMS_SLOT_BYTES);
  private readonly paramView = new DataView(this.paramWords);
  /**
   * Bumped when the arena starts over (more than MAX_PARAM_SLOTS distinct values): resolved
   * dispatches of an older generation point at slots that may hold other values now.
   */
  paramsGeneration = 0;
  private readonly stagingFree = new Map<number, GPUBuffer[]>();
  private readonly timestampFree: TimestampSet[] = [];
  private openStep: StepEncoder | null = null;

  constructor(device: GPUDevice, sources: KernelSources, options: RuntimeOptions = {}) {
    this.device = device;
    this.registry = new KernelRegistry(device, sources);
    this.hasTimestampQuery = options.hasTimestampQuery ?? device.features.has('timestamp-query');
    this.fullTuning = options.tuning ?? GPU_TUNING;
  }

  /**
   * The workgroup sizing steps are encoded with now: fullTuning, or its first tier while a
   * warm-up holds it (holdFirstTier). The object changes only when that starts or ends, so a
   * program recorded with one can be told apart (ForwardPrograms keys on it).
   */
  get tuning(): Readonly<KernelTuning> {
    return this.heldTuning ?? this.fullTuning;
  }

  /**
   * Until the returned release() is called (every holder's, when several hold), steps use
   * firstTierTuning(fullTuning): fewer pipelines to compile before the first step, with the same
   * bits (a row's arithmetic is the same in every matmul row class and in the tiled kernel).
   */
  holdFirstTier(): () => void {
    if (this.numHolds++ === 0) this.heldTuning = firstTierTuning(this.fullTuning);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (--this.numHolds === 0) this.heldTuning = null;
    };
  }

  /** A runtime for an acquired device, tuned for its adapter class (tuningFor). */
  static fromContext(ctx: GpuContext, sources: KernelSources, tuning: Readonly<KernelTuning> = tuningFor(ctx.adapter)): GpuRuntime {
    return new GpuRuntime(ctx.device, sources, { hasTimestampQuery: ctx.hasTimestampQuery, tuning });
  }

  /** Starts recording a step. Only one step may be recorded at a time (submit() ends it). */
  beginStep(options: StepOptions = {}): StepEncoder {
    if (this.openStep) throw new Error('a step is already being recorded: submit it first');
    if (this.paramSlots.size >= MAX_PARAM_SLOTS) {
      // Between steps: every earlier step's slots were written before its submit, so rewriting
      // them now cannot change what an earlier step reads.
      this.paramSlots.clear();
      this.paramsGeneration++;
    }
    const step = new StepEncoder(this, options);
    this.openStep = step;
    return step;
  }

  /** Frees the runtime's buffers and query sets (not the device). */
  destroy(): void {
    for (const c of this.paramChunks) c.buffer.destroy();
    this.paramChunks.length = 0;
    this.paramSlots.clear();
    this.paramsGeneration++;
    for (const list of this.stagingFree.values()) for (const b of list) b.destroy();
    this.stagingFree.clear();
    for (const t of this.timestampFree) {
      t.querySet.destroy();
      t.resolve.destroy();
      t.staging.destroy();
    }
    this.timestampFree.length = 0;
    this.registry.destroy();
  }

  /** @internal */
  stepClosed(step: StepEncoder): void {
    if (this.openStep === step) this.openStep = null;
  }

  /**
   * Resolves one dispatch: its pipeline (compiled on a miss), its bind group (cached by the
   * buffers bound) and its parameter slot (written to the arena the first time this value is
   * seen). Null for a dispatch with a zero workgroup count (nothing to run).
   */
  resolve(kernel: KernelName, bindings: Readonly<Record<string, BufferBinding | undefined>>, workgroups: Workgroups, options: DispatchOptions = {}): ResolvedDispatch | null {
    const [x, y = 1, z = 1] = workgroups;
    if (x === 0 || y === 0 || z === 0) return null;
    const max = this.device.limits.maxComputeWorkgroupsPerDimension;
    if (!(x <= max && y <= max && z <= max) || !Number.isInteger(x) || !Number.isInteger(y) || !Number.isInteger(z)) {
      throw new RangeError(`${kernel}: workgroup counts [${x}, ${y}, ${z}] must be integers <= ${max}`);
    }
    const registry = this.registry;
    const overrides = options.overrides ?? {};
    const info = registry.info(kernel);
    const pipeline = registry.pipeline(kernel, overrides);
    let paramsBuffer: GPUBuffer | undefined;
    let dynamicOffsets: number[] | null = null;
    if (info.params.length > 0) {
      const slot = this.paramSlot(kernel, info.params, options.params);
      paramsBuffer = this.paramChunk(Math.floor(slot / SLOTS_PER_CHUNK)).buffer;
      dynamicOffsets = [(slot % SLOTS_PER_CHUNK) * PARAMS_SLOT_BYTES];
    }
    const group = registry.bindGroup(kernel, bindings, overrides, paramsBuffer);
    return { kernel, pipeline, group, dynamicOffsets, x, y, z };
  }

  /** The arena slot holding these params values (assigned and written on first use). */
  private paramSlot(kernel: KernelName, fields: readonly ParamField[], params: Readonly<Record<string, number>> | undefined): number {
    const view = this.paramView;
    fields.forEach((field, i) => {
      const value = params?.[field.name];
      if (value === undefined) throw new Error(`${kernel}: params.${field.name} is missing`);
      if (field.type === 'f32') view.setFloat32(i * 4, value, true);
      else if (field.type === 'i32') view.setInt32(i * 4, value, true);
      else view.setUint32(i * 4, value, true);
    });
    const words = new Uint32Array(this.paramWords, 0, fields.length);
    const key = words.join(',');
    let slot = this.paramSlots.get(key);
    if (slot === undefined) {
      slot = this.paramSlots.size;
      this.paramSlots.set(key, slot);
      const chunk = this.paramChunk(Math.floor(slot / SLOTS_PER_CHUNK));
      this.device.queue.writeBuffer(chunk.buffer, (slot % SLOTS_PER_CHUNK) * PARAMS_SLOT_BYTES, this.paramWords, 0, fields.length * 4);
    }
    return slot;
  }

  private paramChunk(index: number): ParamChunk {
    while (this.paramChunks.length <= index) {
      this.paramChunks.push({
        buffer: this.device.createBuffer({
          label: `params chunk ${this.paramChunks.length}`,
          size: SLOTS_PER_CHUNK * PARAMS_SLOT_BYTES,
          usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST,
        }),
      });
    }
    return this.paramChunks[index];
  }

  /** @internal A mappable buffer of at least `sizeBytes` (power-of-two size class). */
  takeStaging(sizeBytes: number): GPUBuffer {
    const size = Math.max(256, 2 ** Math.ceil(Math.log2(align4(sizeBytes))));
    const free = this.stagingFree.get(size);
    const reused = free?.pop();
    if (reused) return reused;
    return this.device.createBuffer({ label: `readback ${size}`, size, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
  }

  /** @internal */
  returnStaging(buffer: GPUBuffer): void {
    const list = this.stagingFree.get(buffer.size) ?? [];
    list.push(buffer);
    this.stagingFree.set(buffer.size, list);
  }

  /** @internal */
  takeTimestamps(): TimestampSet {
    const reused = this.timestampFree.pop();
    if (reused) return reused;
    const bytes = 2 * MAX_TIMED_PASSES * 8;
    return {
      querySet: this.device.createQuerySet({ type: 'timestamp', count: 2 * MAX_TIMED_PASSES }),
      resolve: this.device.createBuffer({ size: bytes, usage: BufferUsage.QUERY_RESOLVE | BufferUsage.COPY_SRC }),
      staging: this.device.createBuffer({ size: bytes, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST }),
    };
  }

  /** @internal */
  returnTimestamps(t: TimestampSet): void {
    this.timestampFree.push(t);
  }
}

interface PendingRead {
  staging: GPUBuffer;
  sizeBytes: number;
}

/**
 * Records dispatches into a program (resolved once, replayed into many steps with
 * StepEncoder.replay) instead of a step. What it resolves stays valid while the buffers it bound
 * live and the runtime's paramsGeneration is the one it was recorded under.
 */
export class ProgramRecorder implements DispatchTarget {
  readonly dispatches: ResolvedDispatch[] = [];
  readonly paramsGeneration: number;

  constructor(private readonly runtime: GpuRuntime) {
    this.paramsGeneration = runtime.paramsGeneration;
  }

  get tuning(): Readonly<KernelTuning> {
    return this.runtime.tuning;
  }

  dispatch(kernel: KernelName, bindings: Readonly<Record<string, BufferBinding | undefined>>, workgroups: Workgroups, options: DispatchOptions = {}): void {
    const d = this.runtime.resolve(kernel, bindings, workgroups, options);
    if (d) this.dispatches.push(d);
  }
}

export class StepEncoder implements DispatchTarget {
  private readonly runtime: GpuRuntime;
  private readonly device: GPUDevice;
  private readonly encoder: GPUCommandEncoder;
  private readonly validate: boolean;
  private readonly timestamps: TimestampSet | null;
  private readonly profile: ProfileSink | undefined;
  private pass: GPUComputePassEncoder | null = null;
  private numPasses = 0;
  private numTimedPasses = 0;
  private dispatches = 0;
  private readonly reads: PendingRead[] = [];
  /** Recording ended (finish() or submitNow()). */
  private closed = false;
  /** Submitted (or discarded): nothing more may be done with it. */
  private submitted = false;
  /** The finished commands, until submitted. */
  private commands: GPUCommandBuffer | null = null;
  /** validate: the recording's validation scope, closed by finish(). */
  private encodeValidation: Promise<GPUError | null> | null = null;

  /** Use GpuRuntime.beginStep(). */
  constructor(runtime: GpuRuntime, options: StepOptions) {
    this.runtime = runtime;
    this.device = runtime.device;
    this.validate = options.validate ?? false;
    this.profile = options.profile;
    if (this.validate) this.device.pushErrorScope('validation');
    this.encoder = this.device.createCommandEncoder({ label: options.label ?? 'step' });
    this.timestamps = options.timestamps && runtime.hasTimestampQuery ? runtime.takeTimestamps() : null;
  }

  /** The runtime's workgroup sizing (used by the encoders of kernels.ts). */
  get tuning(): Readonly<KernelTuning> {
    return this.runtime.tuning;
  }

  /** Dispatches recorded so far. */
  get numDispatches(): number {
    return this.dispatches;
  }

  /**
   * Records one dispatch of `kernel` into the step's compute pass. `bindings` are by WGSL
   * variable name (the `params` uniform is filled from options.params). A dispatch with a zero
   * workgroup count is skipped.
   */
  dispatch(kernel: KernelName, bindings: Readonly<Record<string, BufferBinding | undefined>>, workgroups: Workgroups, options: DispatchOptions = {}): void {
    this.assertOpen();
    const d = this.runtime.resolve(kernel, bindings, workgroups, options);
    if (d) this.record(this.computePass(), d);
  }

  /**
   * Records resolved dispatches (a program from ProgramRecorder) into the step's compute pass.
   * They must come from this runtime, in its current paramsGeneration, with their buffers alive.
   */
  replay(dispatches: readonly ResolvedDispatch[]): void {
    this.assertOpen();
    if (dispatches.length === 0) return;
    const pass = this.computePass();
    for (const d of dispatches) this.record(pass, d);
  }

  private record(pass: GPUComputePassEncoder, d: ResolvedDispatch): void {
    pass.setPipeline(d.pipeline);
    if (d.dynamicOffsets) pass.setBindGroup(0, d.group, d.dynamicOffsets);
    else pass.setBindGroup(0, d.group);
    pass.dispatchWorkgroups(d.x, d.y, d.z);
    this.dispatches++;
  }

  /** Records a buffer-to-buffer copy (ends the current compute pass; different buffers only). */
  copyBuffer(src: GPUBuffer, srcOffsetBytes: number, dst: GPUBuffer, dstOffsetBytes: number, sizeBytes: number): void {
    this.assertOpen();
    this.endPass();
    this.encoder.copyBufferToBuffer(src, srcOffsetBytes, dst, dstOffsetBytes, sizeBytes);
  }

  /**
   * Reads `sizeBytes` (default: the whole binding) of a buffer as it is at this point of the step;
   * returns the index of its contents in StepResult.reads. Ends the current compute pass.
   */
  read(binding: BufferBinding, sizeBytes?: number): number {
    this.assertOpen();
    const b = 'buffer' in binding ? binding : { buffer: binding };
    const offset = b.offset ?? 0;
    const size = sizeBytes ?? b.size ?? b.buffer.size - offset;
    this.endPass();
    const staging = this.runtime.takeStaging(size);
    this.encoder.copyBufferToBuffer(b.buffer, offset, staging, 0, align4(size));
    this.reads.push({ staging, sizeBytes: size });
    return this.reads.length - 1;
  }

  /** Submits the step once and waits for its readbacks (submitNow().wait()). */
  async submit(): Promise<StepResult> {
    return this.submitNow().wait();
  }

  /**
   * Ends the recording: the pass ended, the timestamps resolved, the commands finished, ready for
   * submitNow(). A finished step no longer counts as the runtime's open step, so the next one can
   * begin while this one waits to be submitted (a step encoded ahead, see GpuExecutor).
   */
  finish(): void {
    this.assertOpen();
    this.endPass();
    const ts = this.timestamps;
    if (ts && this.numTimedPasses > 0) {
      this.encoder.resolveQuerySet(ts.querySet, 0, 2 * this.numTimedPasses, ts.resolve, 0);
      this.encoder.copyBufferToBuffer(ts.resolve, 0, ts.staging, 0, 2 * this.numTimedPasses * 8);
    }
    this.commands = this.encoder.finish();
    this.endRecording();
  }

  /**
   * Closes the recording: no longer the runtime's open step, and its own validation scope ended
   * (a step encoded ahead is submitted later, after calls that are not its own; submitNow() opens
   * one for the submit).
   */
  private endRecording(): void {
    this.closed = true;
    this.runtime.stepClosed(this);
    if (this.validate) this.encodeValidation = this.device.popErrorScope();
  }

  /** Whether finish() (or submitNow()) ended the recording. */
  get isFinished(): boolean {
    return this.closed;
  }

  /**
   * Drops a step that will not be submitted: its readback buffers and timestamps go back to the
   * runtime's pools (and its validation scope is closed). Nothing of it reaches the GPU.
   */
  discard(): void {
    if (this.submitted) throw new Error('this step was already submitted');
    if (!this.closed) {
      this.endPass();
      this.endRecording();
    }
    this.submitted = true;
    for (const r of this.reads) this.runtime.returnStaging(r.staging);
    this.reads.length = 0;
    if (this.timestamps) this.runtime.returnTimestamps(this.timestamps);
    // Nothing of it runs: what its recording raised is not reported.
    this.encodeValidation?.catch(() => {});
  }

  /**
   * Submits the step now (finishing it first if needed) and starts mapping its readbacks; the
   * returned wait() resolves with them. The host may do other work between the two (encode the
   * next step while the GPU runs this one): the readback wait is timed from the wait() call.
   */
  submitNow(): { wait(): Promise<StepResult> } {
    if (this.submitted) throw new Error('this step was already submitted');
    const prof = this.profile;
    let t = prof ? performance.now() : 0;
    const lap = (phase: 'encode' | 'submit' | 'readbackWait'): void => {
      const now = performance.now();
      prof!.add(phase, now - t);
      t = now;
    };
    if (!this.closed) this.finish();
    this.submitted = true;
    const commands = this.commands!;
    this.commands = null;
    const ts = this.timestamps;
    const timedPasses = this.numTimedPasses;
    if (prof) lap('encode');
    // Where the sink reads the run-queue delay: how much of submit and of the readback wait the
    // thread spent waiting for a CPU (the reads themselves are left out of both laps).
    const runDelay = prof?.runDelayMs;
    let delay = 0;
    if (runDelay) {
      delay = runDelay();
      t = performance.now();
    }
    if (this.validate) this.device.pushErrorScope('validation');
    this.device.queue.submit([commands]);
    const submitValidation = this.validate ? this.device.popErrorScope() : null;
    if (prof) lap('submit');
    if (runDelay) prof!.add('submitRunDelay', runDelay() - delay);

    const encodeValidation = this.encodeValidation;
    const validation = this.validate
      ? Promise.all([encodeValidation ?? Promise.resolve(null), submitValidation!]).then(([e, s]) => e ?? s)
      : Promise.resolve(null);
    // GPU time is only reported when every pass was timed.
    const timed = ts !== null && timedPasses > 0 && timedPasses === this.numPasses;
    // The maps are asked for now; wait() only waits for them.
    const results = Promise.all([
      validation,
      Promise.all(
        this.reads.map(async (r) => {
          await r.staging.mapAsync(MAP_MODE_READ, 0, align4(r.sizeBytes));
          const data = r.staging.getMappedRange(0, align4(r.sizeBytes)).slice(0, r.sizeBytes);
          r.staging.unmap();
          this.runtime.returnStaging(r.staging);
          return data;
        }),
      ),
      timed ? readGpuTimes(ts, timedPasses) : Promise.resolve(null),
    ]);
    // A step dropped unwaited (its executor failed) must not leave an unhandled rejection.
    results.catch(() => {});
    return {
      wait: async (): Promise<StepResult> => {
        if (prof) t = performance.now();
        const waitDelay = runDelay ? runDelay() : 0;
        const [error, reads, gpuTimes] = await results;
        if (prof) lap('readbackWait');
        if (runDelay) prof!.add('readbackRunDelay', runDelay() - waitDelay);
        if (ts) this.runtime.returnTimestamps(ts);
        if (error) throw new GpuValidationError(error.message);
        return {
          reads,
          gpuTimeMs: gpuTimes?.busyMs ?? null,
          gpuSpanNs: gpuTimes?.span ?? null,
          numDispatches: this.dispatches,
          numPasses: this.numPasses,
        };
      },
    };
  }

  private computePass(): GPUComputePassEncoder {
    if (!this.pass) {
      const ts = this.timestamps;
      const i = this.numTimedPasses;
      const timed = ts !== null && i < MAX_TIMED_PASSES;
      this.pass = this.encoder.beginComputePass(
        timed ? { timestampWrites: { querySet: ts.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 } } : {},
      );
      this.numPasses++;
      if (timed) this.numTimedPasses++;
    }
    return this.pass;
  }

  private endPass(): void {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new Error(this.submitted ? 'this step was already submitted' : 'this step was already finished');
  }
}

/** The passes' summed GPU time and the span from the first pass's start to the last one's end. */
async function readGpuTimes(ts: TimestampSet, numPasses: number): Promise<{ busyMs: number; span: { begin: bigint; end: bigint } } | null> {
  await ts.staging.mapAsync(MAP_MODE_READ, 0, 2 * numPasses * 8);
  const times = new BigUint64Array(ts.staging.getMappedRange(0, 2 * numPasses * 8).slice(0));
  ts.staging.unmap();
  let totalNs = 0n;
  for (let p = 0; p < numPasses; p++) {
    const begin = times[2 * p];
    const end = times[2 * p + 1];
    if (end < begin) return null;
    totalNs += end - begin;
  }
  return { busyMs: Number(totalNs) / 1e6, span: { begin: times[0], end: times[2 * numPasses - 1] } };
}
