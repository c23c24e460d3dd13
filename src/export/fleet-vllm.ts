/**
 * A simulated fleet's workload for `vllm bench serve`: the requests the fleet's workload spec
 * plans (the same seed, the same lengths, the planted change included), for one pool's model, as
 * the generic bridge's request list (src/serve/bench-prompts.ts benchTextPrompts writes their text
 * on the lab's tokenizer; src/export/vllm-bench.ts vllmBenchBundle writes the dataset, the command
 * and the note), with what the export cannot carry said in words.
 *
 * Arrivals: a Poisson fleet exports its rate. A spike (rate × factor for a while) has no single
 * `vllm bench serve` flag (one --request-rate per run), so the export is the spike window alone,
 * as its own dataset at the spike's rate: the requests before and after it are not replayed, and
 * the note and the command say so. Pure: no worker, no DOM.
 */
import type { ArrivalProcess } from '../engine/workload.ts';
import type { BenchPrompts, BenchTextRequest } from '../serve/bench-prompts.ts';
import type { BenchBundleInput } from './vllm-bench.ts';
import { MODEL_PRESETS } from '../sim/presets.ts';
import type { FleetSpec } from '../sim/fleet/types.ts';
import { checkDeployment } from '../sim/fleet/validate.ts';
import { planFleetWorkload } from '../sim/fleet/workload.ts';

/** A shared system prompt group of the exported requests (one tenant's). */
export interface FleetSharedPrefix {
  tenant: string;
  /** Tokens of the shared system prompt (the fleet's count). */
  numTokens: number;
  numPrefixes: number;
  /** Of the exported requests. */
  fraction: number;
}

export interface FleetBenchWorkload {
  /** The pool's model (the requests' OpenAI "model") and its name in words. */
  model: string;
  modelName: string;
  /** Its tokenizer's vocabulary size (what counted the fleet's lengths). */
  modelVocabSize: number;
  requests: BenchTextRequest[];
  arrival: ArrivalProcess;
  /** The arrival window exported on the fleet's clock, s (the whole run: from 0 to the last arrival). */
  window: { fromS: number; toS: number };
  /** The workload's requests in all, and those left out (for other pools' models, outside the spike window). */
  numPlanned: number;
  numOtherModels: number;
  numOutsideWindow: number;
  sharedPrefixes: FleetSharedPrefix[];
  /** How the arrivals map to vLLM's, in a sentence (a spike: what is and is not replayed). */
  arrivalWords: string;
  /** What the fleet has that the benchmark does not carry, a sentence each. */
  notCarried: string[];
}

/** The models the fleet's pools serve, in pool order. */
export function fleetModels(spec: FleetSpec): string[] {
  return spec.pools.map((p) => p.model);
}

/**
 * The fleet's workload for one pool's model (default: the first pool's) as the bridge's request
 * list. Prompt lengths are the fleet's token counts (Llama-3's tokenizer in the presets); the text
 * is written on the lab's tokenizer later. Throws a RangeError for a model no pool serves, or when
 * nothing is left to export.
 */
export function fleetBenchWorkload(spec: FleetSpec, model = spec.pools[0]?.model): FleetBenchWorkload {
  const pool = spec.pools.find((p) => p.model === model);
  if (!pool) throw new RangeError(`no pool serves model ${JSON.stringify(model)} (the fleet's: ${fleetModels(spec).join(', ')})`);
  const maxModelLen = new Map(spec.pools.map((p, i) => [p.model, checkDeployment(p, `pools[${i}]`).maxModelLen]));
  const plans = planFleetWorkload(spec.workload, (m) => maxModelLen.get(m)!);
  const mine = plans.filter((p) => p.model === model);
  const a = spec.workload.arrival;
  const lastS = plans.length ? plans[plans.length - 1].arrivalMs / 1000 : 0;
  const window = a.kind === 'spike' ? { fromS: a.atS, toS: a.atS + a.durationS } : { fromS: 0, toS: lastS };
  const kept = a.kind === 'spike' ? mine.filter((p) => p.arrivalMs >= window.fromS * 1000 && p.arrivalMs < window.toS * 1000) : mine;
  if (kept.length === 0) throw new RangeError(`nothing to export: no request for ${model}${a.kind === 'spike' ? ` arrives in the spike window ${window.fromS}-${window.toS} s` : ''}`);
  const t0Ms = a.kind === 'spike' ? window.fromS * 1000 : 0;
  const requests = kept.map(
    (p): BenchTextRequest => ({
      promptTokens: p.promptTokens,
      outputTokens: p.outputTokens,
      arrivalMs: p.arrivalMs - t0Ms,
      ...(p.prefixId !== undefined && p.prefixTokens > 0 ? { prefix: { key: p.prefixId, numTokens: p.prefixTokens } } : {}),
    }),
  );
  const rateOfPool = (rate: number) => rate * (mine.length / Math.max(1, plans.length));
  const share = (rate: number) =>
    mine.length < plans.length ? `; ${model}'s requests are ${mine.length} of its ${plans.length}, so they go at their share of ${fmt(rate)}/s, ${fmt(rateOfPool(rate))}/s` : '';
  let arrival: ArrivalProcess;
  let arrivalWords: string;
  if (a.kind === 'spike') {
    arrival = { kind: 'poisson', ratePerS: round3(rateOfPool(a.ratePerS * a.factor)) };
    arrivalWords =
      `This fleet's arrivals are a spike: ${fmt(a.ratePerS)} requests/s, then ×${fmt(a.factor)} (${fmt(a.ratePerS * a.factor)}/s) from ${fmt(a.atS)} s for ${fmt(a.durationS)} s. ` +
      `vllm bench serve has one arrival rate per run, so this file holds only the ${kept.length} requests of the spike window (${fmt(window.fromS)}-${fmt(window.toS)} s), replayed at ${fmt(arrival.ratePerS)} requests/s${share(a.ratePerS * a.factor)}; ` +
      `the ${mine.length - kept.length} requests before and after it are not replayed. It measures a server taking the spike's rate from idle, not the queue a spike leaves behind, nor an autoscaler's reaction.`;
  } else {
    arrival = { kind: 'poisson', ratePerS: round3(rateOfPool(a.ratePerS)) };
    arrivalWords = `The fleet's arrivals are Poisson at ${fmt(a.ratePerS)} requests/s${share(a.ratePerS)}: the same process in vLLM's benchmark (burstiness 1).`;
  }
  const byTenant = new Map<string, { numTokens: number; keys: Set<string>; count: number }>();
  for (const p of kept) {
    if (p.prefixId === undefined || p.prefixTokens === 0) continue;
    const g = byTenant.get(p.tenant) ?? { numTokens: p.prefixTokens, keys: new Set<string>(), count: 0 };
    g.keys.add(p.prefixId);
    g.count++;
    byTenant.set(p.tenant, g);
  }
  const sharedPrefixes = [...byTenant.entries()].map(([tenant, g]) => ({ tenant, numTokens: g.numTokens, numPrefixes: g.keys.size, fraction: g.count / kept.length }));
  const notCarried: string[] = [];
  const otherModels = plans.length - mine.length;
  if (otherModels > 0) notCarried.push(`${otherModels} request(s) for the fleet's other model(s) (${fleetModels(spec).filter((m) => m !== model).join(', ')}): vllm bench serve drives one model per run; export them from that pool.`);
  const tenants = spec.workload.tenants.filter((t) => t.model === model);
  if (tenants.length > 1) notCarried.push(`The tenants (${tenants.map((t) => t.name).join(', ')}): the benchmark sends no tenant, so per-tenant bills and shares are the lab's alone.`);
  if (spec.billing.tpmQuota && Object.keys(spec.billing.tpmQuota).length > 0) notCarried.push('Tokens-per-minute quotas: nothing is refused; every request goes.');
  if (tenants.some((t) => (t.priority ?? 0) !== 0)) notCarried.push("The tenants' priorities: every request goes with none.");
  if (spec.moderation) notCarried.push('The moderation stage (input check, output checks, content_filter stops): not in the benchmark; each stream runs to its output length.');
  const devices = pool.deployment.tensorParallel * pool.deployment.pipelineParallel;
  notCarried.push(
    `The fleet around the server: ${pool.replicas} replica(s) of ${devices} GPU(s) behind a ${pool.router} router${pool.autoscaler ? ', an autoscaler' : ''}${spec.spotLosses?.length ? ', spot losses' : ''}. The benchmark sends to one --base-url: point it at your router to include one.`,
  );
  return {
    model,
    modelName: MODEL_PRESETS[pool.deployment.modelId].name,
    modelVocabSize: MODEL_PRESETS[pool.deployment.modelId].vocabSize,
    requests,
    arrival,
    window,
    numPlanned: plans.length,
    numOtherModels: otherModels,
    numOutsideWindow: mine.length - kept.length,
    sharedPrefixes,
    arrivalWords,
    notCarried,
  };
}

const round3 = (v: number) => Math.round(v * 1000) / 1000;
const fmt = (v: number) => String(round3(v));

/**
 * The generic bundle's input for the fleet's workload, once its text is written (`bench`, from
 * benchTextPrompts on the lab's model): the lengths are the fleet's model's counts written on the
 * lab's tokenizer, and the note says so, with the arrivals and what is not carried.
 */
export function fleetBenchBundleInput(w: FleetBenchWorkload, bench: BenchPrompts, o: { label: string; baseName: string; seed: number }): BenchBundleInput {
  if (bench.prompts.length !== w.requests.length) throw new RangeError(`the prompts (${bench.prompts.length}) do not match the requests (${w.requests.length})`);
  const prefixes = w.sharedPrefixes.map((p) => `${p.tenant}: ${p.numPrefixes} prefix(es) of ${p.numTokens} tokens, ${Math.round(p.fraction * 100)}% of requests`);
  return {
    label: o.label,
    tokenizerModel: bench.model,
    vocabSize: bench.vocabSize,
    requests: bench.prompts,
    arrival: w.arrival,
    seed: o.seed,
    temperature: 0,
    losses: bench.losses,
    baseName: o.baseName,
    words: {
      lengths:
        `The prompts are story text whose lengths are the simulated fleet's ${w.modelName} token counts, each written exactly that long, BOS included, on the lab's ${bench.model} tokenizer (${bench.vocabSize} tokens). ` +
        `A ${w.modelName} server's own tokenizer (${w.modelVocabSize.toLocaleString('en')} tokens) counts the same text differently, so the prompts it sees are not the fleet's lengths (the result's \`input_lens\` says by how much). The lengths here`,
      sharedPrefix: prefixes.length
        ? `Requests that share a system prompt in the fleet share the same text prefix here (${prefixes.join('; ')}), so vLLM's prefix cache sees the same sharing; other requests share no more than their first few tokens.`
        : 'No shared system prompts in this workload; requests share no more than their first few tokens.',
      arrival: w.arrivalWords,
      results: "the Lab view's latency panel shows it (not the fleet view): set its TTFT percentiles beside the fleet run's SIMULATED ones.",
      notCarried: w.notCarried,
      ...(w.numOutsideWindow > 0 ? { command: `The spike window only (${w.window.fromS}-${w.window.toS} s of the fleet's clock, ${w.requests.length} requests) at the spike's rate; the ${w.numOutsideWindow} requests before and after it are not replayed.` } : {}),
    },
  };
}
