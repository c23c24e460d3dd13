/**
 * What the request table and detail say about a prompt's prefix-cache hits.
 *
 * The engine's `numCachedPromptTokens` adds up the tokens found in the prefix cache on every
 * admission: after a preemption by recompute a request is admitted again, and its own earlier
 * blocks (prompt and the tokens it had generated) are found again, so the total can exceed the
 * prompt ("39 (288)"). The cell shows the prompt's hit on the latest admission
 * (`numCachedPromptTokensLastAdmission`, never above the prompt); the total over all admissions
 * goes in the sentence, said as what it is.
 */
import type { RequestView } from '../../engine/engine.ts';

export interface PromptCache {
  /** Prompt tokens found in the prefix cache (never above the prompt); null when not known. */
  hit: number | null;
  /** Short cell text ('' for nothing to show: no hit, or not admitted yet). */
  label: string;
  /** The full sentence (tooltip, detail view). */
  title: string;
}

type View = Pick<RequestView, 'numPromptTokens' | 'numCachedPromptTokens' | 'numCachedPromptTokensLastAdmission' | 'numPreemptions' | 'firstScheduledMs'>;

const plural = (n: number, w: string) => `${n} ${w}${n === 1 ? '' : 's'}`;

export function promptCacheOf(v: View): PromptCache {
  const n = v.numPromptTokens;
  const total = v.numCachedPromptTokens;
  if (total === 0) {
    if (!Number.isFinite(v.firstScheduledMs)) return { hit: null, label: '', title: `${plural(n, 'prompt token')}; not admitted yet, so the prefix cache has not been looked up` };
    const title =
      v.numPreemptions === 0
        ? `none of its ${plural(n, 'prompt token')} was in the prefix cache: all were computed`
        : `${plural(n, 'prompt token')}; preempted ${plural(v.numPreemptions, 'time')}, and the prefix cache supplied nothing on any admission`;
    return { hit: 0, label: '', title };
  }
  if (v.numPreemptions === 0) {
    const hit = Math.min(total, n);
    return { hit, label: String(hit), title: `${hit} of its ${plural(n, 'prompt token')} were found in the prefix cache on admission: their K/V was reused, not computed` };
  }
  const hit = Math.min(v.numCachedPromptTokensLastAdmission, n);
  return {
    hit,
    label: `${hit} ↺`,
    title:
      `${hit} of its ${plural(n, 'prompt token')} were found in the prefix cache on its latest admission. Preempted ${plural(v.numPreemptions, 'time')} and admitted again: ` +
      `over its ${v.numPreemptions + 1} admissions the prefix cache supplied ${plural(total, 'token')} in all (prompt and already generated tokens, found again on readmission).`,
  };
}

