/**
 * A run is a recording you can scrub: the step slider rebuilds every view at a past step from the
 * engine's event log (the KV grid shows the very blocks it showed live at that step), → moves
 * through the recording, the step inspector gives a step's work and the scheduler's reasons, and
 * a run that ends says so and offers Restart and Loop.
 */
import { expect, test, type Page } from '@playwright/test';
import { captureErrors, numAttr, shoot, waitForAttrAbove, waitForModel } from './helpers.ts';

/** What the views show of the KV cache and the timeline now. */
async function shownState(page: Page) {
  const grid = page.getByTestId('kv-grid');
  return {
    step: Number(await grid.getAttribute('data-step')),
    digest: await grid.getAttribute('data-blocks-digest'),
    used: Number(await grid.getAttribute('data-used-blocks')),
    lastColumn: await numAttr(page, 'slot-timeline', 'data-last-step'),
    requests: await numAttr(page, 'request-table', 'data-count'),
  };
}

/** Waits until the views show step k of a recording (the rebuild has landed). */
async function waitShown(page: Page, k: number): Promise<void> {
  const rec = page.getByTestId('recording');
  await expect(rec).toHaveAttribute('data-shown-step', String(k));
  await expect(rec).toHaveAttribute('data-loading', 'false');
  await expect(page.getByTestId('kv-grid')).toHaveAttribute('data-step', String(k));
}

test('scrub a paused run back to step 0 and to the steps seen live; the inspector gives the reasons; the ended run restarts', async ({ page }, testInfo) => {
  test.setTimeout(240_000);
  const errors = captureErrors(page);
  await page.goto('/?scenario=kv-exhausted');
  await waitForModel(page);
  await expect(page.getByTestId('run-label')).toContainText('KV memory exhausted');
  await waitForAttrAbove(page, 'recording', 'data-last-step', 25);

  // Pause, then single-step three times, noting what the views show live at each step.
  await page.getByTestId('play-pause').click();
  await expect(page.getByTestId('play-pause')).toHaveAttribute('aria-pressed', 'false');
  await expect(page.getByTestId('playback')).toHaveAttribute('data-settled', 'true');
  // Paused, the sidebar says how this device's steps compare with the reference the arrivals follow.
  await expect(page.getByTestId('arrival-pacing')).toContainText(/: the steps here took [\d.]+× the reference time\.$/);
  const live = new Map<number, Awaited<ReturnType<typeof shownState>>>();
  for (let i = 0; i < 3; i++) {
    const before = await numAttr(page, 'kv-grid', 'data-step');
    await page.keyboard.press('ArrowRight');
    await expect(page.getByTestId('kv-grid')).toHaveAttribute('data-step', String(before + 1));
    await expect(page.getByTestId('playback')).toHaveAttribute('data-settled', 'true');
    const s = await shownState(page);
    expect(s.lastColumn).toBe(s.step);
    live.set(s.step, s);
  }
  const [k0, k1, k2] = [...live.keys()];
  const n = k2;
  await expect(page.getByTestId('recording-status')).toHaveText(`live · step ${n} (paused)`);
  // With no step picked, the inspector follows the step shown.
  await expect(page.getByTestId('step-inspector')).toHaveAttribute('data-step', String(n));
  await expect(page.getByTestId('step-budget')).toContainText(/budget \d+: \d+ prefill \+ \d+ decode = \d+ used/);
  await expect(page.getByTestId('step-kv-usage')).toContainText(/KV cache \d+% held after it/);

  // Step 0: before anything ran.
  const slider = page.getByRole('slider', { name: 'step' });
  await expect(slider).toHaveAttribute('data-testid', 'step-slider');
  await slider.fill('0');
  await waitShown(page, 0);
  await expect(page.getByTestId('recording-status')).toHaveText(`viewing step 0 of ${n} (paused)`);
  await expect(page.getByTestId('kv-grid')).toHaveAttribute('data-used-blocks', '0');
  await expect(page.getByTestId('slot-timeline')).toHaveAttribute('data-columns', '0');
  await expect(page.getByTestId('step-inspector')).toContainText('Before the first step');

  // A step seen live: the same blocks, timeline and requests as then.
  await slider.fill(String(k0));
  await waitShown(page, k0);
  await expect(page.getByTestId('recording-status')).toHaveText(`viewing step ${k0} of ${n} (paused)`);
  expect(await shownState(page)).toEqual(live.get(k0));
  await shoot(page, testInfo, 'recording-scrubbed-1280');

  // → moves through the recording while scrubbed back (the engine stays where it is).
  await page.keyboard.press('ArrowRight');
  await waitShown(page, k1);
  expect(await shownState(page)).toEqual(live.get(k1));
  await expect(page.getByTestId('step-inspector')).toHaveAttribute('data-step', String(k1));
  // Stepping onto the last step is the live end again.
  await page.keyboard.press('ArrowRight');
  await expect(page.getByTestId('recording-status')).toHaveText(`live · step ${n} (paused)`);
  expect(await shownState(page)).toEqual(live.get(k2));

  // Play resumes from the live end; the run goes on to its end and says so.
  await slider.fill(String(k0));
  await waitShown(page, k0);
  await page.getByTestId('play-pause').click();
  await expect(page.getByTestId('recording-status')).toContainText('live');
  await waitForAttrAbove(page, 'kv-grid', 'data-step', n);
  const playback = page.getByTestId('playback');
  await expect(playback).toHaveAttribute('data-ended', 'true', { timeout: 150_000 });
  const end = await numAttr(page, 'recording', 'data-last-step');
  await expect(page.getByTestId('run-ended')).toHaveText(`run ended at step ${end}`);
  await expect(playback.getByTestId('play-pause')).toHaveCount(0);
  await expect(playback.getByTestId('restart')).toBeVisible();
  await expect(playback.getByTestId('loop')).not.toBeChecked();

  // A preemption: the request's detail lists the scheduler's decisions with their steps.
  const rows = page.getByTestId('request-table').locator('tbody tr[data-request-id]');
  let preemptedAt = -1;
  const numRows = await rows.count();
  for (let i = 0; i < numRows && preemptedAt < 0; i++) {
    const id = (await rows.nth(i).getAttribute('data-request-id'))!;
    await rows.nth(i).click();
    const detail = page.getByTestId('request-detail');
    await expect(detail).toHaveAttribute('aria-label', `Request ${id}`);
    await expect(detail.getByTestId('request-decision').first()).toBeVisible();
    const preempted = detail.locator('[data-testid="request-decision"][data-kind="preempted"]');
    if ((await preempted.count()) > 0) preemptedAt = Number(/steps? (\d+)/.exec((await preempted.first().textContent()) ?? '')![1]);
  }
  expect(preemptedAt).toBeGreaterThan(0);
  // The slider to that step: the inspector shows it, the preemption and its reason in words.
  await slider.fill(String(preemptedAt));
  await waitShown(page, preemptedAt);
  const inspector = page.getByTestId('step-inspector');
  await expect(inspector).toHaveAttribute('data-step', String(preemptedAt));
  await expect(inspector.locator('[data-testid="step-decision"][data-kind="preempted"]').first()).toContainText('preempted by');
  await expect(inspector.getByTestId('step-kv')).toContainText('allocated');
  await inspector.scrollIntoViewIfNeeded();
  await shoot(page, testInfo, 'recording-inspector-1280');

  // Clicking a slot-timeline column (the second one shown, past the slot labels) picks its step for the inspector.
  const canvas = page.getByTestId('slot-timeline').locator('canvas');
  const column = { x: 42, y: 14 };
  await canvas.hover({ position: column });
  const tip = page.getByTestId('slot-timeline').getByRole('tooltip');
  const picked = Number(/step (\d+)/.exec((await tip.textContent()) ?? '')![1]);
  expect(picked).toBeGreaterThan(1);
  await canvas.click({ position: column });
  await expect(inspector).toHaveAttribute('data-step', String(picked));
  await expect(inspector.getByTestId('inspector-latest')).toBeVisible();
  await inspector.getByTestId('inspector-prev').click();
  await expect(inspector).toHaveAttribute('data-step', String(picked - 1));

  // The inspector and the slider on a phone.
  await page.setViewportSize({ width: 390, height: 844 });
  await slider.scrollIntoViewIfNeeded();
  await shoot(page, testInfo, 'recording-slider-390');
  await inspector.scrollIntoViewIfNeeded();
  await shoot(page, testInfo, 'recording-inspector-390');
  await page.setViewportSize({ width: 1280, height: 720 });

  // Restart runs the scenario again from the start, playing.
  const run = await page.getByTestId('recording').getAttribute('data-run');
  await page.getByTestId('restart').click();
  await expect(page.getByTestId('recording')).not.toHaveAttribute('data-run', run!);
  await expect(playback).toHaveAttribute('data-ended', 'false');
  await expect(page.getByTestId('play-pause')).toHaveAttribute('aria-pressed', 'true');
  await expect(page.getByTestId('recording-status')).toContainText('live · step');
  await waitForAttrAbove(page, 'kv-grid', 'data-step', 3);
  expect(await numAttr(page, 'recording', 'data-last-step')).toBeLessThan(end);
  expect(errors).toEqual([]);
});

test('Loop: a run that ends starts again by itself', async ({ page }) => {
  const errors = captureErrors(page);
  // A short custom workload: three requests of a few tokens, all at once.
  await page.goto('/?w=1&wn=3&wo=6&wp=8&wsig=0&wburst=0');
  await waitForModel(page);
  const playback = page.getByTestId('playback');
  await expect(playback).toHaveAttribute('data-ended', 'true');
  await expect(page.getByTestId('run-ended')).toContainText('run ended at step');
  const rec = page.getByTestId('recording');
  const first = await rec.getAttribute('data-run');
  await page.getByTestId('loop').check();
  // It restarts (a new run), ends again, and restarts again while Loop stays on.
  await expect(rec).not.toHaveAttribute('data-run', first!);
  const second = await rec.getAttribute('data-run');
  await expect(playback).toHaveAttribute('data-ended', 'true');
  await expect(page.getByTestId('loop')).toBeChecked();
  await expect(rec).not.toHaveAttribute('data-run', second!);
  await page.getByTestId('loop').uncheck();
  // A restart already under way when Loop went off finishes; after it, nothing restarts.
  await page.waitForTimeout(2000);
  await expect(playback).toHaveAttribute('data-ended', 'true');
  const last = await rec.getAttribute('data-run');
  await page.waitForTimeout(2500);
  await expect(rec).toHaveAttribute('data-run', last!);
  expect(errors).toEqual([]);
});
