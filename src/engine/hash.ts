/**
 * Hashing for prefix caching: a block's identity is a chained hash of (parent block's hash,
 * the block's token ids, an extra key such as a tenant salt), so two blocks match only when
 * their whole prefix matches. 53-bit results from two independent 32-bit lanes (cyrb53 style);
 * with ~1e5 live blocks the chance of any collision is ~1e-6, acceptable for a lab.
 */

/** Hash of the (virtual) parent of a sequence's first block. */
export const ROOT_BLOCK_HASH = 0;

function mix(h1: number, h2: number, value: number): [number, number] {
  h1 = Math.imul(h1 ^ value, 2654435761);
  h2 = Math.imul(h2 ^ value, 1597334677);
  return [h1, h2];
}

function finish(h1: number, h2: number): number {
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507);
  h1 ^= Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507);
  h2 ^= Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0);
}

/** Hash of tokenIds[start, end) chained onto parentHash and extraKey. */
export function hashBlockTokens(
  parentHash: number,
  tokenIds: ArrayLike<number>,
  start: number,
  end: number,
  extraKey: number,
): number {
  let h1 = 0xdeadbeef ^ extraKey;
  let h2 = 0x41c6ce57 ^ extraKey;
  [h1, h2] = mix(h1, h2, parentHash >>> 0);
  [h1, h2] = mix(h1, h2, Math.floor(parentHash / 4294967296));
  for (let i = start; i < end; i++) [h1, h2] = mix(h1, h2, tokenIds[i]);
  [h1, h2] = mix(h1, h2, end - start);
  return finish(h1, h2);
}

/** A 32-bit key for a salt string (tenant id, LoRA name...); 0 for none. */
export function hashSalt(salt: string | undefined): number {
  if (!salt) return 0;
  let h = 0x811c9dc5;
  for (let i = 0; i < salt.length; i++) h = Math.imul(h ^ salt.charCodeAt(i), 16777619);
  return h >>> 0 || 1;
}
