/**
 * `bench kv`: one seeded mixed-length workload under a fixed KV budget, paged (16-token blocks on
 * demand) vs contiguous max-length preallocation (each sequence reserves prompt + maxTokens when
 * admitted). Outputs end at EOS before maxTokens, as real ones do, so reservations run ahead of
 * use. Same scheduler, same cost model; only the allocation differs.
 */
import { generateWorkload } from '../../engine/workload.ts';
import { MODEL_PRESETS, HARDWARE_PRESETS } from '../presets.ts';
import { formatNum } from './format.ts';
import { runWorkload } from './runWorkload.ts';
import type { BenchCommand } from './types.ts';

export const kvBench: BenchCommand = {
  name: 'kv',
  description: 'paged KV cache vs contiguous max-length preallocation under one KV budget',
  async run(ctx) {
    const numRequests = Number(ctx.options.requests ?? 1000);
    const numGpuBlocks = Number(ctx.options.blocks ?? 2048);
    if (!(numRequests > 0) || !(numGpuBlocks > 0) || !(Number(ctx.options['max-tokens'] ?? 640) >= 512)) {
      throw new Error('kv: --requests and --blocks must be positive and --max-tokens at least 512');
    }
    const blockSize = 16;
    // Every request asks for maxTokens; its actual output (at most 512) ends at EOS.
    const maxTokens = Number(ctx.options['max-tokens'] ?? 640);
    const maxActualOutput = 512;
    const requests = generateWorkload({
      seed: ctx.seed,
      numRequests,
      arrival: { kind: 'poisson', ratePerS: 40 },
      promptTokens: { kind: 'lognormal', median: 192, sigma: 0.7, min: 16, max: 1024 },
      // Actual output lengths.
      outputTokens: { kind: 'lognormal', median: 224, sigma: 0.6, min: 8, max: maxActualOutput },
    });
    const eos = new Map<string, number>();
    for (const r of requests) {
      eos.set(r.requestId!, r.promptTokenIds.length + r.maxTokens);
      r.maxTokens = maxTokens;
    }
    const executorRequest = { model: MODEL_PRESETS['llama-3-8b'], hardware: HARDWARE_PRESETS['h100-sxm'], eosPosition: (id: string) => eos.get(id) };
    const base = { blockSize, numGpuBlocks, numCpuBlocks: 0, maxNumSeqs: 512, maxNumBatchedTokens: 2048, maxModelLen: 2048, enablePrefixCaching: false };
    ctx.log(`kv: ${numRequests} requests, KV budget ${numGpuBlocks} x ${blockSize} = ${numGpuBlocks * blockSize} token slots (${ctx.backend.name})`);
    const paged = await runWorkload(ctx.backend, executorRequest, { ...base, kvPreallocation: 'none' }, requests);
    const contiguous = await runWorkload(ctx.backend, executorRequest, { ...base, kvPreallocation: 'max-length' }, requests);
    const summary = (s: typeof paged) => ({
      slotUtilization: s.slotUtilization,
      admittedSeqs: s.meanRunningSeqs,
      throughputTokPerS: s.throughputTokPerS,
    });
    const json = { paged: summary(paged), contiguous: summary(contiguous) };
    const row = (name: string, s: typeof paged) => [
      name,
      formatNum(s.slotUtilization, 3),
      formatNum(s.meanRunningSeqs, 1),
      String(s.peakRunningSeqs),
      formatNum(s.throughputTokPerS, 0),
      String(s.numPreemptions),
      formatNum(s.makespanMs / 1000, 1),
    ];
    return {
      table: [
        ['allocation', 'slot util', 'mean seqs', 'peak seqs', 'tok/s', 'preemptions', 'makespan s'],
        row('paged (16-token blocks)', paged),
        row('contiguous (max-length)', contiguous),
      ],
      json,
      notes: [
        `admitted seqs paged / contiguous = ${formatNum(paged.meanRunningSeqs / contiguous.meanRunningSeqs, 2)}x; throughput ${formatNum(paged.throughputTokPerS / contiguous.throughputTokPerS, 2)}x`,
        `every request asks for ${maxTokens} tokens, outputs end at EOS (median 224, at most ${maxActualOutput}); contiguous reserves prompt + ${maxTokens}`,
        `model ${executorRequest.model.name} on ${executorRequest.hardware.name}; slot util = filled / allocated slots, weighted by step time`,
      ],
    };
  },
};
