/**
 * A commit whose reply is lost (the store committed, the caller saw a
 * transient error) with in-process hook delivery: the runtime reads the
 * run's ended receipt to learn whether its own commit ended the run, so
 * the hook runs exactly once, never zero times, never twice.
 */
import { describe, expect, it } from 'vitest';
import { SettlementUncertainError, StepOutcome, StoreUnavailableError, WorkflowRuntime, runKeys } from '../../core/index.js';
import { encodeReceipt } from '../../core/run-records.js';
import type { ManualClock, QueueStore, RunOutcome, Settlement, StepRunner } from '../../core/index.js';
import { OutcomeChannel, bytes, eventually, freshStore, gate, startWorker } from '../support/harness.js';

/** A view of `store` whose next `count` settles (or cancels) commit and then report a lost connection. */
function losingReplies(store: QueueStore, op: 'settle' | 'cancel', count = 1): { store: QueueStore; lost: () => number } {
  let remaining = count;
  let lost = 0;
  const view = Object.create(store) as QueueStore;
  const hide = <T>(result: T): T => {
    if (remaining-- > 0) {
      lost++;
      throw new StoreUnavailableError('connection reset after the commit');
    }
    return result;
  };
  if (op === 'settle') view.settle = async (claim, settlement: Settlement) => hide(await store.settle(claim, settlement));
  else view.cancel = async (jobId, effects) => hide(await store.cancel(jobId, effects));
  return { store: view, lost: () => lost };
}

/** Moves the clock (retries back off on it) until `expected` hooks ran, then a while more for a wrong extra one. */
async function settledHooks(hook: OutcomeChannel, clock: ManualClock, expected: number): Promise<RunOutcome[]> {
  for (let round = 0; round < 200 && hook.received.length < expected; round++) {
    clock.advance(50);
    await new Promise((resolve) => setImmediate(resolve));
  }
  for (let round = 0; round < 20; round++) {
    clock.advance(100);
    await new Promise((resolve) => setImmediate(resolve));
  }
  return hook.received;
}

describe('a settle reply lost after the commit', () => {
  for (const [what, runner, expected] of [
    ['succeed', (() => StepOutcome.succeed(bytes('done'))) as StepRunner, { status: 'succeeded', result: bytes('done') }],
    ['fail', (() => StepOutcome.fail('no stock')) as StepRunner, { status: 'failed', error: 'no stock' }],
  ] as const) {
    it(`the run's hook still runs once (${what})`, async () => {
      const { store: inner, clock } = freshStore();
      const { store, lost } = losingReplies(inner, 'settle');
      const hook = new OutcomeChannel();
      const runtime = new WorkflowRuntime({ store, clock, runner, hook: hook.hook });
      const worker = startWorker(runtime);
      const { runId } = await runtime.submit({ input: bytes('x') });
      const hooks = await settledHooks(hook, clock, 1);
      expect(lost()).toBe(1);
      expect(hooks).toEqual([expect.objectContaining({ runId, ...expected })]);
      await worker.stop();
    });
  }

  it('the cancel branch it committed (a cancel requested while the step ran) ends the run cancelled, hook once', async () => {
    const { store: inner, clock } = freshStore();
    const { store } = losingReplies(inner, 'settle');
    const hook = new OutcomeChannel();
    const release = gate();
    let started = false;
    const runtime = new WorkflowRuntime({
      store,
      clock,
      // Ignores its signal, so the settlement it returns is the one that meets the cancel flag.
      runner: async () => {
        started = true;
        await release.promise;
        return StepOutcome.succeed(bytes('late'));
      },
      hook: hook.hook,
    });
    const worker = startWorker(runtime);
    const { runId } = await runtime.submit({ input: bytes('x') });
    await eventually(() => started);
    expect(await runtime.cancel(runId)).toBe(true);
    release.open();
    const hooks = await settledHooks(hook, clock, 1);
    expect(hooks).toEqual([expect.objectContaining({ runId, status: 'cancelled' })]);
    await worker.stop();
  });

  it('a continue whose reply was lost runs no hook for it: the run goes on and ends once', async () => {
    const { store: inner, clock } = freshStore();
    const { store, lost } = losingReplies(inner, 'settle');
    const hook = new OutcomeChannel();
    const runtime = new WorkflowRuntime({
      store,
      clock,
      runner: (step) => (step.stepNumber === 0 ? StepOutcome.continue(bytes('next')) : StepOutcome.succeed(bytes('end'))),
      hook: hook.hook,
    });
    const worker = startWorker(runtime);
    const { runId } = await runtime.submit({ input: bytes('x') });
    const hooks = await settledHooks(hook, clock, 1);
    expect(lost()).toBe(1);
    expect(hooks).toEqual([expect.objectContaining({ runId, status: 'succeeded', finalStep: 1 })]);
    await worker.stop();
  });
});

describe('a settle that did not commit, where another delivery of the same job ended the run meanwhile', () => {
  it('runs no hook: the receipt names the other delivery, whose process runs it', async () => {
    const { store: inner, clock } = freshStore();
    let first = true;
    const store = Object.create(inner) as QueueStore;
    store.settle = async (claim, settlement) => {
      if (!first) return inner.settle(claim, settlement);
      first = false;
      // Another delivery of this job (after a lease expiry) settled it and ended the run; this attempt fails.
      const keys = runKeys('workflow-steps', 'r-other');
      await inner.settle(claim, { action: { type: 'ack' }, effects: { kvDeletes: [keys.identity, keys.cursor] } });
      await inner.enqueue('scratch', bytes(''), {}, [
        { key: keys.ended, value: encodeReceipt({ jobId: claim.jobId, delivery: 'another-delivery', how: 'primary' }), ttlMs: 60_000 },
      ]);
      throw new StoreUnavailableError('connection reset before the commit');
    };
    const hook = new OutcomeChannel();
    const errors: unknown[] = [];
    const runtime = new WorkflowRuntime({ store, clock, runner: () => StepOutcome.succeed(bytes('mine')), hook: hook.hook });
    runtime.on('storeError', (e) => errors.push(e.error));
    const worker = startWorker(runtime);
    await runtime.submit({ runId: 'r-other', input: bytes('x') });
    expect(await settledHooks(hook, clock, 0)).toEqual([]);
    expect(errors.some((e) => e instanceof SettlementUncertainError)).toBe(true);
    await worker.stop();
  });
});

describe('a cancel reply lost after the removal committed', () => {
  it('cancel() still reports the run cancelled and runs its hook once', async () => {
    const { store: inner, clock } = freshStore();
    const { store, lost } = losingReplies(inner, 'cancel');
    const hook = new OutcomeChannel();
    const runtime = new WorkflowRuntime({ store, clock, hook: hook.hook });
    const { runId } = await runtime.submit({ input: bytes('x'), headers: { tenant: 'acme' } });
    expect(await runtime.cancel(runId)).toBe(true);
    expect(lost()).toBe(1);
    const hooks = await settledHooks(hook, clock, 1);
    expect(hooks).toEqual([expect.objectContaining({ runId, status: 'cancelled', headers: { tenant: 'acme' } })]);
    expect(await runtime.status(runId)).toBeUndefined();
  });

  it('a cancel that failed before committing still throws, and changes nothing', async () => {
    const { store: inner, clock } = freshStore();
    const store = Object.create(inner) as QueueStore;
    store.cancel = () => Promise.reject(new StoreUnavailableError('down'));
    const hook = new OutcomeChannel();
    const runtime = new WorkflowRuntime({ store, clock, hook: hook.hook });
    const { runId } = await runtime.submit({ input: bytes('x') });
    await expect(runtime.cancel(runId)).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    expect(await runtime.status(runId)).toMatchObject({ state: 'pending' });
    expect(hook.received).toEqual([]);
  });
});
