import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { loadModel } from '../../../src/model/load.ts';
import { Tokenizer } from '../../../src/model/tokenizer.ts';
import type { Vocabulary } from '../../../src/model/types.ts';
import { storyText } from '../../../src/serve/story-prompts.ts';
import { builtin, readModelFile } from './helpers.ts';
import { quadraticEncode } from './tokenizer-oracle.ts';

const { tokenizer } = builtin();
const piece = (id: number) => Buffer.from(tokenizer.vocab.pieces[id]).toString('latin1');

describe('llama2.c tokenizer', () => {
  it('has the special and byte tokens where llama2.c puts them', () => {
    expect(piece(0)).toBe('<unk>');
    expect(piece(1)).toBe('\n<s>\n');
    expect(piece(2)).toBe('\n</s>\n');
    expect(piece(3)).toBe('<0x00>');
    expect(piece(3 + 0x41)).toBe('<0x41>');
    expect(piece(258)).toBe('<0xFF>');
  });

  it('empty text is BOS alone, with no dummy prefix', () => {
    expect(tokenizer.encode('')).toEqual([1]);
    expect(tokenizer.encode('', false, true)).toEqual([2]);
  });

  it('known encodings: BOS, the dummy-prefix space merged into the first word', () => {
    const ids = tokenizer.encode('Once upon a time');
    expect(ids[0]).toBe(1);
    expect(ids.slice(1).map(piece)).toEqual([' Once', ' upon', ' a', ' time']);
    expect(tokenizer.encode('Once upon a time', true, true).at(-1)).toBe(2);
  });

  it('merges by best score: every adjacent pair left is not a token', () => {
    const ids = tokenizer.encode('The little dog jumped over the moon and laughed.');
    const lookup = new Set(tokenizer.vocab.pieces.map((p) => Buffer.from(p).toString('latin1')));
    for (let i = 1; i < ids.length - 1; i++) expect(lookup.has(piece(ids[i]) + piece(ids[i + 1]))).toBe(false);
  });

  it('falls back to byte tokens for characters outside the vocabulary', () => {
    // é is in this 512-token vocabulary as a whole character; 漢 (E6 BC A2) is not.
    expect(tokenizer.encode('é').map(piece)).toEqual(['\n<s>\n', ' ', 'Ã©']);
    const ids = tokenizer.encode('漢');
    expect(ids.map(piece)).toEqual(['\n<s>\n', ' ', '<0xE6>', '<0xBC>', '<0xA2>']);
    expect(ids.slice(2)).toEqual([0xe6 + 3, 0xbc + 3, 0xa2 + 3]);
  });

  it('decoding keeps raw bytes for display but skips unprintable lone bytes as run.c does', () => {
    const ids = tokenizer.encode('😀 ok');
    expect(tokenizer.decode(ids)).toBe(' ok'); // run.c's safe_printf drops the lone non-ASCII bytes
    const raw = ids.slice(1).map((t, i) => Buffer.from(tokenizer.pieceBytes(ids[i], t, false)));
    expect(Buffer.concat(raw).toString('utf8')).toBe('😀 ok');
  });

  it('a piece right after BOS loses its leading space', () => {
    const ids = tokenizer.encode('Hello');
    expect(Buffer.from(tokenizer.pieceBytes(1, ids[1])).toString()).not.toMatch(/^ /);
    expect(Buffer.from(tokenizer.pieceBytes(5, ids[1])).toString()).toMatch(/^ /);
  });

  it('round trips printable ASCII and whitespace text (property)', () => {
    const text = fc.string({ unit: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz ABCXYZ0123456789.,!?\'"-\n\t'), maxLength: 60 });
    fc.assert(
      fc.property(text, (t) => {
        expect(tokenizer.decode(tokenizer.encode(t))).toBe(t);
      }),
      { numRuns: 300, seed: 42 },
    );
  });

  it('round trips any Unicode text through raw bytes (property)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 20 }), (t) => {
        const ids = tokenizer.encode(t);
        const bytes = Buffer.concat(ids.slice(1).map((id, i) => Buffer.from(tokenizer.pieceBytes(ids[i], id, false))));
        expect(bytes.toString('utf8')).toBe(t);
      }),
      { numRuns: 300, seed: 7 },
    );
  });
});

/** Text of the kinds a prompt box receives, for comparing the encoder with run.c's algorithm. */
const storyWords = ['Once', 'upon', 'a', 'time', 'there', 'was', 'little', 'girl', 'named', 'Lily', 'She', 'loved', 'to', 'play',
  'the', 'park', 'dog', 'Max', 'happy', 'said', '"Hello!"', 'ball', 'tree', 'big', 'red', 'and', 'it', 'is', "don't", 'ran', 'away.'];
const rareCharacters = ['😀', '👩‍👩‍👧', '🏳️‍🌈', '漢', 'é', 'ß', 'Ω', '\u0000', '\u007f', '\u00a0', '\u200b', '\ufeff', '\ufffd', '\u{10ffff}', '\u{1d11e}', '\ud800', '\r\n'];
const whitespace = fc.string({ unit: fc.constantFrom(' ', '\n', '\t', '\r', '\u3000'), minLength: 1, maxLength: 8 });
const word = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...storyWords) },
  { weight: 1, arbitrary: fc.constantFrom(...rareCharacters) },
  { weight: 1, arbitrary: fc.integer({ min: 0x80, max: 0x10ffff }).map((c) => String.fromCodePoint(c)) },
);
const storyLike = fc.array(fc.tuple(word, fc.oneof({ weight: 4, arbitrary: fc.constant(' ') }, { weight: 1, arbitrary: whitespace })), { maxLength: 40 })
  .map((parts) => parts.map(([w, sp]) => w + sp).join(''));
const anyText = fc.oneof(
  fc.string({ maxLength: 120 }), // ASCII
  storyLike,
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }), // any code point, lone surrogates included
  fc.string({ unit: fc.constantFrom(...rareCharacters, ' ', 'a'), maxLength: 40 }),
  whitespace.map((w) => w.repeat(5)),
);

function sameAsRunc(t: Tokenizer, numRuns: number, seed: number): void {
  fc.assert(
    fc.property(anyText, fc.boolean(), fc.boolean(), (text, bos, eos) => {
      expect(t.encode(text, bos, eos)).toEqual(quadraticEncode(t, text, bos, eos));
    }),
    { numRuns, seed },
  );
}

describe("the encoder makes run.c's merges without run.c's quadratic scan", () => {
  it('the same ids as run.c\'s algorithm on the built-in tok512 (property)', () => {
    sameAsRunc(tokenizer, 600, 11);
  });

  it("the same ids as run.c's algorithm on the GGUF's own vocabulary (property)", () => {
    const gguf = loadModel(readModelFile('stories260K.gguf'), 'stories260K.gguf').tokenizer;
    sameAsRunc(gguf, 300, 12);
  });

  it('the same ids on longer story text, and the empty string', () => {
    const text = storyText(2500);
    expect(tokenizer.encode(text)).toEqual(quadraticEncode(tokenizer, text));
    expect(tokenizer.encode(text, false, true)).toEqual(quadraticEncode(tokenizer, text, false, true));
    for (const [bos, eos] of [[true, true], [false, false], [false, true]]) expect(tokenizer.encode('', bos, eos)).toEqual(quadraticEncode(tokenizer, '', bos, eos));
  });

  /**
   * A made-up vocabulary where scores tie often (run.c then takes the leftmost best pair), some
   * scores are at or below run.c's starting best of -1e10 or NaN (never merged), and pieces
   * repeat (the first one is the token).
   */
  const vocabWithTies = fc.record({
    extra: fc.array(fc.tuple(fc.string({ unit: fc.constantFrom('a', 'b', 'c', ' '), minLength: 2, maxLength: 5 }), fc.constantFrom(0, -1, -1, -2, -3, -1e10, -1e11, -Infinity, Number.NaN, 5)), { minLength: 1, maxLength: 40 }),
    singleScore: fc.constantFrom(0, -1, -1e10),
  });
  function madeUpVocabulary(v: { extra: [string, number][]; singleScore: number }): Vocabulary {
    const pieces: string[] = ['<unk>', '<s>', '</s>'];
    const scores: number[] = [0, 0, 0];
    for (let b = 0; b < 256; b++) {
      pieces.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
      scores.push(0);
    }
    for (const c of ['a', 'b', 'c', ' ']) {
      pieces.push(c);
      scores.push(v.singleScore);
    }
    for (const [p, score] of v.extra) {
      pieces.push(p);
      scores.push(score);
    }
    return { pieces: pieces.map((p) => new Uint8Array(Buffer.from(p, 'latin1'))), scores: Float32Array.from(scores), maxTokenLength: 8, bosId: 1, eosId: 2 };
  }

  it('ties go to the leftmost pair, as run.c\'s scan: made-up vocabularies full of ties (property)', () => {
    const text = fc.string({ unit: fc.constantFrom('a', 'a', 'b', 'c', ' ', 'é'), maxLength: 60 });
    fc.assert(
      fc.property(vocabWithTies, text, fc.boolean(), (v, t, bos) => {
        const tok = new Tokenizer(madeUpVocabulary(v));
        expect(tok.encode(t, bos)).toEqual(quadraticEncode(tok, t, bos));
      }),
      { numRuns: 800, seed: 13 },
    );
  });

  it('equal scores: the leftmost pair merges first, and BOS takes part in merges as in run.c', () => {
    // "aa" everywhere ties: "aaa" is (aa)a, not a(aa); "ab" and "ba" tie, so "aba" is (ab)a.
    const v = madeUpVocabulary({ extra: [['aa', -1], ['ab', -2], ['ba', -2], ['<s> ', -5]], singleScore: 0 });
    const tok = new Tokenizer(v);
    const piece = (id: number) => Buffer.from(v.pieces[id]).toString('latin1');
    expect(tok.encode('aaa', false).map(piece)).toEqual([' ', 'aa', 'a']);
    expect(tok.encode('aba', false).map(piece)).toEqual([' ', 'ab', 'a']);
    // BOS and the dummy-prefix space merge into "<s> " (run.c merges over the whole list).
    expect(tok.encode('c').map(piece)).toEqual(['<s> ', 'c']);
    expect(tok.encode('c')).toEqual(quadraticEncode(tok, 'c'));
  });

  it('a vocabulary without byte tokens is a clear error, not a crash', () => {
    const tiny = new Tokenizer({ pieces: ['<unk>', '<s>', '</s>', ' ', 'a'].map((p) => new Uint8Array(Buffer.from(p))), scores: new Float32Array(5), maxTokenLength: 3, bosId: 1, eosId: 2 });
    expect(tiny.encode('a a')).toEqual(quadraticEncode(tiny, 'a a'));
    expect(() => tiny.encode('b')).toThrow(/cannot encode byte 0x62: its 5-token vocabulary has no byte token for it/);
  });

  it('100 KB of story text encodes with work proportional to n log n (run.c\'s scan took minutes)', () => {
    const work = (chars: number) => {
      const ids = tokenizer.encode(storyText(chars).slice(0, chars));
      expect(ids.length).toBeGreaterThan(chars / 6);
      return { ...tokenizer.lastEncodeWork };
    };
    const w100 = work(100_000);
    const w200 = work(200_000);
    expect(w100.pieces).toBe(100_002); // BOS, the dummy-prefix space, one per ASCII character
    // Each pair queued costs at most one sift up and one sift down: 3 log2(queue) comparisons.
    expect(w100.queued).toBeLessThan(3 * w100.pieces);
    expect(w100.comparisons).toBeLessThan(3 * w100.queued * Math.log2(w100.queued));
    // Twice the text is about twice the work (run.c's scan is four times).
    expect(w200.comparisons / w100.comparisons).toBeLessThan(2.3);
    expect(w200.merges / w100.merges).toBeCloseTo(2, 1);
  });
});
