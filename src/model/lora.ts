/**
 * PEFT LoRA adapters on llama2.c models: adapter_config.json + adapter_model.safetensors -> a
 * LoraAdapter (src/engine/types.ts), checked against the model it is meant for.
 *
 * PEFT (LoraConfig, task CAUSAL_LM on a Hugging Face llama) names a layer's update
 *   base_model.model.model.layers.N.self_attn.{q,k,v,o}_proj.lora_{A,B}.weight
 *   base_model.model.model.layers.N.mlp.{gate,down,up}_proj.lora_{A,B}.weight
 * with lora_A [r, in] and lora_B [out, r] (nn.Linear layout, as llama2.c's [out, in] matrices), and
 * the layer's output becomes W x + (lora_alpha / r) · B (A x) (lora_alpha / sqrt(r) with use_rslora).
 * Onto llama2.c's tensors:
 *
 *   PEFT (HF llama)   llama2.c   shape of W      GGUF
 *   q_proj            wq         [dim, dim]      attn_q
 *   k_proj            wk         [kvDim, dim]    attn_k
 *   v_proj            wv         [kvDim, dim]    attn_v
 *   o_proj            wo         [dim, dim]      attn_output
 *   gate_proj         w1         [hidden, dim]   ffn_gate   (silu(w1 x) * (w3 x))
 *   down_proj         w2         [dim, hidden]   ffn_down
 *   up_proj           w3         [hidden, dim]   ffn_up
 *
 * Hugging Face's llama keeps q_proj/k_proj rows in another order than llama2.c (and Meta, and
 * GGUF): its RoPE rotates each head's first half against its second half, llama2.c's rotates
 * adjacent pairs, so transformers' convert_llama_weights_to_hf.py permutes wq/wk rows and
 * llama2.c's export.py permutes them back. A PEFT adapter is trained on the HF model, so its q/k
 * lora_B rows are in the HF order: the reader puts them into llama2.c's (hfRopeRowToLlama2c), and
 * scripts/make-adapters.ts writes them in the HF order. lora_A (the input side) and the other
 * projections are the same in both layouts.
 * Leading prefixes are ignored up to "layers.N."; names that are not LoRA A/B of these seven
 * projections, ranks other than the config's r, shapes other than the model's and layers the model
 * does not have are ModelFormatErrors naming the file and the tensor.
 */
import { readSafetensors } from './safetensors.ts';
import { headSize as headSizeOf, kvDim as kvDimOf, ModelFormatError, type ModelConfig, type ModelWeights } from './types.ts';
import { LORA_MODULES, type LoraAdapter, type LoraModule, type LoraModuleWeights } from '../engine/types.ts';

/** PEFT's llama module names -> llama2.c's. */
export const PEFT_TO_LLAMA2C: Readonly<Record<string, LoraModule>> = {
  q_proj: 'q',
  k_proj: 'k',
  v_proj: 'v',
  o_proj: 'o',
  gate_proj: 'w1',
  down_proj: 'w2',
  up_proj: 'w3',
};
export const LLAMA2C_TO_PEFT: Readonly<Record<LoraModule, string>> = { q: 'q_proj', k: 'k_proj', v: 'v_proj', o: 'o_proj', w1: 'gate_proj', w2: 'down_proj', w3: 'up_proj' };

/** [outDim, inDim] of a module's W. */
export function loraModuleShape(c: ModelConfig, m: LoraModule): [out: number, inDim: number] {
  const kv = kvDimOf(c);
  switch (m) {
    case 'q':
    case 'o':
      return [c.dim, c.dim];
    case 'k':
    case 'v':
      return [kv, c.dim];
    case 'w1':
    case 'w3':
      return [c.hiddenDim, c.dim];
    case 'w2':
      return [c.dim, c.hiddenDim];
  }
}

/** The fields of adapter_config.json this reader uses. */
export interface PeftLoraConfig {
  r: number;
  loraAlpha: number;
  targetModules: LoraModule[];
  useRslora: boolean;
}

export function parseAdapterConfig(json: string | unknown, name = 'adapter_config.json'): PeftLoraConfig {
  const fail = (why: string): never => {
    throw new ModelFormatError(`LoRA config ${name}: ${why}`);
  };
  let c: unknown = json;
  if (typeof json === 'string') {
    try {
      c = JSON.parse(json);
    } catch (e) {
      fail(`not valid JSON (${(e as Error).message})`);
    }
  }
  if (typeof c !== 'object' || c === null || Array.isArray(c)) return fail('not a JSON object');
  const o = c as Record<string, unknown>;
  if (o.peft_type !== undefined && o.peft_type !== 'LORA') fail(`peft_type is ${JSON.stringify(o.peft_type)}, not "LORA"`);
  if (!Number.isSafeInteger(o.r) || (o.r as number) < 1) fail(`r must be a positive integer, got ${JSON.stringify(o.r)}`);
  const alpha = o.lora_alpha ?? o.r; // PEFT's default lora_alpha is 8 with r 8; absent, take scale 1
  if (typeof alpha !== 'number' || !Number.isFinite(alpha)) fail(`lora_alpha must be a finite number, got ${JSON.stringify(o.lora_alpha)}`);
  if (o.fan_in_fan_out === true) fail('fan_in_fan_out adapters (GPT-2 style Conv1D) are not supported: llama weights are [out, in]');
  if (o.bias !== undefined && o.bias !== 'none') fail(`bias ${JSON.stringify(o.bias)} is not supported (only "none")`);
  for (const key of ['rank_pattern', 'alpha_pattern'] as const) {
    const v = o[key];
    if (v !== undefined && v !== null && (typeof v !== 'object' || Object.keys(v).length > 0)) fail(`${key} (per-module ranks or alphas) is not supported`);
  }
  if (o.use_dora === true) fail('DoRA adapters (use_dora) are not supported');
  let targets = o.target_modules;
  if (typeof targets === 'string') targets = [targets];
  if (!Array.isArray(targets) || targets.length === 0 || !targets.every((t) => typeof t === 'string')) fail('target_modules must be a non-empty list of module names');
  const modules: LoraModule[] = [];
  for (const t of targets as string[]) {
    const m = PEFT_TO_LLAMA2C[t];
    if (!m) fail(`target module ${JSON.stringify(t)} is not one this model has (it has ${Object.keys(PEFT_TO_LLAMA2C).join(', ')})`);
    if (!modules.includes(m)) modules.push(m);
  }
  return { r: o.r as number, loraAlpha: alpha as number, targetModules: modules, useRslora: o.use_rslora === true };
}

/**
 * The llama2.c row of row `hfRow` of a Hugging Face q_proj/k_proj matrix (or of its lora_B).
 * transformers' permute(w) = w.view(heads, headSize / 2, 2, cols).transpose(1, 2).reshape(rows,
 * cols): HF row h·headSize + p·headSize/2 + i holds llama2.c row h·headSize + 2i + p (p = 0, 1).
 * The same for q (numHeads heads) and k (numKvHeads heads): only the head size matters.
 */
export function hfRopeRowToLlama2c(hfRow: number, headSize: number): number {
  const half = headSize / 2;
  const r = hfRow % headSize;
  const p = r < half ? 0 : 1;
  return hfRow - r + 2 * (r - p * half) + p;
}

/** Whether a module's rows are in another order in Hugging Face's llama (q and k: RoPE is applied to their output). */
export function hasHfRopeRows(m: LoraModule): boolean {
  return m === 'q' || m === 'k';
}

/** A [rows, cols] row-major matrix with its q/k rows moved from HF's order into llama2.c's. */
export function hfRowsToLlama2c(m: Float32Array, cols: number, headSize: number): Float32Array {
  const out = new Float32Array(m.length);
  for (let hf = 0; hf < m.length / cols; hf++) out.set(m.subarray(hf * cols, (hf + 1) * cols), hfRopeRowToLlama2c(hf, headSize) * cols);
  return out;
}

/** The inverse of hfRowsToLlama2c: llama2.c's q/k rows in HF's order (what a PEFT file holds). */
export function llama2cRowsToHf(m: Float32Array, cols: number, headSize: number): Float32Array {
  const out = new Float32Array(m.length);
  for (let hf = 0; hf < m.length / cols; hf++) {
    const l = hfRopeRowToLlama2c(hf, headSize);
    out.set(m.subarray(l * cols, (l + 1) * cols), hf * cols);
  }
  return out;
}

const NAME = /(?:^|\.)layers\.(\d+)\.(?:self_attn|mlp)\.(q_proj|k_proj|v_proj|o_proj|gate_proj|down_proj|up_proj)\.lora_(A|B)(?:\.default)?\.weight$/;

/**
 * Reads a PEFT adapter for a model: the config's r and scale, the safetensors' A/B per layer and
 * module, every shape checked against the model. `adapterName` is what requests will call it.
 */
export function readPeftAdapter(
  adapterName: string,
  configJson: string | unknown,
  safetensors: Uint8Array,
  model: ModelConfig,
  fileName = `${adapterName}/adapter_model.safetensors`,
): LoraAdapter {
  const cfg = parseAdapterConfig(configJson, `${adapterName}/adapter_config.json`);
  const file = readSafetensors(safetensors, fileName);
  const fail = (why: string): never => {
    throw new ModelFormatError(`LoRA adapter ${adapterName} (${fileName}): ${why}`);
  };
  const layers: Partial<Record<LoraModule, Partial<LoraModuleWeights>>>[] = Array.from({ length: model.numLayers }, () => ({}));
  const r = cfg.r;
  for (const t of file.tensors.values()) {
    const m = NAME.exec(t.name);
    if (!m) fail(`tensor ${t.name} is not a LoRA A/B weight of a llama projection (…layers.N.self_attn|mlp.<proj>.lora_A|lora_B.weight)`);
    const layer = Number(m![1]);
    const mod = PEFT_TO_LLAMA2C[m![2]];
    const which = m![3] as 'A' | 'B';
    if (layer >= model.numLayers) fail(`tensor ${t.name}: layer ${layer}, but the model has ${model.numLayers} layers (0..${model.numLayers - 1})`);
    if (!cfg.targetModules.includes(mod)) fail(`tensor ${t.name}: module ${m![2]} is not in the config's target_modules (${cfg.targetModules.map((x) => LLAMA2C_TO_PEFT[x]).join(', ')})`);
    const [out, inDim] = loraModuleShape(model, mod);
    const want = which === 'A' ? [r, inDim] : [out, r];
    if (t.shape.length !== 2 || t.shape[0] !== want[0] || t.shape[1] !== want[1]) {
      const rankHint = t.shape.length === 2 && (which === 'A' ? t.shape[0] : t.shape[1]) !== r ? ` (its rank ${which === 'A' ? t.shape[0] : t.shape[1]} is not the config's r = ${r})` : '';
      fail(`tensor ${t.name} has shape [${t.shape.join(', ')}], expected [${want.join(', ')}] for ${m![2]} (llama2.c ${mod}: W is [${out}, ${inDim}]) at r = ${r}${rankHint}`);
    }
    for (let i = 0; i < t.data.length; i++) if (!Number.isFinite(t.data[i])) fail(`tensor ${t.name} holds a non-finite value at index ${i}`);
    const slot = (layers[layer][mod] ??= {});
    // q/k's lora_B rows: from HF's RoPE order into llama2.c's (see the top of this file).
    slot[which === 'A' ? 'a' : 'b'] = which === 'B' && hasHfRopeRows(mod) ? hfRowsToLlama2c(t.data, r, headSizeOf(model)) : t.data;
  }
  let numModules = 0;
  for (let l = 0; l < layers.length; l++) {
    for (const mod of LORA_MODULES) {
      const w = layers[l][mod];
      if (!w) continue;
      if (!w.a || !w.b) fail(`layer ${l} ${LLAMA2C_TO_PEFT[mod]} has lora_${w.a ? 'A' : 'B'} but no lora_${w.a ? 'B' : 'A'}`);
      numModules++;
    }
  }
  if (numModules === 0) fail('it holds no LoRA weights');
  const scale = cfg.useRslora ? cfg.loraAlpha / Math.sqrt(r) : cfg.loraAlpha / r;
  return { name: adapterName, rank: r, scale, layers: layers as Partial<Record<LoraModule, LoraModuleWeights>>[] };
}

/** The PEFT tensor name of a layer's module (what scripts/make-adapters.ts writes; its q/k lora_B in HF's row order: llama2cRowsToHf). */
export function peftTensorName(layer: number, m: LoraModule, which: 'A' | 'B'): string {
  const block = m === 'q' || m === 'k' || m === 'v' || m === 'o' ? 'self_attn' : 'mlp';
  return `base_model.model.model.layers.${layer}.${block}.${LLAMA2C_TO_PEFT[m]}.lora_${which}.weight`;
}

/** The weights with every module's update merged in: W + scale · B · A (for the CPU oracle). */
export function mergeLora(c: ModelConfig, weights: ModelWeights, adapter: LoraAdapter): ModelWeights {
  const key: Record<LoraModule, 'wq' | 'wk' | 'wv' | 'wo' | 'w1' | 'w2' | 'w3'> = { q: 'wq', k: 'wk', v: 'wv', o: 'wo', w1: 'w1', w2: 'w2', w3: 'w3' };
  const layers = weights.layers.map((lw, l) => {
    const out = { ...lw };
    for (const m of LORA_MODULES) {
      const u = adapter.layers[l]?.[m];
      if (!u) continue;
      const [od, id] = loraModuleShape(c, m);
      const w = lw[key[m]].slice();
      for (let i = 0; i < od; i++) {
        for (let j = 0; j < id; j++) {
          let acc = 0;
          for (let k = 0; k < adapter.rank; k++) acc += u.b[i * adapter.rank + k] * u.a[k * id + j];
          w[i * id + j] = Math.fround(w[i * id + j] + Math.fround(adapter.scale * acc));
        }
      }
      out[key[m]] = w;
    }
    return out;
  });
  return { ...weights, layers };
}
