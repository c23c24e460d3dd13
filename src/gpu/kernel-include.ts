/**
 * WGSL has no include: a kernel names a shared file of kernels/lib/ on a line of its own,
 *
 *   // @include lib/quant.wgsl
 *
 * and both loaders of the kernel sources (kernel-sources.ts for Vite, kernel-sources.node.ts for
 * Node) replace that line with the file's text before the registry parses and compiles the kernel.
 */

/** Shared WGSL files by their path under kernels/ (e.g. 'lib/quant.wgsl'). */
export type KernelLibs = Readonly<Record<string, string>>;

const INCLUDE = /^[ \t]*\/\/[ \t]*@include[ \t]+(\S+)[ \t]*$/gm;

/** The paths a source includes, in order. */
export function includedPaths(source: string): string[] {
  return [...source.matchAll(INCLUDE)].map((m) => m[1]);
}

/**
 * `source` with each include line replaced by the named file's text (one level: a shared file
 * includes nothing). A name with no file is an error that says which kernel and which file.
 */
export function resolveIncludes(kernel: string, source: string, libs: KernelLibs): string {
  return source.replace(INCLUDE, (_line, path: string) => {
    const text = libs[path];
    if (text === undefined) throw new Error(`kernel ${kernel} includes ${path}, which is not among the shared WGSL files (${Object.keys(libs).join(', ') || 'none'})`);
    if (includedPaths(text).length > 0) throw new Error(`${path} includes another file: shared WGSL files include nothing`);
    return text;
  });
}
