/** Shared e2e helpers: console-error capture, waiting for the model, reading data attributes. */
import { expect, type Page, type TestInfo } from '@playwright/test';

export function captureErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  page.on('pageerror', (e) => errors.push(e.message));
  return errors;
}

export async function waitForModel(page: Page): Promise<void> {
  await expect(page.getByTestId('model-status').locator('[data-state]')).toHaveAttribute('data-state', 'ready');
}

export async function numAttr(page: Page, testId: string, attr: string): Promise<number> {
  return Number((await page.getByTestId(testId).first().getAttribute(attr)) ?? NaN);
}

/** Waits until a numeric data attribute passes `min`. */
export async function waitForAttrAbove(page: Page, testId: string, attr: string, min: number, timeout = 90_000): Promise<number> {
  await expect.poll(() => numAttr(page, testId, attr), { timeout }).toBeGreaterThan(min);
  return numAttr(page, testId, attr);
}

/** Saves a screenshot under test-results/screenshots/ and attaches it to the report. */
export async function shoot(page: Page, testInfo: TestInfo, name: string): Promise<void> {
  const path = `test-results/screenshots/${name}.png`;
  await page.screenshot({ path });
  await testInfo.attach(name, { path, contentType: 'image/png' });
}
