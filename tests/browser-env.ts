/**
 * Where the test browser lives and how it is launched. Defaults give real WebGPU on machines
 * without a GPU (Debian Chromium + SwiftShader, see ../shared/notes/webgpu-on-these-machines.md);
 * on a laptop with a real GPU set SERVELAB_CHROMIUM and SERVELAB_CHROMIUM_ARGS.
 */
export const chromiumPath: string = process.env.SERVELAB_CHROMIUM ?? '/usr/bin/chromium';

const defaultArgs = [
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--enable-unsafe-webgpu',
  '--enable-features=Vulkan',
  '--use-angle=swiftshader',
  '--use-webgpu-adapter=swiftshader',
];

export const chromiumArgs: string[] = process.env.SERVELAB_CHROMIUM_ARGS
  ? process.env.SERVELAB_CHROMIUM_ARGS.split(/\s+/).filter(Boolean)
  : defaultArgs;
