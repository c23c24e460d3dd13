import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { builtin } from './helpers.ts';

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
