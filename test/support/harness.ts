import { ManualClock } from '../../core/clock.js';
import type { RunOutcome } from '../../core/outcomes.js';
import type { WorkflowRuntime } from '../../core/runtime.js';
import { MemoryStore } from '../../adapters/memory/index.js';
import type { MemoryStoreOptions } from '../../adapters/memory/index.js';

export const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);
export const text = (value: Uint8Array | undefined): string | undefined => (value === undefined ? undefined : new TextDecoder().decode(value));

/** A fresh memory store on a manual clock. */
export function freshStore(options: MemoryStoreOptions = {}): { store: MemoryStore; clock: ManualClock } {
  const clock = (options.clock as ManualClock | undefined) ?? new ManualClock(Date.parse('2026-01-01T00:00:00Z'));
  return { store: new MemoryStore({ ...options, clock }), clock };
}

/** A store whose failed steps retry at once (the seed's `fresh_queue_fast_retry`). */
export function fastRetryStore(): { store: MemoryStore; clock: ManualClock } {
  return freshStore({ defaultQueueConfig: { retryBackoffBaseMs: 0 } });
}

/** Collects terminal outcomes; `next()` waits for the next one. */
export class OutcomeChannel {
  readonly received: RunOutcome[] = [];
  private waiters: Array<(o: RunOutcome) => void> = [];
  private read = 0;

  readonly hook = (outcome: RunOutcome): void => {
    this.received.push(outcome);
    const waiter = this.waiters.shift();
    if (waiter) {
      this.read++;
      waiter(outcome);
    }
  };

  /** The next outcome not yet read; fails after `failsafeMs` of real time (a hang, not a timing assumption). */
  next(failsafeMs = 10_000): Promise<RunOutcome> {
    const ready = this.received[this.read];
    if (ready) {
      this.read++;
      return Promise.resolve(ready);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no terminal outcome within ${failsafeMs} ms`)), failsafeMs);
      this.waiters.push((o) => {
        clearTimeout(timer);
        resolve(o);
      });
    });
  }
}

/** Starts `runtime.run()`; `stop()` aborts it and waits until in-flight steps settled. */
export function startWorker(runtime: WorkflowRuntime): { stop: () => Promise<void>; done: Promise<void> } {
  const controller = new AbortController();
  const done = runtime.run(controller.signal);
  return {
    done,
    stop: async () => {
      controller.abort();
      await done;
    },
  };
}

/** Polls `predicate` across macrotasks (no clock involved) until true; a hang fails after `failsafeMs`. */
export async function eventually<T>(predicate: () => T | undefined | false | Promise<T | undefined | false>, failsafeMs = 10_000): Promise<T> {
  const deadline = Date.now() + failsafeMs;
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() > deadline) throw new Error('condition not reached');
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/** A promise with its resolver, for gating runners. */
export function gate<T = void>(): { promise: Promise<T>; open: (value: T) => void } {
  let open!: (value: T) => void;
  const promise = new Promise<T>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}
