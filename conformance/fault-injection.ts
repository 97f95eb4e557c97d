/**
 * Seeded store faults for the workflow properties: a fault policy on the
 * testing kit's `InterceptingStore`, drawing from its PRNG (`createPrng`),
 * so the conformance suite and `simulate` share one wrapper and one random
 * source.
 */
import { StoreUnavailableError } from '../core/errors.js';
import type { QueueStore } from '../core/queue-store.js';
import { InterceptingStore } from '../testing/intercepting-store.js';
import type { StoreOp } from '../testing/intercepting-store.js';
import { createPrng } from '../testing/prng.js';
import type { Prng } from '../testing/prng.js';

const FAULTABLE = new Set<StoreOp>(['enqueue', 'claim', 'settle', 'renewLease', 'cancel', 'kvGet', 'kvDelete', 'getJob', 'deadJobs']);
/**
 * Calls that only fail *before* the store: a claim whose response is lost
 * is a lost delivery (the lease expires and an attempt is spent), which the
 * zombie property covers; here it would make the script's attempt numbers
 * unpredictable.
 */
const BEFORE_ONLY = new Set<StoreOp>(['claim']);

/**
 * Wraps a store so calls fail with `StoreUnavailableError` at a seeded rate,
 * half of them *before* the call reaches the store and half *after* it
 * committed (the caller sees an error for a write that happened; claims
 * excepted, see `BEFORE_ONLY`). The same seed and call sequence inject the
 * same faults.
 */
export class FaultInjectingStore {
  /** Faults injected so far, by kind. */
  readonly injected = { before: 0, after: 0 };
  enabled = true;
  private readonly prng: Prng;
  private readonly view: InterceptingStore;

  constructor(
    readonly inner: QueueStore,
    seed: number,
    private readonly rate: number,
  ) {
    this.prng = createPrng(seed);
    this.view = new InterceptingStore(inner, {
      before: (op) => {
        if (!this.enabled || !FAULTABLE.has(op)) return undefined;
        const roll = this.prng.next();
        if (roll < this.rate / 2) {
          this.injected.before++;
          throw new StoreUnavailableError(`injected fault before ${op}`);
        }
        return roll < this.rate && !BEFORE_ONLY.has(op) ? { kind: 'mark', mark: 'after' } : undefined;
      },
      after: (op, _args, _result, mark) => {
        if (mark !== 'after') return;
        this.injected.after++;
        throw new StoreUnavailableError(`injected fault after ${op} committed`);
      },
    });
  }

  /** The wrapped store, as a `QueueStore` (closing it leaves `inner` open). */
  asStore(): QueueStore {
    return this.view;
  }
}
