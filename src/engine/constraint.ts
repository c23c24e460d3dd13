/**
 * Structured output, as the engine sees it: a request may carry a JSON-serialisable
 * `responseFormat` (recorded in the event log with its submit) and, per sequence, a
 * TokenConstraint that says which tokens may come next. The engine knows nothing of grammars:
 * the serve layer compiles one (XGrammar, src/serve/structured.ts) and hands the engine ready
 * constraints, one per sequence.
 *
 * Sampling with a constraint (Scheduler.update): the sequence's logits row is read back (the
 * executor returns it for `constrained` rows whatever the temperature), every token the bitmask
 * does not allow becomes -Infinity, the sequence's own sampler picks from what is left (greedy,
 * temperature, top-k and top-p alike), and the token is accepted into the constraint. A grammar
 * that has reached its end allows only stop tokens, so a complete output ends with reason 'stop'.
 *
 * Speculative decoding (not built here): a draft is checked token by token with acceptToken()
 * (false: the draft is cut before that token) and the tokens the target rejects are given back
 * with rollback(n); masks for the verified rows come from fillNextTokenBitmask() after each
 * accepted token.
 */

/** OpenAI's `response_format`, as the engine records it (camelCase like the rest of RequestSpec). */
export type ResponseFormat =
  | { type: 'json_object' }
  | { type: 'json_schema'; jsonSchema: { name: string; schema: Record<string, unknown>; strict?: boolean } };

/** The next-token rule of one sequence. */
export interface TokenConstraint {
  /**
   * Writes the tokens allowed next into `bitmask` (bit t % 32 of word t >> 5 set: token t
   * allowed; ceil(vocabSize / 32) words).
   */
  fillNextTokenBitmask(bitmask: Int32Array): void;
  /** Advances by one token; false (and no change) when the constraint does not allow it. */
  acceptToken(tokenId: number): boolean;
  /** Takes back the last `numTokens` accepted tokens. */
  rollback(numTokens: number): void;
  /** True once the constraint has accepted its end (a stop token): nothing more may follow. */
  isTerminated(): boolean;
  /** Frees what it holds (WASM memory); called once when its sequence ends. */
  dispose?(): void;
}

/** Words of a bitmask over `vocabSize` tokens. */
export function bitmaskWords(vocabSize: number): number {
  return Math.ceil(vocabSize / 32);
}

/**
 * Sets every logit whose token the bitmask does not allow to -Infinity, in place. Returns the
 * number of allowed tokens and the allowed token with the largest logit (the masked argmax,
 * first on ties; -1 when none is allowed).
 */
export function applyBitmask(logits: Float32Array, bitmask: Int32Array): { numAllowed: number; argmax: number } {
  let numAllowed = 0;
  let argmax = -1;
  for (let t = 0; t < logits.length; t++) {
    if ((bitmask[t >> 5] >>> (t & 31)) & 1) {
      numAllowed++;
      if (argmax < 0 || logits[t] > logits[argmax]) argmax = t;
    } else {
      logits[t] = -Infinity;
    }
  }
  return { numAllowed, argmax };
}

const FORMAT_KEYS: ReadonlySet<string> = new Set(['type', 'jsonSchema']);
const JSON_SCHEMA_KEYS: ReadonlySet<string> = new Set(['name', 'schema', 'strict']);
/** Longest schema accepted, as JSON text (a schema is a request field, not a payload). */
export const MAX_SCHEMA_CHARS = 100_000;

/**
 * Problems of a responseFormat's shape ([] when fine). Whether the schema itself is a schema the
 * grammar engine can serve is the serve layer's check (it compiles it).
 */
export function responseFormatProblems(v: unknown, field = 'responseFormat'): { field: string; message: string }[] {
  if (v === undefined) return [];
  const out: { field: string; message: string }[] = [];
  const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
  if (!isObject(v)) return [{ field, message: `${field} must be an object like {type: "json_object"}` }];
  for (const k of Object.keys(v)) if (!FORMAT_KEYS.has(k)) out.push({ field: `${field}.${k}`, message: `unknown ${field} field ${JSON.stringify(k)}` });
  if (v.type === 'json_object') {
    if (v.jsonSchema !== undefined) out.push({ field: `${field}.jsonSchema`, message: `${field} of type json_object takes no jsonSchema` });
  } else if (v.type === 'json_schema') {
    const js = v.jsonSchema;
    if (!isObject(js)) out.push({ field: `${field}.jsonSchema`, message: `${field} of type json_schema needs jsonSchema: {name, schema}` });
    else {
      for (const k of Object.keys(js)) if (!JSON_SCHEMA_KEYS.has(k)) out.push({ field: `${field}.jsonSchema.${k}`, message: `unknown jsonSchema field ${JSON.stringify(k)}` });
      if (typeof js.name !== 'string' || js.name.length === 0 || js.name.length > 64) out.push({ field: `${field}.jsonSchema.name`, message: 'jsonSchema.name must be a non-empty string of at most 64 characters' });
      if (!isObject(js.schema)) out.push({ field: `${field}.jsonSchema.schema`, message: 'jsonSchema.schema must be a JSON schema object' });
      else if (JSON.stringify(js.schema).length > MAX_SCHEMA_CHARS) out.push({ field: `${field}.jsonSchema.schema`, message: `jsonSchema.schema is longer than ${MAX_SCHEMA_CHARS} characters as JSON` });
      if (js.strict !== undefined && typeof js.strict !== 'boolean') out.push({ field: `${field}.jsonSchema.strict`, message: 'jsonSchema.strict must be true or false' });
    }
  } else {
    out.push({ field: `${field}.type`, message: `${field}.type must be "json_object" or "json_schema", got ${JSON.stringify(v.type) ?? 'nothing'}` });
  }
  return out;
}
