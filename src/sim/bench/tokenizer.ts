/**
 * `bench tokenizer`: how long the tokenizer takes to encode story text of growing length (1k, 8k,
 * 16k characters and 100 KB by default; `--sizes 1000,50000` to choose). Each size is encoded once
 * to warm up, then repeatedly for at least `--min-ms` (default 300) and three runs; the median run
 * is reported, with characters per second and the encoder's own work counts (pieces, merges, queue
 * comparisons), which grow as n log n.
 */
import type { Tokenizer } from '../../model/tokenizer.ts';
import { storyText } from '../../serve/story-prompts.ts';
import { formatNum } from './format.ts';
import type { BenchCommand } from './types.ts';

const defaultSizes = [1_000, 8_000, 16_000, 100_000];

function parseSizes(raw: string | undefined): number[] {
  if (raw === undefined) return defaultSizes;
  const sizes = raw.split(',').map((s) => Number(s.trim()));
  if (sizes.length === 0 || sizes.some((n) => !Number.isInteger(n) || n < 1)) {
    throw new Error(`tokenizer: --sizes must be positive integers separated by commas, got ${JSON.stringify(raw)}`);
  }
  return sizes;
}

const label = (chars: number): string => (chars >= 1000 && chars % 1000 === 0 ? `${chars / 1000}k` : String(chars));

/** `tokenizer()` gives the tokenizer to measure (read only when the benchmark runs). */
export function tokenizerBench(tokenizer: () => { name: string; tokenizer: Tokenizer }): BenchCommand {
  return {
    name: 'tokenizer',
    description: 'encode time for 1k, 8k, 16k characters and 100 KB of story text (ms, chars/s)',
    async run(ctx) {
      const sizes = parseSizes(ctx.options.sizes);
      const minMs = Number(ctx.options['min-ms'] ?? 300);
      if (!(minMs >= 0)) throw new Error(`tokenizer: --min-ms must be a number >= 0, got ${ctx.options['min-ms']}`);
      const { name, tokenizer: tok } = tokenizer();
      ctx.log(`tokenizer: ${name} (${tok.vocabSize} tokens), story text, median of >= 3 runs and >= ${minMs} ms per size`);
      const results = sizes.map((chars) => {
        const text = storyText(chars).slice(0, chars);
        const numTokens = tok.encode(text).length; // warm-up
        const work = { ...tok.lastEncodeWork };
        const times: number[] = [];
        const started = performance.now();
        while (times.length < 3 || performance.now() - started < minMs) {
          const t0 = performance.now();
          tok.encode(text);
          times.push(performance.now() - t0);
        }
        times.sort((a, b) => a - b);
        const ms = times[times.length >> 1];
        return { chars, bytes: new TextEncoder().encode(text).length, tokens: numTokens, runs: times.length, ms, charsPerS: chars / (ms / 1000), ...work };
      });
      const table = [
        ['text', 'chars', 'tokens', 'ms', 'chars/s', 'runs', 'merges', 'comparisons'],
        ...results.map((r) => [
          label(r.chars),
          String(r.chars),
          String(r.tokens),
          formatNum(r.ms, 2),
          formatNum(r.charsPerS, 0),
          String(r.runs),
          String(r.merges),
          String(r.comparisons),
        ]),
      ];
      return {
        table,
        json: { tokenizer: name, vocabSize: tok.vocabSize, minMs, sizes: results },
        notes: ['ms is the median encode (BOS included) of each size; comparisons count the merge queue\'s work'],
      };
    },
  };
}
