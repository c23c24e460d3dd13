/**
 * Regressions of issue 11 ("every bad input a clear error, nothing lost"): each file here loaded
 * without an error, or failed with an unclear one, before the readers were made strict.
 */
import { describe, expect, it } from 'vitest';
import { readGgufModel } from '../../../src/model/gguf.ts';
import { readLlama2cCheckpoint } from '../../../src/model/llama2c.ts';
import { loadModel } from '../../../src/model/load.ts';
import { readLlama2cTokenizer } from '../../../src/model/tokenizer.ts';
import { ModelFormatError } from '../../../src/model/types.ts';
import { ggufLayout } from './file-layout.ts';
import { formatError, readModelFile } from './helpers.ts';

const bin = readModelFile('stories260K.bin');
const tok = readModelFile('tok512.bin');
const gguf = readModelFile('stories260K.gguf');
const layout = ggufLayout(gguf);


function rejects(fn: () => unknown, message: RegExp): void {
  expect(formatError(fn).message).toMatch(message);
}

function binWithHeader(values: Partial<Record<number, number>>, bytes = bin): Uint8Array {
  const copy = bytes.slice();
  const view = new DataView(copy.buffer);
  for (const [i, v] of Object.entries(values)) view.setInt32(Number(i) * 4, v!, true);
  return copy;
}

function ggufEdit(edit: (view: DataView, bytes: Uint8Array) => void): Uint8Array {
  const copy = gguf.slice();
  edit(new DataView(copy.buffer), copy);
  return copy;
}

const tensor = (name: string) => layout.tensors.find((t) => t.name === name)!;

describe('llama2.c checkpoints: the file size must be what the header implies', () => {
  it('n_layers 5 -> 4 is refused with both sizes and the header', () => {
    const e = formatError(() => readLlama2cCheckpoint(binWithHeader({ 2: 4 }), 'stories260K.bin'));
    expect(e.message).toBe(
      'llama2.c checkpoint stories260K.bin: the header (dim 64, hidden_dim 172, 4 layers, 8 heads, 4 KV heads, ' +
        'vocab 512, seq_len 512) implies 874,780 bytes (shared classifier) but the file has 1,056,540 bytes; ' +
        'its header is wrong (or the file is not a llama2.c checkpoint)',
    );
  });

  it('every header field one up or one down is refused', () => {
    const original = [64, 172, 5, 8, 4, 512, 512];
    for (let field = 0; field < 7; field++) {
      for (const delta of [-1, 1]) {
        const bytes = binWithHeader({ [field]: original[field] + delta });
        rejects(() => readLlama2cCheckpoint(bytes, 'x.bin'), /x\.bin: /);
      }
    }
  });

  it('a negative vocab_size expects a separate classifier after the RoPE tables', () => {
    rejects(() => readLlama2cCheckpoint(binWithHeader({ 5: -512 }), 'x.bin'), /implies 1,187,612 bytes \(separate classifier \(negative vocab_size\)\) but the file has 1,056,540 bytes; the file is truncated/);
    // The same file with a separate classifier appended (a copy of the embedding, negated) loads it.
    const embedding = new Float32Array(bin.buffer.slice(28, 28 + 512 * 64 * 4));
    const classifier = embedding.map((x) => -x);
    const untied = new Uint8Array(bin.length + classifier.byteLength);
    untied.set(bin);
    untied.set(new Uint8Array(classifier.buffer), bin.length);
    const m = readLlama2cCheckpoint(binWithHeader({ 5: -512 }, untied), 'untied.bin');
    expect(m.config.sharedClassifier).toBe(false);
    expect(m.weights.wcls).not.toBe(m.weights.tokenEmbedding);
    expect(Array.from(m.weights.wcls.subarray(0, 8))).toEqual(Array.from(classifier.subarray(0, 8)));
  });

  it('one byte too many or too few is refused', () => {
    const longer = new Uint8Array(bin.length + 1);
    longer.set(bin);
    rejects(() => readLlama2cCheckpoint(longer, 'x.bin'), /implies 1,056,540 bytes .* but the file has 1,056,541 bytes/);
    rejects(() => readLlama2cCheckpoint(bin.subarray(0, bin.length - 1), 'x.bin'), /the file has 1,056,539 bytes; the file is truncated/);
  });

  it('absurd header values are refused before anything is allocated', () => {
    rejects(() => readLlama2cCheckpoint(binWithHeader({ 0: 65536, 1: 524288, 2: 1024, 5: 2097152 }), 'x.bin'), /implies [\d,]+ bytes/);
    rejects(() => readLlama2cCheckpoint(binWithHeader({ 3: 64 }), 'x.bin'), /head size 1 is odd/);
    rejects(() => readLlama2cCheckpoint(binWithHeader({ 4: 0 }), 'x.bin'), /n_kv_heads is 0/);
    rejects(() => readLlama2cCheckpoint(binWithHeader({ 6: -1 }), 'x.bin'), /seq_len is -1/);
  });

  it('a weight that is NaN is refused, naming the tensor and layer', () => {
    const c = bin.slice();
    // wq of layer 2: after the embedding and rms_att_weight of all 5 layers.
    const at = 28 + (512 * 64 + 5 * 64 + 2 * 64 * 64 + 7) * 4;
    new DataView(c.buffer).setUint32(at, 0x7fc00000, true);
    rejects(() => readLlama2cCheckpoint(c, 'x.bin'), new RegExp(`x\\.bin: wq of layer 2 \\(byte ${at}\\) is NaN`));
  });
});

describe('GGUF: tensor data where the spec puts it', () => {
  it('a tensor offset that is not a multiple of general.alignment is refused', () => {
    const t = tensor('blk.0.attn_q.weight');
    const c = ggufEdit((v) => v.setBigUint64(t.offsetAt, BigInt(t.offset + 4), true));
    rejects(() => readGgufModel(c, 'x.gguf'), new RegExp(`x\\.gguf: tensor blk\\.0\\.attn_q\\.weight has data offset ${t.offset + 4}, which is not a multiple of general\\.alignment 32`));
  });

  it('an aligned offset that skips or overlaps another tensor is refused', () => {
    const t = tensor('blk.0.attn_q.weight');
    for (const offset of [t.offset + 32, t.offset - 256]) {
      const c = ggufEdit((v) => v.setBigUint64(t.offsetAt, BigInt(offset), true));
      rejects(() => readGgufModel(c, 'x.gguf'), new RegExp(`tensor blk\\.0\\.attn_q\\.weight has data offset ${offset}, but the tensors before it end at ${t.offset}`));
    }
  });

  it('tensor data past the end of the file is refused', () => {
    const last = layout.tensors.at(-1)!;
    const c = ggufEdit((v) => v.setBigUint64(last.offsetAt, BigInt(last.offset + 1024), true));
    rejects(() => readGgufModel(c, 'x.gguf'), new RegExp(`${last.name.replaceAll('.', '\\.')} has data offset`));
  });

  it('a tensor whose type changes from F32 to F16 is refused (its data would be misread)', () => {
    const t = tensor('blk.1.attn_k.weight');
    const c = ggufEdit((v) => v.setUint32(t.typeAt, 1, true));
    rejects(() => readGgufModel(c, 'x.gguf'), /has data offset \d+, but the tensors before it end at/);
  });

  it('bytes after the tensor data are refused', () => {
    const longer = new Uint8Array(gguf.length + 64);
    longer.set(gguf);
    rejects(() => readGgufModel(longer, 'x.gguf'), /x\.gguf: 64 bytes follow the end of the tensor data/);
  });

  it('llama.block_count 5 -> 4 is refused: the fifth block would be dropped', () => {
    const c = ggufEdit((v) => v.setUint32(layout.valueAt.get('llama.block_count')!, 4, true));
    rejects(() => readGgufModel(c, 'x.gguf'), /tensor blk\.4\.\w+\.weight is not part of a 4-layer llama model/);
  });

  it('an absurd dimension is refused', () => {
    const t = tensor('token_embd.weight');
    const c = ggufEdit((v) => v.setBigUint64(t.infoAt + 8 + t.name.length + 4, 1n << 50n, true));
    rejects(() => readGgufModel(c, 'x.gguf'), /x\.gguf: tensor token_embd\.weight \(info at byte \d+\) has dimension 0 of \d+: an empty or absurd shape/);
  });
});

describe('GGUF: special tokens inside the vocabulary', () => {
  const withU32 = (key: string, value: number) => ggufEdit((v) => v.setUint32(layout.valueAt.get(key)!, value, true));

  it('a BOS id outside the vocabulary is refused, naming the key', () => {
    rejects(() => readGgufModel(withU32('tokenizer.ggml.bos_token_id', 512), 'x.gguf'), /x\.gguf: tokenizer\.ggml\.bos_token_id is 512, outside the vocabulary of 512 tokens/);
  });

  it('an EOS id outside the vocabulary is refused, naming the key', () => {
    rejects(() => readGgufModel(withU32('tokenizer.ggml.eos_token_id', 70000), 'x.gguf'), /tokenizer\.ggml\.eos_token_id is 70000, outside the vocabulary/);
  });

  it('BOS and EOS may not be "none"', () => {
    rejects(() => readGgufModel(withU32('tokenizer.ggml.bos_token_id', 0xffffffff), 'x.gguf'), /bos_token_id is 4294967295, outside the vocabulary .*needs a BOS and an EOS/);
  });

  it('other special tokens must be in the vocabulary or "none" (as the file has them)', () => {
    expect(readGgufModel(gguf, 'x.gguf').vocab!.pieces).toHaveLength(512); // padding and separator are 0xFFFFFFFF
    rejects(() => readGgufModel(withU32('tokenizer.ggml.padding_token_id', 600), 'x.gguf'), /tokenizer\.ggml\.padding_token_id is 600, outside the vocabulary/);
    rejects(() => readGgufModel(withU32('tokenizer.ggml.unknown_token_id', 512), 'x.gguf'), /tokenizer\.ggml\.unknown_token_id is 512/);
  });

  it('a token id that is not an integer is refused', () => {
    const at = layout.keyAt.get('tokenizer.ggml.eos_token_id')! + 8 + 'tokenizer.ggml.eos_token_id'.length;
    const c = ggufEdit((v) => v.setUint32(at, 6, true)); // value type float32: the bits of 2 read as a float
    rejects(() => readGgufModel(c, 'x.gguf'), /tokenizer\.ggml\.eos_token_id is [\d.e-]+, not a token id/);
  });
});

describe('GGUF: messages name the key', () => {
  it('an unknown value type names its key', () => {
    const at = layout.keyAt.get('general.name')! + 8 + 'general.name'.length;
    const c = ggufEdit((v) => v.setUint32(at, 8388608, true));
    rejects(() => readGgufModel(c, 'x.gguf'), new RegExp(`x\\.gguf: metadata "general\\.name" \\(key at byte \\d+\\) has unknown value type 8388608 \\(at byte ${at}\\)`));
  });

  it('an unreadable key is named by its position', () => {
    const at = layout.keyAt.get('general.name')!;
    const empty = ggufEdit((v) => v.setBigUint64(at, 0n, true));
    rejects(() => readGgufModel(empty, 'x.gguf'), new RegExp(`x\\.gguf: the key of metadata entry #\\d+ \\(at byte ${at}\\) is empty`));
    const huge = ggufEdit((v) => v.setBigUint64(at, 1n << 40n, true));
    rejects(() => readGgufModel(huge, 'x.gguf'), new RegExp(`x\\.gguf: the key of metadata entry #\\d+ \\(at byte ${at}\\) claims 1099511627776 bytes, but only \\d+ remain`));
    const absurd = ggufEdit((v) => v.setBigUint64(at, 1n << 62n, true));
    rejects(() => readGgufModel(absurd, 'x.gguf'), new RegExp(`x\\.gguf: the length of the key of metadata entry #\\d+ \\(at byte ${at}\\) is absurdly large`));
  });

  it('an array length beyond the file is refused before anything is allocated', () => {
    const at = layout.valueAt.get('tokenizer.ggml.tokens')! + 4;
    const c = ggufEdit((v) => v.setBigUint64(at, 1n << 52n, true));
    rejects(() => readGgufModel(c, 'x.gguf'), /metadata "tokenizer\.ggml\.tokens" \(at byte \d+\) claims 4503599627370496 string items/);
    const big = ggufEdit((v) => v.setBigUint64(at, 200000n, true));
    rejects(() => readGgufModel(big, 'x.gguf'), /claims 200000 string items \(at least 1600000 bytes\), but only \d+ bytes remain/);
  });

  it('a string length beyond the file names the item', () => {
    const c = gguf.slice();
    const at = layout.valueAt.get('tokenizer.ggml.tokens')! + 12; // the first token's length
    new DataView(c.buffer).setBigUint64(at, 1n << 33n, true);
    rejects(() => readGgufModel(c, 'x.gguf'), /metadata "tokenizer\.ggml\.tokens"\[0\] \(at byte \d+\) claims 8589934592 bytes/);
  });

  it('a token that is not UTF-8 is refused', () => {
    const c = gguf.slice();
    const at = layout.valueAt.get('tokenizer.ggml.tokens')! + 12 + 8; // the first token's bytes ("<unk>")
    c[at + 1] = 0xff;
    rejects(() => readGgufModel(c, 'x.gguf'), /metadata "tokenizer\.ggml\.tokens"\[0\] \(at byte \d+\) is not valid UTF-8/);
  });

  it('absurd counts are refused', () => {
    rejects(() => readGgufModel(ggufEdit((v) => v.setBigUint64(16, 100000n, true)), 'x.gguf'), /100000 metadata entries and 48 tensor infos need at least \d+ bytes/);
    rejects(() => readGgufModel(ggufEdit((v) => v.setBigUint64(16, 1n << 60n, true)), 'x.gguf'), /metadata count is absurdly large/);
  });

  it('a quantized tensor keeps its error naming the type', () => {
    const t = tensor('blk.2.ffn_up.weight');
    rejects(() => readGgufModel(ggufEdit((v) => v.setUint32(t.typeAt, 14, true)), 'x.gguf'), /tensor blk\.2\.ffn_up\.weight has type Q6_K, which servelab cannot read/);
    rejects(() => readGgufModel(ggufEdit((v) => v.setUint32(t.typeAt, 77, true)), 'x.gguf'), /tensor blk\.2\.ffn_up\.weight has type 77 \(unknown to servelab\), which servelab cannot read/);
  });
});

describe('llama2.c tokenizer files', () => {
  it('max_token_length must be the longest token', () => {
    const c = tok.slice();
    new DataView(c.buffer).setInt32(0, 8, true);
    rejects(() => readLlama2cTokenizer(c, 512, 'tok512.bin'), /tok512\.bin: max_token_length is 8, but the longest of its 512 tokens has 7 bytes/);
  });

  it('a score that is not finite is refused', () => {
    const c = tok.slice();
    new DataView(c.buffer).setUint32(4, 0x7f800000, true);
    rejects(() => readLlama2cTokenizer(c, 512, 'tok512.bin'), /the score of token 0 \(at byte 4\) is Infinity/);
  });

  it('a token running past the end is refused with the token and the bytes left', () => {
    rejects(() => readLlama2cTokenizer(tok.subarray(0, tok.length - 3), 512, 'tok512.bin'), /tok512\.bin is truncated: token 511 of 512 has length \d+ at byte \d+, but only \d+ bytes remain/);
  });

  it('a tokenizer for a smaller vocabulary is refused', () => {
    rejects(() => readLlama2cTokenizer(tok, 513, 'tok512.bin'), /tok512\.bin ends after 512 tokens, but the model's vocabulary has 513; the tokenizer belongs to a model with a smaller vocabulary/);
  });

  it('a GGUF given as the tokenizer is named as such', () => {
    rejects(() => loadModel(bin, 'stories260K.bin', gguf, 'stories260K.gguf'), /stories260K\.gguf is a GGUF file, not a llama2\.c tokenizer/);
  });
});
