/**
 * The contract between the page and the engine worker (comlink). Plain data only: everything
 * here crosses postMessage (typed arrays are copied or transferred).
 */
import type { EngineSnapshot, StepRecord } from '../src/engine/engine.ts';
import type { SchedulerConfig } from '../src/engine/scheduler.ts';
import type { WorkloadSpec } from '../src/engine/workload.ts';
import type { AdapterProbe } from '../src/gpu/adapter.ts';
import type { ModelSummary } from '../src/model/summary.ts';

/** OpenAI-style completion parameters, plus the serving lab's own. */
export interface CompletionParams {
  prompt: string;
  /** Generated tokens at most (default 128). */
  max_tokens?: number;
  /** 0 = greedy (default). */
  temperature?: number;
  top_p?: number;
  top_k?: number;
  seed?: number;
  /** Parallel samples sharing the prompt (copy-on-write). */
  n?: number;
  /** Stop strings: a sequence ends when its text contains one (the text is cut before it). */
  stop?: string[];
  /** Stream text as it is generated (default true). */
  stream?: boolean;
  priority?: number;
  tenant?: string;
  /** End-to-end deadline in ms after arrival. */
  deadline?: number;
}

export type StreamEvent =
  | { type: 'text'; requestId: string; seqIndex: number; delta: string }
  | { type: 'done'; requestId: string; texts: string[]; reasons: string[] }
  | { type: 'error'; requestId: string; reason: string; message: string };

export type Backend = 'webgpu' | 'cpu';

export interface HostStatus {
  phase: 'starting' | 'loading' | 'ready' | 'recovering' | 'error';
  backend: Backend;
  /** Why the CPU reference runs instead of WebGPU, or what failed. */
  message: string | null;
  paused: boolean;
  /** Slow-motion for presenters: at least this long between steps. */
  minStepIntervalMs: number;
  numDeviceLosses: number;
}

/** What the views render each frame: the engine snapshot plus decoded text and host status. */
export interface ViewSnapshot extends EngineSnapshot {
  /** requestId -> text of each sequence (decoded in the worker). */
  texts: Record<string, string[]>;
  /** requestId -> prompt text (for requests submitted as text). */
  prompts: Record<string, string>;
  host: HostStatus;
  model: ModelSummary | null;
}

export type { StepRecord };

export type EngineSettings = Partial<SchedulerConfig>;

export interface ModelSource {
  modelUrl: string;
  /** Needed for llama2.c checkpoints; GGUF files carry their tokenizer. */
  tokenizerUrl?: string;
  name: string;
}

export interface ScenarioRun {
  workload: WorkloadSpec;
  /** Replace the random prompt tokens with real text of the same length (default true). */
  realPrompts?: boolean;
}

export type { AdapterProbe, ModelSummary };
