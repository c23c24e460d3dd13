// First: starts the engine worker before the rest of the app is evaluated.
import './ui/boot.ts';
import { mount } from 'svelte';
import App from './ui/App.svelte';
import './ui/global.css';

const target = document.getElementById('app');
if (!target) throw new Error('servelab: #app element missing from index.html');
export default mount(App, { target });
