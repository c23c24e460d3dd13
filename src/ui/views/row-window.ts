/**
 * Which rows of a long scrolled table are put in the page (the request table, up to 120 rows with
 * 64 of them changing on every view update): the rows in view and `overscan` more on each side;
 * spacers of the same height stand in for the rest, so the scrollbar and the scroll position
 * are those of the whole table. Rows are of one height (the table's cells never wrap).
 */
export interface RowWindow {
  /** First row put in the page. */
  start: number;
  /** One past the last. */
  end: number;
}

/** Rows put in the page before the row height and the viewport are known (the first render). */
export const UNMEASURED_ROWS = 40;

/**
 * The rows of `numRows` to render for a scroller `viewportPx` tall scrolled `scrollTopPx` down,
 * rows `rowPx` tall: those in view and `overscan` more above and below (all of them when they
 * fit). Not yet measured (`rowPx` or `viewportPx` not > 0): the first UNMEASURED_ROWS.
 */
export function rowWindow(numRows: number, scrollTopPx: number, viewportPx: number, rowPx: number, overscan: number): RowWindow {
  const n = Math.max(0, Math.floor(numRows));
  if (!(rowPx > 0) || !(viewportPx > 0)) return { start: 0, end: Math.min(n, UNMEASURED_ROWS) };
  const top = Math.max(0, Number.isFinite(scrollTopPx) ? scrollTopPx : 0);
  const first = Math.floor(top / rowPx);
  const last = Math.ceil((top + viewportPx) / rowPx);
  const start = Math.min(n, Math.max(0, first - overscan));
  const end = Math.min(n, Math.max(start, last + overscan));
  return { start, end };
}
