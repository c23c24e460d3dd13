/**
 * Quantized weights in the lab (issue 14): the "Quantize to fit more users" scenario compares
 * f32 and Q4_0 weights in one memory budget on the real model (the Q4_0 side gets more KV blocks
 * and runs more sequences at once), the model card shows weight and KV bytes, and the KV
 * calculator shows weights vs KV memory for f32, Q8_0 and Q4_0. Screenshots at 1280x720.
 */
import { expect, test } from '@playwright/test';
import { captureErrors, shoot, waitForAttrAbove, waitForModel } from './helpers.ts';

test('quantize to fit more users: f32 vs Q4_0 in one budget, side by side', async ({ page }, testInfo) => {
  test.setTimeout(300_000);
  const errors = captureErrors(page);
  await page.goto('/?view=compare&scenario=quantize-to-fit');
  const a = page.getByTestId('compare-a');
  const b = page.getByTestId('compare-b');
  await expect(a).toContainText('f32 weights, 26 KV blocks');
  await expect(b).toContainText('Q4_0 weights, 60 KV blocks');
  await expect(page.getByTestId('compare-diff')).toContainText('weights: F32 | Q4_0');
  await expect(page.getByTestId('compare-diff')).toContainText('GPU blocks: 26 | 60');
  await expect(a.locator('summary')).toContainText('F32 weights');
  await expect(b.locator('summary')).toContainText('Q4_0 weights');
  // Each worker runs its own model: f32 as loaded, and Q4_0 quantized on load.
  await expect(a).toHaveAttribute('data-weights', 'f32', { timeout: 90_000 });
  await expect(b).toHaveAttribute('data-weights', 'q4_0', { timeout: 90_000 });
  await expect(a).toHaveAttribute('data-weight-bytes', '1040128');
  await expect(b).toHaveAttribute('data-weight-bytes', '337888');
  // Both engines run; the Q4_0 side holds more sequences at once once memory is the limit.
  let maxA = 0;
  let maxB = 0;
  await expect
    .poll(
      async () => {
        maxA = Math.max(maxA, Number(await a.getAttribute('data-running')));
        maxB = Math.max(maxB, Number(await b.getAttribute('data-running')));
        return maxB > maxA && maxB >= 4;
      },
      { timeout: 150_000, intervals: [250] },
    )
    .toBe(true);
  testInfo.annotations.push({ type: 'running', description: `most sequences seen at once: f32 ${maxA}, Q4_0 ${maxB}` });
  await shoot(page, testInfo, 'quant-compare');
  expect(errors).toEqual([]);
});

test('the lab runs the scenario on Q4_0 weights; the model card says so', async ({ page }, testInfo) => {
  const errors = captureErrors(page);
  await page.goto('/?scenario=quantize-to-fit');
  await waitForModel(page);
  await expect(page.getByTestId('scenario-text')).toContainText('1.5 MiB');
  await expect(page.getByTestId('model-weights')).toContainText('Q4_0', { timeout: 60_000 });
  await expect(page.getByTestId('model-kv')).toContainText('60 blocks');
  await waitForAttrAbove(page, 'slot-timeline', 'data-columns', 8);
  await shoot(page, testInfo, 'quant-lab');
  expect(errors).toEqual([]);
});

test('the KV calculator shows weights vs KV memory for f32, Q8_0 and Q4_0', async ({ page }, testInfo) => {
  await page.goto('/?view=calculator');
  const card = page.getByTestId('calc-weights-vs-kv');
  await card.scrollIntoViewIfNeeded();
  for (const t of ['f32', 'q8_0', 'q4_0']) await expect(page.getByTestId(`calc-weights-${t}`)).toBeVisible();
  const tokens = async (t: string) => Number(((await page.getByTestId(`calc-weights-${t}`).locator('td').nth(4).textContent()) ?? '').replace(/,/g, ''));
  expect(await tokens('q4_0')).toBeGreaterThan(await tokens('q8_0'));
  expect(await tokens('q8_0')).toBeGreaterThan(await tokens('f32'));
  await expect(page.getByTestId('calc-lab-f32')).toContainText('26');
  await expect(page.getByTestId('calc-lab-q8_0')).toContainText('55');
  await expect(page.getByTestId('calc-lab-q4_0')).toContainText('60');
  await shoot(page, testInfo, 'quant-calculator');
});
