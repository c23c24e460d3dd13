/**
 * Real text for generated workloads: a workload's prompts are random token ids of the right
 * lengths; for the real model the lab swaps them for story text of exactly the same lengths, so
 * the model continues something meaningful. Requests that share a system prompt in the workload
 * still share one here (same real tokens), so prefix caching behaves the same.
 */
import type { Tokenizer } from '../model/tokenizer.ts';

/** Story openings in the style of the TinyStories data set (written for servelab). */
export const storyPassages: readonly string[] = [
  'Once upon a time, there was a little girl named Lily. She loved to play in the garden with her dog, Max.',
  'One day, a small bird found a shiny red ball under a big tree. The bird wanted to show it to all of its friends.',
  'Tom and his mom went to the park on a sunny day. Tom saw a big slide and ran to it with a happy smile.',
  'There was a kind old bear who lived in the woods. Every morning he made honey cakes for the animals.',
  'Sara had a blue box full of toys. She liked to share her toys with her brother, Ben, when he was sad.',
  'In a small town, there lived a brave cat named Tim. Tim liked to climb the tall fence and look at the sky.',
  'The sun was warm and the flowers were bright. Anna picked a pink flower and gave it to her grandma.',
  'A little fish swam in the big blue sea. It was looking for a new friend to play with all day long.',
  'Jack wanted to build a tall tower with his blocks. He tried and tried, but the tower fell down.',
  'It was a cold winter night. Mia sat by the fire with a warm cup of milk and a book about stars.',
  'The farmer had a big red barn and many animals. The cow, the pig and the duck were best friends.',
  'Lucy found a tiny key in the sand at the beach. She wondered what door the little key could open.',
];

const systemPrompts = [
  'You are a friendly storyteller. Tell a short, happy story for a child, with simple words and a good ending.',
  'Write a gentle bedtime story about animals who help each other. Keep it short and kind, and end it well.',
  'Tell a story about a brave child who learns something new. Use easy words, and make the ending happy.',
];

const cache = new WeakMap<Tokenizer, { passages: number[][]; systems: number[][] }>();

function tokenized(tokenizer: Tokenizer) {
  let c = cache.get(tokenizer);
  if (!c) {
    c = {
      passages: storyPassages.map((p) => tokenizer.encode(p, false, false)),
      systems: systemPrompts.map((p) => tokenizer.encode(p, false, false)),
    };
    cache.set(tokenizer, c);
  }
  return c;
}

/** At least `minChars` characters of story text: the passages in turn, one space between them. */
export function storyText(minChars: number): string {
  const parts: string[] = [];
  let length = 0;
  for (let i = 0; length < minChars; i++) {
    const p = storyPassages[i % storyPassages.length];
    parts.push(p);
    length += p.length + 1;
  }
  return parts.join(' ');
}

/** `length` tokens of text from the chosen sources, starting at `first` and cycling. */
function fill(sources: number[][], first: number, length: number): number[] {
  const out: number[] = [];
  for (let i = 0; out.length < length; i++) out.push(...sources[(first + i) % sources.length]);
  return out.slice(0, length);
}

function hashTokens(tokens: readonly number[]): number {
  let h = 2166136261;
  for (const t of tokens) h = Math.imul(h ^ t, 16777619) >>> 0;
  return h;
}

/**
 * Real prompt tokens (BOS first) of the same length as `randomPrompt`. `sharedPrefixTokens` is
 * the workload's shared-system-prompt length; `prefixes` remembers the real text chosen for each
 * shared prefix across the requests of one run.
 */
export function storyPromptTokens(tokenizer: Tokenizer, randomPrompt: readonly number[], prefixes: Map<string, number[]>, sharedPrefixTokens = 0): number[] {
  const { passages: stories, systems } = tokenized(tokenizer);
  const length = Math.max(1, randomPrompt.length);
  const out = [tokenizer.vocab.bosId];
  let restFrom = 0;
  if (sharedPrefixTokens > 0 && randomPrompt.length > sharedPrefixTokens) {
    const key = randomPrompt.slice(0, sharedPrefixTokens).join(',');
    let prefix = prefixes.get(key);
    if (!prefix) {
      // The first shared prompts are the system prompts in turn; beyond them each is numbered, so
      // a workload with more shared prompts than there are system texts never repeats one.
      prefix = prefixes.size < systems.length ? fill(systems, prefixes.size, sharedPrefixTokens - 1) : numberedSystemTokens(tokenizer, prefixes.size, sharedPrefixTokens - 1);
      prefixes.set(key, prefix);
    }
    out.push(...prefix);
    restFrom = sharedPrefixTokens;
  }
  const rest = randomPrompt.slice(restFrom);
  out.push(...fill(stories, hashTokens(rest) % stories.length, length - out.length));
  return out.slice(0, length);
}

/**
 * `length` tokens of a system prompt of its own for each `index` (a numbered opening, then the
 * system prompts in turn): for workloads whose requests share one of many system prompts, so that
 * different prompts never share text beyond their first few tokens.
 */
export function numberedSystemTokens(tokenizer: Tokenizer, index: number, length: number): number[] {
  const head = tokenizer.encode(`Service ${index + 1}.`, false, false);
  return [...head, ...fill(tokenized(tokenizer).systems, index, Math.max(0, length - head.length))].slice(0, length);
}

/**
 * `length` tokens of a request's own text, numbered first ("#12 ") so that no two requests share
 * more than a few leading tokens, then story text from passage `index` on.
 */
export function numberedStoryTokens(tokenizer: Tokenizer, index: number, length: number): number[] {
  const head = tokenizer.encode(`#${index + 1} `, false, false);
  return [...head, ...fill(tokenized(tokenizer).passages, index, Math.max(0, length - head.length))].slice(0, length);
}
