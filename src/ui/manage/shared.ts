/**
 * The manage panel's engine: a supervised worker of its own (models loaded, faults injected and
 * runs replayed there do not disturb the lab), driven like every other engine by a WorkerEngine.
 * Created on first use and kept while the page lives.
 */
import { WorkerEngine } from '../lab/worker-engine.svelte.ts';

let shared: WorkerEngine | null = null;

export function sharedManageDriver(): WorkerEngine {
  shared ??= new WorkerEngine('manage');
  return shared;
}
