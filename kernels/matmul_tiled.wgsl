// matmul_tiled.wgsl — Y[rows × OUT] (=|+=) X[rows × IN] · W[OUT × IN]ᵀ for MANY rows (prefill).
// Compute-bound path: each workgroup computes a 32×32 tile of Y (32 token rows × 32 output
// columns) with 64 threads holding 4×4 accumulators each; X and W are staged through workgroup
// memory in K-slices of 16. W is read ceil(rows / 32) times in total.
// Same bindings, overrides, fused variants and semantics as matmul_gemv.wgsl (NORM_INPUT,
// SWIGLU_INPUT, GATHER_ROWS, ACCUMULATE); see there. IN need not be a multiple of 4 here, but
// the shared binding layout is the one of matmul_gemv.
//
// Bindings (group 0):
//   @binding(0) params     : uniform Params { rows: u32 }
//   @binding(1) x          : array<f32>  [numXRows, X_STRIDE]  read
//   @binding(2) w          : array<f32>  [OUT, IN]             read
//   @binding(3) y          : array<f32>  [rows, Y_STRIDE]      read_write
//   @binding(4) normWeight : array<f32>  [IN]                  read (NORM_INPUT)
//   @binding(5) rowIds     : array<u32>  [rows]                read (GATHER_ROWS)
// Overrides: IN, OUT, X_STRIDE (default IN), Y_STRIDE (default OUT), EPS (default 1e-5),
//   NORM_INPUT, SWIGLU_INPUT, GATHER_ROWS, ACCUMULATE. Tile sizes are constants (below).
// Workgroup size: (64, 1, 1); workgroup memory 2 * 16 * 32 * 4 + 96 * 4 bytes ≈ 4.4 KiB.
// Dispatch: (ceil(OUT / 32), ceil(rows / 32), 1).

override IN: u32;
override OUT: u32;
override X_STRIDE: u32 = IN;
override Y_STRIDE: u32 = OUT;
override EPS: f32 = 1e-5;
override NORM_INPUT: bool = false;
override SWIGLU_INPUT: bool = false;
override GATHER_ROWS: bool = false;
override ACCUMULATE: bool = false;

const TM = 32u;      // token rows per tile
const TN = 32u;      // output columns per tile
const TK = 16u;      // reduction slice
const THREADS = 64u; // 8 × 8 threads, each 4 rows × 4 columns
const PER = 4u;

struct Params {
  rows: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> normWeight: array<f32>;
@group(0) @binding(5) var<storage, read> rowIds: array<u32>;

var<workgroup> xs: array<f32, TK * TM>; // [TK][TM], transposed X slice
var<workgroup> ws: array<f32, TK * TN>; // [TK][TN], transposed W slice
var<workgroup> ssPart: array<f32, THREADS>;
var<workgroup> invRms: array<f32, TM>;

fn silu(v: f32) -> f32 {
  return v * (1.0 / (1.0 + exp(min(-v, 88.0))));
}

// Start of X row for tile row m (clamped to the last valid row; such rows are never written).
fn xRowBase(row0: u32, m: u32) -> u32 {
  let outRow = min(row0 + m, params.rows - 1u);
  if (GATHER_ROWS) {
    return rowIds[outRow] * X_STRIDE;
  }
  return outRow * X_STRIDE;
}

fn loadX(base: u32, k: u32) -> f32 {
  var v = x[base + k];
  if (SWIGLU_INPUT) {
    v = silu(v) * x[base + IN + k];
  }
  return v;
}

@compute @workgroup_size(THREADS)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let col0 = wid.x * TN;
  let row0 = wid.y * TM;

  if (NORM_INPUT) {
    // THREADS / TM = 2 threads per row, each summing every other element.
    let m = lid % TM;
    let part = lid / TM;
    let base = xRowBase(row0, m);
    var s = 0.0;
    for (var k = part; k < IN; k += THREADS / TM) {
      let v = x[base + k];
      s += v * v;
    }
    ssPart[lid] = s;
    workgroupBarrier();
    if (lid < TM) {
      var total = 0.0;
      for (var p = 0u; p < THREADS / TM; p++) {
        total += ssPart[p * TM + lid];
      }
      invRms[lid] = 1.0 / sqrt(total / f32(IN) + EPS);
    }
    // invRms is read after the K loop, which has barriers of its own.
  }

  let tx = lid % 8u; // column group
  let ty = lid / 8u; // row group
  var acc: array<f32, 16>;
  for (var k0 = 0u; k0 < IN; k0 += TK) {
    // Stage X[row0 .. row0+TM, k0 .. k0+TK] and W[col0 .. col0+TN, k0 .. k0+TK]:
    // TM*TK = TN*TK = 512 elements each, 8 per thread, consecutive threads on consecutive k.
    for (var i = 0u; i < (TM * TK) / THREADS; i++) {
      let e = i * THREADS + lid;
      let m = e / TK;
      let kk = e % TK;
      let k = k0 + kk;
      var xv = 0.0;
      if (k < IN) {
        xv = loadX(xRowBase(row0, m), k);
        if (NORM_INPUT) {
          xv = xv * normWeight[k];
        }
      }
      xs[kk * TM + m] = xv;
      let n = col0 + m;
      var wv = 0.0;
      if (k < IN && n < OUT) {
        wv = w[n * IN + k];
      }
      ws[kk * TN + m] = wv;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < TK; kk++) {
      var a: array<f32, PER>;
      var b: array<f32, PER>;
      for (var i = 0u; i < PER; i++) {
        a[i] = xs[kk * TM + ty * PER + i];
        b[i] = ws[kk * TN + tx * PER + i];
      }
      for (var i = 0u; i < PER; i++) {
        for (var j = 0u; j < PER; j++) {
          acc[i * PER + j] += a[i] * b[j];
        }
      }
    }
    workgroupBarrier();
  }

  for (var i = 0u; i < PER; i++) {
    let m = ty * PER + i;
    let row = row0 + m;
    if (row < params.rows) {
      var scale = 1.0;
      if (NORM_INPUT) {
        scale = invRms[m];
      }
      for (var j = 0u; j < PER; j++) {
        let col = col0 + tx * PER + j;
        if (col < OUT) {
          let v = acc[i * PER + j] * scale;
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
