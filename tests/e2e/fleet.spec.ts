/**
 * The simulated fleet on the built site: every preset opens by URL, runs in the fleet worker and
 * shows its lanes, decisions and figures (both runs where a preset has two); the P99 hunt's
 * slowest requests point at the planted tenant, "Reveal the cause" names it, and "Download trace"
 * gives a Chrome trace JSON; playback by keyboard; screenshots at 1280×720, 1920×1080 and 390×844
 * with nothing wider than the window; no console errors.
 */
import { readFileSync } from 'node:fs';
import { expect, test, type Page } from '@playwright/test';
import { FLEET_PRESET_IDS } from '../../src/sim/fleet/types.ts';
import { captureErrors, shoot } from './helpers.ts';

async function openPreset(page: Page, id: string): Promise<void> {
  await page.goto(`/?view=fleet&fleet=${id}`);
  const view = page.getByTestId('fleet-view');
  await expect(view).toHaveAttribute('data-preset', id);
  await expect(view).toHaveAttribute('data-status', 'done', { timeout: 60_000 });
}

test('every fleet preset opens by URL, runs off the main thread and shows lanes, decisions and figures', async ({ page }) => {
  const errors = captureErrors(page);
  for (const id of FLEET_PRESET_IDS) {
    await openPreset(page, id);
    await expect(page.getByTestId('fleet-view').getByText('SIMULATED', { exact: true })).toBeVisible();
    await expect(page.getByTestId('fleet-about').locator('li').first()).toBeVisible();
    // At the end of the run: every replica has a lane, the router has routed, the figures are in.
    await page.getByTestId('fleet-end').click();
    await expect(page.getByTestId('fleet-lane').first()).toBeVisible();
    expect(await page.getByTestId('fleet-lane').count()).toBeGreaterThan(0);
    await expect(page.getByTestId('router-decision').first()).toBeVisible();
    await expect(page.getByTestId('compare-p99TtftS')).toContainText(/\d/);
    await expect(page.getByTestId('billing-row').first()).toBeVisible();
    await expect(page.getByTestId('slowest-row').first()).toBeVisible();
    const numRuns = await page.locator('[data-testid^="fleet-run-"]').count();
    // A preset with two fleets compares them: a column each in the comparison line.
    expect(await page.getByTestId('compare-p99TtftS').locator('td').count()).toBe(Math.max(1, numRuns));
    if (id === 'spike') {
      await page.getByTestId('fleet-run-1').click();
      await expect(page.getByTestId('autoscaler-decision').first()).toBeVisible();
    }
    if (id === 'moderation') await expect(page.getByTestId('fig-content-filter')).toHaveText(/^[1-9]\d*$/);
    if (id === 'two-models') await expect(page.getByTestId('fleet-consolidation')).toContainText('GPUs');
    expect(new URL(page.url()).searchParams.get('fleet')).toBe(id);
  }
  expect(errors).toEqual([]);
});

test("the P99 hunt: the slowest requests are the planted tenant's, Reveal names the cause, the trace downloads", async ({ page }) => {
  const errors = captureErrors(page);
  await openPreset(page, 'p99-hunt');
  // Space plays the run back; → steps.
  await page.keyboard.press(' ');
  await expect.poll(async () => Number(await page.getByTestId('fleet-time').getAttribute('data-t'))).toBeGreaterThan(0);
  await page.keyboard.press(' ');
  await expect(page.getByTestId('fleet-play')).toHaveAttribute('aria-pressed', 'false');
  await page.getByTestId('fleet-end').click();

  await page.getByTestId('reveal-cause').click();
  const cause = page.getByTestId('planted-cause');
  await expect(cause).toBeVisible();
  const tenant = /tenant “([^”]+)”/.exec((await cause.textContent()) ?? '')?.[1];
  expect(tenant).toBeTruthy();
  const rows = page.getByTestId('slowest-row');
  await expect(rows.first()).toBeVisible();
  const top = await rows.evaluateAll((els) => els.slice(0, 5).map((e) => e.getAttribute('data-tenant')));
  expect(top.length).toBeGreaterThan(0);
  expect(top).toEqual(top.map(() => tenant));

  const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId('download-trace').click()]);
  expect(download.suggestedFilename()).toMatch(/^servelab-fleet-p99-hunt-.*\.trace\.json$/);
  const trace = JSON.parse(readFileSync((await download.path())!, 'utf8'));
  const events = Array.isArray(trace) ? trace : trace.traceEvents;
  expect(Array.isArray(events)).toBe(true);
  expect(events.length).toBeGreaterThan(0);
  expect(errors).toEqual([]);
});

test('the fleet view fits 1280×720, 1920×1080 and a 390×844 phone', async ({ page }, testInfo) => {
  const errors = captureErrors(page);
  await openPreset(page, 'spike');
  // Playwright cannot fill a range input: set it as a drag would.
  await page.getByTestId('fleet-scrubber').evaluate((el: HTMLInputElement) => {
    el.value = String(Number(el.max) * 0.4);
    el.dispatchEvent(new Event('input', { bubbles: true }));
  });
  for (const [w, h] of [[1280, 720], [1920, 1080], [390, 844]]) {
    await page.setViewportSize({ width: w, height: h });
    await expect(page.getByTestId('fleet-lane').first()).toBeVisible();
    // The canvases take their new width once the resize has been laid out.
    await expect.poll(() => page.evaluate(() => document.scrollingElement!.scrollWidth - window.innerWidth)).toBeLessThanOrEqual(0);
    await shoot(page, testInfo, `fleet-${w}x${h}`);
    await page.screenshot({ path: `test-results/screenshots/fleet-${w}x${h}-full.png`, fullPage: true });
  }
  expect(errors).toEqual([]);
});
