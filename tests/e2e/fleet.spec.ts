/**
 * The simulated fleet on the built site: every preset opens by URL, runs in the fleet worker and
 * shows its lanes, decisions and figures (both runs where a preset has two); the P99 hunt's
 * slowest requests point at the planted tenant, "Reveal the cause" names it, and "Download trace"
 * gives a Chrome trace JSON; playback by keyboard; screenshots at 1280×720, 1920×1080 and 390×844
 * with nothing wider than the window; the hunt's workload exports for `vllm bench serve` (a JSONL
 * download, one request a line); no console errors.
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
    if (id === 'moderation') {
      await page.getByTestId('fleet-run-1').click();
      await expect(page.getByTestId('fig-content-filter')).toHaveText(/^[1-9]\d*$/);
      await expect(page.getByTestId('compare-contentFiltered')).toContainText(/[1-9]/);
      // The moderation span is in the breakdown, and a request's checks are listed.
      await page.getByTestId('slowest-row').first().click();
      await expect(page.getByTestId('slowest-detail')).toContainText(/moderation [1-9]/);
      await expect(page.getByTestId('slowest-moderation')).toContainText('Moderation checks: 1 input');
    }
    if (id === 'two-models') await expect(page.getByTestId('fleet-consolidation')).toContainText('GPUs');
    if (id === 'quotas-billing') {
      // Prices are editable: the bill is recomputed from the requests' tokens; a bad price is refused in words.
      const total = page.getByTestId('bill-total');
      const atRunPrices = await total.textContent();
      await page.getByTestId('price-usdPerMGeneratedTokens').fill('100');
      await expect(total).not.toHaveText(atRunPrices!);
      await page.getByTestId('price-usdPerMGeneratedTokens').fill('-1');
      await expect(page.getByTestId('fleet-billing').getByRole('alert')).toContainText('the generated price must be 0 or more');
      await page.getByTestId('price-reset').click();
      await expect(total).toHaveText(atRunPrices!);
    }
    // The preset's point with this run's figures (the hunt's waits for Reveal).
    if (id !== 'p99-hunt') await expect(page.getByTestId('fleet-finding')).toContainText(/^In this run .*\d/);
    else await expect(page.getByTestId('fleet-finding')).toHaveCount(0);
    expect(new URL(page.url()).searchParams.get('fleet')).toBe(id);
  }
  expect(errors).toEqual([]);
});

test("the P99 hunt: the slowest requests are the planted tenant's, Reveal names the cause, the trace and the vLLM dataset download", async ({ page }, testInfo) => {
  const errors = captureErrors(page);
  await openPreset(page, 'p99-hunt');
  // Space plays the run back; → steps.
  await page.keyboard.press(' ');
  await expect.poll(async () => Number(await page.getByTestId('fleet-time').getAttribute('data-t'))).toBeGreaterThan(0);
  await page.keyboard.press(' ');
  await expect(page.getByTestId('fleet-play')).toHaveAttribute('aria-pressed', 'false');
  const paused = Number(await page.getByTestId('fleet-time').getAttribute('data-t'));
  await page.keyboard.press('ArrowRight');
  await expect.poll(async () => Number(await page.getByTestId('fleet-time').getAttribute('data-t'))).toBeGreaterThan(paused);
  // A click in the middle of a replica lane's or a chart's plot moves the cursor to about half the run.
  const cursorT = async () => Number(await page.getByTestId('fleet-time').getAttribute('data-t'));
  for (const plot of [page.locator('[data-testid="fleet-lanes"] .plot').first(), page.locator('figure.chart .plot').first()]) {
    await page.getByTestId('fleet-end').click();
    const end = await cursorT();
    await plot.scrollIntoViewIfNeeded();
    const box = (await plot.boundingBox())!;
    await page.mouse.click(box.x + box.width / 2, box.y + box.height / 2);
    await expect.poll(cursorT).toBeLessThan(end * 0.75);
    expect(await cursorT()).toBeGreaterThan(end * 0.25);
  }
  await page.getByTestId('fleet-end').click();
  await expect(page.getByTestId('fleet-compare')).toContainText('simulated in');
  // The app keeps the fleet worker and its finished presets across views.
  await page.getByTestId('tab-calculator').click();
  await page.getByTestId('tab-fleet').click();
  await expect(page.getByTestId('fleet-view')).toHaveAttribute('data-status', 'done');
  await expect(page.getByTestId('fleet-compare')).toContainText('kept from an earlier run');
  await page.getByTestId('fleet-end').click();

  await page.getByTestId('reveal-cause').click();
  const cause = page.getByTestId('planted-cause');
  await expect(cause).toBeVisible();
  await expect(cause).toContainText(/In this run P99 TTFT went from/);
  const text = (await cause.textContent()) ?? '';
  const tenant = /tenant “([^”]+)”/.exec(text)?.[1];
  expect(tenant).toBeTruthy();
  // The answer's count of the slowest is what the list shows: the tenant most over-represented in
  // the slowest 1% comes first, it is the planted one, and it holds as many of the rows (most of
  // them, the first among them) as the answer says.
  const [, numPlanted, numSlowest] = /Its requests are (\d+) of the (\d+) slowest by TTFT/.exec(text) ?? [];
  await expect(page.getByTestId('slowest-shares').locator('tbody tr').first()).toContainText(tenant!);
  const rows = page.getByTestId('slowest-row');
  await expect(rows).toHaveCount(Number(numSlowest));
  const tenants = await rows.evaluateAll((els) => els.map((e) => e.getAttribute('data-tenant')));
  expect(tenants.filter((t) => t === tenant).length).toBe(Number(numPlanted));
  expect(Number(numPlanted) * 2).toBeGreaterThan(tenants.length);
  expect(tenants[0]).toBe(tenant);
  // Head-of-line blocking: another tenant's time queued rises from before the change to after it.
  const atS = Number(/Planted at ([\d.]+) s/.exec(text)?.[1]);
  const other = (await page.getByTestId('slowest-shares').locator('tbody tr').nth(1).locator('button').textContent())!;
  const queued = async (from: string, to: string) => {
    await page.getByTestId('slowest-from').fill(from);
    await page.getByTestId('slowest-from').dispatchEvent('change');
    await page.getByTestId('slowest-to').fill(to);
    await page.getByTestId('slowest-to').dispatchEvent('change');
    return Number(/(\d+)%/.exec((await page.getByTestId(`queued-${other}`).textContent()) ?? '')?.[1]);
  };
  const queuedBefore = await queued('0', String(atS));
  const queuedAfter = await queued(String(atS), '');
  expect(queuedAfter).toBeGreaterThan(queuedBefore);
  await page.getByTestId('slowest-from').fill('');
  await page.getByTestId('slowest-from').dispatchEvent('change');
  // Filtering by that tenant keeps only its requests; a request's breakdown opens with its spans.
  await page.getByTestId('slowest-tenant').selectOption(tenant!);
  expect(new Set(await rows.evaluateAll((els) => els.map((e) => e.getAttribute('data-tenant'))))).toEqual(new Set([tenant]));
  await rows.first().click();
  await expect(page.getByTestId('slowest-detail')).toContainText('prefill');
  await expect(page.getByTestId('slowest-spans').locator('i').first()).toBeAttached();

  const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId('download-trace').click()]);
  expect(download.suggestedFilename()).toMatch(/^servelab-fleet-p99-hunt-.*\.trace\.json$/);
  const trace = JSON.parse(readFileSync((await download.path())!, 'utf8'));
  const events = Array.isArray(trace) ? trace : trace.traceEvents;
  expect(Array.isArray(events)).toBe(true);
  expect(events.length).toBeGreaterThan(0);

  // The same workload for a real vLLM server: a JSONL download, one request a line, and the command.
  const [dataset] = await Promise.all([page.waitForEvent('download'), page.getByTestId('fleet-export-vllm').click()]);
  expect(dataset.suggestedFilename()).toBe('servelab-fleet-p99-hunt-production.jsonl');
  const lines = readFileSync((await dataset.path())!, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  expect(lines).toHaveLength(700);
  for (const l of lines) {
    expect(Object.keys(l)).toEqual(['prompt', 'output_tokens']);
    expect(typeof l.prompt).toBe('string');
    expect(Number.isInteger(l.output_tokens)).toBe(true);
  }
  await expect(page.getByTestId('fleet-vllm-command')).toContainText('--request-rate 4 --burstiness 1');
  for (const [w, h] of [[1280, 720], [390, 844]]) {
    await page.setViewportSize({ width: w, height: h });
    await page.getByTestId('planted-cause').scrollIntoViewIfNeeded();
    await shoot(page, testInfo, `fleet-hunt-${w}x${h}`);
    await page.getByTestId('fleet-vllm-export').scrollIntoViewIfNeeded();
    await shoot(page, testInfo, `fleet-vllm-${w}x${h}`);
    await expect.poll(() => page.evaluate(() => document.scrollingElement!.scrollWidth - window.innerWidth)).toBeLessThanOrEqual(0);
  }
  expect(errors).toEqual([]);
});

test('a changed fleet runs in the worker; an impossible one is refused in words and the run shown stays', async ({ page }) => {
  const errors = captureErrors(page);
  await openPreset(page, 'p99-hunt');
  const lanes = page.getByTestId('fleet-lane');
  const before = await lanes.count();
  await page.getByText('Change the fleet and run it again').click();
  // 70B on one L4 cannot hold its weights.
  await page.getByTestId('edit-model-0-0').selectOption('llama-3-70b');
  await page.getByTestId('edit-run').click();
  await expect(page.getByTestId('fleet-error')).toContainText(/run ".*\(changed\)".*pools\[0\]\.deployment: Llama-3 70B does not fit 1× /);
  await expect(page.getByTestId('fleet-view')).toHaveAttribute('data-status', 'error');
  expect(await lanes.count()).toBe(before);
  // One more replica of the 8B model runs.
  await page.getByTestId('edit-model-0-0').selectOption('llama-3-8b');
  await page.getByTestId('edit-replicas-0-0').fill(String(before + 1));
  await page.getByTestId('edit-run').click();
  await expect(page.getByTestId('fleet-view')).toHaveAttribute('data-status', 'done');
  await expect(page.getByTestId('fleet-compare').locator('thead')).toContainText('(changed)');
  await page.getByTestId('fleet-end').click();
  await expect(lanes).toHaveCount(before + 1);
  await page.getByTestId('edit-reset').click();
  await expect(page.getByTestId('fleet-compare').locator('thead')).not.toContainText('(changed)');
  await expect(lanes).toHaveCount(before);
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
