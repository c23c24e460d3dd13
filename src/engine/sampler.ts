/**
 * Token sampling with an explicit, seeded RNG (never Math.random), so every run replays.
 * With topK = 0 this is llama2.c run.c's sampler step for step: temperature, softmax, one coin
 * from its xorshift64* generator, then multinomial or nucleus (top-p) sampling. Top-k, when set,
 * keeps only the k largest logits before the softmax.
 *
 * Every step is run.c's float arithmetic, rounded where C rounds: the temperature and top-p are
 * float32 (run.c reads them with atof into a float, so 0.8 means Math.fround(0.8)), each + - * /
 * of two floats is done in double and rounded once (exactly the float result: a double holds more
 * than twice a float's precision), and expf is glibc's (see expf below). Sampled text at
 * bit-identical logits then matches run.c's, seed for seed.
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
  /**
   * Tokens sampled greedily because a logit divided by the temperature overflowed float32 (run.c
   * would have sampled from NaN probabilities there; see createSampler).
   */
  readonly numOverflowedSteps: number;
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

/*
 * expf as glibc computes it (math/e_expf.c, the one run.c links on Linux). It is not correctly
 * rounded (up to 0.502 ulp), so Math.fround(Math.exp(x)) differs from it in about 1 float of 1600,
 * and a softmax of 512 logits then mostly has a probability 1 ulp off run.c's. The method:
 * x * 32/ln2 = k + r with integer k and |r| <= 1/2, then exp(x) = 2^(k/32) * 2^(r/32), the first
 * from a table of 2^(j/32) scaled by 2^floor(k/32), the second a cubic in r, all in double, then
 * one rounding to float. Checked bit for bit against glibc 2.36 on 2M floats across its range (its
 * FMA build, picked on CPUs with FMA, can differ only where y lies within about 2^-47 of a float
 * rounding boundary: far rarer than anything a test could find).
 */
/** asuint64(2^(j/32)) - (j << 47), j = 0..31: glibc's __exp2f_data.tab. */
const exp2fTable = [
  0x3ff0000000000000n, 0x3fefd9b0d3158574n, 0x3fefb5586cf9890fn, 0x3fef9301d0125b51n,
  0x3fef72b83c7d517bn, 0x3fef54873168b9aan, 0x3fef387a6e756238n, 0x3fef1e9df51fdee1n,
  0x3fef06fe0a31b715n, 0x3feef1a7373aa9cbn, 0x3feedea64c123422n, 0x3feece086061892dn,
  0x3feebfdad5362a27n, 0x3feeb42b569d4f82n, 0x3feeab07dd485429n, 0x3feea47eb03a5585n,
  0x3feea09e667f3bcdn, 0x3fee9f75e8ec5f74n, 0x3feea11473eb0187n, 0x3feea589994cce13n,
  0x3feeace5422aa0dbn, 0x3feeb737b0cdc5e5n, 0x3feec49182a3f090n, 0x3feed503b23e255dn,
  0x3feee89f995ad3adn, 0x3feeff76f2fb5e47n, 0x3fef199bdd85529cn, 0x3fef3720dcef9069n,
  0x3fef5818dcfba487n, 0x3fef7c97337b9b5fn, 0x3fefa4afa2a490dan, 0x3fefd0765b6e4540n,
];
/** 2^(j/32) as doubles (the table entries with j << 47 added back). */
const exp2fPowers = exp2fTable.map((t, j) => {
  const view = new DataView(new ArrayBuffer(8));
  view.setBigUint64(0, t + (BigInt(j) << 47n));
  return view.getFloat64(0);
});
/** 2^e for e = -160..139 (exact: only doublings). */
const powersOfTwo = Array.from({ length: 300 }, (_, i) => 2 ** (i - 160));
const invLn2N = 0x171547652b82fe * 2 ** -47; // 0x1.71547652b82fep+0 * 32
const roundShift = 1.5 * 2 ** 52; // 0x1.8p52: adding and subtracting it rounds to an integer
const poly0 = 0x1c6af84b912394 * 2 ** -72; // 0x1.c6af84b912394p-5 / 32^3
const poly1 = 0x1ebfce50fac4f3 * 2 ** -65; // 0x1.ebfce50fac4f3p-3 / 32^2
const poly2 = 0x162e42ff0c52d6 * 2 ** -58; // 0x1.62e42ff0c52d6p-1 / 32
const expfOverflow = 0x162e42e * 2 ** -18; // 0x1.62e42ep6f: above it, +Infinity
const expfUnderflow = -0x19fe368 * 2 ** -18; // -0x1.9fe368p6f: below it, 0

/** run.c's expf(x) for a float x, bit for bit as glibc computes it. */
export function expf(x: number): number {
  if (!(x >= expfUnderflow)) return Number.isNaN(x) ? x : 0; // -Infinity included
  if (x > expfOverflow) return Infinity;
  const z = invLn2N * x;
  const kd = z + roundShift - roundShift;
  const r = z - kd;
  const j = kd & 31;
  const scale = exp2fPowers[j] * powersOfTwo[(kd - j) / 32 + 160];
  const y = (poly0 * r + poly1) * (r * r) + (poly2 * r + 1);
  return f32(y * scale);
}

/**
 * Probabilities after temperature, top-k and a float32 softmax, as run.c computes them: each logit
 * divided by the float temperature in float, then softmax(x) in float (max, x - max, expf, a float
 * sum in order, x / sum).
 */
export function probabilities(logits: Float32Array, temperature: number, topK: number): Float32Array {
  return softmaxOf(logits, temperature, topK, false)!;
}

/**
 * A temperature that samples greedily: 0 as a float32 (run.c tests `temperature == 0.0f`), or so
 * small that even a logit of 1 divided by it overflows float32 (below about 2.9e-39, a denormal).
 * There every logit of magnitude 1 or more becomes +-Infinity, the softmax is NaN, and run.c would
 * sample garbage (always the last token); the limit of softmax(logits / t) as t -> 0 is the argmax.
 */
export function isGreedyTemperature(temperature: number): boolean {
  const t = f32(temperature);
  return t === 0 || !Number.isFinite(f32(1 / t));
}

/**
 * probabilities(); with `nullOnOverflow`, null where the largest logit / temperature is not a
 * finite float (the softmax would be NaN).
 */
function softmaxOf(logits: Float32Array, temperature: number, topK: number, nullOnOverflow: boolean): Float32Array | null {
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
  if (nullOnOverflow && !Number.isFinite(max)) return null;
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
  // Every token below the cutoff (a near-uniform row with top-p under 1/n, or a one-token row:
  // run.c then reads probindex[-1]): the smallest nucleus is the most likely token.
  if (candidates.length === 0) return argmaxOf(probs);
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
  // 0, or too small to divide by: greedy, as at temperature 0 (no coin drawn).
  const greedy = isGreedyTemperature(temperature);
  let numOverflowedSteps = 0;
  const sampleLogits = (logits: Float32Array): number => {
    if (greedy) return argmaxOf(logits);
    const probs = softmaxOf(logits, temperature, params.topK, true);
    const coin = rng.nextF32();
    if (probs === null) {
      // The temperature is small enough that this row's largest logit / temperature overflows:
      // the limit of the softmax is the argmax. The coin is still drawn, as run.c draws it, so
      // the steps after this one sample what run.c samples.
      numOverflowedSteps++;
      return argmaxOf(logits);
    }
    if (topP <= 0 || topP >= 1) return sampleMult(probs, coin);
    return sampleTopP(probs, topP, coin);
  };
  return {
    params,
    rng,
    sampleLogits,
    get numOverflowedSteps() {
      return numOverflowedSteps;
    },
    sample(out: SeqOutput): number {
      if (greedy) return out.argmax;
      if (!out.logits) {
        throw new Error(`sequence ${out.seqId} samples at temperature ${params.temperature} but the executor returned no logits`);
      }
      return sampleLogits(out.logits);
    },
  };
}
