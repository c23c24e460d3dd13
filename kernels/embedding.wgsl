// embedding.wgsl — token embedding gather: x[t, :] = emb[tokenIds[t], :]
// Embedding formats (WTYPE): 0 f32; 1 Q8_0; 2 Q4_0 (ggml blocks of 32 weights of a row, DIM a
// multiple of 32, dequantized as matmul_gemv.wgsl does: q * d, (q - 8) * d; exact in f32).
//
// Async scheduling: a token id with the top bit set (0x80000000 | r) is the previous step's
// sampled token of logits row r, read from `sampled` (the executor keeps each step's argmax there),
// so a step can run before the host has read the token it feeds.
//
// Bindings (group 0):
//   @binding(0) tokenIds : array<u32>  [numTokens]              read
//   @binding(1) emb      : array<u32>  [vocabSize, DIM] f32 bits, or [vocabSize, DIM / 32] blocks  read
//   @binding(2) x        : array<f32>  [numTokens, DIM]         write
//   @binding(3) sampled  : array<u32>  [rows of the previous step] token ids   read
// Overrides: DIM (model width), WTYPE (default 0), WG (threads per workgroup, default 64).
// Workgroup size: (WG, 1, 1).
// Dispatch: (numTokens, 1, 1) — workgroup t copies one row; its threads stride over DIM.
// Token ids must be < vocabSize (out-of-range reads are clamped by WebGPU's robust access).

override DIM: u32;
override WTYPE: u32 = 0u;
override WG: u32 = 64;

@group(0) @binding(0) var<storage, read> tokenIds: array<u32>;
@group(0) @binding(1) var<storage, read> emb: array<u32>;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;
@group(0) @binding(3) var<storage, read> sampled: array<u32>;

const FROM_SAMPLED = 0x80000000u;

fn embByte(o: u32) -> u32 {
  return (emb[o >> 2u] >> ((o & 3u) * 8u)) & 0xffu;
}

// Element i of embedding row `row`, as f32.
fn element(row: u32, i: u32) -> f32 {
  if (WTYPE == 0u) {
    return bitcast<f32>(emb[row * DIM + i]);
  }
  let block = row * (DIM / 32u) + i / 32u;
  let j = i % 32u;
  if (WTYPE == 1u) {
    let o = block * 34u;
    let d = unpack2x16float(emb[o >> 2u] >> ((o & 2u) * 8u)).x;
    return f32(bitcast<i32>(embByte(o + 2u + j) << 24u) >> 24u) * d;
  }
  let o = block * 18u;
  let d = unpack2x16float(emb[o >> 2u] >> ((o & 2u) * 8u)).x;
  let q = (embByte(o + 2u + j % 16u) >> select(0u, 4u, j >= 16u)) & 0xfu;
  return f32(i32(q) - 8) * d;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = wid.x;
  var row = tokenIds[t];
  if (row >= FROM_SAMPLED) {
    row = sampled[row & ~FROM_SAMPLED];
  }
  let dst = t * DIM;
  for (var i = lid; i < DIM; i += WG) {
    x[dst + i] = element(row, i);
  }
}
