/**
 * Workflows as code on the memory store: named, typed steps with their own
 * attempts and timeouts, several workflows on one runtime, services with
 * different workflows on one store, codecs, and the clear failures of a
 * step that names a step its workflow lacks or returns no outcome.
 */
import { describe, expect, it } from 'vitest';
import { CodecError, StepError, WorkflowDefinitionError, WorkflowRuntime, bytes as bytesCodec, defineWorkflow, json } from '../../core/index.js';
import type { ManualClock, RunOutcome } from '../../core/index.js';
import { OutcomeChannel, bytes, eventually, freshStore, startWorker } from '../support/harness.js';

interface OrderState {
  sku: string;
  qty: number;
  reservation?: string;
  chargeId?: string;
}

const calls: string[] = [];

const order = defineWorkflow({
  name: 'order',
  codec: json<OrderState>(),
  resultCodec: json<{ tracking: string }>(),
  steps: {
    reserve: async (state, ctx) => {
      calls.push(`reserve ${state.sku} attempt ${ctx.attempt}`);
      return ctx.next('charge', { ...state, reservation: `R-${state.qty}` });
    },
    charge: {
      retry: { maxAttempts: 4 },
      run: (state, ctx) => ctx.next('ship', { ...state, chargeId: `C-${ctx.runId}` }),
    },
    ship: (state, ctx) => ctx.succeed({ tracking: `T-${state.reservation ?? '?'}-${state.chargeId ?? '?'}` }),
  },
});

/** Moves the clock in small steps until `done()` (retries and timeouts run on it). */
async function until(clock: ManualClock, done: () => boolean, stepMs = 100, rounds = 500): Promise<void> {
  for (let i = 0; i < rounds && !done(); i++) {
    clock.advance(stepMs);
    await new Promise((resolve) => setImmediate(resolve));
  }
  expect(done()).toBe(true);
}

describe('defineWorkflow on the runtime', () => {
  it('runs named, typed steps to the end; the hook sees the workflow, its last state and its decoded result', async () => {
    const { store, clock } = freshStore();
    const hook = new OutcomeChannel();
    const runtime = new WorkflowRuntime({ store, clock, workflows: [order], hook: hook.hook });
    const { runId, newlySubmitted } = await runtime.start(order, { runId: 'ord-42', input: { sku: 'A1', qty: 2 } });
    expect(newlySubmitted).toBe(true);
    expect(await runtime.status(runId)).toEqual({ runId, state: 'pending', currentStep: 0, workflow: 'order', step: 'reserve' });
    const worker = startWorker(runtime);
    const outcome = await hook.next();
    await worker.stop();
    expect(outcome).toMatchObject({
      runId,
      status: 'succeeded',
      workflow: 'order',
      finalStep: 2,
      output: { tracking: 'T-R-2-C-ord-42' },
      lastState: { sku: 'A1', qty: 2, reservation: 'R-2', chargeId: 'C-ord-42' },
    });
    expect(outcome.headers).toEqual({});
  });

  it('equal inputs are one run whatever the key order (json() encodes keys sorted); a different input is refused', async () => {
    const { store, clock } = freshStore();
    const runtime = new WorkflowRuntime({ store, clock, workflows: [order] });
    await runtime.start(order, { runId: 'same', input: { sku: 'A1', qty: 2 } });
    expect(await runtime.start(order, { runId: 'same', input: { qty: 2, sku: 'A1' } })).toEqual({ runId: 'same', newlySubmitted: false });
    await expect(runtime.start(order, { runId: 'same', input: { sku: 'A1', qty: 3 } })).rejects.toMatchObject({ code: 'INPUT_MISMATCH' });
  });

  it('a value the codec cannot encode is a CodecError at start, with nothing stored', async () => {
    const { store, clock } = freshStore();
    const runtime = new WorkflowRuntime({ store, clock, workflows: [order] });
    for (const qty of [Number.NaN, Infinity]) {
      await expect(runtime.start(order, { input: { sku: 'A1', qty } })).rejects.toBeInstanceOf(CodecError);
    }
    const cyclic: OrderState & { self?: unknown } = { sku: 'A1', qty: 1 };
    cyclic.self = cyclic;
    await expect(runtime.start(order, { input: cyclic })).rejects.toMatchObject({ code: 'CODEC_FAILED', message: expect.stringContaining('cycle at $.self') });
    await expect(runtime.start(order, { input: { sku: 'A1', qty: 1, extra: new Map() } as OrderState })).rejects.toMatchObject({
      code: 'CODEC_FAILED',
      message: expect.stringContaining('Map at $.extra'),
    });
    expect(await store.stats('workflow-steps:order')).toMatchObject({ pending: 0 });
  });

  it('several workflows on one runtime, and services with different workflows on one store: each claims only its own', async () => {
    const { store, clock } = freshStore();
    const ping = defineWorkflow({ name: 'ping', steps: { only: (n: number, ctx) => ctx.succeed(n + 1) } });
    const pong = defineWorkflow({ name: 'pong', steps: { only: (n: number, ctx) => ctx.succeed(n * 10) } });
    const both = new OutcomeChannel();
    const pongOnly = new OutcomeChannel();
    const first = new WorkflowRuntime({ store, clock, workflows: [ping, order], hook: both.hook });
    const second = new WorkflowRuntime({ store, clock, workflows: [pong], hook: pongOnly.hook });
    await first.start(ping, { runId: 'p1', input: 1 });
    await first.start(pong, { runId: 'p2', input: 2 }); // any runtime may start any workflow
    await first.start(order, { runId: 'o1', input: { sku: 'B', qty: 1 } });
    const worker = startWorker(first);
    const seen = [await both.next(), await both.next()].map((o: RunOutcome) => [o.runId, o.workflow, o.output]);
    expect(seen.sort()).toEqual([
      ['o1', 'order', { tracking: 'T-R-1-C-o1' }],
      ['p1', 'ping', 2],
    ]);
    // The pong run waits for a runtime that has pong: the first never claimed it.
    expect(await first.status('p2')).toMatchObject({ state: 'pending', workflow: 'pong' });
    const pongWorker = startWorker(second);
    expect(await pongOnly.next()).toMatchObject({ runId: 'p2', workflow: 'pong', output: 20 });
    await worker.stop();
    await pongWorker.stop();
    expect(both.received).toHaveLength(2);
  });

  it("a runtime that only starts a workflow (does not run it) stores that workflow queue's reaper template once", async () => {
    const { store: inner, clock } = freshStore();
    const templates: string[] = [];
    const store = Object.create(inner) as typeof inner;
    store.setReaperTemplate = (queue, template) => {
      templates.push(queue);
      return inner.setReaperTemplate(queue, template);
    };
    const submitter = new WorkflowRuntime({ store, clock });
    for (const runId of ['s1', 's2', 's3']) await submitter.start(order, { runId, input: { sku: 'A', qty: 1 } });
    expect(templates.filter((q) => q === 'workflow-steps:order')).toEqual(['workflow-steps:order']);
  });

  it('a step naming a step its workflow lacks fails the run with a clear reason (no hang, no retry)', async () => {
    const { store, clock } = freshStore();
    const broken = defineWorkflow({
      name: 'broken',
      steps: {
        // Compile-time checked: the name has to be forced past the types, as untyped code could do.
        first: (state: null, ctx) => ctx.next('nowhere' as 'first', state),
      },
    });
    const hook = new OutcomeChannel();
    const runtime = new WorkflowRuntime({ store, clock, workflows: [broken], hook: hook.hook });
    await runtime.start(broken, { runId: 'b1', input: null });
    const worker = startWorker(runtime);
    expect(await hook.next()).toMatchObject({
      status: 'failed',
      error: 'step "first" chose next step "nowhere", which workflow "broken" does not have',
    });
    await worker.stop();
  });

  it('a step that returns something other than a ctx outcome fails the run permanently, saying what to return', async () => {
    const { store, clock } = freshStore();
    const sloppy = defineWorkflow({ name: 'sloppy', steps: { first: () => ({ kind: 'succeed', result: 1 }) as never } });
    const hook = new OutcomeChannel();
    const runtime = new WorkflowRuntime({ store, clock, workflows: [sloppy], hook: hook.hook });
    await runtime.start(sloppy, { runId: 's1', input: 0 });
    const worker = startWorker(runtime);
    expect(await hook.next()).toMatchObject({ status: 'failed', error: expect.stringContaining('returned no outcome: return ctx.next(...)') });
    await worker.stop();
  });

  it("a step's own retry policy: its attempts, not the queue's", async () => {
    const { store, clock } = freshStore({ defaultQueueConfig: { maxAttempts: 10, retryBackoffBaseMs: 0 } });
    let charges = 0;
    const flaky = defineWorkflow({
      name: 'flaky',
      steps: {
        start: (n: number, ctx) => ctx.next('charge', n),
        charge: {
          retry: { maxAttempts: 2 },
          run: () => {
            charges++;
            throw StepError.transient('card network down');
          },
        },
      },
    });
    const hook = new OutcomeChannel();
    const runtime = new WorkflowRuntime({ store, clock, workflows: [flaky], hook: hook.hook });
    await runtime.start(flaky, { runId: 'f1', input: 1 });
    const worker = startWorker(runtime);
    await until(clock, () => hook.received.length === 1);
    await worker.stop();
    expect(hook.received[0]).toMatchObject({ status: 'failed', error: 'card network down' });
    expect(charges).toBe(2);
  });

  it("a step's own backoff: each retry after its doubling delay, capped, not the queue's backoff", async () => {
    const { store, clock } = freshStore({ defaultQueueConfig: { retryBackoffBaseMs: 60_000 } });
    const times: number[] = [];
    const backoff = defineWorkflow({
      name: 'backoff',
      steps: {
        pay: {
          retry: { maxAttempts: 4, initialDelayMs: 250, maxDelayMs: 400 },
          run: (n: number, ctx) => {
            times.push(clock.now());
            if (ctx.attempt < 4) throw StepError.transient('declined, try again');
            return ctx.succeed(n);
          },
        },
      },
    });
    const hook = new OutcomeChannel();
    const runtime = new WorkflowRuntime({ store, clock, workflows: [backoff], hook: hook.hook });
    await runtime.start(backoff, { runId: 'b1', input: 7 });
    const worker = startWorker(runtime);
    await until(clock, () => hook.received.length === 1, 10);
    await worker.stop();
    expect(hook.received[0]).toMatchObject({ status: 'succeeded', output: 7 });
    const gaps = times.slice(1).map((t, i) => t - (times[i] as number));
    expect(gaps).toHaveLength(3);
    // 250, then 500 capped at 400, then 400 (each plus at most one clock step of the test).
    for (const [gap, delay] of gaps.map((g, i) => [g, [250, 400, 400][i] as number])) {
      expect(gap).toBeGreaterThanOrEqual(delay as number);
      expect(gap).toBeLessThanOrEqual((delay as number) + 20);
    }
  });

  it("a step's own timeout aborts its signal and counts as a transient failure", async () => {
    const { store, clock } = freshStore({ defaultQueueConfig: { retryBackoffBaseMs: 0 } });
    const signals: AbortSignal[] = [];
    const slow = defineWorkflow({
      name: 'slow',
      steps: {
        wait: {
          timeoutMs: 500,
          retry: { maxAttempts: 1 },
          run: (_n: number, ctx) => {
            signals.push(ctx.signal);
            return new Promise(() => undefined);
          },
        },
      },
    });
    const hook = new OutcomeChannel();
    const runtime = new WorkflowRuntime({ store, clock, workflows: [slow], hook: hook.hook });
    await runtime.start(slow, { runId: 't1', input: 1 });
    const worker = startWorker(runtime);
    await eventually(() => signals.length === 1);
    await until(clock, () => hook.received.length === 1);
    await worker.stop();
    expect(hook.received[0]).toMatchObject({ status: 'failed', error: 'step timed out after 500 ms' });
    expect(signals[0]?.aborted).toBe(true);
  });

  it('next with a delay schedules the named step', async () => {
    const { store, clock } = freshStore();
    const later = defineWorkflow({
      name: 'later',
      steps: { first: (n: number, ctx) => ctx.next('second', n + 1, { delayMs: 60_000 }), second: (n: number, ctx) => ctx.succeed(n) },
    });
    const hook = new OutcomeChannel();
    const runtime = new WorkflowRuntime({ store, clock, workflows: [later], hook: hook.hook });
    await runtime.start(later, { runId: 'l1', input: 1 });
    const worker = startWorker(runtime);
    await eventually(async () => (await runtime.status('l1'))?.step === 'second');
    expect(await store.stats('workflow-steps:later')).toMatchObject({ scheduled: 1 });
    await until(clock, () => hook.received.length === 1, 1_000);
    await worker.stop();
    expect(hook.received[0]).toMatchObject({ status: 'succeeded', output: 2 });
  });

  it('bytes() passes raw bytes through, copied', async () => {
    const { store, clock } = freshStore();
    const raw = defineWorkflow({
      name: 'raw',
      codec: bytesCodec(),
      resultCodec: bytesCodec(),
      steps: { echo: (input: Uint8Array, ctx) => ctx.succeed(input) },
    });
    const hook = new OutcomeChannel();
    const runtime = new WorkflowRuntime({ store, clock, workflows: [raw], hook: hook.hook });
    const input = Buffer.from('raw bytes');
    const started = runtime.start(raw, { runId: 'r1', input });
    input.fill(0);
    await started;
    const worker = startWorker(runtime);
    expect((await hook.next()).output).toEqual(bytes('raw bytes'));
    await worker.stop();
  });

  it('a cancelled workflow run reports its workflow and last state', async () => {
    const { store, clock } = freshStore();
    const hook = new OutcomeChannel();
    const runtime = new WorkflowRuntime({ store, clock, workflows: [order], hook: hook.hook });
    await runtime.start(order, { runId: 'c1', input: { sku: 'Z', qty: 9 } });
    expect(await runtime.cancel('c1')).toBe(true);
    expect(await hook.next()).toMatchObject({ status: 'cancelled', workflow: 'order', lastState: { sku: 'Z', qty: 9 } });
  });
});

describe('defineWorkflow refuses definitions that cannot run', () => {
  const step = (_s: number, ctx: { succeed(r: number): never }) => ctx.succeed(1);
  it.each([
    ['a bad name', { name: 'has space', steps: { a: step } }, /the name must be/],
    ['no steps', { name: 'empty', steps: {} }, /it has no steps/],
    ['an unknown start', { name: 'w', steps: { a: step }, start: 'b' }, /start names step "b"/],
    ['a step that is not a function', { name: 'w', steps: { a: 42 } }, /step "a" must be a function/],
    ['a bad retry', { name: 'w', steps: { a: { run: step, retry: { maxAttempts: 0 } } } }, /retry.maxAttempts must be a positive integer/],
    ['a bad timeout', { name: 'w', steps: { a: { run: step, timeoutMs: -1 } } }, /timeoutMs must be a positive integer/],
    ['a codec without decode', { name: 'w', codec: { encode: () => new Uint8Array() }, steps: { a: step } }, /codec must be an object/],
  ])('%s', (_what, definition, message) => {
    expect(() => defineWorkflow(definition as never)).toThrow(WorkflowDefinitionError);
    expect(() => defineWorkflow(definition as never)).toThrow(message);
  });

  it('a workflow not made by defineWorkflow, or two with one name, are refused by the runtime', () => {
    const { store, clock } = freshStore();
    expect(() => new WorkflowRuntime({ store, clock, workflows: [{ name: 'fake', start: 'a' }] })).toThrow(/made by defineWorkflow/);
    expect(() => new WorkflowRuntime({ store, clock, workflows: [order, order] })).toThrow(/two workflows are named "order"/);
  });
});

describe('cancel handling: onCancel and non-cancellable steps', () => {
  interface Trip {
    booked: string[];
  }
  const compensations: Array<{ runId: string; step: string; state: Trip; attempt: number }> = [];

  function tripWorkflow(options: { hotelCancellable?: boolean; failCompensation?: 'transient' | 'permanent' } = {}) {
    let failures = 0;
    return defineWorkflow({
      name: 'trip',
      codec: json<Trip>(),
      steps: {
        flight: (trip, ctx) => ctx.next('hotel', { booked: [...trip.booked, 'flight'] }),
        hotel: {
          cancellable: options.hotelCancellable ?? true,
          run: async (trip, ctx) => {
            await gates.hotel.promise;
            if (ctx.signal.aborted) throw StepError.transient('aborted');
            return ctx.next('car', { booked: [...trip.booked, 'hotel'] });
          },
        },
        car: (trip, ctx) => ctx.succeed({ booked: [...trip.booked, 'car'] }),
      },
      onCancel: (trip, ctx) => {
        compensations.push({ runId: ctx.runId, step: ctx.step, state: trip, attempt: ctx.attempt });
        if (options.failCompensation === 'permanent') throw StepError.permanent('refund refused');
        if (options.failCompensation === 'transient' && failures++ < 2) throw StepError.transient('refund service down');
      },
    });
  }
  const gates = { hotel: { promise: Promise.resolve(), open: (): void => undefined } };
  function holdHotel(): void {
    let open!: () => void;
    gates.hotel = { promise: new Promise<void>((resolve) => (open = resolve)), open };
  }

  it('a cancel of a pending step runs onCancel with the last committed state, then the run ends cancelled', async () => {
    compensations.length = 0;
    const trip = tripWorkflow();
    const { store, clock } = freshStore();
    const hook = new OutcomeChannel();
    const runtime = new WorkflowRuntime({ store, clock, workflows: [trip], hook: hook.hook });
    await runtime.start(trip, { runId: 'trip-1', input: { booked: [] } });
    expect(await runtime.cancel('trip-1')).toBe(true);
    expect(await runtime.status('trip-1')).toMatchObject({ state: 'cancelling', workflow: 'trip', step: 'flight' });
    expect(await runtime.cancel('trip-1')).toBe(false); // its compensation cannot be cancelled
    const worker = startWorker(runtime);
    expect(await hook.next()).toMatchObject({ runId: 'trip-1', status: 'cancelled', workflow: 'trip', lastState: { booked: [] } });
    await worker.stop();
    expect(compensations).toEqual([{ runId: 'trip-1', step: 'flight', state: { booked: [] }, attempt: 1 }]);
    expect(hook.received).toHaveLength(1);
  });

  it('a cancel during a cancellable step aborts it; onCancel gets the state that step started with', async () => {
    compensations.length = 0;
    holdHotel();
    const trip = tripWorkflow();
    const { store, clock } = freshStore();
    const hook = new OutcomeChannel();
    const runtime = new WorkflowRuntime({ store, clock, workflows: [trip], hook: hook.hook });
    const worker = startWorker(runtime);
    await runtime.start(trip, { runId: 'trip-2', input: { booked: [] } });
    await eventually(async () => (await runtime.status('trip-2'))?.state === 'running');
    expect(await runtime.cancel('trip-2')).toBe(true);
    gates.hotel.open();
    expect(await hook.next()).toMatchObject({ status: 'cancelled', lastState: { booked: ['flight'] } });
    await worker.stop();
    expect(compensations.map((c) => [c.step, c.state])).toEqual([['hotel', { booked: ['flight'] }]]);
  });

  it('a non-cancellable step is not aborted: its outcome commits and the cancel applies at the next boundary, with its state', async () => {
    compensations.length = 0;
    holdHotel();
    const trip = tripWorkflow({ hotelCancellable: false });
    const { store, clock } = freshStore();
    const hook = new OutcomeChannel();
    const runtime = new WorkflowRuntime({ store, clock, workflows: [trip], hook: hook.hook });
    const worker = startWorker(runtime);
    await runtime.start(trip, { runId: 'trip-3', input: { booked: [] } });
    await eventually(async () => (await runtime.status('trip-3'))?.step === 'hotel' && (await runtime.status('trip-3'))?.state === 'running');
    expect(await runtime.cancel('trip-3')).toBe(true);
    gates.hotel.open();
    expect(await hook.next()).toMatchObject({ status: 'cancelled', lastState: { booked: ['flight', 'hotel'] } });
    await worker.stop();
    // The hotel step was not aborted (it would have thrown) and its booking committed; the compensation saw it, at the boundary before `car`.
    expect(compensations.map((c) => [c.step, c.state])).toEqual([['car', { booked: ['flight', 'hotel'] }]]);
  });

  it('a cancel during a non-cancellable step that ends the run comes too late: the run succeeds', async () => {
    compensations.length = 0;
    const release = { open: (): void => undefined };
    const last = defineWorkflow({
      name: 'last',
      steps: {
        finish: {
          cancellable: false,
          run: async (n: number, ctx) => {
            await new Promise<void>((resolve) => (release.open = resolve));
            return ctx.signal.aborted ? ctx.fail('was aborted') : ctx.succeed(n);
          },
        },
      },
      onCancel: () => void compensations.push({ runId: 'x', step: 'x', state: { booked: [] }, attempt: 0 }),
    });
    const { store, clock } = freshStore();
    const hook = new OutcomeChannel();
    const runtime = new WorkflowRuntime({ store, clock, workflows: [last], hook: hook.hook });
    const worker = startWorker(runtime);
    await runtime.start(last, { runId: 'late-1', input: 3 });
    await eventually(async () => (await runtime.status('late-1'))?.state === 'running');
    expect(await runtime.cancel('late-1')).toBe(true);
    release.open();
    expect(await hook.next()).toMatchObject({ status: 'succeeded', output: 3 });
    await worker.stop();
    expect(compensations).toEqual([]);
  });

  it('onCancel is retried like a step; one that fails for good ends the run failed, saying so', async () => {
    for (const [mode, expected] of [
      ['transient', { status: 'cancelled' }],
      ['permanent', { status: 'failed', error: 'onCancel failed: refund refused' }],
    ] as const) {
      compensations.length = 0;
      const trip = tripWorkflow({ failCompensation: mode });
      const { store, clock } = freshStore({ defaultQueueConfig: { retryBackoffBaseMs: 0 } });
      const hook = new OutcomeChannel();
      const runtime = new WorkflowRuntime({ store, clock, workflows: [trip], hook: hook.hook });
      await runtime.start(trip, { runId: `comp-${mode}`, input: { booked: [] } });
      await runtime.cancel(`comp-${mode}`);
      const worker = startWorker(runtime);
      await until(clock, () => hook.received.length === 1);
      await worker.stop();
      expect(hook.received[0]).toMatchObject(expected);
      expect(compensations.map((c) => c.attempt)).toEqual(mode === 'transient' ? [1, 2, 3] : [1]);
    }
  });
});
