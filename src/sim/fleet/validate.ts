/**
 * The fleet spec, checked up front: the first problem is thrown as a RangeError naming its field
 * ("pools[1].deployment.modelId: unknown model ..."), so nothing half-runs.
 */
import { kvCapacity } from '../kvCalculator.ts';
import { HARDWARE_PRESETS, MODEL_PRESETS } from '../presets.ts';
import { ROUTER_POLICIES, type FleetSpec, type PoolSpec } from './types.ts';

/** Requests one fleet run simulates at most (the bench's 10,000 with room). */
export const MAX_FLEET_REQUESTS = 50_000;
/** Replicas one pool may have at most. */
export const MAX_POOL_REPLICAS = 256;
/** KV blocks one simulated replica holds at most (memory of the simulation itself). */
export const MAX_REPLICA_BLOCKS = 262_144;
export const BLOCK_SIZE = 16;

function fail(field: string, message: string): never {
  throw new RangeError(`${field}: ${message}`);
}

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
function num(v: unknown, field: string, o: { min?: number; max?: number; exclusiveMin?: boolean; integer?: boolean } = {}): void {
  if (!isNum(v)) fail(field, `must be a finite number, got ${String(v)}`);
  if (o.integer && !Number.isInteger(v)) fail(field, `must be an integer, got ${v}`);
  if (o.min !== undefined && (o.exclusiveMin ? !(v > o.min) : !(v >= o.min))) fail(field, `must be ${o.exclusiveMin ? '>' : '>='} ${o.min}, got ${v}`);
  if (o.max !== undefined && !(v <= o.max)) fail(field, `must be <= ${o.max}, got ${v}`);
}

/** A pool's deployment: its presets exist and the weights fit, with room for the longest request. */
export function checkDeployment(pool: PoolSpec, at: string): { numGpuBlocks: number; maxModelLen: number } {
  const d = pool.deployment;
  if (typeof d !== 'object' || d === null) fail(`${at}.deployment`, 'missing');
  const model = MODEL_PRESETS[d.modelId];
  if (!model) fail(`${at}.deployment.modelId`, `unknown model ${JSON.stringify(d.modelId)} (known: ${Object.keys(MODEL_PRESETS).join(', ')})`);
  const hw = HARDWARE_PRESETS[d.hardwareId];
  if (!hw) fail(`${at}.deployment.hardwareId`, `unknown hardware ${JSON.stringify(d.hardwareId)} (known: ${Object.keys(HARDWARE_PRESETS).join(', ')})`);
  num(d.tensorParallel, `${at}.deployment.tensorParallel`, { min: 1, max: 64, integer: true });
  num(d.pipelineParallel, `${at}.deployment.pipelineParallel`, { min: 1, max: 64, integer: true });
  num(d.maxNumSeqs, `${at}.deployment.maxNumSeqs`, { min: 1, max: 4096, integer: true });
  num(d.maxNumBatchedTokens, `${at}.deployment.maxNumBatchedTokens`, { min: 16, max: 1_000_000, integer: true });
  num(d.gpuHourUsd, `${at}.deployment.gpuHourUsd`, { min: 0, max: 1000 });
  const cap = kvCapacity(model, hw, { tensorParallel: d.tensorParallel, pipelineParallel: d.pipelineParallel, blockSize: BLOCK_SIZE });
  const devices = d.tensorParallel * d.pipelineParallel;
  if (!cap.fitsWeights) {
    fail(`${at}.deployment`, `${model.name} does not fit ${devices}× ${hw.name}: the weights need ${(cap.weightBytesPerDevice / 1e9).toFixed(1)} GB per device (raise tensorParallel or pipelineParallel)`);
  }
  // The longest request the workload makes (prompt half the context, output a quarter) must fit alone.
  const worstTokens = Math.floor(model.maxModelLen / 2) + Math.floor(model.maxModelLen / 4);
  const worstBlocks = Math.ceil(worstTokens / BLOCK_SIZE);
  if (cap.numBlocks < worstBlocks) {
    fail(`${at}.deployment`, `${model.name} on ${devices}× ${hw.name} leaves KV room for ${cap.numKvTokens} tokens; one request may need ${worstTokens} (more devices)`);
  }
  return { numGpuBlocks: Math.min(cap.numBlocks, MAX_REPLICA_BLOCKS), maxModelLen: model.maxModelLen };
}

/** Throws a RangeError naming the first field that is wrong. */
export function validateFleetSpec(spec: FleetSpec): void {
  if (typeof spec !== 'object' || spec === null) fail('spec', 'a fleet spec is an object');
  if (typeof spec.name !== 'string') fail('name', 'must be a string');
  if (!Array.isArray(spec.pools) || spec.pools.length === 0) fail('pools', 'at least one pool');
  const models = new Set<string>();
  spec.pools.forEach((p, i) => {
    const at = `pools[${i}]`;
    if (typeof p.model !== 'string' || p.model.length === 0) fail(`${at}.model`, 'a non-empty model name');
    if (models.has(p.model)) fail(`${at}.model`, `${JSON.stringify(p.model)} is served by an earlier pool already (one pool per model)`);
    models.add(p.model);
    checkDeployment(p, at);
    num(p.replicas, `${at}.replicas`, { min: 0, max: MAX_POOL_REPLICAS, integer: true });
    if (!ROUTER_POLICIES.includes(p.router)) fail(`${at}.router`, `unknown policy ${JSON.stringify(p.router)} (one of ${ROUTER_POLICIES.join(', ')})`);
    if (p.schedulerPolicy !== undefined && p.schedulerPolicy !== 'fcfs' && p.schedulerPolicy !== 'priority') fail(`${at}.schedulerPolicy`, `fcfs or priority, got ${JSON.stringify(p.schedulerPolicy)}`);
    if (p.affinityLoadCap !== undefined) num(p.affinityLoadCap, `${at}.affinityLoadCap`, { min: 0, max: 100_000, integer: true });
    const a = p.autoscaler;
    if (a !== undefined) {
      if (!['queue-depth', 'kv-usage', 'ttft-slo'].includes(a.metric)) fail(`${at}.autoscaler.metric`, `unknown metric ${JSON.stringify(a.metric)} (queue-depth, kv-usage or ttft-slo)`);
      num(a.target, `${at}.autoscaler.target`, { min: 0, exclusiveMin: true, max: a.metric === 'kv-usage' ? 1 : 1e6 });
      num(a.intervalS, `${at}.autoscaler.intervalS`, { min: 0.1, max: 3600 });
      num(a.minReplicas, `${at}.autoscaler.minReplicas`, { min: 0, max: MAX_POOL_REPLICAS, integer: true });
      num(a.maxReplicas, `${at}.autoscaler.maxReplicas`, { min: 1, max: MAX_POOL_REPLICAS, integer: true });
      if (a.minReplicas > a.maxReplicas) fail(`${at}.autoscaler.minReplicas`, `min ${a.minReplicas} > max ${a.maxReplicas}`);
      if (p.replicas < a.minReplicas || p.replicas > a.maxReplicas) fail(`${at}.replicas`, `${p.replicas} is outside the autoscaler's [${a.minReplicas}, ${a.maxReplicas}]`);
      num(a.scaleDownCooldownS, `${at}.autoscaler.scaleDownCooldownS`, { min: 0, max: 86_400 });
      num(a.loadBytesPerS, `${at}.autoscaler.loadBytesPerS`, { min: 1e6, max: 1e13 });
      num(a.warmupS, `${at}.autoscaler.warmupS`, { min: 0, max: 3600 });
      if (a.ttftPercentile !== undefined) num(a.ttftPercentile, `${at}.autoscaler.ttftPercentile`, { min: 0, exclusiveMin: true, max: 1 });
    } else if (p.replicas < 1) fail(`${at}.replicas`, 'a pool without an autoscaler needs at least 1 replica');
  });
  const w = spec.workload;
  if (typeof w !== 'object' || w === null) fail('workload', 'missing');
  num(w.seed, 'workload.seed', { integer: true, min: -Number.MAX_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER });
  num(w.numRequests, 'workload.numRequests', { min: 1, max: MAX_FLEET_REQUESTS, integer: true });
  const ar = w.arrival;
  if (typeof ar !== 'object' || ar === null) fail('workload.arrival', 'missing');
  if (ar.kind === 'poisson') num(ar.ratePerS, 'workload.arrival.ratePerS', { min: 0.001, max: 1e6 });
  else if (ar.kind === 'spike') {
    num(ar.ratePerS, 'workload.arrival.ratePerS', { min: 0.001, max: 1e6 });
    num(ar.factor, 'workload.arrival.factor', { min: 0, exclusiveMin: true, max: 1000 });
    num(ar.atS, 'workload.arrival.atS', { min: 0, max: 1e6 });
    num(ar.durationS, 'workload.arrival.durationS', { min: 0, exclusiveMin: true, max: 1e6 });
  } else fail('workload.arrival.kind', `unknown arrival ${JSON.stringify((ar as { kind: unknown }).kind)} (poisson or spike)`);
  if (!Array.isArray(w.tenants) || w.tenants.length === 0) fail('workload.tenants', 'at least one tenant');
  const tenants = new Set<string>();
  w.tenants.forEach((t, i) => {
    const at = `workload.tenants[${i}]`;
    if (typeof t.name !== 'string' || t.name.length === 0 || t.name.length > 200) fail(`${at}.name`, 'a name of 1 to 200 characters');
    if (tenants.has(t.name)) fail(`${at}.name`, `${JSON.stringify(t.name)} repeats an earlier tenant`);
    tenants.add(t.name);
    num(t.weight, `${at}.weight`, { min: 0, exclusiveMin: true, max: 1e9 });
    if (!models.has(t.model)) fail(`${at}.model`, `no pool serves ${JSON.stringify(t.model)} (pools: ${[...models].join(', ')})`);
    num(t.promptMedian, `${at}.promptMedian`, { min: 1, max: 1e6 });
    num(t.outputMedian, `${at}.outputMedian`, { min: 1, max: 1e6 });
    if (t.lengthSigma !== undefined) num(t.lengthSigma, `${at}.lengthSigma`, { min: 0, max: 3 });
    if (t.sharedPrefix !== undefined) {
      num(t.sharedPrefix.numTokens, `${at}.sharedPrefix.numTokens`, { min: 1, max: 1e6, integer: true });
      num(t.sharedPrefix.numPrefixes, `${at}.sharedPrefix.numPrefixes`, { min: 1, max: 1000, integer: true });
    }
    if (t.priority !== undefined) num(t.priority, `${at}.priority`);
  });
  const pl = w.planted;
  if (pl !== undefined) {
    if (!tenants.has(pl.tenant)) fail('workload.planted.tenant', `no tenant ${JSON.stringify(pl.tenant)}`);
    num(pl.atS, 'workload.planted.atS', { min: 0, max: 1e6 });
    if (pl.promptFactor !== undefined) num(pl.promptFactor, 'workload.planted.promptFactor', { min: 0, exclusiveMin: true, max: 1000 });
    if (pl.breakPrefix && !w.tenants.find((t) => t.name === pl.tenant)?.sharedPrefix) fail('workload.planted.breakPrefix', `tenant ${pl.tenant} has no shared prefix to break`);
    if (typeof pl.description !== 'string' || pl.description.length === 0) fail('workload.planted.description', 'the answer, in words');
  }
  (spec.spotLosses ?? []).forEach((s, i) => {
    const at = `spotLosses[${i}]`;
    const pool = spec.pools.find((p) => p.model === s.model);
    if (!pool) fail(`${at}.model`, `no pool serves ${JSON.stringify(s.model)}`);
    num(s.replica, `${at}.replica`, { min: 0, max: pool.replicas - 1, integer: true });
    num(s.atS, `${at}.atS`, { min: 0, max: 1e6 });
    num(s.noticeS, `${at}.noticeS`, { min: 0, max: s.atS });
    if (s.onLoss !== 'reroute' && s.onLoss !== 'fail') fail(`${at}.onLoss`, `reroute or fail, got ${JSON.stringify(s.onLoss)}`);
  });
  const m = spec.moderation;
  if (m !== undefined) {
    num(m.input.medianMs, 'moderation.input.medianMs', { min: 0, exclusiveMin: true, max: 1e6 });
    num(m.input.sigma, 'moderation.input.sigma', { min: 0, max: 3 });
    num(m.input.concurrency, 'moderation.input.concurrency', { min: 1, max: 100_000, integer: true });
    num(m.output.everyTokens, 'moderation.output.everyTokens', { min: 1, max: 1e6, integer: true });
    num(m.output.medianMs, 'moderation.output.medianMs', { min: 0, exclusiveMin: true, max: 1e6 });
    num(m.output.sigma, 'moderation.output.sigma', { min: 0, max: 3 });
    num(m.output.concurrency, 'moderation.output.concurrency', { min: 1, max: 100_000, integer: true });
    num(m.flagRate, 'moderation.flagRate', { min: 0, max: 1 });
    num(m.inputFlagRate, 'moderation.inputFlagRate', { min: 0, max: 1 });
  }
  const b = spec.billing;
  if (typeof b !== 'object' || b === null) fail('billing', 'missing');
  num(b.usdPerMPromptTokens, 'billing.usdPerMPromptTokens', { min: 0, max: 1e6 });
  num(b.usdPerMCachedPromptTokens, 'billing.usdPerMCachedPromptTokens', { min: 0, max: 1e6 });
  num(b.usdPerMGeneratedTokens, 'billing.usdPerMGeneratedTokens', { min: 0, max: 1e6 });
  for (const [tenant, q] of Object.entries(b.tpmQuota ?? {})) {
    if (!tenants.has(tenant)) fail(`billing.tpmQuota.${tenant}`, `no tenant ${JSON.stringify(tenant)}`);
    num(q, `billing.tpmQuota.${tenant}`, { min: 1, max: 1e12 });
  }
  num(spec.sloTtftS, 'sloTtftS', { min: 0, exclusiveMin: true, max: 1e6 });
  if (spec.maxDurationS !== undefined) num(spec.maxDurationS, 'maxDurationS', { min: 0, exclusiveMin: true, max: 1e7 });
  if (spec.sampleIntervalS !== undefined) num(spec.sampleIntervalS, 'sampleIntervalS', { min: 0.01, max: 1e5 });
}
