/**
 * A broken store must fail the suite with a readable error, never hang it:
 * a store whose wake timer re-arms at the same instant (a timer storm inside
 * `ManualClock.advance`, which no test timeout can interrupt) and a store
 * call that never settles both end in an error naming the store operation.
 */
import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../../adapters/memory/index.js';
import { checkQueueStore, checkWorkflowProperties } from '../../conformance/index.js';
import type { ConformanceOptions, StoreContext } from '../../conformance/index.js';
import type { Claim, EnqueueOptions, EnqueueResult, KvWrite, Settlement, SettleResult, ClaimRef } from '../../core/queue-store.js';
import { ForwardingStore } from './mutants.js';

/** After its first enqueue, arms a wake timer that re-arms itself with no delay, forever. */
function timerStormStore(ctx: StoreContext): ForwardingStore {
  let armed = false;
  const rearmWakeTimer = (): void => {
    ctx.clock.setTimer(rearmWakeTimer, 0);
  };
  return new (class extends ForwardingStore {
    override async enqueue(queue: string, payload: Uint8Array, options?: EnqueueOptions, kvWrites?: KvWrite[]): Promise<EnqueueResult> {
      const result = await super.enqueue(queue, payload, options, kvWrites);
      if (!armed) {
        armed = true;
        ctx.clock.setTimer(rearmWakeTimer, 1);
      }
      return result;
    }
  })(new MemoryStore(ctx));
}

const never = <T>(): Promise<T> => new Promise<T>(() => undefined);

/** Every `operation` call after the first `after` ones never settles. */
function hangingStore(operation: 'claim' | 'settle', after: number): (ctx: StoreContext) => ForwardingStore {
  return (ctx) => {
    let calls = 0;
    return new (class extends ForwardingStore {
      override claim(queue: string, options?: { leaseMs?: number; limit?: number }): Promise<Claim[]> {
        if (operation === 'claim' && calls++ >= after) return never();
        return super.claim(queue, options);
      }
      override settle(claim: ClaimRef, settlement: Settlement): Promise<SettleResult> {
        if (operation === 'settle' && calls++ >= after) return never();
        return super.settle(claim, settlement);
      }
    })(new MemoryStore(ctx));
  };
}

async function failure(run: Promise<unknown>): Promise<Error> {
  const error = await run.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, 'the suite passed on a broken store').toBeInstanceOf(Error);
  return error as Error;
}

/** The message and every cause and aggregated error, as one text. */
function fullText(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const parts = [error.message];
  if (error.cause !== undefined) parts.push(fullText(error.cause));
  if (error instanceof AggregateError) parts.push(...error.errors.map(fullText));
  return parts.join('\n');
}

describe('a broken store fails the suite instead of hanging it', () => {
  it('timer storm in the workflow suite: a ConformanceError naming the storm, the latest store call and where the timer re-arms', async () => {
    const options: ConformanceOptions = { name: 'timer storm', createStore: timerStormStore, numRuns: 3, seed: 1 };
    const text = fullText(await failure(checkWorkflowProperties(options, 'plain', 1)));
    expect(text).toMatch(/timer storm in the store's timers \(latest store call: store\.\w+\(/);
    expect(text).toContain('ManualClock: more than 10000 timers fired at one instant');
    expect(text).toContain('rearmWakeTimer');
  });

  it('timer storm in the store-level examples: the failed checks say so', async () => {
    const options: ConformanceOptions = { name: 'timer storm', createStore: timerStormStore, numRuns: 3, seed: 1 };
    const error = await failure(checkQueueStore(options));
    expect(error.message).toMatch(/timer storm in the store's timers \(latest store call: store\.\w+\(/);
  });

  it('a store-level call that never settles: the first failed check names it; the rest fail at once', async () => {
    const options: ConformanceOptions = { name: 'hanging claim', createStore: hangingStore('claim', 0), numRuns: 3, seed: 1, storeCallTimeoutMs: 200 };
    const error = await failure(checkQueueStore(options));
    expect(error.message).toMatch(/store call claim\(.*\) never settled: no result and no error after 200 ms of wall time/);
    expect(error.message).toContain('not attempted: an earlier store call never settled');
  });

  it('a runtime store call that never settles in the workflow suite: named, not an endless drain', async () => {
    const options: ConformanceOptions = { name: 'hanging settle', createStore: hangingStore('settle', 2), numRuns: 3, seed: 1, storeCallTimeoutMs: 200 };
    const text = fullText(await failure(checkWorkflowProperties(options, 'plain', 1)));
    expect(text).toMatch(/store call settle\(.*\) never settled/);
  });
});
