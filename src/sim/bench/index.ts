/** Registers the built-in benchmarks; import this before looking one up. */
import { registerBench } from './registry.ts';
import { kvBench } from './kv.ts';
import { batchingBench } from './batching.ts';
import { overheadBench } from './overhead.ts';
import { fleetBench } from './fleet.ts';

registerBench(kvBench);
registerBench(batchingBench);
registerBench(overheadBench);
registerBench(fleetBench);

export { getBench, listBenches, getBackend, listBackends, registerBench, registerBackend } from './registry.ts';
export { formatTable } from './runWorkload.ts';
export type { Backend, BenchCommand, BenchContext, BenchResult } from './types.ts';
