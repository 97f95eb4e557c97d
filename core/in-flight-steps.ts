/**
 * The steps whose runner is running, in an array with O(1) add and remove
 * (swap with the last). A `Map` keyed by job id grows and shrinks its table
 * as steps come and go, which allocated on every step; lookups by job id
 * (cancel notifications, rare) scan at most `maxConcurrentSteps` entries.
 */
export class InFlightSteps<T extends { readonly jobId: string; slot: number }> {
  private readonly items: T[] = [];

  add(item: T): void {
    item.slot = this.items.length;
    this.items.push(item);
  }

  remove(item: T): void {
    const last = this.items.pop() as T;
    if (last !== item) {
      this.items[item.slot] = last;
      last.slot = item.slot;
    }
    item.slot = -1;
  }

  find(jobId: string): T | undefined {
    for (const item of this.items) if (item.jobId === jobId) return item;
    return undefined;
  }

  values(): readonly T[] {
    return this.items;
  }
}
