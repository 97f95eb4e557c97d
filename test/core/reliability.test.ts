/**
 * Runtime reliability: step timeouts, bounded shutdown, lease renewal per
 * step, settlement retries and refusals, runner mistakes, submit snapshots,
 * durable hook delivery, permanent store errors. All on a ManualClock and
 * the memory store; real time appears only as fail-safes against hangs.
 */
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, StepOutcome, StoreUnavailableError, WorkflowRuntime, decodeRecord, runKeys, sha256Hex } from '../../core/index.js';
import type { Clock, ManualClock, QueueStore, RunIdentity, RunOutcome, Step, StepRunner } from '../../core/index.js';
import { DEFAULT_HOOK_RETRY, hookRetryDelayMs } from '../../core/hook-retry.js';
import { IncompatibleSchemaError } from '../../core/errors.js';
import { OutcomeChannel, bytes, eventually, fastRetryStore, freshStore, gate, startWorker } from '../support/harness.js';

const never: StepRunner = () => new Promise(() => undefined);

/** Lets pending promise chains and store calls run (macrotasks, not clock time). */
async function flush(rounds = 5): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((resolve) => setImmediate(resolve));
}

/** Moves the clock by `ms` in `stepMs` increments, letting the runtime react after each. */
async function advance(clock: ManualClock, ms: number, stepMs = 100): Promise<void> {
  for (let moved = 0; moved < ms; moved += stepMs) {
    clock.advance(Math.min(stepMs, ms - moved));
    await flush();
  }
}

/** 'settled' if `promise` settles within `failsafeMs` of real time, else 'hung'. */
async function settlesWithin(promise: Promise<unknown>, failsafeMs = 2_000): Promise<'settled' | 'hung'> {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<'hung'>((resolve) => (timer = setTimeout(() => resolve('hung'), failsafeMs)));
  const result = await Promise.race([
    promise.then(
      () => 'settled' as const,
      () => 'settled' as const,
    ),
    hung,
  ]);
  clearTimeout(timer);
  return result;
}

describe('step timeouts', () => {
  it('a runner that ignores its signal is timed out: slot freed, retried, and the run fails with a clear error', async () => {
    const { store, clock } = fastRetryStore();
    const hook = new OutcomeChannel();
    const seen: Step[] = [];
    const runtime = new WorkflowRuntime({
      store,
      clock,
      maxConcurrentSteps: 1, // a retry can only start if the timed-out step gave its slot back
      stepTimeoutMs: 1_000,
      runner: (step) => {
        seen.push(step);
        return new Promise(() => undefined);
      },
      hook: hook.hook,
    });
    const worker = startWorker(runtime);
    const { runId } = await runtime.submit({ input: bytes('x') });
    await eventually(() => seen.length === 1);
    await advance(clock, 1_000);
    await eventually(() => seen.length === 2);
    expect(seen[0]!.signal.aborted).toBe(true);
    expect(seen[0]!.signal.reason).toMatchObject({ code: 'STEP_TIMED_OUT', timeoutMs: 1_000 });
    await advance(clock, 1_000);
    await eventually(() => seen.length === 3);
    await advance(clock, 1_000);
    expect(await hook.next()).toEqual({ runId, status: 'failed', error: 'step timed out after 1000 ms', headers: {}, finalStep: 0 });
    expect(await store.stats('workflow-steps')).toMatchObject({ pending: 0, claimed: 0, dead: 1 });
    await worker.stop();
  });

  it('a late return of a timed-out runner is ignored, and a cancel of a hung step completes at the deadline', async () => {
    const { store, clock } = fastRetryStore();
    const hook = new OutcomeChannel();
    const late = gate();
    const started = gate<Step>();
    const errors: unknown[] = [];
    const runtime = new WorkflowRuntime({
      store,
      clock,
      stepTimeoutMs: 5_000,
      runner: async (step) => {
        started.open(step);
        await late.promise; // ignores its signal
        return StepOutcome.succeed(bytes('too late'));
      },
      hook: hook.hook,
    });
    runtime.on('storeError', (e) => errors.push(e));
    const worker = startWorker(runtime);
    const { runId } = await runtime.submit({ input: bytes('x') });
    await started.promise;
    expect(await runtime.cancel(runId)).toBe(true);
    await advance(clock, 5_000, 500);
    expect(await hook.next()).toEqual({ runId, status: 'cancelled', headers: {}, finalStep: 0 });
    late.open();
    await flush();
    expect(hook.received).toHaveLength(1);
    expect(errors).toEqual([]);
    await worker.stop();
  });

  it('rejects a bad stepTimeoutMs or shutdownGraceMs', () => {
    const { store } = freshStore();
    expect(() => new WorkflowRuntime({ store, runner: never, stepTimeoutMs: 0 })).toThrow(InvalidArgumentError);
    expect(() => new WorkflowRuntime({ store, runner: never, shutdownGraceMs: -1 })).toThrow(InvalidArgumentError);
  });
});

describe('bounded shutdown', () => {
  it('run() returns within the grace period even if a runner never settles; the step is re-delivered after its lease', async () => {
    const { store, clock } = freshStore();
    const started = gate<Step>();
    const runtime = new WorkflowRuntime({
      store,
      clock,
      shutdownGraceMs: 2_000,
      runner: (step) => {
        started.open(step);
        return new Promise(() => undefined);
      },
    });
    const controller = new AbortController();
    const done = runtime.run(controller.signal);
    await runtime.submit({ input: bytes('x') });
    const step = await started.promise;
    controller.abort();
    await flush(); // the loop sees the abort and starts its grace period
    await advance(clock, 1_900);
    expect(await settlesWithin(done, 50), 'still within the grace period').toBe('hung');
    await advance(clock, 100);
    expect(await settlesWithin(done)).toBe('settled');
    expect(step.signal.reason).toMatchObject({ code: 'WORKER_STOPPED' });
    // No more renewals: the lease (30 s from the claim) runs out and the reaper re-queues the step.
    await advance(clock, 30_000, 1_000);
    expect(await store.stats('workflow-steps')).toMatchObject({ pending: 1, claimed: 0 });
    // The runtime can run again; the abandoned step does not disturb it.
    const second = startWorker(runtime);
    await second.stop();
  });
});

describe('lease renewal', () => {
  it('renews each lease a third of its length after its own claim, whenever the step started', async () => {
    const { store, clock } = freshStore();
    const renewals: Array<{ jobId: string; at: number }> = [];
    const watched = Object.create(store) as QueueStore;
    watched.renewLease = (claim, extendMs) => {
      renewals.push({ jobId: claim.jobId, at: clock.now() });
      return store.renewLease(claim, extendMs);
    };
    const started: Step[] = [];
    const runtime = new WorkflowRuntime({
      store: watched,
      clock,
      runner: (step) => {
        started.push(step);
        return new Promise(() => undefined);
      },
    });
    const controller = new AbortController();
    const done = runtime.run(controller.signal);
    const t0 = clock.now();
    await runtime.submit({ input: bytes('a') });
    await eventually(() => started.length === 1);
    await advance(clock, 5_000, 1_000);
    await runtime.submit({ input: bytes('b') });
    await eventually(() => started.length === 2);
    const [a, b] = started.map((s) => s.jobId);
    await advance(clock, 10_000, 1_000); // t0 + 15 s: b's first third is over
    expect(renewals.filter((r) => r.jobId === a).map((r) => r.at - t0)).toEqual([10_000]);
    expect(renewals.filter((r) => r.jobId === b).map((r) => r.at - t0)).toEqual([15_000]);
    await advance(clock, 10_000, 1_000);
    expect(renewals.filter((r) => r.jobId === a).map((r) => r.at - t0)).toEqual([10_000, 20_000]);
    expect(renewals.filter((r) => r.jobId === b).map((r) => r.at - t0)).toEqual([15_000, 25_000]);
    controller.abort();
    void done;
  });
});

describe('settlement retries', () => {
  it('a settlement outage longer than the old retry budget but shorter than the lease costs no re-execution', async () => {
    const { store, clock } = freshStore();
    let outage = true;
    const flaky = Object.create(store) as QueueStore;
    flaky.settle = async (claim, settlement) => {
      if (outage) throw new StoreUnavailableError('database restarting');
      return store.settle(claim, settlement);
    };
    flaky.renewLease = async (claim, extendMs) => {
      if (outage) throw new StoreUnavailableError('database restarting');
      return store.renewLease(claim, extendMs);
    };
    const hook = new OutcomeChannel();
    let calls = 0;
    const runtime = new WorkflowRuntime({ store: flaky, clock, runner: () => (calls++, StepOutcome.succeed(bytes('ok'))), hook: hook.hook });
    const errors: Array<{ operation: string; runId?: string }> = [];
    runtime.on('storeError', (e) => errors.push(e));
    const worker = startWorker(runtime);
    const { runId } = await runtime.submit({ input: bytes('x') });
    await eventually(() => calls === 1);
    await advance(clock, 12_000); // past the first renewal, which fails too
    outage = false;
    await advance(clock, 2_000);
    expect(await hook.next(2_000)).toMatchObject({ runId, status: 'succeeded' });
    expect(calls).toBe(1);
    expect(new Set(errors.map((e) => e.operation))).toEqual(new Set(['settle', 'renewLease']));
    expect(
      errors.every((e) => e.runId === runId),
      'every report names the run',
    ).toBe(true);
    await worker.stop();
  });

  for (const skewMs of [10 * 60_000, -10 * 60_000]) {
    it(`a runtime whose clock is ${skewMs / 60_000} min off the store's still retries a failed settlement while the lease lasts`, async () => {
      const { store, clock } = freshStore();
      // This host's clock is off; the store keeps its own (the database's) time.
      const hostClock: Clock = { now: () => clock.now() + skewMs, setTimer: (callback, delayMs) => clock.setTimer(callback, delayMs) };
      let failures = 1;
      const flaky = Object.create(store) as QueueStore;
      flaky.settle = async (claim, settlement) => {
        if (failures-- > 0) throw new StoreUnavailableError('connection reset');
        return store.settle(claim, settlement);
      };
      const hook = new OutcomeChannel();
      let calls = 0;
      const runtime = new WorkflowRuntime({ store: flaky, clock: hostClock, runner: () => (calls++, StepOutcome.succeed(bytes('ok'))), hook: hook.hook });
      const worker = startWorker(runtime);
      const { runId } = await runtime.submit({ input: bytes('x') });
      await eventually(() => calls === 1);
      await advance(clock, 1_000);
      expect(await hook.next(2_000)).toMatchObject({ runId, status: 'succeeded' });
      expect(calls).toBe(1);
      await worker.stop();
    });
  }

  it('gives up when the lease ran out during the outage (the reaper re-delivers)', async () => {
    const { store, clock } = freshStore();
    let outage = true;
    const flaky = Object.create(store) as QueueStore;
    flaky.settle = async (claim, settlement) => {
      if (outage) throw new StoreUnavailableError('down');
      return store.settle(claim, settlement);
    };
    flaky.renewLease = async () => {
      throw new StoreUnavailableError('down');
    };
    const hook = new OutcomeChannel();
    let calls = 0;
    const runtime = new WorkflowRuntime({ store: flaky, clock, runner: () => (calls++, StepOutcome.succeed(bytes('ok'))), hook: hook.hook });
    const worker = startWorker(runtime);
    await runtime.submit({ input: bytes('x') });
    await eventually(() => calls === 1);
    await advance(clock, 31_000, 500);
    outage = false;
    await advance(clock, 10_000, 500); // reaped at the next reaper pass, claimed again
    expect((await hook.next(2_000)).status).toBe('succeeded');
    expect(calls).toBe(2);
    await worker.stop();
  });

  it('a settlement the store refuses for good ends the run failed with the refusal, after one execution', async () => {
    const { store, clock } = freshStore();
    const picky = Object.create(store) as QueueStore;
    picky.settle = async (claim, settlement) => {
      for (const request of settlement.effects?.enqueue ?? []) {
        if (request.payload.includes(0)) throw new InvalidArgumentError('payload', 'NUL bytes are not stored here');
      }
      return store.settle(claim, settlement);
    };
    const hook = new OutcomeChannel();
    let calls = 0;
    const runtime = new WorkflowRuntime({
      store: picky,
      clock,
      runner: () => {
        calls++;
        return StepOutcome.continue(new Uint8Array([1, 0, 2]));
      },
      hook: hook.hook,
    });
    const errors: Array<{ operation: string; runId?: string }> = [];
    runtime.on('storeError', (e) => errors.push(e));
    const worker = startWorker(runtime);
    const { runId } = await runtime.submit({ input: bytes('x') });
    expect(await hook.next(2_000)).toEqual({
      runId,
      status: 'failed',
      error: 'settlement rejected: INVALID_ARGUMENT: invalid payload: NUL bytes are not stored here',
      headers: {},
      finalStep: 0,
    });
    expect(calls).toBe(1);
    expect(await store.stats('workflow-steps')).toMatchObject({ pending: 0, claimed: 0, dead: 1 });
    expect(await runtime.status(runId)).toBeUndefined();
    expect(errors).toEqual([expect.objectContaining({ operation: 'settle', runId })]);
    await worker.stop();
  });
});

describe('runner mistakes end the run with a clear failure', () => {
  const proxyTrap = new Proxy(
    {},
    {
      getPrototypeOf() {
        throw new Error('trap');
      },
    },
  );
  const getterTrap = new Error('hidden');
  Object.defineProperty(getterTrap, 'message', {
    get() {
      throw new Error('trap');
    },
  });
  const cases: Array<[string, StepRunner, string]> = [
    [
      'a continueAfter whose due time overflows',
      () => StepOutcome.continueAfter(bytes('p'), Number.MAX_SAFE_INTEGER),
      `runner returned an invalid outcome: continueAfter delay of ${Number.MAX_SAFE_INTEGER} ms from now is past the latest representable time`,
    ],
    [
      'a thrown Object.create(null)',
      () => {
        throw Object.create(null);
      },
      'runner threw a value that cannot be described (object without prototype)',
    ],
    [
      'a thrown object whose toString throws',
      () => {
        throw {
          toString() {
            throw new Error('no');
          },
        };
      },
      'runner threw a value that cannot be described (object (Object))',
    ],
    [
      'a thrown error whose message getter throws',
      () => {
        throw getterTrap;
      },
      'runner threw a value that cannot be described (object (Error))',
    ],
    [
      'a thrown proxy whose prototype trap throws',
      () => {
        throw proxyTrap;
      },
      'runner threw a value that cannot be described (object)',
    ],
    [
      'throw undefined',
      () => {
        throw undefined;
      },
      'runner threw undefined',
    ],
  ];
  it.each(cases)('%s', async (_name, runner, error) => {
    const { store, clock } = fastRetryStore();
    const hook = new OutcomeChannel();
    let calls = 0;
    const runtime = new WorkflowRuntime({ store, clock, runner: (step) => (calls++, runner(step)), hook: hook.hook });
    const errors: unknown[] = [];
    runtime.on('storeError', (e) => errors.push(e));
    const worker = startWorker(runtime);
    const { runId } = await runtime.submit({ input: bytes('x'), maxAttemptsPerStep: 1 });
    expect(await hook.next(2_000)).toEqual({ runId, status: 'failed', error, headers: {}, finalStep: 0 });
    expect(calls).toBe(1);
    expect(errors).toEqual([]);
    await worker.stop();
  });

  it('the storeError event of a step carries its run id', async () => {
    const { store, clock } = freshStore();
    const flaky = Object.create(store) as QueueStore;
    let failures = 1;
    flaky.settle = async (claim, settlement) => {
      if (failures-- > 0) throw new StoreUnavailableError('blip');
      return store.settle(claim, settlement);
    };
    const hook = new OutcomeChannel();
    const runtime = new WorkflowRuntime({ store: flaky, clock, runner: () => StepOutcome.succeed(bytes('ok')), hook: hook.hook });
    const errors: Array<{ runId?: string }> = [];
    runtime.on('storeError', (e) => {
      errors.push(e);
      setImmediate(() => clock.advance(100));
    });
    const worker = startWorker(runtime);
    const { runId } = await runtime.submit({ input: bytes('x') });
    await hook.next(2_000);
    expect(errors).toEqual([expect.objectContaining({ operation: 'settle', runId })]);
    await worker.stop();
  });
});

describe('submit snapshots its input and headers', () => {
  // A Node Buffer too: its slice() is a view of the same memory, not a copy.
  it.each([
    ['a Uint8Array', bytes],
    ['a Node Buffer', (text: string) => Buffer.from(text)],
  ])('mutating the input (%s) right after submit() does not change what is stored, nor its hash', async (_kind, make) => {
    const { store, clock } = freshStore();
    const runtime = new WorkflowRuntime({ store, clock, runner: never });
    const input = make('original');
    const submitted = runtime.submit({ runId: 'r1', input });
    input.fill(0x78);
    await submitted;
    const [claim] = await store.claim('workflow-steps');
    expect(Buffer.from(claim!.job.payload).toString()).toBe('original');
    const identity = decodeRecord<RunIdentity>((await store.kvGet(runKeys('workflow-steps', 'r1').identity))!);
    expect(identity.inputSha256).toBe(sha256Hex(bytes('original')));
  });

  it('a detached input buffer is refused with INVALID_ARGUMENT', async () => {
    const { store, clock } = freshStore();
    const runtime = new WorkflowRuntime({ store, clock, runner: never });
    const input = bytes('gone');
    structuredClone(input.buffer, { transfer: [input.buffer as ArrayBuffer] });
    await expect(runtime.submit({ input })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('detached') });
    expect(await store.stats('workflow-steps')).toMatchObject({ pending: 0 });
  });

  it.each([
    ['a Map', new Map([['tenant', 't']])],
    [
      'a class instance',
      new (class Headers {
        tenant = 't';
      })(),
    ],
  ])('headers given as %s are refused with INVALID_ARGUMENT', async (_name, headers) => {
    const { store, clock } = freshStore();
    const runtime = new WorkflowRuntime({ store, clock, runner: never });
    await expect(runtime.submit({ input: bytes('x'), headers: headers as never })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(await store.stats('workflow-steps')).toMatchObject({ pending: 0 });
  });

  it('prototype-free header objects are accepted', async () => {
    const { store, clock } = freshStore();
    const runtime = new WorkflowRuntime({ store, clock, runner: never });
    const headers = Object.create(null) as Record<string, string>;
    headers.tenant = 't';
    await runtime.submit({ runId: 'r', input: bytes('x'), headers });
    const [claim] = await store.claim('workflow-steps');
    expect(claim!.job.headers.tenant).toBe('t');
  });

  it('a queue name the stores would refuse is refused by the constructor', () => {
    const { store } = freshStore();
    expect(() => new WorkflowRuntime({ store, runner: never, queueName: 'q'.repeat(257) })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => new WorkflowRuntime({ store, runner: never, queueName: '' })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    // The notification queue's name (`<queueName>.outcomes`, used with either hook delivery) must be valid too.
    expect(() => new WorkflowRuntime({ store, runner: never, queueName: 'q'.repeat(248) })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => new WorkflowRuntime({ store, runner: never, queueName: 'q'.repeat(247), hookDelivery: 'durable' })).not.toThrow();
  });
});

describe('durable hook delivery', () => {
  it('the notification lease is renewed while a slow hook runs: it is not started a second time', async () => {
    const { store, clock } = freshStore();
    let hookCalls = 0;
    const release = gate();
    const runtime = new WorkflowRuntime({
      store,
      clock,
      hookDelivery: 'durable',
      runner: () => StepOutcome.succeed(bytes('ok')),
      hook: async () => {
        hookCalls++;
        await release.promise;
      },
    });
    const worker = startWorker(runtime);
    await runtime.submit({ input: bytes('x') });
    await eventually(() => hookCalls === 1);
    await advance(clock, 95_000, 1_000); // three leases of 30 s
    expect(hookCalls).toBe(1);
    release.open();
    await eventually(async () => (await store.stats('workflow-steps.outcomes')).done === 1);
    expect(hookCalls).toBe(1);
    await worker.stop();
  });

  it('a failing hook is retried on its own backoff, well past three attempts', async () => {
    const { store, clock } = freshStore();
    const attempts: number[] = [];
    const runtime = new WorkflowRuntime({
      store,
      clock,
      hookDelivery: 'durable',
      runner: () => StepOutcome.succeed(bytes('ok')),
      hook: () => {
        attempts.push(clock.now());
        throw new Error('webhook down');
      },
    });
    const worker = startWorker(runtime);
    await runtime.submit({ input: bytes('x') });
    await eventually(() => attempts.length === 1);
    await advance(clock, 64_000, 250);
    const gaps = attempts.slice(1).map((at, i) => at - attempts[i]!);
    expect(gaps.slice(0, 5)).toEqual([1_000, 2_000, 4_000, 8_000, 16_000]);
    expect(await store.stats('workflow-steps.outcomes')).toMatchObject({ dead: 0, scheduled: 1 });
    await worker.stop();
  });

  it('the default policy keeps retrying for at least 24 hours; the last attempt dead-letters', async () => {
    let total = 0;
    for (let failed = 1; failed < DEFAULT_HOOK_RETRY.maxAttempts; failed++) total += hookRetryDelayMs(DEFAULT_HOOK_RETRY, failed);
    expect(total).toBeGreaterThanOrEqual(24 * 60 * 60 * 1000);

    const { store, clock } = freshStore();
    let calls = 0;
    const runtime = new WorkflowRuntime({
      store,
      clock,
      hookDelivery: 'durable',
      hookRetry: { maxAttempts: 2, initialDelayMs: 10 },
      runner: () => StepOutcome.succeed(bytes('ok')),
      hook: () => {
        calls++;
        throw new Error('still down');
      },
    });
    const worker = startWorker(runtime);
    await runtime.submit({ input: bytes('x') });
    await eventually(() => calls === 1);
    await advance(clock, 1_000, 10);
    await eventually(async () => (await store.stats('workflow-steps.outcomes')).dead === 1);
    const [dead] = await store.deadJobs('workflow-steps.outcomes');
    expect(dead!.lastError).toBe('hook failed 2 times; last error: still down');
    expect(calls).toBe(2);
    await worker.stop();
  });

  it('notifications are not starved by a step backlog', async () => {
    const { store, clock } = freshStore();
    const delivered: RunOutcome[] = [];
    const runtime = new WorkflowRuntime({
      store,
      clock,
      hookDelivery: 'durable',
      maxConcurrentSteps: 4,
      runner: async (step) => {
        if (step.payload[0] !== 0x71) return new Promise(() => undefined);
        await flush(1); // ends after the loop filled every slot
        return StepOutcome.succeed(bytes('quick'));
      },
      hook: (outcome) => void delivered.push(outcome),
    });
    const quick = await runtime.submit({ input: bytes('q') });
    for (let i = 0; i < 20; i++) await runtime.submit({ input: bytes(`slow ${i}`) });
    const controller = new AbortController();
    void runtime.run(controller.signal);
    await eventually(() => delivered.length === 1);
    expect(delivered[0]).toMatchObject({ runId: quick.runId, status: 'succeeded' });
    controller.abort();
  });

  it('rejects a bad hookRetry', () => {
    const { store } = freshStore();
    expect(() => new WorkflowRuntime({ store, runner: never, hookRetry: { maxAttempts: 0 } })).toThrow(InvalidArgumentError);
  });
});

describe('permanent store errors', () => {
  it('a permanent claim error stops the loop: in-flight steps drain and run() rejects with it', async () => {
    const { store, clock } = freshStore();
    const broken = Object.create(store) as QueueStore;
    let claims = 0;
    broken.claim = async (queue, options) => {
      if (queue === 'workflow-steps' && ++claims > 1) throw new IncompatibleSchemaError('database file is corrupt');
      return store.claim(queue, options);
    };
    const hook = new OutcomeChannel();
    const finish = gate();
    const runtime = new WorkflowRuntime({
      store: broken,
      clock,
      runner: async () => {
        await finish.promise;
        return StepOutcome.succeed(bytes('ok'));
      },
      hook: hook.hook,
    });
    await runtime.submit({ input: bytes('x') });
    const done = runtime.run(new AbortController().signal);
    await eventually(() => claims === 1);
    await advance(clock, 300); // the next poll
    finish.open();
    expect((await hook.next(2_000)).status).toBe('succeeded');
    expect(await settlesWithin(done)).toBe('settled');
    await expect(done).rejects.toMatchObject({ code: 'INCOMPATIBLE_SCHEMA', message: 'database file is corrupt' });
  });
});

describe('memory store', () => {
  it('a chain of immediately continuing steps lets the event loop run', async () => {
    const { store, clock } = freshStore();
    let steps = 0;
    let stepsWhenTimerRan: number | undefined;
    const runtime = new WorkflowRuntime({
      store,
      clock,
      runner: (step) => {
        steps++;
        return step.stepNumber < 2_000 ? StepOutcome.continue(step.payload) : StepOutcome.succeed(step.payload);
      },
    });
    const hook = new OutcomeChannel();
    runtime.on('runEnded', hook.hook);
    await runtime.submit({ input: bytes('x') });
    const worker = startWorker(runtime);
    setImmediate(() => (stepsWhenTimerRan = steps));
    await hook.next();
    await worker.stop();
    expect(stepsWhenTimerRan, 'the macrotask ran before the chain ended').toBeDefined();
    expect(stepsWhenTimerRan).toBeLessThan(1_000);
  });
});

describe('misconfiguration is refused', () => {
  it('runtimes sharing a queue with different hookDelivery settings are refused, naming both', async () => {
    const { store, clock } = freshStore();
    const durable = new WorkflowRuntime({ store, clock, runner: never, hookDelivery: 'durable' });
    await durable.submit({ runId: 'r1', input: bytes('x') });
    const inProcess = new WorkflowRuntime({ store, clock, runner: never });
    const mismatch = { code: 'HOOK_DELIVERY_MISMATCH', recorded: 'durable', configured: 'inProcess' };
    await expect(inProcess.submit({ input: bytes('y') })).rejects.toMatchObject(mismatch);
    await expect(inProcess.cancel('r1')).rejects.toMatchObject(mismatch);
    await expect(inProcess.run(new AbortController().signal)).rejects.toMatchObject(mismatch);
    expect(await durable.status('r1'), 'the run is untouched').toMatchObject({ state: 'pending' });
    // Another queue name is another queue: its own setting.
    const other = new WorkflowRuntime({ store, clock, runner: never, queueName: 'other' });
    await other.submit({ input: bytes('z') });
  });

  it('a worker started before the first submit notices a mismatch once a run is submitted', async () => {
    const { store, clock } = freshStore();
    const worker = new WorkflowRuntime({ store, clock, runner: never });
    const done = worker.run(new AbortController().signal);
    done.catch(() => undefined); // rejects while the test is still submitting: asserted below
    await flush();
    const durable = new WorkflowRuntime({ store, clock, runner: never, hookDelivery: 'durable' });
    await durable.submit({ input: bytes('x') });
    await advance(clock, 300);
    expect(await settlesWithin(done)).toBe('settled');
    await expect(done).rejects.toMatchObject({ code: 'HOOK_DELIVERY_MISMATCH' });
  });
});
