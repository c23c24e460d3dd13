/**
 * Where models come from, and the memory check before one is loaded: presets (the built-in
 * stories260K, the larger tinyllamas on Hugging Face), URLs a user types (validated, size-capped)
 * and local files. The estimate runs on the model's header, before any weight reaches the GPU.
 */
import { checkLimits, estimateGpuMemory, type MemoryEstimate } from '../../model/estimate.ts';
import { peekModelConfig, LLAMA2C_HEADER_BYTES } from '../../model/peek.ts';
import { tinyllamaShapes } from '../../model/synthetic.ts';
import { checkModelUrl } from '../../model/url.ts';
import type { ModelConfig } from '../../model/types.ts';
import type { AdapterSummary } from '../../gpu/adapter.ts';
import type { EngineSettings } from '../../../workers/protocol.ts';

/** Downloads and local files larger than this are refused (the f32 stories110M is 0.44 GB). */
export const MAX_MODEL_BYTES = 1536 * 1024 ** 2;
export const MAX_TOKENIZER_BYTES = 8 * 1024 ** 2;

export interface ModelPreset {
  id: string;
  name: string;
  modelUrl: string;
  tokenizerUrl?: string;
  /** The shape, known without downloading anything. */
  config: ModelConfig | null;
  sizeBytes: number | null;
  note: string;
}

const llama2Tokenizer = 'https://raw.githubusercontent.com/karpathy/llama2.c/master/tokenizer.bin';
const tinyllamas = (file: string) => `https://huggingface.co/karpathy/tinyllamas/resolve/main/${file}`;

export function modelPresets(baseUrl: string): ModelPreset[] {
  return [
    {
      id: 'builtin',
      name: 'stories260K',
      modelUrl: `${baseUrl}models/stories260K.bin`,
      tokenizerUrl: `${baseUrl}models/tok512.bin`,
      config: { dim: 64, hiddenDim: 172, numLayers: 5, numHeads: 8, numKvHeads: 4, vocabSize: 512, seqLen: 512, normEps: Math.fround(1e-5), ropeTheta: 10000, sharedClassifier: true },
      sizeBytes: 1056540 + 6227,
      note: 'built in, always available offline',
    },
    ...(['stories15M', 'stories42M', 'stories110M'] as const).map((name) => ({
      id: name,
      name,
      modelUrl: tinyllamas(`${name}.bin`),
      tokenizerUrl: llama2Tokenizer,
      config: tinyllamaShapes[name],
      sizeBytes: null,
      note: 'karpathy/tinyllamas on Hugging Face, with the Llama-2 tokenizer (32000 tokens)',
    })),
  ];
}

export interface Fit {
  estimate: MemoryEstimate;
  /** Empty when the model fits this adapter. */
  problems: string[];
}

/** GPU memory for this model with the engine's KV pool, checked against the adapter's limits. */
export function fitModel(config: ModelConfig, settings: EngineSettings, adapter: AdapterSummary | null): Fit {
  const estimate = estimateGpuMemory(config, {
    numBlocks: settings.numGpuBlocks ?? 128,
    blockSize: settings.blockSize ?? 16,
    maxBatchTokens: settings.maxNumBatchedTokens ?? 256,
  }, settings.weights ?? 'f32');
  return { estimate, problems: adapter ? checkLimits(estimate, adapter.limits) : [] };
}

export type UrlPair = { ok: true; modelUrl: string; tokenizerUrl: string | null } | { ok: false; reason: string };

/** Both URLs checked (http(s) only, no credentials, Hugging Face blob pages turned into downloads). */
export function checkUrls(modelUrl: string, tokenizerUrl: string, base: string): UrlPair {
  const m = checkModelUrl(modelUrl, base);
  if (!m.ok) return { ok: false, reason: `model URL: ${m.reason}` };
  if (tokenizerUrl.trim() === '') return { ok: true, modelUrl: m.url, tokenizerUrl: null };
  const t = checkModelUrl(tokenizerUrl, base);
  if (!t.ok) return { ok: false, reason: `tokenizer URL: ${t.reason}` };
  return { ok: true, modelUrl: m.url, tokenizerUrl: t.url };
}

/** A name for a model from its URL or file name ("stories15M" from ".../stories15M.bin"). */
export function nameFromPath(path: string): string {
  const last = path.split(/[/\\]/).filter(Boolean).pop() ?? 'model';
  const clean = decodeURIComponent(last.split(/[?#]/)[0]).replace(/\.(bin|gguf)$/i, '');
  return clean.slice(0, 80) || 'model';
}

/**
 * Reads the first bytes of a URL (an HTTP Range request; servers that ignore Range send the
 * whole file, which is cut off after the header) to learn the model's shape before downloading.
 * Returns null when the header says nothing useful (e.g. a GGUF with a large vocabulary).
 */
export async function peekRemoteConfig(url: string, signal?: AbortSignal): Promise<ModelConfig | null> {
  const wanted = 64 * 1024;
  let res: Response;
  try {
    res = await fetch(url, { headers: { Range: `bytes=0-${wanted - 1}` }, signal });
  } catch {
    return null;
  }
  if (!res.ok || !res.body) return null;
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let n = 0;
  while (n < wanted) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    n += value.byteLength;
  }
  await reader.cancel().catch(() => {});
  const head = new Uint8Array(n);
  let o = 0;
  for (const c of chunks) {
    head.set(c.subarray(0, Math.min(c.byteLength, n - o)), o);
    o += c.byteLength;
  }
  if (head.byteLength < LLAMA2C_HEADER_BYTES) return null;
  const p = peekModelConfig(head, nameFromPath(url));
  return p.ok ? p.config : null;
}

/** Which of the chosen files is the model and which the tokenizer (GGUF carries its own). */
export function pickFiles(files: readonly File[]): { model: File; tokenizer: File | null } | { error: string } {
  if (files.length === 0) return { error: 'no file chosen' };
  if (files.length > 2) return { error: 'choose one model file, and for a llama2.c checkpoint its tokenizer (two files at most)' };
  if (files.length === 1) return { model: files[0], tokenizer: null };
  const [a, b] = files;
  const looksTok = (f: File) => /tok/i.test(f.name);
  if (looksTok(a) && !looksTok(b)) return { model: b, tokenizer: a };
  if (looksTok(b) && !looksTok(a)) return { model: a, tokenizer: b };
  // Otherwise the larger file holds the weights.
  return a.size >= b.size ? { model: a, tokenizer: b } : { model: b, tokenizer: a };
}
