/**
 * Token ids in, text out, for one request's sequences: each sampled token becomes its piece's
 * bytes (run.c's rules: no leading space after BOS, `<0xNN>` byte fallback), a streaming UTF-8
 * decoder reassembles characters that byte-fallback tokens split, and stop strings end a
 * sequence with its text cut just before the stop. Text that could be the start of a stop string
 * is held back until the next token settles it, so a stop string never shows, not even in part.
 * Pure: no engine, no DOM; tested in Node.
 *
 * Stop tokens (EOS/BOS) never reach it: the scheduler ends a sequence on them without emitting
 * the token.
 */

/** What the streamer needs from a tokenizer. */
export interface PieceSource {
  /** The bytes of `token` after `prevToken` (every byte kept: the UTF-8 decoder needs them all). */
  pieceBytes(prevToken: number, token: number, skipUnprintable: boolean): Uint8Array;
}

/** What one token added to its sequence's text. */
export interface TextDelta {
  /** Text to show (may be '' while a character is incomplete, or after a stop). */
  delta: string;
  /** True when this token completed a stop string (the sequence's text is final). */
  stopped: boolean;
}

class SeqText {
  private readonly decoder = new TextDecoder('utf-8', { fatal: false });
  text = '';
  /** Characters of `text` already handed out as deltas. */
  emitted = 0;
  stopped = false;
  constructor(public prevToken: number) {}
  decode(bytes: Uint8Array): string {
    return this.decoder.decode(bytes, { stream: true });
  }
}

export class TextStreamer {
  private readonly seqs: SeqText[];
  private readonly stop: string[];

  /**
   * @param lastPromptToken the prompt's last token id (the first piece follows it)
   * @param n the request's number of sequences
   * @param stop stop strings (empty strings are ignored)
   */
  constructor(
    private readonly tokenizer: PieceSource,
    lastPromptToken: number,
    n: number,
    stop: readonly string[] = [],
  ) {
    this.seqs = Array.from({ length: n }, () => new SeqText(lastPromptToken));
    this.stop = stop.filter((s) => s.length > 0);
  }

  /** Appends sequence `seqIndex`'s next token. */
  push(seqIndex: number, tokenId: number): TextDelta {
    const seq = this.seq(seqIndex);
    const bytes = this.tokenizer.pieceBytes(seq.prevToken, tokenId, false);
    seq.prevToken = tokenId;
    if (seq.stopped) return { delta: '', stopped: false };
    const before = seq.text.length;
    seq.text += seq.decode(bytes);
    // A stop string may straddle the previous text and this piece: search from just before it.
    let cut = -1;
    for (const s of this.stop) {
      const i = seq.text.indexOf(s, Math.max(0, before - s.length + 1));
      if (i >= 0 && (cut < 0 || i < cut)) cut = i;
    }
    if (cut >= 0) {
      seq.text = seq.text.slice(0, cut);
      seq.stopped = true;
      return { delta: this.release(seq, seq.text.length), stopped: true };
    }
    return { delta: this.release(seq, seq.text.length - this.heldBack(seq.text)), stopped: false };
  }

  /** The sequence ended (not by a stop string): whatever was held back, as a last delta. */
  flush(seqIndex: number): string {
    const seq = this.seq(seqIndex);
    return this.release(seq, seq.text.length);
  }

  /** Each sequence's text so far. */
  get texts(): string[] {
    return this.seqs.map((s) => s.text);
  }

  /** Whether a stop string ended sequence `seqIndex`. */
  stoppedByString(seqIndex: number): boolean {
    return this.seqs[seqIndex]?.stopped ?? false;
  }

  private seq(seqIndex: number): SeqText {
    const seq = this.seqs[seqIndex];
    if (!seq) throw new RangeError(`sequence ${seqIndex} does not exist (the request has ${this.seqs.length})`);
    return seq;
  }

  /** Hands out text up to `end` (never taking back what was handed out). */
  private release(seq: SeqText, end: number): string {
    if (end <= seq.emitted) return '';
    const delta = seq.text.slice(seq.emitted, end);
    seq.emitted = end;
    return delta;
  }

  /** Length of the longest end of `text` that begins some stop string (it may yet become one). */
  private heldBack(text: string): number {
    let hold = 0;
    for (const s of this.stop) {
      for (let k = Math.min(s.length - 1, text.length); k > hold; k--) {
        if (text.endsWith(s.slice(0, k))) {
          hold = k;
          break;
        }
      }
    }
    return hold;
  }

  /** True when a stop string ended every sequence (the request can be cancelled). */
  get allStopped(): boolean {
    return this.seqs.every((s) => s.stopped);
  }
}
