/**
 * TextStreamer: token ids in, streamed text out. With the real built-in tokenizer (byte-fallback
 * pieces, the leading-space rule after BOS) and with a fake PieceSource where exact piece
 * boundaries matter. A stop string is never streamed, not even in part; whatever was held back
 * comes out at flush() when the sequence ends otherwise.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TextStreamer, type PieceSource } from '../../../src/serve/text-streamer.ts';
import { builtin } from '../model/helpers.ts';

const tokenizer = () => builtin().tokenizer;
const BOS = 1;
const utf8 = new TextEncoder();

/** A piece source whose token `i` is `pieces[i]` (a string, or raw bytes), whatever came before. */
function fakePieces(pieces: (string | Uint8Array)[]): PieceSource {
  return {
    pieceBytes: (_prev, token) => {
      const p = pieces[token];
      return typeof p === 'string' ? utf8.encode(p) : p;
    },
  };
}

/** Pushes every token of sequence `seq`; returns the deltas and the `stopped` flags. */
function pushAll(s: TextStreamer, tokens: number[], seq = 0): { deltas: string[]; stopped: boolean[] } {
  const deltas: string[] = [];
  const stopped: boolean[] = [];
  for (const t of tokens) {
    const d = s.push(seq, t);
    deltas.push(d.delta);
    stopped.push(d.stopped);
  }
  return { deltas, stopped };
}

/** Streams `pieces` (one token each) through a fake-source streamer with `stop`. */
function streamPieces(pieces: string[], stop: string[]) {
  const s = new TextStreamer(fakePieces(pieces), 0, 1, stop);
  const r = pushAll(s, pieces.map((_, i) => i));
  return { s, ...r };
}

/** The id of the byte-fallback token of byte `b` (checked against its `<0xNN>` piece). */
function byteToken(b: number): number {
  const id = b + 3;
  const piece = new TextDecoder().decode(tokenizer().vocab.pieces[id]);
  expect(piece).toBe(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
  return id;
}

describe('TextStreamer with the built-in tokenizer', () => {
  it('streamed deltas concatenate to the final text (no leading space after BOS)', () => {
    const tk = tokenizer();
    const tokens = tk.encode('Once upon a time, there was a little girl named Lily.', true);
    const s = new TextStreamer(tk, BOS, 1);
    const { deltas, stopped } = pushAll(s, tokens.slice(1));
    expect(stopped.every((x) => !x)).toBe(true);
    expect(deltas.filter((d) => d !== '').length).toBeGreaterThan(5);
    expect(deltas[0]).toBe('Once');
    expect(deltas.join('') + s.flush(0)).toBe('Once upon a time, there was a little girl named Lily.');
    expect(s.texts).toEqual(['Once upon a time, there was a little girl named Lily.']);
    expect(s.stoppedByString(0)).toBe(false);
    expect(s.allStopped).toBe(false);
  });

  it('a character split over byte-fallback tokens appears once, whole', () => {
    const tk = tokenizer();
    const [c3, a9] = [...utf8.encode('é')].map(byteToken);
    const emoji = [...utf8.encode('😀')].map(byteToken);
    expect(emoji).toHaveLength(4);
    // The tokenizer itself falls back to these bytes for the emoji.
    expect(tk.encode('😀', false).slice(1)).toEqual(emoji);
    const caf = tk.encode('caf', false); // ' caf' (dummy-prefix space)
    const s = new TextStreamer(tk, 378, 1);
    const { deltas } = pushAll(s, [...caf, c3, a9, ...emoji, ...tk.encode('ok', false)]);
    expect(deltas.slice(caf.length, caf.length + 6)).toEqual(['', 'é', '', '', '', '😀']);
    expect(deltas.join('')).toBe(' café😀 ok');
    expect(deltas.some((d) => d.includes('\uFFFD'))).toBe(false);
    expect(s.texts[0]).toBe(' café😀 ok');
  });

  it('a stop string straddling several tokens cuts the text before it and is never streamed', () => {
    const tk = tokenizer();
    // ' g' 'ir' 'l' ' named' ...: the stop 'irl na' starts in one token and ends two later.
    const tokens = tk.encode('there was a little girl named Lily. She', false);
    const s = new TextStreamer(tk, 378, 1, ['irl na']);
    const { deltas, stopped } = pushAll(s, tokens);
    const stopAt = stopped.indexOf(true);
    expect(stopAt).toBeGreaterThan(0);
    expect(stopped.filter((x) => x)).toHaveLength(1);
    expect(s.texts[0]).toBe(' there was a little g');
    expect(deltas.join('')).toBe(' there was a little g');
    expect(deltas.slice(stopAt + 1).every((d) => d === '')).toBe(true); // later tokens add nothing
    expect(s.flush(0)).toBe('');
    expect(s.stoppedByString(0)).toBe(true);
    expect(s.allStopped).toBe(true);
  });

  it('a stop string made of byte-fallback bytes stops only when its character is whole', () => {
    const tk = tokenizer();
    const [c3, a9] = [...utf8.encode('é')].map(byteToken);
    const s = new TextStreamer(tk, 378, 1, ['é']);
    const before = pushAll(s, tk.encode('caf', false));
    expect(s.push(0, c3)).toEqual({ delta: '', stopped: false });
    expect(s.push(0, a9)).toEqual({ delta: '', stopped: true });
    expect(before.deltas.join('')).toBe(' caf');
    expect(s.texts[0]).toBe(' caf');
  });

  it('the earliest of two stop strings wins, whatever their order in the list', () => {
    const tk = tokenizer();
    const tokens = tk.encode('there was a little girl named Lily.', false);
    for (const stop of [['named', 'little'], ['little', 'named']]) {
      const s = new TextStreamer(tk, 378, 1, stop);
      const { deltas } = pushAll(s, tokens);
      expect(s.texts[0]).toBe(' there was a ');
      expect(deltas.join('')).toBe(' there was a ');
    }
  });
});

describe('TextStreamer holding back partial stop strings (fake pieces)', () => {
  it('holds back text that may become a stop, and drops it when it does', () => {
    const { s, deltas, stopped } = streamPieces(['abc S', 'TO', 'P more', 'x'], ['STOP']);
    expect(deltas).toEqual(['abc ', '', '', '']);
    expect(stopped).toEqual([false, false, true, false]);
    expect(s.texts[0]).toBe('abc ');
    expect(s.flush(0)).toBe('');
  });

  it('releases held-back text as soon as it can no longer become a stop', () => {
    const { s, deltas, stopped } = streamPieces(['abc S', 'TA', 'xS'], ['STOP']);
    expect(deltas).toEqual(['abc ', 'STA', 'x']);
    expect(stopped).toEqual([false, false, false]);
    expect(s.flush(0)).toBe('S'); // the sequence ended otherwise: the held-back 'S' comes out
    expect(s.texts[0]).toBe('abc STAxS');
    expect(s.stoppedByString(0)).toBe(false);
  });

  it('flush() releases a held-back partial stop when the sequence ends without it', () => {
    const { s, deltas } = streamPieces(['hello ST', 'O'], ['STOP']);
    expect(deltas).toEqual(['hello ', '']);
    expect(s.flush(0)).toBe('STO');
    expect(s.flush(0)).toBe(''); // only once
    expect(s.texts[0]).toBe('hello STO');
  });

  it('a stop found inside one piece cuts there; the text before it in that piece is released', () => {
    const { s, deltas, stopped } = streamPieces(['one ', 'two STOP three'], ['STOP']);
    expect(deltas).toEqual(['one ', 'two ']);
    expect(stopped).toEqual([false, true]);
    expect(s.texts[0]).toBe('one two ');
  });

  it('of two stops completed by the same piece, the one starting first wins', () => {
    // 'ab' is held back (it begins 'abcd'); then 'cd' completes both 'abcd' and 'cd'.
    const { s, deltas } = streamPieces(['xxab', 'cdyy'], ['cd', 'abcd']);
    expect(deltas).toEqual(['xx', '']);
    expect(s.texts[0]).toBe('xx');
    const other = streamPieces(['xx', 'abcdef'], ['def', 'bc']);
    expect(other.s.texts[0]).toBe('xxa');
    expect(other.deltas.join('')).toBe('xxa');
  });

  it('holds back the longest end that begins any stop string', () => {
    const { s, deltas } = streamPieces(['say aaa', 'a', 'b'], ['aab', 'xyz']);
    // 'aa' begins 'aab': held back; then 'aaa' still ends in 'aa'; then 'aab' is a stop.
    expect(deltas).toEqual(['say a', 'a', '']);
    expect(s.texts[0]).toBe('say aa');
  });

  it('empty stop strings are ignored', () => {
    const { s, deltas, stopped } = streamPieces(['ab', 'c'], ['']);
    expect(deltas).toEqual(['ab', 'c']);
    expect(stopped).toEqual([false, false]);
    expect(s.texts[0]).toBe('abc');
  });

  it('a split character is held in the decoder, not streamed as a replacement character', () => {
    const e = utf8.encode('é');
    const s = new TextStreamer(fakePieces(['a', e.subarray(0, 1), e.subarray(1)]), 0, 1);
    expect([0, 1, 2].map((t) => s.push(0, t).delta)).toEqual(['a', '', 'é']);
    expect(s.texts[0]).toBe('aé');
  });
});

describe('TextStreamer with several sequences', () => {
  it('n=2 sequences are independent: own text, own stop, own leading-space rule', () => {
    const tk = tokenizer();
    const a = tk.encode('Once upon a time, there was a dog.', false);
    const b = tk.encode('Once there was a cat named Tom.', false);
    const s = new TextStreamer(tk, BOS, 2, ['cat', 'dog']);
    const deltas: string[][] = [[], []];
    const stops: boolean[][] = [[], []];
    // Interleave the two sequences' tokens.
    for (let i = 0; i < Math.max(a.length, b.length); i++) {
      for (const [seq, toks] of [[0, a], [1, b]] as const) {
        if (i >= toks.length) continue;
        const d = s.push(seq, toks[i]);
        deltas[seq].push(d.delta);
        stops[seq].push(d.stopped);
        if (d.stopped) expect(s.allStopped).toBe(seq === 0 ? stops[1].includes(true) : stops[0].includes(true));
      }
    }
    expect(s.texts).toEqual(['Once upon a time, there was a ', 'Once there was a ']);
    expect(deltas[0].join('')).toBe(s.texts[0]);
    expect(deltas[1].join('')).toBe(s.texts[1]);
    expect(stops[0].filter((x) => x)).toHaveLength(1);
    expect(stops[1].filter((x) => x)).toHaveLength(1);
    expect(s.allStopped).toBe(true);
  });

  it('allStopped needs every sequence stopped by a string; a stopped one takes no more text', () => {
    const s = new TextStreamer(fakePieces(['x', 'END', 'y']), 0, 2, ['END']);
    expect(s.push(0, 0)).toEqual({ delta: 'x', stopped: false });
    expect(s.push(0, 1)).toEqual({ delta: '', stopped: true });
    expect(s.stoppedByString(0)).toBe(true);
    expect(s.allStopped).toBe(false);
    expect(s.push(0, 2)).toEqual({ delta: '', stopped: false }); // after the stop: nothing
    expect(s.push(1, 2)).toEqual({ delta: 'y', stopped: false });
    expect(s.texts).toEqual(['x', 'y']);
    expect(s.allStopped).toBe(false);
    expect(s.push(1, 1)).toEqual({ delta: '', stopped: true });
    expect(s.allStopped).toBe(true);
    expect(s.stoppedByString(1)).toBe(true);
    expect(s.stoppedByString(2)).toBe(false);
  });

  it('a sequence that does not exist is a RangeError', () => {
    const s = new TextStreamer(fakePieces(['x']), 0, 2);
    expect(() => s.push(2, 0)).toThrow(RangeError);
    expect(() => s.flush(-1)).toThrow(/sequence -1 does not exist \(the request has 2\)/);
  });
});

/**
 * What the text must be, from the full decode: after each token, the first token whose text so
 * far contains a stop ends the sequence, cut at the earliest start of any stop in that text.
 */
function expectedText(tk: PieceSource, lastPromptToken: number, tokens: number[], stop: string[]): string {
  const decoder = new TextDecoder();
  let text = '';
  let prev = lastPromptToken;
  const stops = stop.filter((s) => s.length > 0);
  for (const t of tokens) {
    text += decoder.decode(tk.pieceBytes(prev, t, false), { stream: true });
    prev = t;
    const starts = stops.map((s) => text.indexOf(s)).filter((i) => i >= 0);
    if (starts.length > 0) return text.slice(0, Math.min(...starts));
  }
  return text;
}

describe('TextStreamer property', () => {
  it('deltas + flush equal the text, the text never contains a stop, and it is the full text cut at the first stop', () => {
    const tk = tokenizer();
    const token = fc.oneof(
      fc.integer({ min: 3, max: tk.vocabSize - 1 }), // any piece, byte fallbacks included
      fc.integer({ min: 0xc3, max: 0xf0 }).map((b) => b + 3), // more lead bytes
      fc.integer({ min: 0x80, max: 0xbf }).map((b) => b + 3), // more continuation bytes
    );
    const stopString = fc.string({ unit: fc.constantFrom('a', 'e', 't', 'h', ' ', '.', 'é', '\uFFFD'), minLength: 0, maxLength: 4 });
    const input = fc
      .record({
        seqs: fc.array(fc.array(token, { maxLength: 40 }), { minLength: 1, maxLength: 2 }),
        lastPromptToken: fc.constantFrom(BOS, 378, 410),
        randomStops: fc.array(stopString, { maxLength: 3 }),
        order: fc.array(fc.boolean(), { maxLength: 80 }),
        picks: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 6 })), { maxLength: 2 }),
      })
      .map((r) => {
        // Some stops taken from the text itself, so that they do occur.
        const full = expectedText(tk, r.lastPromptToken, r.seqs[0], []);
        const fromText = full.length === 0 ? [] : r.picks.map(([at, len]) => full.slice(at % full.length, (at % full.length) + len));
        return { ...r, stop: [...r.randomStops, ...fromText] };
      });
    fc.assert(
      fc.property(input, ({ seqs, lastPromptToken, stop, order }) => {
        const s = new TextStreamer(tk, lastPromptToken, seqs.length, stop);
        const streamed = seqs.map(() => '');
        const numStops = seqs.map(() => 0);
        const next = seqs.map(() => 0);
        // Interleave the sequences in a random order, then finish each.
        const push = (i: number) => {
          const d = s.push(i, seqs[i][next[i]++]);
          streamed[i] += d.delta;
          if (d.stopped) numStops[i]++;
        };
        for (const pickSecond of order) {
          const i = pickSecond && seqs.length > 1 ? 1 : 0;
          if (next[i] < seqs[i].length) push(i);
        }
        seqs.forEach((toks, i) => {
          while (next[i] < toks.length) push(i);
        });
        const texts = s.texts;
        seqs.forEach((toks, i) => {
          streamed[i] += s.flush(i);
          expect(streamed[i]).toBe(texts[i]);
          for (const st of stop) if (st !== '') expect(texts[i].includes(st)).toBe(false);
          expect(texts[i]).toBe(expectedText(tk, lastPromptToken, toks, stop));
          expect(numStops[i]).toBe(s.stoppedByString(i) ? 1 : 0);
        });
        expect(s.allStopped).toBe(seqs.every((_, i) => s.stoppedByString(i)));
      }),
      { numRuns: 400 },
    );
  });
});
