/**
 * A request's tokens as an async iterator on the page: `for await (const e of stream)` yields the
 * worker's StreamEvents (text deltas, then one 'done' or 'error') and ends after the last.
 */
import * as Comlink from 'comlink';
import type { CompletionParams, StreamEvent } from '../../workers/protocol.ts';

/** What the stream needs of the engine client (the comlink remote, or anything with submit). */
export interface Submitter {
  submit(params: CompletionParams, onEvent: (e: StreamEvent) => void): Promise<string> | string;
}

export interface CompletionStream extends AsyncIterable<StreamEvent> {
  /** The engine's id for the request, once it was accepted. */
  readonly requestId: Promise<string>;
}

export function streamCompletion(client: Submitter, params: CompletionParams): CompletionStream {
  const queue: StreamEvent[] = [];
  let wake: (() => void) | null = null;
  let ended = false;
  let failure: unknown = null;
  const push = (e: StreamEvent) => {
    queue.push(e);
    if (e.type !== 'text') ended = true;
    wake?.();
  };
  const requestId = Promise.resolve(client.submit(params, Comlink.proxy(push)));
  requestId.catch((e: unknown) => {
    failure = e;
    ended = true;
    wake?.();
  });
  return {
    requestId,
    async *[Symbol.asyncIterator]() {
      for (;;) {
        while (queue.length > 0) {
          const e = queue.shift()!;
          yield e;
          if (e.type !== 'text') return;
        }
        if (failure) throw failure;
        if (ended) return;
        await new Promise<void>((resolve) => (wake = resolve));
        wake = null;
      }
    },
  };
}
