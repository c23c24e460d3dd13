/**
 * The llama2.c tokenizer: reading tok*.bin, and SentencePiece-BPE encoding/decoding exactly as
 * run.c does it (BOS, dummy-prefix space, byte fallback <0xNN>, merges by best score).
 */
import { ByteReader, concatBytes } from './bytes.ts';
import { ModelFormatError, type Vocabulary } from './types.ts';

const maxPieceBytes = 1 << 16;

/**
 * Reads a llama2.c tokenizer file for a vocabulary of `vocabSize` tokens. The format has no
 * checksum, so it is read strictly: every length within max_token_length and the file, the file
 * consumed exactly, max_token_length equal to the longest token (llama2.c's export writes exactly
 * that), every score finite.
 */
export function readLlama2cTokenizer(bytes: Uint8Array, vocabSize: number, name = 'tokenizer'): Vocabulary {
  const label = `llama2.c tokenizer ${name}`;
  if (!Number.isInteger(vocabSize) || vocabSize < 3) {
    throw new ModelFormatError(`${label}: vocabulary size ${vocabSize} is invalid (ids 0, 1, 2 are <unk>, <s>, </s>)`);
  }
  const r = new ByteReader(bytes, label);
  const maxTokenLength = r.i32('max_token_length');
  if (maxTokenLength <= 0 || maxTokenLength > maxPieceBytes) {
    throw new ModelFormatError(`${label}: max_token_length is ${maxTokenLength}, expected 1..${maxPieceBytes}`);
  }
  // Each token needs at least 8 bytes (score + length): reject an impossible vocabulary up front.
  if (vocabSize * 8 > r.remaining) {
    throw new ModelFormatError(
      `${label} is too short for a vocabulary of ${vocabSize} tokens (${bytes.byteLength} bytes); ` +
        `does the tokenizer belong to this model?`,
    );
  }
  const pieces: Uint8Array[] = [];
  const scores = new Float32Array(vocabSize);
  let longest = 0;
  for (let i = 0; i < vocabSize; i++) {
    const at = r.offset;
    if (r.remaining === 0) {
      throw new ModelFormatError(
        `${label} ends after ${i} tokens, but the model's vocabulary has ${vocabSize}; ` +
          `the tokenizer belongs to a model with a smaller vocabulary, or it is truncated`,
      );
    }
    scores[i] = r.f32(`score of token ${i}`);
    if (!Number.isFinite(scores[i])) {
      throw new ModelFormatError(`${label}: the score of token ${i} (at byte ${at}) is ${scores[i]}; the file is corrupt`);
    }
    const len = r.i32(`length of token ${i}`);
    if (len < 0 || len > maxTokenLength) {
      throw new ModelFormatError(`${label}: token ${i} has length ${len}, but max_token_length is ${maxTokenLength}`);
    }
    if (len > r.remaining) {
      throw new ModelFormatError(
        `${label} is truncated: token ${i} of ${vocabSize} has length ${len} at byte ${r.offset}, ` +
          `but only ${r.remaining} bytes remain; does the tokenizer belong to this model?`,
      );
    }
    pieces.push(r.raw(len, `bytes of token ${i}`).slice());
    longest = Math.max(longest, len);
  }
  if (r.remaining !== 0) {
    throw new ModelFormatError(
      `${label} has ${r.remaining} bytes after ${vocabSize} tokens; it belongs to a model with a larger vocabulary, ` +
        `or the file is corrupt`,
    );
  }
  if (longest !== maxTokenLength) {
    throw new ModelFormatError(
      `${label}: max_token_length is ${maxTokenLength}, but the longest of its ${vocabSize} tokens has ${longest} bytes; ` +
        `the header is corrupt`,
    );
  }
  return { pieces, scores, maxTokenLength, bosId: 1, eosId: 2 };
}

const textEncoder = new TextEncoder();

function bytesKey(b: Uint8Array): string {
  // Latin-1 mapping: one char per byte, a lossless key for a Map.
  let s = '';
  for (let i = 0; i < b.length; i++) s += String.fromCharCode(b[i]);
  return s;
}

/** Encoder/decoder over one vocabulary. */
export class Tokenizer {
  private readonly lookup = new Map<string, number>();
  /** Decoded byte pieces; `<0xNN>` pieces mapped to their byte. */
  private readonly decoded: Uint8Array[];

  constructor(readonly vocab: Vocabulary) {
    // run.c sorts the vocabulary and binary-searches it; with duplicates that returns some match.
    // First occurrence wins here, which is what a unique vocabulary needs.
    vocab.pieces.forEach((p, id) => {
      const k = bytesKey(p);
      if (!this.lookup.has(k)) this.lookup.set(k, id);
    });
    this.decoded = vocab.pieces.map((p) => {
      const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(bytesKey(p));
      return m ? Uint8Array.of(parseInt(m[1], 16)) : p;
    });
  }

  get vocabSize(): number {
    return this.vocab.pieces.length;
  }

  private id(bytes: Uint8Array): number {
    return this.lookup.get(bytesKey(bytes)) ?? -1;
  }

  /** Token ids of `text`, as run.c's encode(text, bos, eos). */
  encode(text: string, bos = true, eos = false): number[] {
    const tokens: number[] = [];
    if (bos) tokens.push(this.vocab.bosId);
    const bytes = textEncoder.encode(text);
    if (bytes.length > 0) {
      const space = this.id(Uint8Array.of(0x20));
      if (space >= 0) tokens.push(space);
    }
    // Split into UTF-8 code points (at most 4 bytes each, as run.c does) and look each up.
    let i = 0;
    while (i < bytes.length) {
      let end = i + 1;
      while (end < bytes.length && (bytes[end] & 0xc0) === 0x80 && end - i < 4) end++;
      const cp = bytes.subarray(i, end);
      const id = this.id(cp);
      if (id >= 0) tokens.push(id);
      else for (const b of cp) tokens.push(b + 3); // byte fallback: <0x00> is id 3
      i = end;
    }
    // Merge the best-scoring adjacent pair until none merges.
    for (;;) {
      let bestScore = -1e10;
      let bestId = -1;
      let bestIdx = -1;
      for (let k = 0; k < tokens.length - 1; k++) {
        const a = this.vocab.pieces[tokens[k]];
        const b = this.vocab.pieces[tokens[k + 1]];
        const merged = new Uint8Array(a.length + b.length);
        merged.set(a, 0);
        merged.set(b, a.length);
        const id = this.id(merged);
        if (id >= 0 && this.vocab.scores[id] > bestScore) {
          bestScore = this.vocab.scores[id];
          bestId = id;
          bestIdx = k;
        }
      }
      if (bestIdx < 0) break;
      tokens.splice(bestIdx, 2, bestId);
    }
    if (eos) tokens.push(this.vocab.eosId);
    return tokens;
  }

  /**
   * The bytes run.c prints for `token` following `prevToken`: a piece after BOS loses its leading
   * space, `<0xNN>` becomes its byte, and a lone byte that is neither printable nor whitespace is
   * skipped (safe_printf). With `skipUnprintable` false, every byte is kept (for display, where a
   * streaming UTF-8 decoder reassembles characters that byte-fallback tokens split).
   */
  pieceBytes(prevToken: number, token: number, skipUnprintable = true): Uint8Array {
    if (token < 0 || token >= this.decoded.length) return new Uint8Array(0);
    let piece = this.decoded[token];
    const raw = this.vocab.pieces[token];
    if (prevToken === this.vocab.bosId && raw.length > 0 && raw[0] === 0x20) piece = raw.subarray(1);
    if (skipUnprintable && piece.length === 1) {
      const c = piece[0];
      const printable = c >= 0x20 && c <= 0x7e;
      const space = c === 0x20 || (c >= 0x09 && c <= 0x0d);
      if (!printable && !space) return new Uint8Array(0);
    }
    return piece;
  }

  /** run.c's output for a whole token sequence (prompt included, BOS first), as bytes. */
  decodeBytes(tokens: number[]): Uint8Array {
    return concatBytes(tokens.slice(1).map((t, i) => this.pieceBytes(tokens[i], t)));
  }

  /** decodeBytes as a string (invalid UTF-8 becomes U+FFFD). */
  decode(tokens: number[]): string {
    return new TextDecoder().decode(this.decodeBytes(tokens));
  }
}
