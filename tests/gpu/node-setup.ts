// Dawn-for-Node needs a Vulkan driver. On machines without a GPU, Chromium's SwiftShader is one
// (../shared/notes/webgpu-on-these-machines.md). A real GPU's driver is used when this is unset
// and SERVELAB_VK_ICD=system.
if (!process.env.VK_ICD_FILENAMES && process.env.SERVELAB_VK_ICD !== 'system') {
  process.env.VK_ICD_FILENAMES = '/usr/lib/chromium/vk_swiftshader_icd.json';
}
