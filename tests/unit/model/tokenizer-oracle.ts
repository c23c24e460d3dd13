/**
 * run.c's encode as run.c writes it, kept as the oracle for the tokenizer's tests and benchmark:
 * after the code points are looked up, scan every adjacent pair for the best-scoring merge (the
 * first one on ties), merge it, and scan again (quadratic in the text's length).
 */
import type { Tokenizer } from '../../../src/model/tokenizer.ts';

const latin1 = (b: Uint8Array): string => {
  let s = '';
  for (let i = 0; i < b.length; i++) s += String.fromCharCode(b[i]);
  return s;
};

export function quadraticEncode(tokenizer: Tokenizer, text: string, bos = true, eos = false): number[] {
  const { pieces, scores, bosId, eosId } = tokenizer.vocab;
  const lookup = new Map<string, number>();
  pieces.forEach((p, id) => {
    const k = latin1(p);
    if (!lookup.has(k)) lookup.set(k, id);
  });
  const id = (b: Uint8Array): number => lookup.get(latin1(b)) ?? -1;
  const tokens: number[] = [];
  if (bos) tokens.push(bosId);
  const bytes = new TextEncoder().encode(text);
  if (bytes.length > 0) {
    const space = id(Uint8Array.of(0x20));
    if (space >= 0) tokens.push(space);
  }
  for (let i = 0; i < bytes.length; ) {
    let end = i + 1;
    while (end < bytes.length && (bytes[end] & 0xc0) === 0x80 && end - i < 4) end++;
    const cp = bytes.subarray(i, end);
    const t = id(cp);
    if (t >= 0) tokens.push(t);
    else for (const b of cp) tokens.push(b + 3);
    i = end;
  }
  for (;;) {
    let bestScore = -1e10;
    let bestId = -1;
    let bestIdx = -1;
    for (let k = 0; k < tokens.length - 1; k++) {
      const a = pieces[tokens[k]];
      const b = pieces[tokens[k + 1]];
      const merged = new Uint8Array(a.length + b.length);
      merged.set(a, 0);
      merged.set(b, a.length);
      const t = id(merged);
      if (t >= 0 && scores[t] > bestScore) {
        bestScore = scores[t];
        bestId = t;
        bestIdx = k;
      }
    }
    if (bestIdx < 0) break;
    tokens.splice(bestIdx, 2, bestId);
  }
  if (eos) tokens.push(eosId);
  return tokens;
}
