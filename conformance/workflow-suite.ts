/**
 * Workflow-level properties (runs, steps, cancels, hooks) on the store under test:
 * random runs with per-step scripts of outcomes, external cancels at random
 * moments, duplicate and conflicting submits, runtime restarts, two runtimes
 * sharing one store, injected store faults (before and after the write
 * lands), and a zombie delivery (a lease expires mid-step and another
 * delivery takes the step over).
 *
 * Time is a `ManualClock`; the driver lets the event loop drain
 * (`setImmediate`), then jumps the clock to the next timer. No real sleeps.
 */
import { workflowDefinitionChecks } from './workflow-definitions.js';
import fc from 'fast-check';
import { ManualClock } from '../core/clock.js';
import { StoreUnavailableError } from '../core/errors.js';
import { createHeaders } from '../core/headers.js';
import { StepError, StepOutcome } from '../core/outcomes.js';
import type { RunOutcome, Step } from '../core/outcomes.js';
import { runKeys } from '../core/run-records.js';
import { WorkflowRuntime } from '../core/runtime.js';
import type { ConformanceCheck, ConformanceGroup, StoreGuard } from './checks.js';
import { assertProperty, runChecks, withGuardedStore } from './checks.js';
import { ConformanceError, canonical, outcome, show } from './compare.js';
import { runParameters } from './options.js';
import type { ConformanceOptions, StoreContext } from './options.js';
import { FaultInjectingStore } from './fault-injection.js';

const START = Date.parse('2026-01-01T00:00:00Z');
const QUEUE = 'workflow-steps';
const LEASE_MS = 1000;
const encoder = new TextEncoder();
const bytes = (text: string): Uint8Array => encoder.encode(text);

/** What the runner does on one attempt of one step. */
export type ScriptAction = 'continue' | 'continueAfter' | 'succeed' | 'fail' | 'cancel' | 'transient' | 'permanent';

export interface RunScript {
  /** `steps[n][a]`: the action of attempt a+1 of step n (the last entry repeats; past the end: succeed). */
  steps: ScriptAction[][];
  maxAttempts: number;
  /** External cancel once this many steps (of all runs) have started; undefined = never. */
  cancelAfterStarts?: number;
}

export interface WorkflowScenario {
  runs: RunScript[];
  /** Runtimes sharing the store. */
  workers: 1 | 2;
  /** Replace runtime 0 by a fresh one once this many steps have started. */
  restartAfterStarts?: number;
  /** Submit every run a second time (same input) and once with a different input before starting. */
  duplicateSubmits: boolean;
  /** Seeded fault injection into store calls (`seed` seeds `createPrng`, see `FaultInjectingStore`); implies durable hook delivery. */
  faults?: { seed: number; rate: number };
  /** Run index whose step 0, attempt 1, outlives its lease (zombie). */
  zombieRun?: number;
  hookDelivery: 'inProcess' | 'durable';
}

// ---- expectations ----------------------------------------------------------

function actionOf(script: RunScript, step: number, attempt: number): ScriptAction {
  const attempts = script.steps[step];
  if (!attempts || attempts.length === 0) return 'succeed';
  return attempts[Math.min(attempt - 1, attempts.length - 1)] as ScriptAction;
}

/** The outcome the script dictates with no external cancel (the zombie's first attempt counts as a lost lease). */
export function scriptedOutcome(script: RunScript, zombie: boolean): { status: RunOutcome['status']; error?: string; result?: string; finalStep: number } {
  let step = 0;
  let attempt = 1;
  for (let guard = 0; guard < 1000; guard++) {
    if (zombie && step === 0 && attempt === 1) {
      if (attempt >= script.maxAttempts) return { status: 'failed', error: 'lease expired', finalStep: 0 };
      attempt++;
      continue;
    }
    const action = actionOf(script, step, attempt);
    switch (action) {
      case 'continue':
      case 'continueAfter':
        step++;
        attempt = 1;
        continue;
      case 'succeed':
        return { status: 'succeeded', result: `r-${step}`, finalStep: step };
      case 'fail':
        return { status: 'failed', error: `f-${step}`, finalStep: step };
      case 'cancel':
        return { status: 'cancelled', error: `c-${step}`, finalStep: step };
      case 'permanent':
        return { status: 'failed', error: `p-${step}`, finalStep: step };
      case 'transient':
        if (attempt >= script.maxAttempts) return { status: 'failed', error: `t-${step}-${attempt}`, finalStep: step };
        attempt++;
        continue;
    }
  }
  throw new Error('script does not terminate');
}

// ---- one scenario ----------------------------------------------------------

interface Execution {
  step: number;
  attempt: number;
  zombie: boolean;
}

const decoder = new TextDecoder();

/** Runs one scenario on a fresh store and checks every invariant; throws `ConformanceError` on a violation. */
export async function runWorkflowScenario(options: ConformanceOptions, scenario: WorkflowScenario): Promise<void> {
  const clock = new ManualClock(START);
  const ctx: StoreContext = {
    clock,
    backgroundMaintenance: true,
    defaultQueueConfig: { leaseDurationMs: LEASE_MS, retryBackoffBaseMs: 10, retryBackoffMaxMs: 100 },
    // Injected faults can fail a hook delivery several times in a row; a notification must not run out of attempts.
    queueConfigs: { [`${QUEUE}.outcomes`]: { maxAttempts: 50 } },
  };
  await withGuardedStore(options, ctx, (guard) => driveScenario(scenario, clock, guard));
}

async function driveScenario(scenario: WorkflowScenario, clock: ManualClock, guard: StoreGuard): Promise<void> {
  // `raw`: the store under test without injected faults (the driver's own reads), still guarded.
  const raw = guard.store;
  const faults = scenario.faults ? new FaultInjectingStore(raw, scenario.faults.seed, scenario.faults.rate) : undefined;
  const store = faults ? faults.asStore() : raw;
  const runIds = scenario.runs.map((_, i) => `run-${i}`);
  const scriptOf = new Map(runIds.map((id, i) => [id, scenario.runs[i] as RunScript]));
  const headersOf = new Map(runIds.map((id, i) => [id, { tenant: `t${i}`, ...(i % 2 === 0 ? { trace: `x${i}` } : {}) }]));
  const violations: string[] = [];
  const outcomes = new Map<string, RunOutcome[]>();
  const endedAt = new Map<string, number>();
  const active = new Map<string, Execution[]>();
  const started: Array<{ runId: string; step: number; attempt: number }> = [];
  const cancelResult = new Map<string, boolean | 'unknown'>();
  const zombieId = scenario.zombieRun === undefined ? undefined : runIds[scenario.zombieRun % runIds.length];
  let zombieGate: (() => void) | undefined;
  const zombie = { state: 'none' as 'none' | 'blocked' | 'expired' | 'released' };
  let steps = 0;

  /** `stopping`: the worker loop of the runtime running the step was aborted (undefined for runtimes without one). */
  const runner = async (step: Step, stopping?: AbortSignal): Promise<StepOutcome> => {
    steps++;
    const script = scriptOf.get(step.runId);
    if (!script) {
      violations.push(`runner called for unknown run ${step.runId}`);
      return StepOutcome.fail('unknown');
    }
    if (endedAt.has(step.runId)) violations.push(`step ${step.stepNumber} of ${step.runId} started after the run ended`);
    if (canonical(step.headers) !== canonical(headersOf.get(step.runId)))
      violations.push(`step ${step.stepNumber} of ${step.runId} got headers ${canonical(step.headers)}`);
    const expectedPayload = step.stepNumber === 0 ? `input-${step.runId}` : `s${step.stepNumber}`;
    if (decoder.decode(step.payload) !== expectedPayload)
      violations.push(`step ${step.stepNumber} of ${step.runId} got payload ${decoder.decode(step.payload)}`);
    // A runtime being stopped waits for its steps: a zombie there would hold its stop forever.
    const isZombie = step.runId === zombieId && step.stepNumber === 0 && step.attempts === 1 && zombie.state === 'none' && stopping?.aborted !== true;
    // Blocked from the first moment, before any await: the driver never restarts a runtime that holds the
    // zombie, and a restart decided while this step awaits (cancelDue) would otherwise abort it.
    const gate = isZombie
      ? new Promise<void>((resolve) => {
          zombieGate = resolve;
        })
      : undefined;
    if (isZombie) zombie.state = 'blocked';
    const running = active.get(step.runId) ?? [];
    // A delivery whose lease expired (the zombie) may overlap its successors: at-least-once delivery allows exactly that.
    const overlapping = running.filter((e) => !e.zombie);
    if (overlapping.length > 0)
      violations.push(`two steps of ${step.runId} ran at once: ${show(overlapping)} and step ${step.stepNumber} attempt ${step.attempts}`);
    const execution: Execution = { step: step.stepNumber, attempt: step.attempts, zombie: isZombie };
    active.set(step.runId, [...running, execution]);
    started.push({ runId: step.runId, step: step.stepNumber, attempt: step.attempts });
    try {
      await cancelDue();
      await gate;
      const action = actionOf(script, step.stepNumber, step.attempts);
      switch (action) {
        case 'continue':
          return StepOutcome.continue(bytes(`s${step.stepNumber + 1}`));
        case 'continueAfter':
          return StepOutcome.continueAfter(bytes(`s${step.stepNumber + 1}`), 200);
        case 'succeed':
          return StepOutcome.succeed(bytes(`r-${step.stepNumber}`));
        case 'fail':
          return StepOutcome.fail(`f-${step.stepNumber}`);
        case 'cancel':
          return StepOutcome.cancel(`c-${step.stepNumber}`);
        case 'transient':
          throw StepError.transient(`t-${step.stepNumber}-${step.attempts}`);
        case 'permanent':
          throw StepError.permanent(`p-${step.stepNumber}`);
      }
    } finally {
      active.set(
        step.runId,
        (active.get(step.runId) ?? []).filter((e) => e !== execution),
      );
    }
  };

  const runtimes: WorkflowRuntime[] = [];
  const hook = async (result: RunOutcome): Promise<void> => {
    const list = outcomes.get(result.runId) ?? [];
    list.push(result);
    outcomes.set(result.runId, list);
    if (!endedAt.has(result.runId)) endedAt.set(result.runId, clock.now());
    // The run record is gone before the hook runs: status must not report the run as active.
    const status = await outcome(() => (runtimes[0] as WorkflowRuntime).status(result.runId));
    if (status.ok && status.value !== undefined) violations.push(`status(${result.runId}) reported ${canonical(status.value)} inside its terminal hook`);
  };
  const makeRuntime = (stopping?: AbortSignal): WorkflowRuntime =>
    new WorkflowRuntime({
      store,
      runner: (step) => runner(step, stopping),
      hook,
      clock,
      pollIntervalMs: 50,
      maxConcurrentSteps: 4,
      hookDelivery: scenario.faults ? 'durable' : scenario.hookDelivery,
    });
  const workers: Array<{ runtime: WorkflowRuntime; controller: AbortController; done: Promise<void> }> = [];
  const start = (): void => {
    const controller = new AbortController();
    const runtime = makeRuntime(controller.signal);
    runtimes.push(runtime);
    workers.push({ runtime, controller, done: runtime.run(controller.signal) });
  };
  /** Keeps time moving until `promise` settles: runtimes may be sleeping on the clock (store retry backoff). */
  const driveUntil = async (promise: Promise<unknown>): Promise<void> => {
    let settled = false;
    void promise.then(
      () => (settled = true),
      () => (settled = true),
    );
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- changed by another task while this one awaits
    for (let i = 0; !settled; i++) {
      await drain();
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- changed by another task while this one awaits
      if (settled) break;
      if (i > 3000) throw new ConformanceError('a runtime did not stop (run() never resolved after abort)');
      const next = clock.nextTimerAt();
      clock.advance(next === undefined ? 50 : Math.max(1, Math.min(next - clock.now(), 1000)));
    }
    await promise;
  };
  const stop = async (index: number): Promise<void> => {
    const worker = workers[index];
    if (!worker) return;
    worker.controller.abort();
    await driveUntil(worker.done);
  };
  /** Store calls made by the driver retry injected faults (the runtime's own calls are under test). */
  const retry = async <T>(call: () => Promise<T>): Promise<{ value: T; faulted: boolean }> => {
    let faulted = false;
    for (let i = 0; ; i++) {
      try {
        return { value: await call(), faulted };
      } catch (error) {
        if (!(error instanceof StoreUnavailableError) || i > 50) throw error;
        faulted = true;
      }
    }
  };
  const cancelIssued = new Set<string>();
  /**
   * External cancels whose moment (a count of started steps) has come, issued
   * from the newest runtime. Called inside the runner too, so a cancel can hit
   * a step while it runs, not only between steps.
   */
  const cancelDue = async (): Promise<void> => {
    for (const runId of runIds) {
      const at = scriptOf.get(runId)?.cancelAfterStarts;
      if (at === undefined || cancelIssued.has(runId) || steps < at) continue;
      cancelIssued.add(runId);
      const runtime = runtimes[runtimes.length - 1] as WorkflowRuntime;
      const result = await retry(() => runtime.cancel(runId));
      cancelResult.set(runId, result.faulted ? 'unknown' : result.value);
      if (!result.faulted && result.value) {
        const second = await retry(() => runtime.cancel(runId));
        if (second.value && !second.faulted) violations.push(`a second cancel of ${runId} returned true`);
      }
    }
  };
  /**
   * Lets the system go quiet before time moves: no store call in flight (a
   * networked store answers on its own schedule) and a few event-loop turns
   * for the runtime's follow-up work. Time never moves while the store works,
   * so a lease cannot expire just because a database was slow.
   */
  const drain = async (): Promise<void> => {
    for (let quiet = 0; quiet < 5;) {
      await new Promise((resolve) => setImmediate(resolve));
      // A call past its deadline fails the scenario, whoever made it (the runtimes would only retry it).
      if (guard.failure) throw guard.failure;
      if (guard.inFlight() > 0) quiet = 0;
      else quiet++;
    }
  };

  try {
    const submitter = makeRuntime();
    runtimes.push(submitter);
    for (const runId of runIds) {
      const script = scriptOf.get(runId) as RunScript;
      const headers = createHeaders();
      Object.assign(headers, headersOf.get(runId));
      const submitted = await retry(() => submitter.submit({ runId, input: bytes(`input-${runId}`), headers, maxAttemptsPerStep: script.maxAttempts }));
      if (!submitted.faulted && !submitted.value.newlySubmitted) violations.push(`first submit of ${runId} was not newly submitted`);
      if (scenario.duplicateSubmits) {
        const again = await retry(() => submitter.submit({ runId, input: bytes(`input-${runId}`), headers }));
        if (again.value.newlySubmitted) violations.push(`duplicate submit of active ${runId} reported newlySubmitted`);
        const conflicting = await outcome(() => retry(() => submitter.submit({ runId, input: bytes('other input'), headers })));
        if (conflicting.ok || conflicting.code !== 'INPUT_MISMATCH')
          violations.push(`conflicting submit of ${runId}: expected INPUT_MISMATCH, got ${conflicting.ok ? 'success' : conflicting.code}`);
      }
    }
    runtimes.length = 0;
    for (let i = 0; i < scenario.workers; i++) start();

    let restarted = false;
    for (let iteration = 0; ; iteration++) {
      await drain();
      if (runIds.every((id) => outcomes.has(id)) && zombie.state !== 'blocked' && zombie.state !== 'expired') {
        // Durable delivery is at least once: wait until no notification (a retry or a duplicate) is still live.
        const notifications = await raw.stats(`${QUEUE}.outcomes`);
        if (notifications.pending + notifications.claimed + notifications.scheduled === 0) break;
      }
      if (iteration > 3000) {
        const statuses = await Promise.all(runIds.map((id) => outcome(() => (runtimes[0] as WorkflowRuntime).status(id))));
        throw new ConformanceError(`runs did not all end: ${show(runIds.map((id, i) => [id, outcomes.has(id) ? 'ended' : canonical(statuses[i])]))}`);
      }
      await cancelDue();
      if (
        scenario.restartAfterStarts !== undefined &&
        !restarted &&
        steps >= scenario.restartAfterStarts &&
        zombie.state !== 'blocked' &&
        zombie.state !== 'expired'
      ) {
        restarted = true;
        await stop(0);
        workers.splice(0, 1);
        runtimes.splice(0, 1);
        start();
        continue;
      }
      if (zombie.state === 'blocked') {
        // The zombie holds its step past the lease: the reaper re-queues (or dead-letters) it.
        // Jump only when the zombie's is the one live claim (no other step waiting on a retry
        // backoff), so no other delivery loses its lease to the jump.
        const steps = await raw.stats(QUEUE);
        const notifications = await raw.stats(`${QUEUE}.outcomes`);
        if (steps.claimed === 1 && notifications.claimed === 0) {
          zombie.state = 'expired';
          clock.advance(LEASE_MS * 6);
          continue;
        }
      }
      if (zombie.state === 'expired') {
        const takenOver = started.some((s) => s.runId === zombieId && s.step === 0 && s.attempt === 2);
        if (takenOver || (zombieId !== undefined && outcomes.has(zombieId))) {
          zombie.state = 'released';
          zombieGate?.();
          continue;
        }
      }
      const next = clock.nextTimerAt();
      clock.advance(next === undefined ? 50 : Math.max(1, Math.min(next - clock.now(), 1000)));
    }
    for (let i = workers.length - 1; i >= 0; i--) await stop(i);
    if (faults) faults.enabled = false;

    // ---- final checks ----
    for (const runId of runIds) {
      const script = scriptOf.get(runId) as RunScript;
      const delivered = outcomes.get(runId) ?? [];
      if (delivered.length === 0) {
        violations.push(`${runId} never ended`);
        continue;
      }
      // Durable delivery is at least once: a fault or a stalled process (zombie) may repeat a notification.
      const repeatsAllowed = faults !== undefined || (scenario.hookDelivery === 'durable' && zombieId !== undefined);
      if (!repeatsAllowed && delivered.length > 1) violations.push(`${runId} ended ${delivered.length} times: ${show(delivered.map((o) => o.status))}`);
      if (new Set(delivered.map((o) => canonical(o))).size > 1)
        violations.push(`${runId} was reported with different outcomes: ${show(delivered.map(canonical))}`);
      const got = delivered[0] as RunOutcome;
      if (canonical(got.headers) !== canonical(headersOf.get(runId))) violations.push(`${runId} outcome headers ${canonical(got.headers)}`);
      // The zombie never happens when its delivery ran in a runtime being stopped (or the run ended first).
      const expected = scriptedOutcome(script, runId === zombieId && zombie.state !== 'none');
      const cancelled = cancelResult.get(runId);
      const shown: { status: string; error?: string; result?: string; finalStep: number } = { status: got.status, finalStep: got.finalStep };
      if (got.error !== undefined) shown.error = got.error;
      if (got.result !== undefined) shown.result = decoder.decode(got.result);
      const exact = canonical(shown) === canonical(expected);
      const maxStarted = Math.max(-1, ...started.filter((s) => s.runId === runId).map((s) => s.step));
      if (cancelled === true) {
        // Cancel precedence: the run ends cancelled; only a runner-issued cancel keeps its reason.
        const ownCancel = exact && expected.status === 'cancelled';
        if (!ownCancel && (got.status !== 'cancelled' || got.error !== undefined))
          violations.push(`${runId}: cancel returned true but the run ended ${canonical(shown)}`);
        if (got.finalStep > expected.finalStep || got.finalStep < maxStarted)
          violations.push(`${runId}: finalStep ${got.finalStep} outside [${maxStarted}, ${expected.finalStep}]`);
      } else if (cancelled === 'unknown') {
        const cancelledExternally = got.status === 'cancelled' && got.error === undefined && got.finalStep <= expected.finalStep;
        if (!exact && !cancelledExternally)
          violations.push(`${runId}: ended ${canonical(shown)}, script says ${canonical(expected)} (a cancel of unknown effect was made)`);
      } else if (!exact) {
        violations.push(`${runId}: ended ${canonical(shown)}, script says ${canonical(expected)}${cancelled === false ? ' (cancel returned false)' : ''}`);
      }
      // Nothing left behind: no run records, no status.
      const keys = runKeys(QUEUE, runId);
      if ((await raw.kvGet(keys.identity)) !== undefined || (await raw.kvGet(keys.cursor)) !== undefined) violations.push(`${runId}: run records left behind`);
      const status = await makeRuntime().status(runId);
      if (status !== undefined) violations.push(`${runId}: status still ${canonical(status)} after the run ended`);
    }
    for (const queue of [QUEUE, `${QUEUE}.outcomes`]) {
      const stats = await raw.stats(queue);
      if (stats.pending + stats.claimed + stats.scheduled !== 0) violations.push(`live jobs left on ${queue}: ${canonical(stats)}`);
    }
  } finally {
    zombieGate?.();
    for (const worker of workers) worker.controller.abort();
    // Runtimes may be sleeping on the clock (store retry backoff): keep time moving until they stop.
    await driveUntil(Promise.all(workers.map((w) => w.done.catch(() => undefined)))).catch(() => undefined);
  }
  if (violations.length > 0) {
    const injected = faults ? `\n  (faults injected: ${faults.injected.before} before, ${faults.injected.after} after commit)` : '';
    // The first violation leads: it is what a one-line report shows.
    throw new ConformanceError(`workflow invariant violated: ${violations.join('\n  - ')}${injected}`);
  }
}

// ---- generation --------------------------------------------------------------

const actionArb: fc.Arbitrary<ScriptAction> = fc.oneof(
  { weight: 4, arbitrary: fc.constant('continue' as const) },
  { weight: 2, arbitrary: fc.constant('continueAfter' as const) },
  { weight: 3, arbitrary: fc.constant('succeed' as const) },
  { weight: 1, arbitrary: fc.constant('fail' as const) },
  { weight: 1, arbitrary: fc.constant('cancel' as const) },
  { weight: 2, arbitrary: fc.constant('transient' as const) },
  { weight: 1, arbitrary: fc.constant('permanent' as const) },
);

const runArb: fc.Arbitrary<RunScript> = fc
  .record({
    steps: fc.array(fc.array(actionArb, { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 4 }),
    maxAttempts: fc.integer({ min: 1, max: 3 }),
    cancelAfterStarts: fc.option(fc.nat(6), { nil: undefined, freq: 2 }),
  })
  .map(({ steps, maxAttempts, cancelAfterStarts }) => (cancelAfterStarts === undefined ? { steps, maxAttempts } : { steps, maxAttempts, cancelAfterStarts }));

/** A random scenario. `mode` picks the hazards; `all` mixes them. */
export function workflowScenarioArb(mode: 'plain' | 'faults' | 'zombie' | 'all' = 'all'): fc.Arbitrary<WorkflowScenario> {
  return fc
    .record({
      runs: fc.array(runArb, { minLength: 1, maxLength: 4 }),
      workers: fc.constantFrom(1 as const, 2 as const),
      restartAfterStarts: fc.option(fc.nat(6), { nil: undefined }),
      duplicateSubmits: fc.boolean(),
      faults:
        mode === 'faults'
          ? fc.record({ seed: fc.integer(), rate: fc.constantFrom(0.05, 0.15) }).map((f) => f as { seed: number; rate: number } | undefined)
          : mode === 'all'
            ? fc.option(fc.record({ seed: fc.integer(), rate: fc.constantFrom(0.05, 0.15) }), { nil: undefined, freq: 3 })
            : fc.constant(undefined),
      zombieRun:
        mode === 'zombie'
          ? fc.nat(3).map((n) => n as number | undefined)
          : mode === 'all'
            ? fc.option(fc.nat(3), { nil: undefined, freq: 3 })
            : fc.constant(undefined),
      hookDelivery: fc.constantFrom('inProcess' as const, 'durable' as const),
    })
    .map((s) => {
      const scenario: WorkflowScenario = { runs: s.runs, workers: s.workers, duplicateSubmits: s.duplicateSubmits, hookDelivery: s.hookDelivery };
      if (s.restartAfterStarts !== undefined) scenario.restartAfterStarts = s.restartAfterStarts;
      if (s.faults !== undefined) scenario.faults = s.faults;
      if (s.zombieRun !== undefined) scenario.zombieRun = s.zombieRun;
      return scenario;
    });
}

/** Runs the workflow property for one hazard mode; rejects with fast-check's report on a violation. */
export async function checkWorkflowProperties(options: ConformanceOptions, mode: 'plain' | 'faults' | 'zombie' | 'all' = 'all', scale = 0.4): Promise<void> {
  await assertProperty(
    fc.asyncProperty(workflowScenarioArb(mode), (scenario) => runWorkflowScenario(options, scenario)),
    options,
    runParameters(options, scale),
  );
}

/** Workflow properties, one check per hazard. */
export function workflowPropertyChecks(): ConformanceGroup {
  const checks: ConformanceCheck[] = [
    {
      name: 'scripted runs with cancels, duplicate submits, restarts and two runtimes end exactly once as dictated',
      run: (o) => checkWorkflowProperties(o, 'plain'),
    },
    {
      name: 'store faults before and after the write: runs still end once, as dictated, nothing left behind',
      run: (o) => checkWorkflowProperties(o, 'faults'),
    },
    {
      name: 'zombie delivery: a lease expires mid-step, another delivery takes over, the stale settlement never lands',
      run: (o) => checkWorkflowProperties(o, 'zombie'),
    },
    { name: 'every hazard combined (faults, zombies, cancels, restarts, two runtimes)', run: (o) => checkWorkflowProperties(o, 'all') },
  ];
  return { name: 'workflow properties', checks };
}

/** Every workflow-level group. */
export function workflowGroups(): ConformanceGroup[] {
  return [workflowPropertyChecks(), workflowDefinitionChecks()];
}

/** Runs the whole workflow-level suite without vitest. */
export async function checkWorkflow(options: ConformanceOptions): Promise<{ passed: string[]; skipped: string[] }> {
  return runChecks(workflowGroups(), options);
}
