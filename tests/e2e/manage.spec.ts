/**
 * The manage panel on the built site: offline use, model loading failures, fault injection with
 * every request accounted for, saved runs that replay identically, and exports.
 *
 * The network: these machines cannot reach Hugging Face, so "models by URL" are files served by
 * the preview server (the built-in model under another URL), and failures are made with
 * Playwright's route interception standing in for a real server: a corrupt body (route.fulfill),
 * a 404 (route.fulfill with status 404) and a CORS/network failure (route.abort), which is what
 * fetch() reports for a cross-origin file the server does not allow.
 */
import { readFileSync } from 'node:fs';
import { expect, test, type Page } from '@playwright/test';
import { shoot } from './helpers.ts';

/**
 * The lab with no scenario (scenario=none: an empty engine for your prompts): the manage drawer
 * acts on the lab's engine, so it runs only what a test sends, and both CPU cores (the software
 * GPU) serve it. Prompts go through the lab's prompt box, the app's only one.
 */
const HOME = '/?scenario=none';

async function openManage(page: Page): Promise<void> {
  await page.getByTestId('manage-open').click();
  await expect(page.getByTestId('manage-panel')).toBeVisible();
  await expect(page.getByTestId('manage-status')).toHaveAttribute('data-phase', 'ready', { timeout: 90_000 });
}

async function generate(page: Page, prompt: string): Promise<string> {
  const box = page.getByTestId('prompt-box');
  await page.getByTestId('prompt-input').fill(prompt);
  await box.getByLabel('max tokens').fill('48');
  await page.getByTestId('prompt-send').click();
  const out = page.getByTestId('prompt-output');
  await expect(out).toHaveAttribute('data-status', 'done', { timeout: 60_000 });
  return (await out.locator('.gen').textContent()) ?? '';
}

/** Counts from the request table (read at once); they must always add up. */
async function ledger(page: Page) {
  const c = await page.getByTestId('ledger-counts').evaluate((el) => {
    const n = (a: string) => Number(el.getAttribute(`data-${a}`));
    return { total: n('total'), inFlight: n('inflight'), finished: n('finished'), failed: n('failed'), rejected: n('rejected') };
  });
  expect(c.finished + c.failed + c.rejected + c.inFlight).toBe(c.total);
  return c;
}

/** The most preemptions any request in the table went through. */
async function maxPreemptions(page: Page): Promise<number> {
  await expect.poll(async () => (await ledger(page)).inFlight).toBe(0);
  const values = await page.getByTestId('ledger-row').evaluateAll((rows) => rows.map((r) => Number(r.getAttribute('data-preemptions'))));
  return Math.max(0, ...values);
}

test('offline: after one visit the app reloads offline, generates, and loads a cached model', async ({ page, context }) => {
  await page.goto(HOME);
  await page.evaluate(async () => {
    await navigator.serviceWorker.ready;
  });
  await openManage(page);
  await expect(page.getByTestId('manage-model')).toHaveAttribute('data-model', 'stories260K');
  // "A model by URL": the built-in files under another URL (the preview server), cached on load.
  await page.getByTestId('model-url').fill('/models/stories260K.bin?copy=1');
  await page.getByTestId('tokenizer-url').fill('/models/tok512.bin?copy=1');
  await page.getByTestId('model-name').fill('copy260K');
  await page.getByTestId('model-url-load').click();
  await expect(page.getByTestId('manage-model')).toHaveAttribute('data-model', 'copy260K', { timeout: 60_000 });
  await expect(page.getByTestId('cached-model')).toHaveAttribute('data-name', 'copy260K');
  await expect(page.getByTestId('storage-quota')).toContainText('used of');

  await context.setOffline(true);
  await page.reload();
  await expect(page.getByRole('heading', { name: 'servelab' })).toBeVisible();
  await openManage(page);
  await expect(page.getByTestId('manage-model')).toHaveAttribute('data-model', 'stories260K');
  const text = await generate(page, 'Once upon a time');
  expect(text.length).toBeGreaterThan(10);
  // The downloaded copy comes from the model cache with no network.
  await page.getByTestId('cached-model').getByTestId('cached-load').click();
  await expect(page.getByTestId('manage-model')).toHaveAttribute('data-model', 'copy260K', { timeout: 60_000 });
  expect(await generate(page, 'Once upon a time')).toBe(text);
  await page.getByTestId('cached-model').getByTestId('cached-delete').click();
  await expect(page.getByTestId('cached-model')).toHaveCount(0);
  await context.setOffline(false);
});

test('a corrupt file, a 404 and a CORS failure each say why, and the previous model stays usable', async ({ page }) => {
  // Route stubs stand in for remote servers (see the header comment).
  await page.route('**/remote/corrupt.bin', (route) => route.fulfill({ status: 200, contentType: 'application/octet-stream', body: Buffer.alloc(5000, 7) }));
  await page.route('**/remote/missing.bin', (route) => route.fulfill({ status: 404, body: 'Not Found' }));
  await page.route('**/remote/cors.bin', (route) => route.abort('failed'));
  // A llama2.c header for a model far too large for any GPU buffer (a 4 GiB token embedding).
  const hugeHeader = Buffer.alloc(4096);
  [8192, 22016, 32, 64, 8, 128000, 4096].forEach((v, i) => hugeHeader.writeInt32LE(v, i * 4));
  let hugeBodyRequests = 0;
  await page.route('**/remote/huge.bin', (route) => {
    if (!route.request().headers()['range']) hugeBodyRequests++;
    return route.fulfill({ status: 206, contentType: 'application/octet-stream', body: hugeHeader });
  });
  await page.goto(HOME);
  await openManage(page);
  const error = page.getByTestId('model-manager-error');
  const tryUrl = async (path: string, expected: RegExp) => {
    await page.getByTestId('model-url').fill(path);
    await page.getByTestId('tokenizer-url').fill('/models/tok512.bin');
    await page.getByTestId('model-name').fill('');
    await page.getByTestId('model-url-load').click();
    await expect(error).toContainText(expected);
    await expect(error).toContainText('stories260K stays loaded');
    await expect(page.getByTestId('manage-model')).toHaveAttribute('data-model', 'stories260K');
  };
  await tryUrl('/remote/corrupt.bin', /could not load corrupt/);
  await tryUrl('/remote/missing.bin', /404/);
  await tryUrl('/remote/cors.bin', /offline, or the server does not allow cross-origin downloads/);
  // The memory check runs on the header before the download.
  await tryUrl('/remote/huge.bin', /does not fit this GPU: its token embedding needs a 4000 MiB buffer.*nothing was downloaded/);
  expect(hugeBodyRequests).toBe(0);
  // URLs are validated before anything is fetched.
  await page.getByTestId('model-url').fill('javascript:alert(1)');
  await page.getByTestId('model-url-load').click();
  await expect(error).toContainText('only http(s) URLs');
  // A corrupt local file (truncated checkpoint with its tokenizer).
  const bin = readFileSync('public/models/stories260K.bin');
  await page.getByTestId('model-files').setInputFiles([
    { name: 'truncated.bin', mimeType: 'application/octet-stream', buffer: bin.subarray(0, 300_000) },
    { name: 'tok512.bin', mimeType: 'application/octet-stream', buffer: readFileSync('public/models/tok512.bin') },
  ]);
  await expect(error).toContainText(/truncated/);
  await expect(page.getByTestId('cached-model')).toHaveCount(0);
  // The fault panel's corrupt model, then a check request on the model that stayed.
  await page.getByTestId('fault-corrupt').click();
  await expect(page.getByTestId('fault-journal').locator('[data-kind="fault"]').first()).toContainText('could not load corrupt.bin');
  await expect.poll(async () => (await ledger(page)).finished, { timeout: 60_000 }).toBe(1);
  expect((await generate(page, 'Tom had a ball.')).length).toBeGreaterThan(5);
  // User text is rendered as text, never as markup.
  await generate(page, '<img src=x onerror="document.title=1">Lily');
  await expect(page.getByTestId('prompt-output')).toContainText('<img src=x');
  await expect(page.getByTestId('prompt-output').locator('img')).toHaveCount(0);
  await expect(page.getByTestId('manage-panel').locator('img')).toHaveCount(0);
});

test('a lost GPU device and a crashed worker: every request is accounted for', async ({ page }) => {
  await page.goto(HOME);
  await openManage(page);
  await expect(page.getByTestId('manage-status')).toContainText('WebGPU');
  await page.getByTestId('fault-device').click();
  await expect(page.getByTestId('fault-journal').locator('[data-kind="recovery"]').first()).toContainText(/recovered from a lost GPU device/, { timeout: 60_000 });
  await expect.poll(async () => (await ledger(page)).inFlight, { timeout: 90_000 }).toBe(0);
  // Requeued and recomputed: all four finished, at least one after a preemption.
  expect(await ledger(page)).toMatchObject({ total: 4, finished: 4 });
  expect(await maxPreemptions(page)).toBeGreaterThan(0);
  await expect(page.getByTestId('manage-status')).toContainText('1 device losses');

  await page.getByTestId('fault-worker').click();
  await expect(page.getByTestId('manage-status')).toHaveAttribute('data-generation', '2', { timeout: 60_000 });
  await expect(page.getByTestId('manage-status')).toHaveAttribute('data-phase', 'ready', { timeout: 60_000 });
  const c = await ledger(page);
  expect(c.total).toBe(8);
  expect(c.inFlight).toBe(0);
  const crashed = page.locator('[data-testid="ledger-row"][data-reason="worker_crashed"]');
  expect(await crashed.count()).toBeGreaterThan(0);
  expect(c.failed).toBe(await crashed.count());
  await expect(page.getByTestId('fault-journal').locator('[data-kind="recovery"]').first()).toContainText('engine worker 2 started');
  // The new worker serves.
  expect((await generate(page, 'The dog barked.')).length).toBeGreaterThan(5);
});

test('KV exhaustion, a saved run replayed identically after a reload, and valid exports', async ({ page }) => {
  await page.goto(HOME);
  await openManage(page);
  await page.getByTestId('fault-kv').click();
  await expect.poll(async () => (await ledger(page)).total, { timeout: 30_000 }).toBe(5);
  await expect.poll(async () => (await ledger(page)).inFlight, { timeout: 90_000 }).toBe(0);
  const c = await ledger(page);
  expect(c.rejected).toBe(1);
  expect(c.finished).toBe(4);
  await expect(page.locator('[data-testid="ledger-row"][data-reason="exceeds_kv_capacity"]')).toHaveCount(1);
  expect(await maxPreemptions(page)).toBeGreaterThan(0);

  await page.getByTestId('run-name').fill('kv pressure');
  await page.getByTestId('run-save').click();
  await expect(page.getByTestId('saved-run')).toHaveAttribute('data-name', 'kv pressure');
  await page.getByTestId('saved-run').getByTestId('run-replay').click();
  await expect(page.getByTestId('replay-result')).toHaveAttribute('data-equal', 'true');
  await expect(page.getByTestId('replay-result')).toContainText('replayed identically');

  // Chrome trace of the run.
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId('export-trace').click()]);
  const trace = JSON.parse(readFileSync((await download.path())!, 'utf8'));
  expect(trace.displayTimeUnit).toBe('ms');
  expect(Array.isArray(trace.traceEvents)).toBe(true);
  for (const e of trace.traceEvents) {
    expect(typeof e.name).toBe('string');
    expect(['X', 'i', 'M', 'C']).toContain(e.ph);
    expect(Number.isFinite(e.ts) && e.ts >= 0).toBe(true);
    expect(Number.isInteger(e.pid) && Number.isInteger(e.tid)).toBe(true);
    if (e.ph === 'X') expect(e.dur).toBeGreaterThanOrEqual(0);
  }
  const threads = trace.traceEvents.filter((e: { ph: string; name: string }) => e.ph === 'M' && e.name === 'thread_name').map((e: { args: { name: string } }) => e.args.name);
  expect(threads[0]).toBe('engine steps');
  expect(threads.length).toBe(1 + 5);
  const phases = new Set(trace.traceEvents.filter((e: { ph: string; tid: number }) => e.ph === 'X' && e.tid > 0).map((e: { name: string }) => e.name));
  for (const p of ['queued', 'prefill', 'decode']) expect(phases).toContain(p);

  const [csvDownload] = await Promise.all([page.waitForEvent('download'), page.getByTestId('export-csv').click()]);
  const csv = readFileSync((await csvDownload.path())!, 'utf8').trimEnd().split('\r\n');
  expect(csv[0].startsWith('request_id,')).toBe(true);
  expect(csv.length).toBe(6);
  const [promDownload] = await Promise.all([page.waitForEvent('download'), page.getByTestId('export-prometheus').click()]);
  expect(readFileSync((await promDownload.path())!, 'utf8')).toContain('vllm:');

  // A named scenario is kept too.
  await page.getByTestId('scenario-name').fill('tiny pool');
  await page.getByTestId('scenario-save').click();
  await expect(page.getByTestId('scenario')).toHaveAttribute('data-name', 'tiny pool');

  // Persistence: after a reload the run and the scenario are still there; the run replays identically.
  await page.reload();
  await openManage(page);
  await expect(page.getByTestId('scenario')).toHaveAttribute('data-name', 'tiny pool');
  await expect(page.getByTestId('saved-run')).toHaveAttribute('data-name', 'kv pressure');
  await page.getByTestId('saved-run').getByTestId('run-replay').click();
  await expect(page.getByTestId('replay-result')).toHaveAttribute('data-equal', 'true');
  await page.screenshot({ path: 'test-results/screenshots/manage.png' });

  // A run travels as a file: download, delete, import, and it still replays identically.
  const [runDownload] = await Promise.all([page.waitForEvent('download'), page.getByTestId('saved-run').getByTestId('run-download').click()]);
  const runFile = readFileSync((await runDownload.path())!);
  await page.getByTestId('saved-run').getByTestId('run-delete').click();
  await expect(page.getByTestId('saved-run')).toHaveCount(0);
  await page.getByTestId('import-file').setInputFiles({ name: 'kv.servelab-run.json', mimeType: 'application/json', buffer: runFile });
  await expect(page.getByTestId('saved-run')).toHaveAttribute('data-name', 'kv pressure');
  await page.getByTestId('saved-run').getByTestId('run-replay').click();
  await expect(page.getByTestId('replay-result')).toHaveAttribute('data-equal', 'true');
  await page.getByTestId('saved-run').getByTestId('run-delete').click();
  await expect(page.getByTestId('saved-run')).toHaveCount(0);
  // A file that is not a run, trace or workload is refused with a reason.
  await page.getByTestId('import-file').setInputFiles({ name: 'trace.json', mimeType: 'application/json', buffer: Buffer.from(JSON.stringify(trace)) });
  await expect(page.getByTestId('runs-error')).toContainText('Chrome trace');
});

test('storage that is full: a model too big to cache still loads and says why it is not kept; a dropped file loads', async ({ page }, testInfo) => {
  await page.goto(HOME);
  // A real quota, made small for this origin (Chromium's DevTools protocol), not a mock.
  const cdp = await page.context().newCDPSession(page);
  const origin = new URL(page.url()).origin;
  await cdp.send('Storage.overrideQuotaForOrigin', { origin, quotaSize: 200_000 });
  await openManage(page);
  const journal = page.getByTestId('fault-journal');
  // The GGUF copy of the built-in model (1.1 MB) does not fit 200 kB of storage.
  await page.getByTestId('model-url').fill('/models/stories260K.gguf');
  await page.getByTestId('tokenizer-url').fill('');
  await page.getByTestId('model-name').fill('big-gguf');
  await page.getByTestId('model-url-load').click();
  await expect(journal.locator('[data-kind="error"]').first()).toContainText(/not enough storage to keep big-gguf \(.* MiB\) for offline use \(the browser reports .* of .* MiB in use\); delete a cached model to make room/);
  // Nothing half-written stays in the cache, and the model runs all the same (kept in memory).
  await expect(page.getByTestId('manage-model')).toHaveAttribute('data-model', 'big-gguf', { timeout: 60_000 });
  await expect(page.getByTestId('model-manager-warning')).toContainText('big-gguf loaded, but not kept: not enough storage');
  await expect(page.getByTestId('model-manager-notice')).toHaveCount(0);
  await expect(page.getByTestId('cached-model')).toHaveCount(0);
  await shoot(page, testInfo, 'manage-storage-full');
  const fromUrl = await generate(page, 'Tom had a ball.');
  expect(fromUrl.length).toBeGreaterThan(5);

  // Storage back to normal; a file dropped on the panel (a real DragEvent with a DataTransfer).
  await cdp.send('Storage.overrideQuotaForOrigin', { origin });
  await page.evaluate(async () => {
    const bytes = await (await fetch('/models/stories260K.gguf')).arrayBuffer();
    const dt = new DataTransfer();
    dt.items.add(new File([bytes], 'dropped.gguf', { type: 'application/octet-stream' }));
    const zone = document.querySelector('[aria-label="Drop model files here"]')!;
    zone.dispatchEvent(new DragEvent('dragover', { dataTransfer: dt, bubbles: true, cancelable: true }));
    zone.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
  });
  await expect(page.getByTestId('manage-model')).toHaveAttribute('data-model', 'dropped', { timeout: 60_000 });
  await expect(page.getByTestId('model-manager-notice')).toHaveText('dropped.gguf loaded and cached for offline use');
  await expect(page.getByTestId('cached-model')).toHaveCount(1);
  // The same weights: the same greedy text.
  expect(await generate(page, 'Tom had a ball.')).toBe(fromUrl);
});

test('a request trace and a workload travel as files: exported, imported and run; bad files are refused with a reason', async ({ page }) => {
  await page.goto(HOME);
  await openManage(page);
  const first = await generate(page, 'Tom had a ball.');
  await expect.poll(async () => (await ledger(page)).finished).toBe(1);
  // The requests so far, as a trace file.
  const [traceDownload] = await Promise.all([page.waitForEvent('download'), page.getByTestId('export-requests').click()]);
  const traceText = readFileSync((await traceDownload.path())!, 'utf8');
  const trace = JSON.parse(traceText) as { format: string; requests: unknown[] };
  expect(trace.format).toBe('servelab-trace');
  expect(trace.requests).toHaveLength(1);
  // Imported, the trace runs its request again.
  await page.getByTestId('import-file').setInputFiles({ name: 'one.requests.json', mimeType: 'application/json', buffer: Buffer.from(traceText) });
  await expect(page.getByTestId('runs-notice')).toContainText('running 1 requests from one.requests.json');
  await expect.poll(async () => (await ledger(page)).finished, { timeout: 60_000 }).toBe(2);
  expect(first.length).toBeGreaterThan(5);
  // A workload spec: four requests at once.
  const workload = { seed: 3, numRequests: 4, arrival: { kind: 'batch' }, promptTokens: { kind: 'fixed', value: 8 }, outputTokens: { kind: 'fixed', value: 6 } };
  await page.getByTestId('import-file').setInputFiles({ name: 'four.json', mimeType: 'application/json', buffer: Buffer.from(JSON.stringify(workload)) });
  await expect(page.getByTestId('runs-notice')).toContainText('running the workload from four.json: 4 requests');
  await expect.poll(async () => (await ledger(page)).finished, { timeout: 60_000 }).toBe(6);
  // Bad files: an impossible workload, a trace with a broken request, and not JSON at all.
  const refuse = async (name: string, body: string, reason: RegExp) => {
    await page.getByTestId('import-file').setInputFiles({ name, mimeType: 'application/json', buffer: Buffer.from(body) });
    await expect(page.getByTestId('runs-error')).toContainText(reason);
  };
  await refuse('bad-workload.json', JSON.stringify({ ...workload, numRequests: -2 }), /numRequests/);
  await refuse('bad-trace.json', JSON.stringify({ format: 'servelab-trace', version: 1, requests: [{ promptTokenIds: 'x' }] }), /trace/);
  await refuse('junk.json', '{"format": ', /not JSON/);
  // Nothing ran from the refused files.
  expect((await ledger(page)).total).toBe(6);
});
