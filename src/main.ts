/**
 * The page's entry, kept small: it starts the engine worker (boot.ts) and then loads the app as a
 * chunk of its own, so the worker loads its script and brings the GPU up while the app's bundle
 * downloads, parses and mounts. If that chunk cannot be loaded (a dropped connection, a site
 * updated under an open tab), the starting line says so instead of standing forever.
 */
import './ui/boot.ts';
import './ui/global.css';

import('./ui/mount-app.ts').catch((e: unknown) => {
  const note = document.querySelector('#app .boot-note');
  const reason = e instanceof Error ? e.message : String(e);
  if (note) note.textContent = `servelab could not load its app code (${reason}). Reload the page to try again.`;
  console.error('servelab: loading the app failed', e);
});
