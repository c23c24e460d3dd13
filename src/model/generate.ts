/**
 * run.c's generate loop, as a pure function over a forward pass: feed the prompt token by token,
 * then sample; stop at BOS (id 1) or after `steps` positions (prompt included). The output is the
 * bytes run.c prints: each piece as it goes, then a final newline.
 */
import { concatBytes } from './bytes.ts';
import type { Tokenizer } from './tokenizer.ts';

export interface GenerateOptions {
  tokenizer: Tokenizer;
  prompt: string;
  /** Positions to run, prompt included; 0 or more than the context means the whole context. */
  steps: number;
  seqLen: number;
  forward: (token: number, pos: number) => Float32Array;
  sample: (logits: Float32Array) => number;
  /** Called with each printed piece (possibly empty, for skipped bytes). */
  onPiece?: (bytes: Uint8Array) => void;
}

export interface GenerateResult {
  /** Everything printed, final newline included. */
  bytes: Uint8Array;
  /** BOS, the prompt, then the generated tokens. */
  tokens: number[];
  numPromptTokens: number;
  /** Generated tokens (positions past the prompt that were sampled). */
  numGenerated: number;
  /** ms from the first generated token on (run.c's tok/s clock starts after the first piece). */
  elapsedAfterFirstMs: number;
}

/** run.c's rule: 0, negative or beyond the context means the whole context. */
export function effectiveSteps(steps: number, seqLen: number): number {
  const s = Math.max(0, Math.trunc(steps));
  return s === 0 || s > seqLen ? seqLen : s;
}

export function generate(o: GenerateOptions): GenerateResult {
  const promptTokens = o.tokenizer.encode(o.prompt, true, false);
  const steps = effectiveSteps(o.steps, o.seqLen);
  const chunks: Uint8Array[] = [];
  const tokens = [promptTokens[0]];
  let token = promptTokens[0];
  let pos = 0;
  let startMs = 0;
  let numGenerated = 0;
  while (pos < steps) {
    const logits = o.forward(token, pos);
    let next: number;
    if (pos < promptTokens.length - 1) {
      next = promptTokens[pos + 1];
    } else {
      next = o.sample(logits);
      numGenerated++;
    }
    pos++;
    if (next === 1) break;
    const piece = o.tokenizer.pieceBytes(token, next);
    chunks.push(piece);
    o.onPiece?.(piece);
    tokens.push(next);
    token = next;
    if (startMs === 0) startMs = performance.now();
  }
  chunks.push(Uint8Array.of(0x0a));
  o.onPiece?.(Uint8Array.of(0x0a));
  const bytes = concatBytes(chunks);
  return {
    bytes,
    tokens,
    numPromptTokens: promptTokens.length,
    numGenerated,
    elapsedAfterFirstMs: startMs === 0 ? 0 : performance.now() - startMs,
  };
}

/**
 * run.c's semantics as an engine request: `steps` positions in all, prompt included, so
 * steps - numPromptTokens + 1 tokens are sampled at most; only BOS (id 1) stops it.
 */
export interface RuncRequest {
  promptTokenIds: number[];
  maxTokens: number;
  stopTokenIds: number[];
}

export function runcRequest(tokenizer: Tokenizer, prompt: string, steps: number, seqLen: number): RuncRequest {
  const promptTokenIds = tokenizer.encode(prompt, true, false);
  const s = effectiveSteps(steps, seqLen);
  return { promptTokenIds, maxTokens: Math.max(0, s - promptTokenIds.length + 1), stopTokenIds: [1] };
}

/**
 * What run.c prints for a prompt and the tokens sampled after it: the prompt pieces up to the
 * step limit, the sampled pieces up to (not including) a BOS, then a newline.
 */
export function runcText(tokenizer: Tokenizer, promptTokenIds: number[], sampled: number[], steps: number, seqLen: number): Uint8Array {
  const s = effectiveSteps(steps, seqLen);
  const printed = promptTokenIds.slice(0, Math.min(promptTokenIds.length, s + 1));
  for (const t of sampled) {
    if (printed.length > s) break;
    if (t === 1) break;
    printed.push(t);
  }
  return concatBytes([tokenizer.decodeBytes(printed), Uint8Array.of(0x0a)]);
}
