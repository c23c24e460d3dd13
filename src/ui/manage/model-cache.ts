/**
 * Downloaded and opened model files, kept in Cache Storage so they load again offline. Each
 * cached model is one entry per file (model, and a tokenizer for llama2.c checkpoints) under a
 * same-origin key, and an index entry that lists what a model needs. The storage quota comes
 * from navigator.storage.estimate(); the browser may ask to keep storage persistent.
 */
export const MODEL_CACHE_NAME = 'servelab-models-v1';
const INDEX_KEY = '/__servelab/models/index.json';

export interface CachedModel {
  /** Display name; also the key of the model in the cache. */
  name: string;
  /** Where it came from (a URL, or "local file"). */
  origin: string;
  modelFile: string;
  tokenizerFile: string | null;
  sizeBytes: number;
  /** ISO date. */
  savedAt: string;
}

export interface StorageQuota {
  usageBytes: number;
  quotaBytes: number;
  persisted: boolean;
}

export class ModelCacheError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ModelCacheError';
  }
}

export function cacheAvailable(): boolean {
  return typeof caches !== 'undefined';
}

const fileKey = (modelName: string, role: 'model' | 'tokenizer') => `/__servelab/models/${encodeURIComponent(modelName)}/${role}`;

async function open(): Promise<Cache> {
  if (!cacheAvailable()) throw new ModelCacheError('this browser has no Cache Storage here (a private window, or not a secure context)');
  return caches.open(MODEL_CACHE_NAME);
}

export async function listCachedModels(): Promise<CachedModel[]> {
  if (!cacheAvailable()) return [];
  const cache = await open();
  const res = await cache.match(INDEX_KEY);
  if (!res) return [];
  try {
    const list = (await res.json()) as CachedModel[];
    return Array.isArray(list) ? list : [];
  } catch {
    return [];
  }
}

async function writeIndex(cache: Cache, list: CachedModel[]): Promise<void> {
  await cache.put(INDEX_KEY, new Response(JSON.stringify(list), { headers: { 'content-type': 'application/json' } }));
}

function isQuotaError(e: unknown): boolean {
  return e instanceof DOMException && (e.name === 'QuotaExceededError' || e.code === 22);
}

/**
 * Stores a model's files. Throws ModelCacheError with the quota in words when storage is full;
 * a half-written model is removed again.
 */
export async function putCachedModel(name: string, origin: string, modelBytes: Uint8Array, tokenizerBytes: Uint8Array | null): Promise<CachedModel> {
  const cache = await open();
  const entry: CachedModel = {
    name,
    origin,
    modelFile: fileKey(name, 'model'),
    tokenizerFile: tokenizerBytes ? fileKey(name, 'tokenizer') : null,
    sizeBytes: modelBytes.byteLength + (tokenizerBytes?.byteLength ?? 0),
    savedAt: new Date().toISOString(),
  };
  const body = (b: Uint8Array) => new Response(b.slice().buffer as ArrayBuffer, { headers: { 'content-type': 'application/octet-stream', 'content-length': String(b.byteLength) } });
  try {
    await cache.put(entry.modelFile, body(modelBytes));
    if (tokenizerBytes && entry.tokenizerFile) await cache.put(entry.tokenizerFile, body(tokenizerBytes));
    const list = (await listCachedModels()).filter((m) => m.name !== name);
    await writeIndex(cache, [...list, entry]);
  } catch (e) {
    await cache.delete(entry.modelFile).catch(() => false);
    if (entry.tokenizerFile) await cache.delete(entry.tokenizerFile).catch(() => false);
    if (isQuotaError(e)) {
      const q = await storageQuota();
      const room = q ? ` (the browser reports ${mib(q.usageBytes)} of ${mib(q.quotaBytes)} in use)` : '';
      throw new ModelCacheError(`not enough storage to keep ${name} (${mib(entry.sizeBytes)}) for offline use${room}; delete a cached model to make room`);
    }
    throw new ModelCacheError(`could not cache ${name}: ${(e as Error).message}`);
  }
  return entry;
}

export async function readCachedModel(name: string): Promise<{ entry: CachedModel; modelBytes: Uint8Array; tokenizerBytes: Uint8Array | null }> {
  const cache = await open();
  const entry = (await listCachedModels()).find((m) => m.name === name);
  if (!entry) throw new ModelCacheError(`${name} is not in the model cache`);
  const read = async (key: string) => {
    const res = await cache.match(key);
    if (!res) throw new ModelCacheError(`the cached copy of ${name} is incomplete (${key} is missing); delete it and download again`);
    return new Uint8Array(await res.arrayBuffer());
  };
  return { entry, modelBytes: await read(entry.modelFile), tokenizerBytes: entry.tokenizerFile ? await read(entry.tokenizerFile) : null };
}

export async function deleteCachedModel(name: string): Promise<void> {
  const cache = await open();
  const list = await listCachedModels();
  const entry = list.find((m) => m.name === name);
  if (!entry) return;
  await cache.delete(entry.modelFile);
  if (entry.tokenizerFile) await cache.delete(entry.tokenizerFile);
  await writeIndex(
    cache,
    list.filter((m) => m.name !== name),
  );
}

export async function storageQuota(): Promise<StorageQuota | null> {
  const storage = typeof navigator !== 'undefined' ? navigator.storage : undefined;
  if (!storage?.estimate) return null;
  const e = await storage.estimate();
  const persisted = storage.persisted ? await storage.persisted() : false;
  return { usageBytes: e.usage ?? 0, quotaBytes: e.quota ?? 0, persisted };
}

/** Asks the browser not to evict cached models under storage pressure. */
export async function requestPersistentStorage(): Promise<boolean> {
  return (await navigator.storage?.persist?.()) ?? false;
}

const mib = (n: number) => `${(n / 1024 ** 2).toFixed(n < 10 * 1024 ** 2 ? 2 : 0)} MiB`;
