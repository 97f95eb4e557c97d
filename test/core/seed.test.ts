/**
 * Every test of the seed (`runtime.rs`), in TypeScript form, same names and
 * assertions. Deterministic: a manual clock, gates and event waits, no sleeps.
 */
import { describe, expect, it } from 'vitest';
import { HEADER_RUN_ID, HEADER_STEP, InputMismatchError, ReservedHeaderInSubmitError, StepError, StepOutcome, WorkflowRuntime } from '../../core/index.js';
import type { Step, StepRunner } from '../../core/index.js';
import { OutcomeChannel, bytes, eventually, fastRetryStore, freshStore, gate, startWorker, text } from '../support/harness.js';

/** Runner that executes a fixed list of step outcomes in order. */
function scripted(outcomes: StepOutcome[]): StepRunner {
  const script = [...outcomes];
  return () => {
    const next = script.shift();
    if (!next) throw new Error('script exhausted');
    return next;
  };
}

const never: StepRunner = () => new Promise(() => undefined);

describe('seed: runtime.rs', () => {
  it('single step succeeds and fires hook', async () => {
    const { store, clock } = freshStore();
    const hook = new OutcomeChannel();
    const runtime = new WorkflowRuntime({ store, clock, runner: scripted([StepOutcome.succeed(bytes('done'))]), hook: hook.hook });
    const worker = startWorker(runtime);
    const handle = await runtime.submit({ input: bytes('hello') });
    const outcome = await hook.next();
    expect(outcome.runId).toBe(handle.runId);
    expect(outcome.status).toBe('succeeded');
    expect(text(outcome.result)).toBe('done');
    expect(outcome.finalStep).toBe(0);
    expect(await runtime.status(handle.runId)).toBeUndefined();
    await worker.stop();
  });

  it('multi step run advances through continue', async () => {
    const { store, clock } = freshStore();
    const hook = new OutcomeChannel();
    const seen: Array<[number, string | undefined]> = [];
    const script = scripted([StepOutcome.continue(bytes('a')), StepOutcome.continue(bytes('b')), StepOutcome.succeed(bytes('final'))]);
    const runtime = new WorkflowRuntime({
      store,
      clock,
      runner: (step) => {
        seen.push([step.stepNumber, text(step.payload)]);
        return script(step);
      },
      hook: hook.hook,
    });
    const worker = startWorker(runtime);
    const handle = await runtime.submit({ input: bytes('start') });
    const outcome = await hook.next();
    expect(outcome.runId).toBe(handle.runId);
    expect(outcome.finalStep).toBe(2);
    expect(outcome.status).toBe('succeeded');
    expect(text(outcome.result)).toBe('final');
    expect(seen).toEqual([
      [0, 'start'],
      [1, 'a'],
      [2, 'b'],
    ]);
    await worker.stop();
  });

  it('permanent failure dead letters and fires hook', async () => {
    const { store, clock } = freshStore();
    const hook = new OutcomeChannel();
    const runtime = new WorkflowRuntime({
      store,
      clock,
      runner: () => {
        throw StepError.permanent('nope');
      },
      hook: hook.hook,
    });
    const worker = startWorker(runtime);
    const handle = await runtime.submit({ input: bytes('x') });
    const outcome = await hook.next();
    expect(outcome.runId).toBe(handle.runId);
    expect(outcome.status).toBe('failed');
    expect(outcome.error).toBe('nope');
    expect(await runtime.status(handle.runId)).toBeUndefined();
    await worker.stop();
    expect((await store.stats('workflow-steps')).dead).toBe(1);
  });

  it('fail outcome terminates run without dead letter', async () => {
    const { store, clock } = freshStore();
    const hook = new OutcomeChannel();
    const runtime = new WorkflowRuntime({ store, clock, runner: scripted([StepOutcome.fail('agent declined the task')]), hook: hook.hook });
    const worker = startWorker(runtime);
    const handle = await runtime.submit({ input: bytes('x') });
    const outcome = await hook.next();
    expect(outcome.runId).toBe(handle.runId);
    expect(outcome.status).toBe('failed');
    expect(outcome.error).toBe('agent declined the task');
    expect(await runtime.status(handle.runId)).toBeUndefined();
    await worker.stop();
    expect((await store.stats('workflow-steps')).dead).toBe(0);
  });

  it('duplicate submit in process with same input is idempotent', async () => {
    const { store, clock } = freshStore();
    // No worker: the run stays active.
    const runtime = new WorkflowRuntime({ store, clock, runner: never });
    const handle = await runtime.submit({ runId: 'fixed-id', input: bytes('same') });
    expect(handle.newlySubmitted).toBe(true);
    expect(await runtime.status(handle.runId)).toBeDefined();
    const again = await runtime.submit({ runId: 'fixed-id', input: bytes('same') });
    expect(again.runId).toBe('fixed-id');
    expect(again.newlySubmitted).toBe(false);
    expect((await store.stats('workflow-steps')).pending).toBe(1);
  });

  it('duplicate submit in process with different input errors', async () => {
    const { store, clock } = freshStore();
    const runtime = new WorkflowRuntime({ store, clock, runner: never });
    await runtime.submit({ runId: 'fixed-id', input: bytes('first') });
    const error = await runtime.submit({ runId: 'fixed-id', input: bytes('second') }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InputMismatchError);
    expect((error as InputMismatchError).code).toBe('INPUT_MISMATCH');
    expect((error as InputMismatchError).runId).toBe('fixed-id');
    expect((error as InputMismatchError).isPermanent).toBe(true);
  });

  it('duplicate submit across runtime restart with same input is idempotent', async () => {
    const { store, clock } = freshStore();
    const first = new WorkflowRuntime({ store, clock, runner: never });
    await first.submit({ runId: 'durable-id', input: bytes('payload') });
    // A fresh runtime on the same store knows the run only through the store.
    const second = new WorkflowRuntime({ store, clock, runner: never });
    const outcome = await second.submit({ runId: 'durable-id', input: bytes('payload') });
    expect(outcome.runId).toBe('durable-id');
    expect(outcome.newlySubmitted).toBe(false);
    expect((await store.stats('workflow-steps')).pending).toBe(1);
  });

  it('duplicate submit across runtime restart with different input errors', async () => {
    const { store, clock } = freshStore();
    await new WorkflowRuntime({ store, clock, runner: never }).submit({ runId: 'durable-id', input: bytes('original') });
    const second = new WorkflowRuntime({ store, clock, runner: never });
    const error = await second.submit({ runId: 'durable-id', input: bytes('changed') }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InputMismatchError);
    expect((error as InputMismatchError).runId).toBe('durable-id');
  });

  it('reserved header on submit is rejected', async () => {
    const { store, clock } = freshStore();
    const runtime = new WorkflowRuntime({ store, clock, runner: never });
    const error = await runtime.submit({ input: bytes('x'), headers: { 'workflow.step': '7' } }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ReservedHeaderInSubmitError);
    expect((error as ReservedHeaderInSubmitError).header).toBe('workflow.step');
    expect(await store.stats('workflow-steps')).toEqual({ pending: 0, claimed: 0, scheduled: 0, dead: 0, done: 0 });
  });

  it('user headers thread through to terminal hook', async () => {
    const { store, clock } = freshStore();
    const hook = new OutcomeChannel();
    const stepHeaders: Array<Record<string, string>> = [];
    const script = scripted([StepOutcome.continue(bytes('1')), StepOutcome.succeed(bytes('ok'))]);
    const runtime = new WorkflowRuntime({
      store,
      clock,
      runner: (step) => {
        stepHeaders.push({ ...step.headers });
        return script(step);
      },
      hook: hook.hook,
    });
    const worker = startWorker(runtime);
    await runtime.submit({ input: bytes('x'), headers: { trace_id: 'abc-123', tenant: 'acme' } });
    const outcome = await hook.next();
    expect(outcome.headers.trace_id).toBe('abc-123');
    expect(outcome.headers.tenant).toBe('acme');
    // Reserved keys must not leak through, to the hook or to the runner.
    expect(Object.keys(outcome.headers)).not.toContain(HEADER_RUN_ID);
    expect(Object.keys(outcome.headers)).not.toContain(HEADER_STEP);
    expect(stepHeaders).toEqual([
      { trace_id: 'abc-123', tenant: 'acme' },
      { trace_id: 'abc-123', tenant: 'acme' },
    ]);
    await worker.stop();
  });

  it('restart resumes at next step', async () => {
    const { store, clock } = freshStore();
    const step0 = gate<Uint8Array>();
    const runtimeA = new WorkflowRuntime({
      store,
      clock,
      maxConcurrentSteps: 1,
      runner: async (step) => {
        if (step.stepNumber === 0) return StepOutcome.continue(await step0.promise);
        return new Promise(() => undefined);
      },
    });
    const workerA = startWorker(runtimeA);
    const handle = await runtimeA.submit({ input: bytes('input') });
    const status = await eventually(async () => {
      const s = await runtimeA.status(handle.runId);
      return s?.state === 'running' ? s : undefined;
    });
    expect(status.state).toBe('running');
    expect(status.currentStep).toBe(0);
    // Shut A down first, then let step 0 finish inside the drain: A never claims step 1.
    const stopping = workerA.stop();
    step0.open(bytes('step1-payload'));
    await stopping;

    const hook = new OutcomeChannel();
    const seenByB: Step[] = [];
    const runtimeB = new WorkflowRuntime({
      store,
      clock,
      runner: (step) => {
        seenByB.push(step);
        return StepOutcome.succeed(bytes('resumed'));
      },
      hook: hook.hook,
    });
    const workerB = startWorker(runtimeB);
    const outcome = await hook.next();
    expect(outcome.runId).toBe(handle.runId);
    expect(outcome.status).toBe('succeeded');
    expect(text(outcome.result)).toBe('resumed');
    expect(outcome.finalStep).toBe(1);
    expect(seenByB.map((s) => [s.stepNumber, text(s.payload)])).toEqual([[1, 'step1-payload']]);
    await workerB.stop();
  });

  async function assertTransientRetriesUntilMax(maxAttempts: number): Promise<void> {
    const { store, clock } = fastRetryStore();
    const hook = new OutcomeChannel();
    let calls = 0;
    const runtime = new WorkflowRuntime({
      store,
      clock,
      runner: () => {
        calls++;
        throw StepError.transient('flaky');
      },
      hook: hook.hook,
    });
    const worker = startWorker(runtime);
    await runtime.submit({ input: bytes('x'), maxAttemptsPerStep: maxAttempts });
    const outcome = await hook.next();
    expect(outcome.status).toBe('failed');
    expect(outcome.error).toBe('flaky');
    await worker.stop();
    expect(calls, 'runner called once per attempt up to maxAttempts').toBe(maxAttempts);
    // The worker has drained: any second hook would be here by now.
    expect(hook.received, 'hook fired more than once').toHaveLength(1);
    expect((await store.stats('workflow-steps')).dead).toBe(1);
  }

  it('cancel outcome terminates run without dead letter', async () => {
    const { store, clock } = freshStore();
    const hook = new OutcomeChannel();
    const runtime = new WorkflowRuntime({ store, clock, runner: scripted([StepOutcome.cancel('upstream aborted')]), hook: hook.hook });
    const worker = startWorker(runtime);
    const handle = await runtime.submit({ input: bytes('x') });
    const outcome = await hook.next();
    expect(outcome.runId).toBe(handle.runId);
    expect(outcome.status).toBe('cancelled');
    expect(outcome.error).toBe('upstream aborted');
    expect(await runtime.status(handle.runId)).toBeUndefined();
    await worker.stop();
    expect((await store.stats('workflow-steps')).dead).toBe(0);
  });

  it('cancel pending run fires cancelled hook', async () => {
    const { store, clock } = freshStore();
    const hook = new OutcomeChannel();
    let ran = false;
    const runtime = new WorkflowRuntime({
      store,
      clock,
      runner: () => {
        ran = true;
        return StepOutcome.succeed(bytes('no'));
      },
      hook: hook.hook,
    });
    // No worker: the step stays pending.
    const handle = await runtime.submit({ input: bytes('x'), headers: { tenant: 'acme' } });
    const status = await runtime.status(handle.runId);
    expect(status?.state).toBe('pending');
    expect(await runtime.cancel(handle.runId)).toBe(true);
    // The hook fired before cancel returned.
    expect(hook.received).toHaveLength(1);
    const outcome = await hook.next();
    expect(outcome.runId).toBe(handle.runId);
    expect(outcome.status).toBe('cancelled');
    expect(outcome.error).toBeUndefined();
    expect(outcome.headers.tenant).toBe('acme');
    expect(await runtime.status(handle.runId)).toBeUndefined();
    const stats = await store.stats('workflow-steps');
    expect(stats.dead, 'cancel must not dead-letter').toBe(0);
    expect(stats.pending, 'cancelled job must be removed').toBe(0);
    expect(ran).toBe(false);
  });

  it('cancel during running step overrides outcome', async () => {
    const { store, clock } = freshStore();
    const hook = new OutcomeChannel();
    const release = gate();
    const started = gate();
    const runtime = new WorkflowRuntime({
      store,
      clock,
      runner: async () => {
        started.open();
        await release.promise; // ignores the signal on purpose
        return StepOutcome.succeed(bytes('would-have-succeeded'));
      },
      hook: hook.hook,
    });
    const worker = startWorker(runtime);
    const handle = await runtime.submit({ input: bytes('x') });
    await started.promise;
    expect(await runtime.cancel(handle.runId)).toBe(true);
    release.open();
    const outcome = await hook.next();
    expect(outcome.status).toBe('cancelled');
    expect(outcome.result, 'cancelled run must not carry the runner result').toBeUndefined();
    expect(outcome.error).toBeUndefined();
    expect(await runtime.status(handle.runId)).toBeUndefined();
    await worker.stop();
    expect((await store.stats('workflow-steps')).dead).toBe(0);
  });

  async function assertCancelSuppressesRunnerError(error: StepError): Promise<void> {
    const { store, clock } = fastRetryStore();
    const hook = new OutcomeChannel();
    const release = gate();
    const started = gate();
    let calls = 0;
    const runtime = new WorkflowRuntime({
      store,
      clock,
      runner: async () => {
        calls++;
        started.open();
        await release.promise;
        throw error;
      },
      hook: hook.hook,
    });
    const worker = startWorker(runtime);
    const handle = await runtime.submit({ input: bytes('x') });
    await started.promise;
    expect(await runtime.cancel(handle.runId)).toBe(true);
    release.open();
    const outcome = await hook.next();
    expect(outcome.status).toBe('cancelled');
    expect(outcome.error, 'external cancel carries no reason').toBeUndefined();
    expect(await runtime.status(handle.runId)).toBeUndefined();
    await worker.stop();
    expect(calls, 'cancellation must suppress the retry').toBe(1);
    const stats = await store.stats('workflow-steps');
    expect(stats.dead, 'cancellation must suppress dead-letter').toBe(0);
    expect(stats.pending + stats.scheduled + stats.claimed, 'no job left behind').toBe(0);
    expect(hook.received).toHaveLength(1);
  }

  it('cancel suppresses permanent runner error', async () => {
    await assertCancelSuppressesRunnerError(StepError.permanent('would-dead-letter'));
  });

  it('cancel suppresses transient runner error', async () => {
    await assertCancelSuppressesRunnerError(StepError.transient('would-retry'));
  });

  it('cancel signals step token for cooperative short circuit', async () => {
    const { store, clock } = freshStore();
    const hook = new OutcomeChannel();
    const started = gate();
    const runtime = new WorkflowRuntime({
      store,
      clock,
      runner: async (step) => {
        started.open();
        // Would wait 30 s of clock time; the abort short-circuits it.
        await new Promise<void>((resolve) => {
          const cancelTimer = clock.setTimer(resolve, 30_000);
          step.signal.addEventListener('abort', () => {
            cancelTimer();
            resolve();
          });
        });
        return step.signal.aborted ? StepOutcome.cancel('cooperative') : StepOutcome.succeed(bytes('slept'));
      },
      hook: hook.hook,
    });
    const worker = startWorker(runtime);
    const handle = await runtime.submit({ input: bytes('x') });
    await started.promise;
    const before = clock.now();
    expect(await runtime.cancel(handle.runId)).toBe(true);
    const outcome = await hook.next();
    expect(clock.now() - before, 'cooperative cancel must short-circuit the 30 s sleep').toBeLessThan(2_000);
    expect(outcome.status).toBe('cancelled');
    expect(outcome.error).toBe('cooperative');
    expect(await runtime.status(handle.runId)).toBeUndefined();
    await worker.stop();
    expect((await store.stats('workflow-steps')).dead).toBe(0);
  });

  it('double cancel fires hook once and second call returns false', async () => {
    const { store, clock } = freshStore();
    const hook = new OutcomeChannel();
    const runtime = new WorkflowRuntime({
      store,
      clock,
      runner: () => {
        throw new Error('worker must not claim the cancelled step');
      },
      hook: hook.hook,
    });
    const handle = await runtime.submit({ input: bytes('x') });
    expect(await runtime.cancel(handle.runId), 'first cancel initiates termination').toBe(true);
    expect(await runtime.cancel(handle.runId), 'second cancel reports false').toBe(false);
    expect(hook.received, 'hook must fire exactly once').toHaveLength(1);
  });

  it('cancel after run already terminated returns false', async () => {
    const { store, clock } = freshStore();
    const hook = new OutcomeChannel();
    const runtime = new WorkflowRuntime({ store, clock, runner: scripted([StepOutcome.succeed(bytes('done'))]), hook: hook.hook });
    const worker = startWorker(runtime);
    const handle = await runtime.submit({ input: bytes('x') });
    const outcome = await hook.next();
    expect(outcome.status).toBe('succeeded');
    expect(await runtime.status(handle.runId)).toBeUndefined();
    expect(await runtime.cancel(handle.runId), 'cancel on an ended run reports false').toBe(false);
    await worker.stop();
    expect(hook.received, 'no cancelled hook after the run ended').toHaveLength(1);
  });

  it('status reports cancelling while termination in flight', async () => {
    const { store, clock } = freshStore();
    const hook = new OutcomeChannel();
    const started = gate();
    const release = gate();
    const runtime = new WorkflowRuntime({
      store,
      clock,
      runner: async () => {
        started.open();
        await release.promise;
        return StepOutcome.succeed(bytes('would-have-succeeded'));
      },
      hook: hook.hook,
    });
    const worker = startWorker(runtime);
    const handle = await runtime.submit({ input: bytes('x') });
    await started.promise;
    expect((await runtime.status(handle.runId))?.state).toBe('running');
    await runtime.cancel(handle.runId);
    expect((await runtime.status(handle.runId))?.state).toBe('cancelling');
    release.open();
    const outcome = await hook.next();
    expect(outcome.status).toBe('cancelled');
    expect(await runtime.status(handle.runId)).toBeUndefined();
    await worker.stop();
  });

  it('cancel unknown run returns false', async () => {
    const { store, clock } = freshStore();
    const runtime = new WorkflowRuntime({ store, clock, runner: never });
    expect(await runtime.cancel('never-submitted')).toBe(false);
  });

  it('transient fires once on single attempt', async () => {
    await assertTransientRetriesUntilMax(1);
  });

  it('transient retries up to max attempts', async () => {
    await assertTransientRetriesUntilMax(3);
  });
});
