// matmul_tiled.wgsl — Y[rows × OUT] (=|+=) X[rows × IN] · W[OUT × IN]ᵀ for MANY rows (prefill).
// Compute-bound path: each workgroup computes a 32×32 tile of Y (32 token rows × 32 output
// columns) with 64 threads holding 4×4 outputs each; X and W are staged through workgroup memory
// in slices of TK4 vec4s. W is read ceil(rows / 32) times in total.
// Same bindings, overrides, fused variants and semantics as matmul_gemv.wgsl (NORM_INPUT,
// SWIGLU_INPUT, GATHER_ROWS, ACCUMULATE); see there. IN need not be a multiple of 4 here (X and
// W are read as f32 and gathered into vec4s, the tail padded with zeros).
// Weight formats (WTYPE: 0 f32, 1 Q8_0, 2 Q4_0; IN a multiple of 32 when quantized): as in
// matmul_gemv.wgsl, dequantized by the same code (lib/quant.wgsl, included by both), so the two
// kernels keep giving the same bits with quantized weights too.
//
// Batch invariance: every output is reduced in EXACTLY the order of matmul_gemv.wgsl run with
// WG = LANES threads, so a row's bits do not depend on which kernel (and so how many rows) ran:
//   partial[j] = 0; for k4 = j, j + LANES, j + 2 LANES, ... < IN/4: partial[j] += dot(w4, x4)
//   sum = 0;        for j = 0 .. LANES-1:                           sum += partial[j]
//   NORM_INPUT:     sumSq the same way over dot(x4, x4); sum = sum * (1 / sqrt(sumSq / IN + EPS))
// (x4 after SWIGLU_INPUT and times normWeight, as there). The K slices walk the vec4 positions
// lane by lane (lane 0's k4s, then lane 1's, ...), so each thread closes a lane's partial into
// its running sums exactly where gemv's thread j would have ended. Set LANES to the WG the gemv
// plan would use for this IN (planMatmul does).
//
// Bindings (group 0):
//   @binding(0) params     : uniform Params { rows: u32 }
//   @binding(1) x          : array<f32>  [numXRows, X_STRIDE]  read
//   @binding(2) w          : array<u32>  [OUT, IN] f32 bits, or [OUT, IN / 32] blocks   read
//   @binding(3) y          : array<f32>  [rows, Y_STRIDE]      read_write
//   @binding(4) normWeight : array<f32>  [IN]                  read (NORM_INPUT)
//   @binding(5) rowIds     : array<u32>  [rows]                read (GATHER_ROWS)
// Overrides: IN, WTYPE (default 0), OUT, X_STRIDE (default IN), Y_STRIDE (default OUT), EPS (default 1e-5),
//   LANES (gemv's WG: the K split, default 64), NORM_INPUT, SWIGLU_INPUT, GATHER_ROWS,
//   ACCUMULATE. Tile sizes are constants (below).
// Workgroup size: (64, 1, 1); workgroup memory 2 * TK4 * 32 * 16 + 32 * 4 bytes ≈ 8.3 KiB.
// Dispatch: (ceil(OUT / 32), ceil(rows / 32), 1).

override IN: u32;
override WTYPE: u32 = 0u;
override OUT: u32;
override X_STRIDE: u32 = IN;
override Y_STRIDE: u32 = OUT;
override EPS: f32 = 1e-5;
override LANES: u32 = 64;
override NORM_INPUT: bool = false;
override SWIGLU_INPUT: bool = false;
override GATHER_ROWS: bool = false;
override ACCUMULATE: bool = false;

const TM = 32u;      // token rows per tile
const TN = 32u;      // output columns per tile
const TK4 = 8u;      // vec4 positions per staged slice
const THREADS = 64u; // 8 × 8 threads, each 4 rows × 4 columns
const PER = 4u;

// The K walk: IN4 vec4 positions, lane by lane. Lanes 0 .. R-1 hold Q+1 of them, the rest Q.
// (Derived from IN and LANES; not meant to be set.)
override IN4: u32 = (IN + 3u) / 4u;
override Q: u32 = IN4 / LANES;
override R: u32 = IN4 % LANES;
override LONG: u32 = R * (Q + 1u); // positions held by the longer lanes

struct Params {
  rows: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> normWeight: array<f32>;
@group(0) @binding(5) var<storage, read> rowIds: array<u32>;

var<workgroup> xs: array<vec4<f32>, TK4 * TM>; // [TK4][TM] X slice (normed, swiglu'd)
var<workgroup> ws: array<vec4<f32>, TK4 * TN>; // [TK4][TN] W slice
var<workgroup> invRms: array<f32, TM>;

fn silu4(v: vec4<f32>) -> vec4<f32> {
  // As lib/matmul_vec4.wgsl's (gemv's and lanes': the same expression, so the same bits).
  return v * (1.0 / (1.0 + exp(min(-v, vec4<f32>(88.0)))));
}

// Start of X row for tile row m (clamped to the last valid row; such rows are never written).
fn xRowBase(row0: u32, m: u32) -> u32 {
  let outRow = min(row0 + m, params.rows - 1u);
  if (GATHER_ROWS) {
    return rowIds[outRow] * X_STRIDE;
  }
  return outRow * X_STRIDE;
}

// Four consecutive f32 of a (zero past IN).
fn load4x(base: u32, k4: u32) -> vec4<f32> {
  let k = 4u * k4;
  var v = vec4<f32>(0.0);
  for (var i = 0u; i < 4u; i++) {
    if (k + i < IN) {
      v[i] = x[base + k + i];
    }
  }
  return v;
}

// Word j (4 bytes) of W.
fn wWord(j: u32) -> u32 {
  return w[j];
}

// @include lib/quant.wgsl

// Weights 4 k4 .. 4 k4 + 3 of W row `row` (zero past IN), as matmul_gemv.wgsl's weight4.
fn weight4(row: u32, k4: u32) -> vec4<f32> {
  let k = 4u * k4;
  if (WTYPE == 0u) {
    let base = row * IN;
    var v = vec4<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
      if (k + i < IN) {
        v[i] = bitcast<f32>(w[base + k + i]);
      }
    }
    return v;
  }
  return quantWeight4(row, k);
}

fn load4norm(k4: u32) -> vec4<f32> {
  let k = 4u * k4;
  var v = vec4<f32>(0.0);
  for (var i = 0u; i < 4u; i++) {
    if (k + i < IN) {
      v[i] = normWeight[k + i];
    }
  }
  return v;
}

// The input vec4 of an X row at k4 before the norm weight: x, or silu(gate) * up.
fn inputX(base: u32, k4: u32) -> vec4<f32> {
  var v = load4x(base, k4);
  if (SWIGLU_INPUT) {
    v = silu4(v) * load4x(base + IN, k4);
  }
  return v;
}

// The vec4 position (k4) at step t of the lane-by-lane walk, and whether it starts a lane.
fn walkK4(t: u32) -> vec2<u32> {
  var lane: u32;
  var i: u32;
  if (t < LONG) {
    lane = t / (Q + 1u);
    i = t % (Q + 1u);
  } else {
    lane = R + (t - LONG) / max(Q, 1u);
    i = (t - LONG) % max(Q, 1u);
  }
  return vec2<u32>(lane + i * LANES, select(0u, 1u, i == 0u));
}

@compute @workgroup_size(THREADS)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let col0 = wid.x * TN;
  let row0 = wid.y * TM;

  if (NORM_INPUT) {
    // One thread per tile row: sum of squares in gemv's order (per lane, then over the lanes).
    if (lid < TM) {
      let base = xRowBase(row0, lid);
      var sumSq = 0.0;
      for (var j = 0u; j < LANES; j++) {
        var s = 0.0;
        for (var k4 = j; k4 < IN4; k4 += LANES) {
          let v = inputX(base, k4);
          s += dot(v, v);
        }
        sumSq += s;
      }
      invRms[lid] = 1.0 / sqrt(sumSq / f32(IN) + EPS);
    }
    // invRms is read after the K loop, which has barriers of its own.
  }

  let tx = lid % 8u; // column group
  let ty = lid / 8u; // row group
  var part: array<f32, 16>;  // the current lane's partial of each of the thread's 16 outputs
  var total: array<f32, 16>; // the closed lanes' sum, in lane order
  for (var t0 = 0u; t0 < IN4; t0 += TK4) {
    // Stage walk positions t0 .. t0+TK4 of X rows row0 .. row0+TM and W rows col0 .. col0+TN:
    // TM*TK4 = TN*TK4 = 256 vec4s each, 4 per thread.
    for (var e = lid; e < TM * TK4; e += THREADS) {
      let m = e / TK4;
      let kk = e % TK4;
      let t = t0 + kk;
      var xv = vec4<f32>(0.0);
      var wv = vec4<f32>(0.0);
      if (t < IN4) {
        let k4 = walkK4(t).x;
        xv = inputX(xRowBase(row0, m), k4);
        if (NORM_INPUT) {
          xv = xv * load4norm(k4);
        }
        wv = weight4(min(col0 + m, OUT - 1u), k4);
      }
      xs[kk * TM + m] = xv;
      ws[kk * TN + m] = wv;
    }
    workgroupBarrier();
    let nk = min(TK4, IN4 - t0);
    for (var kk = 0u; kk < nk; kk++) {
      if (t0 + kk > 0u && walkK4(t0 + kk).y == 1u) {
        // A new lane starts: close the previous lane's partials, in lane order.
        for (var o = 0u; o < 16u; o++) {
          total[o] += part[o];
          part[o] = 0.0;
        }
      }
      var a: array<vec4<f32>, PER>;
      var b: array<vec4<f32>, PER>;
      for (var i = 0u; i < PER; i++) {
        a[i] = xs[kk * TM + ty * PER + i];
        b[i] = ws[kk * TN + tx * PER + i];
      }
      for (var i = 0u; i < PER; i++) {
        for (var j = 0u; j < PER; j++) {
          part[i * PER + j] += dot(b[j], a[i]);
        }
      }
    }
    workgroupBarrier();
  }
  // Close the last lane. Lanes past IN4 hold nothing; gemv still adds their zero partials, so
  // add a zero for each (it only matters to a sum of -0.0, which + 0.0 makes +0.0).
  for (var o = 0u; o < 16u; o++) {
    total[o] += part[o];
    part[o] = 0.0;
    for (var j = min(LANES, IN4); j < LANES; j++) {
      total[o] += part[o];
    }
  }

  for (var i = 0u; i < PER; i++) {
    let m = ty * PER + i;
    let row = row0 + m;
    if (row < params.rows) {
      for (var j = 0u; j < PER; j++) {
        let col = col0 + tx * PER + j;
        if (col < OUT) {
          var v = total[i * PER + j];
          if (NORM_INPUT) {
            v = v * invRms[m];
          }
          let idx = row * Y_STRIDE + col;
          if (ACCUMULATE) {
            y[idx] = y[idx] + v;
          } else {
            y[idx] = v;
          }
        }
      }
    }
  }
}
