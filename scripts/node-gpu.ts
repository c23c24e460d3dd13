/**
 * WebGPU in Node for the command-line tools: Dawn from the `webgpu` package. On machines without
 * a GPU, Dawn needs a Vulkan driver, and Chromium's SwiftShader is one (see
 * ../shared/notes/webgpu-on-these-machines.md); it is used when no driver is named. On a machine
 * with a real GPU, set SERVELAB_VK_ICD=system (or VK_ICD_FILENAMES) to use its own driver.
 */
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';

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
