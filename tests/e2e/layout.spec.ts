/**
 * The lab's layout and legibility on the built site: a phone (390×844: the sidebar is a drawer,
 * the header a menu, no horizontal scroll, every control reachable), a laptop (1280×720: every
 * panel in sight, a status line that never changes height while a scenario plays), a large
 * screen (1920×1080: the request table fills the height), presenter mode's prompt box, the manage
 * drawer beside the views, the glossary tooltips, the first prompt saying where it waits, and
 * WCAG AA contrast of the key text in both themes, computed from the page's own styles.
 */
import { expect, test, type Page } from '@playwright/test';
import { captureErrors, shoot, waitForAttrAbove, waitForModel } from './helpers.ts';

/** Whether the page scrolls sideways. */
async function horizontalOverflow(page: Page): Promise<number> {
  return page.evaluate(() => document.scrollingElement!.scrollWidth - window.innerWidth);
}

/**
 * Contrast of the text in each element matched (WCAG 2.x relative luminance), against the
 * background actually behind it: the first ancestor's opaque background, with translucent
 * backgrounds and the text's own alpha composited on the way.
 */
async function contrasts(page: Page, selectors: string[]): Promise<{ selector: string; text: string; ratio: number }[]> {
  return page.evaluate((sels) => {
    const canvas = document.createElement('canvas');
    canvas.width = canvas.height = 1;
    const ctx = canvas.getContext('2d', { willReadFrequently: true })!;
    /** Any CSS colour as [r, g, b, a] (0–255, a 0–1), resolved by the browser itself. */
    const rgba = (css: string): [number, number, number, number] => {
      ctx.clearRect(0, 0, 1, 1);
      ctx.fillStyle = '#000';
      ctx.fillStyle = css;
      ctx.fillRect(0, 0, 1, 1);
      const d = ctx.getImageData(0, 0, 1, 1).data;
      return [d[0], d[1], d[2], d[3] / 255];
    };
    const over = (top: number[], under: number[]) => [0, 1, 2].map((i) => top[i] * top[3] + under[i] * (1 - top[3]));
    const lum = (c: number[]) => {
      const [r, g, b] = c.map((v) => {
        const s = v / 255;
        return s <= 0.04045 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
      });
      return 0.2126 * r + 0.7152 * g + 0.0722 * b;
    };
    const background = (el: Element): number[] => {
      const layers: [number, number, number, number][] = [];
      for (let e: Element | null = el; e; e = e.parentElement) {
        const c = rgba(getComputedStyle(e).backgroundColor);
        if (c[3] > 0) layers.push(c);
        if (c[3] >= 1) break;
      }
      let bg = [255, 255, 255];
      for (const l of layers.reverse()) bg = over(l, bg);
      return bg;
    };
    const out: { selector: string; text: string; ratio: number }[] = [];
    for (const sel of sels) {
      const els = [...document.querySelectorAll(sel)].filter((e) => (e as HTMLElement).offsetParent !== null || getComputedStyle(e).position === 'fixed');
      if (els.length === 0) out.push({ selector: sel, text: '(missing)', ratio: 0 });
      for (const el of els.slice(0, 3)) {
        const cs = getComputedStyle(el);
        const bg = background(el);
        const fg = over(rgba(cs.color).map((v, i) => (i === 3 ? v * Number(cs.opacity) : v)), bg);
        const a = lum(fg);
        const b = lum(bg);
        out.push({ selector: sel, text: (el.textContent ?? '').trim().slice(0, 40), ratio: Math.round(((Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)) * 100) / 100 });
      }
    }
    return out;
  }, selectors);
}

/** Text the lab shows in every state: tabs, headings, labels, legends, numbers, the scenario text. */
const KEY_TEXT = [
  'nav button.active',
  'nav button:not(.active)',
  '.tagline',
  '[data-testid="scenario-text"] strong',
  '[data-testid="scenario-text"]',
  'aside .block h2',
  '[data-testid="prompt-box"] label',
  '[data-testid="run-label"]',
  '[data-testid="lab-meta"]',
  '[data-testid="kv-grid"] h3 .sub',
  '[data-testid="kv-legend"] span[data-mark]',
  '[data-testid="timeline-legend"] span[data-mark]',
  '[data-testid="latency-panel"] thead th',
  '[data-testid="latency-panel"] tbody th',
  '[data-testid="latency-panel"] .g-label',
  '[data-testid="request-table"] thead th',
  '[data-testid="request-table"] .state',
  '[data-testid="model-status"] .ok strong',
  '[data-testid="model-status"] dt',
  '.term',
];

test.describe('on a phone (390×844)', () => {
  test.use({ viewport: { width: 390, height: 844 }, hasTouch: true });

  test('no sideways scroll; the sidebar is a drawer with every control reachable; the header is a menu', async ({ page }, testInfo) => {
    const errors = captureErrors(page);
    await page.goto('/');
    await waitForModel(page);
    await waitForAttrAbove(page, 'slot-timeline', 'data-columns', 3);
    expect(await horizontalOverflow(page)).toBeLessThanOrEqual(0);
    // Panels are stacked full width.
    for (const id of ['kv-grid', 'latency-panel', 'slot-timeline', 'request-table']) {
      const box = (await page.getByTestId(id).boundingBox())!;
      expect(box.width, id).toBeGreaterThan(300);
      expect(box.x + box.width, id).toBeLessThanOrEqual(390);
    }
    await shoot(page, testInfo, 'layout-phone');
    // A tap on a term shows its definition, within the screen.
    await page.getByTestId('latency-panel').locator('[data-term="ttft"]').tap();
    const tip = page.getByRole('tooltip').filter({ hasText: 'time to first token' });
    await expect(tip).toBeInViewport({ ratio: 1 });
    await page.getByTestId('latency-panel').locator('h3').tap();
    await expect(tip).toBeHidden();

    // The drawer: closed it is out of reach (inert), open it lies within the screen.
    const sidebar = page.getByTestId('lab-sidebar');
    await expect(page.getByTestId('prompt-send')).not.toBeInViewport();
    await page.getByTestId('sidebar-toggle').click();
    await expect(page.getByTestId('sidebar-toggle')).toHaveAttribute('aria-expanded', 'true');
    await expect(sidebar).toBeInViewport();
    // Every control in it can be reached and is not covered: open the folded sections, then
    // scroll to each control and check the element at its centre is that control.
    // (The locator is live: each click takes an element out of it, so open the first until none is left.)
    const folded = sidebar.locator('details:not([open]) > summary');
    for (let n = await folded.count(); n > 0; n--) {
      await folded.first().click();
      await expect(folded).toHaveCount(n - 1);
    }
    const unreachable = await sidebar.evaluate((aside) => {
      const bad: string[] = [];
      const controls = aside.querySelectorAll<HTMLElement>('button, input, select, textarea, summary, [tabindex="0"]');
      for (const el of controls) {
        el.scrollIntoView({ block: 'center', inline: 'nearest' });
        const r = el.getBoundingClientRect();
        const x = r.left + Math.min(r.width / 2, 8);
        const y = r.top + r.height / 2;
        const hit = document.elementFromPoint(x, y);
        const inside = r.left >= 0 && r.right <= window.innerWidth + 0.5 && r.width > 0 && r.height > 0;
        if (!inside || !hit || !(el === hit || el.contains(hit) || hit.contains(el) || (el as HTMLInputElement).labels?.[0]?.contains(hit))) {
          bad.push(`${el.tagName.toLowerCase()} ${el.getAttribute('data-testid') ?? el.textContent?.trim().slice(0, 30) ?? ''}`);
        }
      }
      return { bad, count: controls.length };
    });
    expect(unreachable.count).toBeGreaterThan(25);
    expect(unreachable.bad).toEqual([]);
    expect(await horizontalOverflow(page)).toBeLessThanOrEqual(0);
    await sidebar.getByTestId('prompt-input').scrollIntoViewIfNeeded();
    await shoot(page, testInfo, 'layout-phone-drawer');
    await page.getByTestId('sidebar-close').click();
    await expect(page.getByTestId('sidebar-toggle')).toHaveAttribute('aria-expanded', 'false');
    await expect(page.getByTestId('prompt-send')).not.toBeInViewport();

    // The header's items are in a menu: views, theme, presenter, manage, about.
    await expect(page.getByTestId('theme-toggle')).toBeHidden();
    await page.getByTestId('header-menu').click();
    for (const id of ['tab-lab', 'tab-compare', 'tab-calculator', 'tab-simulated', 'theme-toggle', 'presenter-toggle', 'manage-open', 'about-open']) {
      await expect(page.getByTestId(id)).toBeInViewport({ ratio: 1 });
    }
    await shoot(page, testInfo, 'layout-phone-menu');
    await page.getByTestId('theme-toggle').click();
    await expect(page.locator('html')).toHaveAttribute('data-theme', 'light');
    await expect(page.getByTestId('theme-toggle')).toBeHidden();
    await page.getByTestId('header-menu').click();
    await page.getByTestId('about-open').click();
    await expect(page.getByTestId('about-panel')).toBeVisible();
    await expect(page.getByTestId('about-glossary')).toContainText('time to first token');
    await page.getByTestId('about-close').click();
    expect(await horizontalOverflow(page)).toBeLessThanOrEqual(0);
    expect(errors).toEqual([]);
  });
});

test.describe('on a laptop (1280×720)', () => {
  test('every panel in sight; the status line keeps its height while a scenario plays, pauses and plays again', async ({ page }, testInfo) => {
    const errors = captureErrors(page);
    await page.goto('/?scenario=traffic-spike');
    await waitForModel(page);
    await waitForAttrAbove(page, 'slot-timeline', 'data-columns', 2);
    // Sample the status line's height and the views' position every animation frame.
    await page.evaluate(() => {
      const w = window as unknown as { __heights: Set<number>; __tops: Set<number> };
      w.__heights = new Set();
      w.__tops = new Set();
      const bar = document.querySelector('[data-testid="lab-status"]')!;
      const grid = document.querySelector('[data-testid="kv-grid"]')!;
      const sample = () => {
        w.__heights.add(Math.round(bar.getBoundingClientRect().height * 10) / 10);
        w.__tops.add(Math.round(grid.getBoundingClientRect().top * 10) / 10);
        requestAnimationFrame(sample);
      };
      sample();
    });
    const step0 = Number(await page.getByTestId('slot-timeline').getAttribute('data-columns'));
    await waitForAttrAbove(page, 'slot-timeline', 'data-columns', step0 + 8);
    await page.keyboard.press(' ');
    await expect(page.getByTestId('playback')).toHaveAttribute('data-settled', 'true');
    await page.keyboard.press('ArrowRight');
    await expect(page.getByTestId('playback')).toHaveAttribute('data-settled', 'true');
    await page.keyboard.press(' ');
    await waitForAttrAbove(page, 'slot-timeline', 'data-columns', step0 + 14);
    const seen = await page.evaluate(() => {
      const w = window as unknown as { __heights: Set<number>; __tops: Set<number> };
      return { heights: [...w.__heights], tops: [...w.__tops] };
    });
    expect(seen.heights).toHaveLength(1);
    expect(seen.tops).toHaveLength(1);

    // All four panels are on screen, the request table with room for rows; the page does not scroll.
    for (const id of ['kv-grid', 'latency-panel', 'slot-timeline', 'request-table']) await expect(page.getByTestId(id)).toBeInViewport({ ratio: 1 });
    const table = (await page.getByTestId('request-table').locator('.scroll').boundingBox())!;
    expect(table.height).toBeGreaterThan(120);
    expect(await page.evaluate(() => document.scrollingElement!.scrollHeight - window.innerHeight)).toBeLessThanOrEqual(0);
    expect(await horizontalOverflow(page)).toBeLessThanOrEqual(0);
    await shoot(page, testInfo, 'layout-1280');
    expect(errors).toEqual([]);
  });

  test('the first prompt says where it waits until its first token, and its answer is in sight', async ({ page }, testInfo) => {
    const errors = captureErrors(page);
    // The first screen runs static batching: a prompt sent now waits for the batch to drain.
    await page.goto('/');
    await waitForModel(page);
    await waitForAttrAbove(page, 'slot-timeline', 'data-columns', 2);
    await page.getByTestId('prompt-send').click();
    const where = page.getByTestId('prompt-where');
    await expect(where).toBeVisible();
    await expect(where).toHaveText(/static batch|queued|prefill|joins the scheduler/);
    await expect(where).toBeInViewport({ ratio: 1 });
    // As it changes (queued, then the static batch draining, then prefill) it stays in sight.
    await page.waitForTimeout(1500);
    if ((await where.count()) > 0) await expect(where).toBeInViewport({ ratio: 1 });
    await shoot(page, testInfo, 'layout-first-prompt-waiting');
    const out = page.getByTestId('prompt-output');
    await expect.poll(async () => (await out.locator('.gen').textContent())?.length ?? 0, { timeout: 90_000 }).toBeGreaterThan(0);
    await expect(where).toHaveCount(0);
    await expect(out).toBeInViewport();
    expect(errors).toEqual([]);
  });

  test('the glossary: hover, keyboard focus or a tap on a term shows its definition', async ({ page }) => {
    const errors = captureErrors(page);
    await page.goto('/?scenario=none');
    await waitForModel(page);
    const ttft = page.getByTestId('latency-panel').locator('[data-term="ttft"]');
    const tip = page.getByRole('tooltip').filter({ hasText: 'time to first token' });
    await expect(tip).toBeHidden();
    // Keyboard: Tab reaches terms; focus shows the tooltip it is described by, Escape hides it.
    await ttft.focus();
    await expect(tip).toBeVisible();
    await expect(tip).toContainText('How long a request waits');
    const describedBy = await ttft.getAttribute('aria-describedby');
    expect(await tip.getAttribute('id')).toBe(describedBy);
    await page.keyboard.press('Escape');
    await expect(tip).toBeHidden();
    await page.keyboard.press('Tab');
    await expect(page.getByRole('tooltip')).toHaveCount(1);
    await page.keyboard.press('Shift+Tab');
    await expect(tip).toBeVisible();
    await page.locator('body').click({ position: { x: 5, y: 300 } });
    await expect(tip).toBeHidden();
    // Hover, on the KV grid's legend and the request table's header (its scroller does not clip it).
    const cow = page.getByTestId('kv-legend').locator('[data-term="copyOnWrite"]');
    await cow.hover();
    await expect(page.getByRole('tooltip').filter({ hasText: 'copy-on-write' })).toBeVisible();
    const hit = page.getByTestId('request-table').locator('[data-term="prefixCache"]');
    await hit.hover();
    const hitTip = page.getByRole('tooltip').filter({ hasText: 'prefix cache:' });
    await expect(hitTip).toBeVisible();
    await expect(hitTip).toBeInViewport({ ratio: 1 });
    // Every term the views use has a definition, and the percentiles are explained.
    await expect(page.getByTestId('latency-panel').locator('[data-term="percentiles"]')).toHaveCount(3);
    for (const key of ['tpot', 'e2e', 'block', 'swap', 'evict', 'fork', 'prefill', 'decode', 'preemption', 'refCount']) {
      expect(await page.locator(`[data-term="${key}"]`).count(), key).toBeGreaterThan(0);
    }
    expect(errors).toEqual([]);
  });

  test('text contrast meets WCAG AA (4.5:1) in both themes', async ({ page }, testInfo) => {
    const errors = captureErrors(page);
    for (const theme of ['dark', 'light'] as const) {
      await page.goto(`/?scenario=prefix-caching${theme === 'light' ? '&theme=light' : ''}`);
      await waitForModel(page);
      await waitForAttrAbove(page, 'request-table', 'data-count', 0);
      const found = await contrasts(page, KEY_TEXT);
      const low = found.filter((c) => c.ratio < 4.5);
      const lowest = new Map<string, number>();
      for (const c of found) lowest.set(c.selector, Math.min(lowest.get(c.selector) ?? Infinity, c.ratio));
      const summary = [...lowest].map(([sel, r]) => `${sel}: ${r}`).join('; ');
      testInfo.annotations.push({ type: `contrast ${theme}`, description: summary });
      if (process.env.SERVELAB_PRINT_CONTRAST) console.log(`contrast ${theme}: ${summary}`);
      expect(low, `${theme}: ${JSON.stringify(low)}`).toEqual([]);
      await shoot(page, testInfo, `layout-contrast-${theme}`);
    }
    expect(errors).toEqual([]);
  });
});

test.describe('on a large screen (1920×1080)', () => {
  test.use({ viewport: { width: 1920, height: 1080 } });

  test('the request table fills the height', async ({ page }, testInfo) => {
    const errors = captureErrors(page);
    await page.goto('/?scenario=traffic-spike');
    await waitForModel(page);
    await waitForAttrAbove(page, 'request-table', 'data-count', 10);
    const panel = (await page.getByTestId('request-table').boundingBox())!;
    expect(panel.y + panel.height).toBeGreaterThan(1080 - 40);
    expect(panel.y + panel.height).toBeLessThanOrEqual(1080);
    expect((await page.getByTestId('request-table').locator('.scroll').boundingBox())!.height).toBeGreaterThan(300);
    await shoot(page, testInfo, 'layout-1920');
    expect(errors).toEqual([]);
  });
});

test('presenter mode keeps a compact prompt box; the manage drawer leaves the views in sight while a fault hits the KV grid', async ({ page }, testInfo) => {
  const errors = captureErrors(page);
  await page.goto('/?scenario=none&present=1');
  // Presenter mode has no sidebar (and no model status): the status line names the model.
  await expect(page.getByTestId('lab-meta')).toContainText('stories260K');
  await expect(page.getByTestId('slot-timeline')).toContainText('continuous batching');
  await expect(page.getByTestId('prompt-box')).toBeVisible();
  await expect(page.getByTestId('prompt-box')).toBeInViewport();
  const promptBox = (await page.getByTestId('prompt-box').boundingBox())!;
  expect(promptBox.height).toBeLessThan(80);
  await shoot(page, testInfo, 'layout-presenter');
  await page.keyboard.press('p');
  await expect(page.locator('html')).not.toHaveClass(/presenter/);

  // One prompt box and one workload form in the app, the manage drawer open or not.
  await page.getByTestId('manage-open').click();
  const drawer = page.getByTestId('manage-panel');
  await expect(drawer).toBeVisible();
  await expect(page.getByTestId('manage-status')).toHaveAttribute('data-phase', 'ready');
  await expect(page.getByTestId('prompt-box')).toHaveCount(1);
  await expect(page.getByTestId('workload-controls')).toHaveCount(1);
  await expect(page.getByTestId('manage-prompt')).toHaveCount(0);
  const d = (await drawer.boundingBox())!;
  for (const id of ['kv-grid', 'slot-timeline', 'request-table']) {
    const b = (await page.getByTestId(id).boundingBox())!;
    expect(b.x + b.width, `${id} beside the drawer`).toBeLessThanOrEqual(d.x + 1);
  }
  await page.getByTestId('fault-kv').click();
  await expect(page.getByTestId('kv-grid')).toContainText('8 GPU blocks', { timeout: 60_000 });
  await waitForAttrAbove(page, 'kv-grid', 'data-used-blocks', 0);
  await expect.poll(async () => Number(await page.getByTestId('request-table').getAttribute('data-count')), { timeout: 60_000 }).toBeGreaterThanOrEqual(5);
  await shoot(page, testInfo, 'layout-manage-drawer');
  await page.getByTestId('manage-close').click();
  await expect(drawer).toHaveCount(0);
  expect(errors).toEqual([]);
});
