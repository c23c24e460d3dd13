import { expect, test } from '@playwright/test';
import { captureErrors, numAttr, shoot, waitForAttrAbove, waitForModel } from './helpers.ts';

const SCENARIO_IDS = [
  'static-vs-continuous',
  'short-vs-long',
  'priority-preemption',
  'prefix-caching',
  'kv-exhausted',
  'traffic-spike',
  'parallel-sampling',
  'fairness',
  'speculative-decoding',
  'structured-output',
  'lora-tenants',
  'quantize-to-fit',
];

test('every scenario runs on the real model (keys 1–9, then a click), each screenshot saved', async ({ page }, testInfo) => {
  test.setTimeout(300_000);
  const errors = captureErrors(page);
  await page.goto('/');
  await waitForModel(page);
  for (const [i, id] of SCENARIO_IDS.entries()) {
    if (i < 9) await page.keyboard.press(String(i + 1));
    else await page.getByTestId(`scenario-${id}`).click();
    await expect(page).toHaveURL(new RegExp(`scenario=${id}`));
    await expect(page.getByTestId(`scenario-${id}`)).toHaveAttribute('aria-pressed', 'true');
    await expect(page.getByTestId('scenario-text')).not.toBeEmpty();
    // Let it run long enough to show something: a few steps in the timeline.
    await waitForAttrAbove(page, 'slot-timeline', 'data-columns', 12);
    await page.waitForTimeout(1500);
    await shoot(page, testInfo, `scenario-${i + 1}-${id}`);
  }
  expect(errors).toEqual([]);
});

test('presenter mode: keys play, pause and step; the URL reproduces the demo; light theme', async ({ page }, testInfo) => {
  const errors = captureErrors(page);
  await page.goto('/?scenario=kv-exhausted&present=1&theme=light&gpu=24&preempt=swap');
  await expect(page.locator('html')).toHaveClass(/presenter/);
  await expect(page.locator('html')).toHaveAttribute('data-theme', 'light');
  await expect(page.getByTestId('run-label')).toContainText('KV memory exhausted');
  await waitForAttrAbove(page, 'slot-timeline', 'data-columns', 3);
  await expect(page.getByTestId('kv-grid')).toContainText('24 GPU blocks');

  // Space pauses; → runs exactly one step. Pausing lets the step in flight land, and the playback
  // says when the state shown is exact (data-settled): from then on nothing moves but a single step.
  await page.keyboard.press(' ');
  await expect(page.getByTestId('play-pause')).toHaveAttribute('aria-pressed', 'false');
  await expect(page.getByTestId('playback')).toHaveAttribute('data-settled', 'true');
  const before = await numAttr(page, 'slot-timeline', 'data-last-step');
  await page.keyboard.press('ArrowRight');
  await expect.poll(() => numAttr(page, 'slot-timeline', 'data-last-step'), { timeout: 30_000 }).toBe(before + 1);
  await expect(page.getByTestId('playback')).toHaveAttribute('data-settled', 'true');
  await page.waitForTimeout(600);
  expect(await numAttr(page, 'slot-timeline', 'data-last-step')).toBe(before + 1);
  await shoot(page, testInfo, 'presenter-light');
  await page.keyboard.press(' ');
  await expect(page.getByTestId('play-pause')).toHaveAttribute('aria-pressed', 'true');

  // A scenario key changes the URL; the theme key flips the theme.
  await page.keyboard.press('3');
  await expect(page).toHaveURL(/scenario=priority-preemption/);
  await expect(page).toHaveURL(/present=1/);
  await page.keyboard.press('t');
  await expect(page.locator('html')).toHaveAttribute('data-theme', 'dark');
  expect(errors).toEqual([]);
});

test('the KV calculator shows the GQA arithmetic; the simulated 70B mode drives the same views', async ({ page }, testInfo) => {
  const errors = captureErrors(page);
  await page.goto('/?view=calculator');
  const calc = page.getByTestId('kv-calculator');
  await expect(calc.getByTestId('calc-arithmetic')).toContainText('2 (K and V) × 80 layers × 8 KV heads × 128 head dim × 2 B = 327,680 B');
  await expect(calc).toContainText('grouped-query attention');
  await calc.getByTestId('calc-model').selectOption('llama-2-13b');
  await expect(calc.getByTestId('calc-arithmetic')).toContainText('40 layers × 40 KV heads');
  await expect(calc).toContainText('multi-head attention');
  await shoot(page, testInfo, 'kv-calculator');

  await page.getByTestId('tab-simulated').click();
  const sim = page.getByTestId('sim-view');
  await expect(sim).toContainText('SIMULATED');
  await expect(sim).toContainText('Llama-2 70B on 8xH100');
  await waitForAttrAbove(page, 'slot-timeline', 'data-columns', 10);
  await waitForAttrAbove(page, 'kv-grid', 'data-used-blocks', 10);
  await expect(sim.getByTestId('sim-cost')).toContainText('-bound');
  // Pipeline parallel instead of tensor parallel: a new run with a bubble in the cost breakdown.
  await sim.getByTestId('sim-tp').selectOption('2');
  await sim.getByTestId('sim-pp').selectOption('4');
  await sim.getByTestId('sim-start').click();
  await expect(sim).toContainText('TP 2 x PP 4');
  await expect(sim.getByTestId('sim-cost')).toContainText('bubble');
  // Q4_0 weights: about a quarter of the 16-bit bytes per device, and the memory they free holds more KV blocks.
  const kvBlocks = async () => Number(await sim.getByTestId('sim-kv-pool').getAttribute('data-blocks'));
  const blocks16 = await kvBlocks();
  await expect(sim.getByTestId('sim-weight-bytes')).toContainText('16-bit: 17.2 GB per device');
  await sim.getByTestId('sim-weights').selectOption('q4_0');
  await sim.getByTestId('sim-start').click();
  await expect(sim.getByTestId('sim-weight-bytes')).toContainText('Q4_0 (4-bit): 4.8 GB per device');
  expect(await kvBlocks()).toBeGreaterThan(blocks16);
  await expect(page).toHaveURL(/swt=q4_0/);
  await shoot(page, testInfo, 'simulated-70b');
  expect(errors).toEqual([]);
});

test("a link reproduces a custom workload and compare mode's per-side settings", async ({ page }, testInfo) => {
  const errors = captureErrors(page);
  // A custom workload from the URL: it runs on load, and the form shows it.
  await page.goto('/?w=1&wn=5&wp=8&wo=12&wburst=0&wsig=0&seqs=8');
  await waitForModel(page);
  await expect(page.getByTestId('run-label')).toHaveText('Custom workload');
  const form = page.getByTestId('workload-controls');
  await expect(form.getByLabel('requests')).toHaveValue('5');
  await expect(form.getByLabel('output tokens (median)')).toHaveValue('12');
  await expect.poll(() => numAttr(page, 'request-table', 'data-count'), { timeout: 90_000 }).toBe(5);
  await expect(page).toHaveURL(/[?&]w=1/);
  await expect(page).toHaveURL(/wn=5/);
  await expect(page).toHaveURL(/seqs=8/);
  // Running another workload from the form updates the link; out-of-range values are clamped.
  await form.getByLabel('requests').fill('6');
  await form.getByLabel('output tokens (median)').fill('9999');
  await page.getByTestId('workload-run').click();
  await expect(page).toHaveURL(/wn=6/);
  await expect(page).toHaveURL(/wo=480/);
  await expect(form.getByLabel('output tokens (median)')).toHaveValue('480');
  // A scenario replaces the custom workload in the link.
  await page.keyboard.press('2');
  await expect(page).toHaveURL(/scenario=short-vs-long/);
  await expect(page).not.toHaveURL(/wn=/);

  // Compare mode: side B edited to reject its victims (recompute vs reject), from the link.
  await page.goto('/?view=compare&scenario=kv-exhausted&b.preempt=abort');
  const a = page.getByTestId('compare-a');
  const b = page.getByTestId('compare-b');
  await expect(b).toContainText('swap, edited: preemption abort');
  await expect(a.locator('h2')).toHaveText(/^A\s*recompute$/);
  await expect(b.getByTestId('compare-b-preemption')).toHaveValue('abort');
  await expect(a.getByTestId('compare-a-preemption')).toHaveValue('recompute');
  await expect.poll(async () => Number(await b.getAttribute('data-step')), { timeout: 90_000 }).toBeGreaterThan(3);
  await shoot(page, testInfo, 'compare-edited-link');
  // Editing side A changes the link too.
  await a.locator('summary').click();
  await a.getByTestId('compare-a-preemption').selectOption('swap');
  await a.getByTestId('compare-a-controls').getByRole('button', { name: /apply/i }).click();
  await expect(page).toHaveURL(/a\.preempt=swap/);
  await expect(page).toHaveURL(/b\.preempt=abort/);
  expect(errors).toEqual([]);
});
