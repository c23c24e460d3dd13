/**
 * Builds the executor a model runs on, and rebuilds it when the GPU device is lost. It owns the
 * device (GpuContext), the kernel runtime and the current executor: it creates them and it
 * disposes of them, nobody else. WebGPU when it works; the CPU reference (the same engine,
 * run.c's arithmetic) when WebGPU is missing or refuses, with the reason in `fallbackReason`.
 */
import type { Engine } from '../engine/engine.ts';
import type { Executor } from '../engine/types.ts';
import { CpuReferenceExecutor } from '../model/reference.ts';
import type { Model } from '../model/types.ts';
import { acquireDevice, type GpuContext } from './device.ts';
import { DeviceLostError, GpuExecutor } from './executor.ts';
import type { KernelSources } from './kernel-names.ts';
import { GpuRuntime } from './step.ts';

export type Backend = 'webgpu' | 'cpu';

export class ExecutorFactory {
  private ctx: GpuContext | null = null;
  private runtime: GpuRuntime | null = null;
  private current: Executor | null = null;
  /** The backend of the current executor. */
  backend: Backend = 'webgpu';
  /** Why the CPU reference runs instead of WebGPU (null while WebGPU runs). */
  fallbackReason: string | null = null;

  /**
   * @param gpu navigator.gpu, or Dawn's GPU object in Node; undefined selects the CPU reference
   */
  constructor(
    private readonly gpu: GPU | undefined,
    private readonly kernelSources: KernelSources,
  ) {}

  /** The device being acquired ahead of the first create() (see prepare()). */
  private acquiring: Promise<GpuContext> | null = null;

  /**
   * Starts acquiring the device now, so that it comes up while the model downloads (a software
   * adapter takes ~0.5 s to start); the next create() takes it. Safe to call more than once; a
   * failure here surfaces in create() (which then falls back to the CPU reference).
   */
  prepare(): void {
    if (!this.gpu || this.acquiring || (this.ctx && !this.ctx.isLost)) return;
    this.acquiring = acquireDevice(this.gpu);
    this.acquiring.catch(() => {});
  }

  /** The executor models run on now (null before the first create()). */
  get executor(): Executor | null {
    return this.current;
  }

  /**
   * A new executor for `model`, which becomes the current one (the previous one is disposed).
   * If building fails, the previous executor stays current and the error is thrown.
   */
  async create(model: Model): Promise<Executor> {
    const executor = await this.build(model);
    this.current?.dispose();
    this.current = executor;
    return executor;
  }

  /** True for the error a step on a lost device throws. */
  isDeviceLoss(e: unknown): boolean {
    return e instanceof DeviceLostError;
  }

  /**
   * After a lost device: a new device and executor for `model` (weights uploaded again), handed
   * to `engine`, which recomputes every running and swapped request on it.
   */
  async recover(engine: Engine, model: Model): Promise<void> {
    this.ctx = null;
    this.runtime = null;
    const executor = await this.create(model);
    await engine.replaceExecutor(executor);
  }

  /** Fault injection: destroys the GPU device now (the next step fails with DeviceLostError). */
  loseDevice(): void {
    if (!this.ctx || this.backend !== 'webgpu') throw new Error('no GPU device to lose: the CPU reference is running');
    this.ctx.destroy();
  }

  dispose(): void {
    this.current?.dispose();
    this.current = null;
    this.ctx?.destroy();
    this.ctx = null;
    this.runtime = null;
  }

  private async build(model: Model): Promise<Executor> {
    if (this.gpu) {
      try {
        if (!this.ctx || this.ctx.isLost) {
          const acquiring = this.acquiring;
          this.acquiring = null;
          this.ctx = await (acquiring ?? acquireDevice(this.gpu));
          if (this.ctx.isLost) this.ctx = await acquireDevice(this.gpu);
          this.runtime = GpuRuntime.fromContext(this.ctx, this.kernelSources);
        }
        const executor = new GpuExecutor(this.ctx, this.runtime!, model);
        this.backend = 'webgpu';
        this.fallbackReason = null;
        return executor;
      } catch (e) {
        this.fallbackReason = `WebGPU unavailable (${(e as Error).message}); running the CPU reference instead`;
      }
    } else {
      this.fallbackReason = 'WebGPU unavailable; running the CPU reference instead';
    }
    this.backend = 'cpu';
    return new CpuReferenceExecutor(model);
  }
}
