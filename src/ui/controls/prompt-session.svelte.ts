/**
 * Your prompt and its answer, kept apart from the box that shows them: the lab shows the prompt
 * box in the sidebar or, in presenter mode, compact above the views, and the text streaming in
 * survives the move.
 */
import type { CompletionParams, JsonCheck, StreamEvent } from '../../../workers/protocol.ts';

export type PromptStatus = 'idle' | 'streaming' | 'done' | 'error';

/** The prompt box's response format choice. */
export type FormatChoice = 'none' | 'json_object' | 'json_schema';

/** The schema the box starts with: small enough for the tiny model to finish well within 96 tokens. */
export const EXAMPLE_SCHEMA = JSON.stringify(
  {
    type: 'object',
    properties: {
      name: { type: 'string', maxLength: 12 },
      age: { type: 'integer', minimum: 1, maximum: 12 },
      pet: { enum: ['cat', 'dog', 'bird'] },
    },
    required: ['name', 'age', 'pet'],
  },
  null,
  2,
);

/** Why the schema text cannot be sent (null: it is a JSON object; the worker checks the rest). */
export function schemaTextError(text: string): string | null {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    return `The schema is not JSON: ${(e as Error).message}`;
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'The schema must be a JSON object, like {"type": "object", ...}';
  return null;
}

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
  /** Structured output: none, any JSON object, or the schema in schemaText. */
  format = $state<FormatChoice>('none');
  schemaText = $state(EXAMPLE_SCHEMA);
  /** The format the answer was asked with, and its check at the end (null: free text, or not ended). */
  sentFormat = $state<FormatChoice>('none');
  json = $state<JsonCheck | null>(null);
  /** Bumped per submit: a late event of an earlier request changes nothing. */
  private generation = 0;

  async submit(send: Send): Promise<void> {
    if (!this.prompt.trim() || this.status === 'streaming') return;
    if (this.format === 'json_schema') {
      const problem = schemaTextError(this.schemaText);
      if (problem) {
        this.status = 'error';
        this.message = problem;
        this.output = '';
        this.requestId = null;
        return;
      }
    }
    const gen = ++this.generation;
    this.sentFormat = this.format;
    this.json = null;
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
    if (this.format === 'json_object') params.response_format = { type: 'json_object' };
    else if (this.format === 'json_schema') params.response_format = { type: 'json_schema', json_schema: { name: 'schema', schema: JSON.parse(this.schemaText) as Record<string, unknown>, strict: true } };
    try {
      const id = await send(params, (ev) => {
        if (gen !== this.generation) return;
        if (ev.type === 'text' && ev.seqIndex === 0) this.output += ev.delta;
        else if (ev.type === 'done') {
          this.output = ev.texts[0] ?? this.output;
          this.status = 'done';
          this.json = ev.json?.[0] ?? null;
          this.message = `finished: ${ev.reasons[0] ?? ''}${this.json?.status === 'incomplete' ? ' (max tokens ran out: the JSON is incomplete)' : ''}`;
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
