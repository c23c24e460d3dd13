import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { planLayer, type LayerState } from '../../../src/ui/views/column-layer.ts';

interface Col {
  step: number;
}
const stepOf = (c: Col) => c.step;
const cols = (from: number, to: number, made = new Map<number, Col>()): Col[] => {
  const out: Col[] = [];
  for (let s = from; s <= to; s++) {
    let c = made.get(s);
    if (!c) made.set(s, (c = { step: s }));
    out.push(c);
  }
  return out;
};

describe("planLayer (the slot timeline's kept layer)", () => {
  it('after a step: shift by the steps that scrolled out, draw only the new columns', () => {
    const made = new Map<number, Col>();
    const prev: LayerState<Col> = { key: 'k', first: 1, cols: cols(1, 150, made) };
    // Two steps later, 150 columns in view: 2 scrolled out on the left, 2 new on the right.
    expect(planLayer(prev, { key: 'k', first: 3, cols: cols(3, 152, made) }, stepOf)).toEqual({ full: false, shift: 2, from: 148 });
    // The view not full yet: nothing scrolls, the new column is appended.
    const early: LayerState<Col> = { key: 'k', first: 1, cols: cols(1, 10, made) };
    expect(planLayer(early, { key: 'k', first: 1, cols: cols(1, 11, made) }, stepOf)).toEqual({ full: false, shift: 0, from: 10 });
    // Nothing new (a hover, a selection): nothing to draw.
    expect(planLayer(prev, { key: 'k', first: 1, cols: prev.cols }, stepOf)).toEqual({ full: false, shift: 0, from: 150 });
  });

  it('redraws everything when the geometry or colours change, the run restarts or a column is another object', () => {
    const made = new Map<number, Col>();
    const prev: LayerState<Col> = { key: 'k', first: 1, cols: cols(1, 20, made) };
    const full = { full: true, shift: 0, from: 0 };
    expect(planLayer(null, prev, stepOf)).toEqual(full);
    expect(planLayer(prev, { ...prev, key: 'other width' }, stepOf)).toEqual(full);
    // Scrubbed back: the first step in view went down.
    expect(planLayer({ ...prev, first: 5, cols: cols(5, 20, made) }, { key: 'k', first: 2, cols: cols(2, 20, made) }, stepOf)).toEqual(full);
    // A restarted run: the same steps, new column objects.
    expect(planLayer(prev, { key: 'k', first: 1, cols: cols(1, 21) }, stepOf)).toEqual(full);
    // Everything scrolled out at once.
    expect(planLayer(prev, { key: 'k', first: 40, cols: cols(40, 59, made) }, stepOf)).toEqual(full);
  });

  it('a layer kept across any sequence of updates holds what a full redraw would', () => {
    // A model of ColumnLayer.render: the layer is a row of cells, one per step from `first`;
    // the shift drops cells on the left, new columns are written from the first one drawn on.
    type Layer = Map<number, Col>; // x index (step - first) -> the column drawn there
    const render = (layer: Layer, prev: LayerState<Col> | null, next: LayerState<Col>): Layer => {
      const plan = planLayer(prev, next, stepOf);
      let out: Layer = new Map();
      if (!plan.full) {
        for (const [i, c] of layer) if (i - plan.shift >= 0) out.set(i - plan.shift, c);
        if (plan.from < next.cols.length) {
          const x0 = next.cols[plan.from].step - next.first;
          for (const i of [...out.keys()]) if (i >= x0) out.delete(i);
        }
      } else out = new Map();
      for (const c of plan.full ? next.cols : next.cols.slice(plan.from)) out.set(c.step - next.first, c);
      return out;
    };
    const update = fc.oneof(
      fc.record({ kind: fc.constant('steps' as const), n: fc.integer({ min: 0, max: 5 }) }),
      fc.record({ kind: fc.constant('restart' as const) }),
      fc.record({ kind: fc.constant('resize' as const), visible: fc.integer({ min: 10, max: 40 }) }),
    );
    fc.assert(
      fc.property(fc.array(update, { maxLength: 40 }), fc.integer({ min: 10, max: 40 }), (updates, visible0) => {
        let made = new Map<number, Col>();
        let last = 0;
        let numVisible = visible0;
        let key = `w${numVisible}`;
        let prev: LayerState<Col> | null = null;
        let layer: Layer = new Map();
        for (const u of updates) {
          if (u.kind === 'steps') last += u.n;
          else if (u.kind === 'restart') {
            made = new Map();
            last = Math.min(last, 3);
          } else {
            numVisible = u.visible;
            key = `w${numVisible}`;
          }
          if (last === 0) continue;
          const first = Math.max(1, last - numVisible + 1);
          const next: LayerState<Col> = { key, first, cols: cols(first, last, made) };
          layer = render(layer, prev, next);
          prev = next;
          const expected = new Map(next.cols.map((c) => [c.step - first, c] as const));
          expect(layer).toEqual(expected);
          for (const [i, c] of layer) expect(c).toBe(expected.get(i));
        }
      }),
    );
  });
});
