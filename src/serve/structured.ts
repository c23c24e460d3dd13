/**
 * Structured output: OpenAI's response_format compiled by XGrammar (`@mlc-ai/web-xgrammar`, the
 * grammar engine of vLLM and WebLLM) against the model's own vocabulary, and handed to the engine
 * as TokenConstraints (src/engine/constraint.ts), one per sequence.
 *
 * - Vocabulary: llama2.c pieces with a space spelled `▁` (U+2581), byte tokens `<0xNN>` as they
 *   are, vocab type byte_fallback; stop tokens: the model's EOS/BOS (the grammar allows only
 *   those once the JSON is complete, so a complete output ends with reason 'stop').
 * - Whitespace: none outside strings. Schemas compile with anyWhitespace off, on one line, with
 *   compact separators (`,` and `:`): by default XGrammar allows any whitespace between tokens,
 *   and a small model then wanders in spaces and newlines until max_tokens runs out.
 * - json_object: the schema {"type": "object"} in XGrammar's non-strict mode (any properties,
 *   any JSON values), same whitespace rule. json_schema: the caller's schema in strict mode
 *   (properties the schema does not name are not generated; still valid against the schema).
 * - Compiled grammars are cached by their key (the schema's JSON text); the tokenizer info is
 *   built once per GrammarService (one per model).
 *
 * What the npm package does not serve, written here: a synchronous bitmask (its
 * getNextTokenBitmask() is async only to await the WASM's first load, which a matcher's
 * existence already implies: fillNextTokenBitmask reads the matcher's own vector), and a schema
 * error's reason (XGrammar aborts its WASM call and prints the reason to its console:
 * schemaProblems() refuses what it is known to abort on first, with a reason; the instance stays
 * usable after an abort, which the tests check).
 */
import type * as XG from '@mlc-ai/web-xgrammar';
import type { ResponseFormat, TokenConstraint } from '../engine/constraint.ts';
import type { Tokenizer } from '../model/tokenizer.ts';

export type XGrammarApi = Pick<typeof XG, 'TokenizerInfo' | 'GrammarCompiler' | 'GrammarMatcher'>;

/** OpenAI's response_format parameter (snake_case, as the API spells it). */
export type ResponseFormatParam =
  | { type: 'json_object' }
  | { type: 'json_schema'; json_schema: { name: string; schema: Record<string, unknown>; strict?: boolean } };

/** A response format refused: the reason, as one line. */
export class ResponseFormatError extends RangeError {
  constructor(message: string) {
    super(message);
    this.name = 'ResponseFormatError';
  }
}

/** The model's vocabulary as XGrammar reads it (byte_fallback: `▁` for a space, `<0xNN>` bytes). */
export function encodedVocabulary(tokenizer: Tokenizer): string[] {
  const dec = new TextDecoder('utf-8', { fatal: false });
  return tokenizer.vocab.pieces.map((p) => dec.decode(p).replace(/ /g, '\u2581'));
}

/** The cache key of a format (and what a compile is named by). */
export function formatKey(format: ResponseFormat): string {
  return format.type === 'json_object' ? 'json_object' : `json_schema:${JSON.stringify(format.jsonSchema.schema)}`;
}

const SCHEMA_TYPES = new Set(['object', 'array', 'string', 'number', 'integer', 'boolean', 'null']);

/**
 * Problems of a JSON schema that XGrammar would abort on, or that are not schemas at all (each
 * with its JSON pointer). [] when it may be compiled. Checks the keywords' types and ranges,
 * local $refs, min <= max pairs and required names.
 */
export function schemaProblems(schema: unknown): string[] {
  const out: string[] = [];
  const isObj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
  const resolve = (ref: string): unknown => {
    if (!ref.startsWith('#')) return undefined;
    let cur: unknown = schema;
    for (const raw of ref.slice(1).split('/').filter((p) => p !== '')) {
      const part = raw.replace(/~1/g, '/').replace(/~0/g, '~');
      if (!isObj(cur) || !(part in cur)) return undefined;
      cur = cur[part];
    }
    return cur;
  };
  const walk = (s: unknown, at: string, depth: number): void => {
    if (depth > 32) return void out.push(`${at}: nested deeper than 32 levels`);
    if (typeof s === 'boolean') return;
    if (!isObj(s)) return void out.push(`${at}: a schema must be an object or a boolean`);
    const t = s.type;
    const types = Array.isArray(t) ? t : t === undefined ? [] : [t];
    for (const x of types) if (typeof x !== 'string' || !SCHEMA_TYPES.has(x)) out.push(`${at}/type: unknown type ${JSON.stringify(x)} (known: ${[...SCHEMA_TYPES].join(', ')})`);
    const nonNegInt = (k: string) => {
      const v = s[k];
      if (v !== undefined && !(Number.isSafeInteger(v) && (v as number) >= 0)) out.push(`${at}/${k}: must be an integer >= 0, got ${JSON.stringify(v)}`);
    };
    const num = (k: string) => {
      const v = s[k];
      if (v !== undefined && !(typeof v === 'number' && Number.isFinite(v))) out.push(`${at}/${k}: must be a number, got ${JSON.stringify(v)}`);
    };
    for (const k of ['minLength', 'maxLength', 'minItems', 'maxItems', 'minProperties', 'maxProperties']) nonNegInt(k);
    for (const k of ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'multipleOf']) num(k);
    const order = (lo: string, hi: string) => {
      const a = s[lo];
      const b = s[hi];
      if (typeof a === 'number' && typeof b === 'number' && a > b) out.push(`${at}: ${lo} ${a} is greater than ${hi} ${b}`);
    };
    order('minLength', 'maxLength');
    order('minItems', 'maxItems');
    order('minimum', 'maximum');
    order('minProperties', 'maxProperties');
    if (s.pattern !== undefined) {
      if (typeof s.pattern !== 'string') out.push(`${at}/pattern: must be a string`);
      else {
        try {
          new RegExp(s.pattern, 'u');
          // What XGrammar's regex converter does not support (it would abort on them).
          if (/\(\?<?[=!]/.test(s.pattern)) out.push(`${at}/pattern: lookahead and lookbehind are not supported by the grammar engine`);
          if (/\\[pP]\{/.test(s.pattern)) out.push(`${at}/pattern: Unicode property classes (\\p{...}) are not supported by the grammar engine`);
          if (/\\[1-9]/.test(s.pattern)) out.push(`${at}/pattern: backreferences are not supported by the grammar engine`);
        } catch (e) {
          out.push(`${at}/pattern: not a regular expression (${(e as Error).message})`);
        }
      }
    }
    if (s.enum !== undefined && !(Array.isArray(s.enum) && s.enum.length > 0)) out.push(`${at}/enum: must be a non-empty array`);
    if (s.required !== undefined) {
      if (!(Array.isArray(s.required) && s.required.every((r) => typeof r === 'string'))) out.push(`${at}/required: must be an array of property names`);
    }
    if (s.properties !== undefined) {
      if (!isObj(s.properties)) out.push(`${at}/properties: must be an object of schemas`);
      else for (const [k, v] of Object.entries(s.properties)) walk(v, `${at}/properties/${k}`, depth + 1);
    }
    for (const k of ['items', 'additionalProperties', 'not', 'contains', 'propertyNames']) if (s[k] !== undefined) walk(s[k], `${at}/${k}`, depth + 1);
    if (s.prefixItems !== undefined) {
      if (!Array.isArray(s.prefixItems)) out.push(`${at}/prefixItems: must be an array of schemas`);
      else s.prefixItems.forEach((v, i) => walk(v, `${at}/prefixItems/${i}`, depth + 1));
    }
    for (const k of ['anyOf', 'oneOf', 'allOf']) {
      const v = s[k];
      if (v === undefined) continue;
      if (!(Array.isArray(v) && v.length > 0)) out.push(`${at}/${k}: must be a non-empty array of schemas`);
      else v.forEach((x, i) => walk(x, `${at}/${k}/${i}`, depth + 1));
    }
    for (const k of ['$defs', 'definitions']) {
      const v = s[k];
      if (v === undefined) continue;
      if (!isObj(v)) out.push(`${at}/${k}: must be an object of schemas`);
      else for (const [name, d] of Object.entries(v)) walk(d, `${at}/${k}/${name}`, depth + 1);
    }
    if (s.$ref !== undefined) {
      if (typeof s.$ref !== 'string') out.push(`${at}/$ref: must be a string`);
      else if (resolve(s.$ref) === undefined) out.push(`${at}/$ref: ${JSON.stringify(s.$ref)} does not point into this schema (only local refs like "#/$defs/x")`);
    }
  };
  walk(schema, '#', 0);
  return out;
}

/** A checked response_format parameter as the engine's ResponseFormat; throws ResponseFormatError. */
export function parseResponseFormat(v: unknown): ResponseFormat {
  const isObj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
  if (!isObj(v)) throw new ResponseFormatError('response_format must be an object like {"type": "json_object"}');
  for (const k of Object.keys(v)) if (k !== 'type' && k !== 'json_schema') throw new ResponseFormatError(`response_format: unknown field ${JSON.stringify(k)}`);
  if (v.type === 'json_object') return { type: 'json_object' };
  if (v.type !== 'json_schema') throw new ResponseFormatError(`response_format.type must be "json_object" or "json_schema", got ${JSON.stringify(v.type) ?? 'nothing'}`);
  const js = v.json_schema;
  if (!isObj(js)) throw new ResponseFormatError('response_format of type json_schema needs json_schema: {name, schema}');
  for (const k of Object.keys(js)) if (!['name', 'schema', 'strict'].includes(k)) throw new ResponseFormatError(`response_format.json_schema: unknown field ${JSON.stringify(k)}`);
  const name = js.name ?? 'schema';
  if (typeof name !== 'string' || name.length === 0 || name.length > 64) throw new ResponseFormatError('response_format.json_schema.name must be a non-empty string of at most 64 characters');
  if (!isObj(js.schema)) throw new ResponseFormatError('response_format.json_schema.schema must be a JSON schema (an object)');
  if (js.strict !== undefined && typeof js.strict !== 'boolean') throw new ResponseFormatError('response_format.json_schema.strict must be true or false');
  const problems = schemaProblems(js.schema);
  if (problems.length > 0) {
    const more = problems.length > 3 ? `; and ${problems.length - 3} more` : '';
    throw new ResponseFormatError(`invalid JSON schema: ${problems.slice(0, 3).join('; ')}${more}`);
  }
  const out: ResponseFormat = { type: 'json_schema', jsonSchema: { name, schema: js.schema } };
  if (js.strict !== undefined) out.jsonSchema.strict = js.strict;
  return out;
}

/** An XGrammar matcher as a TokenConstraint. */
class XGrammarConstraint implements TokenConstraint {
  private disposed = false;
  constructor(
    private readonly matcher: XG.GrammarMatcher,
    private readonly vocabSize: number,
  ) {}
  fillNextTokenBitmask(bitmask: Int32Array): void {
    // The package's getNextTokenBitmask() is async (it awaits the WASM load, done by now): this
    // reads the same std::vector<int32_t> synchronously.
    const handle = (this.matcher as unknown as { handle: { GetNextTokenBitmask(v: number): { size(): number; get(i: number): number; delete(): void } } }).handle;
    const vec = handle.GetNextTokenBitmask(this.vocabSize);
    try {
      const n = Math.min(vec.size(), bitmask.length);
      for (let i = 0; i < n; i++) bitmask[i] = vec.get(i);
    } finally {
      vec.delete();
    }
  }
  acceptToken(tokenId: number): boolean {
    return this.matcher.acceptToken(tokenId);
  }
  rollback(numTokens: number): void {
    this.matcher.rollBack(numTokens);
  }
  isTerminated(): boolean {
    return this.matcher.isTerminated();
  }
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.matcher.dispose();
  }
}

/** A compiled format, with what compiling it cost. */
export interface CompiledFormat {
  key: string;
  grammar: XG.CompiledGrammar;
  /** Wall ms of the compile (when it ran; a request that reuses it says so with `cached`). */
  compileMs: number;
}

/** Compiles response formats for one model's vocabulary; caches compiled grammars. */
export class GrammarService {
  private infoPromise: Promise<XG.TokenizerInfo> | null = null;
  private compilerPromise: Promise<XG.GrammarCompiler> | null = null;
  private readonly cache = new Map<string, Promise<CompiledFormat>>();
  /** Wall ms the tokenizer info and compiler took (once). */
  setupMs = 0;
  readonly vocabSize: number;

  constructor(
    private readonly api: XGrammarApi,
    private readonly tokenizer: Tokenizer,
    private readonly stopTokenIds: readonly number[],
  ) {
    this.vocabSize = tokenizer.vocabSize;
  }

  private compiler(): Promise<XG.GrammarCompiler> {
    this.compilerPromise ??= (async () => {
      const t0 = performance.now();
      this.infoPromise = this.api.TokenizerInfo.createTokenizerInfo(encodedVocabulary(this.tokenizer), 'byte_fallback', false, this.vocabSize, [...this.stopTokenIds]);
      const compiler = await this.api.GrammarCompiler.createGrammarCompiler(await this.infoPromise, true);
      this.setupMs = performance.now() - t0;
      return compiler;
    })();
    return this.compilerPromise;
  }

  /** Whether this format's grammar is compiled already (or being compiled). */
  has(format: ResponseFormat): boolean {
    return this.cache.has(formatKey(format));
  }

  /** The compiled grammar of a format (cached by its key); a schema XGrammar refuses throws ResponseFormatError. */
  compile(format: ResponseFormat): Promise<CompiledFormat> {
    const key = formatKey(format);
    let hit = this.cache.get(key);
    if (!hit) {
      hit = this.compileUncached(format, key);
      this.cache.set(key, hit);
      hit.catch(() => this.cache.delete(key));
    }
    return hit;
  }

  private async compileUncached(format: ResponseFormat, key: string): Promise<CompiledFormat> {
    // Formats from traces and workloads come here without parseResponseFormat: check them too.
    const problems = format.type === 'json_schema' ? schemaProblems(format.jsonSchema.schema) : [];
    if (problems.length > 0) throw new ResponseFormatError(`invalid JSON schema: ${problems.slice(0, 3).join('; ')}`);
    const compiler = await this.compiler();
    const t0 = performance.now();
    const schema = format.type === 'json_object' ? '{"type":"object"}' : JSON.stringify(format.jsonSchema.schema);
    const strict = format.type === 'json_schema';
    try {
      const grammar = await compiler.compileJSONSchema(schema, false, -1, [',', ':'], strict);
      return { key, grammar, compileMs: performance.now() - t0 };
    } catch (e) {
      // XGrammar prints the reason to the console (its own bound console.error) and throws
      // "Aborted()": schemaProblems() catches the cases known to do that before it gets here.
      throw new ResponseFormatError(`the grammar engine refused the schema (${(e as Error).message.split('.')[0]}; its reason is on the worker's console)`);
    }
  }

  /** `n` fresh constraints (one per sequence) for a format; compiles it first when needed. */
  async constraints(format: ResponseFormat, n: number): Promise<{ constraints: TokenConstraint[]; compiled: CompiledFormat; cached: boolean }> {
    const cached = this.has(format);
    const compiled = await this.compile(format);
    const constraints: TokenConstraint[] = [];
    for (let i = 0; i < n; i++) {
      const matcher = await this.api.GrammarMatcher.createGrammarMatcher(compiled.grammar, undefined, false, -1);
      constraints.push(new XGrammarConstraint(matcher, this.vocabSize));
    }
    return { constraints, compiled, cached };
  }
}
