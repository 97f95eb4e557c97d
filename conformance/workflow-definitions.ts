/**
 * Workflow definitions (`defineWorkflow`) on the store under test: a typed
 * run of named steps to its end with durable hook delivery, services with
 * different workflows sharing the store, a step's own retry policy across
 * a runtime restart, and a reaped step whose run ends with its workflow
 * named. Each check drives real runtimes on a `ManualClock`.
 */
import type { ManualClock } from '../core/clock.js';
import type { RunOutcome } from '../core/outcomes.js';
import type { QueueStore } from '../core/queue-store.js';
import { WorkflowRuntime } from '../core/runtime.js';
import type { WorkflowRuntimeOptions } from '../core/runtime.js';
import { StepError } from '../core/outcomes.js';
import { json } from '../core/workflow/codec.js';
import { defineWorkflow } from '../core/workflow/define.js';
import { assert, assertEqual, withStore } from './checks.js';
import type { ConformanceCheck, ConformanceGroup } from './checks.js';
import { canonical } from './compare.js';
import { InterceptingStore } from '../testing/intercepting-store.js';

const LEASE_MS = 1_000;
const CONTEXT = { backgroundMaintenance: true, defaultQueueConfig: { leaseDurationMs: LEASE_MS, retryBackoffBaseMs: 0 } };

/** Moves the clock until `done()`, giving the store real time to answer; fails after `failsafeMs` of real time. */
async function drive(clock: ManualClock, done: () => boolean | Promise<boolean>, what: string, stepMs = 50, failsafeMs = 20_000): Promise<void> {
  const deadline = Date.now() + failsafeMs;
  while (!(await done())) {
    assert(`${what}: not reached within ${failsafeMs} ms of real time`, Date.now() < deadline);
    clock.advance(stepMs);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/** A runtime with its worker loop, and the outcomes its hook saw. */
function worker(options: WorkflowRuntimeOptions): { runtime: WorkflowRuntime; outcomes: RunOutcome[]; stop: () => Promise<void> } {
  const outcomes: RunOutcome[] = [];
  const runtime = new WorkflowRuntime({ hookDelivery: 'durable', pollIntervalMs: 50, ...options, hook: (o) => void outcomes.push(o) });
  const controller = new AbortController();
  const running = runtime.run(controller.signal);
  return {
    runtime,
    outcomes,
    stop: async () => {
      controller.abort();
      await running;
    },
  };
}

interface Order {
  sku: string;
  qty: number;
  reservation?: string;
}

const order = defineWorkflow({
  name: 'order',
  codec: json<Order>(),
  resultCodec: json<{ tracking: string }>(),
  steps: {
    reserve: (state, ctx) => ctx.next('ship', { ...state, reservation: `R-${state.qty}` }),
    ship: (state, ctx) => ctx.succeed({ tracking: `T-${state.reservation ?? ''}` }),
  },
});

const ping = defineWorkflow({ name: 'ping', steps: { only: (n: number, ctx) => ctx.succeed(n + 1) } });

/** The fields a check compares, those that are set. */
const summary = (o: RunOutcome): unknown =>
  Object.fromEntries(
    Object.entries({ runId: o.runId, status: o.status, workflow: o.workflow, output: o.output, error: o.error }).filter(([, v]) => v !== undefined),
  );

async function runsToEnd(store: QueueStore, clock: ManualClock): Promise<void> {
  const w = worker({ store, clock, workflows: [order] });
  try {
    await w.runtime.start(order, { runId: 'ord-1', input: { sku: 'A1', qty: 2 }, headers: { tenant: 't1' } });
    await drive(clock, () => w.outcomes.length === 1, 'the run ends');
    const [outcome] = w.outcomes as [RunOutcome];
    assertEqual('the outcome', summary(outcome), { runId: 'ord-1', status: 'succeeded', workflow: 'order', output: { tracking: 'T-R-2' } });
    assertEqual('its last state, decoded', outcome.lastState, { sku: 'A1', qty: 2, reservation: 'R-2' });
    assertEqual('its headers', outcome.headers, { tenant: 't1' });
    assertEqual('the run is over', await w.runtime.status('ord-1'), undefined);
  } finally {
    await w.stop();
  }
}

async function servicesShareTheStore(store: QueueStore, clock: ManualClock): Promise<void> {
  const orders = worker({ store, clock, workflows: [order] });
  try {
    await orders.runtime.start(ping, { runId: 'ping-1', input: 1 });
    await orders.runtime.start(order, { runId: 'ord-2', input: { sku: 'B', qty: 1 } });
    // Its notification acked too: the clock jump below must not expire a hook's lease mid-ack (a legitimate re-delivery).
    const settled = async (): Promise<boolean> => orders.outcomes.length === 1 && (await store.stats('workflow-steps:order.outcomes')).claimed === 0;
    await drive(clock, settled, 'the order run ends');
    clock.advance(10 * LEASE_MS);
    await new Promise((resolve) => setTimeout(resolve, 20));
    assertEqual('the service without ping never claimed its step', await orders.runtime.status('ping-1'), {
      runId: 'ping-1',
      state: 'pending',
      currentStep: 0,
      workflow: 'ping',
      step: 'only',
    });
    const pings = worker({ store, clock, workflows: [ping] });
    try {
      await drive(clock, () => pings.outcomes.length === 1, 'the ping run ends on the service that has ping');
      assertEqual(
        'each service saw its own',
        [orders.outcomes.map(summary), pings.outcomes.map(summary)],
        [
          [{ runId: 'ord-2', status: 'succeeded', workflow: 'order', output: { tracking: 'T-R-1' } }],
          [{ runId: 'ping-1', status: 'succeeded', workflow: 'ping', output: 2 }],
        ],
      );
    } finally {
      await pings.stop();
    }
  } finally {
    await orders.stop();
  }
}

async function retryAcrossRestart(store: QueueStore, clock: ManualClock): Promise<void> {
  const attempts: Array<{ at: number; attempt: number }> = [];
  const flaky = defineWorkflow({
    name: 'flaky',
    steps: {
      charge: {
        retry: { maxAttempts: 3, initialDelayMs: 2_000 },
        run: (_n: number, ctx) => {
          attempts.push({ at: clock.now(), attempt: ctx.attempt });
          throw StepError.transient(`declined (attempt ${ctx.attempt})`);
        },
      },
    },
  });
  const first = worker({ store, clock, workflows: [flaky] });
  await first.runtime.start(flaky, { runId: 'f-1', input: 0 });
  try {
    await drive(clock, () => attempts.length === 1, 'the first attempt');
  } finally {
    await first.stop(); // the process restarts: the retry is the store's to keep
  }
  const second = worker({ store, clock, workflows: [flaky] });
  try {
    await drive(clock, () => second.outcomes.length === 1, 'the run fails on its last attempt');
    assertEqual(
      'three attempts, numbered',
      attempts.map((a) => a.attempt),
      [1, 2, 3],
    );
    const gaps = attempts.slice(1).map((a, i) => a.at - (attempts[i] as { at: number }).at);
    assert(`retries wait the step's own backoff (2 s, then 4 s), got gaps ${canonical(gaps)}`, (gaps[0] ?? 0) >= 2_000 && (gaps[1] ?? 0) >= 4_000);
    assertEqual('the outcome', summary(second.outcomes[0] as RunOutcome), {
      runId: 'f-1',
      status: 'failed',
      workflow: 'flaky',
      error: 'declined (attempt 3)',
    });
  } finally {
    await second.stop();
  }
}

async function reapedStepNamesItsWorkflow(store: QueueStore, clock: ManualClock): Promise<void> {
  const once = defineWorkflow({ name: 'once', steps: { only: { retry: { maxAttempts: 1 }, run: (n: number, ctx) => ctx.succeed(n) } } });
  // A submit-only process starts the run; a process that died took its step (claimed, never settled).
  const submitter = new WorkflowRuntime({ store, clock, hookDelivery: 'durable' });
  await submitter.start(once, { runId: 'reaped-1', input: 5 });
  const [taken] = await store.claim('workflow-steps:once');
  assert('the step was claimable on its workflow queue', taken !== undefined);
  const w = worker({ store, clock, workflows: [once] });
  try {
    await drive(clock, () => w.outcomes.length === 1, 'the reaped run ends');
    assertEqual('the outcome names the workflow', summary(w.outcomes[0] as RunOutcome), {
      runId: 'reaped-1',
      status: 'failed',
      workflow: 'once',
      error: 'lease expired',
    });
  } finally {
    await w.stop();
  }
}

interface Trip {
  booked: string[];
}

async function compensationSurvivesDeath(store: QueueStore, clock: ManualClock): Promise<void> {
  const compensations: number[] = [];
  let hangFirst = true;
  const trip = defineWorkflow({
    name: 'trip',
    codec: json<Trip>(),
    steps: { book: (state, ctx) => ctx.next('pay', { booked: [...state.booked, 'hotel'] }), pay: (state, ctx) => ctx.succeed(state) },
    onCancel: async (_state, ctx) => {
      compensations.push(ctx.attempt);
      if (hangFirst) {
        hangFirst = false;
        await new Promise(() => undefined); // the process dies here
      }
    },
  });
  // The first worker's store calls go through a view that stops answering: its process is gone (as after SIGKILL).
  const doomedView = new InterceptingStore(store, {});
  const doomed = new WorkflowRuntime({ store: doomedView, clock, hookDelivery: 'durable', pollIntervalMs: 50, workflows: [trip] });
  await doomed.start(trip, { runId: 'trip-1', input: { booked: [] } });
  assertEqual('a cancel of the pending run starts its compensation', await doomed.cancel('trip-1'), true);
  assertEqual('the run is cancelling meanwhile', (await doomed.status('trip-1'))?.state, 'cancelling');
  const doomedLoop = doomed.run(new AbortController().signal);
  void doomedLoop.catch(() => undefined);
  await drive(clock, () => compensations.length === 1, 'the first compensation starts');
  doomedView.detach();
  const survivor = worker({ store, clock, workflows: [trip] });
  try {
    await drive(clock, () => survivor.outcomes.length === 1, 'the compensation runs again after the lease expires, and the run ends');
    assertEqual('compensation attempts', compensations, [1, 2]);
    assertEqual('the outcome', summary(survivor.outcomes[0] as RunOutcome), { runId: 'trip-1', status: 'cancelled', workflow: 'trip' });
    assertEqual('the state it compensated', survivor.outcomes[0]?.lastState, { booked: [] });
  } finally {
    await survivor.stop();
  }
}

async function cancelDuringNonCancellableStep(store: QueueStore, clock: ManualClock): Promise<void> {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let running = false;
  const shipment = defineWorkflow({
    name: 'shipment',
    codec: json<Trip>(),
    steps: {
      ship: {
        cancellable: false,
        run: async (state, ctx) => {
          running = true;
          await released;
          return ctx.next('notify', { booked: [...state.booked, ctx.signal.aborted ? 'aborted' : 'shipped'] });
        },
      },
      notify: (state, ctx) => ctx.succeed(state),
    },
  });
  const w = worker({ store, clock, workflows: [shipment] });
  try {
    await w.runtime.start(shipment, { runId: 'ship-1', input: { booked: [] } });
    await drive(clock, () => running, 'the step starts');
    assertEqual('the cancel is taken', await w.runtime.cancel('ship-1'), true);
    release();
    await drive(clock, () => w.outcomes.length === 1, 'the run ends');
    assertEqual('cancelled at the boundary after the step', summary(w.outcomes[0] as RunOutcome), {
      runId: 'ship-1',
      status: 'cancelled',
      workflow: 'shipment',
    });
    assertEqual('with the state the step committed, its signal never aborted', w.outcomes[0]?.lastState, { booked: ['shipped'] });
  } finally {
    await w.stop();
  }
}

/** The workflow-definition checks. */
export function workflowDefinitionChecks(): ConformanceGroup {
  const check = (name: string, body: (store: QueueStore, clock: ManualClock) => Promise<void>): ConformanceCheck => ({
    name,
    run: (options) => withStore(options, body, CONTEXT),
  });
  return {
    name: 'workflow definitions',
    checks: [
      check('a typed workflow runs its named steps to the end; the hook sees its workflow, last state and decoded result', runsToEnd),
      check('services with different workflows share the store: each claims only the steps of its own', servicesShareTheStore),
      check("a step's own retry policy (attempts and backoff) holds across a runtime restart", retryAcrossRestart),
      check('a step reaped on its last attempt ends its run, the outcome naming the workflow', reapedStepNamesItsWorkflow),
      check('onCancel is a durable step: when its worker dies mid-compensation, another runs it again and the run ends cancelled', compensationSurvivesDeath),
      check('a cancel during a non-cancellable step applies at the next boundary, with the state the step committed', cancelDuringNonCancellableStep),
    ],
  };
}
