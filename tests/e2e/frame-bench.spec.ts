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

  const measure = (durationMs: number) =>
    page.evaluate(
      (ms) =>
        new Promise<{ frameMs: number[]; longTasks: number; mainThreadBusyMs: number }>((resolve) => {
          const frameMs: number[] = [];
          let longTasks = 0;
          let mainThreadBusyMs = 0;
          const obs = new PerformanceObserver((list) => {
            for (const e of list.getEntries()) {
              longTasks++;
              mainThreadBusyMs += e.duration;
            }
          });
          try {
            obs.observe({ type: 'longtask', buffered: false });
          } catch {
            /* not supported */
          }
          let last = performance.now();
          const end = last + ms;
          const tick = (now: number) => {
            frameMs.push(now - last);
            last = now;
            if (now < end) requestAnimationFrame(tick);
            else {
              obs.disconnect();
              resolve({ frameMs, longTasks, mainThreadBusyMs });
            }
          };
          requestAnimationFrame(tick);
        }),
      durationMs,
    );
  const stats = (r: { frameMs: number[]; longTasks: number; mainThreadBusyMs: number }, seconds: number) => {
    const sorted = [...r.frameMs.slice(1)].sort((a, b) => a - b);
    const q = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * (sorted.length - 1)))];
    return { numFrames: sorted.length, fps: sorted.length / seconds, p50Ms: q(50), p95Ms: q(95), p99Ms: q(99), maxMs: sorted[sorted.length - 1], longTasks: r.longTasks, longTaskMs: Math.round(r.mainThreadBusyMs) };
  };
  const result = await measure(8000);
  const running = await page.getByTestId('latency-panel').locator('[data-gauge="running"] .g-value').innerText();
  // How far the frame governor spaced the views' updates (0: every frame).
  const viewUpdateIntervalMs = Number(await page.getByTestId('view-refresh').getAttribute('data-interval-ms'));
  // Baseline on the same page: the engine paused, the views still mounted and hoverable.
  await page.getByTestId('play-pause').click();
  await expect(page.getByTestId('play-pause')).toHaveAttribute('aria-pressed', 'false');
  await page.waitForTimeout(500);
  const paused = await measure(3000);
  const summary = {
    machine: 'this 2-core box: Chromium + SwiftShader WebGPU (software GPU shared by WebGPU compute and compositing)',
    running: { ...stats(result, 8), liveRequests: Number(running), viewUpdateIntervalMs },
    enginePaused: stats(paused, 3),
  };
  mkdirSync('test-results/benchmark', { recursive: true });
  writeFileSync('test-results/benchmark/frame-times.json', JSON.stringify(summary, null, 2));
  await testInfo.attach('frame-times', { body: JSON.stringify(summary, null, 2), contentType: 'application/json' });
  console.log(`frame-time benchmark: ${JSON.stringify(summary)}`);
  await page.screenshot({ path: 'test-results/screenshots/bench-64-requests.png' });
  expect(summary.running.numFrames).toBeGreaterThan(0);
  expect(errors).toEqual([]);
});
