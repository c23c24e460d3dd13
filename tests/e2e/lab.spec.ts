import { expect, test } from '@playwright/test';
import { captureErrors, numAttr, shoot, waitForAttrAbove, waitForModel } from './helpers.ts';

test.describe('the live lab on the real model', () => {
  test('a scenario runs: the KV grid, the slot timeline and the percentiles change over time', async ({ page }, testInfo) => {
    const errors = captureErrors(page);
    await page.goto('/?scenario=short-vs-long');
    // From the start, record each distinct TTFT row the latency panel shows.
    await page.evaluate(() => {
      const seen = new Set<string>();
      (window as unknown as { __ttftSeen: Set<string> }).__ttftSeen = seen;
      setInterval(() => {
        const t = document.querySelector('[data-testid="latency-panel"] tr[data-metric="ttft"]')?.textContent ?? '';
        if (/\d/.test(t)) seen.add(t);
      }, 30);
    });
    await waitForModel(page);
    await expect(page.getByTestId('run-label')).toContainText('8 vs 400 output tokens');

    // The grid fills with blocks and the timeline gains steps as the engine runs.
    await waitForAttrAbove(page, 'kv-grid', 'data-used-blocks', 0);
    const stepsEarly = await waitForAttrAbove(page, 'slot-timeline', 'data-columns', 2);
    const gridStepEarly = await numAttr(page, 'kv-grid', 'data-step');
    await waitForAttrAbove(page, 'slot-timeline', 'data-columns', stepsEarly + 5);
    await waitForAttrAbove(page, 'kv-grid', 'data-step', gridStepEarly);
    // Hovering a block names it: owner, logical index, token range, hash (or that it is free).
    await page.getByTestId('kv-grid').locator('canvas.overlay').first().hover({ position: { x: 6, y: 6 } });
    await expect(page.getByTestId('kv-grid').getByRole('tooltip')).toContainText('GPU block 0');

    // Percentiles appear once requests finish, and move as more finish: the page has recorded
    // every TTFT row it showed since load (several finishes may land in one update).
    await waitForAttrAbove(page, 'latency-panel', 'data-finished', 0);
    await expect.poll(() => page.evaluate(() => (window as unknown as { __ttftSeen: Set<string> }).__ttftSeen.size), { timeout: 90_000 }).toBeGreaterThanOrEqual(2);

    // The request table streams the real model's text; clicking a request shows its spans.
    await expect(page.getByTestId('request-table').locator('tr[data-state="finished"]').first()).toBeVisible();
    const firstText = page.getByTestId('request-table').locator('tr[data-state="finished"] [data-testid="request-text"]').first();
    await expect(firstText).not.toBeEmpty();
    await page.getByTestId('request-table').locator('tr[data-state="finished"]').first().click();
    const detail = page.getByTestId('request-detail');
    await expect(detail).toContainText('queued');
    await expect(detail).toContainText('prefill');
    await expect(detail).toContainText('decode');
    await shoot(page, testInfo, 'lab-running');
    expect(errors).toEqual([]);
  });

  test('a typed prompt streams text, rendered as text', async ({ page }) => {
    const errors = captureErrors(page);
    await page.goto('/?scenario=parallel-sampling');
    await waitForModel(page);
    const prompt = 'Once upon a time <b>Tom</b> & his dog';
    await page.getByTestId('prompt-input').fill(prompt);
    await page.getByTestId('prompt-box').getByLabel('max tokens').fill('48');
    await page.getByTestId('prompt-send').click();
    const out = page.getByTestId('prompt-output');
    await expect(out).toBeVisible();
    // Text arrives in pieces while the request runs, then the request finishes.
    const lengths: number[] = [];
    await expect
      .poll(
        async () => {
          lengths.push((await out.innerText()).length);
          return out.getAttribute('data-status');
        },
        { timeout: 90_000, intervals: [100] },
      )
      .toBe('done');
    expect(new Set(lengths).size).toBeGreaterThan(2);
    const text = await out.innerText();
    expect(text).toContain(prompt);
    expect(text.length).toBeGreaterThan(prompt.length + 20);
    // Markup in the prompt stays text: no <b> element was created.
    await expect(out.locator('b')).toHaveCount(0);
    expect(errors).toEqual([]);
  });

  test('a prompt sent while the engine is still starting is answered in the first run, ahead of its requests', async ({ page }, testInfo) => {
    const errors = captureErrors(page);
    // The model's download is held until the prompt has been sent, so the engine is surely still
    // starting when it is.
    let sent!: () => void;
    const promptSent = new Promise<void>((resolve) => (sent = resolve));
    await page.context().route('**/models/stories260K.bin', async (route) => {
      await promptSent;
      await route.continue();
    });
    await page.goto('/?scenario=short-vs-long');
    // The start-up card says what is happening; Send works already.
    await expect(page.getByTestId('startup')).toContainText('Starting the engine');
    await expect(page.getByTestId('startup')).toContainText('downloading stories260K');
    await shoot(page, testInfo, 'lab-starting');
    await page.getByTestId('prompt-input').fill('Once upon a time');
    await page.getByTestId('prompt-box').getByLabel('max tokens').fill('12');
    await page.getByTestId('prompt-send').click();
    await expect(page.getByTestId('prompt-where')).toContainText('waiting for the model to load');
    sent();
    const out = page.getByTestId('prompt-output');
    // Not ended by the first run's engine restart: it streams and finishes.
    await expect(out).toHaveAttribute('data-status', 'done', { timeout: 90_000 });
    await expect(out.locator('.gen')).not.toBeEmpty();
    await expect(page.getByTestId('startup')).toHaveCount(0);
    // It went into the run's engine before the scenario's own requests: the first request id.
    const id = await out.getAttribute('data-request-id');
    expect(id).toBe('r1');
    await expect(page.getByTestId('run-label')).toContainText('8 vs 400 output tokens');
    expect(errors).toEqual([]);
  });

  test('compare mode runs two engines side by side on the same workload', async ({ page }, testInfo) => {
    const errors = captureErrors(page);
    await page.goto('/?view=compare&scenario=static-vs-continuous');
    const a = page.getByTestId('compare-a');
    const b = page.getByTestId('compare-b');
    await expect(a).toContainText('static');
    await expect(b).toContainText('continuous');
    await expect(a.getByTestId('slot-timeline')).toContainText('static batching');
    await expect(b.getByTestId('slot-timeline')).toContainText('continuous batching');
    await expect.poll(async () => Number(await a.getAttribute('data-step')), { timeout: 90_000 }).toBeGreaterThan(5);
    await expect.poll(async () => Number(await b.getAttribute('data-step')), { timeout: 90_000 }).toBeGreaterThan(5);
    await expect.poll(async () => Number(await b.getByTestId('latency-panel').getAttribute('data-finished')), { timeout: 90_000 }).toBeGreaterThan(0);
    await shoot(page, testInfo, 'compare');
    // Back in the lab the scenario runs on one engine again.
    await page.getByTestId('tab-lab').click();
    await expect(page.getByTestId('compare-view')).toHaveCount(0);
    await expect(page.getByTestId('run-label')).toContainText('Static vs continuous batching');
    await waitForAttrAbove(page, 'slot-timeline', 'data-columns', 3);
    expect(errors).toEqual([]);
  });

  test('a killed lab worker is restarted, and every request it held is reported', async ({ page }, testInfo) => {
    const errors = captureErrors(page);
    await page.goto('/?scenario=traffic-spike');
    await waitForModel(page);
    await waitForAttrAbove(page, 'slot-timeline', 'data-columns', 3);
    // A prompt of our own in flight too: its stream must hear how it ended.
    await page.getByTestId('prompt-box').getByLabel('max tokens').fill('400');
    await page.getByTestId('prompt-send').click();
    const out = page.getByTestId('prompt-output');
    await expect.poll(async () => (await out.innerText()).length, { timeout: 90_000 }).toBeGreaterThan(0);
    // Kill the engine worker from inside, as a crash would: the page gets no word of it, so the
    // supervisor must notice the silence, fail what the worker held and start a new one.
    const engineWorkers = page.workers().filter((w) => /engine/.test(w.url()));
    expect(engineWorkers).toHaveLength(1);
    await engineWorkers[0].evaluate(() => setTimeout(() => (self as unknown as { close(): void }).close(), 0));
    const crash = page.getByTestId('lab-crash');
    await expect(crash).toBeVisible({ timeout: 60_000 });
    await expect(crash).toContainText('engine worker 1 stopped answering');
    const total = Number(await crash.getAttribute('data-total'));
    const failed = Number(await crash.getAttribute('data-failed'));
    const finished = Number(await crash.getAttribute('data-finished'));
    const rejected = Number(await crash.getAttribute('data-rejected'));
    // At least our prompt was in flight; every request ended one way, and the counts add up.
    expect(failed).toBeGreaterThan(0);
    expect(failed + finished + rejected).toBe(total);
    // Every request is accounted for: each ended one way, none still "running".
    const states = await crash.getByTestId('lab-crash-request').evaluateAll((lis) => lis.map((li) => li.getAttribute('data-state')));
    expect(states).toHaveLength(total);
    expect(states.every((st) => st === 'finished' || st === 'failed' || st === 'rejected')).toBe(true);
    expect(states.filter((st) => st === 'finished')).toHaveLength(finished);
    await expect(out).toHaveAttribute('data-status', 'error');
    await expect(page.getByTestId('prompt-box')).toContainText('died with the request in flight');
    await shoot(page, testInfo, 'lab-worker-crash');
    // The lab goes on with a new worker: a scenario runs again.
    await expect.poll(() => page.workers().filter((w) => /engine/.test(w.url())).length, { timeout: 60_000 }).toBe(1);
    await waitForModel(page);
    await page.getByTestId('restart').click();
    await waitForAttrAbove(page, 'slot-timeline', 'data-columns', 3);
    await expect(crash).toHaveCount(0);
    expect(errors).toEqual([]);
  });
});
