/**
 * Corrupted model files, thousands of them, made from the real ones (stories260K.bin, tok512.bin,
 * stories260K.gguf): truncations at random and at every boundary of a header, metadata entry and
 * tensor; byte flips in headers and metadata (and some in the weights); absurd values written into
 * header fields, GGUF counts, lengths, value types, dimensions, tensor types and offsets; bytes
 * inserted, deleted, appended. Every case must either
 *  - fail with a ModelFormatError that names the file (not a TypeError or RangeError from deep
 *    inside a reader), or
 *  - load a model that holds together (every tensor as long as the configuration says, special
 *    tokens inside the vocabulary, finite weights and scores) AND whose corruption could not have
 *    been detected: for a llama2.c checkpoint or tokenizer, only bytes of weights, scores or token
 *    text changed; for a GGUF, a change before the tensor data must leave every tensor as it was;
 * within a time bound per case. Seeded: a failure reproduces.
 */
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { loadModel, type LoadedModel } from '../../../src/model/load.ts';
import { readLlama2cTokenizer, Tokenizer } from '../../../src/model/tokenizer.ts';
import { ModelFormatError, type Model, type ModelConfig, type Vocabulary } from '../../../src/model/types.ts';
import { validateConfig } from '../../../src/model/validate.ts';
import { ggufLayout, llama2cBoundaries, llama2cHeaderFields, tokenizerLayout, type Field } from './file-layout.ts';
import { readModelFile } from './helpers.ts';

const seed = 0x5e7e1ab;
/** Far above any case's time (a few ms); a reader that loops or allocates gigabytes is far above it. */
const caseTimeLimitMs = 2000;
const arrayBufferLimitBytes = 256 * 1024 * 1024;

const bin = readModelFile('stories260K.bin');
const tok = readModelFile('tok512.bin');
const gguf = readModelFile('stories260K.gguf');

const binName = 'fuzz.bin';
const tokName = 'fuzz-tok.bin';
const ggufName = 'fuzz.gguf';

const binModel = loadModel(bin, 'stories260K.bin', tok, 'tok512.bin');
const ggufModel = loadModel(gguf, 'stories260K.gguf');
const ggufMap = ggufLayout(gguf);
const tokMap = tokenizerLayout(tok, 512);
const binHeaderBytes = 28;

type Kind = 'llama2c' | 'tokenizer' | 'gguf';
interface Tally {
  cases: number;
  clean: number;
  errors: number;
  slowestMs: number;
}
const tally: Record<Kind, Tally> = {
  llama2c: { cases: 0, clean: 0, errors: 0, slowestMs: 0 },
  tokenizer: { cases: 0, clean: 0, errors: 0, slowestMs: 0 },
  gguf: { cases: 0, clean: 0, errors: 0, slowestMs: 0 },
};
let maxArrayBuffers = 0;

const loaders: Record<Kind, (bytes: Uint8Array) => LoadedModel | Vocabulary> = {
  llama2c: (bytes) => loadModel(bytes, binName, tok, 'tok512.bin'),
  tokenizer: (bytes) => {
    const vocab = readLlama2cTokenizer(bytes, 512, tokName);
    new Tokenizer(vocab);
    return vocab;
  },
  gguf: (bytes) => loadModel(bytes, ggufName),
};
const fileNames: Record<Kind, string> = { llama2c: binName, tokenizer: tokName, gguf: ggufName };
const originals: Record<Kind, Uint8Array> = { llama2c: bin, tokenizer: tok, gguf };

// ---- what a clean load must satisfy ----

function fail(what: string, message: string): never {
  throw new Error(`${what}: ${message}`);
}

function checkVocabulary(v: Vocabulary, vocabSize: number, what: string): void {
  if (v.pieces.length !== vocabSize) fail(what, `${v.pieces.length} pieces for a vocabulary of ${vocabSize}`);
  if (v.scores.length !== vocabSize) fail(what, `${v.scores.length} scores for a vocabulary of ${vocabSize}`);
  for (const id of [v.bosId, v.eosId]) {
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) fail(what, `special token ${id} outside the vocabulary`);
  }
  for (let i = 0; i < vocabSize; i++) {
    if (!Number.isFinite(v.scores[i])) fail(what, `score ${i} is ${v.scores[i]}`);
    if (v.pieces[i].length > v.maxTokenLength) fail(what, `token ${i} is longer than max_token_length`);
  }
}

function allFinite(a: Float32Array): boolean {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i])) return false;
  return true;
}

/** Every tensor of the model, named, with the length its configuration gives it. */
function tensorsOf(m: Model): [string, Float32Array, number][] {
  const c = m.config;
  const kv = (c.dim / c.numHeads) * c.numKvHeads;
  const out: [string, Float32Array, number][] = [
    ['token_embedding', m.weights.tokenEmbedding, c.vocabSize * c.dim],
    ['rms_final', m.weights.rmsFinal, c.dim],
    ['wcls', m.weights.wcls, c.vocabSize * c.dim],
  ];
  m.weights.layers.forEach((l, i) => {
    const sizes = { rmsAtt: c.dim, wq: c.dim * c.dim, wk: kv * c.dim, wv: kv * c.dim, wo: c.dim * c.dim, rmsFfn: c.dim, w1: c.hiddenDim * c.dim, w2: c.dim * c.hiddenDim, w3: c.hiddenDim * c.dim };
    for (const [k, n] of Object.entries(sizes)) out.push([`layer ${i} ${k}`, l[k as keyof typeof l], n]);
  });
  return out;
}

function checkModel(loaded: LoadedModel, what: string): void {
  const { model } = loaded;
  validateConfig(model.config, what);
  if (model.weights.layers.length !== model.config.numLayers) fail(what, `${model.weights.layers.length} layers, config says ${model.config.numLayers}`);
  for (const [name, a, n] of tensorsOf(model)) {
    if (a.length !== n) fail(what, `${name} has ${a.length} floats, expected ${n}`);
    if (!allFinite(a)) fail(what, `${name} holds a non-finite weight`);
  }
  checkVocabulary(loaded.tokenizer.vocab, model.config.vocabSize, what);
}

const shapeKeys: (keyof ModelConfig)[] = ['dim', 'hiddenDim', 'numLayers', 'numHeads', 'numKvHeads', 'vocabSize'];

const ggufLayerNames: Record<string, keyof Model['weights']['layers'][number]> = {
  attn_norm: 'rmsAtt', attn_q: 'wq', attn_k: 'wk', attn_v: 'wv', attn_output: 'wo', ffn_norm: 'rmsFfn', ffn_gate: 'w1', ffn_down: 'w2', ffn_up: 'w3',
};

/** The model's tensor that a GGUF tensor name holds. */
function ggufTensor(m: Model, name: string): Float32Array {
  if (name === 'token_embd.weight') return m.weights.tokenEmbedding;
  if (name === 'output.weight') return m.weights.wcls;
  if (name === 'output_norm.weight') return m.weights.rmsFinal;
  const [, layer, key] = /^blk\.(\d+)\.(\w+)\.weight$/.exec(name)!;
  return m.weights.layers[Number(layer)][ggufLayerNames[key]];
}

/**
 * The first tensor the model does not hold exactly as the corrupted file's bytes at the original
 * file's tensor positions (null when all match): whatever changed, nothing may be read from the wrong place.
 */
function misplacedTensor(m: Model, corrupted: Uint8Array): string | null {
  for (const t of ggufMap.tensors) {
    const a = ggufTensor(m, t.name);
    const expected = Buffer.from(corrupted.buffer, corrupted.byteOffset + ggufMap.dataOffset + t.offset, t.numBytes);
    if (!Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(expected)) return t.name;
  }
  return null;
}

const differ = (a: Uint8Array, b: Uint8Array, start: number, end: number): boolean =>
  !Buffer.from(a.buffer, a.byteOffset + start, end - start).equals(Buffer.from(b.buffer, b.byteOffset + start, end - start));

/** A corrupted file that loaded: it must hold together, and its corruption must have been undetectable. */
function checkClean(kind: Kind, corrupted: Uint8Array, result: LoadedModel | Vocabulary, what: string): void {
  const original = originals[kind];
  if (corrupted.length !== original.length) fail(what, `loaded although its length changed (${original.length} -> ${corrupted.length})`);
  if (kind === 'tokenizer') {
    const vocab = result as Vocabulary;
    checkVocabulary(vocab, 512, what);
    for (let i = 0; i < corrupted.length; i++) {
      if (corrupted[i] !== original[i] && !tokMap.payload.some(([s, e]) => i >= s && i < e)) {
        fail(what, `loaded although byte ${i}, a length or max_token_length, changed`);
      }
    }
    return;
  }
  const loaded = result as LoadedModel;
  checkModel(loaded, what);
  if (kind === 'llama2c') {
    if (differ(corrupted, original, 0, binHeaderBytes)) fail(what, 'loaded although its header changed');
    expect(loaded.model.config).toEqual(binModel.model.config);
    return;
  }
  for (const k of shapeKeys) if (loaded.model.config[k] !== ggufModel.model.config[k]) fail(what, `loaded with ${k} ${loaded.model.config[k]}`);
  const misplaced = misplacedTensor(loaded.model, corrupted);
  if (misplaced) fail(what, `tensor ${misplaced} was not read from where the file keeps it`);
}

/** Loads one corrupted file and judges the outcome. */
function runCase(kind: Kind, corrupted: Uint8Array, what: string): void {
  const t = tally[kind];
  const started = performance.now();
  let result: LoadedModel | Vocabulary | undefined;
  let error: unknown;
  try {
    result = loaders[kind](corrupted);
  } catch (e) {
    error = e;
  }
  const ms = performance.now() - started;
  t.cases++;
  t.slowestMs = Math.max(t.slowestMs, ms);
  if (ms > caseTimeLimitMs) fail(what, `took ${ms.toFixed(0)} ms`);
  if ((t.cases & 63) === 0) maxArrayBuffers = Math.max(maxArrayBuffers, process.memoryUsage().arrayBuffers);
  if (error !== undefined) {
    t.errors++;
    if (!(error instanceof ModelFormatError)) fail(what, `threw ${String((error as Error)?.stack ?? error)}, not a ModelFormatError`);
    const message = error.message;
    if (!message.includes(fileNames[kind])) fail(what, `the message does not name the file: ${message}`);
    if (/undefined|\[object |NaN bytes|Infinity bytes/.test(message)) fail(what, `unclear message: ${message}`);
    return;
  }
  t.clean++;
  checkClean(kind, corrupted, result!, what);
}

// ---- corruptions ----

function absurd32(orig: number): number[] {
  return [0, 1, 2, 3, 7, orig + 1, orig - 1, orig * 2, orig >>> 1, orig + 32, orig ^ 0x80, orig ^ 0x8000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff, 1 << 24].map((v) => v >>> 0);
}
function absurd64(orig: bigint): bigint[] {
  const max = (1n << 64n) - 1n;
  return [0n, 1n, 2n, orig + 1n, orig - 1n, orig * 2n, orig / 2n, orig + 32n, orig + (1n << 32n), 1n << 31n, 1n << 32n, (1n << 53n) - 1n, 1n << 53n, 1n << 63n, max - 1n, max].map((v) => BigInt.asUintN(64, v));
}

function readField(bytes: Uint8Array, f: Field): number | bigint {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return f.size === 8 ? v.getBigUint64(f.at, true) : f.size === 4 ? v.getUint32(f.at, true) : bytes[f.at];
}

function withField(bytes: Uint8Array, f: Field, value: number | bigint): Uint8Array {
  const copy = bytes.slice();
  const v = new DataView(copy.buffer);
  if (f.size === 8) v.setBigUint64(f.at, BigInt.asUintN(64, BigInt(value)), true);
  else if (f.size === 4) v.setUint32(f.at, Number(value) >>> 0, true);
  else copy[f.at] = Number(value) & 0xff;
  return copy;
}

/** The absurd values for a field, `pick` choosing one (or `random` past the list's end). */
function absurdValue(bytes: Uint8Array, f: Field, pick: number, random: bigint): number | bigint {
  const orig = readField(bytes, f);
  const list = f.size === 8 ? absurd64(orig as bigint) : f.size === 4 ? absurd32(orig as number) : [0, 1, 2, 0x7f, 0x80, 0xff];
  const i = pick % (list.length + 1);
  if (i < list.length) return list[i];
  return f.size === 8 ? random : f.size === 4 ? Number(random & 0xffffffffn) : Number(random & 0xffn);
}

type Mutation =
  | { op: 'truncate'; length: number }
  | { op: 'flip'; flips: { at: number; xor: number }[] }
  | { op: 'field'; field: number; pick: number; random: bigint }
  | { op: 'insert'; at: number; bytes: Uint8Array }
  | { op: 'delete'; at: number; count: number }
  | { op: 'append'; bytes: Uint8Array };

function apply(bytes: Uint8Array, fields: Field[], m: Mutation): Uint8Array {
  switch (m.op) {
    case 'truncate':
      return bytes.subarray(0, m.length);
    case 'flip': {
      const copy = bytes.slice();
      for (const f of m.flips) copy[f.at] ^= f.xor;
      return copy;
    }
    case 'field': {
      const f = fields[m.field];
      return withField(bytes, f, absurdValue(bytes, f, m.pick, m.random));
    }
    case 'insert': {
      const out = new Uint8Array(bytes.length + m.bytes.length);
      out.set(bytes.subarray(0, m.at));
      out.set(m.bytes, m.at);
      out.set(bytes.subarray(m.at), m.at + m.bytes.length);
      return out;
    }
    case 'delete': {
      const count = Math.min(m.count, bytes.length - m.at);
      const out = new Uint8Array(bytes.length - count);
      out.set(bytes.subarray(0, m.at));
      out.set(bytes.subarray(m.at + count), m.at);
      return out;
    }
    case 'append': {
      const out = new Uint8Array(bytes.length + m.bytes.length);
      out.set(bytes);
      out.set(m.bytes, bytes.length);
      return out;
    }
  }
}

function describeMutation(m: Mutation, fields: Field[]): string {
  switch (m.op) {
    case 'field':
      return `field ${fields[m.field].what} (pick ${m.pick}, random ${m.random})`;
    case 'insert':
    case 'append':
      return `${m.op} ${m.bytes.length} bytes${m.op === 'insert' ? ` at ${m.at}` : ''}`;
    default:
      return JSON.stringify(m);
  }
}

/** Mutations of a file of `length` bytes whose header (and metadata) is [0, headerEnd). */
function mutations(length: number, headerEnd: number, numFields: number): fc.Arbitrary<Mutation> {
  const headerPos = fc.integer({ min: 0, max: headerEnd - 1 });
  const anyPos = fc.integer({ min: 0, max: length - 1 });
  const flip = (pos: fc.Arbitrary<number>) => fc.record({ at: pos, xor: fc.integer({ min: 1, max: 255 }) });
  return fc.oneof(
    { weight: 2, arbitrary: fc.record({ op: fc.constant('truncate' as const), length: fc.integer({ min: 0, max: length - 1 }) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('truncate' as const), length: fc.integer({ min: 0, max: Math.min(length - 1, headerEnd + 64) }) }) },
    { weight: 4, arbitrary: fc.record({ op: fc.constant('flip' as const), flips: fc.array(flip(headerPos), { minLength: 1, maxLength: 4 }) }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('flip' as const), flips: fc.array(flip(anyPos), { minLength: 1, maxLength: 3 }) }) },
    {
      weight: 5,
      arbitrary: fc.record({
        op: fc.constant('field' as const),
        field: fc.integer({ min: 0, max: numFields - 1 }),
        pick: fc.nat(),
        random: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
      }),
    },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('insert' as const), at: headerPos, bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('delete' as const), at: headerPos, count: fc.integer({ min: 1, max: 16 }) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('append' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }) }) },
  );
}

/** The truncations at and beside every boundary. */
function boundaryLengths(boundaries: number[], length: number): number[] {
  const out = new Set<number>();
  for (const b of boundaries) for (const d of [-1, 0, 1]) if (b + d >= 0 && b + d < length) out.add(b + d);
  return [...out].sort((a, b) => a - b);
}

afterAll(() => {
  const total = Object.values(tally).reduce((n, t) => n + t.cases, 0);
  const lines = Object.entries(tally).map(([k, t]) => `  ${k}: ${t.cases} cases, ${t.clean} loaded cleanly, ${t.errors} clear errors, slowest ${t.slowestMs.toFixed(1)} ms`);
  console.log(`reader fuzz: ${total} corrupted files\n${lines.join('\n')}\n  largest ArrayBuffer total seen: ${(maxArrayBuffers / 2 ** 20).toFixed(1)} MiB`);
});

describe('corrupted llama2.c checkpoints', () => {
  const fields = llama2cHeaderFields;
  it('truncated at every tensor boundary', () => {
    for (const n of boundaryLengths(llama2cBoundaries(binModel.model.config), bin.length)) runCase('llama2c', bin.subarray(0, n), `truncated to ${n}`);
  });
  it('every header field set to every absurd value', () => {
    for (const f of fields) for (let pick = 0; pick < 17; pick++) runCase('llama2c', withField(bin, f, absurdValue(bin, f, pick, 0n)), `${f.what} pick ${pick}`);
  });
  it('random corruptions', () => {
    fc.assert(
      fc.property(mutations(bin.length, binHeaderBytes, fields.length), (m) => runCase('llama2c', apply(bin, fields, m), describeMutation(m, fields))),
      { seed, numRuns: 1200 },
    );
  });
});

describe('corrupted llama2.c tokenizers', () => {
  const fields = tokMap.fields;
  it('truncated at every token boundary', () => {
    for (const n of boundaryLengths(tokMap.boundaries, tok.length)) runCase('tokenizer', tok.subarray(0, n), `truncated to ${n}`);
  });
  it('max_token_length and the first tokens\' lengths set to every absurd value', () => {
    for (const f of fields.slice(0, 9)) for (let pick = 0; pick < 18; pick++) runCase('tokenizer', withField(tok, f, absurdValue(tok, f, pick, 0xdeadbeefn)), `${f.what} pick ${pick}`);
  });
  it('random corruptions', () => {
    fc.assert(
      fc.property(mutations(tok.length, tok.length, fields.length), (m) => runCase('tokenizer', apply(tok, fields, m), describeMutation(m, fields))),
      { seed, numRuns: 1500 },
    );
  });
});

describe('corrupted GGUF files', () => {
  const fields = ggufMap.fields;
  it('truncated at every boundary of the header, metadata, tensor infos and tensors', () => {
    for (const n of boundaryLengths(ggufMap.boundaries, gguf.length)) runCase('gguf', gguf.subarray(0, n), `truncated to ${n}`);
  });
  it('every count, length, value type, dimension, tensor type and offset set to absurd values', () => {
    for (const f of fields) for (const pick of [0, 1, 5, 12, 15, 16]) runCase('gguf', withField(gguf, f, absurdValue(gguf, f, pick, 0n)), `${f.what} pick ${pick}`);
  });
  it('random corruptions', () => {
    fc.assert(
      fc.property(mutations(gguf.length, ggufMap.dataOffset, fields.length), (m) => runCase('gguf', apply(gguf, fields, m), describeMutation(m, fields))),
      { seed, numRuns: 2500 },
    );
  });
});

describe('the fuzzing itself', () => {
  it('ran thousands of cases, with both outcomes, within the memory bound', () => {
    const total = Object.values(tally).reduce((n, t) => n + t.cases, 0);
    expect(total).toBeGreaterThan(6000);
    for (const t of Object.values(tally)) {
      expect(t.errors).toBeGreaterThan(t.cases / 2);
      expect(t.clean).toBeGreaterThan(0);
    }
    expect(maxArrayBuffers).toBeLessThan(arrayBufferLimitBytes);
  });
});
