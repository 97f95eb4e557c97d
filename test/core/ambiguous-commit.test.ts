/**
 * A commit whose reply is lost (the store committed, the caller saw a
 * transient error) with in-process hook delivery: the runtime reads the
 * run's ended receipt to learn whether its own commit ended the run, so
 * the hook runs exactly once, never zero times, never twice.
 */
import { describe, expect, it } from 'vitest';
import { StepOutcome, StoreUnavailableError, WorkflowRuntime } from '../../core/index.js';
import type { QueueStore, RunOutcome, Settlement, StepRunner } from '../../core/index.js';
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

async function settledHooks(hook: OutcomeChannel, expected: number): Promise<RunOutcome[]> {
  for (let i = 0; i < expected; i++) await hook.next(2_000);
  await new Promise((resolve) => setTimeout(resolve, 50)); // room for a second, wrong, hook
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
      const hooks = await settledHooks(hook, 1);
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
        await release.wait;
        return StepOutcome.succeed(bytes('late'));
      },
      hook: hook.hook,
    });
    const worker = startWorker(runtime);
    const { runId } = await runtime.submit({ input: bytes('x') });
    await eventually(() => started);
    expect(await runtime.cancel(runId)).toBe(true);
    release.open();
    const hooks = await settledHooks(hook, 1);
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
    const hooks = await settledHooks(hook, 1);
    expect(lost()).toBe(1);
    expect(hooks).toEqual([expect.objectContaining({ runId, status: 'succeeded', finalStep: 1 })]);
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
    const hooks = await settledHooks(hook, 1);
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
