/** Mounts the app (loaded by main.ts after the engine worker has started: see boot.ts). */
import { mount } from 'svelte';
import App from './App.svelte';

const target = document.getElementById('app');
if (!target) throw new Error('servelab: #app element missing from index.html');
// index.html's 'starting' line stands until the app replaces it.
target.replaceChildren();
mount(App, { target });
