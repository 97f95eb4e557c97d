import { BinaryHeap } from './binary-heap.js';

interface Entry {
  value: Uint8Array;
  /** Absent: kept until deleted. */
  expiresAt: number | undefined;
}

/**
 * The memory store's kv records, with expiry (`KvWrite.ttlMs`): a record
 * past its time reads as absent at once, and `sweep` deletes those due,
 * from a heap ordered by expiry (stale heap entries are skipped).
 */
export class MemoryKv {
  private readonly entries = new Map<string, Entry>();
  private readonly expiries = new BinaryHeap<{ at: number; key: string; entry: Entry }>((a, b) => a.at < b.at);

  /** The live value (the store's own array: copy before handing it out). */
  get(key: string, now: number): Uint8Array | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    if (entry.expiresAt !== undefined && entry.expiresAt <= now) {
      this.entries.delete(key);
      return undefined;
    }
    return entry.value;
  }

  /** Keeps `value` (not copied: pass the store's own copy) until `expiresAt`, or until deleted. */
  set(key: string, value: Uint8Array, expiresAt: number | undefined): void {
    const entry: Entry = { value, expiresAt };
    this.entries.set(key, entry);
    if (expiresAt !== undefined) this.expiries.push({ at: expiresAt, key, entry });
  }

  delete(key: string): void {
    this.entries.delete(key);
  }

  /** Deletes every record due at `now`. */
  sweep(now: number): void {
    for (let top = this.expiries.peek(); top !== undefined && top.at <= now; top = this.expiries.peek()) {
      this.expiries.pop();
      if (this.entries.get(top.key) === top.entry) this.entries.delete(top.key);
    }
  }
}
