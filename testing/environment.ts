/**
 * `createTestEnvironment`: a workflow runtime on a memory store and a manual
 * clock, driven deterministically. Steps run only while the environment is
 * driven (`runUntilIdle`, `advanceTime`), at the current virtual time;
 * whenever nothing is claimable, virtual time jumps to the next thing that
 * can happen (a scheduled step, a retry backoff, a lease expiry, a timer a
 * runner set on `env.clock`). No real timers, no global fake timers.
 */
import { InvalidArgumentError, WorkflowRuntime } from '../core/index.js';
import type {
  ManualClock,
  QueueConfig,
  RunOutcome,
  RunSpec,
  RunStatus,
  StartSpec,
  Step,
  StepOutcome,
  StepRunner,
  SubmitResult,
  TerminalHook,
  Workflow,
} from '../core/index.js';
import type { MemoryStore } from '../adapters/memory/index.js';
import { TestGuardError, describeActiveRuns } from './errors.js';
import { InterceptingStore } from './intercepting-store.js';
import { DEFAULT_MAX_STEPS, DEFAULT_MAX_VIRTUAL_TIME_MS, WORKER_POLL_MS, World, memoryStoreFactory } from './world.js';
import type { Delivery } from './world.js';

/** Options of `createTestEnvironment`. */
export interface TestEnvironmentOptions {
  /** The runner under test (your production runner), for runs started with `submit`. */
  runner?: StepRunner;
  /** The workflow definitions under test (`defineWorkflow`), for runs started with `start`. One of the two is needed. */
  workflows?: readonly Workflow[];
  /** Your terminal hook, called after the environment recorded the outcome. */
  hook?: TerminalHook;
  /** Store-wide queue settings (lease, attempts, backoff...). Defaults: `DEFAULT_QUEUE_CONFIG`. */
  queueConfig?: Partial<QueueConfig>;
  /** Most deliveries one `runUntilIdle`/`advanceTime` call may run. Default 10 000. */
  maxSteps?: number;
  /** Most virtual time one `runUntilIdle` call may skip. Default 30 days. */
  maxVirtualTimeMs?: number;
  /** Virtual start time (epoch ms). Default 2026-01-01T00:00:00Z. */
  startTime?: number;
  /** Bring your own clock (for example to build the runner around it first). */
  clock?: ManualClock;
  /** Steps queue. Default `workflow-steps`. */
  queueName?: string;
  /** Steps run at once. Default 16. */
  maxConcurrentSteps?: number;
  /**
   * How the hook is called (see the runtime's option). Under `durable`, the
   * outcome is recorded when the notification job ran the hook, which
   * `runUntilIdle` waits for like any other job.
   */
  hookDelivery?: 'inProcess' | 'durable';
}

/** Per-call overrides of the guards. */
export interface DriveLimits {
  maxSteps?: number;
  maxVirtualTimeMs?: number;
}

/** A deterministic workflow test bench. See `docs/testing.md`. */
export interface TestEnvironment {
  /** Virtual time. Runners may sleep on it (`sleep(env.clock, ms, step.signal)`). */
  readonly clock: ManualClock;
  /** The underlying memory store (inspect it; writes through it bypass the history). */
  readonly store: MemoryStore;
  /** The runtime under test. */
  readonly runtime: WorkflowRuntime;
  /** Submits a run. Nothing runs until the environment is driven. */
  submit(spec: RunSpec): Promise<SubmitResult>;
  /** Starts a run of one of the environment's workflows. Nothing runs until the environment is driven. */
  start<S, R, K extends string>(workflow: Workflow<S, R, K>, spec: StartSpec<S>): Promise<SubmitResult>;
  /**
   * Runs every claimable step, jumping virtual time to the next due step,
   * retry or lease expiry whenever nothing is claimable, until no step job is
   * live. Throws `TestGuardError` (listing the active runs) past `maxSteps`
   * deliveries or `maxVirtualTimeMs` of virtual time.
   */
  runUntilIdle(limits?: DriveLimits): Promise<void>;
  /** Moves virtual time forward by `ms`, running whatever falls due on the way. */
  advanceTime(ms: number, limits?: Pick<DriveLimits, 'maxSteps'>): Promise<void>;
  /** The run's terminal outcome, or undefined while it is active. */
  outcome(runId: string): RunOutcome | undefined;
  /** Every terminal outcome so far, by run id (in the order runs ended). */
  outcomes(): ReadonlyMap<string, RunOutcome>;
  /** Every delivery of the run's steps (or of all runs), in start order. */
  history(runId?: string): Delivery[];
  /** `runtime.status`. */
  status(runId: string): Promise<RunStatus | undefined>;
  /** `runtime.cancel`: a pending or scheduled run ends before this returns. */
  cancel(runId: string): Promise<boolean>;
}

/** Creates a test environment: memory store, manual clock, a runtime whose steps run only while driven. */
export function createTestEnvironment(options: TestEnvironmentOptions): TestEnvironment {
  return new Environment(options);
}

class Environment implements TestEnvironment {
  readonly clock: ManualClock;
  readonly store: MemoryStore;
  readonly runtime: WorkflowRuntime;
  private readonly world: World<MemoryStore>;
  private readonly view: InterceptingStore;
  private readonly ended = new Map<string, RunOutcome>();
  private readonly maxSteps: number;
  private readonly maxVirtualTimeMs: number;

  private readonly userHook: TerminalHook | undefined;
  private driving = false;
  private started = false;
  private workerError: unknown;
  /** Deliveries left in the current drive; a runner call past it waits for the next drive. */
  private budget = 0;
  private paused = 0;
  private resume: (() => void) | undefined;
  private resumed: Promise<void> = Promise.resolve();

  constructor(options: TestEnvironmentOptions) {
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- untyped callers reach this through the public API
    if (!options || (typeof options.runner !== 'function' && !(Array.isArray(options.workflows) && options.workflows.length > 0))) {
      throw new InvalidArgumentError('runner', 'expected a runner (step) => StepOutcome, or workflows');
    }
    const queueName = options.queueName ?? 'workflow-steps';
    this.maxSteps = positive('maxSteps', options.maxSteps ?? DEFAULT_MAX_STEPS);
    this.maxVirtualTimeMs = positive('maxVirtualTimeMs', options.maxVirtualTimeMs ?? DEFAULT_MAX_VIRTUAL_TIME_MS);
    this.world = new World(queueName, options, memoryStoreFactory);
    this.clock = this.world.clock;
    this.store = this.world.store;
    this.userHook = options.hook;
    this.view = new InterceptingStore(this.store, {
      // Outside a drive the worker finds nothing to claim: steps run only while driven.
      before: (op) => (op === 'claim' && !this.driving ? { kind: 'return', value: [] } : undefined),
      after: (op, args, result) => this.world.observe(op, args, result),
      failed: (op, args, error) => this.world.observeFailure(op, args, error),
    });
    this.runtime = new WorkflowRuntime({
      store: this.view,
      clock: this.clock,
      queueName,
      pollIntervalMs: WORKER_POLL_MS,
      ...(options.maxConcurrentSteps === undefined ? {} : { maxConcurrentSteps: options.maxConcurrentSteps }),
      ...(options.hookDelivery === undefined ? {} : { hookDelivery: options.hookDelivery }),
      ...(options.runner === undefined ? {} : { runner: options.runner }),
      ...(options.workflows === undefined ? {} : { workflows: options.workflows }),
      // Every delivery goes through the environment: counted against the drive's budget, recorded in the history.
      aroundStep: (step, run) => this.runStep(step, run),
      hook: (outcome) => this.onOutcome(outcome),
    });
    for (const lane of this.runtime.lanes) {
      this.world.watchQueue(lane.steps, false);
      this.world.watchQueue(lane.notifications);
    }
  }

  start<S, R, K extends string>(workflow: Workflow<S, R, K>, spec: StartSpec<S>): Promise<SubmitResult> {
    return this.runtime.start(workflow, spec);
  }

  submit(spec: RunSpec): Promise<SubmitResult> {
    return this.runtime.submit(spec);
  }

  status(runId: string): Promise<RunStatus | undefined> {
    return this.runtime.status(runId);
  }

  async cancel(runId: string): Promise<boolean> {
    const result = await this.runtime.cancel(runId);
    await this.world.quiesce();
    return result;
  }

  outcome(runId: string): RunOutcome | undefined {
    return this.ended.get(runId);
  }

  outcomes(): ReadonlyMap<string, RunOutcome> {
    return this.ended;
  }

  history(runId?: string): Delivery[] {
    return this.world.deliveries.filter((d) => runId === undefined || d.runId === runId).map((d) => ({ ...d }));
  }

  async runUntilIdle(limits: DriveLimits = {}): Promise<void> {
    await this.drive(undefined, limits.maxSteps ?? this.maxSteps, limits.maxVirtualTimeMs ?? this.maxVirtualTimeMs, 'runUntilIdle');
  }

  async advanceTime(ms: number, limits: Pick<DriveLimits, 'maxSteps'> = {}): Promise<void> {
    if (!Number.isSafeInteger(ms) || ms < 0) throw new InvalidArgumentError('ms', `expected a non-negative integer, got ${String(ms)}`);
    await this.drive(this.clock.now() + ms, limits.maxSteps ?? this.maxSteps, Number.POSITIVE_INFINITY, 'advanceTime');
  }

  // ---- internals -------------------------------------------------------------

  private async drive(until: number | undefined, maxSteps: number, maxVirtualTimeMs: number, caller: string): Promise<void> {
    positive('maxSteps', maxSteps);
    if (this.driving) throw new InvalidArgumentError(caller, 'the environment is already being driven (await the previous call first)');
    this.ensureWorker();
    this.driving = true;
    this.budget = maxSteps;
    const startedAt = this.clock.now();
    // Let runners paused by a previous guard go on, and wake the worker for what was submitted meanwhile.
    this.resume?.();
    for (const lane of this.runtime.lanes) this.view.notifyListeners(lane.steps, { type: 'jobsAvailable', queue: lane.steps });
    try {
      for (;;) {
        await this.world.quiesce();
        // eslint-disable-next-line @typescript-eslint/only-throw-error -- a caught value may be anything, rethrown as it was
        if (this.workerError !== undefined) throw this.workerError;
        const jobs = await this.world.liveJobs();
        const next = this.world.nextEventAt(jobs);
        if (this.paused > 0) throw this.guardError('maxSteps', `more than ${maxSteps} steps ran (maxSteps)`, jobs, startedAt, caller);
        if (until === undefined) {
          if (jobs.length === 0 && !(await this.world.hasLiveJobs())) return;
        } else if (next === undefined || next > until) {
          if (this.clock.now() >= until) return;
          await this.world.jumpTo(until);
          continue;
        }
        if (next === undefined)
          throw this.guardError('stalled', 'nothing is claimable and no timer, scheduled step or lease is pending', jobs, startedAt, caller);
        if (next - startedAt > maxVirtualTimeMs)
          throw this.guardError(
            'maxVirtualTime',
            `the next event is more than ${maxVirtualTimeMs} ms of virtual time away (maxVirtualTimeMs)`,
            jobs,
            startedAt,
            caller,
          );
        await this.world.jumpTo(next);
      }
    } finally {
      this.driving = false;
    }
  }

  private guardError(
    guard: TestGuardError['guard'],
    reason: string,
    jobs: Parameters<World['activeRuns']>[0],
    startedAt: number,
    caller: string,
  ): TestGuardError {
    const runs = this.world.activeRuns(jobs);
    const now = this.clock.now();
    return new TestGuardError(
      guard,
      runs,
      `${caller} stopped at virtual time ${new Date(now).toISOString()} (${now - startedAt} ms after it began): ${reason}. ` +
        `Runs still active:\n${describeActiveRuns(runs)}\n` +
        'A workflow that never ends, or one that needs more room: raise maxSteps / maxVirtualTimeMs.',
    );
  }

  private ensureWorker(): void {
    if (this.started) return;
    this.started = true;
    this.runtime.run(new AbortController().signal).catch((error: unknown) => {
      this.workerError = error;
    });
  }

  private async runStep(step: Step, run: () => StepOutcome | Promise<StepOutcome>): Promise<StepOutcome> {
    while (this.budget <= 0) {
      // Out of steps for this drive: wait (without blocking the microtask queue) for the next one.
      if (!this.resume) this.resumed = new Promise((resolve) => (this.resume = resolve));
      this.paused++;
      await this.resumed;
      this.paused--;
      this.resume = undefined;
    }
    this.budget--;
    const delivery = this.world.startDelivery(step, 0);
    try {
      const value = await run();
      this.world.endDelivery(delivery, { ok: true, value });
      return value;
    } catch (error) {
      this.world.endDelivery(delivery, { ok: false, error });
      throw error;
    }
  }

  private async onOutcome(outcome: RunOutcome): Promise<void> {
    this.world.progress++;
    if (!this.ended.has(outcome.runId)) this.ended.set(outcome.runId, outcome);
    await this.userHook?.(outcome);
  }
}

function positive(name: string, value: number): number {
  if (typeof value !== 'number' || Number.isNaN(value) || value <= 0) throw new InvalidArgumentError(name, `expected a positive number, got ${String(value)}`);
  return value;
}
