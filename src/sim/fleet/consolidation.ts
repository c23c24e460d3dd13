/**
 * "Two models, one pool": what serving every pool's models from one shared pool would take,
 * computed from the run. A batch multiplies every token by the same weights, so requests for
 * different models cannot share a step: a shared replica must hold every model's weights (less
 * room for KV, maybe more devices) and serve the models in alternate steps, so its GPU time is
 * the sum of the pools' GPU time, with no batching gain across models.
 */
import { kvBytesPerToken, numParams } from '../kvCalculator.ts';
import { HARDWARE_PRESETS, MODEL_PRESETS } from '../presets.ts';
import type { PoolSpec } from './types.ts';

export interface PoolUsage {
  spec: PoolSpec;
  /** Most replicas it had at once. */
  peakReplicas: number;
  /** Its executors' busy time, all replicas, ms. */
  busyMs: number;
}

const BYTES_PER_PARAM = 2;
const MEMORY_UTILIZATION = 0.9;
const ACTIVATION_RESERVE_BYTES = 1e9;

export function consolidation(pools: readonly PoolUsage[], durationS: number): { separateGpus: number; sharedGpus: number; explanation: string } {
  const separateGpus = pools.reduce((a, p) => a + p.peakReplicas * p.spec.deployment.tensorParallel * p.spec.deployment.pipelineParallel, 0);
  // The shared replica: the largest device among the pools, tensor parallel until every model's weights fit with room for one longest request of each.
  const hw = pools.map((p) => HARDWARE_PRESETS[p.spec.deployment.hardwareId]).reduce((a, b) => (b.memoryBytes > a.memoryBytes ? b : a));
  const models = pools.map((p) => MODEL_PRESETS[p.spec.deployment.modelId]);
  const weightBytes = models.reduce((a, m) => a + numParams(m) * BYTES_PER_PARAM, 0);
  const kvNeed = models.reduce((a, m) => a + (Math.floor(m.maxModelLen / 2) + Math.floor(m.maxModelLen / 4)) * kvBytesPerToken(m), 0);
  const usable = hw.memoryBytes * MEMORY_UTILIZATION - ACTIVATION_RESERVE_BYTES;
  let tp = 1;
  while (tp < 64 && (weightBytes + kvNeed) / tp > usable) tp *= 2;
  const gpuBusyS = pools.map((p) => (p.busyMs / 1000) * p.spec.deployment.tensorParallel * p.spec.deployment.pipelineParallel);
  const totalBusyS = gpuBusyS.reduce((a, b) => a + b, 0);
  // The separate pools' utilization (busy GPU-seconds over GPUs x duration at their peak): the shared pool keeps the same headroom.
  const utilization = separateGpus > 0 && durationS > 0 ? Math.min(1, totalBusyS / (separateGpus * durationS)) : 1;
  const sharedReplicas = Math.max(1, Math.ceil(totalBusyS / Math.max(1e-9, durationS * utilization * tp)));
  const sharedGpus = sharedReplicas * tp;
  const names = pools.map((p) => p.spec.model);
  const parts = pools.map((p, i) => `${p.spec.model} ${p.peakReplicas}×${p.spec.deployment.tensorParallel * p.spec.deployment.pipelineParallel}`).join(' + ');
  const busy = pools.map((p, i) => `${p.spec.model} ${gpuBusyS[i].toFixed(0)}`).join(' + ');
  const explanation =
    `Separate pools: ${parts} = ${separateGpus} GPUs at peak. ` +
    `One shared pool cannot batch ${names.join(' with ')}: a step multiplies every token by one model's weights, so each replica must hold all of them ` +
    `(${(weightBytes / 1e9).toFixed(0)} GB of weights → TP ${tp} on ${hw.name}) and run the models in alternate steps. ` +
    `Its GPU time is the sum of the pools' (${busy} = ${totalBusyS.toFixed(0)} busy GPU-s in ${durationS.toFixed(0)} s); at the separate pools' utilization ` +
    `(${(utilization * 100).toFixed(0)}%) that is ${sharedReplicas} replica${sharedReplicas === 1 ? '' : 's'} × ${tp} = ${sharedGpus} GPUs. ` +
    (sharedGpus < separateGpus
      ? `Sharing saves ${separateGpus - sharedGpus} GPUs only by pooling idle capacity, at the cost of less KV room per model.`
      : `Sharing saves nothing: the work cannot be merged into one batch.`);
  return { separateGpus, sharedGpus, explanation };
}
