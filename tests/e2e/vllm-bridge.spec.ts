/**
 * The bridge to real vLLM on the built site: the lab's workload downloaded as `vllm bench serve`'s
 * custom dataset with its command line, and a results file of that benchmark (the constructed
 * fixture, tests/fixtures/vllm-bench-serve-result.json) imported, so the latency panel shows vLLM's
 * TTFT / TPOT / ITL / E2E beside the lab's; a wrong file is refused with its reason. Screenshots of
 * where the export and import live and of the comparison, on a laptop and on a phone.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { expect, test, type Page, type TestInfo } from '@playwright/test';
import { captureErrors, shoot, waitForModel } from './helpers.ts';

const fixture = resolve(import.meta.dirname, '../fixtures/vllm-bench-serve-result.json');

async function openManage(page: Page): Promise<void> {
  // A narrow screen keeps the header's items in a menu.
  if (!(await page.getByTestId('manage-open').isVisible())) await page.getByTestId('header-menu').click();
  await page.getByTestId('manage-open').click();
  await expect(page.getByTestId('manage-panel')).toBeVisible();
  await expect(page.getByTestId('manage-status')).toHaveAttribute('data-phase', 'ready', { timeout: 90_000 });
}

async function exportAndImport(page: Page, testInfo: TestInfo, size: string): Promise<void> {
  const errors = captureErrors(page);
  // Prefix caching: 24 requests, most of them sharing a system prompt.
  await page.goto('/?scenario=prefix-caching');
  await waitForModel(page);
  await openManage(page);

  await page.getByTestId('vllm-model').fill('meta-llama/Llama-2-7b-hf');
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId('export-vllm').click()]);
  const fileName = download.suggestedFilename();
  expect(fileName).toMatch(/^servelab-4\._[\w.-]+[^_]\.jsonl$/);
  const lines = readFileSync((await download.path())!, 'utf8').trimEnd().split('\n');
  expect(lines).toHaveLength(24);
  for (const l of lines) {
    const row = JSON.parse(l) as Record<string, unknown>;
    expect(Object.keys(row)).toEqual(['prompt', 'output_tokens']);
    expect(typeof row.prompt === 'string' && row.prompt.length > 0).toBe(true);
    expect(Number.isInteger(row.output_tokens)).toBe(true);
  }
  // Most prompts start with the same system prompt text.
  const starts = new Map<string, number>();
  for (const l of lines) {
    const start = (JSON.parse(l) as { prompt: string }).prompt.slice(0, 60);
    starts.set(start, (starts.get(start) ?? 0) + 1);
  }
  expect(Math.max(...starts.values())).toBeGreaterThan(lines.length / 3);

  const command = page.getByTestId('vllm-command');
  await expect(command).toContainText('vllm bench serve');
  await expect(command).toContainText(`--dataset-name custom --dataset-path ${fileName}`);
  await expect(command).toContainText('--model meta-llama/Llama-2-7b-hf');
  await expect(command).toContainText('--num-prompts 24');
  await expect(command).toContainText('--ignore-eos');
  const [note] = await Promise.all([page.waitForEvent('download'), page.getByTestId('export-vllm-note').click()]);
  const md = readFileSync((await note.path())!, 'utf8');
  expect(md).toContain('vllm serve "$MODEL"');
  expect(md).toContain((await command.textContent())!.trim());

  await page.getByTestId('import-vllm').setInputFiles(fixture);
  await expect(page.getByTestId('vllm-imported')).toContainText('meta-llama/Llama-2-7b-hf · 2026-12-01 09:15:12');
  await page.getByTestId('export-vllm').scrollIntoViewIfNeeded();
  await shoot(page, testInfo, `vllm-export-import-${size}`);
  await page.getByTestId('manage-close').click();

  const compare = page.getByTestId('vllm-compare');
  await expect(compare).toContainText('Lab vs vLLM');
  await expect(compare).toContainText('imported: meta-llama/Llama-2-7b-hf, 2026-12-01 09:15:12, 4 req/s');
  await expect(compare).toHaveAttribute('data-vllm-ttft-p50', '41.068');
  await expect(compare.locator('tr[data-metric="ttft"][data-source="vllm"]')).toContainText('41.1 ms');
  await expect(page.getByTestId('vllm-clocks')).toContainText('engine clock');
  await expect(page.getByTestId('vllm-clocks')).toContainText("client's wall clock");
  await compare.scrollIntoViewIfNeeded();
  await shoot(page, testInfo, `vllm-compare-${size}`);

  // Removed, the panel offers its own picker; a wrong file is refused with the reason, then the right one shows again.
  await page.getByTestId('vllm-clear').click();
  await page.getByTestId('latency-import-vllm').setInputFiles({ name: 'dataset.jsonl', mimeType: 'application/json', buffer: Buffer.from(lines.join('\n')) });
  await expect(page.getByTestId('vllm-error')).toContainText('dataset.jsonl: vllm bench serve results: this is a benchmark dataset');
  await page.getByTestId('latency-import-vllm').setInputFiles(fixture);
  await expect(compare).toContainText('Lab vs vLLM');
  await expect(page.getByTestId('vllm-error')).toHaveCount(0);
  expect(errors).toEqual([]);
}

test('export a workload for vllm bench serve and import its results beside the lab (1280x720)', async ({ page }, testInfo) => {
  await exportAndImport(page, testInfo, '1280x720');
});

test.describe('on a phone', () => {
  test.use({ viewport: { width: 390, height: 844 }, hasTouch: true });
  test('export a workload for vllm bench serve and import its results beside the lab (390x844)', async ({ page }, testInfo) => {
    await exportAndImport(page, testInfo, '390x844');
  });
});
