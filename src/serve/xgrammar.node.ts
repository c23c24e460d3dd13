/**
 * Loads XGrammar (`@mlc-ai/web-xgrammar`) in Node: the one place that knows the trick (tests and
 * the CLI import it; the worker imports the package directly, Vite bundles it).
 *
 * The package ships a UMD bundle but declares `"type": "module"`, so Node loads it as an ES module
 * without exports. Its Node branch reads `require` and `__filename`; with both set on globalThis
 * before the dynamic import, the bundle registers itself as `globalThis.xgrammar`.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { XGrammarApi } from './structured.ts';

let loading: Promise<XGrammarApi> | null = null;

export function loadXGrammarNode(): Promise<XGrammarApi> {
  loading ??= (async () => {
    const g = globalThis as Record<string, unknown>;
    // Both stay set: the bundle reads them again when its WASM is first instantiated (lazily, at
    // the first factory call), not only at import.
    g.require ??= createRequire(import.meta.url);
    g.__filename ??= fileURLToPath(import.meta.url);
    await import('@mlc-ai/web-xgrammar');
    const api = g.xgrammar as XGrammarApi | undefined;
    if (!api?.GrammarCompiler) throw new Error('@mlc-ai/web-xgrammar did not register globalThis.xgrammar (has the package changed its bundle?)');
    return api;
  })();
  return loading;
}
