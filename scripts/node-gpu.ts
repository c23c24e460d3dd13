/**
 * WebGPU in Node for the command-line tools: Dawn from the `webgpu` package. On machines without
 * a GPU, Dawn needs a Vulkan driver, and Chromium's SwiftShader is one (see
 * ../shared/notes/webgpu-on-these-machines.md); it is used when no driver is named. On a machine
 * with a real GPU, set SERVELAB_VK_ICD=system (or VK_ICD_FILENAMES) to use its own driver.
 */
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { acquireDevice } from '../src/gpu/device.ts';
import { GpuExecutor } from '../src/gpu/executor.ts';
import { loadKernelSources } from '../src/gpu/kernel-sources.node.ts';
import { GpuRuntime } from '../src/gpu/step.ts';
import type { Model } from '../src/model/types.ts';
import { fail } from './cli-args.ts';

const swiftshaderIcd = '/usr/lib/chromium/vk_swiftshader_icd.json';

export async function nodeGpu(): Promise<GPU> {
  const named = process.env.VK_ICD_FILENAMES || process.env.VK_DRIVER_FILES;
  if (!named && process.env.SERVELAB_VK_ICD !== 'system' && existsSync(swiftshaderIcd)) {
    process.env.VK_ICD_FILENAMES = swiftshaderIcd;
  }
  // Dawn probes display servers on start and complains without one; a runtime dir quiets it.
  process.env.XDG_RUNTIME_DIR ??= tmpdir();
  const { create, globals } = await import('webgpu');
  Object.assign(globalThis, globals);
  return create([]);
}

/** A GpuExecutor for `model` on a device of its own (a device that cannot be had: one line, exit 1); cleanup frees all three. */
export async function nodeGpuExecutor(model: Model): Promise<{ executor: GpuExecutor; cleanup: () => void }> {
  let ctx;
  try {
    ctx = await acquireDevice(await nodeGpu());
  } catch (e) {
    fail((e as Error).message);
  }
  const runtime = GpuRuntime.fromContext(ctx, loadKernelSources());
  const executor = new GpuExecutor(ctx, runtime, model);
  return { executor, cleanup: () => (executor.dispose(), runtime.destroy(), ctx.destroy()) };
}
