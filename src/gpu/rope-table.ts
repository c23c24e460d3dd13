/**
 * The (cos, sin) table rope_kv_write.wgsl reads, computed on the CPU with exactly the float32
 * arithmetic of src/model/ops.ts rope (so the GPU rotation matches the reference to the last
 * bit of the angle): for position p and even head dimension i,
 *   freq = fround(1 / fround(theta^(i / headSize))), angle = fround(p * freq),
 *   table[p, i/2] = (fround(cos(angle)), fround(sin(angle))).
 */
export function buildRopeTable(maxPositions: number, headSize: number, theta: number): Float32Array {
  if (headSize % 2 !== 0) throw new RangeError(`RoPE needs an even head size, got ${headSize}`);
  const half = headSize / 2;
  const table = new Float32Array(maxPositions * half * 2); // [maxPositions, headSize / 2, 2] f32
  const freqs = new Float32Array(half);
  for (let j = 0; j < half; j++) freqs[j] = Math.fround(1 / Math.fround(Math.pow(theta, (2 * j) / headSize)));
  for (let pos = 0; pos < maxPositions; pos++) {
    for (let j = 0; j < half; j++) {
      const angle = Math.fround(pos * freqs[j]);
      table[(pos * half + j) * 2] = Math.cos(angle);
      table[(pos * half + j) * 2 + 1] = Math.sin(angle);
    }
  }
  return table;
}
