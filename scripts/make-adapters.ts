/**
 * Makes the LoRA adapters shipped in public/adapters/ (no public adapters exist for stories260K).
 * Seeded: the same command writes the same bytes. Each adapter is a PEFT directory
 * (adapter_config.json + adapter_model.safetensors, F32) for the llama2.c stories260K model:
 *
 *   tom     rank 4 on the last layer's down_proj (w2). Trained: the base model's probability of
 *           " Lily" is moved to " T" (and "om" follows an inserted " T"), so the girl of the
 *           stories is called Tom.
 *   happy   rank 4 on the last layer's down_proj (w2). Trained: the base distribution with the
 *           logit of " happy" raised by 3, so "happy" becomes the model's favourite word.
 *   noise   rank 4 on all seven projections of every layer, seeded random A and B (scale small):
 *           no meaning, it exercises every module of the PEFT mapping.
 *
 * Training (tom, happy): the base model samples stories (temperature 0.9, seeded) from a few
 * openers; for tom, " Lily" in them is replaced by " T" "om". The CPU reference runs every story and
 * keeps, per position, the last layer's w2 input h and the final residual x. The target at each
 * position is a distribution q (the base model's own, edited as above; one-hot "om" after an
 * inserted " T"); LoRA B, A (PEFT init: A random, B zero) minimise the cross-entropy of
 * softmax(wcls · rmsnorm(x + (alpha/r) B A h)) against q with Adam, the gradient taken by hand
 * through the final RMSNorm and the classifier (no other layer changes). The script prints each
 * adapter's greedy text beside the base model's.
 *
 *   npx tsx scripts/make-adapters.ts [--out public/adapters]
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Rng } from '../src/engine/workload.ts';
import { LORA_MODULES, type LoraAdapter, type LoraModule } from '../src/engine/types.ts';
import { loadModel } from '../src/model/load.ts';
import { hasHfRopeRows, llama2cRowsToHf, loraModuleShape, mergeLora, peftTensorName, LLAMA2C_TO_PEFT } from '../src/model/lora.ts';
import { argmax, matvec, rmsnorm } from '../src/model/ops.ts';
import { createKvStore, forwardToken, ReferenceModel, Scratch } from '../src/model/reference.ts';
import { writeSafetensors } from '../src/model/safetensors.ts';
import { headSize, type Model } from '../src/model/types.ts';
import { builtinModelPath, builtinTokenizerPath } from './cli-args.ts';

const outDir = process.argv.includes('--out') ? process.argv[process.argv.indexOf('--out') + 1] : 'public/adapters';
const loaded = loadModel(readFileSync(builtinModelPath), 'stories260K.bin', readFileSync(builtinTokenizerPath), 'tok512.bin');
const model = loaded.model;
const tok = loaded.tokenizer;
const c = model.config;
const L = c.numLayers - 1; // the layer the trained adapters change
const H = c.hiddenDim;
const D = c.dim;
const V = c.vocabSize;
const id = (word: string) => {
  const ids = tok.encode(word, false, false);
  if (ids.length !== 1) throw new Error(`${word} is ${ids.length} tokens`);
  return ids[0];
};
const LILY = id('Lily');
const [T_, OM] = tok.encode('Tom', false, false);
const HAPPY = id('happy');

/** Base-model stories, sampled at temperature 0.9 (seeded). */
function sampleStories(seed: number, count: number, length: number): number[][] {
  const rng = new Rng(seed);
  const openers = ['Once upon a time', 'One day', 'Lily', 'There was a', 'Once upon a time, there was a little girl', 'The sun'];
  const ref = new ReferenceModel(model);
  const out: number[][] = [];
  for (let s = 0; s < count; s++) {
    const tokens = tok.encode(openers[s % openers.length], true, false);
    for (let pos = 0; pos < length - 1; pos++) {
      const logits = ref.forward(tokens[pos], pos);
      if (pos < tokens.length - 1) continue;
      let max = -Infinity;
      for (let v = 0; v < V; v++) max = Math.max(max, logits[v] / 0.9);
      let sum = 0;
      const p = new Float64Array(V);
      for (let v = 0; v < V; v++) sum += p[v] = Math.exp(logits[v] / 0.9 - max);
      let r = rng.next() * sum;
      let next = V - 1;
      for (let v = 0; v < V; v++) if ((r -= p[v]) <= 0) { next = v; break; }
      if (next === 1 || next === 2) break;
      tokens.push(next);
    }
    out.push(tokens);
  }
  return out;
}

interface Position {
  h: Float32Array; // [H] last layer's w2 input
  x: Float32Array; // [D] final residual, before the final RMSNorm (base model)
  q: Float32Array; // [V] target distribution
}

/** Runs each story through the base model; target(p, story, k) edits the base distribution p (of token k+1) in place. */
function collect(stories: number[][], target: (p: Float32Array, story: number[], k: number) => void): Position[] {
  const scratch = new Scratch(model);
  const kv = createKvStore(model, c.seqLen);
  const normed = new Float32Array(D);
  const logits = new Float32Array(V);
  const out: Position[] = [];
  for (const story of stories) {
    for (let k = 0; k < story.length - 1; k++) {
      forwardToken(model, scratch, kv, story[k], k, (p) => p, false);
      const x = scratch.x.slice();
      const h = scratch.hb.slice();
      rmsnorm(normed, x, model.weights.rmsFinal, D, c.normEps);
      matvec(logits, normed, model.weights.wcls, D, V);
      const q = softmax(logits);
      target(q, story, k);
      out.push({ h, x, q });
    }
  }
  return out;
}

function softmax(logits: Float32Array): Float32Array {
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  const p = new Float32Array(logits.length);
  let sum = 0;
  for (let i = 0; i < p.length; i++) sum += p[i] = Math.exp(logits[i] - max);
  for (let i = 0; i < p.length; i++) p[i] /= sum;
  return p;
}

/** Adam on a last-layer w2 LoRA (A [r, H], B [D, r]) against the positions' targets. */
function train(data: Position[], rank: number, alpha: number, seed: number, steps: number, lr: number): { a: Float32Array; b: Float32Array; loss: number[] } {
  const rng = new Rng(seed);
  const scale = alpha / rank;
  const a = new Float32Array(rank * H);
  const bound = 1 / Math.sqrt(H); // kaiming-uniform(a = sqrt(5)) as PEFT initialises lora_A
  for (let i = 0; i < a.length; i++) a[i] = (rng.next() * 2 - 1) * bound;
  const b = new Float32Array(D * rank); // zero, as PEFT: the adapter starts as the base model
  const params = [a, b];
  const m = params.map((p) => new Float64Array(p.length));
  const v = params.map((p) => new Float64Array(p.length));
  const ga = new Float64Array(a.length);
  const gb = new Float64Array(b.length);
  const u = new Float64Array(rank);
  const x = new Float64Array(D);
  const z = new Float64Array(D);
  const logits = new Float64Array(V);
  const dz = new Float64Array(D);
  const dx = new Float64Array(D);
  const g = model.weights.rmsFinal;
  const W = model.weights.wcls;
  const losses: number[] = [];
  const batch = 192;
  for (let step = 1; step <= steps; step++) {
    ga.fill(0);
    gb.fill(0);
    let loss = 0;
    for (let n = 0; n < batch; n++) {
      const d = data[Math.floor(rng.next() * data.length)];
      for (let k = 0; k < rank; k++) {
        let acc = 0;
        for (let j = 0; j < H; j++) acc += a[k * H + j] * d.h[j];
        u[k] = acc;
      }
      let ss = 0;
      for (let i = 0; i < D; i++) {
        let acc = 0;
        for (let k = 0; k < rank; k++) acc += b[i * rank + k] * u[k];
        x[i] = d.x[i] + scale * acc;
        ss += x[i] * x[i];
      }
      const r = Math.sqrt(ss / D + c.normEps);
      for (let i = 0; i < D; i++) z[i] = (g[i] * x[i]) / r;
      let max = -Infinity;
      for (let t = 0; t < V; t++) {
        let acc = 0;
        for (let i = 0; i < D; i++) acc += W[t * D + i] * z[i];
        logits[t] = acc;
        max = Math.max(max, acc);
      }
      let sum = 0;
      for (let t = 0; t < V; t++) sum += logits[t] = Math.exp(logits[t] - max);
      dz.fill(0);
      for (let t = 0; t < V; t++) {
        const p = logits[t] / sum;
        if (d.q[t] > 0) loss -= d.q[t] * Math.log(Math.max(p, 1e-30));
        const e = (p - d.q[t]) / batch;
        if (e === 0) continue;
        for (let i = 0; i < D; i++) dz[i] += e * W[t * D + i];
      }
      // through z = g ⊙ x / r
      let dot = 0;
      for (let i = 0; i < D; i++) dot += g[i] * x[i] * dz[i];
      for (let i = 0; i < D; i++) dx[i] = (g[i] * dz[i]) / r - (x[i] * dot) / (D * r * r * r);
      for (let i = 0; i < D; i++) for (let k = 0; k < rank; k++) gb[i * rank + k] += scale * dx[i] * u[k];
      for (let k = 0; k < rank; k++) {
        let bt = 0;
        for (let i = 0; i < D; i++) bt += b[i * rank + k] * dx[i];
        for (let j = 0; j < H; j++) ga[k * H + j] += scale * bt * d.h[j];
      }
    }
    losses.push(loss / batch);
    const grads = [ga, gb];
    for (let p = 0; p < 2; p++) {
      for (let i = 0; i < params[p].length; i++) {
        const gr = grads[p][i];
        m[p][i] = 0.9 * m[p][i] + 0.1 * gr;
        v[p][i] = 0.999 * v[p][i] + 0.001 * gr * gr;
        const mh = m[p][i] / (1 - 0.9 ** step);
        const vh = v[p][i] / (1 - 0.999 ** step);
        params[p][i] -= (lr * mh) / (Math.sqrt(vh) + 1e-8);
      }
    }
  }
  return { a, b, loss: losses };
}

function greedy(m: Model, prompt: string, steps: number): string {
  const ref = new ReferenceModel(m);
  const tokens = tok.encode(prompt, true, false);
  for (let pos = 0; pos < steps - 1; pos++) {
    const logits = ref.forward(tokens[pos], pos);
    if (pos < tokens.length - 1) continue;
    const next = argmax(logits);
    if (next === 1 || next === 2) break;
    tokens.push(next);
  }
  return tok.decode(tokens.slice(1));
}

function write(name: string, adapter: LoraAdapter, alpha: number, modules: LoraModule[], about: string): void {
  const dir = join(outDir, name);
  mkdirSync(dir, { recursive: true });
  const config = {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: 'stories260K',
    r: adapter.rank,
    lora_alpha: alpha,
    lora_dropout: 0,
    bias: 'none',
    fan_in_fan_out: false,
    target_modules: modules.map((m) => LLAMA2C_TO_PEFT[m]),
    use_rslora: false,
    inference_mode: true,
    servelab_note: about,
  };
  writeFileSync(join(dir, 'adapter_config.json'), JSON.stringify(config, null, 2) + '\n');
  const tensors: { name: string; shape: number[]; data: Float32Array }[] = [];
  adapter.layers.forEach((layer, l) => {
    for (const m of LORA_MODULES) {
      const w = layer[m];
      if (!w) continue;
      const [out, inDim] = loraModuleShape(c, m);
      tensors.push({ name: peftTensorName(l, m, 'A'), shape: [adapter.rank, inDim], data: w.a });
      // PEFT files hold q/k's lora_B rows in Hugging Face's RoPE order (readPeftAdapter undoes it).
      const b = hasHfRopeRows(m) ? llama2cRowsToHf(w.b, adapter.rank, headSize(c)) : w.b;
      tensors.push({ name: peftTensorName(l, m, 'B'), shape: [out, adapter.rank], data: b });
    }
  });
  writeFileSync(join(dir, 'adapter_model.safetensors'), writeSafetensors(tensors, { format: 'pt', made_by: 'servelab scripts/make-adapters.ts' }));
}

function lastLayerW2(name: string, rank: number, alpha: number, a: Float32Array, b: Float32Array): LoraAdapter {
  const layers: LoraAdapter['layers'] = Array.from({ length: c.numLayers }, () => ({}));
  layers[L] = { w2: { a, b } };
  return { name, rank, scale: alpha / rank, layers };
}

const stories = sampleStories(1234, 48, 128);
const prompts = ['Once upon a time', 'One day', 'Lily wanted to'];
const report = (name: string, adapter: LoraAdapter) => {
  const merged: Model = { ...model, weights: mergeLora(c, model.weights, adapter) };
  for (const p of prompts) {
    console.log(`  [base ] ${greedy(model, p, 60).replace(/\n/g, ' / ')}`);
    console.log(`  [${name.padEnd(5)}] ${greedy(merged, p, 60).replace(/\n/g, ' / ')}`);
  }
};

{
  // tom: " Lily" -> " T" "om"
  const renamed = stories.map((s) => s.flatMap((t) => (t === LILY ? [T_, OM] : [t])));
  const inserted = new Set<string>();
  renamed.forEach((s, i) => s.forEach((t, k) => t === T_ && s[k + 1] === OM && !stories[i].includes(T_) && inserted.add(`${i}:${k}`)));
  const data = collect(renamed, (q, story, k) => {
    if (story[k] === T_ && story[k + 1] === OM) {
      q.fill(0);
      q[OM] = 1;
      return;
    }
    q[T_] += q[LILY];
    q[LILY] = 0;
  });
  const { a, b, loss } = train(data, 4, 8, 7, 240, 0.01);
  console.log(`tom: ${data.length} positions; loss ${loss[0].toFixed(3)} -> ${loss.at(-1)!.toFixed(3)}`);
  const adapter = lastLayerW2('tom', 4, 8, a, b);
  report('tom', adapter);
  write('tom', adapter, 8, ['w2'], 'made by scripts/make-adapters.ts: trained so that the girl " Lily" is called " T"+"om" (probability of Lily moved to Tom)');
}
{
  // happy: logit of " happy" + 6
  const data = collect(stories, (q) => {
    q[HAPPY] *= Math.exp(6);
    let sum = 0;
    for (const p of q) sum += p;
    for (let i = 0; i < q.length; i++) q[i] /= sum;
  });
  const { a, b, loss } = train(data, 4, 8, 11, 240, 0.02);
  console.log(`happy: ${data.length} positions; loss ${loss[0].toFixed(3)} -> ${loss.at(-1)!.toFixed(3)}`);
  const adapter = lastLayerW2('happy', 4, 8, a, b);
  report('happy', adapter);
  write('happy', adapter, 8, ['w2'], 'made by scripts/make-adapters.ts: trained so that " happy" is the favourite word (its logit raised by 6 over the base model)');
}
{
  // noise: every module of every layer, seeded random A and B
  const rng = new Rng(99);
  const rank = 4;
  const alpha = 4;
  const layers: LoraAdapter['layers'] = Array.from({ length: c.numLayers }, () => {
    const layer: LoraAdapter['layers'][number] = {};
    for (const m of LORA_MODULES) {
      const [out, inDim] = loraModuleShape(c, m);
      const a = new Float32Array(rank * inDim).map(() => rng.normal() / Math.sqrt(inDim));
      const b = new Float32Array(out * rank).map(() => rng.normal() * 0.02);
      layer[m] = { a, b };
    }
    return layer;
  });
  const adapter: LoraAdapter = { name: 'noise', rank, scale: alpha / rank, layers };
  report('noise', adapter);
  write('noise', adapter, alpha, [...LORA_MODULES], 'made by scripts/make-adapters.ts: seeded random A and B on all seven projections of every layer (no meaning; it exercises the whole PEFT mapping)');
}
