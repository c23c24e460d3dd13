/**
 * The contract between the page and the engine worker (comlink). Plain data only: everything
 * here crosses postMessage (typed arrays are copied or transferred).
 */
import type { WeightType } from '../src/model/quant.ts';
import type { EngineSnapshot, StepRecord } from '../src/engine/engine.ts';
import type { SchedulerConfig } from '../src/engine/scheduler.ts';
import type { WorkloadSpec } from '../src/engine/workload.ts';
import type { AdapterProbe } from '../src/gpu/adapter.ts';
import type { ModelSummary } from '../src/model/summary.ts';
import type { FetchProgress } from '../src/model/fetch.ts';
import type { EngineEvent } from '../src/engine/events.ts';
import type { RequestSpec } from '../src/engine/request.ts';
import type { LoraAdapterInfo } from '../src/engine/types.ts';
import type { Backend } from '../src/gpu/executor-factory.ts';
import type { CompletionParams, JsonCheck, ScenarioRun, StreamEvent } from '../src/serve/requests.ts';
import type { ResponseFormatParam } from '../src/serve/structured.ts';
import type { BenchPrompts, BenchTextRequest } from '../src/serve/bench-prompts.ts';
import type { PacingFigures } from '../src/serve/arrival-pacer.ts';

export type { CompletionParams, JsonCheck, ResponseFormatParam, ScenarioRun, StreamEvent };
export type { Backend };

export interface HostStatus {
  phase: 'starting' | 'loading' | 'ready' | 'recovering' | 'error';
  backend: Backend;
  /** Why the CPU reference runs instead of WebGPU, or what failed. */
  message: string | null;
  paused: boolean;
  /** Slow-motion for presenters: at least this long between steps. */
  minStepIntervalMs: number;
  numDeviceLosses: number;
  /**
   * Wall ms the executor's warm-up took before the engine's first run (pipelines compiled, first
   * dispatches run; null: none yet, or the CPU reference). Never part of a latency.
   */
  warmUpMs: number | null;
  /**
   * A generated workload's arrivals are paced by the work done (src/serve/arrival-pacer.ts): the
   * reference ms and the measured ms of the steps run so far, and the requests not yet arrived.
   * Null: no paced workload on this engine.
   */
  arrivalPacing: PacingFigures | null;
}

/** A structured-output request as the views show it. */
export interface StructuredView {
  type: 'json_object' | 'json_schema';
  /** json_schema: its name and its schema as JSON text. */
  name: string | null;
  schema: string | null;
  /** Wall ms XGrammar took to compile the grammar (the compile this request waited for or reused). */
  compileMs: number;
  /** The grammar came from the cache (compiled for an earlier request with the same schema). */
  cached: boolean;
  /** Per sequence, once finished: parses and matches its schema, or why not. */
  checks: JsonCheck[] | null;
}

/** What the views render each frame: the engine snapshot plus decoded text and host status. */
export interface ViewSnapshot extends EngineSnapshot {
  /** requestId -> text of each sequence (decoded in the worker). */
  texts: Record<string, string[]>;
  /** requestId -> prompt text (for requests submitted as text). */
  prompts: Record<string, string>;
  /** requestId -> structured output (requests with a response format; absent in replays). */
  structured?: Record<string, StructuredView>;
  host: HostStatus;
  model: ModelSummary | null;
}

export type { StepRecord };

/**
 * Engine settings, and one model option: `weights` (f32, or quantize the f32 model on load to
 * q8_0 / q4_0). The host applies a change of `weights` by rebuilding the model from its f32
 * weights and starting a new engine (requests in flight end as 'engine_restarted').
 */
export type EngineSettings = Partial<SchedulerConfig> & { weights?: WeightType };

export interface ModelSource {
  modelUrl: string;
  /** Needed for llama2.c checkpoints; GGUF files carry their tokenizer. */
  tokenizerUrl?: string;
  name: string;
}

/**
 * What an engine worker serves, and what the page's client of it offers too (as web-llm's
 * worker client implements the engine's own interface): every caller drives one kind of object.
 * All calls are asynchronous (they cross postMessage); callbacks travel as comlink proxies.
 */
export interface EngineApi {
  /** What WebGPU adapter this context has (or why none). */
  probe(): Promise<AdapterProbe>;
  /** Downloads and parses a model, then swaps it in; on any failure the previous model stays. */
  loadModel(source: ModelSource, onProgress?: (p: FetchProgress) => void): Promise<ModelSummary>;
  /** Parses model bytes the page already has and swaps the model in; on failure the previous one stays. */
  loadModelBytes(modelBytes: Uint8Array, name: string, tokenizerBytes?: Uint8Array): Promise<ModelSummary>;
  /** Queues a completion; text streams to onEvent. Resolves with the request id. */
  submit(params: CompletionParams, onEvent?: (e: StreamEvent) => void): Promise<string>;
  cancel(requestId: string): Promise<void>;
  /** Submits a generated workload, arrivals relative to now. */
  runScenario(run: ScenarioRun): Promise<string[]>;
  /** Submits an imported request trace (token ids), arrivals relative to now. */
  runTrace(requests: RequestSpec[]): Promise<string[]>;
  /** LoRA: a PEFT adapter's files (adapter_config.json text, adapter_model.safetensors bytes) registered as `name`. */
  loadAdapterBytes(name: string, configJson: string, weights: Uint8Array): Promise<LoraAdapterInfo>;
  /** Live where it can be (policy, budgets...); resolves true when the engine had to restart. */
  configure(settings: EngineSettings): Promise<boolean>;
  getSettings(): Promise<EngineSettings>;
  /** Stops stepping; resolves with the last step's index once the step in flight has landed. */
  pause(): Promise<number>;
  resume(): Promise<void>;
  /** Exactly one step (after the one in flight); resolves with the last step's index. */
  step(): Promise<number>;
  setMinStepInterval(ms: number): Promise<void>;
  /** Fails every request and starts a fresh engine with the same settings. */
  reset(): Promise<void>;
  status(): Promise<HostStatus>;
  /** The latest state for the views, with the step records after sinceStepIndex (-1: none). */
  snapshot(sinceStepIndex?: number): Promise<ViewSnapshot | null>;
  prometheus(): Promise<string>;
  eventLog(): Promise<EngineEvent[]>;
  /**
   * A workload's requests as the lab runs them on the loaded model, as text prompts of the lab's
   * token lengths (the tokenizer lives here): for `vllm bench serve` (src/export/vllm-bench.ts).
   */
  benchPrompts(workload: WorkloadSpec): Promise<BenchPrompts>;
  /** Requests given as lengths (the simulated fleet's workload) as text prompts of those lengths on the loaded model's tokenizer. */
  benchTextPrompts(requests: BenchTextRequest[]): Promise<BenchPrompts>;
  /** Fault injection: destroy the GPU device mid-run (the host recovers). */
  loseDevice(): Promise<void>;
}

export type { AdapterProbe, BenchPrompts, ModelSummary };
