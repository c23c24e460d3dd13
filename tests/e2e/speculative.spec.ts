/**
 * The speculative decoding scenario on the real model: drafts are verified and marked in the slot
 * timeline, the latency panel shows acceptance (overall, mean accepted length, by position), a
 * request's detail shows its acceptance, and Compare runs speculation off against on.
 */
import { expect, test } from '@playwright/test';
import { captureErrors, numAttr, shoot, waitForAttrAbove, waitForModel } from './helpers.ts';

test('speculative decoding: drafts in the timeline, acceptance in the latency panel and the request detail', async ({ page }, testInfo) => {
  test.setTimeout(300_000);
  const errors = captureErrors(page);
  await page.goto('/?scenario=speculative-decoding');
  await waitForModel(page);
  await expect(page.getByTestId('scenario-speculative-decoding')).toHaveAttribute('aria-pressed', 'true');
  await expect(page.getByTestId('scenario-text')).toContainText('accepted drafts');
  const stats = page.getByTestId('spec-stats');
  await expect(stats).toBeVisible();
  // Acceptance is shown once drafts have been verified, and story text repeats itself enough to accept some.
  await expect.poll(async () => Number((await stats.getAttribute('data-acceptance')) ?? 0), { timeout: 120_000 }).toBeGreaterThan(0);
  await expect(stats).toContainText('mean accepted length');
  await expect(stats).toContainText('by position');
  const legend = page.getByTestId('timeline-legend');
  await expect(legend.locator('[data-mark="draft-accepted"]')).toBeVisible();
  await expect(legend.locator('[data-mark="draft-rejected"]')).toBeVisible();
  await expect(page.getByTestId('timeline-drafts')).toBeVisible();
  await waitForAttrAbove(page, 'latency-panel', 'data-finished', 0, 180_000);
  const finished = page.getByTestId('request-table').locator('tr[data-state="finished"]').first();
  await finished.click();
  await expect(page.getByTestId('detail-acceptance')).toHaveText(/^\d+ of \d+ accepted \(\d+%\)$/);
  await shoot(page, testInfo, 'speculative-lab');
  expect(errors).toEqual([]);
});

test('speculative decoding in Compare: off against n-gram k = 4, the one setting that differs', async ({ page }, testInfo) => {
  test.setTimeout(300_000);
  const errors = captureErrors(page);
  await page.goto('/?view=compare&scenario=speculative-decoding');
  await expect(page.getByTestId('compare-diff')).toContainText('speculation');
  const a = page.getByTestId('compare-a');
  const b = page.getByTestId('compare-b');
  await expect(a).toContainText('no speculation');
  await expect(b).toContainText('n-gram, k = 4');
  await expect.poll(async () => Number(await b.getAttribute('data-step')), { timeout: 120_000 }).toBeGreaterThan(20);
  await expect.poll(async () => Number((await b.getByTestId('spec-stats').getAttribute('data-acceptance')) ?? 0), { timeout: 120_000 }).toBeGreaterThan(0);
  await expect(a.getByTestId('spec-stats')).toHaveCount(0);
  expect(await numAttr(page, 'compare-b', 'data-step')).toBeGreaterThan(0);
  await shoot(page, testInfo, 'speculative-compare');
  expect(errors).toEqual([]);
});
