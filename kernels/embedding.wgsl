// embedding.wgsl — token embedding gather: x[t, :] = emb[tokenIds[t], :]
//
// Bindings (group 0):
//   @binding(0) tokenIds : array<u32>  [numTokens]              read
//   @binding(1) emb      : array<f32>  [vocabSize, DIM]         read
//   @binding(2) x        : array<f32>  [numTokens, DIM]         write
// Overrides: DIM (model width), WG (threads per workgroup, default 64).
// Workgroup size: (WG, 1, 1).
// Dispatch: (numTokens, 1, 1) — workgroup t copies one row; its threads stride over DIM.
// Token ids must be < vocabSize (out-of-range reads are clamped by WebGPU's robust access).

override DIM: u32;
override WG: u32 = 64;

@group(0) @binding(0) var<storage, read> tokenIds: array<u32>;
@group(0) @binding(1) var<storage, read> emb: array<f32>;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = wid.x;
  let src = tokenIds[t] * DIM;
  let dst = t * DIM;
  for (var i = lid; i < DIM; i += WG) {
    x[dst + i] = emb[src + i];
  }
}
