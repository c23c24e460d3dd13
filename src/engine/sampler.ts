/**
 * Token sampling with an explicit, seeded RNG (never Math.random), so every run replays.
 * With topK = 0 this is llama2.c run.c's sampler step for step: temperature, softmax, one coin
 * from its xorshift64* generator, then multinomial or nucleus (top-p) sampling. Top-k, when set,
 * keeps only the k largest logits before the softmax.
 *
 * Every step is run.c's float arithmetic, rounded where C rounds: the temperature and top-p are
 * float32 (run.c reads them with atof into a float, so 0.8 means Math.fround(0.8)), each + - * /
 * of two floats is done in double and rounded once (exactly the float result: a double holds more
 * than twice a float's precision), and expf is Math.fround(Math.exp(x)) (glibc's expf is correctly
 * rounded; this matches it except where exp(x) lies within a double ulp of a float rounding
 * boundary). Sampled text at bit-identical logits then matches run.c's, seed for seed.
 */
import type { SamplingParams, SeqOutput } from './types.ts';

const mask64 = (1n << 64n) - 1n;
const xorshiftMultiplier = 0x2545f4914f6cdd1dn;

/** run.c's RNG: xorshift64* on a 64-bit state, 32 high bits out. */
export class XorShiftRng {
  private s: bigint;

  constructor(seed: number | bigint) {
    this.s = BigInt.asUintN(64, BigInt(seed));
    if (this.s === 0n) this.s = 0x9e3779b97f4a7c15n; // xorshift must not start at zero
  }

  /** The state, for saving a run (restore with `new XorShiftRng(state)`). */
  get state(): bigint {
    return this.s;
  }

  nextU32(): number {
    let s = this.s;
    s ^= s >> 12n;
    s = (s ^ (s << 25n)) & mask64;
    s ^= s >> 27n;
    this.s = s;
    return Number(((s * xorshiftMultiplier) & mask64) >> 32n);
  }

  /** A float32 in [0, 1), as run.c's random_f32. */
  nextF32(): number {
    return Math.fround((this.nextU32() >>> 8) / 16777216);
  }
}

export interface Sampler {
  readonly params: SamplingParams;
  readonly rng: XorShiftRng;
  /** The next token from a step's output for this sequence. */
  sample(out: SeqOutput): number;
  /** The next token from a logits row (used by sample, and by the CPU generator directly). */
  sampleLogits(logits: Float32Array): number;
}

export function validateSamplingParams(p: SamplingParams): void {
  if (!Number.isFinite(p.temperature) || p.temperature < 0) {
    throw new RangeError(`temperature must be a finite number >= 0, got ${p.temperature}`);
  }
  if (!Number.isFinite(p.topP) || p.topP < 0 || p.topP > 1) {
    throw new RangeError(`top_p must be between 0 and 1, got ${p.topP}`);
  }
  if (!Number.isInteger(p.topK) || p.topK < 0) {
    throw new RangeError(`top_k must be an integer >= 0, got ${p.topK}`);
  }
  // The xorshift state is the seed modulo 2^64 (a negative seed -s is 2^64 - s, as in run.c).
  if (!Number.isInteger(p.seed)) throw new RangeError(`seed must be an integer, got ${p.seed}`);
}

/** Index of the largest value, first on ties (run.c's sample_argmax). */
export function argmaxOf(x: Float32Array): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

const f32 = Math.fround;

/** run.c's expf: a float result of a float argument. */
const expf = (x: number): number => f32(Math.exp(x));

/**
 * Probabilities after temperature, top-k and a float32 softmax, as run.c computes them: each logit
 * divided by the float temperature in float, then softmax(x) in float (max, x - max, expf, a float
 * sum in order, x / sum).
 */
export function probabilities(logits: Float32Array, temperature: number, topK: number): Float32Array {
  const n = logits.length;
  const t = f32(temperature);
  const probs = new Float32Array(n); // every store rounds to float
  for (let i = 0; i < n; i++) probs[i] = logits[i] / t;
  if (topK > 0 && topK < n) {
    const kth = [...probs].sort((a, b) => b - a)[topK - 1];
    // Keep exactly topK entries: the strictly larger ones, then ties at the kth value by index.
    let keepTies = topK - probs.filter((v) => v > kth).length;
    for (let i = 0; i < n; i++) {
      if (probs[i] > kth) continue;
      if (probs[i] === kth && keepTies > 0) keepTies--;
      else probs[i] = -Infinity;
    }
  }
  let max = probs[0];
  for (let i = 1; i < n; i++) if (probs[i] > max) max = probs[i];
  let sum = 0;
  for (let i = 0; i < n; i++) {
    probs[i] = expf(f32(probs[i] - max));
    sum = f32(sum + probs[i]);
  }
  for (let i = 0; i < n; i++) probs[i] = probs[i] / sum;
  return probs;
}

/** run.c's sample_mult: the first index whose float cdf exceeds the coin. */
function sampleMult(probs: Float32Array, coin: number): number {
  let cdf = 0;
  for (let i = 0; i < probs.length; i++) {
    cdf = f32(cdf + probs[i]);
    if (coin < cdf) return i;
  }
  return probs.length - 1;
}

/** run.c's sample_topp; topP is already a float32. */
function sampleTopP(probs: Float32Array, topP: number, coin: number): number {
  const n = probs.length;
  // Tokens below the cutoff can never be in the nucleus; dropping them first keeps the sort small.
  // run.c: (1.0f - topp) / (n - 1), both steps in float.
  const cutoff = f32(f32(1 - topP) / f32(n - 1));
  const candidates: number[] = [];
  for (let i = 0; i < n; i++) if (probs[i] >= cutoff) candidates.push(i);
  // Descending probability; ties in index order (glibc's qsort sorts this array with a stable merge sort).
  candidates.sort((a, b) => probs[b] - probs[a] || a - b);
  let cumulative = 0;
  let last = candidates.length - 1;
  for (let i = 0; i < candidates.length; i++) {
    cumulative = f32(cumulative + probs[candidates[i]]);
    if (cumulative > topP) {
      last = i;
      break;
    }
  }
  const r = f32(coin * cumulative);
  let cdf = 0;
  for (let i = 0; i <= last; i++) {
    cdf = f32(cdf + probs[candidates[i]]);
    if (r < cdf) return candidates[i];
  }
  return candidates[last];
}

export function createSampler(params: SamplingParams): Sampler {
  validateSamplingParams(params);
  const rng = new XorShiftRng(params.seed);
  // run.c holds both in floats and tests them as floats (a temperature below float's range is greedy).
  const temperature = f32(params.temperature);
  const topP = f32(params.topP);
  const sampleLogits = (logits: Float32Array): number => {
    if (temperature === 0) return argmaxOf(logits);
    const probs = probabilities(logits, temperature, params.topK);
    const coin = rng.nextF32();
    if (topP <= 0 || topP >= 1) return sampleMult(probs, coin);
    return sampleTopP(probs, topP, coin);
  };
  return {
    params,
    rng,
    sampleLogits,
    sample(out: SeqOutput): number {
      if (temperature === 0) return out.argmax;
      if (!out.logits) {
        throw new Error(`sequence ${out.seqId} samples at temperature ${params.temperature} but the executor returned no logits`);
      }
      return sampleLogits(out.logits);
    },
  };
}
