/**
 * Kernel registry: compiles the WGSL of kernels/ once per device, specialises pipelines by their
 * `override` constants (cached per kernel + override values), and caches bind groups.
 *
 * The binding layout of each kernel is read from its WGSL (`@group(0) @binding(n) var<...> name`)
 * and created explicitly, so callers bind by NAME and a binding that a specialisation does not
 * use (e.g. matmul's normWeight without NORM_INPUT) may be left out: a small dummy buffer is bound
 * in its place. The `params` uniform (a struct of u32/i32/f32 fields, binding 0 where present) is
 * bound with a dynamic offset into a chunk of the step's parameter arena (see step.ts).
 */
import { BufferUsage, SHADER_STAGE_COMPUTE } from './buffers.ts';
import type { KernelName, KernelSources } from './kernel-names.ts';

/** A whole buffer, or a range of one (offset a multiple of 256 bytes). */
export type BufferBinding = GPUBuffer | { buffer: GPUBuffer; offset?: number; size?: number };

/** Override constant values; booleans become 0/1. */
export type OverrideValues = Readonly<Record<string, number | boolean>>;

export interface BindingInfo {
  name: string;
  binding: number;
  kind: 'uniform' | 'read-only-storage' | 'storage';
}

export interface ParamField {
  name: string;
  type: 'u32' | 'i32' | 'f32';
}

export interface OverrideInfo {
  name: string;
  type: string;
  /** False when the WGSL gives no default: the caller must set it. */
  hasDefault: boolean;
}

export interface KernelInfo {
  name: KernelName;
  bindings: BindingInfo[];
  /** Fields of the `params` uniform, in order (empty when the kernel has none). */
  params: ParamField[];
  overrides: OverrideInfo[];
}

/** Bytes reserved per dispatch in the parameter arena (minUniformBufferOffsetAlignment). */
export const PARAMS_SLOT_BYTES = 256;

/**
 * Bindings a specialisation may leave out, and the boolean override that makes them required.
 */
const OPTIONAL_BINDINGS: Partial<Record<KernelName, Record<string, string>>> = {
  matmul_gemv: { normWeight: 'NORM_INPUT', rowIds: 'GATHER_ROWS' },
  matmul_lanes: { normWeight: 'NORM_INPUT', rowIds: 'GATHER_ROWS' },
  matmul_tiled: { normWeight: 'NORM_INPUT', rowIds: 'GATHER_ROWS' },
  lora_bgmv: { normWeight: 'NORM_INPUT' },
  paged_attention: { ropeTable: 'ROPE_KV' },
};

/** Reads bindings, the params struct and the overrides of one kernel's WGSL. */
export function parseKernel(name: KernelName, source: string): KernelInfo {
  const code = source.replace(/\/\/[^\n]*/g, '');
  const bindings: BindingInfo[] = [];
  for (const m of code.matchAll(/@group\((\d+)\)\s*@binding\((\d+)\)\s*var<([^>]+)>\s*(\w+)\s*:\s*(\w+)/g)) {
    if (m[1] !== '0') throw new Error(`kernel ${name}: only @group(0) is supported (${m[4]})`);
    const space = m[3].replace(/\s/g, '');
    const kind = space === 'uniform' ? 'uniform' : space === 'storage,read_write' ? 'storage' : space === 'storage,read' || space === 'storage' ? 'read-only-storage' : null;
    if (!kind) throw new Error(`kernel ${name}: unsupported address space var<${m[3]}> for ${m[4]}`);
    if (kind === 'uniform' && (m[4] !== 'params' || m[5] !== 'Params')) {
      throw new Error(`kernel ${name}: the only uniform must be 'params: Params'`);
    }
    bindings.push({ name: m[4], binding: Number(m[2]), kind });
  }
  bindings.sort((a, b) => a.binding - b.binding);

  const params: ParamField[] = [];
  if (bindings.some((b) => b.kind === 'uniform')) {
    const struct = /struct\s+Params\s*\{([^}]*)\}/.exec(code);
    if (!struct) throw new Error(`kernel ${name}: struct Params not found`);
    for (const f of struct[1].matchAll(/(\w+)\s*:\s*(\w+)/g)) {
      if (f[2] !== 'u32' && f[2] !== 'i32' && f[2] !== 'f32') throw new Error(`kernel ${name}: Params.${f[1]} must be u32, i32 or f32`);
      params.push({ name: f[1], type: f[2] });
    }
  }

  const overrides: OverrideInfo[] = [];
  for (const m of code.matchAll(/override\s+(\w+)\s*:\s*(\w+)\s*(=)?[^;]*;/g)) {
    overrides.push({ name: m[1], type: m[2], hasDefault: m[3] === '=' });
  }
  return { name, bindings, params, overrides };
}

interface CompiledKernel {
  info: KernelInfo;
  module: GPUShaderModule;
  bindGroupLayout: GPUBindGroupLayout;
  pipelineLayout: GPUPipelineLayout;
}

export interface RegistryStats {
  pipelines: number;
  /** Pipelines asked for with pipelineAsync and not compiled yet. */
  compiling: number;
  bindGroups: number;
  bindGroupMisses: number;
}

const MAX_CACHED_BIND_GROUPS = 8192;

export class KernelRegistry {
  readonly device: GPUDevice;
  private readonly sources: KernelSources;
  private readonly kernels = new Map<KernelName, CompiledKernel>();
  private readonly pipelines = new Map<string, GPUComputePipeline>();
  private readonly pending = new Map<string, Promise<GPUComputePipeline>>();
  private readonly bindGroups = new Map<string, GPUBindGroup>();
  private readonly bufferIds = new WeakMap<GPUBuffer, number>();
  private nextBufferId = 1;
  private bindGroupMisses = 0;
  private dummy: GPUBuffer | null = null;

  constructor(device: GPUDevice, sources: KernelSources) {
    this.device = device;
    this.sources = sources;
  }

  /** Parsed bindings, params and overrides of a kernel (compiles its module on first use). */
  info(name: KernelName): KernelInfo {
    return this.kernel(name).info;
  }

  /** The pipeline of `name` specialised with `overrides` (created synchronously on a miss). */
  pipeline(name: KernelName, overrides: OverrideValues = {}): GPUComputePipeline {
    const key = this.pipelineKey(name, overrides);
    let p = this.pipelines.get(key);
    if (!p) {
      p = this.device.createComputePipeline(this.pipelineDescriptor(name, overrides));
      this.pipelines.set(key, p);
    }
    return p;
  }

  /** Compiles a specialisation ahead of time without blocking (warm-up before the first step). */
  async pipelineAsync(name: KernelName, overrides: OverrideValues = {}): Promise<GPUComputePipeline> {
    const key = this.pipelineKey(name, overrides);
    const have = this.pipelines.get(key);
    if (have) return have;
    let pending = this.pending.get(key);
    if (!pending) {
      pending = this.device.createComputePipelineAsync(this.pipelineDescriptor(name, overrides)).then((p) => {
        // A step that could not wait may have created it synchronously meanwhile: keep that one.
        if (!this.pipelines.has(key)) this.pipelines.set(key, p);
        this.pending.delete(key);
        return this.pipelines.get(key)!;
      });
      this.pending.set(key, pending);
    }
    return pending;
  }

  /**
   * The bind group of `name` for these named buffers (cached by buffer identity and range).
   * `paramsBuffer` is the arena chunk bound (with a dynamic offset) as `params`.
   */
  bindGroup(
    name: KernelName,
    resources: Readonly<Record<string, BufferBinding | undefined>>,
    overrides: OverrideValues,
    paramsBuffer?: GPUBuffer,
  ): GPUBindGroup {
    const k = this.kernel(name);
    const optional = OPTIONAL_BINDINGS[name] ?? {};
    for (const key of Object.keys(resources)) {
      if (resources[key] !== undefined && !k.info.bindings.some((b) => b.name === key && b.kind !== 'uniform')) {
        throw new Error(`kernel ${name} has no binding '${key}' (bindings: ${k.info.bindings.map((b) => b.name).join(', ')})`);
      }
    }
    const entries: GPUBindGroupEntry[] = [];
    const keyParts: string[] = [name];
    for (const b of k.info.bindings) {
      let resource: { buffer: GPUBuffer; offset?: number; size?: number };
      if (b.kind === 'uniform') {
        if (!paramsBuffer) throw new Error(`kernel ${name}: params are required`);
        resource = { buffer: paramsBuffer, offset: 0, size: PARAMS_SLOT_BYTES };
      } else {
        const given = resources[b.name];
        if (given === undefined) {
          const flag = optional[b.name];
          if (flag === undefined) throw new Error(`kernel ${name}: binding '${b.name}' is missing`);
          if (overrides[flag]) throw new Error(`kernel ${name}: binding '${b.name}' is required when ${flag} is set`);
          resource = { buffer: this.dummyBuffer() };
        } else {
          resource = 'buffer' in given ? given : { buffer: given };
        }
      }
      keyParts.push(`${this.bufferId(resource.buffer)}:${resource.offset ?? 0}:${resource.size ?? -1}`);
      entries.push({ binding: b.binding, resource });
    }
    const key = keyParts.join('|');
    let group = this.bindGroups.get(key);
    if (!group) {
      this.bindGroupMisses++;
      if (this.bindGroups.size >= MAX_CACHED_BIND_GROUPS) this.bindGroups.clear();
      group = this.device.createBindGroup({ label: name, layout: k.bindGroupLayout, entries });
      this.bindGroups.set(key, group);
    }
    return group;
  }

  /** Drops cached bind groups (call after destroying buffers that were bound). */
  clearBindGroups(): void {
    this.bindGroups.clear();
  }

  /** Throws with the compiler's messages if any kernel's WGSL has errors. */
  async checkCompilation(names: readonly KernelName[] = Object.keys(this.sources) as KernelName[]): Promise<void> {
    const problems: string[] = [];
    for (const name of names) {
      const info = await this.kernel(name).module.getCompilationInfo();
      for (const m of info.messages) {
        if (m.type === 'error') problems.push(`${name}.wgsl:${m.lineNum}:${m.linePos}: ${m.message}`);
      }
    }
    if (problems.length > 0) throw new Error(`WGSL compilation failed:\n${problems.join('\n')}`);
  }

  /** Pipelines compiled for one kernel (its specialisations). */
  pipelinesOf(name: KernelName): number {
    let n = 0;
    for (const key of this.pipelines.keys()) if (key.startsWith(`${name}(`)) n++;
    return n;
  }

  get stats(): RegistryStats {
    return { pipelines: this.pipelines.size, compiling: this.pending.size, bindGroups: this.bindGroups.size, bindGroupMisses: this.bindGroupMisses };
  }

  /** Frees the registry's own buffer. Pipelines and bind groups are garbage collected. */
  destroy(): void {
    this.dummy?.destroy();
    this.dummy = null;
    this.bindGroups.clear();
    this.pipelines.clear();
  }

  private kernel(name: KernelName): CompiledKernel {
    let k = this.kernels.get(name);
    if (!k) {
      const source = this.sources[name];
      if (source === undefined) throw new Error(`no WGSL source for kernel '${name}'`);
      const info = parseKernel(name, source);
      const module = this.device.createShaderModule({ label: `${name}.wgsl`, code: source });
      const bindGroupLayout = this.device.createBindGroupLayout({
        label: name,
        entries: info.bindings.map((b) => ({
          binding: b.binding,
          visibility: SHADER_STAGE_COMPUTE,
          buffer: b.kind === 'uniform' ? { type: 'uniform' as const, hasDynamicOffset: true } : { type: b.kind },
        })),
      });
      const pipelineLayout = this.device.createPipelineLayout({ label: name, bindGroupLayouts: [bindGroupLayout] });
      k = { info, module, bindGroupLayout, pipelineLayout };
      this.kernels.set(name, k);
    }
    return k;
  }

  private pipelineKey(name: KernelName, overrides: OverrideValues): string {
    const k = this.kernel(name);
    for (const o of k.info.overrides) {
      if (!o.hasDefault && overrides[o.name] === undefined) throw new Error(`kernel ${name}: override ${o.name} must be set`);
    }
    const parts = Object.keys(overrides)
      .sort()
      .map((key) => {
        if (!k.info.overrides.some((o) => o.name === key)) throw new Error(`kernel ${name} has no override '${key}'`);
        return `${key}=${Number(overrides[key])}`;
      });
    return `${name}(${parts.join(',')})`;
  }

  private pipelineDescriptor(name: KernelName, overrides: OverrideValues): GPUComputePipelineDescriptor {
    const k = this.kernel(name);
    const constants: Record<string, number> = {};
    for (const [key, value] of Object.entries(overrides)) constants[key] = Number(value);
    return {
      label: this.pipelineKey(name, overrides),
      layout: k.pipelineLayout,
      compute: { module: k.module, entryPoint: 'main', constants },
    };
  }

  private bufferId(buffer: GPUBuffer): number {
    let id = this.bufferIds.get(buffer);
    if (id === undefined) {
      id = this.nextBufferId++;
      this.bufferIds.set(buffer, id);
    }
    return id;
  }

  private dummyBuffer(): GPUBuffer {
    if (!this.dummy) {
      this.dummy = this.device.createBuffer({ label: 'unused binding', size: 16, usage: BufferUsage.STORAGE });
    }
    return this.dummy;
  }
}
