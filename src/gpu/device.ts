/**
 * WebGPU device acquisition for the engine: takes the `GPU` object as a parameter
 * (`navigator.gpu` in a browser or worker, `create([])` from the `webgpu` package in Node — this
 * module never imports that package, so it is safe in browser bundles), checks features and
 * limits, requests the adapter's large limits the kernels and big models need, and exposes the
 * device-lost promise and an explicit destroy() (fault injection).
 */
import { describeAdapter, type AdapterSummary } from './adapter.ts';

/** WebGPU is missing, no adapter was found, or the adapter cannot run the engine. */
export class WebGpuUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WebGpuUnavailableError';
  }
}

/** Limits this module raises to the adapter's maximum when asking for the device. */
const RAISED_LIMITS = [
  'maxBufferSize',
  'maxStorageBufferBindingSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxStorageBuffersPerShaderStage',
  'maxComputeWorkgroupsPerDimension',
] as const;

export type RaisedLimit = (typeof RAISED_LIMITS)[number];

/**
 * What every kernel in kernels/ needs at minimum (the WebGPU defaults are enough: 16 KiB of
 * workgroup memory, 256 invocations, 8 storage buffers per stage).
 */
export const KERNEL_MIN_LIMITS: Readonly<Record<RaisedLimit, number>> = {
  maxBufferSize: 16 << 20,
  maxStorageBufferBindingSize: 16 << 20,
  maxComputeWorkgroupStorageSize: 16384,
  maxComputeInvocationsPerWorkgroup: 256,
  maxComputeWorkgroupSizeX: 256,
  maxStorageBuffersPerShaderStage: 8,
  maxComputeWorkgroupsPerDimension: 65535,
};

export interface AcquireOptions {
  powerPreference?: GPUPowerPreference;
  /**
   * Minimums on top of KERNEL_MIN_LIMITS, e.g. the largest weight or KV buffer of the model in
   * bytes as maxStorageBufferBindingSize. An adapter below them gives WebGpuUnavailableError.
   */
  minLimits?: Partial<Record<RaisedLimit, number>>;
  /** Ask for 'timestamp-query' when the adapter has it (default true). */
  timestamps?: boolean;
  label?: string;
}

export interface DeviceLoss {
  /** 'destroyed' after destroy(), 'unknown' for a driver reset, crash or GPU removal. */
  reason: GPUDeviceLostReason;
  message: string;
}

export interface GpuContext {
  readonly device: GPUDevice;
  /** The GPU object the device came from (kept referenced on purpose, see wrapDevice). */
  readonly gpu: GPU | undefined;
  /** Adapter vendor, architecture, limits and features as plain data (see adapter.ts). */
  readonly adapter: AdapterSummary;
  /** The device was created with 'timestamp-query'. */
  readonly hasTimestampQuery: boolean;
  /** Resolves once, when the device is lost (including after destroy()). */
  readonly lost: Promise<DeviceLoss>;
  /** True once the device is lost. */
  readonly isLost: boolean;
  /** Calls `callback` when the device is lost (at once if it already is); returns an unsubscribe. */
  onLost(callback: (loss: DeviceLoss) => void): () => void;
  /** Calls `callback` for each uncaptured validation / out-of-memory / internal error. */
  onError(callback: (error: GPUError) => void): () => void;
  /** Destroys the device: frees its memory and resolves `lost` with reason 'destroyed'. */
  destroy(): void;
}

const MiB = 1 << 20;
const formatLimit = (name: string, v: number): string =>
  /Size$/.test(name) && v >= MiB ? `${(v / MiB).toFixed(v % MiB === 0 ? 0 : 1)} MiB` : String(v);

/**
 * Gets an adapter and a device fit for the kernels. Throws WebGpuUnavailableError with a message
 * a user can act on when `gpu` is missing, no adapter is found, or a limit is too low.
 */
export async function acquireDevice(gpu: GPU | null | undefined, options: AcquireOptions = {}): Promise<GpuContext> {
  if (!gpu) {
    throw new WebGpuUnavailableError('WebGPU is not available here (no navigator.gpu): use a recent Chrome or Edge, or enable WebGPU');
  }
  let adapter: GPUAdapter | null;
  try {
    adapter = await gpu.requestAdapter({ powerPreference: options.powerPreference ?? 'high-performance' });
  } catch (e) {
    throw new WebGpuUnavailableError(`requesting a WebGPU adapter failed: ${(e as Error).message}`);
  }
  if (!adapter) {
    throw new WebGpuUnavailableError('no WebGPU adapter was found (the GPU may be blocklisted or WebGPU disabled)');
  }

  const requiredLimits: Record<string, number> = {};
  const shortfalls: string[] = [];
  for (const name of RAISED_LIMITS) {
    const have = adapter.limits[name];
    const need = Math.max(KERNEL_MIN_LIMITS[name], options.minLimits?.[name] ?? 0);
    if (have < need) shortfalls.push(`${name} is ${formatLimit(name, have)}, needs ${formatLimit(name, need)}`);
    requiredLimits[name] = have;
  }
  if (shortfalls.length > 0) {
    throw new WebGpuUnavailableError(`the WebGPU adapter's limits are too low: ${shortfalls.join('; ')}`);
  }

  const requiredFeatures: GPUFeatureName[] = [];
  const wantTimestamps = options.timestamps ?? true;
  if (wantTimestamps && adapter.features.has('timestamp-query')) requiredFeatures.push('timestamp-query');

  const summary = describeAdapter(adapter);
  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({ label: options.label ?? 'servelab', requiredLimits, requiredFeatures });
  } catch (e) {
    throw new WebGpuUnavailableError(`requesting a WebGPU device failed: ${(e as Error).message}`);
  }
  return wrapDevice(device, summary, gpu);
}

/**
 * Wraps an existing device (e.g. one a test or host created) as a GpuContext. `gpu`, when given,
 * is kept referenced by the context: Dawn for Node tears its instance down (and crashes pending
 * work) once the object returned by `create()` is garbage collected.
 */
export function wrapDevice(device: GPUDevice, adapter: AdapterSummary, gpu?: GPU): GpuContext {
  let loss: DeviceLoss | null = null;
  /** destroy() was called: the device is gone now, even before its lost promise settles. */
  let destroyed = false;
  const lostCallbacks = new Set<(loss: DeviceLoss) => void>();
  const errorCallbacks = new Set<(error: GPUError) => void>();

  const lost = device.lost.then((info): DeviceLoss => {
    loss = { reason: info.reason, message: info.message };
    for (const cb of lostCallbacks) cb(loss);
    lostCallbacks.clear();
    return loss;
  });
  device.onuncapturederror = (event: GPUUncapturedErrorEvent) => {
    for (const cb of errorCallbacks) cb(event.error);
  };

  return {
    device,
    adapter,
    gpu,
    hasTimestampQuery: device.features.has('timestamp-query'),
    lost,
    get isLost() {
      return loss !== null || destroyed;
    },
    onLost(callback) {
      if (loss) {
        callback(loss);
        return () => {};
      }
      lostCallbacks.add(callback);
      return () => lostCallbacks.delete(callback);
    },
    onError(callback) {
      errorCallbacks.add(callback);
      return () => errorCallbacks.delete(callback);
    },
    destroy() {
      destroyed = true;
      device.destroy();
    },
  };
}
