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
    const numRequests = Number(ctx.options.requests ?? 400);
    const requests = generateWorkload({
      seed: ctx.seed,
      numRequests,
      arrival: { kind: 'poisson', ratePerS: 8 },
      promptTokens: { kind: 'uniform', min: 32, max: 512 },
      outputTokens: { kind: 'bimodal', short: 10, long: 2000, longFraction: 0.2 },
    });
    const executorRequest = { model: MODEL_PRESETS['llama-3-8b'], hardware: HARDWARE_PRESETS['h100-sxm'] };
    const base = { blockSize: 16, numGpuBlocks: 16384, numCpuBlocks: 0, maxNumSeqs: 32, maxNumBatchedTokens: 4096, maxModelLen: 4096, enablePrefixCaching: false };
    ctx.log(`batching: ${numRequests} requests, outputs 10 or 2000 tokens (20% long), batch of ${base.maxNumSeqs} (${ctx.backend.name})`);
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
        `model ${executorRequest.model.name} on ${executorRequest.hardware.name}`,
      ],
    };
  },
};
