/**
 * A canvas layer for a timeline whose columns only scroll left (the newest step on the right, as
 * in the slot timeline): kept between draws, so that a draw after a step shifts the bitmap left by
 * the steps that scrolled out and draws only the columns that are new, instead of every column in
 * view (64 slots × ~180 steps of cells on a 1280-px screen: 18-44 ms of canvas work on the main
 * thread per view update on Chromium + SwiftShader, against a few rectangles now). Anything that
 * changes the geometry or the colours (the key) redraws the whole layer; so does a column in view
 * that is not the object drawn for its step (a restarted or scrubbed run).
 *
 * Columns are drawn in their own column only (nothing overhangs into a neighbour), so a column
 * drawn later beside the shifted bitmap looks as it would in a full redraw.
 */

/** What a layer was drawn for: its key (geometry, colours), the first step in view, the columns. */
export interface LayerState<C> {
  key: string;
  first: number;
  cols: readonly C[];
}

/**
 * full: redraw every column; else shift by `shift` steps (left) and draw next.cols[from..] (none
 * when from === next.cols.length).
 */
export interface LayerPlan {
  full: boolean;
  shift: number;
  from: number;
}

const FULL: LayerPlan = { full: true, shift: 0, from: 0 };

/**
 * How to bring a layer drawn for `prev` to `next` (pure). Columns are in ascending step order in
 * both; the ones of `prev` still in view must be the same objects, at the start of `next.cols`.
 */
export function planLayer<C>(prev: LayerState<C> | null, next: LayerState<C>, stepOf: (col: C) => number): LayerPlan {
  if (!prev || prev.key !== next.key || next.first < prev.first) return FULL;
  let j = 0;
  while (j < prev.cols.length && stepOf(prev.cols[j]) < next.first) j++;
  const kept = prev.cols.length - j;
  if (kept === 0 || kept > next.cols.length) return FULL;
  for (let i = 0; i < kept; i++) if (prev.cols[j + i] !== next.cols[i]) return FULL;
  return { full: false, shift: next.first - prev.first, from: kept };
}

/** A CPU-backed canvas, as the views' own (see canvas.ts): read and redrawn on the CPU. */
const LAYER_OPTIONS: CanvasRenderingContext2DSettings = { willReadFrequently: true };

export interface LayerFrame<C> {
  /** Everything the columns' pixels depend on besides the columns (sizes, colours, scale). */
  key: string;
  /** The step at the layer's left edge (`left`). */
  first: number;
  /** The columns in view, ascending by step. */
  cols: readonly C[];
  stepOf: (col: C) => number;
  /** The x (CSS px) of a step's column. */
  x: (step: number) => number;
  /** Column width, left edge of the plot, layer size: CSS px. */
  colW: number;
  left: number;
  width: number;
  height: number;
  dpr: number;
  /** Draws these columns (in CSS px; the context is scaled for the device pixel ratio). */
  draw: (ctx: CanvasRenderingContext2D, cols: readonly C[]) => void;
}

export class ColumnLayer<C> {
  private canvas: HTMLCanvasElement | null = null;
  private state: LayerState<C> | null = null;
  /** Columns the last render() drew (the rest were shifted). */
  lastDrawn = 0;

  /** The layer brought up to date for `f` (device pixels, the size of the view's canvas); null without a 2D context. */
  render(f: LayerFrame<C>): HTMLCanvasElement | null {
    const w = Math.max(1, Math.round(f.width * f.dpr));
    const h = Math.max(1, Math.round(f.height * f.dpr));
    const canvas = (this.canvas ??= document.createElement('canvas'));
    if (canvas.width !== w || canvas.height !== h) {
      canvas.width = w; // cleared by the resize
      canvas.height = h;
      this.state = null;
    }
    const ctx = canvas.getContext('2d', LAYER_OPTIONS);
    if (!ctx) return null;
    const next: LayerState<C> = { key: f.key, first: f.first, cols: f.cols };
    let plan = planLayer(this.state, next, f.stepOf);
    const shiftPx = plan.shift * f.colW * f.dpr;
    // A shift by a fraction of a device pixel would blur what stays: redraw instead.
    if (!plan.full && !Number.isInteger(shiftPx)) plan = FULL;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    if (plan.full) {
      ctx.clearRect(0, 0, w, h);
    } else {
      if (shiftPx > 0) {
        // 'copy': the shifted bitmap replaces the layer, the strip it leaves on the right is cleared.
        ctx.globalCompositeOperation = 'copy';
        ctx.drawImage(canvas, -shiftPx, 0);
        ctx.globalCompositeOperation = 'source-over';
        ctx.clearRect(0, 0, Math.round(f.left * f.dpr), h); // columns scrolled out, left of the plot
      }
      if (plan.from < f.cols.length) {
        const x0 = Math.floor(f.x(f.stepOf(f.cols[plan.from])) * f.dpr);
        ctx.clearRect(x0, 0, w - x0, h);
      }
    }
    ctx.setTransform(f.dpr, 0, 0, f.dpr, 0, 0);
    const toDraw = plan.full ? f.cols : f.cols.slice(plan.from);
    if (toDraw.length > 0) f.draw(ctx, toDraw);
    this.state = next;
    this.lastDrawn = toDraw.length;
    return canvas;
  }
}
