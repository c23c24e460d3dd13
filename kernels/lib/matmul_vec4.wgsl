// kernels/lib/matmul_vec4.wgsl — how matmul_gemv.wgsl and matmul_lanes.wgsl read their inputs: the
// SwiGLU input and the weights, as vec4s. Not a kernel: both include it (`// @include
// lib/matmul_vec4.wgsl`, resolved by src/gpu/kernel-include.ts) so that they compute with the same
// expressions, which keeps their outputs bit for bit equal. The including kernel defines
// `override IN: u32`, `override WTYPE: u32`, `var<storage, read> w: array<vec4<u32>>` and includes
// lib/quant.wgsl (quantWeight4, which calls wWord below).

fn silu4(v: vec4<f32>) -> vec4<f32> {
  // min() keeps exp finite: silu(v) -> 0 for very negative v, as in ops.ts.
  return v * (1.0 / (1.0 + exp(min(-v, vec4<f32>(88.0)))));
}

// Word j (4 bytes) of W.
fn wWord(j: u32) -> u32 {
  return w[j >> 2u][j & 3u];
}

// Weights 4 k4 .. 4 k4 + 3 of W row `row`, as f32 (f32 bits, or a quantized block dequantized).
fn weight4(row: u32, k4: u32) -> vec4<f32> {
  if (WTYPE == 0u) {
    return bitcast<vec4<f32>>(w[row * (IN / 4u) + k4]);
  }
  return quantWeight4(row, 4u * k4);
}
