/**
 * `bench lora [--backend cpu|webgpu] [--requests N] [--max-loras K]`: LoRA adapters per tenant on
 * the real model. A mixed workload (the shipped adapters and the base model, round robin, all
 * arriving at once) runs through the engine with fewer adapter slots than adapters, so slots load
 * and evict; every request's greedy tokens are compared with the CPU reference run alone with its
 * adapter merged into the weights (W + scale·B·A). Throughput (output tokens per wall second) is
 * measured for three workloads of the same prompts: all base model, all one adapter, and the mix.
 *
 * JSON: { requests, identicalToMerged, adapters, maxLoras, adapterLoads, adapterEvictions,
 *         tokPerS: { base, oneAdapter, mixed }, backend }
 */
import { Engine } from '../../engine/engine.ts';
import type { RequestSpec } from '../../engine/request.ts';
import type { LoraAdapter } from '../../engine/types.ts';
import { mergeLora } from '../../model/lora.ts';
import { argmax } from '../../model/ops.ts';
import { ReferenceModel } from '../../model/reference.ts';
import type { Model } from '../../model/types.ts';
import type { Tokenizer } from '../../model/tokenizer.ts';
import { formatNum } from './format.ts';
import type { BenchCommand } from './types.ts';

export interface LoraBenchInputs {
  model: Model;
  tokenizer: Tokenizer;
  adapters: LoraAdapter[];
}

const PROMPTS = ['Once upon a time', 'One day', 'There was a little girl', 'Once upon a time, there was', 'The sun was', 'Lily and Ben'];

/** Greedy tokens of the CPU reference alone (stops at BOS/EOS, as requests do). */
function greedyAlone(model: Model, prompt: readonly number[], maxTokens: number): number[] {
  const ref = new ReferenceModel(model);
  const tokens = prompt.slice();
  const out: number[] = [];
  for (let pos = 0; out.length < maxTokens && pos < model.config.seqLen - 1; pos++) {
    const logits = ref.forward(tokens[pos], pos);
    if (pos < tokens.length - 1) continue;
    const next = argmax(logits);
    if (next === 1 || next === 2) break;
    tokens.push(next);
    out.push(next);
  }
  return out;
}

export function loraBench(load: () => LoraBenchInputs): BenchCommand {
  return {
    name: 'lora',
    description: 'LoRA adapters per tenant: a mixed batch vs merged weights, slot loads/evictions, tok/s',
    defaultBackend: 'cpu',
    async run(ctx) {
      const backend = ctx.backend;
      if (!backend.realExecutor) throw new Error(`bench lora needs a real-model backend (cpu or webgpu), not ${backend.name}`);
      const { model, tokenizer, adapters } = load();
      const numRequests = Number(ctx.options.requests ?? 16);
      const maxLoras = Number(ctx.options['max-loras'] ?? Math.max(1, adapters.length - 1));
      const maxTokens = Number(ctx.options['max-tokens'] ?? 32);
      const names = [null, ...adapters.map((a) => a.name)];
      const spec = (i: number, adapter: string | null): RequestSpec => ({
        requestId: `r${i}`,
        promptTokenIds: tokenizer.encode(PROMPTS[i % PROMPTS.length], true, false),
        maxTokens,
        sampling: { temperature: 0 },
        ...(adapter ? { adapter, tenant: adapter } : { tenant: 'base' }),
      });
      const config = { blockSize: 16, numGpuBlocks: 256, numCpuBlocks: 0, maxNumSeqs: 8, maxNumBatchedTokens: 128, maxModelLen: model.config.seqLen, maxLoras, maxLoraRank: 16 };

      const run = async (requests: RequestSpec[]) => {
        const executor = await backend.realExecutor!({});
        const engine = new Engine({ executor, clock: backend.makeClock(), config, recordEvents: false, checkInvariants: false });
        for (const a of adapters) engine.registerAdapter(a);
        await engine.init();
        let numTokens = 0;
        engine.on((e) => e.type === 'token' && numTokens++);
        for (const r of requests) engine.submit(r);
        const t0 = performance.now();
        while (engine.hasWork()) await engine.step();
        const seconds = (performance.now() - t0) / 1000;
        const outputs = new Map(requests.map((r) => [r.requestId!, engine.getRequest(r.requestId!)!.seqs[0].outputTokenIds.slice()]));
        const stats = engine.snapshot().loraStats;
        executor.dispose();
        return { tokPerS: numTokens / seconds, outputs, stats, numTokens, seconds };
      };

      const mixedSpecs = Array.from({ length: numRequests }, (_, i) => spec(i, names[i % names.length]));
      ctx.log(`lora: ${numRequests} requests over ${names.map((n) => n ?? 'base').join(', ')} (round robin), maxLoras ${maxLoras}, ${maxTokens} tokens each (${backend.name})`);
      // A warm-up run first (pipelines, caches), not measured.
      await run(mixedSpecs.slice(0, Math.min(4, numRequests)));
      // Each workload twice, the faster run kept (a shared machine's noise only slows runs down).
      const best = async (specs: RequestSpec[]) => {
        const a = await run(specs);
        const b = await run(specs);
        return b.tokPerS > a.tokPerS ? b : a;
      };
      const mixed = await best(mixedSpecs);
      const base = await best(mixedSpecs.map((r, i) => spec(i, null)));
      const one = await best(mixedSpecs.map((r, i) => spec(i, adapters[0].name)));

      const merged = new Map<string | null, Model>([[null, model]]);
      for (const a of adapters) merged.set(a.name, { ...model, weights: mergeLora(model.config, model.weights, a) });
      let identical = 0;
      const diverged: string[] = [];
      for (const r of mixedSpecs) {
        const want = greedyAlone(merged.get(r.adapter ?? null)!, r.promptTokenIds, maxTokens);
        const got = mixed.outputs.get(r.requestId!)!;
        if (want.length === got.length && want.every((t, k) => t === got[k])) identical++;
        else diverged.push(`${r.requestId} (${r.adapter ?? 'base'})`);
      }
      const json = {
        requests: numRequests,
        identicalToMerged: identical,
        adapters: adapters.map((a) => a.name),
        maxLoras,
        adapterLoads: mixed.stats.numLoads,
        adapterEvictions: mixed.stats.numEvictions,
        tokPerS: { base: base.tokPerS, oneAdapter: one.tokPerS, mixed: mixed.tokPerS },
        backend: backend.describe ? await backend.describe() : backend.name,
      };
      const sample = (id: string) => tokenizer.decode(mixed.outputs.get(id)!).replace(/\n/g, ' / ');
      return {
        table: [
          ['workload', 'tok/s', 'tokens', 'wall s'],
          ['base model only', formatNum(base.tokPerS, 1), String(base.numTokens), formatNum(base.seconds, 2)],
          [`one adapter (${adapters[0].name})`, formatNum(one.tokPerS, 1), String(one.numTokens), formatNum(one.seconds, 2)],
          ['mixed (adapters + base)', formatNum(mixed.tokPerS, 1), String(mixed.numTokens), formatNum(mixed.seconds, 2)],
        ],
        json,
        notes: [
          `identical to the merged-weights CPU reference alone: ${identical} of ${numRequests}${diverged.length > 0 ? ` (diverged: ${diverged.join(', ')})` : ''}`,
          `adapter slots: ${maxLoras} for ${adapters.length} adapters; ${json.adapterLoads} loads, ${json.adapterEvictions} evictions in the mixed run`,
          ...mixedSpecs.slice(0, names.length).map((r, i) => `  ${(r.adapter ?? 'base').padEnd(6)} ${PROMPTS[i % PROMPTS.length]}|${sample(r.requestId!)}`),
          `backend: ${json.backend}`,
        ],
      };
    },
  };
}
