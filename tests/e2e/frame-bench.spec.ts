/**
 * A benchmark, not a timed test: frame times on the main thread while the real engine serves 64
 * live requests and the views animate. Writes test-results/benchmark/frame-times.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { expect, test } from '@playwright/test';
import { captureErrors, waitForModel } from './helpers.ts';

test('frame times with 64 live requests (benchmark)', async ({ page }, testInfo) => {
  test.setTimeout(240_000);
  const errors = captureErrors(page);
  // 64 sequences per step, memory for all of them, a 1024-token budget.
  await page.goto('/?gpu=320&seqs=64&budget=1024&cpu=0');
  await waitForModel(page);
  await page.getByTestId('run-label').waitFor();
  const form = page.getByTestId('workload-controls');
  await page.getByText('Workload', { exact: true }).click();
  await form.getByLabel('requests').fill('64');
  await form.getByLabel('burstiness').fill('0');
  await form.getByLabel('prompt tokens (median)').fill('16');
  await form.getByLabel('output tokens (median)').fill('160');
  await form.getByLabel('length spread').fill('0');
  await page.getByTestId('workload-run').click();
  await expect(page.getByTestId('run-label')).toContainText('Custom workload');
  // Wait until all 64 run at once.
  await expect(page.getByTestId('latency-panel').locator('[data-gauge="running"] .g-value')).toHaveText('64', { timeout: 120_000 });

  const result = await page.evaluate(
    () =>
      new Promise<{ frameMs: number[]; longTasks: number }>((resolve) => {
        const frameMs: number[] = [];
        let longTasks = 0;
        const obs = new PerformanceObserver((list) => (longTasks += list.getEntries().length));
        try {
          obs.observe({ type: 'longtask', buffered: false });
        } catch {
          /* not supported */
        }
        let last = performance.now();
        const end = last + 5000;
        const tick = (now: number) => {
          frameMs.push(now - last);
          last = now;
          if (now < end) requestAnimationFrame(tick);
          else {
            obs.disconnect();
            resolve({ frameMs, longTasks });
          }
        };
        requestAnimationFrame(tick);
      }),
  );
  const running = await page.getByTestId('latency-panel').locator('[data-gauge="running"] .g-value').innerText();
  const sorted = [...result.frameMs.slice(1)].sort((a, b) => a - b);
  const q = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * (sorted.length - 1)))];
  const summary = {
    machine: 'this box: Chromium + SwiftShader WebGPU',
    numFrames: sorted.length,
    fps: sorted.length / 5,
    p50Ms: q(50),
    p95Ms: q(95),
    p99Ms: q(99),
    maxMs: sorted[sorted.length - 1],
    longTasks: result.longTasks,
    runningAtEnd: Number(running),
  };
  mkdirSync('test-results/benchmark', { recursive: true });
  writeFileSync('test-results/benchmark/frame-times.json', JSON.stringify(summary, null, 2));
  await testInfo.attach('frame-times', { body: JSON.stringify(summary, null, 2), contentType: 'application/json' });
  console.log(`frame-time benchmark: ${JSON.stringify(summary)}`);
  await page.screenshot({ path: 'test-results/screenshots/bench-64-requests.png' });
  expect(summary.numFrames).toBeGreaterThan(0);
  expect(errors).toEqual([]);
});
