/**
 * A small declarative schema for data that comes from outside (imported workloads, traces, saved
 * runs) and one validator that walks it. A schema says, field by field, the type, the bounds,
 * whether it is required and why; `check` returns every problem with its path
 * ("arrival.burstiness must be a finite number from 0.001 to 1000, got \"x\""), never throws on
 * any JSON value, and does work bounded by the schema and the size of the value.
 */

/** One thing wrong, at a path such as `tenants[2].priority`. */
export interface Problem {
  path: string;
  message: string;
}

interface Common {
  /** Absent is fine (null is not: it is a value of the wrong type). */
  optional?: boolean;
  /** Why the bounds are what they are; appended to the problem's message. */
  why?: string;
}

export interface NumberSchema extends Common {
  type: 'number';
  integer?: boolean;
  min?: number;
  max?: number;
  /** The value must be > min instead of >= min. */
  exclusiveMin?: boolean;
}

export interface StringSchema extends Common {
  type: 'string';
  minLength?: number;
  maxLength: number;
}

export interface BooleanSchema extends Common {
  type: 'boolean';
}

/** One of a few exact values. */
export interface LiteralSchema extends Common {
  type: 'literal';
  values: readonly (string | number | boolean)[];
}

export interface ArraySchema extends Common {
  type: 'array';
  items: Schema;
  minItems?: number;
  maxItems: number;
  /** Rules across items, run only when every item is fine. */
  refine?: (value: unknown[], path: string) => Problem[];
}

export interface ObjectSchema extends Common {
  type: 'object';
  fields: Readonly<Record<string, Schema>>;
  /** Fields the schema does not name: refused (the default), or allowed and left unchecked. */
  unknownFields?: 'refuse' | 'allow';
  /** Rules across fields, run only when every field is fine. */
  refine?: (value: Record<string, unknown>, path: string) => Problem[];
}

/** An object whose `tag` field picks its shape (`{kind: "poisson", ratePerS: 2}`). */
export interface UnionSchema extends Common {
  type: 'union';
  tag: string;
  variants: Readonly<Record<string, ObjectSchema>>;
}

/** Checked by a function (another module's own validator). `index` is the nearest array index. */
export interface CustomSchema extends Common {
  type: 'custom';
  describe: string;
  check: (value: unknown, path: string, index: number) => Problem[];
}

export type Schema = NumberSchema | StringSchema | BooleanSchema | LiteralSchema | ArraySchema | ObjectSchema | UnionSchema | CustomSchema;

/** A value as a problem message shows it (short; never throws, whatever the value). */
export function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null || v === undefined) return String(v);
  if (Array.isArray(v)) return `an array of ${v.length}`;
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

function num(n: number): string {
  if (n === Number.MAX_SAFE_INTEGER) return '2^53-1';
  if (n === -Number.MAX_SAFE_INTEGER) return '-(2^53-1)';
  return String(n);
}

/** What a schema accepts, as the end of "... must be <this>". */
export function describe(s: Schema): string {
  switch (s.type) {
    case 'number': {
      const what = s.integer ? 'an integer' : 'a finite number';
      if (s.min !== undefined && s.max !== undefined) return s.exclusiveMin ? `${what} > ${num(s.min)} and <= ${num(s.max)}` : `${what} from ${num(s.min)} to ${num(s.max)}`;
      if (s.min !== undefined) return `${what} ${s.exclusiveMin ? '>' : '>='} ${num(s.min)}`;
      if (s.max !== undefined) return `${what} <= ${num(s.max)}`;
      return what;
    }
    case 'string':
      return `a ${s.minLength ? 'non-empty ' : ''}string of at most ${s.maxLength} characters`;
    case 'boolean':
      return 'true or false';
    case 'literal':
      return s.values.length === 1 ? JSON.stringify(s.values[0]) : `one of ${s.values.map((v) => JSON.stringify(v)).join(', ')}`;
    case 'array':
      return s.minItems ? `an array of ${s.minItems} to ${s.maxItems} items` : `an array of at most ${s.maxItems} items`;
    case 'object':
      return 'an object';
    case 'union':
      return `an object with ${s.tag} ${Object.keys(s.variants).map((v) => JSON.stringify(v)).join(', ')}`;
    case 'custom':
      return s.describe;
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A field's own value (never one inherited from Object.prototype, such as "constructor"). */
const own = (o: Record<string, unknown>, key: string): unknown => (Object.hasOwn(o, key) ? o[key] : undefined);

/** The path of a field (a long key shortened, as messages show it). */
export function fieldPath(path: string, key: string): string {
  const k = key.length > 40 ? `${key.slice(0, 40)}…` : key;
  return path === '' ? k : `${path}.${k}`;
}
const join = fieldPath;

interface Walk {
  out: Problem[];
  /** What the top level is called in messages ("the workload"). */
  rootName: string;
}

const named = (w: Walk, path: string) => (path === '' ? w.rootName : path);

function wrong(s: Schema, v: unknown, path: string, w: Walk): void {
  w.out.push({ path, message: `${named(w, path)} must be ${describe(s)}, got ${show(v)}${s.why ? ` (${s.why})` : ''}` });
}

function walk(s: Schema, v: unknown, path: string, index: number, w: Walk): void {
  const out = w.out;
  if (v === undefined) {
    if (!s.optional) out.push({ path, message: `${named(w, path)} is required: ${describe(s)}${s.why ? ` (${s.why})` : ''}` });
    return;
  }
  switch (s.type) {
    case 'number': {
      const ok =
        typeof v === 'number' &&
        Number.isFinite(v) &&
        (!s.integer || Number.isInteger(v)) &&
        (s.min === undefined || (s.exclusiveMin ? v > s.min : v >= s.min)) &&
        (s.max === undefined || v <= s.max);
      if (!ok) wrong(s, v, path, w);
      return;
    }
    case 'string':
      if (typeof v !== 'string' || v.length < (s.minLength ?? 0) || v.length > s.maxLength) wrong(s, v, path, w);
      return;
    case 'boolean':
      if (typeof v !== 'boolean') wrong(s, v, path, w);
      return;
    case 'literal':
      if (!s.values.some((x) => x === v)) wrong(s, v, path, w);
      return;
    case 'array': {
      if (!Array.isArray(v) || v.length < (s.minItems ?? 0) || v.length > s.maxItems) {
        wrong(s, v, path, w);
        return;
      }
      const before = out.length;
      v.forEach((item, i) => walk(s.items, item, `${path}[${i}]`, i, w));
      if (out.length === before && s.refine) out.push(...s.refine(v, path));
      return;
    }
    case 'object': {
      if (!isObject(v)) {
        wrong(s, v, path, w);
        return;
      }
      const before = out.length;
      if (s.unknownFields !== 'allow') {
        for (const key of Object.keys(v)) {
          if (!Object.hasOwn(s.fields, key)) {
            out.push({ path: join(path, key), message: `${join(path, key)} is not a known field (${named(w, path)} has: ${Object.keys(s.fields).join(', ') || 'no fields'})` });
          }
        }
      }
      for (const [key, field] of Object.entries(s.fields)) walk(field, own(v, key), join(path, key), index, w);
      if (out.length === before && s.refine) out.push(...s.refine(v, path));
      return;
    }
    case 'union': {
      if (!isObject(v)) {
        wrong(s, v, path, w);
        return;
      }
      const tag = own(v, s.tag);
      if (typeof tag !== 'string' || !Object.hasOwn(s.variants, tag)) {
        const tagPath = join(path, s.tag);
        out.push({ path: tagPath, message: `${tagPath} must be one of ${Object.keys(s.variants).map((k) => JSON.stringify(k)).join(', ')}, got ${show(tag)}${s.why ? ` (${s.why})` : ''}` });
        return;
      }
      const variant = s.variants[tag];
      walk({ ...variant, fields: { [s.tag]: { type: 'literal', values: [tag] }, ...variant.fields } }, v, path, index, w);
      return;
    }
    case 'custom':
      out.push(...s.check(v, path, index));
      return;
  }
}

/** Every problem of `value` against `schema` ([] when it fits), each with its path; `root` names the top level. */
export function check(schema: Schema, value: unknown, rootName = 'the value'): Problem[] {
  const w: Walk = { out: [], rootName };
  walk(schema, value, '', -1, w);
  return w.out;
}

/** Problems listed the way an Error message shows them: the first `max`, then how many more. */
export function listProblems(label: string, problems: readonly Problem[], max = 10): string {
  const shown = problems.slice(0, max).map((p) => p.message);
  const more = problems.length > max ? `; and ${problems.length - max} more` : '';
  return `${label}: ${shown.join('; ')}${more}`;
}

/** Data refused with every problem named; `problems` keeps the whole list (the message shows 10). */
export class InvalidInputError extends Error {
  constructor(
    readonly label: string,
    readonly problems: readonly Problem[],
  ) {
    super(listProblems(label, problems));
    this.name = 'InvalidInputError';
  }
}
