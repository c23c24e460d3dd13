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

/** What the last encode did: a measure of its cost that does not depend on the machine. */
export interface EncodeWork {
  /** Pieces before merging (BOS and the dummy-prefix space included). */
  pieces: number;
  /** Candidate pairs put in the queue. */
  queued: number;
  merges: number;
  /** Comparisons between queued pairs. */
  comparisons: number;
}

/** Encoder/decoder over one vocabulary. */
export class Tokenizer {
  private readonly lookup = new Map<string, number>();
  /** Decoded byte pieces; `<0xNN>` pieces mapped to their byte. */
  private readonly decoded: Uint8Array[];
  private work: EncodeWork = { pieces: 0, queued: 0, merges: 0, comparisons: 0 };

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

  /** The work the last encode did (for tests and benchmarks). */
  get lastEncodeWork(): Readonly<EncodeWork> {
    return this.work;
  }

  get vocabSize(): number {
    return this.vocab.pieces.length;
  }

  private id(bytes: Uint8Array): number {
    return this.lookup.get(bytesKey(bytes)) ?? -1;
  }

  /**
   * Token ids of `text`, exactly as run.c's encode(text, bos, eos): BOS, the dummy-prefix space,
   * one token per UTF-8 code point (or its bytes as <0xNN> tokens), then the best-scoring adjacent
   * pair merged, again and again, until no pair is a token. run.c finds each merge by scanning every
   * pair, which is quadratic (16k characters took 14 s, 100 KB minutes); here the same merges come
   * out of a priority queue of candidate pairs over a linked list of pieces, O(n log n) (100 KB in
   * well under a second). The queue orders by score, then by
   * position, so a tie goes to the leftmost pair as run.c's strict `>` scan does; a pair whose piece
   * changed since it was queued is dropped when it comes out (SentencePiece's BPE does the same).
   */
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
      else {
        for (const b of cp) {
          // byte fallback: <0x00> is id 3
          if (b + 3 >= this.vocabSize) {
            throw new ModelFormatError(
              `the tokenizer cannot encode byte 0x${b.toString(16).padStart(2, '0')}: its ${this.vocabSize}-token vocabulary has no byte token for it`,
            );
          }
          tokens.push(b + 3);
        }
      }
      i = end;
    }
    const merged = this.mergePairs(tokens);
    if (eos) merged.push(this.vocab.eosId);
    return merged;
  }

  /** run.c's merge loop over `tokens` (BOS included, as in run.c), by priority queue. */
  private mergePairs(tokens: number[]): number[] {
    const n = tokens.length;
    const work: EncodeWork = { pieces: n, queued: 0, merges: 0, comparisons: 0 };
    this.work = work;
    if (n < 2) return tokens;
    const { pieces, scores } = this.vocab;
    // The list: token, neighbours (-1 at the ends) and a stamp that changes whenever the node's
    // token changes or the node is merged away, which is what makes a queued pair stale.
    const tok = Int32Array.from(tokens);
    const prev = new Int32Array(n);
    const next = new Int32Array(n);
    const stamp = new Uint32Array(n);
    for (let k = 0; k < n; k++) {
      prev[k] = k - 1;
      next[k] = k + 1 < n ? k + 1 : -1;
    }
    // The merged token of a pair, memoized for this call (-1: the pair is not a token).
    const vocabSize = pieces.length;
    const pairCache = new Map<number, number>();
    const mergeOf = (a: number, b: number): number => {
      const key = a * vocabSize + b;
      let id = pairCache.get(key);
      if (id === undefined) {
        const pa = pieces[a];
        const pb = pieces[b];
        const joined = new Uint8Array(pa.length + pb.length);
        joined.set(pa, 0);
        joined.set(pb, pa.length);
        id = this.id(joined);
        // run.c keeps a pair only when its score beats the starting best of -1e10 (never NaN).
        if (id >= 0 && !(scores[id] > -1e10)) id = -1;
        pairCache.set(key, id);
      }
      return id;
    };
    // Candidates: at most n - 1 initial pairs and two new pairs per merge (fewer than n merges).
    const cap = 3 * n;
    const cScore = new Float64Array(cap);
    const cLeft = new Int32Array(cap);
    const cRight = new Int32Array(cap);
    const cMerged = new Int32Array(cap);
    const cStampLeft = new Uint32Array(cap);
    const cStampRight = new Uint32Array(cap);
    let numCandidates = 0;
    // A binary max-heap of candidate indices: higher score first, then the leftmost pair.
    const heap = new Int32Array(cap);
    let size = 0;
    const before = (x: number, y: number): boolean => {
      work.comparisons++;
      return cScore[x] > cScore[y] || (cScore[x] === cScore[y] && cLeft[x] < cLeft[y]);
    };
    const push = (left: number, right: number): void => {
      const id = mergeOf(tok[left], tok[right]);
      if (id < 0) return;
      const c = numCandidates++;
      cScore[c] = scores[id];
      cLeft[c] = left;
      cRight[c] = right;
      cMerged[c] = id;
      cStampLeft[c] = stamp[left];
      cStampRight[c] = stamp[right];
      let at = size++;
      while (at > 0) {
        const parent = (at - 1) >> 1;
        if (!before(c, heap[parent])) break;
        heap[at] = heap[parent];
        at = parent;
      }
      heap[at] = c;
    };
    const pop = (): number => {
      const top = heap[0];
      const last = heap[--size];
      let at = 0;
      for (;;) {
        let child = 2 * at + 1;
        if (child >= size) break;
        if (child + 1 < size && before(heap[child + 1], heap[child])) child++;
        if (!before(heap[child], last)) break;
        heap[at] = heap[child];
        at = child;
      }
      if (size > 0) heap[at] = last;
      return top;
    };

    for (let k = 0; k + 1 < n; k++) push(k, k + 1);
    while (size > 0) {
      const c = pop();
      const left = cLeft[c];
      const right = cRight[c];
      if (stamp[left] !== cStampLeft[c] || stamp[right] !== cStampRight[c]) continue; // stale
      tok[left] = cMerged[c];
      stamp[left]++;
      stamp[right]++;
      const after = next[right];
      next[left] = after;
      if (after >= 0) prev[after] = left;
      next[right] = -1;
      prev[right] = -1;
      work.merges++;
      if (prev[left] >= 0) push(prev[left], left);
      if (after >= 0) push(left, after);
    }
    work.queued = numCandidates;
    const out: number[] = [];
    for (let k = 0; k >= 0; k = next[k]) out.push(tok[k]);
    return out;
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
