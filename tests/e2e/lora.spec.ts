/** LoRA in the lab: the per-customer scenario (slots load and evict, visible in the strip), and your own PEFT adapter from files. */
import { readFileSync } from 'node:fs';
import { expect, test } from '@playwright/test';
import { captureErrors, shoot, waitForAttrAbove, waitForModel } from './helpers.ts';

test('the LoRA scenario: adapters share batches with the base model; two slots load and evict', async ({ page }, testInfo) => {
  test.setTimeout(240_000);
  const errors = captureErrors(page);
  await page.goto('/?scenario=lora-tenants');
  await waitForModel(page);
  await expect(page.getByTestId('scenario-lora-tenants')).toHaveAttribute('aria-pressed', 'true');
  const strip = page.getByTestId('lora-strip');
  await expect(strip).toBeVisible();
  await expect(page.getByTestId('lora-slot')).toHaveCount(2);
  await waitForAttrAbove(page, 'lora-strip', 'data-evictions', 0, 180_000);
  await waitForAttrAbove(page, 'slot-timeline', 'data-columns', 12);
  await shoot(page, testInfo, 'lora-scenario');
  expect(errors).toEqual([]);
});

test('your own PEFT adapter from files: loaded, chosen, and its effect in your prompt', async ({ page }, testInfo) => {
  test.setTimeout(180_000);
  const errors = captureErrors(page);
  await page.goto('/');
  await waitForModel(page);
  const panel = page.getByTestId('adapter-controls');
  await page.getByRole('heading', { name: 'LoRA adapters', exact: true }).click();
  await panel.getByLabel('name').fill('my-tom');
  await page.getByTestId('adapter-config-file').setInputFiles({ name: 'adapter_config.json', mimeType: 'application/json', buffer: readFileSync('public/adapters/tom/adapter_config.json') });
  await page.getByTestId('adapter-weights-file').setInputFiles({ name: 'adapter_model.safetensors', mimeType: 'application/octet-stream', buffer: readFileSync('public/adapters/tom/adapter_model.safetensors') });
  await panel.getByRole('button', { name: 'Load adapter' }).click();
  await expect(page.getByTestId('adapter-message')).toContainText('loaded my-tom: rank 4, scale 2');
  await expect(page.getByTestId('adapter-select')).toHaveValue('my-tom');
  await page.getByTestId('prompt-input').fill('Once upon a time');
  await page.getByTestId('prompt-box').getByLabel('max tokens').fill('24');
  await page.getByTestId('prompt-send').click();
  const out = page.getByTestId('prompt-output');
  await expect(out).toHaveAttribute('data-status', 'done', { timeout: 120_000 });
  await expect(out).toContainText('named Tom');
  await expect(page.getByTestId('lora-strip')).toContainText('my-tom');
  await shoot(page, testInfo, 'lora-own-adapter');
  // A broken file: a clear error, nothing loaded.
  await panel.getByLabel('name').fill('broken');
  await page.getByTestId('adapter-weights-file').setInputFiles({ name: 'adapter_model.safetensors', mimeType: 'application/octet-stream', buffer: Buffer.from([1, 2, 3]) });
  await panel.getByRole('button', { name: 'Load adapter' }).click();
  await expect(page.getByTestId('adapter-message')).toContainText('fewer than the 8-byte header length');
  // The engine worker crashes: the new one gets the user's adapter again and serves it.
  await page.getByTestId('manage-open').click();
  await expect(page.getByTestId('manage-status')).toHaveAttribute('data-phase', 'ready', { timeout: 90_000 });
  await page.getByTestId('fault-worker').click();
  await expect(page.getByTestId('manage-status')).toHaveAttribute('data-generation', '2', { timeout: 60_000 });
  await expect(page.getByTestId('manage-status')).toHaveAttribute('data-phase', 'ready', { timeout: 60_000 });
  await expect(page.getByTestId('fault-journal')).toContainText('adapter my-tom loaded again');
  await page.getByTestId('manage-close').click();
  await page.getByTestId('adapter-select').selectOption('my-tom');
  await page.getByTestId('prompt-send').click();
  await expect(out).toHaveAttribute('data-status', 'done', { timeout: 120_000 });
  await expect(out).toContainText('named Tom');
  expect(errors).toEqual([]);
});
