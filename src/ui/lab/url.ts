/**
 * The URL holds the demo: which view, which scenario or custom workload, the engine settings (in
 * compare mode each side's), the KV calculator's and the simulated mode's model, hardware and
 * parallelism, the Guide entry being shown, the theme and presenter mode, so a link reproduces it. Query
 * parameters are short, written only where they differ from the scenario's own values, and
 * validated on the way in (anything out of range is ignored, never trusted).
 */
import { POLICY_NAMES, type PolicyName } from '../../engine/policies.ts';
import { MAX_NUM_SPECULATIVE_TOKENS } from '../../engine/config.ts';
import { SCENARIOS, scenarioById } from './scenarios.ts';
import { isWeightType } from '../../model/quant.ts';
import { FLEET_PRESET_IDS, type FleetPresetId } from '../../sim/fleet/types.ts';
import { BASE_SETTINGS, BASE_WORKLOAD_FORM, clampWorkloadForm, type LabSettings, type WorkloadForm } from './settings.ts';
import { HARDWARE_PRESETS, MODEL_PRESETS } from '../../sim/presets.ts';
import { GUIDE_SIZE } from '../guide/entries.ts';
import { DEFAULT_SIM_SETUP, isSimWeights, type SimWeights } from './sim-engine.svelte.ts';

export type ViewName = 'lab' | 'compare' | 'calculator' | 'simulated' | 'fleet' | 'guide';
export const VIEW_NAMES: readonly ViewName[] = ['lab', 'compare', 'calculator', 'simulated', 'fleet', 'guide'];

/** The KV calculator's inputs (keys of MODEL_PRESETS / HARDWARE_PRESETS; KV bytes per element). */
export interface CalcSetup {
  modelId: string;
  hardwareId: string;
  tensorParallel: number;
  pipelineParallel: number;
  contextTokens: number;
  numSeqs: number;
  bytesPerElement: number;
}

export const DEFAULT_CALC_SETUP: CalcSetup = { modelId: 'llama-2-70b', hardwareId: 'h100-sxm', tensorParallel: 8, pipelineParallel: 1, contextTokens: 4096, numSeqs: 32, bytesPerElement: 2 };

/** The simulated mode's deployment (its workload keeps the mode's defaults). */
export interface SimDeployment {
  modelId: string;
  hardwareId: string;
  tensorParallel: number;
  pipelineParallel: number;
  /** Weight format (16-bit, Q8_0, Q4_0). */
  weights: SimWeights;
}

/** The parallel degrees the calculator and the simulated mode offer. */
export const PARALLEL_DEGREES: readonly number[] = [1, 2, 4, 8];

export interface UrlState {
  view: ViewName;
  /** A scenario's id, 'none' (the lab with no scenario: your prompts on an empty engine), or null (the first scenario). */
  scenarioId: string | null;
  /** The lab's engine settings (null: the scenario's). */
  settings: LabSettings | null;
  /** A custom workload run in the lab instead of a scenario's (null: none). */
  workload: WorkloadForm | null;
  /** Compare mode's two sides (null: the scenario's). */
  compare: { a: LabSettings; b: LabSettings } | null;
  theme: 'dark' | 'light';
  presenter: boolean;
  /** The Guide entry shown in the strip over the view (1-based; null: none). */
  guide: number | null;
  /** The KV calculator's inputs (null: its defaults). */
  calc: CalcSetup | null;
  /** The simulated mode's deployment (null: its defaults). */
  sim: SimDeployment | null;
  /** The fleet view's preset (`fleet=<id>`; absent: the first preset). An unknown id is ignored. */
  fleetPresetId?: FleetPresetId;
}

/** A fleet preset's id from the URL, or undefined when it names none. */
export function fleetPresetIdOf(v: string | null): FleetPresetId | undefined {
  return FLEET_PRESET_IDS.includes(v as FleetPresetId) ? (v as FleetPresetId) : undefined;
}

const keys: Record<string, keyof LabSettings> = {
  bs: 'blockSize',
  gpu: 'numGpuBlocks',
  cpu: 'numCpuBlocks',
  seqs: 'maxNumSeqs',
  budget: 'maxNumBatchedTokens',
  chunk: 'enableChunkedPrefill',
  cache: 'enablePrefixCaching',
  policy: 'policy',
  preempt: 'preemptionMode',
  batching: 'batching',
  qcap: 'maxQueueLength',
  wt: 'weights',
  loras: 'maxLoras',
  spec: 'speculativeMethod',
  k: 'numSpeculativeTokens',
  lmax: 'promptLookupMax',
  lmin: 'promptLookupMin',
};

/** Workload form fields; `w=1` alone marks a custom workload with every field at its default. */
const workloadKeys: Record<string, keyof WorkloadForm> = {
  wseed: 'seed',
  wn: 'numRequests',
  wrate: 'ratePerS',
  wburst: 'burstiness',
  wp: 'promptMedian',
  wo: 'outputMedian',
  wsig: 'lengthSigma',
  wpf: 'sharedPrefixFraction',
  wpt: 'sharedPrefixTokens',
  wten: 'numTenants',
  wsn: 'n',
  wtemp: 'temperature',
};

function intIn(v: string | null, lo: number, hi: number): number | undefined {
  if (v === null) return undefined;
  const n = Number(v);
  return Number.isInteger(n) && n >= lo && n <= hi ? n : undefined;
}

/** Engine settings from parameters named `prefix + key`, over `base`; null when none is present. */
function readSettings(q: URLSearchParams, prefix: string, base0: LabSettings): LabSettings | null {
  const get = (k: string) => q.get(prefix + k);
  if (!Object.keys(keys).some((k) => q.has(prefix + k))) return null;
  const base = { ...base0 };
  const bs = intIn(get('bs'), 1, 256);
  if (bs !== undefined && [4, 8, 16, 32].includes(bs)) base.blockSize = bs;
  base.numGpuBlocks = intIn(get('gpu'), 4, 1024) ?? base.numGpuBlocks;
  base.numCpuBlocks = intIn(get('cpu'), 0, 512) ?? base.numCpuBlocks;
  base.maxNumSeqs = intIn(get('seqs'), 1, 64) ?? base.maxNumSeqs;
  base.maxNumBatchedTokens = intIn(get('budget'), 16, 2048) ?? base.maxNumBatchedTokens;
  if (get('chunk') !== null) base.enableChunkedPrefill = get('chunk') === '1';
  if (get('cache') !== null) base.enablePrefixCaching = get('cache') === '1';
  if (POLICY_NAMES.includes(get('policy') as PolicyName)) base.policy = get('policy') as PolicyName;
  const pm = get('preempt');
  if (pm === 'recompute' || pm === 'swap' || pm === 'abort') base.preemptionMode = pm;
  const b = get('batching');
  if (b === 'continuous' || b === 'static') base.batching = b;
  const wt = get('wt');
  if (isWeightType(wt)) base.weights = wt;
  const cap = intIn(get('qcap'), 0, 1000);
  if (cap !== undefined) base.maxQueueLength = cap > 0 ? cap : Infinity;
  base.maxLoras = intIn(get('loras'), 0, 16) ?? base.maxLoras;
  const spec = get('spec');
  if (spec === 'off' || spec === 'ngram') base.speculativeMethod = spec;
  base.numSpeculativeTokens = intIn(get('k'), 1, MAX_NUM_SPECULATIVE_TOKENS) ?? base.numSpeculativeTokens;
  const lmax = intIn(get('lmax'), 1, 64) ?? base.promptLookupMax;
  const lmin = intIn(get('lmin'), 1, 64) ?? base.promptLookupMin;
  // A pair out of order is ignored as a whole (the engine would refuse it).
  if (lmin <= lmax) {
    base.promptLookupMax = lmax;
    base.promptLookupMin = lmin;
  }
  return base;
}

function writeSettings(q: URLSearchParams, prefix: string, s: LabSettings, base: LabSettings): void {
  for (const [k, name] of Object.entries(keys)) {
    const v = s[name];
    if (v === base[name]) continue;
    q.set(prefix + k, typeof v === 'boolean' ? (v ? '1' : '0') : v === Infinity ? '0' : String(v));
  }
}

function readWorkload(q: URLSearchParams): WorkloadForm | null {
  if (!q.has('w') && !Object.keys(workloadKeys).some((k) => q.has(k))) return null;
  const f: WorkloadForm = { ...BASE_WORKLOAD_FORM };
  for (const [k, name] of Object.entries(workloadKeys)) {
    const raw = q.get(k);
    if (raw === null || raw.trim() === '') continue;
    const v = Number(raw);
    if (Number.isFinite(v)) f[name] = v;
  }
  // Out-of-range values are brought into range exactly as the form does it.
  return clampWorkloadForm(f);
}

function writeWorkload(q: URLSearchParams, f: WorkloadForm): void {
  q.set('w', '1');
  for (const [k, name] of Object.entries(workloadKeys)) {
    if (f[name] !== BASE_WORKLOAD_FORM[name]) q.set(k, String(f[name]));
  }
}

const degree = (v: string | null): number | undefined => {
  const n = intIn(v, 1, 8);
  return n !== undefined && PARALLEL_DEGREES.includes(n) ? n : undefined;
};
const modelIn = (v: string | null): string | undefined => (v !== null && Object.hasOwn(MODEL_PRESETS, v) ? v : undefined);
const hardwareIn = (v: string | null): string | undefined => (v !== null && Object.hasOwn(HARDWARE_PRESETS, v) ? v : undefined);

function readCalc(q: URLSearchParams): CalcSetup | null {
  if (!['cmodel', 'chw', 'ctp', 'cpp', 'cctx', 'cseqs', 'ckv'].some((k) => q.has(k))) return null;
  const d = DEFAULT_CALC_SETUP;
  const kv = intIn(q.get('ckv'), 1, 4);
  return {
    modelId: modelIn(q.get('cmodel')) ?? d.modelId,
    hardwareId: hardwareIn(q.get('chw')) ?? d.hardwareId,
    tensorParallel: degree(q.get('ctp')) ?? d.tensorParallel,
    pipelineParallel: degree(q.get('cpp')) ?? d.pipelineParallel,
    contextTokens: intIn(q.get('cctx'), 1, 1_000_000) ?? d.contextTokens,
    numSeqs: intIn(q.get('cseqs'), 1, 4096) ?? d.numSeqs,
    bytesPerElement: kv !== undefined && kv !== 3 ? kv : d.bytesPerElement,
  };
}

function writeCalc(q: URLSearchParams, c: CalcSetup): void {
  const d = DEFAULT_CALC_SETUP;
  if (c.modelId !== d.modelId) q.set('cmodel', c.modelId);
  if (c.hardwareId !== d.hardwareId) q.set('chw', c.hardwareId);
  if (c.tensorParallel !== d.tensorParallel) q.set('ctp', String(c.tensorParallel));
  if (c.pipelineParallel !== d.pipelineParallel) q.set('cpp', String(c.pipelineParallel));
  if (c.contextTokens !== d.contextTokens) q.set('cctx', String(c.contextTokens));
  if (c.numSeqs !== d.numSeqs) q.set('cseqs', String(c.numSeqs));
  if (c.bytesPerElement !== d.bytesPerElement) q.set('ckv', String(c.bytesPerElement));
}

function readSim(q: URLSearchParams, d: SimDeployment): SimDeployment | null {
  if (!['smodel', 'shw', 'stp', 'spp', 'swt'].some((k) => q.has(k))) return null;
  const weights = q.get('swt');
  return {
    modelId: modelIn(q.get('smodel')) ?? d.modelId,
    hardwareId: hardwareIn(q.get('shw')) ?? d.hardwareId,
    tensorParallel: degree(q.get('stp')) ?? d.tensorParallel,
    pipelineParallel: degree(q.get('spp')) ?? d.pipelineParallel,
    weights: isSimWeights(weights) ? weights : d.weights,
  };
}

function writeSim(q: URLSearchParams, s: SimDeployment, d: SimDeployment): void {
  if (s.modelId !== d.modelId) q.set('smodel', s.modelId);
  if (s.hardwareId !== d.hardwareId) q.set('shw', s.hardwareId);
  if (s.tensorParallel !== d.tensorParallel) q.set('stp', String(s.tensorParallel));
  if (s.pipelineParallel !== d.pipelineParallel) q.set('spp', String(s.pipelineParallel));
  if (s.weights !== d.weights) q.set('swt', s.weights);
}

/** The simulated mode's default deployment (its SimSetup defaults). */
export const DEFAULT_SIM_DEPLOYMENT: SimDeployment = {
  modelId: DEFAULT_SIM_SETUP.modelId,
  hardwareId: DEFAULT_SIM_SETUP.hardwareId,
  tensorParallel: DEFAULT_SIM_SETUP.tensorParallel,
  pipelineParallel: DEFAULT_SIM_SETUP.pipelineParallel,
  weights: DEFAULT_SIM_SETUP.weights,
};

export function readUrl(search: string): UrlState {
  const q = new URLSearchParams(search);
  const view = VIEW_NAMES.includes(q.get('view') as ViewName) ? (q.get('view') as ViewName) : 'lab';
  const workload = readWorkload(q);
  const scenario = workload ? undefined : scenarioById(q.get('scenario'));
  const scenarioId = scenario ? scenario.id : !workload && q.get('scenario') === 'none' ? 'none' : null;
  const settings = readSettings(q, '', scenario?.settings ?? BASE_SETTINGS);
  let compare: UrlState['compare'] = null;
  // Compare mode runs a scenario (the first when none is named); its sides are the base.
  const base = scenario ?? SCENARIOS[0];
  const a = readSettings(q, 'a.', base.compare.a.settings);
  const b = readSettings(q, 'b.', base.compare.b.settings);
  if (a || b) compare = { a: a ?? base.compare.a.settings, b: b ?? base.compare.b.settings };
  const fleetPresetId = fleetPresetIdOf(q.get('fleet'));
  return {
    view,
    scenarioId,
    settings,
    workload,
    compare,
    theme: q.get('theme') === 'light' ? 'light' : 'dark',
    presenter: q.get('present') === '1',
    guide: intIn(q.get('guide'), 1, GUIDE_SIZE) ?? null,
    calc: readCalc(q),
    sim: readSim(q, DEFAULT_SIM_DEPLOYMENT),
    ...(fleetPresetId ? { fleetPresetId } : {}),
  };
}

/** The query string for a state ('' when everything is at its default). */
export function writeQuery(s: UrlState): string {
  const q = new URLSearchParams();
  if (s.view !== 'lab') q.set('view', s.view);
  const scenario = s.workload ? undefined : scenarioById(s.scenarioId);
  if (scenario) q.set('scenario', scenario.id);
  else if (s.scenarioId === 'none' && !s.workload) q.set('scenario', 'none');
  if (s.workload) writeWorkload(q, s.workload);
  if (s.settings) writeSettings(q, '', s.settings, scenario?.settings ?? BASE_SETTINGS);
  const base = scenario ?? SCENARIOS[0];
  if (s.compare) {
    writeSettings(q, 'a.', s.compare.a, base.compare.a.settings);
    writeSettings(q, 'b.', s.compare.b, base.compare.b.settings);
  }
  if (s.calc) writeCalc(q, s.calc);
  if (s.sim) writeSim(q, s.sim, DEFAULT_SIM_DEPLOYMENT);
  if (s.fleetPresetId && fleetPresetIdOf(s.fleetPresetId)) q.set('fleet', s.fleetPresetId);
  if (s.guide !== null) q.set('guide', String(s.guide));
  if (s.theme === 'light') q.set('theme', 'light');
  if (s.presenter) q.set('present', '1');
  const str = q.toString();
  return str ? `?${str}` : '';
}

export function writeUrl(s: UrlState): string {
  return writeQuery(s) || location.pathname;
}
