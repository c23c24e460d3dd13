// kernels/lib/quant.wgsl — ggml's Q8_0 and Q4_0 weight blocks, dequantized in registers. Not a
// kernel: matmul_gemv.wgsl, matmul_tiled.wgsl and matmul_lanes.wgsl include it (`// @include
// lib/quant.wgsl`, resolved by src/gpu/kernel-include.ts) so all read quantized weights with the
// same expressions, which keeps their outputs bit for bit equal. The including kernel defines
// `override IN: u32`, `override WTYPE: u32` and `fn wWord(j: u32) -> u32` (the j-th 32-bit word
// of W; gemv and lanes take theirs from lib/matmul_vec4.wgsl).
//   Q8_0 block, 34 bytes: f16 d | 32 int8 q                        w = f32(q) * d
//   Q4_0 block, 18 bytes: f16 d | 16 bytes: weight j in the low nibble of byte j (j < 16),
//                         weight j + 16 in its high nibble         w = f32(q - 8) * d
// The dequantized vec4 is exact in f32, so it enters the same dot() as an f32 weight would.

// The 4 bytes of W at byte offset o (o even: blocks are 34 or 18 bytes), little-endian.
fn wBytes4(o: u32) -> u32 {
  let lo = wWord(o >> 2u);
  if ((o & 3u) == 0u) {
    return lo;
  }
  return (lo >> 16u) | (wWord((o >> 2u) + 1u) << 16u);
}

// The f16 scale at byte offset o (o even).
fn wScale(o: u32) -> f32 {
  return unpack2x16float(wWord(o >> 2u) >> ((o & 2u) * 8u)).x;
}

// Weights k .. k + 3 (k a multiple of 4) of quantized W row `row` (WTYPE 1 or 2; IN a multiple of 32).
fn quantWeight4(row: u32, k: u32) -> vec4<f32> {
  let block = row * (IN / 32u) + k / 32u;
  let i = k % 32u;
  if (WTYPE == 1u) {
    let o = block * 34u;
    let q = wBytes4(o + 2u + i);
    let v = vec4<i32>(bitcast<i32>(q << 24u), bitcast<i32>(q << 16u), bitcast<i32>(q << 8u), bitcast<i32>(q)) >> vec4<u32>(24u);
    return vec4<f32>(v) * wScale(o);
  }
  let o = block * 18u;
  let q = (wBytes4(o + 2u + i % 16u) >> select(0u, 4u, i >= 16u)) & 0x0f0f0f0fu;
  let v = vec4<i32>(vec4<u32>(q, q >> 8u, q >> 16u, q >> 24u) & vec4<u32>(0xfu)) - vec4<i32>(8);
  return vec4<f32>(v) * wScale(o);
}
