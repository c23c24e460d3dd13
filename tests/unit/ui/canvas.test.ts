/** The canvas views' colour helper: #rrggbb with an alpha as rgba(), the same answer every time (it is cached). */
import { describe, expect, it } from 'vitest';
import { withAlpha } from '../../../src/ui/views/canvas.ts';

describe('withAlpha', () => {
  it('turns #rrggbb and an alpha into rgba(); anything else comes back as it was', () => {
    expect(withAlpha('#ff8000', 0.5)).toBe('rgba(255, 128, 0, 0.5)');
    expect(withAlpha('#FF8000', 0.25)).toBe('rgba(255, 128, 0, 0.25)');
    expect(withAlpha('#0a0b0c', 1)).toBe('rgba(10, 11, 12, 1)');
    expect(withAlpha('red', 0.5)).toBe('red');
    expect(withAlpha('#abc', 0.5)).toBe('#abc');
  });

  it('a cached answer is the one it computed, also after the cache starts over', () => {
    const first = withAlpha('#102030', 0.3);
    for (let i = 0; i < 5000; i++) withAlpha(`#${(i * 2654435761 >>> 8).toString(16).padStart(6, '0').slice(0, 6)}`, 0.5);
    expect(withAlpha('#102030', 0.3)).toBe(first);
    expect(withAlpha('#102030', 0.7)).toBe('rgba(16, 32, 48, 0.7)');
  });
});
