// lora_bgmv.wgsl — batched gathered LoRA (Punica's BGMV): for every token row t whose adapter slot
// s = rowSlots[t] is not NO_SLOT,
//   y[t, Y_OFFSET + i] += scale_s · sum_k B_s[i, k] · u[k],   u[k] = sum_j A_s[k, j] · in_t[j]
// shrink (x·A, RANK values kept in workgroup memory) then expand (·B), one workgroup per row, so
// rows of different adapters and of the base model (skipped) share one dispatch. The CPU twin is
// ops.ts loraAdd: u[k] summed over j in order, each output's sum over k in order, times scale.
//
// Input modes (override booleans, default false), as the projection's own input:
//   NORM_INPUT   — in_t = normWeight ⊙ x_t / rms(x_t), rms = sqrt(mean(x_t^2) + EPS) (q/k/v, w1/w3)
//   SWIGLU_INPUT — x rows hold [gate | up]; in_t = silu(gate) * up (w2)
//   neither      — in_t = x_t (wo reads the attention output)
//
// Bindings (group 0):
//   @binding(0) params     : uniform Params { rows: u32, aOffset: u32, bOffset: u32, yOffset: u32 }
//                            aOffset/bOffset: floats into a slot's region where this (layer, module)'s
//                            A [RANK, IN] and B [OUT, RANK] start; yOffset: first output column
//   @binding(1) x          : array<f32>  [rows, X_STRIDE]                read
//   @binding(2) normWeight : array<f32>  [IN]                           read (NORM_INPUT)
//   @binding(3) lora       : array<f32>  [numSlots, SLOT_STRIDE]         read; a slot's region starts
//                            with its scale (float 0), then every (layer, module)'s A and B, ranks
//                            zero-padded to RANK (src/gpu/lora-slots.ts lays it out)
//   @binding(4) rowSlots   : array<u32>  [rows] adapter slot per row, 0xffffffff = base model
//   @binding(5) y          : array<f32>  [rows, Y_STRIDE]                read_write
// Overrides: IN, OUT, RANK (<= 64), SLOT_STRIDE, X_STRIDE (default IN), Y_STRIDE (default OUT),
//   EPS (default 1e-5), WG (threads, default 64, >= RANK), the two booleans.
// Workgroup size: (WG, 1, 1); workgroup memory (IN + RANK + 2) * 4 bytes.
// Dispatch: (rows, 1, 1).

override IN: u32;
override OUT: u32;
override RANK: u32;
override SLOT_STRIDE: u32;
override X_STRIDE: u32 = IN;
override Y_STRIDE: u32 = OUT;
override EPS: f32 = 1e-5;
override WG: u32 = 64;
override NORM_INPUT: bool = false;
override SWIGLU_INPUT: bool = false;

const NO_SLOT = 0xffffffffu;

struct Params {
  rows: u32,
  aOffset: u32,
  bOffset: u32,
  yOffset: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> normWeight: array<f32>;
@group(0) @binding(3) var<storage, read> lora: array<f32>;
@group(0) @binding(4) var<storage, read> rowSlots: array<u32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

var<workgroup> xin: array<f32, IN>;
var<workgroup> u: array<f32, RANK>;
var<workgroup> slotShared: u32;
var<workgroup> invRms: f32;

fn silu(v: f32) -> f32 {
  return v * (1.0 / (1.0 + exp(min(-v, 88.0))));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = wid.x;
  if (lid == 0u) {
    slotShared = rowSlots[t];
  }
  let slot = workgroupUniformLoad(&slotShared);
  if (slot == NO_SLOT) {
    return; // a base-model row: nothing to add
  }
  let xBase = t * X_STRIDE;
  for (var j = lid; j < IN; j += WG) {
    var v = x[xBase + j];
    if (SWIGLU_INPUT) {
      v = silu(v) * x[xBase + IN + j];
    }
    xin[j] = v;
  }
  workgroupBarrier();
  if (NORM_INPUT) {
    if (lid == 0u) {
      var ss = 0.0;
      for (var j = 0u; j < IN; j++) {
        ss += xin[j] * xin[j];
      }
      invRms = 1.0 / sqrt(ss / f32(IN) + EPS);
    }
    workgroupBarrier();
    let inv = invRms;
    for (var j = lid; j < IN; j += WG) {
      xin[j] = normWeight[j] * (inv * xin[j]);
    }
    workgroupBarrier();
  }
  // shrink: u = A xin, one thread per rank
  let region = slot * SLOT_STRIDE;
  if (lid < RANK) {
    let aRow = region + params.aOffset + lid * IN;
    var acc = 0.0;
    for (var j = 0u; j < IN; j++) {
      acc += lora[aRow + j] * xin[j];
    }
    u[lid] = acc;
  }
  workgroupBarrier();
  // expand: y += scale · B u
  let scale = lora[region];
  let yBase = t * Y_STRIDE + params.yOffset;
  for (var i = lid; i < OUT; i += WG) {
    let bRow = region + params.bOffset + i * RANK;
    var acc = 0.0;
    for (var k = 0u; k < RANK; k++) {
      acc += lora[bRow + k] * u[k];
    }
    y[yBase + i] = y[yBase + i] + scale * acc;
  }
}
