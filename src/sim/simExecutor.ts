/**
 * The simulated executor: no model runs; each step's duration comes from the roofline cost
 * model, and every sequence gets a deterministic token per (seqId, position) that is never a
 * stop token, so output lengths are exactly maxTokens. Lets the real scheduler run a 70B model on
 * eight GPUs in virtual time.
 */
import type { Executor, KvGeometry, LogitRow, SeqOutput, StepOutput, StepPlan } from '../engine/types.ts';
import type { HardwareSpec, ModelSpec } from './presets.ts';
import { stepCost, type CostOptions, type ParallelConfig, type StepCost } from './costModel.ts';

export interface SimExecutorOptions extends CostOptions {
  model: ModelSpec;
  hardware: HardwareSpec;
  parallel?: ParallelConfig;
  /**
   * Position whose token is EOS (token 2) for a request's sequences (prompt length + actual
   * output length), for workloads whose outputs end before maxTokens; undefined = never.
   */
  eosPosition?: (requestId: string) => number | undefined;
}

const EOS_TOKEN_ID = 2;

/** Logits rows for temperature > 0 sampling are this small (the sampler needs a row, not a vocabulary). */
const SIM_LOGITS_SIZE = 16;

export class SimExecutor implements Executor {
  readonly name: string;
  readonly model: ModelSpec;
  readonly hardware: HardwareSpec;
  readonly parallel: ParallelConfig;
  private readonly costOptions: CostOptions;
  private blockSize = 16;
  private readonly eosPosition: SimExecutorOptions['eosPosition'];
  /** Breakdown of the last step, for the views. */
  lastCost: StepCost | null = null;
  totalBusyMs = 0;

  constructor(o: SimExecutorOptions) {
    this.model = o.model;
    this.hardware = o.hardware;
    this.parallel = o.parallel ?? { tensorParallel: 1, pipelineParallel: 1 };
    this.costOptions = { bytesPerParam: o.bytesPerParam, bytesPerKvElement: o.bytesPerKvElement };
    this.eosPosition = o.eosPosition;
    const devices = this.parallel.tensorParallel * this.parallel.pipelineParallel;
    const par = devices > 1 ? ` (TP ${this.parallel.tensorParallel} x PP ${this.parallel.pipelineParallel})` : '';
    this.name = `simulated: ${o.model.name} on ${devices > 1 ? `${devices}x` : ''}${o.hardware.name}${par}`;
  }

  configure(geometry: KvGeometry): void {
    this.blockSize = geometry.blockSize;
  }

  async execute(plan: StepPlan): Promise<StepOutput> {
    return this.executeSync(plan);
  }

  executeSync(plan: StepPlan): StepOutput {
    let numLogitRows = 0;
    const outputs: SeqOutput[] = [];
    const vocab = Math.min(this.model.vocabSize, 32000);
    for (const s of plan.seqs) {
      if (!s.needsLogits) continue;
      // Draft verification asks for several trailing rows; each costs an LM-head row.
      const numRows = s.numLogitRows ?? 1;
      numLogitRows += numRows;
      const rows: LogitRow[] = [];
      for (let r = 0; r < numRows; r++) {
        const position = s.startPosition + s.tokenIds.length - (numRows - 1 - r);
        let argmax = 3 + ((Math.imul(s.seqId + 1, 2654435761) ^ Math.imul(position, 40503)) >>> 0) % (vocab - 3);
        const eos = this.eosPosition?.(s.requestId);
        if (eos !== undefined && position >= eos) argmax = EOS_TOKEN_ID;
        const row: LogitRow = { argmax };
        if (s.sampling.temperature > 0) {
          const logits = new Float32Array(SIM_LOGITS_SIZE);
          for (let i = 0; i < SIM_LOGITS_SIZE; i++) logits[i] = ((argmax * (i + 7)) % 13) / 13;
          row.logits = logits;
        }
        rows.push(row);
      }
      const out: SeqOutput = { seqId: s.seqId, ...rows[numRows - 1] };
      if (numRows > 1) out.rows = rows;
      outputs.push(out);
    }
    const cost = stepCost(
      {
        numTokens: plan.numBatchedTokens + (plan.numPaddingTokens ?? 0),
        numLogitRows,
        seqs: plan.seqs.map((s) => ({ numQueryTokens: s.tokenIds.length, startPosition: s.startPosition })),
        numCopiedBlocks: plan.copies.length,
        numSwappedBlocks: plan.swapIn.length + plan.swapOut.length,
        blockSize: this.blockSize,
      },
      this.model,
      this.hardware,
      this.parallel,
      this.costOptions,
    );
    this.lastCost = cost;
    this.totalBusyMs += cost.totalMs;
    return { outputs, durationMs: cost.totalMs };
  }

  dispose(): void {}
}
