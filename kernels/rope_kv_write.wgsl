// rope_kv_write.wgsl — RoPE at each token's own position, then K/V written into paged slots.
// For each token t (its row of the fused QKV projection output holds [q | k | v]):
//   q[t]  rotated in place;
//   kCache[slots[t], :] = rope(k[t]);  vCache[slots[t], :] = v[t].
// Rotation as src/model/ops.ts rope: adjacent pairs (i, i+1), i even, of each head rotated by
// angle pos * theta^(-(i mod HEAD_SIZE) / HEAD_SIZE). The (cos, sin) values come from ropeTable,
// built on the CPU by src/gpu/rope-table.ts with exactly ops.ts's arithmetic (GPU sin/cos/pow of
// large angles are not accurate enough in f32).
//
// Bindings (group 0):
//   @binding(0) qkv       : array<f32>        [numTokens, QKV_STRIDE] f32, row = [q DIM | k KV_DIM | v KV_DIM]  read_write
//   @binding(1) positions : array<u32>        [numTokens]   position of each token in its sequence
//   @binding(2) slots     : array<u32>        [numTokens]   physical KV slot = block * blockSize + offset
//   @binding(3) ropeTable : array<vec2<f32>>  [maxPositions, HEAD_SIZE / 2] (cos, sin)
//   @binding(4) kCache    : array<f32>        [numSlots, KV_DIM] f32 (this layer)   read_write
//   @binding(5) vCache    : array<f32>        [numSlots, KV_DIM] f32 (this layer)   read_write
// Overrides: DIM (numHeads * HEAD_SIZE), KV_DIM (numKvHeads * HEAD_SIZE), HEAD_SIZE (even),
//   QKV_STRIDE (default DIM + 2 * KV_DIM), WG (default 64).
// Workgroup size: (WG, 1, 1).
// Dispatch: (numTokens, 1, 1) — one workgroup per token.

override DIM: u32;
override KV_DIM: u32;
override HEAD_SIZE: u32;
override QKV_STRIDE: u32 = DIM + 2u * KV_DIM;
override WG: u32 = 64;

@group(0) @binding(0) var<storage, read_write> qkv: array<f32>;
@group(0) @binding(1) var<storage, read> positions: array<u32>;
@group(0) @binding(2) var<storage, read> slots: array<u32>;
@group(0) @binding(3) var<storage, read> ropeTable: array<vec2<f32>>;
@group(0) @binding(4) var<storage, read_write> kCache: array<f32>;
@group(0) @binding(5) var<storage, read_write> vCache: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = wid.x;
  let row = t * QKV_STRIDE;
  let tableRow = positions[t] * (HEAD_SIZE / 2u);
  let cacheRow = slots[t] * KV_DIM;

  // Pairs 0 .. DIM/2 are q's, DIM/2 .. (DIM+KV_DIM)/2 are k's.
  for (var p = lid; p < (DIM + KV_DIM) / 2u; p += WG) {
    let e = 2u * p;
    let isQ = e < DIM;
    var i = e;
    if (!isQ) {
      i = e - DIM;
    }
    let cs = ropeTable[tableRow + (i % HEAD_SIZE) / 2u];
    let v0 = qkv[row + e];
    let v1 = qkv[row + e + 1u];
    let r0 = v0 * cs.x - v1 * cs.y;
    let r1 = v0 * cs.y + v1 * cs.x;
    if (isQ) {
      qkv[row + e] = r0;
      qkv[row + e + 1u] = r1;
    } else {
      kCache[cacheRow + i] = r0;
      kCache[cacheRow + i + 1u] = r1;
    }
  }
  for (var i = lid; i < KV_DIM; i += WG) {
    vCache[cacheRow + i] = qkv[row + DIM + KV_DIM + i];
  }
}
