/**
 * Speculative decoding, vLLM's `method: "ngram"` (prompt lookup): a proposer that drafts tokens
 * from a sequence's own prompt and output, and the verification of those drafts against the
 * target model's rows of the same step.
 *
 * The proposer's output is a plain token list: a later per-sequence filter (a token constraint,
 * say) may truncate it before it is scheduled, and verification only ever sees what was scheduled.
 *
 * Verification, for a sequence whose last token t0 and drafts d1..dk were computed as k + 1 rows
 * (row i gives the target distribution p_i of the token after position i):
 *  - greedy: accept d_i while it equals row i-1's argmax; the first mismatch yields that argmax
 *    instead; when all k are accepted, row k's argmax is the bonus token;
 *  - temperature > 0: rejection sampling (Leviathan et al., as vLLM's rejection sampler): accept
 *    d_i with probability min(1, p(d_i) / q(d_i)), and on rejection sample from the normalised
 *    residual max(0, p - q); the n-gram proposer's q is a point mass on d_i, so acceptance has
 *    probability p(d_i) and the residual is p without d_i. When all drafts are accepted, the bonus
 *    token is sampled from row k with the sequence's own sampler. The tokens produced are then
 *    distributed exactly as the target's, and every coin comes from the sequence's seeded RNG.
 */
import type { LogitRow, SeqOutput } from './types.ts';
import { isGreedyTemperature, type Sampler } from './sampler.ts';

/**
 * Prompt lookup: the last n tokens (n from maxN down to minN) matched against the tokens before
 * them, at their earliest occurrence (as vLLM's n-gram proposer takes the first match: it leaves
 * the most tokens to follow); returns up to k tokens that followed the match (fewer when it is
 * near the end), or [] when no n-gram matches.
 */
export function proposeNgram(tokens: readonly number[], k: number, maxN: number, minN: number): number[] {
  const len = tokens.length;
  if (k <= 0) return [];
  for (let n = Math.min(maxN, len - 1); n >= minN; n--) {
    // An occurrence starting at i ends at i + n - 1 <= len - 2, so at least one token follows it.
    for (let i = 0; i + n <= len - 1; i++) {
      let j = 0;
      while (j < n && tokens[i + j] === tokens[len - n + j]) j++;
      if (j === n) return tokens.slice(i + n, Math.min(i + n + k, len)) as number[];
    }
  }
  return [];
}

/** The logits rows of a step's output for one sequence, in row order (one row when it had no drafts). */
export function logitRowsOf(out: SeqOutput): LogitRow[] {
  return out.rows ?? [{ argmax: out.argmax, logits: out.logits }];
}

export interface VerifyResult {
  /** Tokens to append, in order: the accepted drafts, then one token from the target (bonus or correction). */
  tokens: number[];
  /** Drafts accepted (tokens.length - 1). */
  numAccepted: number;
}

/**
 * The distribution the sequence's sampler draws from at a logits row (after temperature, top-k and
 * top-p, as run.c's sampler does), in float64.
 */
export function targetDistribution(sampler: Sampler, logits: Float32Array): Float64Array {
  const { temperature, topK, topP } = sampler.params;
  const t = Math.fround(temperature);
  const n = logits.length;
  const x = new Float64Array(n);
  for (let i = 0; i < n; i++) x[i] = Math.fround(logits[i] / t);
  if (topK > 0 && topK < n) {
    const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => x[b] - x[a] || a - b);
    for (let r = topK; r < n; r++) x[order[r]] = -Infinity;
  }
  let max = -Infinity;
  for (let i = 0; i < n; i++) if (x[i] > max) max = x[i];
  const p = new Float64Array(n);
  if (!Number.isFinite(max)) {
    // A temperature so small that logits / t overflow: the limit is the argmax (as the sampler does).
    let best = 0;
    for (let i = 1; i < n; i++) if (logits[i] > logits[best]) best = i;
    p[best] = 1;
    return p;
  }
  let sum = 0;
  for (let i = 0; i < n; i++) sum += p[i] = Math.exp(x[i] - max);
  for (let i = 0; i < n; i++) p[i] /= sum;
  const topPf = Math.fround(topP);
  if (topPf > 0 && topPf < 1) {
    // The nucleus: the most likely tokens until their mass exceeds top-p, renormalised.
    const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => p[b] - p[a] || a - b);
    let cum = 0;
    let last = n - 1;
    for (let r = 0; r < n; r++) {
      cum += p[order[r]];
      if (cum > topPf) {
        last = r;
        break;
      }
    }
    for (let r = last + 1; r < n; r++) p[order[r]] = 0;
    for (let r = 0; r <= last; r++) p[order[r]] /= cum;
  }
  return p;
}

/** Inverse-CDF draw from a (normalised) distribution with one coin in [0, 1). */
function drawFrom(p: Float64Array, coin: number): number {
  let cdf = 0;
  let lastNonZero = 0;
  for (let i = 0; i < p.length; i++) {
    if (p[i] <= 0) continue;
    lastNonZero = i;
    cdf += p[i];
    if (coin < cdf) return i;
  }
  return lastNonZero;
}

/**
 * Verifies drafts against the target rows (rows.length === drafts.length + 1) with the
 * sequence's sampler; see the module comment. Draws coins only for temperature > 0.
 */
export function verifyDrafts(sampler: Sampler, drafts: readonly number[], rows: readonly LogitRow[]): VerifyResult {
  if (rows.length !== drafts.length + 1) throw new Error(`verifyDrafts: ${drafts.length} drafts need ${drafts.length + 1} logits rows, got ${rows.length}`);
  const tokens: number[] = [];
  if (isGreedyTemperature(sampler.params.temperature)) {
    for (let i = 0; i < drafts.length; i++) {
      const target = rows[i].argmax;
      tokens.push(target);
      if (target !== drafts[i]) return { tokens, numAccepted: i };
    }
    tokens.push(rows[drafts.length].argmax);
    return { tokens, numAccepted: drafts.length };
  }
  for (let i = 0; i < drafts.length; i++) {
    const logits = rows[i].logits;
    if (!logits) throw new Error(`verifyDrafts: row ${i} has no logits to sample at temperature ${sampler.params.temperature}`);
    const p = targetDistribution(sampler, logits);
    const d = drafts[i];
    // q(d) = 1 (a point mass), so min(1, p(d) / q(d)) = p(d).
    const u = sampler.rng.nextF32();
    if (u < p[d]) {
      tokens.push(d);
      continue;
    }
    // The residual max(0, p - q), normalised: p with the draft removed.
    const residual = p.slice();
    residual[d] = 0;
    let mass = 0;
    for (let v = 0; v < residual.length; v++) mass += residual[v];
    for (let v = 0; v < residual.length; v++) residual[v] /= mass;
    tokens.push(drawFrom(residual, sampler.rng.nextF32()));
    return { tokens, numAccepted: i };
  }
  const last = rows[drafts.length];
  tokens.push(sampler.sample({ seqId: -1, argmax: last.argmax, logits: last.logits }));
  return { tokens, numAccepted: drafts.length };
}
