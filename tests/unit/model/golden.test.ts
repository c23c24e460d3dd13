import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { generate } from '../../../src/model/generate.ts';
import { ReferenceModel } from '../../../src/model/reference.ts';
import { createSampler } from '../../../src/engine/sampler.ts';
import { loadModel } from '../../../src/model/load.ts';
import { builtin, golden, readModelFile, root } from './helpers.ts';

function greedy(prompt: string, steps: number, loaded = builtin()) {
  const ref = new ReferenceModel(loaded.model);
  const sampler = createSampler({ temperature: 0, topP: 0.9, topK: 0, seed: 1 });
  return generate({
    tokenizer: loaded.tokenizer,
    prompt,
    steps,
    seqLen: loaded.model.config.seqLen,
    forward: (t, p) => ref.forward(t, p),
    sample: (l) => sampler.sampleLogits(l),
  });
}

const text = (b: Uint8Array) => Buffer.from(b).toString('utf8');

describe('CPU reference reproduces llama2.c run.c byte for byte', () => {
  it('"Once upon a time", 256 steps, greedy', () => {
    expect(text(greedy('Once upon a time', 256).bytes)).toBe(text(golden.onceUponATime));
  });

  it('no prompt, 256 steps, greedy', () => {
    expect(text(greedy('', 256).bytes)).toBe(text(golden.noPrompt));
  });

  it('the GGUF file generates the same text as the .bin pair', () => {
    const gguf = loadModel(readModelFile('stories260K.gguf'), 'stories260K.gguf');
    expect(text(greedy('Once upon a time', 256, gguf).bytes)).toBe(text(golden.onceUponATime));
  });

  it('steps count positions, prompt included', () => {
    const r = greedy('Once upon a time', 10);
    expect(r.tokens.length).toBe(11); // BOS, then one printed token per position
    expect(golden.onceUponATime.subarray(0, r.bytes.length - 1)).toEqual(r.bytes.subarray(0, r.bytes.length - 1));
  });

  it('npm run -s generate prints nothing but the text on stdout', () => {
    const stdout = execFileSync(
      process.execPath,
      [resolve(root, 'node_modules/tsx/dist/cli.mjs'), resolve(root, 'scripts/generate.ts'), '--prompt', 'Once upon a time', '--steps', '256', '--temperature', '0'],
      { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    expect(Buffer.from(stdout).equals(Buffer.from(golden.onceUponATime))).toBe(true);
  });

  it('the generator rejects a bad option with a clear message', () => {
    let err: { status?: number; stderr?: Buffer } = {};
    try {
      execFileSync(process.execPath, [resolve(root, 'node_modules/tsx/dist/cli.mjs'), resolve(root, 'scripts/generate.ts'), '--steps', 'many'], {
        cwd: root,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
    } catch (e) {
      err = e as typeof err;
    }
    expect(err.status).toBe(2); // a usage error
    expect(String(err.stderr)).toContain('--steps must be a number');
  });
});

describe('run.c semantics through the engine', () => {
  it('a full context samples steps - prompt + 1 tokens, never computing position seqLen', async () => {
    const { Engine } = await import('../../../src/engine/engine.ts');
    const { FakeExecutor } = await import('../../../src/engine/testing/fakeExecutor.ts');
    const { runcRequest } = await import('../../../src/model/generate.ts');
    const { tokenizer } = builtin();
    const seqLen = 40;
    const r = runcRequest(tokenizer, 'Once upon a time', 0, seqLen);
    expect(r.maxTokens).toBe(seqLen - r.promptTokenIds.length + 1);
    let maxPosition = -1;
    const inner = new FakeExecutor({ stopTokenId: 1, stopEvery: 1_000_000 });
    const executor = {
      name: 'fake',
      configure: (g: Parameters<typeof inner.configure>[0]) => inner.configure(g),
      execute: (plan: Parameters<typeof inner.execute>[0]) => {
        for (const s of plan.seqs) maxPosition = Math.max(maxPosition, s.startPosition + s.tokenIds.length - 1);
        return inner.execute(plan);
      },
      dispose: () => inner.dispose(),
    };
    const engine = new Engine({ executor, config: { blockSize: 8, numGpuBlocks: 16, numCpuBlocks: 0, maxModelLen: seqLen + 1 } });
    const id = engine.submit({ ...r, sampling: { temperature: 0 } });
    await engine.runUntilIdle();
    expect(engine.getRequest(id)!.seqs[0].outputTokenIds.length).toBe(r.maxTokens);
    expect(maxPosition).toBe(seqLen - 1);
  });
});
