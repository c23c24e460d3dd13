// paged_attention.wgsl — causal attention of each query token over its OWN sequence's K/V,
// read through that sequence's block table (the paged KV cache), with grouped-query heads.
// Query token t at position pos = positions[t], query head h:
//   kvHead = h / (NUM_HEADS / NUM_KV_HEADS)
//   slot(p) = blockTables[blockTableOffsets[t] + p / BLOCK_SIZE] * BLOCK_SIZE + p % BLOCK_SIZE
//   s_p = SCALE * dot(q[t, h], kCache[slot(p), kvHead])      for p = 0 .. pos
//   out[t, h] = sum_p softmax(s)_p * vCache[slot(p), kvHead]
// Online (streaming) softmax over chunks of WG positions, so workgroup memory is O(WG) and any
// context length works: thread j scores position chunkStart + j (one dot product); then thread
// (d, g) — head dim d = lid % HEAD_SIZE, group g = lid / HEAD_SIZE — folds the chunk's positions
// j ≡ g (mod WG / HEAD_SIZE) into its own running (max, denominator, out[d]). At the end the
// groups' states are merged with the log-sum-exp rule. Two barriers per chunk, no per-chunk
// max reduction.
//
// Bindings (group 0):
//   @binding(0) q                 : array<f32>  [numTokens, Q_STRIDE] f32; head h at columns h*HEAD_SIZE ..  read
//   @binding(1) kCache            : array<f32>  [numSlots, KV_DIM] f32 (this layer)   read
//   @binding(2) vCache            : array<f32>  [numSlots, KV_DIM] f32 (this layer)   read
//   @binding(3) blockTables       : array<u32>  [sum of block-table lengths] physical block ids, all sequences concatenated
//   @binding(4) positions         : array<u32>  [numTokens]
//   @binding(5) blockTableOffsets : array<u32>  [numTokens] index in blockTables of the token's sequence's logical block 0
//   @binding(6) out               : array<f32>  [numTokens, NUM_HEADS * HEAD_SIZE] f32   write
// Overrides: NUM_HEADS, NUM_KV_HEADS (divides NUM_HEADS), HEAD_SIZE, BLOCK_SIZE,
//   Q_STRIDE (default NUM_HEADS * HEAD_SIZE; NUM_HEADS*HEAD_SIZE + 2*KV_DIM to read q straight
//   from the fused qkv buffer), SCALE (f32, 1/sqrt(HEAD_SIZE)), WG (default 64; HEAD_SIZE <= WG).
// Workgroup size: (WG, 1, 1); workgroup memory (HEAD_SIZE + 5 * WG) * 4 bytes.
// Dispatch: (NUM_HEADS, numTokens, 1) — one workgroup per (head, query token).

override NUM_HEADS: u32;
override NUM_KV_HEADS: u32;
override HEAD_SIZE: u32;
override BLOCK_SIZE: u32;
override Q_STRIDE: u32 = NUM_HEADS * HEAD_SIZE;
override SCALE: f32;
override WG: u32 = 64;

const LOWEST = bitcast<f32>(0xff7fffffu); // the most negative finite f32

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> kCache: array<f32>;
@group(0) @binding(2) var<storage, read> vCache: array<f32>;
@group(0) @binding(3) var<storage, read> blockTables: array<u32>;
@group(0) @binding(4) var<storage, read> positions: array<u32>;
@group(0) @binding(5) var<storage, read> blockTableOffsets: array<u32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;

var<workgroup> qs: array<f32, HEAD_SIZE>;
var<workgroup> scores: array<f32, WG>;
var<workgroup> chunkSlots: array<u32, WG>;
var<workgroup> maxPart: array<f32, WG>;
var<workgroup> accPart: array<f32, WG>;
var<workgroup> sumPart: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let h = wid.x;
  let t = wid.y;
  let kvDim = NUM_KV_HEADS * HEAD_SIZE;
  let kvOff = (h / (NUM_HEADS / NUM_KV_HEADS)) * HEAD_SIZE;
  let numPos = positions[t] + 1u;
  let table = blockTableOffsets[t];

  for (var i = lid; i < HEAD_SIZE; i += WG) {
    qs[i] = q[t * Q_STRIDE + h * HEAD_SIZE + i];
  }
  workgroupBarrier();

  let groups = WG / HEAD_SIZE;
  let d = lid % HEAD_SIZE;
  let g = lid / HEAD_SIZE;
  var m = LOWEST;   // running max of this group's scores
  var l = 0.0;      // running softmax denominator of this group, relative to m
  var acc = 0.0;    // running out[d] of this group, relative to m

  for (var c0 = 0u; c0 < numPos; c0 += WG) {
    let n = min(WG, numPos - c0);
    if (lid < n) {
      let p = c0 + lid;
      let slot = blockTables[table + p / BLOCK_SIZE] * BLOCK_SIZE + p % BLOCK_SIZE;
      let kb = slot * kvDim + kvOff;
      var s = 0.0;
      for (var i = 0u; i < HEAD_SIZE; i++) {
        s += qs[i] * kCache[kb + i];
      }
      scores[lid] = s * SCALE;
      chunkSlots[lid] = slot;
    }
    workgroupBarrier();
    if (g < groups) {
      for (var j = g; j < n; j += groups) {
        let s = scores[j];
        if (s > m) {
          let correction = exp(m - s);
          l = l * correction;
          acc = acc * correction;
          m = s;
        }
        let e = exp(s - m);
        l += e;
        acc += e * vCache[chunkSlots[j] * kvDim + kvOff + d];
      }
    }
    workgroupBarrier();
  }

  maxPart[lid] = select(LOWEST, m, g < groups);
  sumPart[lid] = select(0.0, l, g < groups);
  accPart[lid] = select(0.0, acc, g < groups);
  workgroupBarrier();
  if (lid < HEAD_SIZE) {
    var mAll = LOWEST;
    for (var k = 0u; k < groups; k++) {
      mAll = max(mAll, maxPart[k * HEAD_SIZE + lid]);
    }
    var a = 0.0;
    var s = 0.0;
    for (var k = 0u; k < groups; k++) {
      let w = exp(maxPart[k * HEAD_SIZE + lid] - mAll);
      a += accPart[k * HEAD_SIZE + lid] * w;
      s += sumPart[k * HEAD_SIZE + lid] * w;
    }
    out[t * NUM_HEADS * HEAD_SIZE + h * HEAD_SIZE + lid] = a / s;
  }
}
