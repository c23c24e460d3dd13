/**
 * The Guide's keys (free of the app's: space, →, 1–9, 0, p, t; the tour's ←, →, Enter, Escape).
 * A presenter's clicker sends PageDown / PageUp, so those step through the entries too while the
 * Guide strip is shown.
 */
export const GUIDE_KEYS = { next: ']', prev: '[', guide: 'g' } as const;

export type GuideKeyAction = 'next' | 'prev' | 'guide';

/** What a key does in the Guide (null: nothing). Page keys step only while the strip is shown (elsewhere they scroll). */
export function guideKeyAction(key: string, stripShown: boolean): GuideKeyAction | null {
  if (key === GUIDE_KEYS.next || (stripShown && key === 'PageDown')) return 'next';
  if (key === GUIDE_KEYS.prev || (stripShown && key === 'PageUp')) return 'prev';
  if (key === GUIDE_KEYS.guide) return 'guide';
  return null;
}
