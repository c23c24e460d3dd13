/**
 * An element's size, reported by a ResizeObserver only: `{@attach size('clientWidth', (px) => (width = px))}`.
 *
 * Svelte's size bindings (`bind:clientWidth` and the others) also read the size synchronously
 * when the element mounts, which forces a layout of the whole page inside the task that mounts
 * it: at launch, the lab's first layout (180-320 ms on this machine, traced) ran inside the
 * mount's task, its longest (730-890 ms). A ResizeObserver reports after the browser's own
 * layout of the frame and before it paints, so the first frame still shows the measured sizes
 * and the layout runs in the frame's own task (longest launch task then 510-550 ms; the main
 * thread's total work the same). One observer serves every element.
 */
export type SizeKey = 'clientWidth' | 'clientHeight' | 'offsetWidth' | 'offsetHeight';

const listeners = new WeakMap<Element, Set<() => void>>();
let observer: ResizeObserver | null = null;

function sharedObserver(): ResizeObserver {
  observer ??= new ResizeObserver((entries) => {
    for (const entry of entries) for (const report of listeners.get(entry.target) ?? []) report();
  });
  return observer;
}

/** An attachment calling `set` with the element's `key` (px) whenever its border box changes size. */
export function size(key: SizeKey, set: (px: number) => void): (element: HTMLElement) => () => void {
  return (element) => {
    const report = () => set(element[key]);
    let reports = listeners.get(element);
    if (!reports) {
      reports = new Set();
      listeners.set(element, reports);
      sharedObserver().observe(element, { box: 'border-box' });
    }
    reports.add(report);
    return () => {
      reports.delete(report);
      if (reports.size === 0) {
        listeners.delete(element);
        sharedObserver().unobserve(element);
      }
    };
  };
}
