/**
 * Backends without a GPU for the real-engine benchmarks: `cpu` (the CPU reference executor on the
 * built-in model, or --model) and `fake` (the test-double executor with the model's vocabulary:
 * no model at all, so what remains is the serving core). Both run on a virtual clock, as the
 * worker's engine does. Also the machine description the benchmarks record.
 */
import { openSync, readSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { VirtualClock } from '../src/engine/clock.ts';
import { FakeExecutor } from '../src/engine/testing/fakeExecutor.ts';
import { loadModel } from '../src/model/load.ts';
import { CpuReferenceExecutor } from '../src/model/reference.ts';
import type { Model } from '../src/model/types.ts';
import { registerBackend } from '../src/sim/bench/index.ts';
import type { Backend } from '../src/sim/bench/types.ts';
import { builtinModelPath, builtinTokenizerPath, fail, readBytes } from './cli-args.ts';

/** CPU model and count, memory, Node version (the GPU, where one is used, is added by its backend). */
export function machineDescription(): string {
  const c = cpus();
  const model = c[0]?.model.trim() ?? 'unknown CPU';
  return `${model} x ${c.length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${process.platform}-${process.arch}`;
}

/**
 * The calling thread's run-queue delay so far in ms (Linux: field 2 of /proc/thread-self/schedstat,
 * ns), read through a file kept open, so a read is one pread; undefined where there is no such file.
 * Call it from the thread whose delay it reads (the one that called this).
 */
export function threadRunDelayReader(): (() => number) | undefined {
  if (process.platform !== 'linux') return undefined;
  let fd: number;
  try {
    fd = openSync('/proc/thread-self/schedstat', 'r');
  } catch {
    return undefined;
  }
  const buf = Buffer.alloc(96);
  const read = (): number => {
    const n = readSync(fd, buf, 0, buf.length, 0);
    const fields = buf.toString('latin1', 0, n).split(' ');
    const ns = Number(fields[1]);
    if (!Number.isFinite(ns)) throw new Error(`/proc/thread-self/schedstat: unexpected contents ${JSON.stringify(buf.toString('latin1', 0, n))}`);
    return ns / 1e6;
  };
  try {
    read();
  } catch {
    return undefined;
  }
  return read;
}

export function loadBenchModel(path = builtinModelPath): Model {
  try {
    return loadModel(readBytes(path, 'model'), path, path.endsWith('.gguf') ? undefined : readBytes(builtinTokenizerPath, 'tokenizer')).model;
  } catch (e) {
    fail((e as Error).message);
  }
}

const modelName = (m: Model): string => m.source.name.split('/').pop() ?? 'model';

/** Registers the backend named (cpu or fake) for the model at `modelPath` (default: the built-in one). */
export function registerHostBackend(name: 'cpu' | 'fake', modelPath?: string): void {
  const model = loadBenchModel(modelPath);
  const realModel = { name: modelName(model), maxModelLen: model.config.seqLen, vocabSize: model.config.vocabSize };
  const make = () => (name === 'cpu' ? new CpuReferenceExecutor(model) : new FakeExecutor({ vocabSize: model.config.vocabSize, emitLogits: true }));
  const backend: Backend = {
    name,
    realModel: name === 'cpu' ? realModel : { ...realModel, name: `fake executor (${realModel.name}'s vocabulary and context)` },
    makeExecutor: make,
    realExecutor: make,
    executorFor: name === 'cpu' ? (m) => new CpuReferenceExecutor(m) : undefined,
    describe: () => `${name === 'cpu' ? 'CPU reference executor' : 'fake executor (no model)'}; ${machineDescription()}`,
    threadRunDelayMs: threadRunDelayReader(),
    makeClock: () => new VirtualClock(),
  };
  registerBackend(backend);
}
