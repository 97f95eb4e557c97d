/** Durable hook delivery: the terminal commit enqueues the outcome; the hook runs as that job's worker, at least once. */
import { ENDS_AT_ONCE } from '../../core/settlement.js';
import { describe, expect, it } from 'vitest';
import { StepOutcome, WorkflowRuntime, decideSettlement, decodeOutcome, runKeys } from '../../core/index.js';
import type { RunOutcome, StepRunner } from '../../core/index.js';
import { OutcomeChannel, bytes, eventually, fastRetryStore, freshStore, startWorker, text } from '../support/harness.js';

const never: StepRunner = () => new Promise(() => undefined);

describe('durable hook delivery', () => {
  it('a terminal settlement enqueues the outcome in the same commit', () => {
    const decision = decideSettlement(
      {
        queueName: 'q',
        runId: 'r',
        stepNumber: 2,
        attempts: 1,
        maxAttempts: 3,
        priority: 1000,
        userHeaders: { a: 'b' },
        keys: runKeys('q', 'r'),
        nextJobId: 'N',
        maxPayloadBytes: 100,
        outcomeQueue: 'q.outcomes',
        reapedOutcomeQueue: 'q.outcomes',
        jobId: 'J',
        claimToken: 'T',
        workflow: undefined,
        payload: new Uint8Array(0),
        retryDelayMs: undefined,
        stepName: undefined,
        cancel: ENDS_AT_ONCE,
      },
      { ok: true, outcome: StepOutcome.succeed(bytes('res')) },
    );
    const [notification] = decision.settlement.effects!.enqueue!;
    expect(notification).toMatchObject({ queue: 'q.outcomes', options: { dedupKey: 'outcome:J' } });
    expect(decodeOutcome(notification!.payload)).toEqual({ runId: 'r', status: 'succeeded', result: bytes('res'), headers: { a: 'b' }, finalStep: 2 });
    const [cancelNotification] = decision.settlement.ifCancelRequested!.effects!.enqueue!;
    expect(decodeOutcome(cancelNotification!.payload)).toMatchObject({ status: 'cancelled' });
  });

  it('a failing hook is retried until it succeeds, and the notification is then gone', async () => {
    const { store, clock } = fastRetryStore();
    let calls = 0;
    const delivered: RunOutcome[] = [];
    const runtime = new WorkflowRuntime({
      store,
      clock,
      hookDelivery: 'durable',
      hookRetry: { initialDelayMs: 0 },
      runner: () => StepOutcome.succeed(bytes('ok')),
      hook: (outcome) => {
        if (++calls < 3) throw new Error('webhook down');
        delivered.push(outcome);
      },
    });
    const failures: unknown[] = [];
    runtime.on('hookFailed', (e) => failures.push(e.error));
    const worker = startWorker(runtime);
    const { runId } = await runtime.submit({ input: bytes('x') });
    await eventually(() => delivered.length === 1);
    await worker.stop();
    expect(calls).toBe(3);
    expect(failures).toHaveLength(2);
    expect(delivered[0]).toMatchObject({ runId, status: 'succeeded' });
    expect(text(delivered[0]!.result)).toBe('ok');
    // Each failed attempt is acked together with the enqueue of the next one.
    expect(await store.stats('workflow-steps.outcomes')).toEqual({ pending: 0, claimed: 0, scheduled: 0, dead: 0, done: 3 });
  });

  it('a runtime that dies while running the hook does not lose the notification', async () => {
    const { store, clock } = freshStore();
    let hookEntered = false;
    // The dying process's store calls never answer again (no more lease renewals).
    const dead = Object.create(store) as typeof store;
    dead.renewLease = () => new Promise(() => undefined);
    const dying = new WorkflowRuntime({
      store: dead,
      clock,
      hookDelivery: 'durable',
      maxConcurrentSteps: 1, // its one slot stays stuck in the hook
      runner: () => StepOutcome.succeed(bytes('ok')),
      hook: () => {
        hookEntered = true;
        return new Promise(() => undefined); // the process dies here
      },
    });
    startWorker(dying); // never stopped: its process dies in the hook
    const { runId } = await dying.submit({ input: bytes('x'), headers: { t: '1' } });
    await eventually(() => hookEntered);
    expect(await dying.status(runId), 'the run itself has ended').toBeUndefined();

    const hook = new OutcomeChannel();
    const survivor = new WorkflowRuntime({ store, clock, hookDelivery: 'durable', runner: never, hook: hook.hook });
    const survivorWorker = startWorker(survivor);
    clock.advance(35_000); // the notification's lease expires and it is re-delivered
    expect(await hook.next()).toEqual({ runId, status: 'succeeded', result: bytes('ok'), headers: { t: '1' }, finalStep: 0 });
    await survivorWorker.stop();
  });

  it('cancel of a pending run delivers its outcome through the notification queue', async () => {
    const { store, clock } = freshStore();
    const hook = new OutcomeChannel();
    const runtime = new WorkflowRuntime({ store, clock, hookDelivery: 'durable', runner: never, hook: hook.hook });
    const { runId } = await runtime.submit({ input: bytes('x'), headers: { tenant: 'acme' } });
    expect(await runtime.cancel(runId)).toBe(true);
    expect(hook.received, 'no in-process call: the worker delivers it').toHaveLength(0);
    const worker = startWorker(runtime);
    expect(await hook.next()).toEqual({ runId, status: 'cancelled', headers: { tenant: 'acme' }, finalStep: 0 });
    await worker.stop();
  });

  it('a run dead-lettered by the reaper is delivered durably too', async () => {
    const { store, clock } = freshStore();
    const hook = new OutcomeChannel();
    const runtime = new WorkflowRuntime({ store, clock, hookDelivery: 'durable', runner: never, hook: hook.hook });
    const { runId } = await runtime.submit({ input: bytes('x'), maxAttemptsPerStep: 1 });
    await store.claim('workflow-steps'); // a worker that crashed
    const worker = startWorker(runtime);
    clock.advance(35_000);
    expect(await hook.next()).toMatchObject({ runId, status: 'failed', error: 'lease expired' });
    await worker.stop();
    expect(hook.received).toHaveLength(1);
  });

  it('rejects an unknown delivery mode', () => {
    const { store } = freshStore();
    expect(() => new WorkflowRuntime({ store, runner: never, hookDelivery: 'carrier-pigeon' as never })).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
    );
  });
});
