/**
 * `bench quant`: what quantized weights buy and cost, measured on a real executor (the backend's:
 * `cpu`, the reference forward pass, or `webgpu`).
 *
 * Per weight type (f32, Q8_0, Q4_0, quantized on load from the f32 model):
 *   weightBytes     the weights as the executor holds them (blocks, norms, f32 fallbacks)
 *   tokPerS         decode tokens per second of one sequence (the bandwidth-bound regime on a
 *                   real GPU), after a prefill and a warm-up pass
 * and on the built-in (trained) model, against f32 over the story prompts (src/serve/story-prompts.ts):
 *   top1Agreement   teacher-forced: the f32 greedy continuation is fed to both models; the
 *                   fraction of positions whose argmax equals f32's
 *   meanKl          the mean KL(p_f32 || p_quant) of the next-token distributions, same positions (nats)
 *   firstDivergence free greedy generation: the mean over prompts of the first generated
 *                   position where the quantized model's token differs from f32's (a prompt that
 *                   never diverges counts the whole continuation); per prompt in firstDivergenceByPrompt
 * Synthetic shapes (15M/42M/110M: seeded random weights) give bytes and tok/s only (`--models`).
 * The executor is driven directly, every prompt one sequence in one step per position.
 */
import type { Executor, ScheduledSeq, StepPlan } from '../../engine/types.ts';
import { modelWeightBytes, quantizeModel, WEIGHT_TYPE_LABEL, type QuantType, type WeightType } from '../../model/quant.ts';
import { syntheticModel, tinyllamaShapes } from '../../model/synthetic.ts';
import type { Tokenizer } from '../../model/tokenizer.ts';
import type { Model } from '../../model/types.ts';
import { storyPassages } from '../../serve/story-prompts.ts';
import { formatNum } from './format.ts';
import type { BenchCommand } from './types.ts';

const QUANT_TYPES: QuantType[] = ['q8_0', 'q4_0'];
const BLOCK_SIZE = 16;

/** What one rollout step gives per sequence. */
interface Rollout {
  tokens: number[][]; // [prompt][step] argmax at each step
  logits: Float32Array[][] | null; // [prompt][step] when asked for
  /** Wall ms of each step (step 0 is the prefill). */
  stepMs: number[];
}

/**
 * Runs every prompt as one sequence: step 0 prefills the prompt, step k > 0 feeds one token:
 * `forced[p][k - 1]` when given (teacher forcing), else the sequence's own argmax of step k - 1.
 */
export async function rollout(executor: Executor, prompts: number[][], steps: number, opts: { forced?: number[][]; keepLogits: boolean }): Promise<Rollout> {
  const tables = prompts.map((p, i) => {
    const n = Math.ceil((p.length + steps) / BLOCK_SIZE);
    const first = prompts.slice(0, i).reduce((a, q) => a + Math.ceil((q.length + steps) / BLOCK_SIZE), 0);
    return Array.from({ length: n }, (_, b) => first + b);
  });
  const numBlocks = tables.reduce((a, t) => a + t.length, 0);
  executor.configure({ blockSize: BLOCK_SIZE, numGpuBlocks: numBlocks, numCpuBlocks: 0 });
  const tokens = prompts.map(() => [] as number[]);
  const logits = opts.keepLogits ? prompts.map(() => [] as Float32Array[]) : null;
  const stepMs: number[] = [];
  // Logits are read back only for sampled rows (temperature > 0); the argmax either way.
  const sampling = { temperature: opts.keepLogits ? 1 : 0, topP: 1, topK: 0, seed: 1 };
  for (let k = 0; k < steps; k++) {
    const seqs: ScheduledSeq[] = prompts.map((p, i) => {
      const tokenIds = k === 0 ? p : [opts.forced ? opts.forced[i][k - 1] : tokens[i][k - 1]];
      const startPosition = k === 0 ? 0 : p.length + k - 1;
      const slots = tokenIds.map((_, j) => {
        const pos = startPosition + j;
        return tables[i][Math.floor(pos / BLOCK_SIZE)] * BLOCK_SIZE + (pos % BLOCK_SIZE);
      });
      return { seqId: i, requestId: `q${i}`, tokenIds, startPosition, slots, blockTable: tables[i], needsLogits: true, sampling };
    });
    const plan: StepPlan = { stepIndex: k + 1, seqs, copies: [], swapOut: [], swapIn: [], numBatchedTokens: seqs.reduce((a, s) => a + s.tokenIds.length, 0) };
    const t0 = performance.now();
    const out = await executor.execute(plan);
    stepMs.push(performance.now() - t0);
    for (const o of out.outputs) {
      tokens[o.seqId].push(o.argmax);
      if (logits) {
        if (!o.logits) throw new Error(`quant: the executor returned no logits for sequence ${o.seqId}`);
        logits[o.seqId].push(o.logits);
      }
    }
  }
  return { tokens, logits, stepMs };
}

/** KL(P || Q) in nats of the softmaxes of two logit rows (float64). */
export function klDivergence(p: Float32Array, q: Float32Array): number {
  const logSoftmax = (x: Float32Array) => {
    let max = -Infinity;
    for (const v of x) max = Math.max(max, v);
    let sum = 0;
    for (const v of x) sum += Math.exp(v - max);
    const lse = max + Math.log(sum);
    return Float64Array.from(x, (v) => v - lse);
  };
  const lp = logSoftmax(p);
  const lq = logSoftmax(q);
  let kl = 0;
  for (let i = 0; i < lp.length; i++) kl += Math.exp(lp[i]) * (lp[i] - lq[i]);
  return Math.max(0, kl);
}

const argmaxOf = (x: Float32Array): number => {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
};

export interface QualityResult {
  top1Agreement: number;
  meanKl: number;
  firstDivergence: number;
  /** Per prompt: the first generated position that differs from f32's, null when none within the run. */
  firstDivergenceByPrompt: (number | null)[];
  positions: number;
}

/**
 * Quality of `quant` against the f32 run `reference` (its own greedy rollout with logits, which
 * is also the teacher-forced run of f32 on its greedy text).
 */
export async function measureQuality(executor: Executor, prompts: number[][], steps: number, reference: Rollout): Promise<QualityResult> {
  const forced = reference.tokens;
  const tf = await rollout(executor, prompts, steps, { forced, keepLogits: true });
  let agree = 0;
  let kl = 0;
  let positions = 0;
  for (let p = 0; p < prompts.length; p++) {
    for (let k = 0; k < steps; k++) {
      const ql = tf.logits![p][k];
      if (argmaxOf(ql) === forced[p][k]) agree++;
      kl += klDivergence(reference.logits![p][k], ql);
      positions++;
    }
  }
  const free = await rollout(executor, prompts, steps, { keepLogits: false });
  const firstDivergenceByPrompt = prompts.map((_, p) => {
    const k = free.tokens[p].findIndex((t, i) => t !== forced[p][i]);
    return k < 0 ? null : k;
  });
  const firstDivergence = firstDivergenceByPrompt.reduce<number>((a, k) => a + (k ?? steps), 0) / prompts.length;
  return { top1Agreement: agree / positions, meanKl: kl / positions, firstDivergence, firstDivergenceByPrompt, positions };
}

/** Decode tok/s of one sequence: a warm-up rollout, then `steps` steps timed after the prefill. */
export async function measureDecode(executor: Executor, prompt: number[], steps: number): Promise<number> {
  await rollout(executor, [prompt], Math.min(steps, 3), { keepLogits: false });
  const r = await rollout(executor, [prompt], steps, { keepLogits: false });
  const decodeMs = r.stepMs.slice(1).reduce((a, b) => a + b, 0);
  return ((steps - 1) * 1000) / decodeMs;
}

export interface QuantBenchModel {
  name: string;
  model: Model;
  tokenizer: Tokenizer;
}

interface TypeRow {
  weightBytes: number;
  tokPerS: number;
  top1Agreement?: number;
  meanKl?: number;
  firstDivergence?: number;
  firstDivergenceByPrompt?: (number | null)[];
}

/**
 * `builtin()` gives the trained f32 model and its tokenizer (read when the benchmark runs); the
 * backend's `executorFor` runs any model.
 */
export function quantBench(builtin: () => QuantBenchModel): BenchCommand {
  return {
    name: 'quant',
    description: 'quantized weights (f32, Q8_0, Q4_0): weight bytes, decode tok/s, and quality vs f32 (top-1 agreement, KL, first divergence)',
    defaultBackend: 'cpu',
    async run(ctx) {
      const executorFor = ctx.backend.executorFor;
      if (!executorFor) throw new Error(`quant: backend ${ctx.backend.name} runs no real model; use --backend cpu or webgpu`);
      const steps = Number(ctx.options.steps ?? 48);
      const syntheticSteps = Number(ctx.options['synthetic-steps'] ?? 8);
      if (!(Number.isInteger(steps) && steps >= 2) || !(Number.isInteger(syntheticSteps) && syntheticSteps >= 2)) {
        throw new Error('quant: --steps and --synthetic-steps must be integers >= 2');
      }
      const synthNames = (ctx.options.models ?? 'stories15M,stories42M,stories110M').split(',').filter((s) => s !== '' && s !== 'none');
      for (const n of synthNames) if (!tinyllamaShapes[n]) throw new Error(`quant: unknown model ${JSON.stringify(n)} (${Object.keys(tinyllamaShapes).join(', ')}, or none)`);
      const { name, model, tokenizer } = builtin();
      const numPrompts = Number(ctx.options.prompts ?? storyPassages.length);
      if (!(Number.isInteger(numPrompts) && numPrompts >= 1 && numPrompts <= storyPassages.length)) {
        throw new Error(`quant: --prompts must be an integer from 1 to ${storyPassages.length}`);
      }
      const prompts = storyPassages.slice(0, numPrompts).map((p) => tokenizer.encode(p, true, false));
      const machine = ctx.backend.describe ? await ctx.backend.describe() : ctx.backend.name;
      ctx.log(`quant: ${name} on ${ctx.backend.name}; ${prompts.length} story prompts x ${steps} positions; decode tok/s of one sequence`);

      const use = async <T>(m: Model, f: (e: Executor) => Promise<T>): Promise<T> => {
        const e = await executorFor(m);
        try {
          return await f(e);
        } finally {
          e.dispose();
        }
      };
      const rows: Record<WeightType, TypeRow> = {} as Record<WeightType, TypeRow>;
      // f32: its greedy rollout with logits is the reference (and teacher forcing on its own text).
      const reference = await use(model, (e) => rollout(e, prompts, steps, { keepLogits: true }));
      rows.f32 = { weightBytes: modelWeightBytes(model), tokPerS: await use(model, (e) => measureDecode(e, prompts[0], steps)) };
      ctx.log(`  f32: ${rows.f32.weightBytes} bytes, ${formatNum(rows.f32.tokPerS, 1)} tok/s`);
      for (const type of QUANT_TYPES) {
        const q = quantizeModel(model, type);
        const quality = await use(q, (e) => measureQuality(e, prompts, steps, reference));
        const tokPerS = await use(q, (e) => measureDecode(e, prompts[0], steps));
        rows[type] = {
          weightBytes: modelWeightBytes(q),
          tokPerS,
          top1Agreement: quality.top1Agreement,
          meanKl: quality.meanKl,
          firstDivergence: quality.firstDivergence,
          firstDivergenceByPrompt: quality.firstDivergenceByPrompt,
        };
        ctx.log(`  ${type}: ${rows[type].weightBytes} bytes, ${formatNum(tokPerS, 1)} tok/s, top-1 ${formatNum(quality.top1Agreement, 4)}, KL ${formatNum(quality.meanKl, 5)}`);
      }

      const synthetic: Record<string, Record<WeightType, { weightBytes: number; tokPerS: number }>> = {};
      for (const sname of synthNames) {
        const f32 = syntheticModel(tinyllamaShapes[sname], ctx.seed, sname);
        const prompt = [1, ...Array.from({ length: 15 }, (_, i) => 3 + ((i * 37) % (f32.config.vocabSize - 3)))];
        const perType = {} as Record<WeightType, { weightBytes: number; tokPerS: number }>;
        for (const type of ['f32', ...QUANT_TYPES] as WeightType[]) {
          const m = type === 'f32' ? f32 : quantizeModel(f32, type);
          perType[type] = { weightBytes: modelWeightBytes(m), tokPerS: await use(m, (e) => measureDecode(e, prompt, syntheticSteps)) };
          ctx.log(`  ${sname} (synthetic) ${type}: ${perType[type].weightBytes} bytes, ${formatNum(perType[type].tokPerS, 2)} tok/s`);
        }
        synthetic[sname] = perType;
      }

      const mib = (b: number) => formatNum(b / 2 ** 20, 2);
      const table: string[][] = [['model', 'weights', 'MiB', 'x f32', 'tok/s', 'top-1 agree', 'mean KL', 'first diverge']];
      for (const type of ['f32', ...QUANT_TYPES] as WeightType[]) {
        const r = rows[type];
        table.push([
          name,
          WEIGHT_TYPE_LABEL[type],
          mib(r.weightBytes),
          formatNum(r.weightBytes / rows.f32.weightBytes, 3),
          formatNum(r.tokPerS, 1),
          r.top1Agreement === undefined ? '(ref)' : formatNum(r.top1Agreement, 4),
          r.meanKl === undefined ? '(ref)' : formatNum(r.meanKl, 5),
          r.firstDivergence === undefined ? '(ref)' : formatNum(r.firstDivergence, 1),
        ]);
      }
      for (const [sname, perType] of Object.entries(synthetic)) {
        for (const type of ['f32', ...QUANT_TYPES] as WeightType[]) {
          const r = perType[type];
          table.push([`${sname} (synthetic)`, WEIGHT_TYPE_LABEL[type], mib(r.weightBytes), formatNum(r.weightBytes / perType.f32.weightBytes, 3), formatNum(r.tokPerS, 2), '', '', '']);
        }
      }
      const notes = [
        `machine: ${machine}`,
        `quality over ${prompts.length} story prompts x ${steps} positions (teacher-forced on the f32 greedy text; first divergence of free greedy generation, mean over prompts, ${steps} = never)`,
        `tok/s: one sequence decoding, ${steps - 1} timed steps (synthetic: ${syntheticSteps - 1}), wall time per step including the readback`,
        `${name}: w2 (rows of ${model.config.hiddenDim}, not a multiple of 32) stays f32 in every quantized model`,
      ];
      return {
        table,
        json: {
          ...rows,
          model: name,
          backend: ctx.backend.name,
          machine,
          steps,
          prompts: prompts.length,
          synthetic,
        },
        notes,
      };
    },
  };
}
