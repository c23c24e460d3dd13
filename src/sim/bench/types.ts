/**
 * Benchmark plumbing: a benchmark is a named function that takes a backend (how to build an
 * executor and which clock to run on) and returns a table for people and JSON for machines.
 * scripts/bench.ts looks both up by name, so a new backend (webgpu) or a new subcommand
 * (scaling) is one registerBackend / registerBench call.
 */
import type { Executor } from '../../engine/types.ts';
import type { Model } from '../../model/types.ts';
import type { ProfileSink } from '../../engine/profile.ts';
import type { Clock } from '../../engine/clock.ts';
import type { HardwareSpec, ModelSpec } from '../presets.ts';
import type { ParallelConfig } from '../costModel.ts';

export interface ExecutorRequest {
  model: ModelSpec;
  hardware: HardwareSpec;
  parallel?: ParallelConfig;
  /** EOS position per request (simulated backends); real models stop on their own. */
  eosPosition?: (requestId: string) => number | undefined;
}

export interface Backend {
  name: string;
  /**
   * Set by backends that run a real model (webgpu): its context length and name. Benchmarks
   * scale their workloads to fit it (a 512-token model cannot produce 2000-token outputs).
   */
  realModel?: { name: string; maxModelLen: number; vocabSize?: number };
  makeExecutor(request: ExecutorRequest): Promise<Executor> | Executor;
  /**
   * Real-model backends (webgpu, cpu, fake): a fresh executor for that model, timing its phases
   * into `profile` when given, for benchmarks that drive the Engine themselves (overhead).
   */
  realExecutor?(options: { profile?: ProfileSink; prepareSteps?: boolean; fuseRopeKv?: boolean }): Promise<Executor> | Executor;
  /** Real-model backends (webgpu, cpu): a fresh executor for any model (bench quant's f32/Q8_0/Q4_0 models). */
  executorFor?(model: Model): Promise<Executor> | Executor;
  /** The machine (and device) in words, for benchmark results. */
  describe?(): Promise<string> | string;
  /**
   * The calling thread's cumulative run-queue delay in ms (time it was ready but waited for a
   * CPU; Linux's /proc/thread-self/schedstat), where the platform has it: the overhead benchmark
   * tells host work from time the host thread was descheduled.
   */
  threadRunDelayMs?: () => number;
  /** A fresh clock for one run: virtual for simulation, real for hardware. */
  makeClock(): Clock;
}

export interface BenchContext {
  backend: Backend;
  seed: number;
  /** Extra --key value options from the command line. */
  options: Record<string, string>;
  log: (line: string) => void;
}

export interface BenchResult {
  /** Header row first. */
  table: string[][];
  json: unknown;
  notes: string[];
}

export interface BenchCommand {
  name: string;
  description: string;
  /** The backend used when the command line names none (default: sim). */
  defaultBackend?: string;
  run(ctx: BenchContext): Promise<BenchResult>;
}
