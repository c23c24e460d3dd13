/** The colours of replica states and of a request's breakdown parts, as theme colours (canvas) and CSS variables (HTML). */
import type { ReplicaState, RequestBreakdown, RequestPhase } from '../../sim/fleet/types.ts';
import type { ThemeColors } from '../views/canvas.ts';

export const REPLICA_STATES: readonly { state: ReplicaState; label: string; css: string; theme: keyof ThemeColors; meaning: string }[] = [
  { state: 'cold', label: 'cold', css: 'var(--muted)', theme: 'muted', meaning: 'ordered: loading its weights' },
  { state: 'warming', label: 'warming', css: 'var(--warn)', theme: 'warn', meaning: 'weights loaded: warming up' },
  { state: 'serving', label: 'serving', css: 'var(--accent)', theme: 'accent', meaning: 'taking requests' },
  { state: 'draining', label: 'draining', css: 'var(--cow)', theme: 'cow', meaning: 'finishing its requests, taking no new ones' },
  { state: 'lost', label: 'lost', css: 'var(--error)', theme: 'error', meaning: 'reclaimed (spot): gone with what it held' },
];

export function stateColor(state: ReplicaState, c: ThemeColors): string {
  return c[REPLICA_STATES.find((s) => s.state === state)?.theme ?? 'muted'];
}

export function stateCss(state: ReplicaState | 'gone' | null): string {
  return REPLICA_STATES.find((s) => s.state === state)?.css ?? 'var(--border)';
}

export const PART_CSS: Record<keyof RequestBreakdown, string> = {
  queueS: 'var(--warn)',
  moderationS: 'var(--cow)',
  prefillS: 'var(--accent-2)',
  preemptedS: 'var(--error)',
  recomputeS: 'var(--fork)',
  decodeS: 'var(--accent)',
};

/** A request span's colour by its phase (the same as its breakdown part). */
export const PHASE_CSS: Record<RequestPhase, string> = {
  queue: PART_CSS.queueS,
  moderation: PART_CSS.moderationS,
  prefill: PART_CSS.prefillS,
  decode: PART_CSS.decodeS,
  preempted: PART_CSS.preemptedS,
  recompute: PART_CSS.recomputeS,
};
