/**
 * `bench batching`: static (request-level) vs continuous (iteration-level) batching on the
 * bimodal "10 tokens vs 2000 tokens" output mix, same scheduler budget and sequence cap.
 */
import { generateWorkload } from '../../engine/workload.ts';
import { MODEL_PRESETS, HARDWARE_PRESETS } from '../presets.ts';
import { formatNum } from './format.ts';
import { pct, runWorkload } from './runWorkload.ts';
import type { BenchCommand } from './types.ts';

export const batchingBench: BenchCommand = {
  name: 'batching',
  description: 'static vs continuous batching on the 10-vs-2000-token output mix',
  async run(ctx) {
    // On a real model the mix is scaled to its context (stories260K: 8 vs 400 tokens, 512 positions)
    // and outputs ignore EOS (as vLLM's benchmarks do) so lengths follow the workload.
    const real = ctx.backend.realModel;
    const longTokens = real ? Math.floor(real.maxModelLen * 0.78) : 2000;
    const shortTokens = real ? 8 : 10;
    const numRequests = Number(ctx.options.requests ?? (real ? 24 : 400));
    const requests = generateWorkload({
      seed: ctx.seed,
      numRequests,
      arrival: { kind: 'poisson', ratePerS: real ? 16 : 8 },
      promptTokens: real ? { kind: 'uniform', min: 8, max: 64 } : { kind: 'uniform', min: 32, max: 512 },
      outputTokens: { kind: 'bimodal', short: shortTokens, long: longTokens, longFraction: 0.2 },
    }).map((r) => (real ? { ...r, stopTokenIds: [] } : r));
    const executorRequest = { model: MODEL_PRESETS['llama-3-8b'], hardware: HARDWARE_PRESETS['h100-sxm'] };
    const base = real
      ? { blockSize: 16, numGpuBlocks: 1024, numCpuBlocks: 0, maxNumSeqs: 16, maxNumBatchedTokens: 256, maxModelLen: real.maxModelLen, enablePrefixCaching: false }
      : { blockSize: 16, numGpuBlocks: 16384, numCpuBlocks: 0, maxNumSeqs: 32, maxNumBatchedTokens: 4096, maxModelLen: 4096, enablePrefixCaching: false };
    ctx.log(`batching: ${numRequests} requests, outputs ${shortTokens} or ${longTokens} tokens (20% long), batch of ${base.maxNumSeqs} (${ctx.backend.name})`);
    const stat = await runWorkload(ctx.backend, executorRequest, { ...base, batching: 'static' }, requests);
    const cont = await runWorkload(ctx.backend, executorRequest, { ...base, batching: 'continuous' }, requests);
    const summary = (s: typeof stat) => ({
      throughputTokPerS: s.throughputTokPerS,
      p50E2eMs: pct(s.e2eMs, 50),
      p99E2eMs: pct(s.e2eMs, 99),
      p50TtftMs: pct(s.ttftMs, 50),
      p99TtftMs: pct(s.ttftMs, 99),
    });
    const json = { static: summary(stat), continuous: summary(cont) };
    const row = (name: string, s: ReturnType<typeof summary>, r: typeof stat) => [
      name,
      formatNum(s.throughputTokPerS, 0),
      formatNum(s.p50E2eMs / 1000, 2),
      formatNum(s.p99E2eMs / 1000, 2),
      formatNum(s.p50TtftMs / 1000, 2),
      formatNum(s.p99TtftMs / 1000, 2),
      formatNum(r.meanRunningSeqs, 1),
      formatNum(r.makespanMs / 1000, 1),
    ];
    return {
      table: [
        ['batching', 'tok/s', 'p50 e2e s', 'p99 e2e s', 'p50 TTFT s', 'p99 TTFT s', 'mean seqs', 'makespan s'],
        row('static', json.static, stat),
        row('continuous', json.continuous, cont),
      ],
      json,
      notes: [
        `continuous / static: throughput ${formatNum(json.continuous.throughputTokPerS / json.static.throughputTokPerS, 2)}x, p50 e2e ${formatNum(json.continuous.p50E2eMs / json.static.p50E2eMs, 2)}x`,
        real ? `real model ${real.name} on ${ctx.backend.name}; the 10-vs-2000 mix scaled to its ${real.maxModelLen}-token context` : `model ${executorRequest.model.name} on ${executorRequest.hardware.name} (simulated)`,
      ],
    };
  },
};
