/**
 * Evaluated before every other module of the app (main.ts imports it first): the engine worker
 * starts now, so its script loads and its GPU device comes up while the app's modules run and
 * the first frame is built, instead of after (see prestartEngineWorker).
 */
import { prestartEngineWorker } from './engine-client.ts';

prestartEngineWorker();
