/**
 * Workgroup sizing per device class. Real GPUs want >= 64 threads per workgroup for bandwidth;
 * SwiftShader (a CPU emulation of Vulkan) pays per invocation and per barrier, and runs these
 * kernels 3-15x faster with 8-16 threads (measured on stories260K shapes: a decode-step w2
 * matmul 1.0 ms at 64 threads vs 0.2 ms at 8; paged attention of 8 tokens at position ~100
 * 6.6 ms at 64 vs 2.0 ms at 8). The kernels are correct for any of these values; the tests run
 * both profiles.
 */
export interface KernelTuning {
  /**
   * matmul: above this many rows use the tiled kernel (when the gemv one applies). Speed only:
   * both kernels give the same bits (see matmul_tiled.wgsl). SwiftShader never uses the tiled
   * kernel (64 threads, barriers per K slice: no faster there) but matmul_lanes (lanesMinRows).
   */
  gemvMaxRows: number;
  /**
   * matmul_gemv token rows per workgroup (ROWS), ascending, each 1..8: a matmul of `rows` rows
   * uses the smallest class >= rows, else the largest. Each class is a pipeline per matmul shape
   * to compile; a row's arithmetic is the same in every class (batch invariance holds).
   */
  gemvRowClasses: readonly number[];
  /** matmul_gemv threads per workgroup (at most; fewer when inDim / 4 is smaller). */
  gemvThreads: number;
  /**
   * matmul: from this many rows on use matmul_lanes (no workgroup memory, no barrier: each
   * invocation walks gemv's lanes one after another), before gemvMaxRows and the tiled kernel.
   * Speed only: the same bits as gemv (see matmul_lanes.wgsl). For software adapters, which pay
   * per workgroup and per barrier; a GPU keeps gemv and the tiled kernel (Infinity).
   */
  lanesMinRows: number;
  /** matmul_lanes invocations per workgroup (each 4 rows x 4 output columns). */
  lanesThreads: number;
  /** paged_attention threads per workgroup (at least headSize). */
  attentionThreads: number;
  /** Threads of the one-workgroup-per-row kernels: embedding, rmsnorm, rope_kv_write, argmax, block_copy. */
  rowThreads: number;
  /**
   * A step where each sequence has one token (decode): paged_attention does rope_kv_write's work
   * too (ROPE_KV), one dispatch fewer per layer (the same bits: see kernels/paged_attention.wgsl).
   * Off: rope_kv_write then paged_attention, as a prefill step always does.
   */
  fuseRopeKv: boolean;
}

export const GPU_TUNING: Readonly<KernelTuning> = {
  gemvMaxRows: 16,
  gemvRowClasses: [1, 2, 4, 8],
  gemvThreads: 64,
  lanesMinRows: Number.POSITIVE_INFINITY,
  lanesThreads: 16,
  attentionThreads: 64,
  rowThreads: 64,
  fuseRopeKv: true,
};

export const SOFTWARE_TUNING: Readonly<KernelTuning> = {
  gemvMaxRows: Number.POSITIVE_INFINITY,
  // gemv for one row only: from two rows on matmul_lanes, 0.67-0.71x gemv's GPU time per step at
  // 16-64 rows and in a 191-token mixed step on SwiftShader (bench overhead, stories260K;
  // bench/results/README.md), with the same bits. A software adapter spends ~50-100 ms of CPU compiling each pipeline, so one
  // gemv class: the first tier (firstTierTuning) is gemv at 1 row for every matmul.
  gemvRowClasses: [1],
  gemvThreads: 8,
  lanesMinRows: 2,
  // 4, 8 and 16 measured alike (within the runs' spread); 8 keeps 2-8 workgroups per 4 rows of a
  // 64-column matmul, for SwiftShader's threads to share.
  lanesThreads: 8,
  attentionThreads: 8,
  rowThreads: 16,
  fuseRopeKv: true,
};

/** SOFTWARE_TUNING for software adapters (SwiftShader, WARP, lavapipe), else GPU_TUNING. */
export function tuningFor(adapter: { isFallback: boolean }): Readonly<KernelTuning> {
  return adapter.isFallback ? SOFTWARE_TUNING : GPU_TUNING;
}

/**
 * What a step can run with while the rest of its pipelines compile (GpuExecutor.warmUp): every
 * matmul as gemv in the smallest row class (no tiled, no lanes kernel), and decode steps'
 * attention as prefill's (rope_kv_write apart). Slower for many rows, the same bits: each output
 * row's reduction is the same in every row class and in the tiled and lanes kernels
 * (kernels/matmul_gemv.wgsl, matmul_tiled.wgsl, matmul_lanes.wgsl), and the fused attention
 * computes what the two kernels do. With SOFTWARE_TUNING it halves the matmul pipelines a first
 * prompt needs (5 matmul shapes as gemv at 1 row, instead of that and 5 as lanes).
 */
export function firstTierTuning(t: Readonly<KernelTuning>): Readonly<KernelTuning> {
  return { ...t, gemvMaxRows: Number.POSITIVE_INFINITY, gemvRowClasses: [t.gemvRowClasses[0]], lanesMinRows: Number.POSITIVE_INFINITY, fuseRopeKv: false };
}
