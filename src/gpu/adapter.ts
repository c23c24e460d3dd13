/**
 * What the page shows about the WebGPU adapter: vendor, architecture, key limits and features,
 * as plain data (it crosses the worker boundary).
 */
export interface AdapterSummary {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** True for software adapters (SwiftShader, WARP, lavapipe). */
  isFallback: boolean;
  features: string[];
  limits: {
    maxBufferSize: number;
    maxStorageBufferBindingSize: number;
    maxComputeWorkgroupStorageSize: number;
    maxComputeInvocationsPerWorkgroup: number;
    maxComputeWorkgroupSizeX: number;
    maxStorageBuffersPerShaderStage: number;
    maxComputeWorkgroupsPerDimension: number;
  };
}

export type AdapterProbe = { ok: true; adapter: AdapterSummary } | { ok: false; reason: string };

export function describeAdapter(adapter: GPUAdapter): AdapterSummary {
  const info = adapter.info;
  const l = adapter.limits;
  const software = /swiftshader|warp|lavapipe|llvmpipe/i.test(`${info.vendor} ${info.architecture} ${info.description}`);
  return {
    vendor: info.vendor || 'unknown',
    architecture: info.architecture || 'unknown',
    device: info.device || '',
    description: info.description || '',
    isFallback: software || Boolean((info as GPUAdapterInfo & { isFallbackAdapter?: boolean }).isFallbackAdapter),
    features: [...adapter.features].sort(),
    limits: {
      maxBufferSize: l.maxBufferSize,
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
      maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
      maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
    },
  };
}

/** Asks for an adapter and says why there is none, in words a user can act on. */
export async function probeAdapter(gpu: GPU | undefined): Promise<AdapterProbe> {
  if (!gpu) {
    return { ok: false, reason: 'this browser does not expose navigator.gpu (try a recent Chrome or Edge, or enable WebGPU)' };
  }
  try {
    const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
    if (!adapter) return { ok: false, reason: 'no GPU adapter was found (the GPU may be blocklisted or WebGPU disabled)' };
    return { ok: true, adapter: describeAdapter(adapter) };
  } catch (e) {
    return { ok: false, reason: `requesting a GPU adapter failed: ${(e as Error).message}` };
  }
}
