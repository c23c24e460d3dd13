// matmul_lanes.wgsl — Y[rows × OUT] (=|+=) X[rows × IN] · W[OUT × IN]ᵀ with no workgroup memory
// and no barrier, for software adapters (SwiftShader, WARP, lavapipe), which pay a fixed cost per
// workgroup and per barrier that a GPU does not. Each invocation computes ROWS × COLS = 4 × 4
// outputs on its own, walking the reduction over IN exactly as matmul_gemv.wgsl's WG = LANES
// threads split it, one lane after another:
//   sum = 0; for j = 0 .. LANES-1: { part = 0; for k4 = j, j + LANES, ... < IN/4: part += dot(w4, x4);  sum += part }
//   NORM_INPUT: sumSq the same way over dot(x4, x4); sum = sum * (1 / sqrt(sumSq / IN + EPS))
// which is the order gemv's threads accumulate their partials in, then gemv's one thread sums
// them in: so every output has gemv's bits (and matmul_tiled.wgsl's), whichever kernel — and so
// whichever batch — computed the row. Set LANES to the WG the gemv plan would use (planMatmul does).
//
// Same bindings, overrides, fused variants and semantics as matmul_gemv.wgsl (NORM_INPUT,
// SWIGLU_INPUT, GATHER_ROWS, ACCUMULATE, WTYPE), reading X and W through the same functions
// (lib/matmul_vec4.wgsl, lib/quant.wgsl); IN and X_STRIDE multiples of 4, as there.
//
// Every `var` is zeroed where it is declared: SwiftShader was seen keeping a loop-body var's
// values from the iteration before when it was left to the implicit zero.
//
// Bindings (group 0):
//   @binding(0) params     : uniform Params { rows: u32 }
//   @binding(1) x          : array<vec4<f32>>  [numXRows, X_STRIDE]   read
//   @binding(2) w          : array<vec4<u32>>  [OUT, IN] f32 bits, or [OUT, IN / 32] blocks   read
//   @binding(3) y          : array<f32>        [rows, Y_STRIDE]       read_write
//   @binding(4) normWeight : array<vec4<f32>>  [IN]                   read (NORM_INPUT)
//   @binding(5) rowIds     : array<u32>        [rows]                 read (GATHER_ROWS)
// Overrides: IN, WTYPE (default 0), OUT, X_STRIDE (default IN), Y_STRIDE (default OUT),
//   EPS (default 1e-5), LANES (gemv's WG, default 64), WG (invocations per workgroup, default 16),
//   NORM_INPUT, SWIGLU_INPUT, GATHER_ROWS, ACCUMULATE.
// Workgroup size: (WG, 1, 1); no workgroup memory.
// Dispatch: (ceil(ceil(OUT / 4) / WG), ceil(rows / 4), 1).

override IN: u32;
override WTYPE: u32 = 0u;
override OUT: u32;
override X_STRIDE: u32 = IN;
override Y_STRIDE: u32 = OUT;
override EPS: f32 = 1e-5;
override LANES: u32 = 64;
override WG: u32 = 16;
override NORM_INPUT: bool = false;
override SWIGLU_INPUT: bool = false;
override GATHER_ROWS: bool = false;
override ACCUMULATE: bool = false;

const ROWS = 4u;
const COLS = 4u;

struct Params {
  rows: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> normWeight: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> rowIds: array<u32>;

// silu4, wWord, weight4: matmul_gemv.wgsl's own (so the same bits), and the quantized blocks' reader.
// @include lib/matmul_vec4.wgsl
// @include lib/quant.wgsl

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let col0 = (wid.x * WG + lid) * COLS;
  if (col0 >= OUT) {
    return; // past the last column group (no barrier follows, so leaving early is safe)
  }
  let in4 = IN / 4u;
  let xStride4 = X_STRIDE / 4u;
  let row0 = wid.y * ROWS;
  let nr = min(ROWS, params.rows - row0);
  let nc = min(COLS, OUT - col0);

  // Rows / columns past the end are clamped to the last valid one (computed, never written).
  var xBase = array<u32, ROWS>(0u, 0u, 0u, 0u);
  for (var r = 0u; r < ROWS; r++) {
    let outRow = row0 + min(r, nr - 1u);
    var xRow = outRow;
    if (GATHER_ROWS) {
      xRow = rowIds[outRow];
    }
    xBase[r] = xRow * xStride4;
  }
  var wRow = array<u32, COLS>(0u, 0u, 0u, 0u);
  for (var c = 0u; c < COLS; c++) {
    wRow[c] = col0 + min(c, nc - 1u);
  }

  // The sums of the lanes' partials, in lane order (gemv's final reduction).
  var acc = array<f32, ROWS * COLS>(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
  var ss = array<f32, ROWS>(0.0, 0.0, 0.0, 0.0);
  for (var j = 0u; j < LANES; j++) {
    // Lane j's partials: what gemv's thread j accumulates.
    var part = array<f32, ROWS * COLS>(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    var partSs = array<f32, ROWS>(0.0, 0.0, 0.0, 0.0);
    for (var k4 = j; k4 < in4; k4 += LANES) {
      var xv = array<vec4<f32>, ROWS>(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
      for (var r = 0u; r < ROWS; r++) {
        var v = x[xBase[r] + k4];
        if (SWIGLU_INPUT) {
          v = silu4(v) * x[xBase[r] + in4 + k4];
        }
        if (NORM_INPUT) {
          partSs[r] += dot(v, v);
          v = v * normWeight[k4];
        }
        xv[r] = v;
      }
      for (var c = 0u; c < COLS; c++) {
        let wv = weight4(wRow[c], k4);
        for (var r = 0u; r < ROWS; r++) {
          part[r * COLS + c] += dot(wv, xv[r]);
        }
      }
    }
    for (var o = 0u; o < ROWS * COLS; o++) {
      acc[o] += part[o];
    }
    for (var r = 0u; r < ROWS; r++) {
      ss[r] += partSs[r];
    }
  }

  for (var r = 0u; r < nr; r++) {
    for (var c = 0u; c < nc; c++) {
      var sum = acc[r * COLS + c];
      if (NORM_INPUT) {
        sum = sum * (1.0 / sqrt(ss[r] / f32(IN) + EPS));
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
