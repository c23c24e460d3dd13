/// <reference types="vitest/config" />
import { defineConfig } from 'vite';
import { svelte } from '@sveltejs/vite-plugin-svelte';
import { VitePWA } from 'vite-plugin-pwa';
import { playwright } from '@vitest/browser-playwright';
import { chromiumArgs, chromiumPath } from './tests/browser-env.ts';

/**
 * The installable, offline app: every built asset and the built-in model are precached, so after
 * one visit servelab works with no network.
 */
const pwa = VitePWA({
  registerType: 'autoUpdate',
  injectRegister: 'script',
  includeAssets: ['favicon.svg', 'icon-192.png', 'icon-512.png', 'models/*'],
  manifest: {
    name: 'servelab — LLM serving lab',
    short_name: 'servelab',
    description: 'A real language model on your GPU, served with a paged KV cache and continuous batching, visualised live.',
    theme_color: '#111827',
    background_color: '#0b1020',
    display: 'standalone',
    start_url: '.',
    icons: [
      { src: 'icon-192.png', sizes: '192x192', type: 'image/png' },
      { src: 'icon-512.png', sizes: '512x512', type: 'image/png' },
      { src: 'icon-512.png', sizes: '512x512', type: 'image/png', purpose: 'maskable' },
    ],
  },
  workbox: {
    globPatterns: ['**/*.{js,css,html,svg,png,webmanifest,bin,gguf,md}'],
    maximumFileSizeToCacheInBytes: 8 * 1024 * 1024,
    navigateFallback: 'index.html',
    cleanupOutdatedCaches: true,
  },
});

export default defineConfig({
  plugins: process.env.VITEST ? [svelte()] : [svelte(), pwa],
  worker: { format: 'es' },
  build: { target: 'es2022', sourcemap: true },
  test: {
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['tests/unit/**/*.test.ts'],
          environment: 'node',
          // Real-model and fuzz tests do seconds of CPU work; on a shared 2-core machine under load
          // the 5 s default failed them on time, not on an assertion (nothing here asserts speed).
          testTimeout: 60_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'gpu-node',
          include: ['tests/gpu/**/*.node.test.ts'],
          environment: 'node',
          setupFiles: ['tests/gpu/node-setup.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
          fileParallelism: false,
        },
      },
      {
        extends: true,
        test: {
          name: 'gpu-browser',
          include: ['tests/gpu/**/*.browser.test.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
          fileParallelism: false,
          browser: {
            enabled: true,
            headless: true,
            provider: playwright({ launchOptions: { executablePath: chromiumPath, args: chromiumArgs } }),
            instances: [{ browser: 'chromium' }],
          },
        },
      },
    ],
  },
});
