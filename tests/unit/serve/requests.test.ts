/**
 * completionSpec, the page's and the worker's front door: a prompt longer than the model's context
 * is refused at once, with its length and the limit (100 KB used to take minutes to tokenize first).
 */
import { describe, expect, it } from 'vitest';
import { CompletionParamsError, completionSpec } from '../../../src/serve/requests.ts';
import { storyPromptTokens, storyText } from '../../../src/serve/story-prompts.ts';
import { builtin } from '../model/helpers.ts';

describe('completionSpec and long prompts', () => {
  const loaded = builtin();
  const { tokenizer } = loaded;
  const seqLen = loaded.model.config.seqLen;

  it('refuses a 100 KB prompt with its token count and the context', () => {
    const prompt = storyText(100_000);
    const numTokens = tokenizer.encode(prompt, true, false).length;
    expect(numTokens).toBeGreaterThan(seqLen);
    expect(() => completionSpec({ prompt }, 'r1', loaded)).toThrow(
      `the prompt is ${numTokens} tokens (BOS included), too long for the model's context of ${seqLen}: at most ${seqLen - 1}, to leave a position to generate in`,
    );
  });

  it('takes a prompt of seqLen - 1 tokens and refuses one of seqLen', () => {
    const ids = tokenizer.encode(storyText(5_000), true, false);
    const fits = tokenizer.decode(ids.slice(0, seqLen - 1));
    const spec = completionSpec({ prompt: fits, max_tokens: 1 }, 'r2', loaded);
    expect(spec.promptTokenIds).toEqual(ids.slice(0, seqLen - 1));
    const tooLong = tokenizer.decode(ids.slice(0, seqLen));
    expect(() => completionSpec({ prompt: tooLong }, 'r3', loaded)).toThrow(`the prompt is ${seqLen} tokens (BOS included)`);
  });
});

describe('completionSpec refuses every bad parameter at once', () => {
  it('names each parameter as the API does, all in one error', () => {
    const loaded = builtin();
    let err: unknown;
    try {
      completionSpec({ prompt: 7 as unknown as string, max_tokens: 0, temperature: -1, top_p: 2, top_k: 1.5, seed: Number.NaN, stop: 'Lily' as unknown as string[], priority: Number.NaN, tenant: '', deadline: -3, max_token: 5 } as never, 'r1', loaded);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CompletionParamsError);
    const params = (err as CompletionParamsError).problems.map((p) => p.param).sort();
    expect(params).toEqual(['deadline', 'max_token', 'max_tokens', 'priority', 'prompt', 'seed', 'stop', 'temperature', 'tenant', 'top_k', 'top_p']);
    expect((err as Error).message).toMatch(/top_p must be between 0 and 1, got 2/);
    expect((err as Error).message).toMatch(/deadline must be > 0 ms, got -3/);
  });

  it('refuses a prompt over a million characters before tokenizing it', () => {
    expect(() => completionSpec({ prompt: 'a'.repeat(1_000_001) }, 'r2', builtin())).toThrow(/1000001 characters; at most 1000000/);
  });
});

describe('story prompts for a workload', () => {
  it('every shared system prompt gets its own text, however many there are', () => {
    const { tokenizer } = builtin();
    const prefixes = new Map<string, number[]>();
    const sharedTokens = 24;
    // Eight shared prefixes (random token ids 100+k), each with its own request text after it.
    const prompts = Array.from({ length: 8 }, (_, k) => storyPromptTokens(tokenizer, [...Array(sharedTokens).fill(100 + k), ...Array(40).fill(7 + k)], prefixes, sharedTokens));
    const heads = new Set(prompts.map((p) => p.slice(0, sharedTokens).join(',')));
    expect(heads.size).toBe(8);
    for (const p of prompts) expect(p).toHaveLength(sharedTokens + 40);
    // The same shared prefix again: the same text.
    const again = storyPromptTokens(tokenizer, [...Array(sharedTokens).fill(105), ...Array(40).fill(9)], prefixes, sharedTokens);
    expect(again.slice(0, sharedTokens)).toEqual(prompts[5].slice(0, sharedTokens));
  });
});
