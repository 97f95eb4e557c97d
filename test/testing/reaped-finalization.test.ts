/**
 * Runtime gaps the simulator found, reduced to deterministic reproductions,
 * kept as regression tests now that the runtime handles them.
 */
import { describe, expect, it } from 'vitest';
import { ManualClock, StoreUnavailableError, WorkflowRuntime, runKeys } from '../../core/index.js';
import type { RunOutcome } from '../../core/index.js';
import { MemoryStore } from '../../adapters/memory/index.js';
import { InterceptingStore } from '../../testing/intercepting-store.js';

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('runtime gaps found by simulate (regressions)', () => {
  // finalizeReapedStep (core/runtime.ts) used to give up on the first transient
  // store error: a run whose last attempt the reaper dead-lettered stayed
  // half-alive (records left, no hook, status "running") until a restart.
  it('a transient store error while finalizing a reaped run does not leave the run half-alive', async () => {
    const clock = new ManualClock();
    const store = new MemoryStore({ clock, backgroundMaintenance: false });
    let failNextIdentityDelete = true;
    const flaky = new InterceptingStore(store, {
      before: (op, args) => {
        // The step's renewals are lost (so its lease runs out), and the first
        // identity delete of the finalization meets a transient error.
        if (op === 'renewLease') throw new StoreUnavailableError('partition');
        if (op === 'kvDelete' && failNextIdentityDelete && String(args[0]).includes('/run/')) {
          failNextIdentityDelete = false;
          throw new StoreUnavailableError('connection reset');
        }
        return undefined;
      },
    });
    const outcomes: RunOutcome[] = [];
    const runtime = new WorkflowRuntime({ store: flaky, clock, runner: () => new Promise(() => undefined), hook: (o) => void outcomes.push(o) });
    void runtime.run(new AbortController().signal);
    const { runId } = await runtime.submit({ runId: 'reaped', input: new Uint8Array([1]), maxAttemptsPerStep: 1 });
    for (let i = 0; i < 5; i++) await tick();
    clock.advance(31_000);
    await store.reap(); // last attempt: dead-lettered, the runtime finalizes the run
    for (let i = 0; i < 5; i++) await tick();
    // Minutes later, with the store healthy again:
    for (let s = 0; s < 60; s++) {
      clock.advance(5_000);
      for (let i = 0; i < 3; i++) await tick();
    }
    expect(await store.kvGet(runKeys('workflow-steps', runId).cursor)).toBeUndefined();
    expect(await runtime.status(runId)).toBeUndefined();
    expect(outcomes).toEqual([expect.objectContaining({ runId, status: 'failed', error: 'lease expired' })]);
  });
});
