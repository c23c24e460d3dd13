/**
 * The page's entry, kept small: it starts the engine worker (boot.ts) and then loads the app as a
 * chunk of its own, so the worker loads its script and brings the GPU up while the app's bundle
 * downloads, parses and mounts.
 */
import './ui/boot.ts';
import './ui/global.css';

void import('./ui/mount-app.ts');
