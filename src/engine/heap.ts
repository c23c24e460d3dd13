/**
 * A binary heap over the caller's order (`less`): the engine's pending arrivals and the policies'
 * waiting queues. `remove` is O(n) (cancellations and timeouts only).
 */
export class Heap<T> {
  private readonly items: T[] = [];
  constructor(private readonly less: (a: T, b: T) => boolean) {}
  get size(): number {
    return this.items.length;
  }
  peek(): T | undefined {
    return this.items[0];
  }
  push(x: T): void {
    this.items.push(x);
    this.up(this.items.length - 1);
  }
  pop(): T | undefined {
    const top = this.items[0];
    const last = this.items.pop();
    if (this.items.length > 0 && last !== undefined) {
      this.items[0] = last;
      this.down(0);
    }
    return top;
  }
  remove(x: T): boolean {
    const i = this.items.indexOf(x);
    if (i < 0) return false;
    const last = this.items.pop()!;
    if (i < this.items.length) {
      this.items[i] = last;
      this.down(i);
      this.up(i);
    }
    return true;
  }
  /** Replaces the contents with `xs` (O(n)). */
  rebuild(xs: readonly T[]): void {
    this.items.length = 0;
    for (const x of xs) this.items.push(x);
    for (let i = (this.items.length >> 1) - 1; i >= 0; i--) this.down(i);
  }
  values(): readonly T[] {
    return this.items;
  }
  private up(i: number): void {
    const a = this.items;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(a[i], a[p])) break;
      [a[i], a[p]] = [a[p], a[i]];
      i = p;
    }
  }
  private down(i: number): void {
    const a = this.items;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < a.length && this.less(a[l], a[m])) m = l;
      if (r < a.length && this.less(a[r], a[m])) m = r;
      if (m === i) break;
      [a[i], a[m]] = [a[m], a[i]];
      i = m;
    }
  }
}
