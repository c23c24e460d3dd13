/**
 * Buffer helpers: create storage buffers from typed arrays, upload, and read back (mapAsync).
 * The WebGPU flag values are spelled out here so this module works without the GPUBufferUsage /
 * GPUMapMode globals (Dawn-for-Node only installs them when asked to).
 */

/** GPUBufferUsage flag values (WebGPU spec). */
export const BufferUsage = {
  MAP_READ: 0x0001,
  MAP_WRITE: 0x0002,
  COPY_SRC: 0x0004,
  COPY_DST: 0x0008,
  INDEX: 0x0010,
  VERTEX: 0x0020,
  UNIFORM: 0x0040,
  STORAGE: 0x0080,
  INDIRECT: 0x0100,
  QUERY_RESOLVE: 0x0200,
} as const;

/** GPUShaderStage.COMPUTE. */
export const SHADER_STAGE_COMPUTE = 0x4;
/** GPUMapMode.READ. */
export const MAP_MODE_READ = 0x0001;

/** Usage of every buffer a kernel binds: storage, uploadable, copyable out (readback, swap). */
export const STORAGE_USAGE = BufferUsage.STORAGE | BufferUsage.COPY_DST | BufferUsage.COPY_SRC;

/** Rounds up to a multiple of 4 bytes (buffer sizes and writeBuffer lengths must be). */
export const align4 = (bytes: number): number => Math.ceil(bytes / 4) * 4;
/** Rounds up to a multiple of 256 bytes (storage/uniform binding offsets must be). */
export const align256 = (bytes: number): number => Math.ceil(bytes / 256) * 256;

/** An empty (zeroed) storage buffer of `sizeBytes` (rounded up to 4, at least 4). */
export function createStorageBuffer(device: GPUDevice, sizeBytes: number, label?: string, usage: number = STORAGE_USAGE): GPUBuffer {
  return device.createBuffer({ label, size: Math.max(4, align4(sizeBytes)), usage });
}

/** A storage buffer holding `data` (Float32Array, Uint32Array, Int32Array...). */
export function createBufferFromData(device: GPUDevice, data: ArrayBufferView, label?: string, usage: number = STORAGE_USAGE): GPUBuffer {
  const size = Math.max(4, align4(data.byteLength));
  const buffer = device.createBuffer({ label, size, usage, mappedAtCreation: true });
  new Uint8Array(buffer.getMappedRange()).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  buffer.unmap();
  return buffer;
}

/** Queues an upload of `data` into `buffer` at `offsetBytes` (byte length padded to 4). */
export function writeBuffer(device: GPUDevice, buffer: GPUBuffer, data: ArrayBufferView, offsetBytes = 0): void {
  if (data.byteLength % 4 === 0) {
    device.queue.writeBuffer(buffer, offsetBytes, data.buffer, data.byteOffset, data.byteLength);
  } else {
    const padded = new Uint8Array(align4(data.byteLength));
    padded.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    device.queue.writeBuffer(buffer, offsetBytes, padded);
  }
}

/**
 * Reads `sizeBytes` of `buffer` from `offsetBytes` (multiples of 4) after all submitted work:
 * one copy into a fresh mappable buffer, one submit, mapAsync. For per-step readbacks use
 * StepEncoder.read(), which rides on the step's own submit.
 */
export async function readBuffer(device: GPUDevice, buffer: GPUBuffer, sizeBytes: number = buffer.size, offsetBytes = 0): Promise<ArrayBuffer> {
  const staging = device.createBuffer({ label: 'readback', size: align4(sizeBytes), usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
  const encoder = device.createCommandEncoder({ label: 'readback' });
  encoder.copyBufferToBuffer(buffer, offsetBytes, staging, 0, align4(sizeBytes));
  device.queue.submit([encoder.finish()]);
  try {
    await staging.mapAsync(MAP_MODE_READ);
    return staging.getMappedRange().slice(0, sizeBytes);
  } finally {
    staging.destroy();
  }
}

export async function readFloat32(device: GPUDevice, buffer: GPUBuffer, count?: number, offsetElements = 0): Promise<Float32Array> {
  const n = count ?? buffer.size / 4 - offsetElements;
  return new Float32Array(await readBuffer(device, buffer, n * 4, offsetElements * 4));
}

export async function readUint32(device: GPUDevice, buffer: GPUBuffer, count?: number, offsetElements = 0): Promise<Uint32Array> {
  const n = count ?? buffer.size / 4 - offsetElements;
  return new Uint32Array(await readBuffer(device, buffer, n * 4, offsetElements * 4));
}
