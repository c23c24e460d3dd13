/**
 * Structured output on the real model (stories260K, CPU reference executor) through the real
 * engine: every completed output of 8 schemas x 26 seeds (208 pairs, temperature > 0) parses and
 * validates against its schema with an independent validator (ajv); outputs cut by max_tokens
 * end with 'length' and are reported incomplete. XGrammar runs through the Node loader.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import Ajv from 'ajv';
import { Engine } from '../../../src/engine/engine.ts';
import { VirtualClock } from '../../../src/engine/clock.ts';
import { CpuReferenceExecutor } from '../../../src/model/reference.ts';
import { completionSpec, stopTokenIdsOf, CompletionParamsError } from '../../../src/serve/requests.ts';
import { GrammarService, encodedVocabulary, parseResponseFormat, ResponseFormatError } from '../../../src/serve/structured.ts';
import { checkJsonOutput } from '../../../src/serve/json-check.ts';
import { loadXGrammarNode } from '../../../src/serve/xgrammar.node.ts';
import type { LoadedModel } from '../../../src/model/load.ts';
import { builtin } from '../model/helpers.ts';

export const SCHEMAS: Record<string, Record<string, unknown>> = {
  person: {
    type: 'object',
    properties: { name: { type: 'string', maxLength: 12 }, age: { type: 'integer', minimum: 0, maximum: 99 } },
    required: ['name', 'age'],
  },
  nested: {
    type: 'object',
    properties: {
      user: {
        type: 'object',
        properties: { id: { type: 'integer', minimum: 1, maximum: 1000 }, tags: { type: 'array', items: { type: 'string', maxLength: 8 }, maxItems: 3 } },
        required: ['id', 'tags'],
      },
      active: { type: 'boolean' },
    },
    required: ['user', 'active'],
  },
  enums: {
    type: 'object',
    properties: { color: { enum: ['red', 'green', 'blue'] }, size: { type: 'string', enum: ['S', 'M', 'L'] }, count: { type: 'integer', minimum: 1, maximum: 9 } },
    required: ['color', 'size', 'count'],
  },
  order: {
    type: 'object',
    properties: {
      items: {
        type: 'array',
        minItems: 1,
        maxItems: 3,
        items: { type: 'object', properties: { name: { type: 'string', maxLength: 8 }, qty: { type: 'integer', minimum: 0, maximum: 20 } }, required: ['name', 'qty'] },
      },
    },
    required: ['items'],
  },
  mixed: {
    type: 'object',
    properties: { ok: { type: 'boolean' }, note: { type: ['string', 'null'], maxLength: 10 }, level: { type: 'integer', minimum: -3, maximum: 3 } },
    required: ['ok', 'note', 'level'],
  },
  list: { type: 'array', items: { type: 'integer', minimum: -5, maximum: 5 }, minItems: 2, maxItems: 4 },
  deep: {
    type: 'object',
    properties: { a: { type: 'object', properties: { b: { type: 'object', properties: { c: { type: 'string', maxLength: 6 } }, required: ['c'] } }, required: ['b'] } },
    required: ['a'],
  },
  refs: {
    $defs: { pt: { type: 'object', properties: { x: { type: 'integer', minimum: 0, maximum: 9 }, y: { type: 'integer', minimum: 0, maximum: 9 } }, required: ['x', 'y'] } },
    type: 'object',
    properties: { from: { $ref: '#/$defs/pt' }, to: { $ref: '#/$defs/pt' } },
    required: ['from', 'to'],
  },
};

const PROMPTS = ['Lily', 'Once upon a time', 'The dog', 'Tom and Sue', 'A big red ball'];

let loaded: LoadedModel;
let service: GrammarService;

beforeAll(async () => {
  loaded = builtin();
  service = new GrammarService(await loadXGrammarNode(), loaded.tokenizer, stopTokenIdsOf(loaded));
}, 60_000);

describe('structured output on the real model', () => {
  it('every completed output of 208 (seed, schema) pairs parses and validates (ajv); cut ones say length', async () => {
    const ajv = new Ajv({ strict: false });
    const engine = new Engine({ executor: new CpuReferenceExecutor(loaded.model), clock: new VirtualClock(), checkInvariants: true, config: { maxNumSeqs: 64 } });
    const runs: { id: string; schemaName: string; seed: number }[] = [];
    const compileMs: number[] = [];
    for (const [schemaName, schema] of Object.entries(SCHEMAS)) {
      for (let seed = 0; seed < 26; seed++) {
        const spec = completionSpec(
          { prompt: PROMPTS[seed % PROMPTS.length], max_tokens: 96, temperature: 0.6 + (seed % 5) * 0.1, top_p: seed % 3 === 0 ? 0.9 : 1, seed: 1000 + seed, response_format: { type: 'json_schema', json_schema: { name: schemaName, schema } } },
          `${schemaName}-${seed}`,
          loaded,
        );
        const { constraints, compiled, cached } = await service.constraints(spec.responseFormat!, 1);
        if (!cached) compileMs.push(compiled.compileMs);
        runs.push({ id: engine.submit(spec, { constraints }), schemaName, seed });
      }
    }
    await engine.runUntilIdle();
    let completed = 0;
    let masked = 0;
    let maskMs = 0;
    const problems: string[] = [];
    for (const { id, schemaName } of runs) {
      const r = engine.getRequest(id)!;
      const tokens = r.seqs[0].outputTokenIds;
      const text = loaded.tokenizer.decode([0, ...tokens]);
      masked += r.mask!.numTokens;
      maskMs += r.mask!.totalMs;
      const reason = r.seqs[0].finishReason;
      if (reason === 'stop') {
        completed++;
        let value: unknown;
        try {
          value = JSON.parse(text);
        } catch (e) {
          problems.push(`${id}: does not parse: ${text}`);
          continue;
        }
        if (!ajv.validate(SCHEMAS[schemaName], value)) problems.push(`${id}: ${ajv.errorsText()} in ${text}`);
        expect(checkJsonOutput(text, r.spec.responseFormat!, 'stop')).toEqual({ status: 'valid', message: null });
        // The grammar ended it: the last token sampled was a stop token, and nothing followed it.
        expect(stopTokenIdsOf(loaded)).toContain(r.seqs[0].stopTokenId);
      } else {
        expect(reason).toBe('length');
        expect(tokens.length).toBe(96);
        expect(checkJsonOutput(text, r.spec.responseFormat!, 'length').status).toBe('incomplete');
      }
    }
    console.log(`structured output: ${completed}/${runs.length} completed, ${masked} masked tokens, ${(maskMs / masked).toFixed(3)} ms per mask, compile ${compileMs.map((m) => m.toFixed(0)).join('/')} ms`);
    expect(problems).toEqual([]);
    expect(completed).toBeGreaterThanOrEqual(200);
  }, 300_000);

  it('json_object gives a JSON object; greedy rows are masked too', async () => {
    const engine = new Engine({ executor: new CpuReferenceExecutor(loaded.model), clock: new VirtualClock(), checkInvariants: true });
    const spec = completionSpec({ prompt: 'Lily', max_tokens: 40, temperature: 0, response_format: { type: 'json_object' } }, 'obj', loaded);
    engine.submit(spec, { constraints: (await service.constraints(spec.responseFormat!, 1)).constraints });
    const free = completionSpec({ prompt: 'Lily', max_tokens: 40, temperature: 0 }, 'free', loaded);
    engine.submit(free);
    await engine.runUntilIdle();
    const text = loaded.tokenizer.decode([0, ...engine.getRequest('obj')!.seqs[0].outputTokenIds]);
    expect(text.startsWith('{"')).toBe(true);
    // The free neighbour in the same batch is untouched: greedy text, no braces.
    const freeText = loaded.tokenizer.decode([0, ...engine.getRequest('free')!.seqs[0].outputTokenIds]);
    expect(freeText.startsWith('{')).toBe(false);
    expect(engine.getRequest('free')!.mask).toBeNull();
  }, 60_000);

  it('n > 1: each sequence has its own matcher and its own valid output', async () => {
    const ajv = new Ajv({ strict: false });
    const engine = new Engine({ executor: new CpuReferenceExecutor(loaded.model), clock: new VirtualClock(), checkInvariants: true });
    const spec = completionSpec({ prompt: 'The dog', n: 4, max_tokens: 96, temperature: 0.9, seed: 7, response_format: { type: 'json_schema', json_schema: { name: 'enums', schema: SCHEMAS.enums } } }, 'multi', loaded);
    engine.submit(spec, { constraints: (await service.constraints(spec.responseFormat!, 4)).constraints });
    await engine.runUntilIdle();
    const r = engine.getRequest('multi')!;
    expect(r.seqs).toHaveLength(4);
    const texts = r.seqs.map((s) => loaded.tokenizer.decode([0, ...s.outputTokenIds]));
    for (const t of texts) expect(ajv.validate(SCHEMAS.enums, JSON.parse(t))).toBe(true);
    expect(new Set(texts).size).toBeGreaterThan(1);
  }, 60_000);

  it('speculative decoding with a grammar: drafts cut at the first refused token, each verification row masked in its own state; greedy outputs equal the unspeculated ones, sampled ones validate', async () => {
    const ajv = new Ajv({ strict: false });
    const run = async (speculate: boolean, temperature: number, seeds: number[]) => {
      const config = { maxNumSeqs: 64, ...(speculate ? { speculativeMethod: 'ngram' as const, numSpeculativeTokens: 4, promptLookupMax: 3, promptLookupMin: 1 } : {}) };
      const engine = new Engine({ executor: new CpuReferenceExecutor(loaded.model), clock: new VirtualClock(), checkInvariants: true, config });
      const ids: { id: string; schemaName: string }[] = [];
      for (const [schemaName, schema] of Object.entries(SCHEMAS)) {
        for (const seed of seeds) {
          const spec = completionSpec(
            { prompt: PROMPTS[seed % PROMPTS.length], max_tokens: 96, temperature, seed: 500 + seed, response_format: { type: 'json_schema', json_schema: { name: schemaName, schema } } },
            `${schemaName}-${seed}`,
            loaded,
          );
          ids.push({ id: engine.submit(spec, { constraints: (await service.constraints(spec.responseFormat!, 1)).constraints }), schemaName });
        }
      }
      await engine.runUntilIdle();
      return ids.map(({ id, schemaName }) => {
        const r = engine.getRequest(id)!;
        return { id, schemaName, text: loaded.tokenizer.decode([0, ...r.seqs[0].outputTokenIds]), reason: r.seqs[0].finishReason, drafts: r.numDraftTokens, accepted: r.numAcceptedDraftTokens };
      });
    };
    const greedyOff = await run(false, 0, [0, 1, 2]);
    const greedyOn = await run(true, 0, [0, 1, 2]);
    expect(greedyOn.map((r) => [r.id, r.text, r.reason])).toEqual(greedyOff.map((r) => [r.id, r.text, r.reason]));
    const numDrafts = greedyOn.reduce((n, r) => n + r.drafts, 0);
    const numAccepted = greedyOn.reduce((n, r) => n + r.accepted, 0);
    expect(numDrafts).toBeGreaterThan(0);
    expect(numAccepted).toBeGreaterThan(0);
    const sampled = await run(true, 0.8, [3, 4, 5, 6]);
    const problems: string[] = [];
    for (const r of sampled) {
      if (r.reason !== 'stop') continue;
      try {
        if (!ajv.validate(SCHEMAS[r.schemaName], JSON.parse(r.text))) problems.push(`${r.id}: ${ajv.errorsText()} in ${r.text}`);
      } catch {
        problems.push(`${r.id}: does not parse: ${r.text}`);
      }
    }
    console.log(`structured + speculative: greedy ${numAccepted}/${numDrafts} drafts accepted; sampled ${sampled.filter((r) => r.reason === 'stop').length}/${sampled.length} completed, ${sampled.reduce((n, r) => n + r.accepted, 0)}/${sampled.reduce((n, r) => n + r.drafts, 0)} drafts accepted`);
    expect(problems).toEqual([]);
    expect(sampled.filter((r) => r.reason === 'stop').length).toBeGreaterThanOrEqual(sampled.length - 2);
  }, 300_000);

  it('vocabulary: spaces as ▁, byte tokens as <0xNN>', () => {
    const v = encodedVocabulary(loaded.tokenizer);
    expect(v).toHaveLength(512);
    expect(v[3]).toBe('<0x00>');
    expect(v.some((p) => p.startsWith('\u2581'))).toBe(true);
    expect(v.some((p) => p.includes(' '))).toBe(false);
  });

  it('an invalid schema is refused at submit with the reason; XGrammar still serves the next one', async () => {
    const bad = (schema: unknown) => () => completionSpec({ prompt: 'x', response_format: { type: 'json_schema', json_schema: { name: 's', schema: schema as Record<string, unknown> } } }, 'r', loaded);
    expect(bad({ type: 'foo' })).toThrow(CompletionParamsError);
    expect(bad({ type: 'foo' })).toThrow(/unknown type "foo"/);
    expect(bad({ type: 'integer', minimum: 5, maximum: 3 })).toThrow(/minimum 5 is greater than maximum 3/);
    expect(bad({ properties: { a: { $ref: '#/nope' } } })).toThrow(/does not point into this schema/);
    expect(bad({ type: 'string', maxLength: -1 })).toThrow(/maxLength: must be an integer >= 0/);
    expect(() => completionSpec({ prompt: 'x', response_format: { type: 'xml' } as never }, 'r', loaded)).toThrow(/response_format.type must be "json_object" or "json_schema"/);
    expect(() => parseResponseFormat({ type: 'json_schema' })).toThrow(ResponseFormatError);
    expect(bad({ type: 'string', pattern: '(?=a)a' })).toThrow(/lookahead and lookbehind are not supported/);
    expect(bad({ type: 'string', pattern: 'a{3,1}' })).toThrow(/pattern: not a regular expression/);
    // A schema XGrammar aborts on is refused (ResponseFormatError), and the compiler goes on.
    await expect(service.compile({ type: 'json_schema', jsonSchema: { name: 's', schema: { type: 'array', minItems: 5, maxItems: 2 } } })).rejects.toThrow(ResponseFormatError);
    const ok = await service.constraints({ type: 'json_schema', jsonSchema: { name: 'p', schema: SCHEMAS.person } }, 1);
    expect(ok.constraints).toHaveLength(1);
    ok.constraints[0].dispose?.();
  });

  it('rollback takes accepted tokens back (what speculative decoding needs)', async () => {
    const [c] = (await service.constraints({ type: 'json_schema', jsonSchema: { name: 'enums', schema: SCHEMAS.enums } }, 1)).constraints;
    const mask = new Int32Array(16);
    const allowed = (m: Int32Array) => [...Array(512).keys()].filter((t) => (m[t >> 5] >>> (t & 31)) & 1);
    c.fillNextTokenBitmask(mask);
    const first = allowed(mask);
    expect(first.length).toBeGreaterThan(0);
    expect(first.length).toBeLessThan(512);
    const t = first[0];
    expect(c.acceptToken(t)).toBe(true);
    const refused = [...Array(512).keys()].find((x) => !allowed((c.fillNextTokenBitmask(mask), mask)).includes(x))!;
    expect(c.acceptToken(refused)).toBe(false);
    c.rollback(1);
    c.fillNextTokenBitmask(mask);
    expect(allowed(mask)).toEqual(first);
    expect(c.isTerminated()).toBe(false);
    c.dispose?.();
  });
});
