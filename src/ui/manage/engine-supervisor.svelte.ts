/**
 * The page's client of one engine worker, supervised: it implements the worker's own EngineApi
 * (so every caller drives one kind of object), owns the worker, keeps the ledger of every
 * request handed to it, and survives the worker's death. When the worker is terminated, or
 * found dead (it stops answering: a watchdog pings it), the requests it had in flight are failed
 * with reason 'worker_crashed' in the ledger, a new worker starts, the current model and
 * settings are loaded into it again, and the views carry on (the lab, compare and the manage
 * panel each drive one of these through an EngineDriver). Model loading goes through here too:
 * from the built-in files, a URL, a local file or the model cache, checked against the adapter's
 * limits first; a load that fails leaves the previous model loaded.
 */
import * as Comlink from 'comlink';
import type { LoraAdapterInfo } from '../../engine/types.ts';
import type { AdapterProbe } from '../../gpu/adapter.ts';
import { fetchBytes, type FetchProgress } from '../../model/fetch.ts';
import { peekModelConfig } from '../../model/peek.ts';
import type { RequestSpec } from '../../engine/request.ts';
import type { EngineEvent } from '../../engine/events.ts';
import type { WorkloadSpec } from '../../engine/workload.ts';
import type { SchedulerConfig } from '../../engine/scheduler.ts';
import type { BenchTextRequest } from '../../serve/bench-prompts.ts';
import type { BenchPrompts, CompletionParams, EngineApi, EngineSettings, HostStatus, ModelSource, ModelSummary, ScenarioRun, StreamEvent, ViewSnapshot } from '../../../workers/protocol.ts';
import { DEFAULT_HOST_SETTINGS } from '../../engine/config.ts';
import { builtinModel, startEngineWorker, type EngineClient, type PreloadedModel } from '../engine-client.ts';
import { ledgerKey, RequestLedger, type LedgerEntry } from './ledger.ts';
import { deleteCachedModel, listCachedModels, putCachedModel, readCachedModel, type CachedModel } from './model-cache.ts';
import { fitModel, MAX_MODEL_BYTES, MAX_TOKENIZER_BYTES, nameFromPath, peekRemoteConfig, pickFiles, type Fit } from './model-sources.ts';

/** A message as a sentence: one full stop at the end, never two. */
function sentence(message: string): string {
  return /[.!?]$/.test(message.trim()) ? message.trim() : `${message.trim()}.`;
}

export type SupervisorPhase = 'starting' | 'ready' | 'loading' | 'restarting' | 'error';

/** What to load into a fresh worker after a restart. */
type ModelRef = { kind: 'builtin' } | { kind: 'cached'; name: string } | { kind: 'bytes'; name: string; modelBytes: Uint8Array; tokenizerBytes: Uint8Array | null };

export interface JournalEntry {
  atMs: number;
  kind: 'fault' | 'recovery' | 'info' | 'error';
  text: string;
}

export interface LoadProgress {
  label: string;
  fetch: FetchProgress | null;
}

export class WorkerGoneError extends Error {
  constructor(generation: number) {
    super(`engine worker ${generation} is gone`);
    this.name = 'WorkerGoneError';
  }
}

interface Slot {
  generation: number;
  worker: Worker;
  client: EngineClient;
  /** The built-in model, already being loaded into this worker (a prestarted worker). */
  builtin: PreloadedModel | null;
  dead: Promise<never>;
  kill: (e: Error) => void;
}

/** A worker that has not answered for this long is pinged; one that then stays silent this long is dead. */
const SILENT_MS = 8000;
const PING_TIMEOUT_MS = 10_000;

export class EngineSupervisor implements EngineApi {
  readonly ledger = new RequestLedger();
  generation = $state(0);
  phase = $state<SupervisorPhase>('starting');
  model = $state.raw<ModelSummary | null>(null);
  adapterProbe = $state.raw<AdapterProbe | null>(null);
  snap = $state.raw<ViewSnapshot | null>(null);
  /** Bumped when the ledger changes (the request table re-reads it). */
  ledgerVersion = $state(0);
  progress = $state.raw<LoadProgress | null>(null);
  journal = $state.raw<JournalEntry[]>([]);
  cached = $state.raw<CachedModel[]>([]);
  /** Whether the last model loaded was kept for offline use, and if not, why (e.g. storage full). */
  lastCaching = $state.raw<{ cached: boolean; problem: string | null } | null>(null);
  settings = $state.raw<EngineSettings>({ ...DEFAULT_HOST_SETTINGS });
  /** The last worker death (terminated or found silent) and what it cost. */
  lastCrash = $state.raw<{ generation: number; cause: string } | null>(null);

  private slot: Slot | null = null;
  private modelRef: ModelRef = { kind: 'builtin' };
  private watchdog: ReturnType<typeof setInterval> | null = null;
  /** Callers' stream callbacks of requests not yet ended, by ledger key (told if their worker dies). */
  private readonly streams = new Map<string, { generation: number; requestId: string; onEvent: (e: StreamEvent) => void }>();
  private lastAnswerMs = performance.now();
  private pinging = false;
  private disposed = false;
  private seenDeviceLosses = 0;
  private recovering = false;
  private readonly startedMs = performance.now();
  private started: Promise<void> | null = null;
  private startConfig: SchedulerConfig | null = null;
  /**
   * Adapters the user loaded from files, with a copy of their bytes (the worker's are transferred
   * away) and the model they were loaded on: a restarted worker gets them again (the shipped ones
   * it loads by itself).
   */
  private userAdapters = new Map<string, { configJson: string; weights: Uint8Array; modelName: string }>();

  constructor(settings?: EngineSettings) {
    if (settings) this.settings = { ...DEFAULT_HOST_SETTINGS, ...settings };
  }

  /** Starts the first worker (idempotent). */
  start(): Promise<void> {
    this.started ??= this.boot().catch((e: Error) => {
      this.phase = 'error';
      this.note('error', `the engine could not start: ${e.message}`);
      throw e;
    });
    return this.started;
  }

  get adapter() {
    return this.adapterProbe?.ok ? this.adapterProbe.adapter : null;
  }

  private spawn(): Slot {
    const { client, worker, builtin } = startEngineWorker();
    let kill!: (e: Error) => void;
    const dead = new Promise<never>((_, reject) => (kill = reject));
    dead.catch(() => {});
    const generation = this.generation + 1;
    this.generation = generation;
    worker.addEventListener('error', (e) => this.note('error', `engine worker ${generation} reported an error: ${e.message || 'unknown error'}`));
    return { generation, worker, client, builtin, dead, kill };
  }

  /** A call into the current worker that fails (instead of hanging) if the worker dies meanwhile. */
  private call<T>(f: (c: EngineClient) => Promise<T>): Promise<T> {
    const slot = this.slot;
    if (!slot) return Promise.reject(new Error('the engine worker is not running'));
    return Promise.race([f(slot.client), slot.dead]).then((v) => {
      if (slot === this.slot) this.lastAnswerMs = performance.now();
      return v;
    });
  }

  /** Pings a worker that has been silent a while; one that does not answer in time is dead. */
  private async checkAlive(): Promise<void> {
    const slot = this.slot;
    if (!slot || this.pinging || this.phase === 'loading' || this.phase === 'restarting' || performance.now() - this.lastAnswerMs < SILENT_MS) return;
    this.pinging = true;
    try {
      const answered = await Promise.race([
        this.call((c) => c.status()).then(() => true),
        new Promise<boolean>((resolve) => setTimeout(() => resolve(false), PING_TIMEOUT_MS)),
      ]).catch(() => false);
      if (!answered && slot === this.slot && !this.disposed) {
        await this.replaceWorker(slot, `engine worker ${slot.generation} stopped answering`).catch(() => {});
      }
    } finally {
      this.pinging = false;
    }
  }

  private async boot(): Promise<void> {
    this.phase = 'starting';
    this.slot = this.spawn();
    this.seenDeviceLosses = 0;
    const probe = this.probe().then((p) => (this.adapterProbe = p));
    // Awaited below; if the worker goes (disposed, killed) during the load, the load's rejection
    // ends boot first and this one would be left unhandled.
    probe.catch(() => {});
    const preloaded = this.modelRef.kind === 'builtin' ? this.slot.builtin : null;
    if (preloaded) {
      // The worker was asked for the built-in model as it started: adopt that load, then apply
      // the settings (the host takes them live, or starts its engine again; no new warm-up).
      await this.loadRef(this.modelRef, preloaded);
      await this.call((c) => c.configure($state.snapshot(this.settings)));
      await this.captureStartConfig();
    } else {
      await this.call((c) => c.configure($state.snapshot(this.settings)));
      await this.loadRef(this.modelRef);
    }
    await probe;
    await this.reloadUserAdapters();
    this.phase = 'ready';
    this.lastAnswerMs = performance.now();
    this.watchdog ??= setInterval(() => void this.checkAlive(), 2000);
    void this.refreshCache();
  }

  private async loadRef(ref: ModelRef, preloaded: PreloadedModel | null = null): Promise<ModelSummary> {
    const onProgress = (p: FetchProgress) => (this.progress = { label: 'stories260K', fetch: p });
    const progress = Comlink.proxy(onProgress);
    let summary: ModelSummary;
    if (preloaded) {
      preloaded.onProgress(onProgress);
      summary = await this.call(() => preloaded.summary);
    } else if (ref.kind === 'builtin') {
      summary = await this.call((c) => c.loadModel(builtinModel, progress));
    } else if (ref.kind === 'cached') {
      const { modelBytes, tokenizerBytes } = await readCachedModel(ref.name);
      summary = await this.sendBytes(ref.name, modelBytes, tokenizerBytes);
    } else {
      summary = await this.sendBytes(ref.name, ref.modelBytes.slice(), ref.tokenizerBytes?.slice() ?? null);
    }
    this.model = summary;
    this.progress = null;
    await this.captureStartConfig();
    return summary;
  }

  /** Hands bytes to the worker without copying them (they are gone from the page afterwards). */
  private sendBytes(name: string, modelBytes: Uint8Array, tokenizerBytes: Uint8Array | null): Promise<ModelSummary> {
    const m = Comlink.transfer(modelBytes, [modelBytes.buffer]);
    const t = tokenizerBytes ? Comlink.transfer(tokenizerBytes, [tokenizerBytes.buffer]) : undefined;
    return this.call((c) => c.loadModelBytes(m, name, t));
  }

  note(kind: JournalEntry['kind'], text: string): void {
    this.journal = [...this.journal.slice(-99), { atMs: performance.now() - this.startedMs, kind, text }];
  }

  // ---- the EngineApi: every call goes to the current worker; requests enter the ledger ----

  probe(): Promise<AdapterProbe> {
    // Comlink's Remote type spreads a union result over promises; the value is one AdapterProbe.
    return this.call((c) => c.probe() as unknown as Promise<AdapterProbe>);
  }

  /** A model by URL into the current worker (no cache, no checks: loadFromUrl does those). */
  loadModel(source: ModelSource, onProgress?: (p: FetchProgress) => void): Promise<ModelSummary> {
    return this.call((c) => c.loadModel(source, onProgress ? Comlink.proxy(onProgress) : undefined));
  }

  loadModelBytes(modelBytes: Uint8Array, name: string, tokenizerBytes?: Uint8Array): Promise<ModelSummary> {
    return this.sendBytes(name, modelBytes, tokenizerBytes ?? null);
  }

  /**
   * The views' state from the worker; it also brings the ledger up to date (every request's
   * state and text) and notes device losses and recoveries in the journal.
   */
  async snapshot(sinceStepIndex = -1): Promise<ViewSnapshot | null> {
    const slot = this.slot;
    const snap = slot ? await this.call((c) => c.snapshot(sinceStepIndex)) : null;
    if (!slot || !snap || slot !== this.slot) return null;
    this.snap = snap;
    this.ledger.onSnapshot(slot.generation, snap.requests, snap.texts);
    this.ledgerVersion = this.ledger.version;
    if (snap.host.numDeviceLosses > this.seenDeviceLosses) {
      this.seenDeviceLosses = snap.host.numDeviceLosses;
      this.recovering = true;
      this.note('fault', `the engine saw the GPU device lost: ${snap.host.message ?? 'no details'}`);
    }
    if (this.recovering && snap.host.phase === 'ready') {
      this.recovering = false;
      this.note('recovery', snap.host.message ?? 'recovered from a lost GPU device');
    }
    return snap;
  }

  submit(params: CompletionParams, onEvent?: (e: StreamEvent) => void): Promise<string> {
    return this.submitFrom('prompt', params, onEvent);
  }

  /** A completion, its text streamed into the ledger (and to onEvent). */
  async submitFrom(source: LedgerEntry['source'], params: CompletionParams, onEvent?: (e: StreamEvent) => void): Promise<string> {
    await this.start();
    const slot = this.slot!;
    // The request may end (and say so here) before submit() returns its id.
    let ended = false;
    const stream = Comlink.proxy((e: StreamEvent) => {
      this.ledger.onStream(slot.generation, e);
      this.ledgerVersion = this.ledger.version;
      if (e.type !== 'text') {
        ended = true;
        this.streams.delete(ledgerKey(slot.generation, e.requestId));
      }
      onEvent?.(e);
    });
    const id = await this.call((c) => c.submit(params, stream));
    this.ledger.add(id, slot.generation, source, params.prompt);
    this.ledgerVersion = this.ledger.version;
    if (onEvent && !ended) this.streams.set(ledgerKey(slot.generation, id), { generation: slot.generation, requestId: id, onEvent });
    return id;
  }

  cancel(requestId: string): Promise<void> {
    return this.call((c) => c.cancel(requestId));
  }

  /**
   * A PEFT LoRA adapter from files (the bytes are transferred to the worker; a copy stays here so a
   * restarted worker gets the adapter again while the same model is loaded).
   */
  async loadAdapterBytes(name: string, configJson: string, weights: Uint8Array): Promise<LoraAdapterInfo> {
    await this.start();
    const kept = weights.slice();
    const w = Comlink.transfer(weights, [weights.buffer]);
    const info = await this.call((c) => c.loadAdapterBytes(name, configJson, w));
    this.userAdapters.set(name, { configJson, weights: kept, modelName: this.model?.name ?? '' });
    return info;
  }

  /** After a restart: the user's adapters loaded on this model go to the new worker again (each said in the journal). */
  private async reloadUserAdapters(): Promise<void> {
    const modelName = this.model?.name ?? '';
    for (const [name, a] of this.userAdapters) {
      if (a.modelName !== modelName) continue;
      const copy = a.weights.slice();
      try {
        await this.call((c) => c.loadAdapterBytes(name, a.configJson, Comlink.transfer(copy, [copy.buffer])));
        this.note('recovery', `adapter ${name} loaded again`);
      } catch (e) {
        this.userAdapters.delete(name);
        this.note('error', `adapter ${name} could not be loaded again: ${(e as Error).message}`);
      }
    }
  }

  async runScenario(run: ScenarioRun, source: LedgerEntry['source'] = 'workload'): Promise<string[]> {
    await this.start();
    const slot = this.slot!;
    const ids = await this.call((c) => c.runScenario({ ...run, workload: $state.snapshot(run.workload) }));
    for (const id of ids) this.ledger.add(id, slot.generation, source);
    this.ledgerVersion = this.ledger.version;
    return ids;
  }

  /** Runs a workload now (the engine resumes if it was paused). */
  async runWorkload(workload: WorkloadSpec, source: LedgerEntry['source'] = 'workload'): Promise<string[]> {
    const ids = await this.runScenario({ workload }, source);
    await this.resume();
    return ids;
  }

  async runTrace(requests: RequestSpec[]): Promise<string[]> {
    await this.start();
    const slot = this.slot!;
    const t0 = Math.min(...requests.map((r) => r.arrivalMs ?? 0));
    const ids = await this.call((c) => c.runTrace(requests.map((r) => ({ ...r, arrivalMs: (r.arrivalMs ?? 0) - t0 }))));
    for (const id of ids) this.ledger.add(id, slot.generation, 'trace');
    this.ledgerVersion = this.ledger.version;
    await this.resume();
    return ids;
  }

  getSettings(): Promise<EngineSettings> {
    return this.call((c) => c.getSettings());
  }

  pause(): Promise<number> {
    return this.call((c) => c.pause());
  }

  resume(): Promise<void> {
    return this.call((c) => c.resume());
  }

  step(): Promise<number> {
    return this.call((c) => c.step());
  }

  setMinStepInterval(ms: number): Promise<void> {
    return this.call((c) => c.setMinStepInterval(ms));
  }

  /** A fresh engine with the current settings (which may have changed live since the last one started). */
  async reset(): Promise<void> {
    await this.call((c) => c.reset());
    await this.captureStartConfig();
  }

  status(): Promise<HostStatus> {
    return this.call((c) => c.status());
  }

  /**
   * Applies engine settings: live where the engine allows it (policy, budgets, preemption mode),
   * else a new engine starts and requests in flight end as 'engine_restarted'.
   */
  async configure(settings: EngineSettings): Promise<boolean> {
    await this.start();
    const restarted = await this.call((c) => c.configure(settings));
    this.settings = { ...settings };
    if (restarted) await this.captureStartConfig();
    return restarted;
  }

  /**
   * The configuration the current engine started with: a saved run replays from it (changes
   * made live since are in the event log as 'reconfigure' inputs).
   */
  get runStartConfig(): SchedulerConfig | null {
    return this.startConfig;
  }

  private async captureStartConfig(): Promise<void> {
    const snap = await this.call((c) => c.snapshot(-1));
    this.startConfig = snap ? { ...snap.config } : null;
    // A change of the model option `weights` rebuilt the model: its summary (bytes, type) changed.
    if (snap?.model) this.model = snap.model;
  }

  eventLog(): Promise<EngineEvent[]> {
    return this.call((c) => c.eventLog());
  }

  prometheus(): Promise<string> {
    return this.call((c) => c.prometheus());
  }

  benchPrompts(workload: WorkloadSpec): Promise<BenchPrompts> {
    return this.call((c) => c.benchPrompts(workload));
  }

  /** Requests given as lengths as text prompts on the loaded model's tokenizer (waits for the first worker to start). */
  async benchTextPrompts(requests: BenchTextRequest[]): Promise<BenchPrompts> {
    await this.start();
    return this.call((c) => c.benchTextPrompts(requests));
  }

  // ---- models ----

  async refreshCache(): Promise<void> {
    this.cached = await listCachedModels().catch(() => []);
  }

  /** The memory check for a model shape with the current settings on this adapter. */
  fit(config: Parameters<typeof fitModel>[0]): Fit {
    return fitModel(config, this.settings, this.adapter);
  }

  /**
   * Checks the model's shape against the adapter, caches it ('cache'), and loads it. `from`
   * says what a restarted worker reloads: the cache, or a copy kept in memory ('memory').
   */
  private async swapIn(name: string, modelBytes: Uint8Array, tokenizerBytes: Uint8Array | null, origin: string, from: 'cache' | 'cached-already' | 'memory'): Promise<ModelSummary> {
    await this.start();
    const previous = this.model?.name ?? 'the previous model';
    const peek = peekModelConfig(modelBytes, name);
    if (peek.ok) {
      const { problems } = this.fit(peek.config);
      if (problems.length > 0) throw new Error(`${name} does not fit this GPU: ${problems.join('; ')}. ${previous} stays loaded.`);
    }
    let cachedNow = false;
    let cacheProblem: string | null = null;
    let kept: ModelRef | null = from === 'cached-already' ? { kind: 'cached', name } : null;
    if (from === 'cache') {
      try {
        await putCachedModel(name, origin, modelBytes, tokenizerBytes);
        cachedNow = true;
        kept = { kind: 'cached', name };
      } catch (e) {
        cacheProblem = (e as Error).message;
        this.note('error', cacheProblem);
      }
    }
    kept ??= { kind: 'bytes', name, modelBytes: modelBytes.slice(), tokenizerBytes: tokenizerBytes?.slice() ?? null };
    this.phase = 'loading';
    try {
      const summary = await this.sendBytes(name, modelBytes, tokenizerBytes);
      this.model = summary;
      this.modelRef = kept;
      this.lastCaching = { cached: cachedNow || from === 'cached-already', problem: cacheProblem };
      await this.captureStartConfig();
      this.note('info', `loaded ${name} (${summary.format === 'gguf' ? 'GGUF' : 'llama2.c'})${cachedNow ? ', cached for offline use' : ''}`);
      return summary;
    } catch (e) {
      if (cachedNow) await deleteCachedModel(name).catch(() => {});
      throw new Error(`could not load ${name}: ${sentence((e as Error).message)} ${previous} stays loaded.`);
    } finally {
      this.phase = 'ready';
      this.progress = null;
      void this.refreshCache();
    }
  }

  /** Downloads (progress, size caps), checks, caches and loads a model from URLs already validated. */
  async loadFromUrl(name: string, modelUrl: string, tokenizerUrl: string | null): Promise<ModelSummary> {
    const previous = this.model?.name ?? 'the previous model';
    let modelBytes: Uint8Array;
    let tokenizerBytes: Uint8Array | null = null;
    try {
      this.phase = 'loading';
      this.progress = { label: name, fetch: null };
      // The memory check before the download, from the file's first bytes where the server allows.
      const config = await peekRemoteConfig(modelUrl);
      const problems = config ? this.fit(config).problems : [];
      if (problems.length > 0) throw new Error(`${name} does not fit this GPU: ${problems.join('; ')}; nothing was downloaded`);
      modelBytes = await fetchBytes(modelUrl, (p) => (this.progress = { label: name, fetch: p }), { maxBytes: MAX_MODEL_BYTES });
      if (tokenizerUrl) {
        this.progress = { label: `${name} tokenizer`, fetch: null };
        tokenizerBytes = await fetchBytes(tokenizerUrl, (p) => (this.progress = { label: `${name} tokenizer`, fetch: p }), { maxBytes: MAX_TOKENIZER_BYTES });
      }
    } catch (e) {
      this.phase = 'ready';
      this.progress = null;
      throw new Error(`${sentence((e as Error).message)} ${previous} stays loaded.`);
    }
    return this.swapIn(name, modelBytes, tokenizerBytes, modelUrl, 'cache');
  }

  /** Local files (a file picker or drag and drop): a model, and its tokenizer for llama2.c. */
  async loadFromFiles(files: readonly File[]): Promise<ModelSummary> {
    const picked = pickFiles(files);
    if ('error' in picked) throw new Error(picked.error);
    if (picked.model.size > MAX_MODEL_BYTES) throw new Error(`${picked.model.name} is ${picked.model.size} bytes, over the ${MAX_MODEL_BYTES}-byte limit`);
    if (picked.tokenizer && picked.tokenizer.size > MAX_TOKENIZER_BYTES) throw new Error(`${picked.tokenizer.name} is too large for a tokenizer file`);
    const modelBytes = new Uint8Array(await picked.model.arrayBuffer());
    const tokenizerBytes = picked.tokenizer ? new Uint8Array(await picked.tokenizer.arrayBuffer()) : null;
    return this.swapIn(nameFromPath(picked.model.name), modelBytes, tokenizerBytes, 'local file', 'cache');
  }

  async loadCached(name: string): Promise<ModelSummary> {
    const { modelBytes, tokenizerBytes } = await readCachedModel(name);
    return this.swapIn(name, modelBytes, tokenizerBytes, 'cache', 'cached-already');
  }

  async loadBuiltin(): Promise<ModelSummary> {
    await this.start();
    const previous = this.model?.name ?? 'the previous model';
    this.phase = 'loading';
    try {
      const s = await this.loadRef({ kind: 'builtin' });
      this.modelRef = { kind: 'builtin' };
      this.note('info', `loaded ${s.name} (built in)`);
      return s;
    } catch (e) {
      throw new Error(`could not load the built-in model: ${sentence((e as Error).message)} ${previous} stays loaded.`);
    } finally {
      this.phase = 'ready';
      this.progress = null;
    }
  }

  async deleteCached(name: string): Promise<void> {
    await deleteCachedModel(name);
    if (this.modelRef.kind === 'cached' && this.modelRef.name === name) {
      // It stays loaded in this worker; a restarted worker falls back to the built-in model.
      this.modelRef = { kind: 'builtin' };
      this.note('info', `${name} was deleted from the cache; it stays loaded, and a restarted worker loads the built-in model`);
    }
    await this.refreshCache();
  }

  // ---- faults ----

  /** Destroys the GPU device mid-run; the worker requeues its running requests and recomputes them. */
  async loseDevice(): Promise<void> {
    const inFlight = this.ledger.counts().inFlight;
    await this.call((c) => c.loseDevice());
    this.note('fault', `GPU device destroyed with ${inFlight} request${inFlight === 1 ? '' : 's'} in flight`);
  }

  /**
   * Kills the worker outright (as a crash would). Every request it had in flight is failed with
   * 'worker_crashed'; a new worker starts with the same model and settings.
   */
  async terminateWorker(): Promise<{ numFailed: number; restartMs: number }> {
    const slot = this.slot;
    if (!slot) throw new Error('the engine worker is not running');
    return this.replaceWorker(slot, `engine worker ${slot.generation} terminated`);
  }

  /**
   * A worker is gone (terminated here, or found silent): its requests in flight fail with
   * 'worker_crashed' in the ledger, and a new worker loads the same model and settings.
   */
  private async replaceWorker(slot: Slot, cause: string): Promise<{ numFailed: number; restartMs: number }> {
    slot.worker.terminate();
    slot.kill(new WorkerGoneError(slot.generation));
    this.slot = null;
    const message = `engine worker ${slot.generation} died with the request in flight`;
    const numFailed = this.ledger.failGeneration(slot.generation, 'worker_crashed', message);
    this.ledgerVersion = this.ledger.version;
    // Callers streaming a request of the dead worker hear how it ended.
    for (const [key, s] of [...this.streams]) {
      if (s.generation !== slot.generation) continue;
      this.streams.delete(key);
      s.onEvent({ type: 'error', requestId: s.requestId, reason: 'worker_crashed', message });
    }
    this.snap = null;
    this.lastCrash = { generation: slot.generation, cause };
    this.note('fault', `${cause}: ${numFailed} request${numFailed === 1 ? '' : 's'} in flight failed (worker_crashed)`);
    this.phase = 'restarting';
    const t0 = performance.now();
    this.started = this.boot();
    try {
      await this.started;
    } catch (e) {
      this.phase = 'error';
      this.note('error', `restarting the engine worker failed: ${(e as Error).message}`);
      throw e;
    }
    const restartMs = performance.now() - t0;
    this.note('recovery', `engine worker ${this.generation} started and ${this.model?.name ?? 'the model'} reloaded in ${Math.round(restartMs)} ms`);
    return { numFailed, restartMs };
  }

  /**
   * Runs four requests on a KV pool too small for them together (8 blocks of 16 slots; each
   * needs about 4 blocks by its end): some wait, some are preempted and recomputed; a fifth that
   * could never fit even alone is rejected. Returns the request ids.
   */
  async exhaustKvMemory(): Promise<string[]> {
    const tiny: EngineSettings = { ...$state.snapshot(this.settings), blockSize: 16, numGpuBlocks: 8, numCpuBlocks: 0, preemptionMode: 'recompute', maxNumSeqs: 8 };
    await this.configure(tiny);
    this.note('fault', `KV pool shrunk to ${tiny.numGpuBlocks} blocks of ${tiny.blockSize} tokens (${(tiny.numGpuBlocks ?? 0) * (tiny.blockSize ?? 0)} token slots)`);
    const prompts = ['Once upon a time, there was a little girl named Lily.', 'One day, a big bear went to the park.', 'Tom had a red ball.', 'A little dog found a bone.'];
    const ids: string[] = [];
    for (const p of prompts) ids.push(await this.submitFrom('fault', { prompt: p, max_tokens: 56 }));
    // Prompt and output together need more slots than the whole pool holds: rejected at admission.
    ids.push(await this.submitFrom('fault', { prompt: 'Once upon a time there was a very long story.', max_tokens: 200 }));
    return ids;
  }

  /** Sends a corrupt checkpoint to the worker: the load fails with a clear error, the model stays. */
  async loadCorruptModel(): Promise<string> {
    // A plausible llama2.c header (the built-in model's shape) over a file cut to 4 KiB.
    const bytes = new Uint8Array(4096);
    const v = new DataView(bytes.buffer);
    [64, 172, 5, 8, 4, 512, 512].forEach((x, i) => v.setInt32(i * 4, x, true));
    for (let i = 28; i < bytes.length; i++) bytes[i] = (i * 2654435761) >>> 24;
    try {
      await this.swapIn('corrupt.bin', bytes, null, 'fault injection', 'memory');
      return 'the corrupt file loaded (unexpected)';
    } catch (e) {
      this.note('fault', (e as Error).message);
      return (e as Error).message;
    }
  }

  dispose(): void {
    this.disposed = true;
    if (this.watchdog !== null) clearInterval(this.watchdog);
    this.slot?.worker.terminate();
    this.slot?.kill(new WorkerGoneError(this.slot.generation));
    this.slot = null;
  }
}
