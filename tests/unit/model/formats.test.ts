import { describe, expect, it } from 'vitest';
import { readGgufModel } from '../../../src/model/gguf.ts';
import { readLlama2cCheckpoint } from '../../../src/model/llama2c.ts';
import { readLlama2cTokenizer } from '../../../src/model/tokenizer.ts';
import { loadModel } from '../../../src/model/load.ts';
import { ModelFormatError } from '../../../src/model/types.ts';
import { formatError, readModelFile } from './helpers.ts';

const bin = readModelFile('stories260K.bin');
const tok = readModelFile('tok512.bin');
const gguf = readModelFile('stories260K.gguf');

function bitsEqual(a: Float32Array, b: Float32Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

describe('model readers', () => {
  it('reads the stories260K header', () => {
    const m = readLlama2cCheckpoint(bin, 'stories260K.bin');
    expect(m.config).toMatchObject({ dim: 64, hiddenDim: 172, numLayers: 5, numHeads: 8, numKvHeads: 4, vocabSize: 512, seqLen: 512, sharedClassifier: true });
    expect(m.weights.wcls).toBe(m.weights.tokenEmbedding);
  });

  it('the .gguf and the .bin pair give identical weights, tokens and scores', () => {
    const a = readLlama2cCheckpoint(bin, 'stories260K.bin');
    const vocabA = readLlama2cTokenizer(tok, a.config.vocabSize, 'tok512.bin');
    const b = readGgufModel(gguf, 'stories260K.gguf');
    const { seqLen: _a, ...ca } = a.config;
    const { seqLen: _b, ...cb } = b.config;
    expect(cb).toEqual(ca); // the .gguf declares a 2048 context where the .bin says 512
    expect(bitsEqual(a.weights.tokenEmbedding, b.weights.tokenEmbedding)).toBe(true);
    expect(bitsEqual(a.weights.rmsFinal, b.weights.rmsFinal)).toBe(true);
    expect(bitsEqual(a.weights.wcls, b.weights.wcls)).toBe(true);
    for (let l = 0; l < a.config.numLayers; l++) {
      for (const key of Object.keys(a.weights.layers[l]) as (keyof (typeof a.weights.layers)[number])[]) {
        expect(bitsEqual(a.weights.layers[l][key], b.weights.layers[l][key]), `layer ${l} ${key}`).toBe(true);
      }
    }
    const vocabB = b.vocab!;
    expect(vocabB.pieces.length).toBe(vocabA.pieces.length);
    vocabA.pieces.forEach((p, i) => expect(Buffer.from(vocabB.pieces[i]).equals(Buffer.from(p)), `token ${i}`).toBe(true));
    expect(bitsEqual(vocabA.scores, vocabB.scores)).toBe(true);
    expect([vocabB.bosId, vocabB.eosId]).toEqual([1, 2]);
  });

  it('a llama2.c checkpoint without a tokenizer is a clear error', () => {
    expect(() => loadModel(bin, 'stories260K.bin')).toThrow(/needs a tokenizer file/);
  });
});

/** Expects a ModelFormatError whose message matches. */
function rejects(fn: () => unknown, message: RegExp): void {
  expect(formatError(fn).message).toMatch(message);
}

function withHeader(values: Partial<Record<number, number>>): Uint8Array {
  const copy = bin.slice();
  const view = new DataView(copy.buffer);
  for (const [i, v] of Object.entries(values)) view.setInt32(Number(i) * 4, v!, true);
  return copy;
}

describe('corrupt llama2.c checkpoints fail clearly', () => {
  it('truncated header', () => rejects(() => readLlama2cCheckpoint(bin.subarray(0, 10), 'x.bin'), /truncated.*header/));
  it('truncated weights', () => rejects(() => readLlama2cCheckpoint(bin.subarray(0, 5000), 'x.bin'), /truncated or its header is wrong/));
  it('zero dim', () => rejects(() => readLlama2cCheckpoint(withHeader({ 0: 0 }), 'x.bin'), /dim is 0/));
  it('huge dim', () => rejects(() => readLlama2cCheckpoint(withHeader({ 0: 1 << 30 }), 'x.bin'), /dim is 1073741824/));
  it('negative layers', () => rejects(() => readLlama2cCheckpoint(withHeader({ 2: -3 }), 'x.bin'), /n_layers is -3/));
  it('heads that do not divide dim', () => rejects(() => readLlama2cCheckpoint(withHeader({ 3: 7 }), 'x.bin'), /not divisible by n_heads/));
  it('kv heads that do not divide heads', () => rejects(() => readLlama2cCheckpoint(withHeader({ 4: 3 }), 'x.bin'), /not a multiple of n_kv_heads/));
  it('vocabulary larger than the file', () => rejects(() => readLlama2cCheckpoint(withHeader({ 5: 100000 }), 'x.bin'), /vocab 100000, seq_len 512\) implies 26,525,468 bytes \(shared classifier\) but the file has 1,056,540 bytes/));
  it('a GGUF given as .bin', () => rejects(() => readLlama2cCheckpoint(gguf, 'x.bin'), /is a GGUF file/));
  it('the versioned export magic', () => rejects(() => readLlama2cCheckpoint(withHeader({ 0: 0x616b3432 }), 'x.bin'), /versioned export/));
});

describe('corrupt tokenizers fail clearly', () => {
  it('truncated', () => rejects(() => readLlama2cTokenizer(tok.subarray(0, 3000), 512), /too short|truncated/));
  it('wrong vocabulary size', () => rejects(() => readLlama2cTokenizer(tok, 300), /bytes after 300 tokens/));
  it('absurd max_token_length', () => {
    const t = tok.slice();
    new DataView(t.buffer).setInt32(0, -1, true);
    rejects(() => readLlama2cTokenizer(t, 512), /max_token_length is -1/);
  });
  it('a token longer than max_token_length', () => {
    const t = tok.slice();
    new DataView(t.buffer).setInt32(8, 9999, true); // length of token 0
    rejects(() => readLlama2cTokenizer(t, 512), /token 0 has length 9999/);
  });
});


describe('corrupt or unsupported GGUF files fail clearly', () => {
  it('wrong magic', () => {
    const c = gguf.slice();
    c[0] = 0x58;
    rejects(() => readGgufModel(c, 'x.gguf'), /wrong magic "XGUF"/);
  });
  it('unsupported version', () => {
    const c = gguf.slice();
    new DataView(c.buffer).setUint32(4, 9, true);
    rejects(() => readGgufModel(c, 'x.gguf'), /version 9 is not supported/);
  });
  it('truncated metadata', () => rejects(() => readGgufModel(gguf.subarray(0, 200), 'x.gguf'), /truncated/));
  it('truncated tensor data', () => rejects(() => readGgufModel(gguf.subarray(0, gguf.length - 1000), 'x.gguf'), /truncated: tensor blk\.\d\.\w+\.weight ends at byte \d+/));
  it('absurd tensor count', () => {
    const c = gguf.slice();
    new DataView(c.buffer).setUint32(8, 0xffffffff, true);
    rejects(() => readGgufModel(c, 'x.gguf'), /tensor count \d+ is absurd/);
  });
  it('an unsupported architecture is named', () => {
    const c = gguf.slice();
    const buf = Buffer.from(c);
    const keyAt = buf.indexOf(Buffer.from('general.architecture'));
    const valueAt = buf.indexOf(Buffer.from('llama'), keyAt + 'general.architecture'.length);
    c.set(Buffer.from('gpt2x'), valueAt);
    rejects(() => readGgufModel(c, 'x.gguf'), /architecture "gpt2x" is not supported/);
  });
  it('an unsupported tensor type is named', () => {
    const c = gguf.slice();
    const buf = Buffer.from(c);
    const nameAt = buf.indexOf(Buffer.from('blk.0.attn_q.weight'));
    // name, then u32 n_dims (2), 2 x u64 dims, then the u32 type.
    const typeAt = nameAt + 'blk.0.attn_q.weight'.length + 4 + 16;
    new DataView(c.buffer).setUint32(typeAt, 12, true);
    rejects(() => readGgufModel(c, 'x.gguf'), /blk\.0\.attn_q\.weight has type Q4_K/);
  });
});
