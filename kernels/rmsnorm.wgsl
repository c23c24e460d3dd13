// rmsnorm.wgsl — RMSNorm over rows: out[t, :] = w * x[t, :] / sqrt(mean(x[t, :]^2) + EPS)
// Same formula as src/model/ops.ts rmsnorm: inv = 1 / sqrt(ss / DIM + EPS); out = w * (inv * x).
// (The forward pass normally fuses this into the following matmul, see matmul_gemv.wgsl
// NORM_INPUT; this standalone kernel exists for other uses and for testing.)
//
// Bindings (group 0):
//   @binding(0) x   : array<f32>  [numRows, DIM]   read
//   @binding(1) w   : array<f32>  [DIM]            read
//   @binding(2) out : array<f32>  [numRows, DIM]   write (may not alias x)
// Overrides: DIM, EPS (f32, default 1e-5), WG (threads per workgroup, default 64).
// Workgroup size: (WG, 1, 1); workgroup memory WG * 4 bytes.
// Dispatch: (numRows, 1, 1) — one workgroup per row.

override DIM: u32;
override EPS: f32 = 1e-5;
override WG: u32 = 64;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let base = wid.x * DIM;
  var ss = 0.0;
  for (var i = lid; i < DIM; i += WG) {
    let v = x[base + i];
    ss += v * v;
  }
  partial[lid] = ss;
  workgroupBarrier();
  // Every thread sums the WG partials itself (one barrier instead of a log2(WG)-step tree).
  var total = 0.0;
  for (var j = 0u; j < WG; j++) {
    total += partial[j];
  }
  let inv = 1.0 / sqrt(total / f32(DIM) + EPS);
  for (var i = lid; i < DIM; i += WG) {
    out[base + i] = w[i] * (inv * x[base + i]);
  }
}
