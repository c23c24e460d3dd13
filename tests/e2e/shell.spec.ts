import { expect, test } from '@playwright/test';

test.describe('app shell on the built site', () => {
  test('loads the built-in model and reports a working WebGPU adapter', async ({ page }) => {
    const errors: string[] = [];
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto('/');
    await expect(page.getByRole('heading', { name: 'servelab' })).toBeVisible();

    const gpu = page.getByTestId('gpu-status');
    await expect(gpu.locator('[data-state]')).toHaveAttribute('data-state', 'ready');
    await expect(gpu).not.toContainText('WebGPU unavailable');
    await expect(page.getByTestId('gpu-features')).not.toBeEmpty();

    const model = page.getByTestId('model-status');
    await expect(model.locator('[data-state]')).toHaveAttribute('data-state', 'ready');
    await expect(model).toContainText('stories260K');
    await expect(model).toContainText('5 × 64');

    await page.screenshot({ path: 'test-results/screenshots/shell.png', fullPage: true });
    expect(errors).toEqual([]);
  });

  test('the About panel credits the model and its licence', async ({ page }) => {
    await page.goto('/');
    await page.getByTestId('about-open').click();
    const about = page.getByTestId('about-panel');
    await expect(about).toBeVisible();
    await expect(about).toContainText('Andrej Karpathy');
    await expect(about).toContainText('MIT licence');
    await page.getByTestId('about-close').click();
    await expect(about).toBeHidden();
  });
});
