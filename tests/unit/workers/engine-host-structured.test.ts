/**
 * Structured output through the engine host (the worker's code, CPU reference executor, XGrammar
 * through the Node loader): response_format is compiled before the request reaches the engine,
 * the grammar is cached by schema, the 'done' event carries each sequence's JSON check, an
 * invalid schema is refused at submit with its reason while the engine goes on, and a workload
 * mixes structured and free requests.
 */
import { describe, expect, it } from 'vitest';
import Ajv from 'ajv';
import { loadKernelSources } from '../../../src/gpu/kernel-sources.node.ts';
import { loadXGrammarNode } from '../../../src/serve/xgrammar.node.ts';
import { EngineHost } from '../../../workers/engine-host.ts';
import type { StreamEvent } from '../../../workers/protocol.ts';
import { builtin } from '../model/helpers.ts';

const SCHEMA = {
  type: 'object',
  properties: { name: { type: 'string', maxLength: 10 }, age: { type: 'integer', minimum: 1, maximum: 12 }, pet: { enum: ['cat', 'dog', 'bird'] } },
  required: ['name', 'age', 'pet'],
};

async function until(cond: () => boolean, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('EngineHost: structured output', () => {
  it('compiles, generates valid JSON beside a free request, caches the grammar, refuses a bad schema', async () => {
    const host = new EngineHost({ gpu: undefined, kernelSources: loadKernelSources(), xgrammar: loadXGrammarNode });
    await host.setModel(builtin());
    const events: StreamEvent[] = [];
    const free: StreamEvent[] = [];
    const response_format = { type: 'json_schema' as const, json_schema: { name: 'kid', schema: SCHEMA, strict: true } };
    const id = await host.submitCompletion({ prompt: 'Lily', max_tokens: 80, temperature: 0.8, seed: 4, n: 2, response_format }, (e) => events.push(e));
    host.submit({ prompt: 'Lily', max_tokens: 30 }, (e) => free.push(e));
    expect(() => host.submit({ prompt: 'x', response_format })).toThrow(/submitCompletion/);
    await expect(host.submitCompletion({ prompt: 'x', response_format: { type: 'json_schema', json_schema: { name: 'bad', schema: { type: 'integer', minimum: 3, maximum: 1 } } } })).rejects.toThrow(
      /response_format.*minimum 3 is greater than maximum 1|minimum 3 is greater than maximum 1/,
    );
    await until(() => events.some((e) => e.type !== 'text') && free.some((e) => e.type !== 'text'));
    const done = events.at(-1)!;
    expect(done.type).toBe('done');
    if (done.type !== 'done') return;
    const ajv = new Ajv({ strict: false });
    expect(done.reasons).toEqual(['stop', 'stop']);
    for (const text of done.texts) expect(ajv.validate(SCHEMA, JSON.parse(text))).toBe(true);
    expect(done.json).toEqual([{ status: 'valid', message: null }, { status: 'valid', message: null }]);
    // The streamed text is the final text.
    expect(events.filter((e) => e.type === 'text' && e.seqIndex === 0).map((e) => (e.type === 'text' ? e.delta : '')).join('')).toBe(done.texts[0]);
    expect(free.at(-1)!.type).toBe('done');
    const snap = host.snapshot(0)!;
    const view = snap.requests.find((r) => r.requestId === id)!;
    expect(view.responseFormat).toBe('json_schema');
    expect(view.mask!.numTokens).toBeGreaterThan(0);
    expect(snap.structured![id]).toMatchObject({ type: 'json_schema', name: 'kid', cached: false, checks: done.json });
    expect(snap.structured![id].compileMs).toBeGreaterThan(0);
    // The same schema again: the compiled grammar is reused.
    const again: StreamEvent[] = [];
    const id2 = await host.submitCompletion({ prompt: 'Tom', max_tokens: 8, response_format }, (e) => again.push(e));
    await until(() => again.some((e) => e.type !== 'text'));
    expect(host.snapshot(0)!.structured![id2].cached).toBe(true);
    const last = again.at(-1)!;
    // Cut by max_tokens: finish_reason length, and the check says the JSON is incomplete.
    if (last.type === 'done' && last.reasons[0] === 'length') expect(last.json![0].status).toBe('incomplete');
  }, 120_000);

  it('a workload mixes structured and free requests; without a loader response_format is refused', async () => {
    const host = new EngineHost({ gpu: undefined, kernelSources: loadKernelSources(), xgrammar: loadXGrammarNode });
    await host.setModel(builtin());
    const ids = await host.runScenario({
      workload: {
        seed: 2,
        numRequests: 6,
        arrival: { kind: 'batch' },
        promptTokens: { kind: 'fixed', value: 8 },
        outputTokens: { kind: 'fixed', value: 60 },
        temperature: 0.7,
        structured: { fraction: 0.5, responseFormat: { type: 'json_schema', jsonSchema: { name: 'kid', schema: SCHEMA } } },
      },
    });
    await until(() => !host.hasWork());
    const snap = host.snapshot(0)!;
    const structured = ids.filter((id) => snap.structured![id]);
    expect(structured.length).toBeGreaterThan(0);
    expect(structured.length).toBeLessThan(ids.length);
    for (const id of structured) {
      const text = snap.texts[id][0];
      const view = snap.requests.find((r) => r.requestId === id)!;
      const check = snap.structured![id].checks![0];
      if (view.endReason === 'stop') expect(check.status).toBe('valid');
      else {
        // Cut by max_tokens: incomplete exactly when the text does not parse.
        expect(view.endReason).toBe('length');
        let parses = true;
        try {
          JSON.parse(text);
        } catch {
          parses = false;
        }
        expect(check.status).toBe(parses ? 'valid' : 'incomplete');
      }
    }
    const bare = new EngineHost({ gpu: undefined, kernelSources: loadKernelSources() });
    await bare.setModel(builtin());
    await expect(bare.submitCompletion({ prompt: 'x', response_format: { type: 'json_object' } })).rejects.toThrow(/structured output is not available here/);
  }, 120_000);
});
