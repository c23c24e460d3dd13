/**
 * The moderation stage: a classifier service with a seeded log-normal latency and a fixed number
 * of concurrent checks (FIFO when all are busy). Two of them in a fleet: the input check every
 * request passes before it is routed, and the output check the stream is submitted to every N
 * generated tokens (and once more for the tail when the request finishes). Checks are submitted
 * in time order, so each one's completion is known when it is submitted: start = max(submit,
 * the earliest a server is free), done = start + its latency.
 *
 * Streaming mode (as the asynchronous content filters of the hosted APIs): tokens reach the
 * client as they are generated while their chunk is checked; a flagged chunk stops the stream
 * (finish_reason "content_filter", the request is cancelled in its engine) and the response ends
 * only when its last chunk has passed, so the tail check's wait shows in E2E as moderation.
 */
import { Rng } from '../../engine/workload.ts';
import { hashString } from './workload.ts';

export class ModerationServer {
  /** When each of the `concurrency` servers is next free, ms. */
  private readonly freeAtMs: number[];
  numChecks = 0;
  /** Sum of queueing (submit to start) and of service, ms. */
  totalWaitMs = 0;
  totalServiceMs = 0;

  constructor(readonly concurrency: number) {
    this.freeAtMs = new Array<number>(concurrency).fill(0);
  }

  /** Submits a check at submitMs taking serviceMs; returns when it starts and completes. */
  submit(submitMs: number, serviceMs: number): { startMs: number; doneMs: number } {
    let k = 0;
    for (let i = 1; i < this.freeAtMs.length; i++) if (this.freeAtMs[i] < this.freeAtMs[k]) k = i;
    const startMs = Math.max(submitMs, this.freeAtMs[k]);
    const doneMs = startMs + serviceMs;
    this.freeAtMs[k] = doneMs;
    this.numChecks++;
    this.totalWaitMs += startMs - submitMs;
    this.totalServiceMs += serviceMs;
    return { startMs, doneMs };
  }
}

/** A seeded draw for (seed, request index, stream): the same request gets the same draws whatever else happens. */
export function drawRng(seed: number, index: number, stream: string): Rng {
  return new Rng(hashString(`${stream}#${index}`, seed >>> 0));
}

/** Log-normal latency around medianMs, ms. */
export function logNormalMs(medianMs: number, sigma: number, rng: Rng): number {
  return medianMs * Math.exp(sigma * rng.normal());
}

/** One request's moderation draws, made when it arrives. */
export interface ModerationDraws {
  inputFlagged: boolean;
  inputMs: number;
  /** The output token (1-based) whose chunk is flagged; absent: the output passes. */
  flagAtToken?: number;
}

export function moderationDraws(seed: number, index: number, outputTokens: number, spec: { flagRate: number; inputFlagRate: number; input: { medianMs: number; sigma: number } }): ModerationDraws {
  const rng = drawRng(seed, index, 'moderation');
  const inputFlagged = rng.next() < spec.inputFlagRate;
  const inputMs = logNormalMs(spec.input.medianMs, spec.input.sigma, rng);
  const flagged = rng.next() < spec.flagRate;
  const at = rng.int(1, Math.max(1, outputTokens));
  return { inputFlagged, inputMs, ...(flagged ? { flagAtToken: at } : {}) };
}
