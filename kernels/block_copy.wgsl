// block_copy.wgsl — copy-on-write of KV blocks within one layer's cache:
// for each pair c: kCache[dst block] = kCache[src block]; vCache[dst block] = vCache[src block].
// A block is BLOCK_SIZE consecutive slots = BLOCK_SIZE * KV_DIM consecutive f32.
// No destination may also be a source in the same dispatch (the allocator copies into fresh blocks).
//
// Bindings (group 0):
//   @binding(0) copies : array<vec2<u32>>  [numCopies] (srcBlock, dstBlock)   read
//   @binding(1) kCache : array<f32>        [numBlocks * BLOCK_SIZE, KV_DIM] f32   read_write
//   @binding(2) vCache : array<f32>        [numBlocks * BLOCK_SIZE, KV_DIM] f32   read_write
// Overrides: KV_DIM, BLOCK_SIZE, WG (default 64).
// Workgroup size: (WG, 1, 1); each thread copies 4 consecutive floats of K and of V.
// Dispatch: (ceil(BLOCK_SIZE * KV_DIM / (4 * WG)), numCopies, 1) — once per layer.

override KV_DIM: u32;
override BLOCK_SIZE: u32;
override WG: u32 = 64;

@group(0) @binding(0) var<storage, read> copies: array<vec2<u32>>;
@group(0) @binding(1) var<storage, read_write> kCache: array<f32>;
@group(0) @binding(2) var<storage, read_write> vCache: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let blockFloats = BLOCK_SIZE * KV_DIM;
  let pair = copies[wid.y];
  let src = pair.x * blockFloats;
  let dst = pair.y * blockFloats;
  let first = (wid.x * WG + lid) * 4u;
  for (var i = first; i < min(first + 4u, blockFloats); i++) {
    kCache[dst + i] = kCache[src + i];
    vCache[dst + i] = vCache[src + i];
  }
}
