import { compareIds } from '../../core/ids.js';

/** A minimal binary min-heap. Used with lazy deletion: stale entries are skipped by the caller. */
export class BinaryHeap<T> {
  private readonly items: T[] = [];

  constructor(private readonly less: (a: T, b: T) => boolean) {}

  get size(): number {
    return this.items.length;
  }

  peek(): T | undefined {
    return this.items[0];
  }

  push(item: T): void {
    const items = this.items;
    items.push(item);
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(items[i] as T, items[parent] as T)) break;
      this.swap(i, parent);
      i = parent;
    }
  }

  pop(): T | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (items.length > 0 && last !== undefined) {
      items[0] = last;
      let i = 0;
      for (;;) {
        const left = 2 * i + 1;
        const right = left + 1;
        let smallest = i;
        if (left < items.length && this.less(items[left] as T, items[smallest] as T)) smallest = left;
        if (right < items.length && this.less(items[right] as T, items[smallest] as T)) smallest = right;
        if (smallest === i) break;
        this.swap(i, smallest);
        i = smallest;
      }
    }
    return top;
  }

  /** Without a destructuring swap, which allocates an array per move on this hot path. */
  private swap(i: number, j: number): void {
    const item = this.items[i] as T;
    this.items[i] = this.items[j] as T;
    this.items[j] = item;
  }
}

/** Sorted set of job ids in id order (`compareIds`; binary search), for id-ordered pages. */
export class SortedStringSet {
  private readonly items: string[] = [];

  get size(): number {
    return this.items.length;
  }

  add(value: string): void {
    const i = this.lowerBound(value);
    if (this.items[i] !== value) this.items.splice(i, 0, value);
  }

  delete(value: string): void {
    const i = this.lowerBound(value);
    if (this.items[i] === value) this.items.splice(i, 1);
  }

  /** Up to `limit` values strictly greater than `after` (all values when `after` is undefined). */
  page(after: string | undefined, limit: number): string[] {
    let start = after === undefined ? 0 : this.lowerBound(after);
    if (after !== undefined && this.items[start] === after) start++;
    return this.items.slice(start, start + limit);
  }

  private lowerBound(value: string): number {
    let lo = 0;
    let hi = this.items.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (compareIds(this.items[mid] as string, value) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
