/** Named benchmarks and backends (see types.ts). */
import type { Backend, BenchCommand } from './types.ts';
import { VirtualClock } from '../../engine/clock.ts';
import { SimExecutor } from '../simExecutor.ts';

const benches = new Map<string, BenchCommand>();
const backends = new Map<string, Backend>();

export function registerBench(command: BenchCommand): void {
  if (benches.has(command.name)) throw new Error(`benchmark ${command.name} is already registered`);
  benches.set(command.name, command);
}

export function getBench(name: string): BenchCommand | undefined {
  return benches.get(name);
}

export function listBenches(): BenchCommand[] {
  return [...benches.values()];
}

export function registerBackend(backend: Backend): void {
  if (backends.has(backend.name)) throw new Error(`backend ${backend.name} is already registered`);
  backends.set(backend.name, backend);
}

export function getBackend(name: string): Backend | undefined {
  return backends.get(name);
}

export function listBackends(): string[] {
  return [...backends.keys()];
}

/** The roofline simulator on a virtual clock. */
export const simBackend: Backend = {
  name: 'sim',
  makeExecutor: (r) => new SimExecutor({ model: r.model, hardware: r.hardware, parallel: r.parallel, eosPosition: r.eosPosition }),
  makeClock: () => new VirtualClock(),
};

registerBackend(simBackend);
