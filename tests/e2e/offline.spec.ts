import { expect, test } from '@playwright/test';

test('after one visit the app and the built-in model work offline', async ({ page, context }) => {
  await page.goto('/');
  await expect(page.getByTestId('model-status').locator('[data-state]')).toHaveAttribute('data-state', 'ready');
  // The service worker precaches everything on install; wait until it is active.
  await page.evaluate(async () => {
    await navigator.serviceWorker.ready;
  });
  await context.setOffline(true);
  await page.reload();
  await expect(page.getByRole('heading', { name: 'servelab' })).toBeVisible();
  await expect(page.getByTestId('model-status').locator('[data-state]')).toHaveAttribute('data-state', 'ready');
  await expect(page.getByTestId('gpu-status').locator('[data-state]')).toHaveAttribute('data-state', 'ready');
  await context.setOffline(false);
});

test('the built site sends a Content-Security-Policy without eval or inline script', async ({ page }) => {
  await page.goto('/');
  const csp = await page.locator('meta[http-equiv="Content-Security-Policy"]').getAttribute('content');
  expect(csp).toContain("script-src 'self'");
  expect(csp).not.toContain('unsafe-eval');
  expect(csp).not.toMatch(/script-src[^;]*unsafe-inline/);
});
