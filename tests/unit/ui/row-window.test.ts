import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { rowWindow, UNMEASURED_ROWS } from '../../../src/ui/views/row-window.ts';

describe("rowWindow (the request table's rows in the page)", () => {
  it('puts the rows in view and the overscan around them; the rest is left to spacers', () => {
    // 64 rows of 20 px in a 240 px scroller: rows 0-11 in view at the top, 12 more below.
    expect(rowWindow(64, 0, 240, 20, 12)).toEqual({ start: 0, end: 24 });
    // Scrolled to rows 30-42: 12 more each side.
    expect(rowWindow(64, 600, 240, 20, 12)).toEqual({ start: 18, end: 54 });
    // At the bottom: the window ends with the last row.
    expect(rowWindow(64, 64 * 20 - 240, 240, 20, 12)).toEqual({ start: 40, end: 64 });
  });

  it('renders every row when they fit, and the first ones until measured', () => {
    expect(rowWindow(18, 0, 240, 20, 12)).toEqual({ start: 0, end: 18 });
    expect(rowWindow(120, 0, 0, 20, 12)).toEqual({ start: 0, end: UNMEASURED_ROWS });
    expect(rowWindow(120, 0, 240, 0, 12)).toEqual({ start: 0, end: UNMEASURED_ROWS });
    expect(rowWindow(5, 0, 240, 0, 12)).toEqual({ start: 0, end: 5 });
    expect(rowWindow(0, 0, 240, 20, 12)).toEqual({ start: 0, end: 0 });
  });

  it('always covers the rows in view, within the table, whatever the scroll position', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 500 }), fc.double({ min: -100, max: 20_000, noNaN: true }), fc.integer({ min: 1, max: 2000 }), fc.double({ min: 5, max: 60, noNaN: true }), fc.integer({ min: 0, max: 30 }), (n, top, view, row, over) => {
        const w = rowWindow(n, top, view, row, over);
        expect(0 <= w.start && w.start <= w.end && w.end <= n).toBe(true);
        // Every row overlapping [top, top + view) is inside the window (the scroll clamped to the table).
        const maxTop = Math.max(0, n * row - view);
        const t = Math.min(Math.max(0, top), maxTop);
        const firstInView = Math.floor(t / row);
        const lastInView = Math.min(n, Math.ceil((t + view) / row));
        if (top <= maxTop && n > 0) {
          expect(w.start).toBeLessThanOrEqual(firstInView);
          expect(w.end).toBeGreaterThanOrEqual(lastInView);
        }
        // At most the rows in view and the overscan each side.
        expect(w.end - w.start).toBeLessThanOrEqual(Math.ceil(view / row) + 1 + 2 * over);
      }),
    );
  });
});
