/**
 * Fetching model files with progress (bytes, rate, time left) and a size cap. Works in the
 * worker, the page and Node (global fetch). Errors say what happened in words a user can act on.
 */
import { concatBytes } from './bytes.ts';

export interface FetchProgress {
  url: string;
  loadedBytes: number;
  /** From Content-Length; null when the server does not say. */
  totalBytes: number | null;
  bytesPerSecond: number;
  /** Seconds left at the current rate; null when unknown. */
  secondsLeft: number | null;
}

export const defaultMaxDownloadBytes = 2 * 1024 ** 3;

export class ModelFetchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ModelFetchError';
  }
}

export async function fetchBytes(
  url: string,
  onProgress?: (p: FetchProgress) => void,
  opts: { maxBytes?: number; signal?: AbortSignal } = {},
): Promise<Uint8Array> {
  const maxBytes = opts.maxBytes ?? defaultMaxDownloadBytes;
  let response: Response;
  try {
    response = await fetch(url, { signal: opts.signal });
  } catch (e) {
    if ((e as Error).name === 'AbortError') throw e;
    throw new ModelFetchError(
      `could not download ${url}: ${(e as Error).message}. You may be offline, or the server does not allow ` +
        `cross-origin downloads (CORS).`,
    );
  }
  if (!response.ok) {
    throw new ModelFetchError(`could not download ${url}: the server answered ${response.status} ${response.statusText}`.trim());
  }
  const header = response.headers.get('content-length');
  const totalBytes = header !== null && /^\d+$/.test(header) ? Number(header) : null;
  if (totalBytes !== null && totalBytes > maxBytes) {
    throw new ModelFetchError(`${url} is ${totalBytes} bytes, over the ${maxBytes}-byte download limit`);
  }
  const started = performance.now();
  const report = (loadedBytes: number) => {
    const seconds = Math.max((performance.now() - started) / 1000, 1e-3);
    const bytesPerSecond = loadedBytes / seconds;
    const secondsLeft = totalBytes !== null && bytesPerSecond > 0 ? Math.max(0, (totalBytes - loadedBytes) / bytesPerSecond) : null;
    onProgress?.({ url, loadedBytes, totalBytes, bytesPerSecond, secondsLeft });
  };
  if (!response.body) {
    const bytes = new Uint8Array(await response.arrayBuffer());
    report(bytes.byteLength);
    return bytes;
  }
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    loaded += value.byteLength;
    if (loaded > maxBytes) {
      await reader.cancel();
      throw new ModelFetchError(`${url} is over the ${maxBytes}-byte download limit`);
    }
    chunks.push(value);
    report(loaded);
  }
  if (totalBytes !== null && loaded !== totalBytes) {
    throw new ModelFetchError(`download of ${url} was cut short: ${loaded} of ${totalBytes} bytes`);
  }
  return concatBytes(chunks);
}
