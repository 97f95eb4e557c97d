/** Runtime behaviour beyond the seed tests: status and cancel across runtimes, reaped and stale runs, bad input, edges. */
import { describe, expect, it } from 'vitest';
import { StepError, StepOutcome, WorkflowRuntime } from '../../core/index.js';
import type { QueueStore, RunOutcome, Step, StepRunner } from '../../core/index.js';
import { OutcomeChannel, bytes, eventually, fastRetryStore, freshStore, gate, startWorker, text } from '../support/harness.js';

const never: StepRunner = () => new Promise(() => undefined);
const EMPTY = { pending: 0, claimed: 0, scheduled: 0, dead: 0, done: 0 };

describe('runs are shared through the store', () => {
  it('status and cancel work from a runtime that did not submit the run', async () => {
    const { store, clock } = freshStore();
    const hook = new OutcomeChannel();
    const submitter = new WorkflowRuntime({ store, clock, runner: never });
    const other = new WorkflowRuntime({ store, clock, runner: never, hook: hook.hook });
    const { runId } = await submitter.submit({ input: bytes('x'), headers: { tenant: 't' } });
    expect(await other.status(runId)).toEqual({ runId, state: 'pending', currentStep: 0 });
    expect(await other.cancel(runId)).toBe(true);
    expect(hook.received).toEqual([{ runId, status: 'cancelled', headers: { tenant: 't' }, finalStep: 0 }]);
    expect(await submitter.status(runId)).toBeUndefined();
    expect(await store.stats('workflow-steps')).toEqual(EMPTY);
  });

  it('a cancel of a running step reaches the worker of another runtime', async () => {
    const { store, clock } = freshStore();
    const hook = new OutcomeChannel();
    const started = gate<Step>();
    const worker = new WorkflowRuntime({
      store,
      clock,
      runner: async (step) => {
        started.open(step);
        await new Promise((resolve) => step.signal.addEventListener('abort', resolve));
        return StepOutcome.succeed(bytes('ignored'));
      },
      hook: hook.hook,
    });
    const running = startWorker(worker);
    const client = new WorkflowRuntime({ store, clock, runner: never });
    const { runId } = await client.submit({ input: bytes('x') });
    const step = await started.promise;
    expect(await client.status(runId)).toMatchObject({ state: 'running' });
    expect(await client.cancel(runId)).toBe(true);
    expect(await client.cancel(runId), 'a second cancel reports false').toBe(false);
    const outcome = await hook.next();
    expect(step.signal.aborted).toBe(true);
    expect(outcome).toMatchObject({ runId, status: 'cancelled' });
    await running.stop();
    expect(hook.received).toHaveLength(1);
  });

  it('a cancellation survives a restart: the re-delivered step starts aborted and the run ends cancelled', async () => {
    const { store, clock } = freshStore();
    const client = new WorkflowRuntime({ store, clock, runner: never });
    const { runId } = await client.submit({ input: bytes('x') });
    // A worker that crashed mid-step: it claimed the job and will never settle or renew.
    const [claim] = await store.claim('workflow-steps');
    expect(claim).toBeDefined();
    expect(await client.cancel(runId)).toBe(true);
    expect((await client.status(runId))?.state).toBe('cancelling');
    clock.advance(35_000); // lease (30 s) expires; the reaper puts the step back with its cancel flag

    const hook = new OutcomeChannel();
    const seen: Step[] = [];
    const restarted = new WorkflowRuntime({
      store,
      clock,
      runner: (step) => {
        seen.push(step);
        return StepOutcome.succeed(bytes('would-succeed'));
      },
      hook: hook.hook,
    });
    const running = startWorker(restarted);
    const outcome = await hook.next();
    await running.stop();
    expect(seen).toHaveLength(1);
    expect(seen[0]!.signal.aborted).toBe(true);
    expect(seen[0]!.attempts).toBe(2);
    expect(outcome).toEqual({ runId, status: 'cancelled', headers: {}, finalStep: 0 });
    expect(await store.stats('workflow-steps')).toMatchObject({ pending: 0, claimed: 0, dead: 0 });
  });

  it('cancel follows a run that advanced while the cancel was in flight', async () => {
    const { store, clock } = freshStore();
    const hook = new OutcomeChannel();
    const step0 = gate();
    const step1Started = gate<Step>();
    const runtime = new WorkflowRuntime({
      store,
      clock,
      maxConcurrentSteps: 1,
      runner: async (step) => {
        if (step.stepNumber === 0) {
          await step0.promise;
          return StepOutcome.continue(bytes('next'));
        }
        step1Started.open(step);
        await new Promise((resolve) => step.signal.addEventListener('abort', resolve));
        return StepOutcome.succeed(bytes('finished anyway'));
      },
      hook: hook.hook,
    });
    // Let step 0 settle (and step 1 start) after cancel has read the cursor but before its store call lands.
    const raced: QueueStore = Object.create(store) as QueueStore;
    let first = true;
    raced.cancel = async (jobId, effects) => {
      if (first) {
        first = false;
        step0.open();
        await step1Started.promise;
      }
      return store.cancel(jobId, effects);
    };
    const client = new WorkflowRuntime({ store: raced, clock, runner: never });
    const running = startWorker(runtime);
    const { runId } = await runtime.submit({ input: bytes('x') });
    await eventually(async () => (await runtime.status(runId))?.state === 'running');
    expect(await client.cancel(runId)).toBe(true);
    const outcome = await hook.next();
    expect(outcome).toMatchObject({ runId, status: 'cancelled', finalStep: 1 });
    await running.stop();
  });

  it('a run whose last attempt the reaper dead-letters ends failed with "lease expired"', async () => {
    const { store, clock } = freshStore();
    const hook = new OutcomeChannel();
    const runtime = new WorkflowRuntime({ store, clock, runner: never, hook: hook.hook });
    const { runId } = await runtime.submit({ input: bytes('x'), headers: { k: 'v' }, maxAttemptsPerStep: 1 });
    // A crashed worker elsewhere holds the only attempt.
    await store.claim('workflow-steps');
    const running = startWorker(runtime);
    clock.advance(35_000);
    const outcome = await hook.next();
    expect(outcome).toEqual({ runId, status: 'failed', error: 'lease expired', headers: { k: 'v' }, finalStep: 0 });
    expect(await runtime.status(runId)).toBeUndefined();
    await running.stop();
    expect(hook.received).toHaveLength(1);
  });

  it("a reaped run ends in the reaper's commit, even where no worker loop runs; its hook fires once, wherever a worker loop runs", async () => {
    const { store, clock } = freshStore();
    // A process that only submits: no worker loop, but its store reaps.
    const client = new WorkflowRuntime({ store, clock, runner: never });
    const ended: RunOutcome[] = [];
    const { runId } = await client.submit({ input: bytes('x'), maxAttemptsPerStep: 1 });
    await store.claim('workflow-steps');
    clock.advance(35_000);
    expect((await store.stats('workflow-steps')).dead).toBe(1);
    // Ended at once, durably: no runtime had to notice.
    expect(await client.status(runId)).toBeUndefined();
    expect(await client.cancel(runId)).toBe(false);
    const hook = new OutcomeChannel();
    const later = new WorkflowRuntime({ store, clock, runner: never, hook: hook.hook });
    later.on('runEnded', (o) => ended.push(o));
    const running = startWorker(later);
    expect(await hook.next()).toMatchObject({ runId, status: 'failed', error: 'lease expired' });
    expect(ended).toMatchObject([{ runId, status: 'failed' }]);
    await running.stop();
    // A second runtime starting later finds nothing left to deliver.
    const again = new OutcomeChannel();
    const third = startWorker(new WorkflowRuntime({ store, clock, runner: never, hook: again.hook }));
    clock.advance(1_000);
    await third.stop();
    expect(again.received).toHaveLength(0);
    expect(await store.stats('workflow-steps.outcomes')).toMatchObject({ pending: 0, claimed: 0, scheduled: 0, dead: 0 });
  });

  it('a reaped run whose dead job retention removes before any worker runs has still ended, and its id is free', async () => {
    const { store, clock } = freshStore({ defaultQueueConfig: { deadRetentionMs: 0 } });
    const client = new WorkflowRuntime({ store, clock, runner: never });
    await client.submit({ runId: 'order-1', input: bytes('x'), maxAttemptsPerStep: 1 });
    await store.claim('workflow-steps');
    clock.advance(35_000);
    clock.advance(5_000);
    expect(await store.stats('workflow-steps')).toEqual({ ...EMPTY });
    expect(await client.status('order-1')).toBeUndefined();
    expect(await client.submit({ runId: 'order-1', input: bytes('another input') })).toEqual({ runId: 'order-1', newlySubmitted: true });
  });

  it('a reaped run with a cancel requested ends cancelled', async () => {
    const { store, clock } = freshStore();
    const hook = new OutcomeChannel();
    const client = new WorkflowRuntime({ store, clock, runner: never });
    const { runId } = await client.submit({ input: bytes('x'), maxAttemptsPerStep: 1 });
    await store.claim('workflow-steps');
    expect(await client.cancel(runId)).toBe(true);
    clock.advance(35_000);
    expect(await client.status(runId)).toBeUndefined();
    const running = startWorker(new WorkflowRuntime({ store, clock, runner: never, hook: hook.hook }));
    expect(await hook.next()).toEqual({ runId, status: 'cancelled', headers: {}, finalStep: 0 });
    await running.stop();
  });

  it('a requeued dead step of a run that already ended settles with no effect: no second end, no second hook', async () => {
    const { store, clock } = fastRetryStore();
    const hook = new OutcomeChannel();
    const stale: unknown[] = [];
    let runs = 0;
    const runtime = new WorkflowRuntime({
      store,
      clock,
      runner: () => {
        runs++;
        if (runs === 1) throw StepError.permanent('bad input');
        return StepOutcome.succeed(bytes('second try'));
      },
      hook: hook.hook,
    });
    runtime.on('staleStep', (e) => stale.push(e));
    const running = startWorker(runtime);
    const { runId } = await runtime.submit({ input: bytes('x') });
    expect(await hook.next()).toMatchObject({ runId, status: 'failed', error: 'bad input' });
    const [dead] = await store.deadJobs('workflow-steps');
    await store.requeueDead(dead!.id);
    await eventually(() => stale.length > 0);
    await running.stop();
    expect(runs).toBe(2);
    expect(stale).toEqual([{ runId, stepNumber: 0, jobId: dead!.id }]);
    expect(hook.received).toHaveLength(1);
    expect(await runtime.status(runId)).toBeUndefined();
    expect(await store.stats('workflow-steps')).toEqual({ ...EMPTY, done: 1 });
  });

  it('an old job of a reused run id cannot touch the new run', async () => {
    const { store, clock } = fastRetryStore();
    const hook = new OutcomeChannel();
    const runtime = new WorkflowRuntime({
      store,
      clock,
      runner: async (step) => {
        const input = text(step.payload);
        if (input === 'old' && step.attempts === 1 && step.stepNumber === 0) throw StepError.permanent('old run failed');
        if (input === 'new' && step.stepNumber === 0) return StepOutcome.continueAfter(bytes('new'), 60_000);
        return StepOutcome.succeed(bytes(`${input} result`));
      },
      hook: hook.hook,
    });
    const running = startWorker(runtime);
    await runtime.submit({ runId: 'order-7', input: bytes('old') });
    expect(await hook.next()).toMatchObject({ runId: 'order-7', status: 'failed' });
    // The id is reused by a new run, which waits in a delayed step 1.
    await runtime.submit({ runId: 'order-7', input: bytes('new') });
    await eventually(async () => (await runtime.status('order-7'))?.currentStep === 1);
    const [old] = await store.deadJobs('workflow-steps');
    await store.requeueDead(old!.id);
    await eventually(async () => (await store.stats('workflow-steps')).done >= 2);
    expect(hook.received).toHaveLength(1);
    expect(await runtime.status('order-7')).toEqual({ runId: 'order-7', state: 'pending', currentStep: 1 });
    clock.advance(60_000);
    expect(await hook.next()).toMatchObject({ runId: 'order-7', status: 'succeeded', result: bytes('new result'), finalStep: 1 });
    await running.stop();
    expect(hook.received).toHaveLength(2);
  });

  it('a stale worker whose lease expired cannot settle the step another worker now holds', async () => {
    const { store, clock } = freshStore();
    const hook = new OutcomeChannel();
    const release = gate();
    const zombieStarted = gate();
    let zombieRuns = 0;
    // The zombie's store link is partitioned for lease renewals: its lease runs out.
    const partitioned: QueueStore = Object.create(store) as QueueStore;
    partitioned.renewLease = async () => {
      throw new Error('network partition');
    };
    const zombie = new WorkflowRuntime({
      store: partitioned,
      clock,
      maxConcurrentSteps: 1, // its only slot stays busy, so it cannot take the re-delivery itself
      runner: async () => {
        zombieRuns++;
        zombieStarted.open();
        await release.promise;
        return StepOutcome.succeed(bytes('zombie'));
      },
      hook: hook.hook,
    });
    const lost: unknown[] = [];
    zombie.on('leaseLost', (e) => lost.push(e));
    const zombieWorker = startWorker(zombie);
    const { runId } = await zombie.submit({ input: bytes('x') });
    await zombieStarted.promise;
    clock.advance(35_000); // renewals fail, the lease expires, the reaper re-queues the step
    const successor = new WorkflowRuntime({ store, clock, runner: () => StepOutcome.succeed(bytes('successor')), hook: hook.hook });
    const successorWorker = startWorker(successor);
    const outcome = await hook.next();
    expect(outcome).toMatchObject({ runId, status: 'succeeded' });
    expect(text(outcome.result)).toBe('successor');
    release.open();
    await eventually(() => lost.length === 1);
    await successorWorker.stop();
    await zombieWorker.stop();
    expect(zombieRuns).toBe(1);
    expect(hook.received, 'the stale settlement fired no hook').toHaveLength(1);
    expect(await store.stats('workflow-steps')).toEqual({ ...EMPTY, done: 1 });
  });
});

describe('submit', () => {
  it('concurrent submits of one run id: exactly one is new', async () => {
    const { store, clock } = freshStore();
    const runtimes = [0, 1, 2].map(() => new WorkflowRuntime({ store, clock, runner: never }));
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) => runtimes[i % 3]!.submit({ runId: 'same', input: bytes('in') })));
    expect(results.filter((r) => r.newlySubmitted)).toHaveLength(1);
    expect((await store.stats('workflow-steps')).pending).toBe(1);
  });

  it('concurrent submits of one run id with different inputs: one wins, the others get INPUT_MISMATCH', async () => {
    const { store, clock } = freshStore();
    const runtime = new WorkflowRuntime({ store, clock, runner: never });
    const settled = await Promise.allSettled(['a', 'b', 'c'].map((input) => runtime.submit({ runId: 'same', input: bytes(input) })));
    expect(settled.filter((s) => s.status === 'fulfilled' && s.value.newlySubmitted)).toHaveLength(1);
    const rejected = settled.filter((s): s is PromiseRejectedResult => s.status === 'rejected');
    expect(rejected).toHaveLength(2);
    for (const r of rejected) expect((r.reason as { code?: unknown }).code).toBe('INPUT_MISMATCH');
  });

  it('submits of different run ids do not serialise behind one another', async () => {
    const { store, clock } = freshStore();
    const held = gate();
    const slowStore: QueueStore = Object.create(store) as QueueStore;
    slowStore.kvGet = async (key) => {
      if (key.endsWith('/slow')) await held.promise;
      return store.kvGet(key);
    };
    const runtime = new WorkflowRuntime({ store: slowStore, clock, runner: never });
    const slow = runtime.submit({ runId: 'slow', input: bytes('x') });
    const fast = await runtime.submit({ runId: 'fast', input: bytes('x') });
    expect(fast.newlySubmitted).toBe(true);
    held.open();
    expect((await slow).newlySubmitted).toBe(true);
  });

  it('a run id can be reused once its run ended', async () => {
    const { store, clock } = freshStore();
    const hook = new OutcomeChannel();
    const runtime = new WorkflowRuntime({ store, clock, runner: (s) => StepOutcome.succeed(s.payload), hook: hook.hook });
    const worker = startWorker(runtime);
    await runtime.submit({ runId: 'again', input: bytes('1') });
    await hook.next();
    expect((await runtime.submit({ runId: 'again', input: bytes('2') })).newlySubmitted).toBe(true);
    expect(text((await hook.next()).result)).toBe('2');
    await worker.stop();
  });

  describe('bad input gets a typed error and writes nothing', () => {
    const cases: Array<[string, unknown, string]> = [
      ['empty run id', { runId: '', input: bytes('x') }, 'INVALID_RUN_ID'],
      ['run id with a slash', { runId: 'a/b', input: bytes('x') }, 'INVALID_RUN_ID'],
      ['run id of 129 characters', { runId: 'a'.repeat(129), input: bytes('x') }, 'INVALID_RUN_ID'],
      ['run id that is not a string', { runId: 42, input: bytes('x') }, 'INVALID_RUN_ID'],
      ['reserved header', { input: bytes('x'), headers: { 'workflow.run_id': 'x' } }, 'RESERVED_HEADER_IN_SUBMIT'],
      ['string input', { input: 'text' }, 'INVALID_ARGUMENT'],
      ['Buffer-like array input', { input: [1, 2, 3] }, 'INVALID_ARGUMENT'],
      ['missing input', {}, 'INVALID_ARGUMENT'],
      ['non-string header value', { input: bytes('x'), headers: { n: 1 } }, 'INVALID_ARGUMENT'],
      ['negative priority', { input: bytes('x'), priority: -1 }, 'INVALID_ARGUMENT'],
      ['NaN priority', { input: bytes('x'), priority: Number.NaN }, 'INVALID_ARGUMENT'],
      ['infinite priority', { input: bytes('x'), priority: Number.POSITIVE_INFINITY }, 'INVALID_ARGUMENT'],
      ['zero max attempts', { input: bytes('x'), maxAttemptsPerStep: 0 }, 'INVALID_ARGUMENT'],
      ['payload over the limit', { input: new Uint8Array(2 * 1024 * 1024 + 1) }, 'LIMIT_EXCEEDED'],
      ['65 headers', { input: bytes('x'), headers: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`h${i}`, 'v'])) }, 'LIMIT_EXCEEDED'],
      ['headers over 8 KiB', { input: bytes('x'), headers: { big: 'v'.repeat(8 * 1024) } }, 'LIMIT_EXCEEDED'],
    ];
    for (const [name, spec, code] of cases) {
      it(name, async () => {
        const { store, clock } = freshStore();
        const runtime = new WorkflowRuntime({ store, clock, runner: never });
        const error = await runtime.submit(spec as never).catch((e: unknown) => e);
        expect(error).toMatchObject({ code });
        expect((error as Error).message.length).toBeGreaterThan(10);
        expect(await store.listQueues()).toEqual([]);
        expect(await store.stats('workflow-steps')).toEqual(EMPTY);
      });
    }

    it('limits are configurable', async () => {
      const { store, clock } = freshStore();
      const runtime = new WorkflowRuntime({ store, clock, runner: never, limits: { maxPayloadBytes: 4, maxHeaders: 1 } });
      await expect(runtime.submit({ input: bytes('12345') })).rejects.toMatchObject({ code: 'LIMIT_EXCEEDED' });
      await expect(runtime.submit({ input: bytes('1'), headers: { a: '1', b: '2' } })).rejects.toMatchObject({ code: 'LIMIT_EXCEEDED' });
      expect((await runtime.submit({ input: bytes('1234'), headers: { a: '1' } })).newlySubmitted).toBe(true);
    });
  });

  it('status and cancel reject malformed run ids', async () => {
    const { store, clock } = freshStore();
    const runtime = new WorkflowRuntime({ store, clock, runner: never });
    await expect(runtime.status('no spaces allowed')).rejects.toMatchObject({ code: 'INVALID_RUN_ID' });
    await expect(runtime.cancel('')).rejects.toMatchObject({ code: 'INVALID_RUN_ID' });
  });
});

describe('runtime options', () => {
  it.each([0, -1, 1.5, Number.NaN])('maxConcurrentSteps %s is rejected', (n) => {
    const { store } = freshStore();
    expect(() => new WorkflowRuntime({ store, runner: never, maxConcurrentSteps: n })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });

  it('a runner is optional for submit, status and cancel; run() without one is refused', async () => {
    const { store, clock } = freshStore();
    const client = new WorkflowRuntime({ store, clock });
    const { runId } = await client.submit({ input: bytes('x') });
    expect(await client.status(runId)).toMatchObject({ state: 'pending' });
    expect(await client.cancel(runId)).toBe(true);
    await expect(client.run(new AbortController().signal)).rejects.toMatchObject({ code: 'RUNNER_REQUIRED' });
    expect(() => new WorkflowRuntime({ store, runner: 'x' as never })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });

  it('only one worker loop per runtime', async () => {
    const { store, clock } = freshStore();
    const runtime = new WorkflowRuntime({ store, clock, runner: never });
    const worker = startWorker(runtime);
    await expect(runtime.run(new AbortController().signal)).rejects.toMatchObject({ code: 'INVALID_STATE' });
    await worker.stop();
  });
});

describe('edges', () => {
  it('header keys __proto__ and constructor round-trip as plain data', async () => {
    const { store, clock } = freshStore();
    const hook = new OutcomeChannel();
    const seen: Array<Record<string, string>> = [];
    const runtime = new WorkflowRuntime({
      store,
      clock,
      runner: (step) => {
        seen.push(step.headers);
        return step.stepNumber === 0 ? StepOutcome.continue(step.payload) : StepOutcome.succeed(step.payload);
      },
      hook: hook.hook,
    });
    const worker = startWorker(runtime);
    const headers = JSON.parse('{"__proto__":"p","constructor":"c","toString":"t"}') as Record<string, string>;
    await runtime.submit({ input: bytes('x'), headers });
    const outcome = await hook.next();
    await worker.stop();
    for (const h of [...seen, outcome.headers]) {
      expect(Object.keys(h).sort()).toEqual(['__proto__', 'constructor', 'toString']);
      expect(h['__proto__']).toBe('p');
      expect(h.constructor).toBe('c');
      expect(Object.prototype.isPrototypeOf.call(Object.prototype, h)).toBe(false);
    }
    expect(({} as Record<string, unknown>).constructor).toBe(Object);
    expect(Object.prototype.hasOwnProperty.call(Object.prototype, 'p')).toBe(false);
  });

  it('a continueAfter longer than 2^31-1 ms does not fire early', async () => {
    // Hourly housekeeping keeps the 25-day clock jump cheap; the store's precise wake still fires on time.
    const { store, clock } = freshStore({ reaperIntervalMs: 3_600_000, promoteIntervalMs: 3_600_000 });
    const hook = new OutcomeChannel();
    const delay = 2 ** 31 + 60_000;
    const starts: number[] = [];
    const runtime = new WorkflowRuntime({
      store,
      clock,
      runner: (step) => {
        starts.push(clock.now());
        return step.stepNumber === 0 ? StepOutcome.continueAfter(bytes('later'), delay) : StepOutcome.succeed(bytes('done'));
      },
      hook: hook.hook,
    });
    const worker = startWorker(runtime);
    const { runId } = await runtime.submit({ input: bytes('x') });
    await eventually(async () => (await store.stats('workflow-steps')).scheduled === 1);
    clock.advance(2 ** 31 - 1);
    await new Promise((resolve) => setImmediate(resolve));
    expect(starts).toHaveLength(1);
    expect((await runtime.status(runId))?.state).toBe('pending');
    clock.advance(delay - (2 ** 31 - 1));
    const outcome = await hook.next();
    expect(outcome.status).toBe('succeeded');
    expect(starts[1]! - starts[0]!).toBe(delay);
    await worker.stop();
  });

  it('a runner returning something that is not a StepOutcome fails the run permanently', async () => {
    const { store, clock } = freshStore();
    const hook = new OutcomeChannel();
    const runtime = new WorkflowRuntime({ store, clock, runner: (() => ({ kind: 'teleport' })) as unknown as StepRunner, hook: hook.hook });
    const worker = startWorker(runtime);
    await runtime.submit({ input: bytes('x') });
    const outcome = await hook.next();
    await worker.stop();
    expect(outcome.status).toBe('failed');
    expect(outcome.error).toMatch(/invalid outcome/);
    expect((await store.stats('workflow-steps')).dead).toBe(1);
  });

  it('a step job without workflow headers is dead-lettered without a hook', async () => {
    const { store, clock } = freshStore();
    const hook = new OutcomeChannel();
    const runtime = new WorkflowRuntime({ store, clock, runner: never, hook: hook.hook });
    const malformed: string[] = [];
    runtime.on('malformedStep', (e) => malformed.push(e.error.name));
    await store.enqueue('workflow-steps', bytes('x'), { headers: { 'workflow.run_id': 'r' } });
    await store.enqueue('workflow-steps', bytes('x'), { headers: { 'workflow.run_id': 'r', 'workflow.step': 'two' } });
    const worker = startWorker(runtime);
    await eventually(async () => (await store.stats('workflow-steps')).dead === 2);
    await worker.stop();
    expect(malformed.sort()).toEqual(['InvalidStepHeaderError', 'MissingHeaderError']);
    expect(hook.received).toHaveLength(0);
    const dead = await store.deadJobs('workflow-steps');
    expect(dead.map((j) => j.lastError).sort()).toEqual([expect.stringMatching(/invalid value "two"/), expect.stringMatching(/missing the "workflow.step"/)]);
  });

  it('a hook that throws is reported and does not disturb the run', async () => {
    const { store, clock } = freshStore();
    const runtime = new WorkflowRuntime({
      store,
      clock,
      runner: () => StepOutcome.succeed(bytes('ok')),
      hook: () => {
        throw new Error('webhook down');
      },
    });
    const failures: RunOutcome[] = [];
    runtime.on('hookFailed', (e) => failures.push(e.outcome));
    const worker = startWorker(runtime);
    const { runId } = await runtime.submit({ input: bytes('x') });
    await eventually(() => failures.length === 1);
    await worker.stop();
    expect(failures[0]).toMatchObject({ runId, status: 'succeeded' });
    expect(await runtime.status(runId)).toBeUndefined();
  });

  it('emits lifecycle events in order', async () => {
    const { store, clock } = freshStore();
    const runtime = new WorkflowRuntime({ store, clock, runner: (s) => (s.stepNumber < 1 ? StepOutcome.continue(s.payload) : StepOutcome.succeed(s.payload)) });
    const events: string[] = [];
    runtime.on('runSubmitted', () => events.push('submitted'));
    runtime.on('stepStarted', (e) => events.push(`started ${e.stepNumber}`));
    runtime.on('stepSettled', (e) => events.push(`settled ${e.stepNumber} ${e.status}`));
    runtime.on('runEnded', (o) => events.push(`ended ${o.status}`));
    const worker = startWorker(runtime);
    await runtime.submit({ input: bytes('x') });
    await eventually(() => events.includes('ended succeeded'));
    await worker.stop();
    // Step 1 may start before step 0's settled event is delivered (it is emitted after the commit returns).
    expect(events[0]).toBe('submitted');
    expect(events.slice(-2)).toEqual(['settled 1 done', 'ended succeeded']);
    expect(events.indexOf('started 0')).toBeLessThan(events.indexOf('settled 0 done'));
    expect(events.indexOf('started 0')).toBeLessThan(events.indexOf('started 1'));
    expect(events).toHaveLength(6);
  });

  it('transient store errors on claim are reported and the loop carries on', async () => {
    const { store, clock } = freshStore();
    let failures = 2;
    const flaky: QueueStore = Object.create(store) as QueueStore;
    flaky.claim = async (queue, options) => {
      if (failures-- > 0) throw new Error('connection reset');
      return store.claim(queue, options);
    };
    const hook = new OutcomeChannel();
    const runtime = new WorkflowRuntime({ store: flaky, clock, runner: () => StepOutcome.succeed(bytes('ok')), hook: hook.hook });
    const errors: string[] = [];
    runtime.on('storeError', (e) => errors.push(e.operation));
    await runtime.submit({ input: bytes('x') });
    const worker = startWorker(runtime);
    await eventually(() => errors.length === 1);
    clock.advance(100);
    await eventually(() => errors.length === 2);
    clock.advance(200);
    expect((await hook.next()).status).toBe('succeeded');
    await worker.stop();
    expect(errors).toEqual(['claim', 'claim']);
  });

  it('a transient store error on settle is retried and the run completes once', async () => {
    const { store, clock } = freshStore();
    let failures = 1;
    const flaky: QueueStore = Object.create(store) as QueueStore;
    flaky.settle = async (claim, settlement) => {
      if (failures-- > 0) throw new Error('connection reset before commit');
      return store.settle(claim, settlement);
    };
    const hook = new OutcomeChannel();
    const runtime = new WorkflowRuntime({ store: flaky, clock, runner: () => StepOutcome.succeed(bytes('ok')), hook: hook.hook });
    runtime.on('storeError', () => setImmediate(() => clock.advance(1_000)));
    const worker = startWorker(runtime);
    await runtime.submit({ input: bytes('x') });
    expect((await hook.next()).status).toBe('succeeded');
    await worker.stop();
    expect(hook.received).toHaveLength(1);
  });

  it('permanent errors thrown by the runner carry their message; other values count as transient', async () => {
    const { store, clock } = freshStore({ defaultQueueConfig: { retryBackoffBaseMs: 0 } });
    const hook = new OutcomeChannel();
    let calls = 0;
    const runtime = new WorkflowRuntime({
      store,
      clock,
      runner: () => {
        calls++;
        if (calls === 1) throw 'a string';
        if (calls === 2) throw new TypeError('oops');
        throw StepError.permanent('final');
      },
      hook: hook.hook,
    });
    const worker = startWorker(runtime);
    await runtime.submit({ input: bytes('x'), maxAttemptsPerStep: 5 });
    expect(await hook.next()).toMatchObject({ status: 'failed', error: 'final' });
    await worker.stop();
    expect(calls).toBe(3);
  });
});
