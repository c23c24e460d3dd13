/**
 * Clicking or dragging on a time plot moves the fleet's cursor: an attachment for the plot's
 * element, shared by the replica lanes and the time charts. `timeAt(px)` maps a pixel offset from
 * the element's left edge to simulated seconds (read at each event, so a rescaled axis is used
 * as it is now); without `onseek` the plot is not a scrubber.
 */
import type { Attachment } from 'svelte/attachments';

export function scrub(timeAt: (px: number) => number, onseek: ((tS: number) => void) | undefined): Attachment<HTMLElement> {
  return (node) => {
    if (!onseek) return;
    let dragging = false;
    const seek = (e: PointerEvent) => onseek(timeAt(e.clientX - node.getBoundingClientRect().left));
    const down = (e: PointerEvent) => {
      dragging = true;
      node.setPointerCapture?.(e.pointerId);
      seek(e);
    };
    const move = (e: PointerEvent) => {
      if (dragging) seek(e);
    };
    const up = () => (dragging = false);
    node.addEventListener('pointerdown', down);
    node.addEventListener('pointermove', move);
    node.addEventListener('pointerup', up);
    node.addEventListener('pointercancel', up);
    return () => {
      node.removeEventListener('pointerdown', down);
      node.removeEventListener('pointermove', move);
      node.removeEventListener('pointerup', up);
      node.removeEventListener('pointercancel', up);
    };
  };
}
