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
// ROPE_KV (a decode step: every token the only one of its sequence in the step): the kernel also
// does rope_kv_write.wgsl's work, saving a dispatch per layer — q and the kv head's k are rotated
// at pos (the same arithmetic, from ropeTable) as they are loaded, v is read from the qkv row, the
// kv head's first query head writes k and v into the cache at slot(pos), the loop reads the cache
// up to pos - 1, and position pos is scored and folded after it from those values, by the group
// that folds it without ROPE_KV, as its last position: the same operations in the same order, so
// the same bits, and no workgroup reads a slot another one writes. Only sound when no other token
// of the step reads slot(pos): true when each sequence has one token.
//
// Bindings (group 0):
//   @binding(0) q                 : array<f32>  [numTokens, Q_STRIDE] f32; head h at columns h*HEAD_SIZE ..  read
//                                               (ROPE_KV: the qkv rows [q | k | v], not yet rotated)
//   @binding(1) kCache            : array<f32>  [numSlots, KV_DIM] f32 (this layer)   read (ROPE_KV: written at slot(pos))
//   @binding(2) vCache            : array<f32>  [numSlots, KV_DIM] f32 (this layer)   read (ROPE_KV: written at slot(pos))
//   @binding(3) blockTables       : array<u32>  [sum of block-table lengths] physical block ids, all sequences concatenated
//   @binding(4) positions         : array<u32>  [numTokens]
//   @binding(5) blockTableOffsets : array<u32>  [numTokens] index in blockTables of the token's sequence's logical block 0
//   @binding(6) out               : array<f32>  [numTokens, NUM_HEADS * HEAD_SIZE] f32   write
//   @binding(7) ropeTable         : array<vec2<f32>>  [maxPositions, HEAD_SIZE / 2] (cos, sin), as
//                                               rope_kv_write.wgsl (ROPE_KV only; else a dummy is bound)
// Overrides: NUM_HEADS, NUM_KV_HEADS (divides NUM_HEADS), HEAD_SIZE (even with ROPE_KV), BLOCK_SIZE,
//   Q_STRIDE (default NUM_HEADS * HEAD_SIZE; NUM_HEADS*HEAD_SIZE + 2*KV_DIM to read q straight
//   from the fused qkv buffer, required with ROPE_KV), SCALE (f32, 1/sqrt(HEAD_SIZE)),
//   WG (default 64; HEAD_SIZE <= WG), ROPE_KV (bool, default false).
// Workgroup size: (WG, 1, 1); workgroup memory (3 * HEAD_SIZE + 5 * WG) * 4 bytes.
// Dispatch: (NUM_HEADS, numTokens, 1) — one workgroup per (head, query token).

override NUM_HEADS: u32;
override NUM_KV_HEADS: u32;
override HEAD_SIZE: u32;
override BLOCK_SIZE: u32;
override Q_STRIDE: u32 = NUM_HEADS * HEAD_SIZE;
override SCALE: f32;
override WG: u32 = 64;
override ROPE_KV: bool = false;

const LOWEST = bitcast<f32>(0xff7fffffu); // the most negative finite f32

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read_write> kCache: array<f32>;
@group(0) @binding(2) var<storage, read_write> vCache: array<f32>;
@group(0) @binding(3) var<storage, read> blockTables: array<u32>;
@group(0) @binding(4) var<storage, read> positions: array<u32>;
@group(0) @binding(5) var<storage, read> blockTableOffsets: array<u32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;
@group(0) @binding(7) var<storage, read> ropeTable: array<vec2<f32>>;

var<workgroup> qs: array<f32, HEAD_SIZE>;
var<workgroup> ks: array<f32, HEAD_SIZE>; // ROPE_KV: k and v of the token's own position
var<workgroup> vs: array<f32, HEAD_SIZE>;
var<workgroup> scores: array<f32, WG>;
var<workgroup> chunkSlots: array<u32, WG>;
var<workgroup> maxPart: array<f32, WG>;
var<workgroup> accPart: array<f32, WG>;
var<workgroup> sumPart: array<f32, WG>;

// One position (score s, value v) folded into a group's running max m, softmax denominator l and
// out[d] acc (the last two relative to m): the online softmax's step, the same for every position.
fn fold(m: ptr<function, f32>, l: ptr<function, f32>, acc: ptr<function, f32>, s: f32, v: f32) {
  if (s > *m) {
    let correction = exp(*m - s);
    *l = *l * correction;
    *acc = *acc * correction;
    *m = s;
  }
  let e = exp(s - *m);
  *l += e;
  *acc += e * v;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let h = wid.x;
  let t = wid.y;
  let kvDim = NUM_KV_HEADS * HEAD_SIZE;
  let kvOff = (h / (NUM_HEADS / NUM_KV_HEADS)) * HEAD_SIZE;
  let table = blockTableOffsets[t];

  let pos = positions[t];
  let row = t * Q_STRIDE;
  let dim = NUM_HEADS * HEAD_SIZE;
  if (ROPE_KV) {
    // As rope_kv_write.wgsl: pair (i, i+1) of a head rotated by ropeTable[pos][i / 2].
    let tableRow = pos * (HEAD_SIZE / 2u);
    for (var p = lid; p < HEAD_SIZE / 2u; p += WG) {
      let i = 2u * p;
      let cs = ropeTable[tableRow + p];
      let q0 = q[row + h * HEAD_SIZE + i];
      let q1 = q[row + h * HEAD_SIZE + i + 1u];
      qs[i] = q0 * cs.x - q1 * cs.y;
      qs[i + 1u] = q0 * cs.y + q1 * cs.x;
      let k0 = q[row + dim + kvOff + i];
      let k1 = q[row + dim + kvOff + i + 1u];
      ks[i] = k0 * cs.x - k1 * cs.y;
      ks[i + 1u] = k0 * cs.y + k1 * cs.x;
    }
    for (var i = lid; i < HEAD_SIZE; i += WG) {
      vs[i] = q[row + dim + kvDim + kvOff + i];
    }
  } else {
    for (var i = lid; i < HEAD_SIZE; i += WG) {
      qs[i] = q[row + h * HEAD_SIZE + i];
    }
  }
  workgroupBarrier();
  // ROPE_KV: one writer per (token, kv head), the group's first query head.
  if (ROPE_KV && h % (NUM_HEADS / NUM_KV_HEADS) == 0u) {
    let cacheRow = (blockTables[table + pos / BLOCK_SIZE] * BLOCK_SIZE + pos % BLOCK_SIZE) * kvDim + kvOff;
    for (var i = lid; i < HEAD_SIZE; i += WG) {
      kCache[cacheRow + i] = ks[i];
      vCache[cacheRow + i] = vs[i];
    }
  }

  let groups = WG / HEAD_SIZE;
  let d = lid % HEAD_SIZE;
  let g = lid / HEAD_SIZE;
  var m = LOWEST;   // running max of this group's scores
  var l = 0.0;      // running softmax denominator of this group, relative to m
  var acc = 0.0;    // running out[d] of this group, relative to m

  // ROPE_KV: the cache is read up to pos - 1; pos itself is folded in after the loop.
  let numPos = select(pos + 1u, pos, ROPE_KV);
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
        fold(&m, &l, &acc, scores[j], vCache[chunkSlots[j] * kvDim + kvOff + d]);
      }
    }
    workgroupBarrier();
  }

  if (ROPE_KV) {
    // Position pos, from this workgroup's own k and v: scored as the loop scores a position, and
    // folded by the group that would have folded it there, as that group's last position (the
    // same operations in the same order as without ROPE_KV).
    var s = 0.0;
    for (var i = 0u; i < HEAD_SIZE; i++) {
      s += qs[i] * ks[i];
    }
    s = s * SCALE;
    if (g == (pos - (pos / WG) * WG) % groups) {
      fold(&m, &l, &acc, s, vs[d]);
    }
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
