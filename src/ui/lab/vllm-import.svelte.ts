/**
 * The `vllm bench serve` results the user imported (src/export/vllm-results.ts), shown beside the
 * lab's own run in the latency panel. One per page: importing another replaces it; a refused file
 * leaves the one shown as it was and says why.
 */
import { parseVllmBenchResult, VllmResultError, type VllmBenchRun } from '../../export/vllm-results.ts';

/** Largest results file read (a --save-detailed run of 10,000 requests with their texts is tens of MB). */
export const MAX_VLLM_RESULT_BYTES = 256 * 1024 ** 2;

export class VllmImport {
  /** The run shown, with the file it came from. */
  current = $state.raw<{ run: VllmBenchRun; fileName: string } | null>(null);
  /** Why the last file was refused (null after a good import or a clear). */
  error = $state<string | null>(null);

  /** Reads and checks a file; on success it replaces the run shown. Resolves with the run or null. */
  async importFile(file: File): Promise<VllmBenchRun | null> {
    try {
      if (file.size > MAX_VLLM_RESULT_BYTES) throw new VllmResultError([`${file.name} is ${(file.size / 1024 ** 2).toFixed(0)} MB; at most ${MAX_VLLM_RESULT_BYTES / 1024 ** 2} MB are read`]);
      const run = parseVllmBenchResult(await file.text());
      this.current = { run, fileName: file.name };
      this.error = null;
      return run;
    } catch (e) {
      this.error = `${file.name}: ${(e as Error).message}`;
      return null;
    }
  }

  clear(): void {
    this.current = null;
    this.error = null;
  }
}

/** The page's one import (the manage drawer's Runs panel and the latency panel both use it). */
export const vllmImport = new VllmImport();
