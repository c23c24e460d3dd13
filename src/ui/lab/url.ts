/**
 * The URL holds the demo: which view, which scenario, the engine settings, the theme and presenter
 * mode, so a link reproduces it. Query parameters are short and validated on the way in.
 */
import { POLICY_NAMES, type PolicyName } from '../../engine/policies.ts';
import { scenarioById } from './scenarios.ts';
import { BASE_SETTINGS, type LabSettings } from './settings.ts';

export type ViewName = 'lab' | 'compare' | 'calculator' | 'simulated';
export const VIEW_NAMES: readonly ViewName[] = ['lab', 'compare', 'calculator', 'simulated'];

export interface UrlState {
  view: ViewName;
  scenarioId: string | null;
  settings: LabSettings | null;
  theme: 'dark' | 'light';
  presenter: boolean;
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
};

function intIn(v: string | null, lo: number, hi: number): number | undefined {
  if (v === null) return undefined;
  const n = Number(v);
  return Number.isInteger(n) && n >= lo && n <= hi ? n : undefined;
}

export function readUrl(search: string): UrlState {
  const q = new URLSearchParams(search);
  const view = VIEW_NAMES.includes(q.get('view') as ViewName) ? (q.get('view') as ViewName) : 'lab';
  const scenarioId = scenarioById(q.get('scenario')) ? q.get('scenario') : null;
  let settings: LabSettings | null = null;
  if ([...Object.keys(keys)].some((k) => q.has(k))) {
    const base = { ...(scenarioById(scenarioId)?.settings ?? BASE_SETTINGS) };
    const bs = intIn(q.get('bs'), 1, 256);
    if (bs !== undefined && [4, 8, 16, 32].includes(bs)) base.blockSize = bs;
    base.numGpuBlocks = intIn(q.get('gpu'), 4, 1024) ?? base.numGpuBlocks;
    base.numCpuBlocks = intIn(q.get('cpu'), 0, 512) ?? base.numCpuBlocks;
    base.maxNumSeqs = intIn(q.get('seqs'), 1, 64) ?? base.maxNumSeqs;
    base.maxNumBatchedTokens = intIn(q.get('budget'), 16, 2048) ?? base.maxNumBatchedTokens;
    if (q.has('chunk')) base.enableChunkedPrefill = q.get('chunk') === '1';
    if (q.has('cache')) base.enablePrefixCaching = q.get('cache') === '1';
    if (POLICY_NAMES.includes(q.get('policy') as PolicyName)) base.policy = q.get('policy') as PolicyName;
    const pm = q.get('preempt');
    if (pm === 'recompute' || pm === 'swap' || pm === 'abort') base.preemptionMode = pm;
    const b = q.get('batching');
    if (b === 'continuous' || b === 'static') base.batching = b;
    const cap = intIn(q.get('qcap'), 0, 1000);
    if (cap !== undefined) base.maxQueueLength = cap > 0 ? cap : Infinity;
    settings = base;
  }
  return { view, scenarioId, settings, theme: q.get('theme') === 'light' ? 'light' : 'dark', presenter: q.get('present') === '1' };
}

export function writeUrl(s: UrlState): string {
  const q = new URLSearchParams();
  if (s.view !== 'lab') q.set('view', s.view);
  if (s.scenarioId) q.set('scenario', s.scenarioId);
  if (s.settings) {
    const base = scenarioById(s.scenarioId)?.settings ?? BASE_SETTINGS;
    for (const [k, name] of Object.entries(keys)) {
      const v = s.settings[name];
      if (v === base[name]) continue;
      q.set(k, typeof v === 'boolean' ? (v ? '1' : '0') : v === Infinity ? '0' : String(v));
    }
  }
  if (s.theme === 'light') q.set('theme', 'light');
  if (s.presenter) q.set('present', '1');
  const str = q.toString();
  return str ? `?${str}` : location.pathname;
}
