/**
 * What structured output costs per token, on this machine: (1) the logits readback a constrained
 * greedy row adds on WebGPU (Dawn for Node): the same 8-sequence greedy decode with every row
 * marked constrained (its logits row read back) against none, executor time per step; (2) the
 * mask itself (XGrammar bitmask + applying it on the CPU), per token, on the real model; (3) the
 * grammar compile per schema and the tokenizer info, once.
 *
 *   npx tsx scripts/bench-structured.ts [--backend cpu|webgpu] [--steps N]
 */
import { Engine } from '../src/engine/engine.ts';
import { VirtualClock } from '../src/engine/clock.ts';
import type { Executor, StepOutput, StepPlan } from '../src/engine/types.ts';
import { loadModel } from '../src/model/load.ts';
import { CpuReferenceExecutor } from '../src/model/reference.ts';
import { completionSpec, stopTokenIdsOf } from '../src/serve/requests.ts';
import { GrammarService } from '../src/serve/structured.ts';
import { loadXGrammarNode } from '../src/serve/xgrammar.node.ts';
import { builtinModelPath, builtinTokenizerPath, fail, parseCommandLine, parseNumber, readBytes, usageError } from './cli-args.ts';

const args = parseCommandLine(process.argv.slice(2), { backend: { type: 'string' }, steps: { type: 'string' } });
const backend = args.backend ?? 'webgpu';
if (backend !== 'cpu' && backend !== 'webgpu') usageError(`unknown --backend ${JSON.stringify(backend)} (available: cpu, webgpu)`);
const numSteps = parseNumber('steps', args.steps, 60, { integer: true, min: 5, max: 400 });
const loaded = loadModel(readBytes(builtinModelPath, 'model'), builtinModelPath, readBytes(builtinTokenizerPath, 'tokenizer'), builtinTokenizerPath);

async function makeExecutor(): Promise<{ executor: Executor; cleanup: () => void }> {
  if (backend === 'cpu') return { executor: new CpuReferenceExecutor(loaded.model), cleanup: () => {} };
  const { nodeGpuExecutor } = await import('./node-gpu.ts');
  return nodeGpuExecutor(loaded.model);
}

/** Mean executor wall ms per step of 8 greedy decoding sequences; `constrained` marks every row so its logits come back. */
async function decodeStepMs(executor: Executor, constrained: boolean): Promise<number> {
  const times: number[] = [];
  const timed: Executor = {
    name: executor.name,
    vocabSize: executor.vocabSize,
    configure: (g) => executor.configure(g),
    async execute(plan: StepPlan): Promise<StepOutput> {
      if (constrained) for (const s of plan.seqs) s.constrained = true;
      const t0 = performance.now();
      const out = await executor.execute(plan);
      if (plan.seqs.every((s) => s.tokenIds.length === 1)) times.push(performance.now() - t0);
      return out;
    },
    dispose: () => {},
  };
  const engine = new Engine({ executor: timed, clock: new VirtualClock(), config: { maxNumSeqs: 8 } });
  for (let i = 0; i < 8; i++) engine.submit({ promptTokenIds: [1, 400 + i, 300 + i], maxTokens: numSteps, stopTokenIds: [], sampling: { temperature: 0, seed: 1 } });
  await engine.runUntilIdle();
  const kept = times.slice(5); // warm
  return kept.reduce((a, b) => a + b, 0) / kept.length;
}

const { executor, cleanup } = await makeExecutor();
try {
  await executor.configure({ blockSize: 16, numGpuBlocks: 64, numCpuBlocks: 0 });
  // Alternate so drift hits both alike.
  const free: number[] = [];
  const withLogits: number[] = [];
  for (let round = 0; round < 3; round++) {
    free.push(await decodeStepMs(executor, false));
    withLogits.push(await decodeStepMs(executor, true));
  }
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  console.log(`${executor.name}: 8 greedy decode rows per step, executor wall ms per step`);
  console.log(`  argmax only (free rows):           ${mean(free).toFixed(3)} ms  (rounds ${free.map((x) => x.toFixed(2)).join(', ')})`);
  console.log(`  logits rows read back (constrained): ${mean(withLogits).toFixed(3)} ms  (rounds ${withLogits.map((x) => x.toFixed(2)).join(', ')})`);
  console.log(`  readback cost: ${((mean(withLogits) - mean(free)) / 8).toFixed(4)} ms per constrained row (${loaded.model.config.vocabSize * 4} bytes each)`);
} finally {
  cleanup();
}

// The mask itself and the compile, on the CPU reference (the mask does not depend on the executor).
const t0 = performance.now();
const service = new GrammarService(await loadXGrammarNode(), loaded.tokenizer, stopTokenIdsOf(loaded));
const schema = { type: 'object', properties: { name: { type: 'string', maxLength: 12 }, age: { type: 'integer', minimum: 1, maximum: 12 }, pet: { enum: ['cat', 'dog', 'bird'] } }, required: ['name', 'age', 'pet'] };
const spec0 = completionSpec({ prompt: 'Lily', response_format: { type: 'json_schema', json_schema: { name: 'kid', schema } } }, 'x', loaded);
const compiled = await service.compile(spec0.responseFormat!);
console.log(`XGrammar: loaded + tokenizer info + compiler ${(performance.now() - t0 - compiled.compileMs).toFixed(0)} ms, schema compile ${compiled.compileMs.toFixed(1)} ms; json_object compile ${(await service.compile({ type: 'json_object' })).compileMs.toFixed(1)} ms`);
const engine = new Engine({ executor: new CpuReferenceExecutor(loaded.model), clock: new VirtualClock(), config: { maxNumSeqs: 32 } });
for (let seed = 0; seed < 32; seed++) {
  const spec = completionSpec({ prompt: 'Lily', max_tokens: 96, temperature: 0.8, seed, response_format: { type: 'json_schema', json_schema: { name: 'kid', schema } } }, `r${seed}`, loaded);
  engine.submit(spec, { constraints: (await service.constraints(spec.responseFormat!, 1)).constraints });
}
await engine.runUntilIdle();
let n = 0;
let ms = 0;
const perMask: number[] = [];
for (const r of engine.requests()) {
  n += r.mask!.numTokens;
  ms += r.mask!.totalMs;
}
for (const s of engine.stepsSince(0)) for (const m of s.masks ?? []) perMask.push(m.ms);
perMask.sort((a, b) => a - b);
console.log(`mask (bitmask + apply, CPU): ${(ms / n).toFixed(4)} ms per token over ${n} tokens; p50 ${perMask[Math.floor(perMask.length / 2)].toFixed(4)} ms, p99 ${perMask[Math.floor(perMask.length * 0.99)].toFixed(4)} ms`);
