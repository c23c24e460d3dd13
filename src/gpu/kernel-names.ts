/** Kernel names: each is the base name of a file kernels/<name>.wgsl with entry point `main`. */
export const KERNEL_NAMES = [
  'argmax',
  'block_copy',
  'embedding',
  'lora_bgmv',
  'matmul_gemv',
  'matmul_lanes',
  'matmul_tiled',
  'paged_attention',
  'rmsnorm',
  'rope_kv_write',
] as const;

export type KernelName = (typeof KERNEL_NAMES)[number];

/** WGSL source text per kernel name. */
export type KernelSources = Readonly<Record<KernelName, string>>;
