/**
 * The elementary operations of the forward pass, with plain loops, as llama2.c's run.c computes
 * them: float32 arithmetic in run.c's order of operations. Every step is rounded with Math.fround
 * (an IEEE double operation on float32 inputs, rounded to float32, equals the float32 operation:
 * double has more than 2 * 24 + 2 bits), so these loops reproduce run.c's sums bit for bit (libm's
 * expf/sinf/cosf/powf aside). They are the CPU reference of every WGSL kernel (kernels/*.wgsl) and
 * the building blocks of src/model/reference.ts.
 */
import { BLOCK_BYTES, halfToFloat, QK, type QuantizedMatrix } from './quant.ts';

const f = Math.fround;

/** out[i] = x[i] * w[i] / sqrt(mean(x^2) + eps), over `size` elements starting at the offsets. */
export function rmsnorm(
  out: Float32Array,
  x: Float32Array,
  w: Float32Array,
  size: number,
  eps: number,
  outOffset = 0,
  xOffset = 0,
): void {
  let ss = 0;
  for (let j = 0; j < size; j++) {
    const v = x[xOffset + j];
    ss = f(ss + f(v * v));
  }
  ss = f(ss / size);
  ss = f(ss + eps);
  const inv = f(1 / f(Math.sqrt(ss)));
  for (let j = 0; j < size; j++) out[outOffset + j] = w[j] * f(inv * x[xOffset + j]);
}

/**
 * y = W x for W row-major [outDim, inDim]: out[outOffset + i] = sum_j w[wOffset + i*inDim + j] * x[xOffset + j].
 */
export function matvec(
  out: Float32Array,
  x: Float32Array,
  w: Float32Array,
  inDim: number,
  outDim: number,
  outOffset = 0,
  xOffset = 0,
  wOffset = 0,
): void {
  for (let i = 0; i < outDim; i++) {
    let acc = 0;
    const row = wOffset + i * inDim;
    for (let j = 0; j < inDim; j++) acc = f(acc + f(w[row + j] * x[xOffset + j]));
    out[outOffset + i] = acc;
  }
}

/**
 * matvec with W in ggml blocks (Q8_0 / Q4_0, src/model/quant.ts), dequantized as it is read:
 * w = (q [- 8]) * d, exact in f32, so the sums equal matvec over the dequantized matrix bit for
 * bit (the CPU twin of the quantized matmul kernels). inDim is W's cols; rows from `rowOffset`.
 */
export function matvecQ(
  out: Float32Array,
  x: Float32Array,
  w: QuantizedMatrix,
  inDim: number,
  outDim: number,
  outOffset = 0,
  xOffset = 0,
  rowOffset = 0,
): void {
  if (w.cols !== inDim) throw new RangeError(`matvecQ: W has rows of ${w.cols}, expected ${inDim}`);
  const nb = inDim / QK;
  const bb = BLOCK_BYTES[w.type];
  const bytes = w.blocks;
  const q8 = w.type === 'q8_0';
  for (let i = 0; i < outDim; i++) {
    let acc = 0;
    for (let b = 0; b < nb; b++) {
      const o = ((rowOffset + i) * nb + b) * bb;
      const d = halfToFloat(bytes[o] | (bytes[o + 1] << 8));
      const xb = xOffset + b * QK;
      const qs = o + 2;
      if (q8) {
        for (let j = 0; j < QK; j++) acc = f(acc + f(f(((bytes[qs + j] << 24) >> 24) * d) * x[xb + j]));
      } else {
        for (let j = 0; j < 16; j++) acc = f(acc + f(f(((bytes[qs + j] & 15) - 8) * d) * x[xb + j]));
        for (let j = 0; j < 16; j++) acc = f(acc + f(f(((bytes[qs + j] >> 4) - 8) * d) * x[xb + 16 + j]));
      }
    }
    out[outOffset + i] = acc;
  }
}

/**
 * Rotary position embedding as llama2.c applies it: adjacent pairs (i, i+1), i even, of each
 * head's vector rotated by pos * theta^(-(i mod headSize)/headSize). Rotates `size` elements in place.
 */
export function rope(vec: Float32Array, offset: number, size: number, headSize: number, pos: number, theta: number): void {
  for (let i = 0; i < size; i += 2) {
    const headDim = i % headSize;
    const freq = f(1 / f(Math.pow(theta, f(headDim / headSize))));
    const val = f(pos * freq);
    const fcr = f(Math.cos(val));
    const fci = f(Math.sin(val));
    const v0 = vec[offset + i];
    const v1 = vec[offset + i + 1];
    vec[offset + i] = f(v0 * fcr) - f(v1 * fci);
    vec[offset + i + 1] = f(v0 * fci) + f(v1 * fcr);
  }
}

/** In-place softmax over x[offset .. offset+size). */
export function softmax(x: Float32Array, offset: number, size: number): void {
  let max = -Infinity;
  for (let i = 0; i < size; i++) if (x[offset + i] > max) max = x[offset + i];
  let sum = 0;
  for (let i = 0; i < size; i++) {
    const e = f(Math.exp(f(x[offset + i] - max)));
    x[offset + i] = e;
    sum = f(sum + e);
  }
  for (let i = 0; i < size; i++) x[offset + i] = x[offset + i] / sum;
}

/** SwiGLU: hb[i] = silu(hb[i]) * hb2[i], silu(v) = v / (1 + exp(-v)). */
export function swiglu(hb: Float32Array, hb2: Float32Array, size: number, offset = 0): void {
  for (let i = 0; i < size; i++) {
    const v = hb[offset + i];
    const s = f(v * f(1 / f(1 + f(Math.exp(-v)))));
    hb[offset + i] = s * hb2[offset + i];
  }
}

/** Index of the largest value (first one on ties), as run.c's sample_argmax. */
export function argmax(x: Float32Array, offset = 0, size = x.length - offset): number {
  let best = 0;
  let bestVal = x[offset];
  for (let i = 1; i < size; i++) {
    if (x[offset + i] > bestVal) {
      bestVal = x[offset + i];
      best = i;
    }
  }
  return best;
}

/**
 * LoRA on one row (the CPU twin of kernels/lora_bgmv.wgsl): y[i] += scale · sum_k B[i, k] · u[k]
 * with u = A x, A [rank, inDim], B [outDim, rank]; y and x at the offsets. `u` is scratch of at
 * least `rank` floats. In float32, in the kernel's order: u[k] summed over j in order, then each
 * output's sum over k in order, times scale, added to y.
 */
export function loraAdd(
  y: Float32Array,
  x: Float32Array,
  a: Float32Array,
  b: Float32Array,
  rank: number,
  inDim: number,
  outDim: number,
  scale: number,
  u: Float32Array,
  yOffset = 0,
  xOffset = 0,
): void {
  for (let k = 0; k < rank; k++) {
    let acc = 0;
    for (let j = 0; j < inDim; j++) acc = f(acc + f(a[k * inDim + j] * x[xOffset + j]));
    u[k] = acc;
  }
  const s = f(scale);
  for (let i = 0; i < outDim; i++) {
    let acc = 0;
    for (let k = 0; k < rank; k++) acc = f(acc + f(b[i * rank + k] * u[k]));
    y[yOffset + i] = f(y[yOffset + i] + f(s * acc));
  }
}
