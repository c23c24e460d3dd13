// argmax.wgsl — index of the largest logit of each row (the first one on ties, as
// src/model/ops.ts argmax / run.c sample_argmax). Rows are expected to be free of NaN (a NaN is
// skipped where the shader compiler keeps the v == v test; a row of only NaN gives index 0).
//
// Bindings (group 0):
//   @binding(0) logits : array<f32>  [numRows, ROW_STRIDE] f32 (first N columns used)   read
//   @binding(1) out    : array<u32>  [numRows] token ids   write
// Overrides: N (vocabulary size), ROW_STRIDE (default N), WG (default 64).
// Workgroup size: (WG, 1, 1); workgroup memory 2 * WG * 4 bytes.
// Dispatch: (numRows, 1, 1) — one workgroup per row.

override N: u32;
override ROW_STRIDE: u32 = N;
override WG: u32 = 64;

const NONE = 0xffffffffu;

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;

var<workgroup> bestVals: array<f32, WG>;
var<workgroup> bestIdx: array<u32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let base = wid.x * ROW_STRIDE;
  var bv = 0.0;
  var bi = NONE;
  // Each thread scans ascending indices with a strict comparison: its first maximum.
  for (var i = lid; i < N; i += WG) {
    let v = logits[base + i];
    if (v == v && (bi == NONE || v > bv)) {
      bv = v;
      bi = i;
    }
  }
  bestVals[lid] = bv;
  bestIdx[lid] = bi;
  workgroupBarrier();
  if (lid == 0u) {
    var v = 0.0;
    var idx = NONE;
    for (var j = 0u; j < WG; j++) {
      let cj = bestIdx[j];
      if (cj != NONE && (idx == NONE || bestVals[j] > v || (bestVals[j] == v && cj < idx))) {
        v = bestVals[j];
        idx = cj;
      }
    }
    out[wid.x] = select(idx, 0u, idx == NONE);
  }
}
