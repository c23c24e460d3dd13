import { describe, expect, it } from 'vitest';
import { Engine } from '../../../src/engine/engine.ts';
import { VirtualClock } from '../../../src/engine/clock.ts';
import { FakeExecutor } from '../../../src/engine/testing/fakeExecutor.ts';
import { replayEventLog } from '../../../src/engine/replay.ts';
import { createSampler } from '../../../src/engine/sampler.ts';
import { proposeNgram, targetDistribution, verifyDrafts } from '../../../src/engine/speculative.ts';
import { KvCacheManager } from '../../../src/engine/kvCacheManager.ts';
import { validateEngineConfig, DEFAULT_SCHEDULER_CONFIG, LIVE_CONFIG_KEYS, type SchedulerConfig } from '../../../src/engine/config.ts';
import type { RequestSpec } from '../../../src/engine/request.ts';
import type { KvEvent } from '../../../src/engine/events.ts';
import type { SeqOutput } from '../../../src/engine/types.ts';
import { CpuReferenceExecutor } from '../../../src/model/reference.ts';
import { makeSavedRun, parseImport, replaySavedRun, serializeRun } from '../../../src/export/saved-run.ts';
import { builtin } from '../model/helpers.ts';

const SPEC: Partial<SchedulerConfig> = { speculativeMethod: 'ngram', numSpeculativeTokens: 4, promptLookupMax: 3, promptLookupMin: 1 };
const base: Partial<SchedulerConfig> = { blockSize: 4, numGpuBlocks: 200, numCpuBlocks: 0, maxNumBatchedTokens: 64, maxNumSeqs: 8, maxModelLen: 128 };

function prompts(n: number, temperature = 0): RequestSpec[] {
  return Array.from({ length: n }, (_, i) => ({
    requestId: `r${i}`,
    promptTokenIds: [1, ...Array.from({ length: 6 + i }, (_, k) => 3 + ((k * 7 + i * 5) % 40))],
    maxTokens: 40 + i,
    sampling: { temperature, topP: 1, topK: 0, seed: 100 + i },
  }));
}

async function runFake(specs: RequestSpec[], extra: Partial<SchedulerConfig> = {}, emitLogits = false) {
  const engine = new Engine({
    executor: new FakeExecutor({ repeatPeriod: 5, emitLogits, stopTokenId: 2, stopEvery: 97 }),
    clock: new VirtualClock(),
    config: { ...base, ...extra },
    checkInvariants: true,
  });
  for (const s of specs) engine.submit(s);
  const steps = await engine.runUntilIdle();
  const outputs = Object.fromEntries(specs.map((s) => [s.requestId!, engine.getRequest(s.requestId!)!.seqs.map((q) => q.outputTokenIds)]));
  return { engine, steps, outputs };
}

describe('n-gram proposer (prompt lookup)', () => {
  it('matches the longest n-gram first, at its earliest occurrence, and proposes what followed', () => {
    //            0  1  2  3  4  5  6  7  8  9 10 11
    const toks = [5, 6, 7, 8, 9, 5, 6, 7, 1, 5, 6, 7];
    // Last 3 tokens [5,6,7]: earliest occurrence at 0, followed by 8, 9, 5, ...
    expect(proposeNgram(toks, 3, 3, 1)).toEqual([8, 9, 5]);
    expect(proposeNgram(toks, 20, 3, 1)).toEqual([8, 9, 5, 6, 7, 1, 5, 6, 7]); // cut at the end of the sequence
    // Longest first: [1,5,6,7] (n = 4) does not occur earlier, [5,6,7] does.
    expect(proposeNgram([9, 5, 6, 7, 2, 1, 5, 6, 7], 2, 4, 1)).toEqual([2, 1]);
    // Only 1-grams: last token 7 occurred first at 2 (followed by 8).
    expect(proposeNgram(toks, 2, 1, 1)).toEqual([8, 9]);
    // Nothing matches a 4-gram ending in a new token.
    expect(proposeNgram([1, 2, 3, 4, 9], 3, 4, 2)).toEqual([]);
    expect(proposeNgram([1, 2, 3, 1, 2], 3, 4, 3)).toEqual([]); // [3,1,2] never seen before
    expect(proposeNgram([1, 2, 3, 1, 2], 3, 4, 2)).toEqual([3, 1, 2]);
    expect(proposeNgram([7], 3, 3, 1)).toEqual([]);
    expect(proposeNgram([4, 4], 0, 3, 1)).toEqual([]);
  });
});

describe('speculative decoding in the engine (fake model)', () => {
  it('greedy: the same tokens as without speculation, alone and batched, in fewer steps', async () => {
    const off = await runFake(prompts(6));
    const on = await runFake(prompts(6), SPEC);
    expect(on.outputs).toEqual(off.outputs);
    const spec = on.engine.metricsSummary().spec;
    expect(spec.numDraftTokens).toBeGreaterThan(100);
    expect(spec.numAcceptedTokens).toBeGreaterThan(20);
    expect(spec.numAcceptedTokens).toBeLessThan(spec.numDraftTokens); // some rollbacks happened
    expect(on.steps).toBeLessThan(off.steps);
    for (const spec1 of prompts(6)) {
      const alone = await runFake([spec1], SPEC);
      expect(alone.outputs[spec1.requestId!]).toEqual(off.outputs[spec1.requestId!]);
    }
    // Off by default: no drafts.
    expect(off.engine.metricsSummary().spec.numDrafts).toBe(0);
  });

  it('plans draft rows within the token budget and asks for their logits', async () => {
    const executor = new FakeExecutor({ repeatPeriod: 5 });
    executor.recordPlans = true;
    const engine = new Engine({ executor, clock: new VirtualClock(), config: { ...base, ...SPEC, maxNumBatchedTokens: 6 }, checkInvariants: true });
    for (const s of prompts(4)) engine.submit(s);
    await engine.runUntilIdle();
    let numWithDrafts = 0;
    for (const plan of executor.plans) {
      expect(plan.numBatchedTokens).toBeLessThanOrEqual(6);
      expect(plan.seqs.reduce((n, s) => n + s.tokenIds.length, 0)).toBe(plan.numBatchedTokens);
      for (const s of plan.seqs) {
        if ((s.numLogitRows ?? 1) > 1) {
          numWithDrafts++;
          expect(s.needsLogits).toBe(true);
          expect(s.tokenIds.length).toBe(s.numLogitRows);
          expect(s.numLogitRows! - 1).toBeLessThanOrEqual(4);
        }
      }
    }
    expect(numWithDrafts).toBeGreaterThan(10);
    // The step records carry each sequence's draft counts.
    const withDrafts = engine.stepsSince(0).flatMap((r) => r.seqs).filter((v) => (v.numDraftTokens ?? 0) > 0);
    expect(withDrafts.length).toBeGreaterThan(0);
    for (const v of withDrafts) expect(v.numAcceptedTokens!).toBeLessThanOrEqual(v.numDraftTokens!);
  });

  it("says in a waiting request's reason how much of the used-up budget went to draft tokens", async () => {
    // An exactly periodic stand-in: r0's every decode carries k = 4 drafts, using the whole budget of 5.
    const engine = new Engine({ executor: new FakeExecutor({ repeatPeriod: 3, repeatExact: true }), clock: new VirtualClock(), config: { ...base, ...SPEC, maxNumBatchedTokens: 5 }, checkInvariants: true });
    engine.submit({ requestId: 'r0', promptTokenIds: [1, 7, 8, 9, 7, 8, 9], maxTokens: 30 });
    for (let i = 0; i < 3; i++) await engine.step();
    engine.submit({ requestId: 'r1', promptTokenIds: [1, 4, 5], maxTokens: 4 });
    const r = await engine.step();
    expect(r.kind).toBe('ran');
    if (r.kind !== 'ran') return;
    expect(r.step.seqs).toEqual([expect.objectContaining({ requestId: 'r0', numDraftTokens: 4, numAcceptedTokens: 4 })]);
    expect(r.step.decisions.map((d) => d.reason)).toContain("r1 waits: the step's token budget (maxNumBatchedTokens 5) is used up, 4 of it by speculative draft tokens");
    await engine.runUntilIdle();
    expect(engine.getRequest('r1')!.state).toBe('finished');
  });

  it('rolls the KV back: rejected drafts leave no slots, blocks or cached hashes behind', async () => {
    const { engine } = await runFake(prompts(3), SPEC);
    // Invariants were checked after every step (checkInvariants); every block is free at the end.
    expect(engine.kvGauges().usage).toBe(0);
    const log = engine.eventLog.filter((e) => e.type === 'step');
    expect(log.some((e) => e.type === 'step' && (e.drafts ?? []).some(([, d, a]) => a < d))).toBe(true);
  });

  it('temperature > 0: a seed reproduces its run, another seed gives another one, and replay needs no executor', async () => {
    const a = await runFake(prompts(5, 0.9), SPEC, true);
    const b = await runFake(prompts(5, 0.9), SPEC, true);
    expect(b.engine.eventLog).toEqual(a.engine.eventLog);
    const other = prompts(5, 0.9).map((s) => ({ ...s, sampling: { ...s.sampling!, seed: (s.sampling!.seed ?? 0) + 1 } }));
    const c = await runFake(other, SPEC, true);
    expect(c.outputs).not.toEqual(a.outputs);
    expect(a.engine.metricsSummary().spec.numDrafts).toBeGreaterThan(10);
    const replayed = await replayEventLog(a.engine.eventLog, { config: { ...base, ...SPEC }, checkInvariants: true });
    expect(replayed.eventLog).toEqual(a.engine.eventLog);
    expect(replayed.metricsSummary().spec).toEqual(a.engine.metricsSummary().spec);
  });

  it('replays a greedy run with drafts, with speculation switched on mid-run', async () => {
    const engine = new Engine({ executor: new FakeExecutor({ repeatPeriod: 5 }), clock: new VirtualClock(), config: base, checkInvariants: true });
    for (const s of prompts(4)) engine.submit(s);
    for (let i = 0; i < 8; i++) await engine.step();
    engine.reconfigure(SPEC);
    await engine.runUntilIdle();
    expect(engine.metricsSummary().spec.numDrafts).toBeGreaterThan(0);
    const replayed = await replayEventLog(engine.eventLog, { config: base, checkInvariants: true });
    expect(replayed.eventLog).toEqual(engine.eventLog);
  });

  it('a saved run with drafts survives a JSON round trip and replays identically', async () => {
    const { engine } = await runFake(prompts(3, 0.7), SPEC, true);
    const run = makeSavedRun('spec', 'fake', engine.config, engine.eventLog);
    const parsed = parseImport(serializeRun(run));
    expect(parsed.kind).toBe('run');
    if (parsed.kind !== 'run') return;
    expect(parsed.run.events.some((e) => e.type === 'step' && (e.drafts?.length ?? 0) > 0)).toBe(true);
    expect((await replaySavedRun(parsed.run)).diff).toEqual({ equal: true, numEvents: engine.eventLog.length });
    // A tampered draft record (more accepted than drafted) is refused at import.
    const bad = JSON.parse(serializeRun(run)) as { events: { type: string; drafts?: number[][] }[] };
    const step = bad.events.find((e) => e.type === 'step' && e.drafts)!;
    step.drafts![0][2] = step.drafts![0][1] + 1;
    expect(() => parseImport(JSON.stringify(bad))).toThrow(/numAcceptedTokens/);
  });

  it('exports vLLM spec-decode counters, per position too, and keeps per-request acceptance', async () => {
    const { engine } = await runFake(prompts(4), SPEC);
    const s = engine.metricsSummary().spec;
    const text = engine.prometheus();
    expect(text).toContain(`vllm:spec_decode_num_drafts_total{model_name="fake (test double)"} ${s.numDrafts}`);
    expect(text).toContain(`vllm:spec_decode_num_draft_tokens_total{model_name="fake (test double)"} ${s.numDraftTokens}`);
    expect(text).toContain(`vllm:spec_decode_num_accepted_tokens_total{model_name="fake (test double)"} ${s.numAcceptedTokens}`);
    expect(text).toContain(`vllm:spec_decode_num_accepted_tokens_per_pos_total{model_name="fake (test double)",position="0"} ${s.acceptedPerPos[0]}`);
    expect(s.acceptedPerPos.reduce((a, b) => a + b, 0)).toBe(s.numAcceptedTokens);
    expect(s.draftsPerPos.reduce((a, b) => a + b, 0)).toBe(s.numDraftTokens);
    // Acceptance can only fall with position (a draft counts only if every one before it did).
    for (let i = 1; i < s.acceptedPerPos.length; i++) expect(s.acceptedPerPos[i]).toBeLessThanOrEqual(s.acceptedPerPos[i - 1]);
    expect(s.acceptanceRate).toBeCloseTo(s.numAcceptedTokens / s.numDraftTokens, 12);
    expect(s.meanAcceptedLength).toBeCloseTo(1 + s.numAcceptedTokens / s.numDrafts, 12);
    const perRequest = [...engine.requests()].reduce((n, r) => n + r.numAcceptedDraftTokens, 0);
    expect(perRequest).toBe(s.numAcceptedTokens);
    const view = engine.snapshot().requests.find((r) => r.requestId === 'r0')!;
    expect(view.numDraftTokens).toBeGreaterThan(0);
    // Generation counts tokens produced, not rows verified: the same figure as without speculation.
    const off = await runFake(prompts(4));
    expect(engine.metricsSummary().totalGenerationTokens).toBe(off.engine.metricsSummary().totalGenerationTokens);
    expect(engine.metricsSummary().totalGenerationTokens).toBeGreaterThan(100);
  });

  it('validates the settings under their names and lets them change live', () => {
    const bad = validateEngineConfig({ ...DEFAULT_SCHEDULER_CONFIG, speculativeMethod: 'eagle' as 'ngram', numSpeculativeTokens: 0, promptLookupMax: 2, promptLookupMin: 3 });
    expect(bad.map((p) => p.key).sort()).toEqual(['numSpeculativeTokens', 'promptLookupMin', 'speculativeMethod']);
    expect(DEFAULT_SCHEDULER_CONFIG.speculativeMethod).toBe('off');
    for (const k of ['speculativeMethod', 'numSpeculativeTokens', 'promptLookupMax', 'promptLookupMin'] as const) expect(LIVE_CONFIG_KEYS.has(k)).toBe(true);
  });
});

describe('KvCacheManager.truncate (the rollback)', () => {
  it('frees blocks that held only rejected positions, keeps the rest, and never drops committed blocks', () => {
    const kv = new KvCacheManager({ blockSize: 4, numGpuBlocks: 8, numCpuBlocks: 0, enablePrefixCaching: true });
    const seq = { seqId: 1, tokenIds: [1, 2, 3, 4, 5, 6], cacheKey: 0, blockHashes: [] as number[] };
    kv.allocateSlots(seq, 6);
    kv.commitComputed(seq, 5);
    kv.takeEvents();
    // Verify the last token plus 4 drafts: positions 5..9 -> 3 blocks.
    kv.allocateSlots(seq, 4);
    expect(kv.blockTable(1)).toHaveLength(3);
    const third = kv.blockTable(1)[2];
    // One draft accepted: 7 positions computed; the third block held only rejected ones.
    kv.truncate(seq, 7);
    expect(kv.blockTable(1)).toHaveLength(2);
    expect(kv.numSlots(1)).toBe(7);
    const events = kv.takeEvents();
    expect(events.filter((e: KvEvent) => e.type === 'freed').map((e) => (e as { blockId: number }).blockId)).toEqual([third]);
    kv.assertInvariants();
    expect(() => kv.truncate(seq, 3)).toThrow(/committed/);
    expect(() => kv.truncate(seq, 9)).toThrow();
  });
});

describe('verification rules', () => {
  const params = { temperature: 0, topP: 1, topK: 0, seed: 1 };
  it('greedy: accepts the matching prefix, then the target token; all accepted gives the bonus token', () => {
    const s = createSampler(params);
    const rows = [{ argmax: 5 }, { argmax: 6 }, { argmax: 9 }, { argmax: 4 }];
    expect(verifyDrafts(s, [5, 6, 7], rows)).toEqual({ tokens: [5, 6, 9], numAccepted: 2 });
    expect(verifyDrafts(s, [5, 6, 9], rows)).toEqual({ tokens: [5, 6, 9, 4], numAccepted: 3 });
    expect(verifyDrafts(s, [8, 6, 9], rows)).toEqual({ tokens: [5], numAccepted: 0 });
    expect(() => verifyDrafts(s, [1], rows)).toThrow();
  });

  it('rejection sampling: the tokens produced are distributed exactly as the target (chi-square on a made-up distribution)', () => {
    // Two positions over a 5-token vocabulary; the drafts are a likely token, then an unlikely one.
    const logits0 = new Float32Array([1.2, 0.3, -0.5, 2.0, 0.0]);
    const logits1 = new Float32Array([0.1, 1.5, 0.2, -1.0, 0.7]);
    const logits2 = new Float32Array([0.0, 0.0, 2.0, 0.0, 1.0]);
    const sampling = { temperature: 0.8, topP: 1, topK: 0, seed: 0 };
    const p0 = targetDistribution(createSampler({ ...sampling, seed: 1 }), logits0);
    const p1 = targetDistribution(createSampler({ ...sampling, seed: 1 }), logits1);
    const drafts = [3, 3];
    const N = 60_000;
    const first = new Array(5).fill(0);
    const second = new Array(5).fill(0);
    let numSecond = 0;
    for (let i = 0; i < N; i++) {
      const s = createSampler({ ...sampling, seed: 1000 + i });
      const r = verifyDrafts(s, drafts, [{ argmax: 3, logits: logits0 }, { argmax: 1, logits: logits1 }, { argmax: 2, logits: logits2 }]);
      first[r.tokens[0]]++;
      // Given the first token was the draft (3), the second token must follow p1.
      if (r.tokens[0] === 3) {
        second[r.tokens[1]]++;
        numSecond++;
      }
    }
    // Chi-square with 4 degrees of freedom: 18.47 is the 0.999 quantile.
    const chi2 = (counts: number[], p: Float64Array, n: number) => counts.reduce((acc, c, v) => acc + (c - n * p[v]) ** 2 / (n * p[v]), 0);
    expect(chi2(first, p0, N)).toBeLessThan(18.47);
    expect(chi2(second, p1, numSecond)).toBeLessThan(18.47);
    // Not vacuous: the draft is accepted about p0(3) of the time, and rejections do happen.
    expect(Math.abs(numSecond / N - p0[3])).toBeLessThan(0.01);
    // A distribution that is not the target fails the same test (uniform instead of p0).
    expect(chi2(first, new Float64Array(5).fill(0.2), N)).toBeGreaterThan(18.47);
  });

  it('rejection sampling is reproducible for a seed', () => {
    const rows = [{ argmax: 0, logits: new Float32Array([1, 1, 1]) }, { argmax: 0, logits: new Float32Array([1, 0, 1]) }];
    const a = Array.from({ length: 50 }, (_, i) => verifyDrafts(createSampler({ temperature: 1, topP: 1, topK: 0, seed: i + 1 }), [1], rows));
    const b = Array.from({ length: 50 }, (_, i) => verifyDrafts(createSampler({ temperature: 1, topP: 1, topK: 0, seed: i + 1 }), [1], rows));
    expect(b).toEqual(a);
    expect(new Set(a.map((r) => r.numAccepted)).size).toBe(2);
  });

  it('the target distribution follows top-k and top-p as the sampler does', () => {
    const logits = new Float32Array([3, 2, 1, 0]);
    const pk = targetDistribution(createSampler({ temperature: 1, topP: 1, topK: 2, seed: 1 }), logits);
    expect(pk[2]).toBe(0);
    expect(pk[3]).toBe(0);
    expect(pk[0] + pk[1]).toBeCloseTo(1, 12);
    const pp = targetDistribution(createSampler({ temperature: 1, topP: 0.5, topK: 0, seed: 1 }), logits);
    expect(pp[0]).toBeCloseTo(1, 12); // p(0) = 0.64 > 0.5 alone
  });
});

describe('speculative decoding on the CPU reference (the real model)', () => {
  it('a verification row gives bitwise the logits of a plain decode row', async () => {
    const { model } = builtin();
    const geometry = { blockSize: 16, numGpuBlocks: 8, numCpuBlocks: 0 };
    const sampling = { temperature: 1, topP: 1, topK: 0, seed: 1 };
    const tokens = [1, 403, 407, 261, 378, 306];
    const table = [0, 1];
    const slots = (start: number, n: number) => Array.from({ length: n }, (_, k) => start + k);
    const seq = (start: number, n: number, numLogitRows?: number) => ({
      seqId: 0, requestId: 'a', tokenIds: tokens.slice(start, start + n), startPosition: start, slots: slots(start, n), blockTable: table, needsLogits: true, sampling, ...(numLogitRows ? { numLogitRows } : {}),
    });
    const empty = { copies: [], swapOut: [], swapIn: [] };
    const plain = new CpuReferenceExecutor(model);
    plain.configure(geometry);
    await plain.execute({ stepIndex: 1, seqs: [seq(0, 3)], numBatchedTokens: 3, ...empty });
    const decoded: SeqOutput[] = [];
    for (let p = 3; p < 6; p++) decoded.push((await plain.execute({ stepIndex: p, seqs: [seq(p, 1)], numBatchedTokens: 1, ...empty })).outputs[0]);
    const verify = new CpuReferenceExecutor(model);
    verify.configure(geometry);
    await verify.execute({ stepIndex: 1, seqs: [seq(0, 3)], numBatchedTokens: 3, ...empty });
    const out = (await verify.execute({ stepIndex: 2, seqs: [seq(3, 3, 3)], numBatchedTokens: 3, ...empty })).outputs[0];
    expect(out.rows).toHaveLength(3);
    out.rows!.forEach((row, i) => {
      expect(row.argmax).toBe(decoded[i].argmax);
      expect(Buffer.from(row.logits!.buffer).equals(Buffer.from(decoded[i].logits!.buffer))).toBe(true);
    });
  });
});
