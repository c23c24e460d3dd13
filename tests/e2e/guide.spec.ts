/**
 * The Guide on the built site: every "Show me" opens a view that runs, under the Guide strip, and
 * the strip's figure is computed from that run; keys step through the entries; a link reopens an
 * entry with its strip. Lab and compare entries run the real model (on SwiftShader here): each
 * check waits for the first evidence that the view runs and the figure is there, not for the run
 * to end.
 */
import { expect, test, type Page } from '@playwright/test';
import { captureErrors, numAttr, shoot } from './helpers.ts';
import { GUIDE, type GuideEntry } from '../../src/ui/guide/entries.ts';
import { scenarioById } from '../../src/ui/lab/scenarios.ts';

/** The fleet entries need the fleet view (?view=fleet); the others run here. */
const hasFleetView = async (page: Page) => (await page.getByTestId('tab-fleet').count()) > 0;

async function openGuide(page: Page): Promise<void> {
  await page.keyboard.press('g');
  await expect(page.getByTestId('guide-page')).toBeVisible();
}

/** The view the entry opened runs: its steps advance, or its figure is arithmetic on what it shows. */
async function expectRunning(page: Page, e: GuideEntry): Promise<void> {
  const t = e.target;
  if (t.kind === 'compare') {
    await expect(page.getByTestId('compare-view')).toBeVisible();
    await expect(page.getByTestId('compare-view')).toContainText(scenarioById(t.scenarioId)!.title);
    for (const side of ['compare-a', 'compare-b']) await expect.poll(() => numAttr(page, side, 'data-step'), { timeout: 90_000 }).toBeGreaterThan(0);
  } else if (t.kind === 'lab') {
    await expect(page.getByTestId('run-label')).toContainText(scenarioById(t.scenarioId)!.title);
    const first = await numAttr(page, 'kv-grid', 'data-step');
    await expect.poll(() => numAttr(page, 'kv-grid', 'data-step'), { timeout: 90_000 }).toBeGreaterThan(Number.isFinite(first) ? first : 0);
  } else if (t.kind === 'calculator') {
    await expect(page.getByTestId('kv-calculator')).toBeVisible();
    await expect(page.getByTestId('calc-model')).toHaveValue(t.modelId);
    await expect(page.getByTestId('calc-tp')).toHaveValue(String(t.tensorParallel));
  } else if (t.kind === 'simulated') {
    await expect(page.getByTestId('sim-view')).toBeVisible();
    await expect(page.getByTestId('sim-tp')).toHaveValue(String(t.tensorParallel));
    await expect.poll(() => numAttr(page, 'kv-grid', 'data-step'), { timeout: 30_000 }).toBeGreaterThan(0);
  } else {
    await expect(page.getByTestId('fleet-view')).toHaveAttribute('data-preset', t.presetId);
    await expect(page.getByTestId('fleet-view')).toHaveAttribute('data-status', 'done', { timeout: 60_000 });
  }
}

async function expectFigure(page: Page, e: GuideEntry): Promise<void> {
  const strip = page.getByTestId('guide-strip');
  await expect(strip).toHaveAttribute('data-entry', String(e.n));
  await expect(page.getByTestId('guide-question')).toHaveText(e.question);
  const fig = page.getByTestId('guide-figure');
  await expect(fig).toHaveAttribute('data-ready', '1', { timeout: 120_000 });
  // A figure is made of this run's numbers.
  await expect(fig).toContainText(/\d/);
}

test.describe('the Guide', () => {
  test('every "Show me" opens a running view under the strip, with the figure from that run', async ({ page }) => {
    test.setTimeout(420_000);
    const errors = captureErrors(page);
    await page.goto('/?view=guide');
    await expect(page.getByTestId('guide-page')).toBeVisible();
    await expect(page.getByRole('button', { name: 'Show me' })).toHaveCount(GUIDE.length);
    const fleet = await hasFleetView(page);
    for (const e of GUIDE) {
      if (e.target.kind === 'fleet' && !fleet) continue;
      await openGuide(page);
      await page.getByTestId(`guide-show-${e.n}`).click();
      await expect(page).toHaveURL(new RegExp(`[?&]guide=${e.n}(&|$)`));
      await expectRunning(page, e);
      await expectFigure(page, e);
      if (e.n === 12) {
        // Failures on the lab's own engine: the strip opens the manage drawer on the fault panel.
        await page.getByTestId('guide-faults').click();
        await expect(page.getByTestId('manage-panel').getByRole('region', { name: 'Faults' })).toBeVisible();
        await expect(page.getByTestId('guide-strip')).toHaveAttribute('data-entry', '12');
        await page.getByTestId('manage-open').click();
        await expect(page.getByTestId('manage-panel')).toHaveCount(0);
      }
    }
    expect(errors).toEqual([]);
  });

  test('keys step through the entries and a link reopens one, strip included', async ({ page }) => {
    const errors = captureErrors(page);
    await page.goto('/?view=guide');
    // The calculator (5) and the simulation (9) need no model: step between them with the keys.
    await page.getByTestId('guide-show-5').click();
    await expectFigure(page, GUIDE[4]);
    await expect(page.getByTestId('guide-figure')).toContainText('Llama-2 70B');
    await page.keyboard.press('[');
    await expect(page.getByTestId('guide-strip')).toHaveAttribute('data-entry', '4');
    await page.keyboard.press(']');
    await expect(page.getByTestId('guide-strip')).toHaveAttribute('data-entry', '5');
    await page.keyboard.press('PageDown');
    await expect(page.getByTestId('guide-strip')).toHaveAttribute('data-entry', '6');
    await expect(page.getByTestId('run-label')).toContainText(scenarioById('short-vs-long')!.title);
    await page.keyboard.press('PageUp');
    await expect(page.getByTestId('guide-strip')).toHaveAttribute('data-entry', '5');
    await page.getByTestId('guide-next').click();
    await page.getByTestId('guide-next').click();
    await page.getByTestId('guide-next').click();
    await page.getByTestId('guide-next').click();
    await expect(page.getByTestId('guide-strip')).toHaveAttribute('data-entry', '9');
    await expectFigure(page, GUIDE[8]);
    await expect(page.getByTestId('guide-figure')).toContainText('SIMULATED');
    // Another layout: the figure compares it with the one before.
    await page.getByTestId('guide-layout-1x8').click();
    await expect(page.getByTestId('sim-pp')).toHaveValue('8');
    await expect(page.getByTestId('guide-figure')).toContainText('TP 1 × PP 8', { timeout: 30_000 });
    await expect(page.getByTestId('guide-figure')).toContainText('Earlier: TP 8 × PP 1', { timeout: 30_000 });
    const url = page.url();
    expect(url).toContain('guide=9');
    expect(url).toContain('spp=8');
    // Back to the Guide: the entry is marked; g opens it too.
    await page.getByTestId('guide-back').click();
    await expect(page.getByTestId('guide-entry-9')).toHaveClass(/current/);

    // The link reopens entry 9 with its layout and its strip.
    await page.goto(url);
    await expect(page.getByTestId('guide-strip')).toHaveAttribute('data-entry', '9');
    await expect(page.getByTestId('sim-pp')).toHaveValue('8');
    await expect(page.getByTestId('guide-figure')).toHaveAttribute('data-ready', '1', { timeout: 30_000 });
    // And a compare entry's link: its scenario on both engines, the strip over them.
    await page.goto('/?view=compare&scenario=static-vs-continuous&guide=1');
    await expectRunning(page, GUIDE[0]);
    await expectFigure(page, GUIDE[0]);
    await expect(page.getByTestId('guide-figure')).toContainText('Sequences at work per step');
    // Closing the strip takes the entry out of the URL.
    await page.getByTestId('guide-close').click();
    await expect(page.getByTestId('guide-strip')).toHaveCount(0);
    await expect(page).not.toHaveURL(/guide=/);
    expect(errors).toEqual([]);
  });

  test('screenshots: the Guide and its strip at three sizes', async ({ page }, testInfo) => {
    test.setTimeout(240_000);
    for (const [w, h] of [
      [1280, 720],
      [1920, 1080],
      [390, 844],
    ]) {
      await page.setViewportSize({ width: w, height: h });
      await page.goto('/?view=guide');
      await expect(page.getByTestId('guide-page')).toBeVisible();
      await shoot(page, testInfo, `guide-page-${w}x${h}`);
      await page.goto('/?view=compare&scenario=static-vs-continuous&guide=1');
      await expectFigure(page, GUIDE[0]);
      await shoot(page, testInfo, `guide-strip-compare-${w}x${h}`);
      await page.goto('/?scenario=parallel-sampling&guide=7&present=1');
      await expectFigure(page, GUIDE[6]);
      await shoot(page, testInfo, `guide-strip-lab-presenter-${w}x${h}`);
      await page.goto('/?view=calculator&guide=5');
      await expectFigure(page, GUIDE[4]);
      await shoot(page, testInfo, `guide-strip-calculator-${w}x${h}`);
      await page.goto('/?view=fleet&fleet=spike&guide=10');
      await expectFigure(page, GUIDE[9]);
      await shoot(page, testInfo, `guide-strip-fleet-${w}x${h}`);
    }
  });
});
