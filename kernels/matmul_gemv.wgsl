// matmul_gemv.wgsl — Y[rows × OUT] (=|+=) X[rows × IN] · W[OUT × IN]ᵀ for FEW rows (decode steps).
// Bandwidth-bound path: each workgroup owns COLS output columns (rows of W) for ROWS token rows;
// its WG threads split the reduction over IN (vec4 units, coalesced reads of each W row), then
// one workgroup reduction. W is read ceil(rows / ROWS) times in total.
// matmul_tiled.wgsl has the same bindings, overrides and semantics for many rows (prefill).
//
// Fused variants (override booleans, all default false):
//   NORM_INPUT   — RMSNorm of each X row fused in: Y = (normWeight ⊙ X_row / rms(X_row)) · Wᵀ,
//                  rms = sqrt(mean(X_row^2) + EPS) over the IN elements (as ops.ts rmsnorm).
//   SWIGLU_INPUT — X rows hold [gate | up] (X_STRIDE >= 2*IN); the input is silu(gate) * up
//                  (as ops.ts swiglu). Not combinable with NORM_INPUT.
//   GATHER_ROWS  — output row r reads X row rowIds[r] (logits for selected rows only).
//   ACCUMULATE   — Y += result (residual add fused into wo / w2).
//
// Weight formats (override WTYPE): 0 f32; 1 Q8_0; 2 Q4_0 — ggml's blocks of 32 weights of a W
// row, as a GGUF file stores them (IN a multiple of 32), dequantized in registers by
// lib/quant.wgsl (shared with matmul_tiled.wgsl): the dequantized vec4 is exact in f32 and enters
// the same dot() as an f32 weight, so a quantized matmul gives the bits of the f32 matmul of the
// dequantized matrix.
//
// Bindings (group 0):
//   @binding(0) params     : uniform Params { rows: u32 }      number of output rows
//   @binding(1) x          : array<vec4<f32>>  [numXRows, X_STRIDE] f32          read
//   @binding(2) w          : array<vec4<u32>>  [OUT, IN] f32 bits (row-major [out,in]), or
//                                              [OUT, IN / 32] blocks (bytes; buffer padded to 16) read
//   @binding(3) y          : array<f32>        [rows, Y_STRIDE] f32 (first OUT columns) read_write
//   @binding(4) normWeight : array<vec4<f32>>  [IN] f32   read  (used when NORM_INPUT)
//   @binding(5) rowIds     : array<u32>        [rows]     read  (used when GATHER_ROWS)
// Overrides: IN (multiple of 4; of 32 when quantized), WTYPE (0, 1, 2; default 0), OUT, X_STRIDE (default IN; multiple of 4), Y_STRIDE (default OUT),
//   ROWS (token rows per workgroup, 1..8, default 4), COLS (output columns per workgroup, 1..4,
//   default 4), WG (threads, default 64), EPS (f32, default 1e-5), the four booleans above.
// Workgroup size: (WG, 1, 1); workgroup memory WG * (ROWS*COLS + ROWS) * 4 bytes (10 KiB at 64/8/4).
// Dispatch: (ceil(OUT / COLS), ceil(rows / ROWS), 1).

override IN: u32;
override WTYPE: u32 = 0u;
override OUT: u32;
override X_STRIDE: u32 = IN;
override Y_STRIDE: u32 = OUT;
override ROWS: u32 = 4;
override COLS: u32 = 4;
override WG: u32 = 64;
override EPS: f32 = 1e-5;
override NORM_INPUT: bool = false;
override SWIGLU_INPUT: bool = false;
override GATHER_ROWS: bool = false;
override ACCUMULATE: bool = false;

const MAX_ROWS = 8u;
const MAX_COLS = 4u;

struct Params {
  rows: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> normWeight: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> rowIds: array<u32>;

// Partial sums: [ROWS*COLS dot products, then ROWS sums of squares] x WG threads.
var<workgroup> red: array<f32, WG * (ROWS * COLS + ROWS)>;

// silu4, wWord, weight4 (shared with matmul_lanes.wgsl), and the quantized blocks' reader.
// @include lib/matmul_vec4.wgsl
// @include lib/quant.wgsl

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let in4 = IN / 4u;
  let xStride4 = X_STRIDE / 4u;
  let col0 = wid.x * COLS;
  let row0 = wid.y * ROWS;
  let nr = min(ROWS, params.rows - row0);
  let nc = min(COLS, OUT - col0);

  // Rows / columns past the end are clamped to the last valid one (computed, never written),
  // so that the loops below have constant trip counts and the accumulators stay in registers.
  var xBase: array<u32, MAX_ROWS>;
  for (var r = 0u; r < ROWS; r++) {
    let outRow = row0 + min(r, nr - 1u);
    var xRow = outRow;
    if (GATHER_ROWS) {
      xRow = rowIds[outRow];
    }
    xBase[r] = xRow * xStride4;
  }
  var wRow: array<u32, MAX_COLS>;
  for (var c = 0u; c < COLS; c++) {
    wRow[c] = col0 + min(c, nc - 1u);
  }

  var acc: array<f32, MAX_ROWS * MAX_COLS>;
  var ss: array<f32, MAX_ROWS>;
  for (var k4 = lid; k4 < in4; k4 += WG) {
    var xv: array<vec4<f32>, MAX_ROWS>;
    for (var r = 0u; r < ROWS; r++) {
      var v = x[xBase[r] + k4];
      if (SWIGLU_INPUT) {
        v = silu4(v) * x[xBase[r] + in4 + k4];
      }
      if (NORM_INPUT) {
        ss[r] += dot(v, v);
        v = v * normWeight[k4];
      }
      xv[r] = v;
    }
    for (var c = 0u; c < COLS; c++) {
      let wv = weight4(wRow[c], k4);
      for (var r = 0u; r < ROWS; r++) {
        acc[r * MAX_COLS + c] += dot(wv, xv[r]);
      }
    }
  }

  for (var r = 0u; r < ROWS; r++) {
    for (var c = 0u; c < COLS; c++) {
      red[(r * COLS + c) * WG + lid] = acc[r * MAX_COLS + c];
    }
    if (NORM_INPUT) {
      red[(ROWS * COLS + r) * WG + lid] = ss[r];
    }
  }
  workgroupBarrier();

  // Thread o finishes output o = r*COLS + c by summing the WG partials itself (one barrier).
  for (var o = lid; o < ROWS * COLS; o += WG) {
    let r = o / COLS;
    let c = o % COLS;
    if (r < nr && c < nc) {
      var sum = 0.0;
      for (var j = 0u; j < WG; j++) {
        sum += red[o * WG + j];
      }
      if (NORM_INPUT) {
        var sumSq = 0.0;
        for (var j = 0u; j < WG; j++) {
          sumSq += red[(ROWS * COLS + r) * WG + j];
        }
        sum = sum * (1.0 / sqrt(sumSq / f32(IN) + EPS));
      }
      let idx = (row0 + r) * Y_STRIDE + col0 + c;
      if (ACCUMULATE) {
        y[idx] = y[idx] + sum;
      } else {
        y[idx] = sum;
      }
    }
  }
}
