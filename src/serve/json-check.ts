/**
 * The check a structured output gets at its end (shown with it): does it parse, and does it match
 * its schema? The grammar makes both true for a completed output; this says so for each one
 * (tests check the same with an independent validator, ajv). The validator covers the keywords
 * XGrammar generates from: type, properties, required, additionalProperties, items, prefixItems,
 * enum, const, numeric bounds, string lengths and patterns, array lengths, anyOf/oneOf/allOf and
 * local $refs. Pure.
 */
import type { ResponseFormat } from '../engine/constraint.ts';
import type { JsonCheck } from './requests.ts';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

const isObj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);

function typeOf(v: Json): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

/** Where `value` breaks `schema` (JSON pointers into the value); [] when it matches. */
export function schemaViolations(value: Json, schema: unknown, root: unknown = schema, at = '', depth = 0): string[] {
  if (schema === true || schema === undefined) return [];
  if (schema === false) return [`${at || '/'}: not allowed here`];
  if (!isObj(schema) || depth > 64) return [];
  const out: string[] = [];
  const where = at || '/';
  if (typeof schema.$ref === 'string' && schema.$ref.startsWith('#')) {
    let cur: unknown = root;
    for (const raw of schema.$ref.slice(1).split('/').filter((p) => p !== '')) cur = isObj(cur) ? cur[raw.replace(/~1/g, '/').replace(/~0/g, '~')] : undefined;
    out.push(...schemaViolations(value, cur, root, at, depth + 1));
  }
  const t = typeOf(value);
  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? schema.type : [schema.type];
    const ok = types.some((x) => x === t || (x === 'number' && t === 'integer'));
    if (!ok) return [...out, `${where}: expected ${types.join(' or ')}, got ${t}`];
  }
  if (Array.isArray(schema.enum) && !schema.enum.some((e) => JSON.stringify(e) === JSON.stringify(value))) out.push(`${where}: not one of the enum values`);
  if (schema.const !== undefined && JSON.stringify(schema.const) !== JSON.stringify(value)) out.push(`${where}: not the const value`);
  if (typeof value === 'number') {
    const n = (k: string) => (typeof schema[k] === 'number' ? (schema[k] as number) : undefined);
    const min = n('minimum'), max = n('maximum'), xmin = n('exclusiveMinimum'), xmax = n('exclusiveMaximum');
    if (min !== undefined && value < min) out.push(`${where}: ${value} < minimum ${min}`);
    if (max !== undefined && value > max) out.push(`${where}: ${value} > maximum ${max}`);
    if (xmin !== undefined && value <= xmin) out.push(`${where}: ${value} <= exclusiveMinimum ${xmin}`);
    if (xmax !== undefined && value >= xmax) out.push(`${where}: ${value} >= exclusiveMaximum ${xmax}`);
  }
  if (typeof value === 'string') {
    const len = [...value].length;
    if (typeof schema.minLength === 'number' && len < schema.minLength) out.push(`${where}: shorter than ${schema.minLength}`);
    if (typeof schema.maxLength === 'number' && len > schema.maxLength) out.push(`${where}: longer than ${schema.maxLength}`);
    if (typeof schema.pattern === 'string' && !new RegExp(schema.pattern, 'u').test(value)) out.push(`${where}: does not match ${schema.pattern}`);
  }
  if (Array.isArray(value)) {
    if (typeof schema.minItems === 'number' && value.length < schema.minItems) out.push(`${where}: fewer than ${schema.minItems} items`);
    if (typeof schema.maxItems === 'number' && value.length > schema.maxItems) out.push(`${where}: more than ${schema.maxItems} items`);
    const prefix = Array.isArray(schema.prefixItems) ? schema.prefixItems : [];
    value.forEach((item, i) => out.push(...schemaViolations(item, i < prefix.length ? prefix[i] : schema.items, root, `${at}/${i}`, depth + 1)));
  }
  if (isObj(value)) {
    const props = isObj(schema.properties) ? schema.properties : {};
    if (Array.isArray(schema.required)) for (const r of schema.required) if (typeof r === 'string' && !(r in value)) out.push(`${where}: missing required property ${JSON.stringify(r)}`);
    for (const [k, v] of Object.entries(value as { [k: string]: Json })) {
      if (k in props) out.push(...schemaViolations(v, props[k], root, `${at}/${k}`, depth + 1));
      else if (schema.additionalProperties !== undefined) out.push(...schemaViolations(v, schema.additionalProperties, root, `${at}/${k}`, depth + 1));
    }
  }
  if (Array.isArray(schema.allOf)) for (const s of schema.allOf) out.push(...schemaViolations(value, s, root, at, depth + 1));
  if (Array.isArray(schema.anyOf) && !schema.anyOf.some((s) => schemaViolations(value, s, root, at, depth + 1).length === 0)) out.push(`${where}: matches none of anyOf`);
  if (Array.isArray(schema.oneOf) && schema.oneOf.filter((s) => schemaViolations(value, s, root, at, depth + 1).length === 0).length !== 1) out.push(`${where}: does not match exactly one of oneOf`);
  return out;
}

/** The end-of-request check of one sequence's text. */
export function checkJsonOutput(text: string, format: ResponseFormat, finishReason: string): JsonCheck {
  let value: Json;
  try {
    value = JSON.parse(text) as Json;
  } catch (e) {
    if (finishReason === 'length') return { status: 'incomplete', message: 'max_tokens ran out before the JSON was complete (finish_reason "length"); the text is a prefix of valid JSON' };
    return { status: 'invalid', message: `does not parse: ${(e as Error).message}` };
  }
  const schema = format.type === 'json_object' ? { type: 'object' } : format.jsonSchema.schema;
  const problems = schemaViolations(value, schema);
  if (problems.length > 0) return { status: 'invalid', message: problems.slice(0, 3).join('; ') };
  return { status: 'valid', message: null };
}
