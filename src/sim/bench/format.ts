/** Number formatting for bench tables. */
export function formatNum(v: number, digits: number): string {
  return Number.isFinite(v) ? v.toFixed(digits) : String(v);
}
