/**
 * The contract between the serving core (scheduler, KV cache manager, engine loop) and the
 * executors that run a step: the WebGPU engine (src/gpu/), the CPU reference (src/model/) and
 * the simulated cost model (src/sim/). Pure types: no DOM, no GPU.
 */

export interface SamplingParams {
  /** 0 means greedy (argmax). */
  temperature: number;
  /** Nucleus sampling threshold; values <= 0 or >= 1 disable it. */
  topP: number;
  /** Keep only the k most likely tokens; 0 disables it. */
  topK: number;
  /** Seed of this sequence's RNG (explicit, so runs replay). */
  seed: number;
}

/**
 * Async scheduling (vLLM's output placeholders): a token id in ScheduledSeq.tokenIds that the
 * host does not know yet: the token the previous step sampled for this sequence (its argmax),
 * which an executor with tokenFeedback reads on the device. At most one per sequence, its last.
 */
export const PLACEHOLDER_TOKEN_ID = -1;

/** One sequence's share of a step: a chunk of its prompt, or its one newest token. */
export interface ScheduledSeq {
  /** Unique per sequence; a request with n > 1 has n sequences. */
  seqId: number;
  requestId: string;
  /** Token ids computed this step, in order (the last may be PLACEHOLDER_TOKEN_ID: async scheduling). */
  tokenIds: number[];
  /** Position of tokenIds[0]; token k sits at position startPosition + k. */
  startPosition: number;
  /** Physical KV slot of each scheduled token: block * blockSize + offset. */
  slots: number[];
  /**
   * The sequence's physical blocks in logical order, covering at least positions
   * 0 .. startPosition + tokenIds.length - 1. Attention reads K/V through it.
   */
  blockTable: number[];
  /** True when the last scheduled token's row needs logits (prompt done, or a decode token). */
  needsLogits: boolean;
  /**
   * How many trailing rows need logits when needsLogits is set (absent: 1). Speculative decoding
   * verifies a sequence's last token plus k draft tokens as k + 1 rows, each needing its logits.
   */
  numLogitRows?: number;
  sampling: SamplingParams;
  /** The GPU adapter slot whose LoRA every row of this sequence adds; absent (or -1): the base model. */
  loraSlot?: number;
  /**
   * Structured output: the sampler masks this row with the sequence's constraint, so the
   * executor returns its full logits row (SeqOutput.logits) whatever the temperature.
   */
  constrained?: boolean;
}

export interface BlockCopy {
  srcBlock: number;
  dstBlock: number;
}

export interface BlockSwap {
  gpuBlock: number;
  cpuBlock: number;
}

/**
 * Everything an executor needs for one engine step. Executors carry out the memory
 * instructions in this order before the forward pass: swapOut, swapIn, copies.
 */
export interface StepPlan {
  stepIndex: number;
  seqs: ScheduledSeq[];
  /** Copy-on-write: copy every layer's K and V of srcBlock into dstBlock. */
  copies: BlockCopy[];
  /** Move blocks GPU -> CPU swap pool. */
  swapOut: BlockSwap[];
  /** Move blocks CPU swap pool -> GPU. */
  swapIn: BlockSwap[];
  /** Sum of tokenIds.length over seqs. */
  numBatchedTokens: number;
  /**
   * Static batching only: padding tokens a request-level batch computes and throws away (prompts
   * padded to the longest, finished members riding along). Cost models charge them; a real
   * executor may skip them. Absent means 0.
   */
  numPaddingTokens?: number;
  /** LoRA: adapters to load into their slots before the forward pass (after the memory moves). Absent means none. */
  loraLoads?: LoraSlotLoad[];
  /**
   * Async scheduling: keep this step's greedy tokens (each logits row's argmax) on the device,
   * where the next plan's PLACEHOLDER_TOKEN_ID rows read them; that plan may be executed before
   * this step's output is read. Only for executors with tokenFeedback; absent means false.
   */
  keepSampledTokens?: boolean;
}

/** One logits row's result. */
export interface LogitRow {
  /** Greedy choice, computed by the executor (on the GPU for the WebGPU engine). */
  argmax: number;
  /** The full logits row [vocab]; present when sampling.temperature > 0 or the row is constrained (or always, if cheap). */
  logits?: Float32Array;
}

/** The output for one sequence whose plan entry had needsLogits. */
export interface SeqOutput extends LogitRow {
  seqId: number;
  /**
   * Present when the plan entry had numLogitRows > 1: one entry per trailing row, in row order
   * (its last entry is the argmax/logits above). Each row is what a plain decode row at that
   * position would give.
   */
  rows?: LogitRow[];
}

export interface StepOutput {
  outputs: SeqOutput[];
  /**
   * Executor-measured duration of the step in milliseconds: GPU timestamp queries or wall time
   * for real executors, the cost model's estimate for the simulated one (advances a virtual clock).
   */
  durationMs: number;
  /** Wall time of the step around the executor (when durationMs is GPU time, it is shown beside). */
  wallMs?: number;
}

export interface KvGeometry {
  blockSize: number;
  numGpuBlocks: number;
  numCpuBlocks: number;
  /** LoRA adapter slots the plans' loraSlot indices range over (absent: 0, no adapters). */
  maxLoras?: number;
  /** Largest adapter rank a slot must hold. */
  maxLoraRank?: number;
}

export interface Executor {
  /** Human label ("webgpu: SwiftShader", "cpu reference", "simulated: Llama-2 70B on 8xH100"). */
  readonly name: string;
  /** Size of the model's vocabulary, when it has one (requests' token ids are checked against it). */
  readonly vocabSize?: number;
  /**
   * Async scheduling: true when execute() takes plans with PLACEHOLDER_TOKEN_ID rows (filled on
   * the device from the previous plan's kept tokens, see StepPlan.keepSampledTokens) and submits
   * a step before its returned promise settles, so the engine may call execute() for the next plan
   * before awaiting this one. Executors without it only ever see plans of known tokens.
   */
  readonly tokenFeedback?: boolean;
  /** Throws (a RangeError naming the sizes) when configure() could not take this geometry; changes nothing. */
  checkGeometry?(geometry: KvGeometry): void;
  /** (Re)allocate the KV pool for this geometry; drops all cached K/V. */
  configure(geometry: KvGeometry): Promise<void> | void;
  execute(plan: StepPlan): Promise<StepOutput>;
  /**
   * Compiles and runs everything a step of up to this shape uses (pipelines, buffers), on
   * throwaway K/V, so that no measured step pays for it. Call after configure(); the K/V it
   * writes is never read (every position is written before it is attended to).
   */
  warmUp?(shape: { maxTokens: number; maxSeqs: number; deferRest?: boolean }): Promise<void>;
  /**
   * Settles when everything warmUp() started is ready, including what it did not wait for (a
   * GPU executor returns from warmUp() once a base-model step needs nothing more, and compiles
   * the pipelines of copy-on-write copies and LoRA rows after; a step needing one sooner compiles
   * it itself; with `deferRest`, it starts those only after the first step, or after a while
   * without one, so that a first prompt does not share the CPU with them). Benchmarks wait for it
   * so that no measured step shares the CPU with a compile.
   */
  readonly warmedUp?: Promise<void>;
  /**
   * LoRA: keeps an adapter's weights in host memory under its name, for the plans' loraLoads (the
   * engine registers a name once; a new executor after a device loss gets them all again).
   * Executors without it run every row as the base model.
   */
  registerAdapter?(adapter: LoraAdapter): void;
  dispose(): void;
}

/**
 * LoRA (low-rank adapters). The projections an adapter may change, by their llama2.c names;
 * PEFT's llama names map onto them as q_proj -> q, k_proj -> k, v_proj -> v, o_proj -> o,
 * gate_proj -> w1, down_proj -> w2, up_proj -> w3 (src/model/lora.ts reads the files).
 */
export const LORA_MODULES = ['q', 'k', 'v', 'o', 'w1', 'w2', 'w3'] as const;
export type LoraModule = (typeof LORA_MODULES)[number];

/** One projection's low-rank update: W' = W + scale · B · A. */
export interface LoraModuleWeights {
  a: Float32Array; // [rank, inDim]
  b: Float32Array; // [outDim, rank]
}

/** What the engine needs to know of an adapter (it never reads the weights). */
export interface LoraAdapterInfo {
  /** The name requests use (`adapter: "name"` or `model: "base:name"`). */
  name: string;
  rank: number;
  /** lora_alpha / r (or / sqrt(r) for rsLoRA): the factor of B · A. */
  scale: number;
}

/** An adapter with its weights, as executors take it (Executor.registerAdapter). */
export interface LoraAdapter extends LoraAdapterInfo {
  /** Per layer, the modules it changes (absent modules are unchanged). */
  layers: Partial<Record<LoraModule, LoraModuleWeights>>[]; // [numLayers]
}

/** Before a step's forward pass: put adapter `adapter` into GPU adapter slot `slot`. */
export interface LoraSlotLoad {
  slot: number;
  adapter: string;
}
