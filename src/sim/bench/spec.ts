/**
 * `bench spec`: speculative decoding (n-gram prompt lookup) on the real model, greedy, story
 * prompts all at once through continuous batching: speculation off, then on for k = 1 … 6 draft
 * tokens. For each run: generated tokens per second (on the engine clock: each step's executor
 * time), generated tokens per sequence per decode step (1.0 without speculation), engine steps a
 * sequence takes, the acceptance rate and mean accepted length, and whether every output is
 * identical to the run without speculation (greedy: it must be). `--repeats N` interleaves N rounds
 * of every configuration and reports the median tok/s (the other figures do not vary).
 *
 * Which regime a figure comes from matters: on the CPU reference and on a software GPU a step's
 * cost grows with its rows, so draft rows that are rejected are paid for; on a real GPU a tiny
 * model's step is dispatch-bound and extra rows are nearly free, so fewer steps is the gain.
 */
import { Engine } from '../../engine/engine.ts';
import { DEFAULT_SCHEDULER_CONFIG, type SchedulerConfig } from '../../engine/config.ts';
import type { RequestSpec } from '../../engine/request.ts';
import type { Tokenizer } from '../../model/tokenizer.ts';
import { storyPassages } from '../../serve/story-prompts.ts';
import { formatNum } from './format.ts';
import type { BenchCommand } from './types.ts';

export interface SpecRunFigures {
  /** Generated tokens per second of engine-clock time (the executors' step times). */
  tokPerS: number;
  /** The same over host wall time (scheduling and sampling included). */
  wallTokPerS: number;
  /** Tokens a decoding sequence gained per step it decoded in (1.0 without speculation). */
  tokensPerSeqStep: number;
  /** Engine steps a request was scheduled in, on average. */
  stepsPerSeq: number;
  numSteps: number;
  numGeneratedTokens: number;
  /**
   * Decode rows computed (draft rows included) per token they produced: the cost where a step
   * costs in proportion to its rows (the CPU reference, a software GPU). 1.0 without speculation.
   */
  decodeRowsPerToken: number;
}

export interface SpecOnFigures extends SpecRunFigures {
  k: number;
  acceptanceRate: number;
  meanAcceptedLength: number;
  /** Accepted drafts / drafts verified, by draft position. */
  acceptanceByPos: number[];
  identicalOutputs: boolean;
}

/** The first `numWords` words of each story passage, in turn: prompts a story model continues. */
export function storyPrompts(numPrompts: number, numWords = 12): string[] {
  return Array.from({ length: numPrompts }, (_, i) => {
    const words = storyPassages[i % storyPassages.length].split(/\s+/);
    const start = Math.floor(i / storyPassages.length) * numWords;
    return words.slice(start, start + numWords).join(' ');
  });
}

/** `tokenizer()` gives the real model's tokenizer (read only when the benchmark runs). */
export function specBench(tokenizer: () => Tokenizer): BenchCommand {
  return {
    name: 'spec',
    description: 'speculative decoding (ngram) off vs on, k = 1..6, greedy story prompts on the real model (cpu, webgpu)',
    defaultBackend: 'cpu',
    async run(ctx) {
      const real = ctx.backend.realModel;
      const makeExecutor = ctx.backend.realExecutor;
      if (!real || !makeExecutor) throw new Error(`spec: needs a real model's backend (--backend cpu or webgpu), not ${ctx.backend.name}`);
      const numPrompts = Number(ctx.options.requests ?? 8);
      const maxTokens = Number(ctx.options['max-tokens'] ?? 200);
      const kOn = Number(ctx.options.k ?? DEFAULT_SCHEDULER_CONFIG.numSpeculativeTokens);
      const maxK = Number(ctx.options['max-k'] ?? 6);
      const repeats = Number(ctx.options.repeats ?? 1);
      for (const [name, v] of Object.entries({ requests: numPrompts, 'max-tokens': maxTokens, k: kOn, 'max-k': maxK, repeats })) {
        if (!(Number.isInteger(v) && v >= 1)) throw new Error(`spec: --${name} must be a positive integer, got ${v}`);
      }
      const tok = tokenizer();
      const prompts = storyPrompts(numPrompts);
      const requests: RequestSpec[] = prompts.map((p, i) => {
        const promptTokenIds = tok.encode(p, true, false);
        return {
          requestId: `s${i}`,
          promptTokenIds,
          maxTokens: Math.min(maxTokens, real.maxModelLen - promptTokenIds.length),
          sampling: { temperature: 0, topP: 1, topK: 0, seed: 1 },
          // Fixed lengths (as vLLM's benchmarks ignore EOS), so every run generates the same tokens.
          stopTokenIds: [],
        };
      });
      const base: Partial<SchedulerConfig> = {
        blockSize: 16,
        numGpuBlocks: 64 + numPrompts * Math.ceil(real.maxModelLen / 16),
        numCpuBlocks: 0,
        maxNumSeqs: Math.max(16, numPrompts),
        maxNumBatchedTokens: 256,
        maxModelLen: real.maxModelLen,
      };
      const machine = ctx.backend.describe ? await ctx.backend.describe() : ctx.backend.name;
      ctx.log(`spec: ${numPrompts} story prompts, ${maxTokens} greedy tokens each, all at once; ${machine}`);

      const run = async (extra: Partial<SchedulerConfig>, reqs: RequestSpec[] = requests) => {
        const executor = await makeExecutor({});
        const clock = ctx.backend.makeClock();
        const engine = new Engine({ executor, clock, config: { ...base, ...extra }, recordEvents: false, checkInvariants: false });
        await engine.init();
        if (executor.warmUp) await executor.warmUp({ maxTokens: base.maxNumBatchedTokens!, maxSeqs: base.maxNumSeqs! });
        await executor.warmedUp;
        let decodeSeqSteps = 0;
        let decodeTokens = 0;
        let decodeRows = 0;
        const stepsOf = new Map<string, number>();
        const startMs = clock.nowMs();
        const wall0 = performance.now();
        for (const r of reqs) engine.submit(r);
        while (engine.hasWork()) {
          const outcome = await engine.step();
          if (outcome.kind !== 'ran') continue;
          for (const v of outcome.step.seqs) {
            stepsOf.set(v.requestId, (stepsOf.get(v.requestId) ?? 0) + 1);
            if (v.numDecodeTokens > 0) {
              decodeSeqSteps++;
              decodeRows += v.numDecodeTokens;
              decodeTokens += 1 + (v.numAcceptedTokens ?? 0);
            }
          }
        }
        const wallMs = performance.now() - wall0;
        const makespanMs = clock.nowMs() - startMs;
        executor.dispose();
        const outputs = reqs.map((r) => engine.getRequest(r.requestId!)!.seqs[0].outputTokenIds);
        const numGeneratedTokens = outputs.reduce((n, o) => n + o.length, 0);
        const figures: SpecRunFigures = {
          tokPerS: makespanMs > 0 ? (numGeneratedTokens * 1000) / makespanMs : 0,
          wallTokPerS: wallMs > 0 ? (numGeneratedTokens * 1000) / wallMs : 0,
          tokensPerSeqStep: decodeSeqSteps > 0 ? decodeTokens / decodeSeqSteps : 0,
          stepsPerSeq: [...stepsOf.values()].reduce((a, b) => a + b, 0) / reqs.length,
          numSteps: engine.metrics.numSteps,
          numGeneratedTokens,
          decodeRowsPerToken: decodeTokens > 0 ? decodeRows / decodeTokens : 0,
        };
        return { figures, outputs, spec: engine.metricsSummary().spec };
      };

      // Untimed warm-up of both paths (JIT, pipelines), so the first measured run is not penalised.
      const short = requests.map((r) => ({ ...r, maxTokens: Math.min(r.maxTokens, 24) }));
      await run({ speculativeMethod: 'ngram', numSpeculativeTokens: 2 }, short);
      await run({ speculativeMethod: 'off' }, short);
      // Rounds interleave every configuration, so a slow patch of a shared machine hits all of them;
      // each figure's tok/s is its median over the rounds (the token and step counts never vary).
      const ks = Array.from({ length: Math.max(maxK, kOn) }, (_, i) => i + 1).filter((k) => k <= maxK || k === kOn);
      type Run = Awaited<ReturnType<typeof run>>;
      const rounds: { off: Run; on: Run[] }[] = [];
      for (let round = 0; round < repeats; round++) {
        const off = await run({ speculativeMethod: 'off' });
        ctx.log(`  round ${round + 1} off: ${formatNum(off.figures.tokPerS, 1)} tok/s, ${off.figures.numSteps} steps`);
        const on: Run[] = [];
        for (const k of ks) {
          const r = await run({ speculativeMethod: 'ngram', numSpeculativeTokens: k, promptLookupMax: 4, promptLookupMin: 2 });
          on.push(r);
          ctx.log(`  round ${round + 1} k ${k}: ${formatNum(r.figures.tokPerS, 1)} tok/s, ${r.figures.numSteps} steps, acceptance ${formatNum(100 * r.spec.acceptanceRate, 1)}%`);
        }
        rounds.push({ off, on });
      }
      const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
      const withMedian = (rs: Run[]): SpecRunFigures => ({
        ...rs[0].figures,
        tokPerS: median(rs.map((r) => r.figures.tokPerS)),
        wallTokPerS: median(rs.map((r) => r.figures.wallTokPerS)),
      });
      const offRun = rounds[0].off;
      const off = { figures: withMedian(rounds.map((r) => r.off)), outputs: offRun.outputs };
      const byK: SpecOnFigures[] = ks.map((k, idx) => {
        const rs = rounds.map((r) => r.on[idx]);
        const first = rs[0];
        const identicalOutputs = rs.every((r) => r.outputs.every((o, i) => o.length === off.outputs[i].length && o.every((t, j) => t === off.outputs[i][j])));
        return {
          k,
          ...withMedian(rs),
          acceptanceRate: first.spec.acceptanceRate,
          meanAcceptedLength: first.spec.meanAcceptedLength,
          acceptanceByPos: first.spec.draftsPerPos.map((n, i) => (n > 0 ? first.spec.acceptedPerPos[i] / n : 0)),
          identicalOutputs,
        };
      });
      const on = byK.find((r) => r.k === kOn)!;
      const json = {
        machine,
        backend: ctx.backend.name,
        model: real.name,
        workload: { numPrompts, maxTokens, temperature: 0, promptLookupMax: 4, promptLookupMin: 2, maxNumBatchedTokens: base.maxNumBatchedTokens },
        repeats,
        regime:
          ctx.backend.name === 'webgpu'
            ? 'WebGPU on the adapter named in machine; on a software adapter (SwiftShader) a step costs more with every row, as on the CPU'
            : 'CPU reference executor: every row is a full forward pass of its own, so a step costs in proportion to its rows',
        off: off.figures,
        on,
        byK,
      };
      const row = (name: string, f: SpecRunFigures, o?: SpecOnFigures) => [
        name,
        formatNum(f.tokPerS, 1),
        formatNum(f.wallTokPerS, 1),
        formatNum(f.tokensPerSeqStep, 2),
        formatNum(f.stepsPerSeq, 1),
        formatNum(f.decodeRowsPerToken, 2),
        o ? formatNum(100 * o.acceptanceRate, 1) : '-',
        o ? formatNum(o.meanAcceptedLength, 2) : '-',
        o ? (o.identicalOutputs ? 'yes' : 'NO') : '-',
      ];
      const best = byK.reduce((a, b) => (b.tokPerS > a.tokPerS ? b : a));
      return {
        table: [
          ['speculation', 'tok/s', 'wall tok/s', 'tok/seq/step', 'steps/seq', 'rows/tok', 'accept %', 'mean len', 'identical'],
          row('off', off.figures),
          ...byK.map((o) => row(`ngram k=${o.k}`, o, o)),
        ],
        json,
        notes: [
          `"on" in the JSON is k = ${kOn}; the fastest was k = ${best.k} (${formatNum(best.tokPerS / off.figures.tokPerS, 2)}x the tok/s without speculation).`,
          `tok/s is on the engine clock (each step's executor time); on ${ctx.backend.name === 'webgpu' ? 'a software GPU' : 'the CPU reference'} a step costs more with every row, so rejected drafts are paid for.`,
        ],
      };
    },
  };
}
