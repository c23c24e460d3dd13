/**
 * Where your prompt is, in words, until its first token: arriving, queued (and behind what),
 * waiting for a static batch to drain, swapped out, or in prefill. Derived from the snapshot the
 * views already have (queues, the request's state and progress, the engine's settings).
 */
import type { LabSnapshot } from '../lab/state.svelte.ts';

type Snap = Pick<LabSnapshot, 'queues' | 'requests' | 'config' | 'gpuBlocks'> & { host: { paused: boolean } | null };

const plural = (n: number, w: string) => `${n} ${w}${n === 1 ? '' : 's'}`;

/** One line; null once the request has output (or ended): the stream says the rest. */
export function whereIsRequest(s: Snap | null, requestId: string): string | null {
  const paused = s?.host?.paused ? ' · the engine is paused: press Play (space) or Step (→)' : '';
  const r = s?.requests.find((q) => q.requestId === requestId);
  if (!s || !r) return `sent: it joins the scheduler's queue at the next engine step${paused}`;
  if (r.outputTokenIds.some((o) => o.length > 0)) return null;
  const { running, waiting } = s.queues;
  switch (r.state) {
    case 'pending':
      return `sent: it joins the scheduler's queue at the next engine step${paused}`;
    case 'waiting': {
      const pos = waiting.indexOf(requestId);
      const ahead = pos > 0 ? ` · ${plural(pos, 'request')} ahead in the queue` : pos === 0 ? ' · first in the queue' : '';
      const again = r.numPreemptions > 0 ? `preempted ${plural(r.numPreemptions, 'time')}, back in the queue: ` : '';
      if (s.config.batching === 'static' && running.length > 0) {
        return `${again}waiting for the static batch to drain: ${running.length} of its requests still decoding (static batching admits newcomers only when the whole batch is done)${ahead}${paused}`;
      }
      if (running.length >= s.config.maxNumSeqs) return `${again}queued: all ${s.config.maxNumSeqs} batch slots are busy${ahead}${paused}`;
      let free = 0;
      for (let b = 0; b < s.gpuBlocks.refCount.length; b++) if (s.gpuBlocks.refCount[b] === 0) free++;
      const needed = Math.ceil(r.numPromptTokens / s.config.blockSize);
      if (free < needed) return `${again}queued: waiting for KV memory (its prompt needs ${plural(needed, 'block')}, ${free} free)${ahead}${paused}`;
      return `${again}queued: to be admitted at the next step${ahead}${paused}`;
    }
    case 'swapped':
      return `preempted and swapped out to CPU memory: waits to be swapped back in${paused}`;
    case 'running': {
      const done = r.numComputedTokens[0] ?? 0;
      if (done < r.numPromptTokens) return `prefill: ${done} of ${plural(r.numPromptTokens, 'prompt token')} computed${paused}`;
      return `prefill done: the first token comes with the next step${paused}`;
    }
    default:
      return null;
  }
}
