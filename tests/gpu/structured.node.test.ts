/**
 * Structured output on the WebGPU engine (Dawn for Node): constrained greedy rows get their logits
 * read back and masked on the CPU while a free greedy row in the same batch keeps the GPU argmax;
 * the constrained outputs equal the CPU reference's under the same grammar (batch-invariant
 * forward pass) and validate against their schemas (ajv).
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import Ajv from 'ajv';
import { create, globals } from 'webgpu';
import { Engine } from '../../src/engine/engine.ts';
import { VirtualClock } from '../../src/engine/clock.ts';
import type { Executor } from '../../src/engine/types.ts';
import { acquireDevice, type GpuContext } from '../../src/gpu/device.ts';
import { GpuExecutor } from '../../src/gpu/executor.ts';
import { loadKernelSources } from '../../src/gpu/kernel-sources.node.ts';
import { GpuRuntime } from '../../src/gpu/step.ts';
import { loadModel, type LoadedModel } from '../../src/model/load.ts';
import { CpuReferenceExecutor } from '../../src/model/reference.ts';
import { completionSpec, stopTokenIdsOf } from '../../src/serve/requests.ts';
import { GrammarService } from '../../src/serve/structured.ts';
import { loadXGrammarNode } from '../../src/serve/xgrammar.node.ts';

Object.assign(globalThis, globals);
const root = resolve(import.meta.dirname, '../..');

const SCHEMAS: Record<string, Record<string, unknown>> = {
  kid: { type: 'object', properties: { name: { type: 'string', maxLength: 10 }, age: { type: 'integer', minimum: 1, maximum: 12 } }, required: ['name', 'age'] },
  mood: { type: 'object', properties: { mood: { enum: ['happy', 'sad'] }, level: { type: 'integer', minimum: 0, maximum: 5 } }, required: ['mood', 'level'] },
  list: { type: 'array', items: { type: 'integer', minimum: 0, maximum: 9 }, minItems: 2, maxItems: 3 },
};

let loaded: LoadedModel;
let service: GrammarService;
let ctx: GpuContext;
let runtime: GpuRuntime;

beforeAll(async () => {
  loaded = loadModel(new Uint8Array(readFileSync(resolve(root, 'public/models/stories260K.bin'))), 'stories260K.bin', new Uint8Array(readFileSync(resolve(root, 'public/models/tok512.bin'))));
  service = new GrammarService(await loadXGrammarNode(), loaded.tokenizer, stopTokenIdsOf(loaded));
  ctx = await acquireDevice(create([]));
  runtime = GpuRuntime.fromContext(ctx, loadKernelSources());
});

afterAll(() => {
  runtime?.destroy();
  ctx?.destroy();
});

/** Greedy constrained requests (one per schema) beside a free one, on `executor`; the outputs by id. */
async function run(executor: Executor): Promise<Map<string, { tokens: number[]; reason: string | null }>> {
  const engine = new Engine({ executor, clock: new VirtualClock(), checkInvariants: true, config: { maxNumSeqs: 8 } });
  for (const [name, schema] of Object.entries(SCHEMAS)) {
    const spec = completionSpec({ prompt: 'Lily', max_tokens: 64, temperature: 0, response_format: { type: 'json_schema', json_schema: { name, schema } } }, name, loaded);
    engine.submit(spec, { constraints: (await service.constraints(spec.responseFormat!, 1)).constraints });
  }
  engine.submit(completionSpec({ prompt: 'Lily', max_tokens: 24, temperature: 0 }, 'free', loaded));
  await engine.runUntilIdle();
  return new Map([...engine.requests()].map((r) => [r.requestId, { tokens: r.seqs[0].outputTokenIds, reason: r.seqs[0].finishReason }]));
}

describe('structured output on WebGPU (Dawn for Node)', () => {
  it('constrained greedy rows match the CPU reference and validate; the free row is untouched', async () => {
    const gpuExecutor = new GpuExecutor(ctx, runtime, loaded.model);
    const onGpu = await run(gpuExecutor);
    gpuExecutor.dispose();
    const onCpu = await run(new CpuReferenceExecutor(loaded.model));
    const ajv = new Ajv({ strict: false });
    for (const name of Object.keys(SCHEMAS)) {
      const g = onGpu.get(name)!;
      expect(g.tokens, name).toEqual(onCpu.get(name)!.tokens);
      expect(g.reason, name).toBe('stop');
      expect(ajv.validate(SCHEMAS[name], JSON.parse(loaded.tokenizer.decode([0, ...g.tokens]))), name).toBe(true);
    }
    expect(onGpu.get('free')!.tokens).toEqual(onCpu.get('free')!.tokens);
    expect(loaded.tokenizer.decode([0, ...onGpu.get('free')!.tokens]).startsWith('{')).toBe(false);
  }, 300_000);
});
