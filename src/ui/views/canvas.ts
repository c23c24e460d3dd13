/** Small helpers for the canvas views: theme colours and crisp (device-pixel) sizing. */

export interface ThemeColors {
  bg: string;
  panel: string;
  panel2: string;
  border: string;
  text: string;
  muted: string;
  accent: string;
  accent2: string;
  warn: string;
  error: string;
  swap: string;
  cow: string;
  fork: string;
}

/** Reads the theme's CSS variables (so canvases follow the dark/light theme). */
export function themeColors(el: Element): ThemeColors {
  const cs = getComputedStyle(el);
  const v = (name: string) => cs.getPropertyValue(name).trim() || '#888';
  return {
    bg: v('--bg'),
    panel: v('--panel'),
    panel2: v('--panel-2'),
    border: v('--border'),
    text: v('--text'),
    muted: v('--muted'),
    accent: v('--accent'),
    accent2: v('--accent-2'),
    warn: v('--warn'),
    error: v('--error'),
    swap: v('--swap'),
    cow: v('--cow'),
    fork: v('--fork'),
  };
}

/**
 * The views draw on CPU-backed canvases. An accelerated 2D canvas sends its drawing to the
 * browser's GPU process, the same process (and, on a software adapter, the same CPU cores) that
 * runs the model's WebGPU compute, so its frames queue behind engine steps. Measured with 64 live
 * requests on Chromium + SwiftShader (tests/e2e/frame-bench.spec.ts): accelerated canvases gave
 * ~33 fps with a p95 frame of 133 ms, CPU-backed ones ~43 fps and 67 ms. The canvases are small
 * (a few hundred thousand pixels), so drawing them on the CPU costs little on any machine.
 */
const CANVAS_OPTIONS: CanvasRenderingContext2DSettings = { willReadFrequently: true };

/** Sizes the canvas backing store for the device pixel ratio; returns a context in CSS pixels. */
export function prepareCanvas(canvas: HTMLCanvasElement, width: number, height: number): CanvasRenderingContext2D | null {
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(width * dpr));
  const h = Math.max(1, Math.round(height * dpr));
  if (canvas.width !== w) canvas.width = w;
  if (canvas.height !== h) canvas.height = h;
  const ctx = canvas.getContext('2d', CANVAS_OPTIONS);
  if (!ctx) return null;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, width, height);
  return ctx;
}

/** withAlpha's answers: the views ask for a few dozen colours thousands of times per draw. */
const rgbaCache = new Map<string, string>();

/** `color` (#rrggbb) with an alpha, as an rgba() string. */
export function withAlpha(color: string, alpha: number): string {
  const key = `${color}/${alpha}`;
  let rgba = rgbaCache.get(key);
  if (rgba === undefined) {
    const m = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(color);
    rgba = m ? `rgba(${parseInt(m[1], 16)}, ${parseInt(m[2], 16)}, ${parseInt(m[3], 16)}, ${alpha})` : color;
    // Bounded: request colours are generated, so a long session could otherwise grow it.
    if (rgbaCache.size >= 4096) rgbaCache.clear();
    rgbaCache.set(key, rgba);
  }
  return rgba;
}

/**
 * Coalesces redraw requests: `draw` runs at most once per animation frame, and a pending draw is
 * never cancelled by a newer request (no starvation). `schedule` may be called from inside `draw`
 * to animate on the next frame.
 */
export function frameScheduler(draw: (now: number) => void): { schedule(): void; cancel(): void } {
  let raf = 0;
  return {
    schedule() {
      if (!raf)
        raf = requestAnimationFrame((now) => {
          raf = 0;
          draw(now);
        });
    },
    cancel() {
      cancelAnimationFrame(raf);
      raf = 0;
    },
  };
}

/** Calls `onChange` whenever the theme flips (the data-theme attribute of <html>); returns the disconnect. */
function onThemeChange(onChange: () => void): () => void {
  const obs = new MutationObserver(onChange);
  obs.observe(document.documentElement, { attributes: true, attributeFilter: ['data-theme'] });
  return () => obs.disconnect();
}

/** For an `$effect`: redraws on theme flips; the returned cleanup also cancels a pending draw. */
export function redrawOnThemeChange(redraw: { schedule(): void; cancel(): void }): () => void {
  const stop = onThemeChange(redraw.schedule);
  return () => {
    stop();
    redraw.cancel();
  };
}
