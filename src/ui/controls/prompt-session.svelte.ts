/**
 * Your prompt and its answer, kept apart from the box that shows them: the lab shows the prompt
 * box in the sidebar or, in presenter mode, compact above the views, and the text streaming in
 * survives the move.
 */
import type { CompletionParams, StreamEvent } from '../../../workers/protocol.ts';

export type PromptStatus = 'idle' | 'streaming' | 'done' | 'error';

export type Send = (params: CompletionParams, onEvent: (e: StreamEvent) => void) => Promise<string>;

export class PromptSession {
  prompt = $state('Once upon a time, there was a little robot');
  maxTokens = $state(96);
  temperature = $state(0);
  /** The prompt as sent (the field may be edited while the answer streams). */
  sentPrompt = $state('');
  output = $state('');
  status = $state<PromptStatus>('idle');
  requestId = $state<string | null>(null);
  message = $state<string | null>(null);
  /** Bumped per submit: a late event of an earlier request changes nothing. */
  private generation = 0;

  async submit(send: Send): Promise<void> {
    if (!this.prompt.trim() || this.status === 'streaming') return;
    const gen = ++this.generation;
    this.sentPrompt = this.prompt;
    this.output = '';
    this.message = null;
    this.requestId = null;
    this.status = 'streaming';
    const params: CompletionParams = {
      prompt: this.prompt,
      max_tokens: Math.max(1, Math.min(400, Math.round(Number.isFinite(this.maxTokens) ? this.maxTokens : 96))),
      temperature: Math.max(0, Number.isFinite(this.temperature) ? this.temperature : 0),
      seed: 42,
    };
    try {
      const id = await send(params, (ev) => {
        if (gen !== this.generation) return;
        if (ev.type === 'text' && ev.seqIndex === 0) this.output += ev.delta;
        else if (ev.type === 'done') {
          this.output = ev.texts[0] ?? this.output;
          this.status = 'done';
          this.message = `finished: ${ev.reasons[0] ?? ''}`;
        } else if (ev.type === 'error') {
          this.status = 'error';
          this.message = ev.message;
        }
      });
      if (gen === this.generation) this.requestId = id;
    } catch (err) {
      if (gen !== this.generation) return;
      this.status = 'error';
      this.message = (err as Error).message;
    }
  }
}
