/**
 * Structured output from the UI: the prompt box sends a JSON-schema request (XGrammar compiles it
 * in the worker) and shows the answer as validated, pretty-printed JSON; a schema that is not
 * JSON is flagged before sending, one the worker refuses comes back with the reason; the
 * "Structured output" scenario runs constrained and free requests in one batch, with the token
 * masks in the step inspector and the mask cost in the request detail.
 */
import { expect, test, type Page } from '@playwright/test';
import { captureErrors, shoot, waitForAttrAbove, waitForModel } from './helpers.ts';

async function sendAndWait(page: Page): Promise<void> {
  await page.getByTestId('prompt-send').click();
  await expect(page.getByTestId('prompt-output')).toHaveAttribute('data-status', /^(done|error)$/, { timeout: 120_000 });
}

test('a JSON-schema request from the prompt box comes back as valid, pretty-printed JSON', async ({ page }, testInfo) => {
  const errors = captureErrors(page);
  await page.goto('/?scenario=parallel-sampling');
  await waitForModel(page);
  // Just the prompt: stop the scenario's traffic from crowding the screenshots.
  await page.keyboard.press('0');
  const box = page.getByTestId('prompt-box');
  await page.getByTestId('prompt-input').fill('Lily');
  await page.getByTestId('prompt-format').selectOption('json_schema');
  const schema = page.getByTestId('prompt-schema');
  await expect(schema).toHaveValue(/"required"/);

  // Not JSON: said at once, Send is off.
  const good = await schema.inputValue();
  await schema.fill('{"type": "object", ');
  await expect(page.getByTestId('prompt-schema-error')).toContainText('The schema is not JSON');
  await expect(page.getByTestId('prompt-send')).toBeDisabled();
  await expect(schema).toHaveAttribute('aria-invalid', 'true');
  await shoot(page, testInfo, 'structured-schema-not-json');
  // JSON but not a schema the grammar engine takes: the worker refuses it with the reason.
  await schema.fill('{"type": "object", "properties": {"age": {"type": "integer", "minimum": 9, "maximum": 2}}}');
  await expect(page.getByTestId('prompt-send')).toBeEnabled();
  await sendAndWait(page);
  await expect(page.getByTestId('prompt-output')).toHaveAttribute('data-status', 'error');
  await expect(page.getByTestId('prompt-message')).toContainText('minimum 9 is greater than maximum 2');
  await shoot(page, testInfo, 'structured-schema-refused');

  await schema.fill(good);
  await box.getByLabel('max tokens').fill('96');
  await box.getByLabel('temperature').fill('0.7');
  await sendAndWait(page);
  await expect(page.getByTestId('prompt-output')).toHaveAttribute('data-status', 'done');
  const json = page.getByTestId('prompt-json');
  await expect(json).toHaveAttribute('data-json-status', 'valid');
  await expect(json).toContainText('valid JSON, matches its schema');
  const pretty = await page.getByTestId('prompt-json-pretty').innerText();
  const value = JSON.parse(pretty) as { name: unknown; age: unknown; pet: unknown };
  expect(typeof value.name === 'string' && value.name.length <= 12).toBe(true);
  expect(Number.isInteger(value.age) && (value.age as number) >= 1 && (value.age as number) <= 12).toBe(true);
  expect(['cat', 'dog', 'bird']).toContain(value.pet);
  expect(pretty).toContain('\n  "'); // pretty-printed
  await box.scrollIntoViewIfNeeded();
  await shoot(page, testInfo, 'structured-prompt-1280');
  // On a phone the prompt box sits in the Controls drawer.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.getByTestId('sidebar-toggle').click();
  await page.getByTestId('prompt-schema').scrollIntoViewIfNeeded();
  await shoot(page, testInfo, 'structured-prompt-390');
  await page.getByTestId('prompt-json').scrollIntoViewIfNeeded();
  await shoot(page, testInfo, 'structured-prompt-390-json');
  expect(errors).toEqual([]);
});

test('the Structured output scenario: masks in the inspector, validated JSON and mask cost in the detail', async ({ page }, testInfo) => {
  const errors = captureErrors(page);
  await page.goto('/?scenario=structured-output');
  await waitForModel(page);
  await expect(page.getByTestId('scenario-text')).toContainText('token masks');
  const table = page.getByTestId('request-table');
  // A finished JSON request, beside free ones.
  const finishedJson = table.locator('tr[data-state="finished"][data-format="json_schema"]').first();
  await expect(finishedJson).toBeVisible({ timeout: 150_000 });
  await expect(table.locator('tr[data-format=""]').first()).toBeVisible();
  await finishedJson.click();
  const detail = page.getByTestId('request-detail');
  await expect(detail.getByTestId('detail-format')).toContainText('JSON schema "character"');
  await expect(detail.getByTestId('detail-mask-cost')).toContainText(/\d\.\d{3} ms per token/);
  await expect(detail.getByTestId('detail-mask-allowed')).toContainText('of the vocabulary on average');
  const check = detail.getByTestId('detail-json').first();
  await expect(check).toHaveAttribute('data-json-status', /^(valid|incomplete)$/);
  if ((await check.getAttribute('data-json-status')) === 'valid') await expect(check.locator('pre')).toContainText('"mood"');
  // The inspector: step back from the latest step to one that applied masks (the JSON request
  // above decoded in several), and read them.
  await waitForAttrAbove(page, 'slot-timeline', 'data-columns', 12);
  const masks = page.getByTestId('step-masks');
  for (let i = 0; i < 400 && !(await masks.isVisible()); i++) await page.getByTestId('inspector-prev').click();
  await expect(masks).toContainText('of the vocabulary allowed');
  await expect(masks).toContainText(/\d\.\d{3} ms on the CPU/);
  await expect(page.getByTestId('step-mask').first()).toContainText(/masked: .*% allowed, \d\.\d{3} ms/);
  await shoot(page, testInfo, 'structured-scenario-1280');
  await page.setViewportSize({ width: 390, height: 844 });
  await page.getByTestId('request-detail').scrollIntoViewIfNeeded();
  await shoot(page, testInfo, 'structured-scenario-390');
  expect(errors).toEqual([]);
});

test("the Structured output scenario's tour finds its moments on the real model", async ({ page }, testInfo) => {
  test.setTimeout(300_000);
  const errors = captureErrors(page);
  await page.goto('/?scenario=structured-output');
  await waitForModel(page);
  await page.getByTestId('tour-start').click();
  const tour = page.getByTestId('tour');
  const seen: string[] = [];
  for (let k = 0; k < 6; k++) {
    await expect(tour).toHaveAttribute('data-index', String(k), { timeout: 240_000 });
    await expect(tour).toHaveAttribute('data-seeking', 'false');
    const moment = (await tour.getAttribute('data-moment')) ?? '';
    seen.push(moment);
    await expect(page.getByTestId('tour-text')).toContainText(/\d/);
    if (moment !== 'summary') await shoot(page, testInfo, `structured-tour-${k + 1}-${moment}`);
    await page.keyboard.press('ArrowRight');
    if (moment === 'summary') break;
  }
  expect(seen).toEqual(['first-mask', 'mixed-batch', 'json-done', 'summary']);
  expect(errors).toEqual([]);
});
