/**
 * `simulate`: runs workflows under a seeded scheduler on virtual time and
 * injects faults at store calls and step boundaries — crashes, lease
 * expiries, store errors before or after a write lands, external cancels —
 * then checks the library's invariants. The same seed replays the same
 * schedule exactly, so any failure is reproducible from its seed.
 */
import type { Workflow } from '../core/workflow/define.js';
import {
  InvalidArgumentError,
  LeaseLostError,
  StoreUnavailableError,
  WorkflowRuntime,
  decodeOutcome,
  decodeRecord,
  isTransientError,
  runKeys,
} from '../core/index.js';
import type {
  CancelResult,
  ClaimRef,
  Effects,
  Headers,
  ManualClock,
  QueueConfig,
  RunCursor,
  RunOutcome,
  SettleResult,
  Settlement,
  Step,
  StepOutcome,
  StepRunner,
  TerminalHook,
  TerminalStatus,
} from '../core/index.js';
import { SimulationFailedError, describeActiveRuns } from './errors.js';
import { InterceptingStore, WRITE_OPS } from './intercepting-store.js';
import type { StoreInterceptor, StoreOp } from './intercepting-store.js';
import { createPrng } from './prng.js';
import type { Prng } from './prng.js';
import { DEFAULT_MAX_STEPS, DEFAULT_MAX_VIRTUAL_TIME_MS, WORKER_POLL_MS, World, memoryStoreFactory } from './world.js';
import type { Delivery, StoreFactory } from './world.js';

/** Probability of each fault at each point where it can strike (0 to 1). */
export interface FaultRates {
  /** At each step boundary (runner start, runner end) and each store write of a worker: the worker's runtime is dropped. */
  crash: number;
  /** At each step boundary: the step's lease runs out while it runs, so the step is delivered again. */
  leaseExpiry: number;
  /** At each store call: a transient error, before the call lands or after it committed. */
  storeError: number;
  /** At each step boundary and each scheduler turn: an external `cancel` of the run. */
  cancel: number;
}

/** Default fault rates per delivery: 5% crashes, 5% lease expiries, 2% store errors, 2% external cancels; pass `faults` to change them. */
export const DEFAULT_FAULTS: Readonly<FaultRates> = Object.freeze({ crash: 0.05, leaseExpiry: 0.05, storeError: 0.02, cancel: 0.02 });

/** A run to submit at the start of the simulation. */
export interface SimulatedRun {
  /** The run's input: bytes for the runner, or a value of `workflow`'s state type. */
  input: unknown;
  /** A workflow of `SimulationOptions.workflows` to start this run of. */
  workflow?: Workflow;
  /** Default `run-<index>`, so runs are named the same on every replay. */
  runId?: string;
  headers?: Headers;
  priority?: number;
  maxAttemptsPerStep?: number;
}

/** Options of `simulate`. */
export interface SimulationOptions {
  /** Runs the steps of low-level runs (`SimulatedRun.input` as bytes). */
  runner?: StepRunner;
  /**
   * Workflow definitions; a run naming one (`SimulatedRun.workflow`) is
   * started with `start`, its input encoded by the workflow's codec.
   */
  workflows?: readonly Workflow[];
  runs: SimulatedRun[];
  /** Any integer. The same seed (and options) gives the same schedule, faults and history. */
  seed: number;
  /** Fault probabilities; each defaults to `DEFAULT_FAULTS`. */
  faults?: Partial<FaultRates>;
  /** Your hook; called once per notified outcome, from whichever runtime ended the run. */
  hook?: TerminalHook;
  queueConfig?: Partial<QueueConfig>;
  /** Most deliveries before the simulation gives up (a workflow that never ends). Default 10 000. */
  maxSteps?: number;
  /** Most virtual time before it gives up. Default 30 days. */
  maxVirtualTimeMs?: number;
  startTime?: number;
  /** Bring your own clock (a fresh one per simulation) so your runner can sleep on virtual time. */
  clock?: ManualClock;
  queueName?: string;
  maxConcurrentSteps?: number;
  /**
   * How hooks are delivered (see the runtime's option). Under `durable`, a
   * notification may not be lost (a commit without a hook is a violation,
   * unless the notification job itself was dead-lettered), and the hook may
   * run more than once for a run, always with the same outcome.
   */
  hookDelivery?: 'inProcess' | 'durable';
  /**
   * Advanced: the store to simulate on (default: a memory store). It must
   * read time only from the given clock, run no background timers, and
   * answer without real I/O, or replays stop being exact. The scheduler
   * calls its `promote` and `reap` when they fall due.
   */
  store?: StoreFactory;
}

export type FaultKind = 'crash' | 'leaseExpiry' | 'storeError' | 'cancel';

/** One injected fault. */
export interface InjectedFault {
  kind: FaultKind;
  /** Where it struck: a step boundary, a store call, or a scheduler turn (cancels between steps). */
  point: 'runnerStart' | 'runnerEnd' | 'store' | 'scheduler';
  /** Virtual time (epoch ms). */
  at: number;
  /** For store faults: the operation, and whether the call had landed. */
  op?: StoreOp;
  when?: 'before' | 'after';
  /** Runtime instance hit (`client` is the submitter/canceller, which never crashes). */
  worker?: number | 'client';
  runId?: string;
  step?: number;
  attempt?: number;
}

/** A broken library invariant (or a workflow that never ended). */
export interface Violation {
  invariant:
    | 'hookFiredTwice'
    | 'hookInconsistent'
    | 'endedTwice'
    | 'runNotEnded'
    | 'reapedRunNotFinalized'
    | 'hookNotFired'
    | 'statusMismatch'
    | 'cancelPrecedence'
    | 'cancelWithoutRequest'
    | 'resultMismatch'
    | 'stepAfterEnd'
    | 'settledStepReran'
    | 'staleSettlement'
    | 'liveJobsLeft'
    | 'guard';
  runId?: string;
  /** Includes the seed. */
  message: string;
}

/** What `simulate` observed. */
export interface SimulationReport {
  seed: number;
  runIds: string[];
  /** Every delivery, in start order (with the runtime instance that ran it). */
  deliveries: Delivery[];
  /** The outcome the hook received, by run id (first one, if a bug fired it twice). */
  outcomes: Map<string, RunOutcome>;
  faultsInjected: InjectedFault[];
  /** Library invariants broken; empty when all held. */
  violations: Violation[];
  /**
   * Runs that ended in the store but whose hook never ran, because the
   * runtime died (or lost its store link) between the terminal commit and
   * the hook: allowed by the in-process hook delivery (see docs/architecture.md).
   */
  lostNotifications: Array<{ runId: string; reason: string }>;
  /** Runtime instances used (1 + crashes). */
  workers: number;
  /** Virtual time the simulation covered. */
  virtualTimeMs: number;
  /** False when a guard stopped it early. */
  completed: boolean;
}

interface Worker {
  id: number;
  view: InterceptingStore;
  runtime: WorkflowRuntime;
  dead: boolean;
}

interface TerminalCommit {
  seq: number;
  status: TerminalStatus;
  how: 'settle' | 'cancel' | 'finalize';
  /** The caller never learned of the commit (error after it landed, or its runtime died). */
  hidden: boolean;
  delivery?: Delivery;
}

function sameOutcome(a: RunOutcome, b: RunOutcome): boolean {
  const bytes = (x: Uint8Array | undefined): string => (x === undefined ? '' : Buffer.from(x).toString('base64'));
  return (
    a.status === b.status &&
    a.error === b.error &&
    a.finalStep === b.finalStep &&
    bytes(a.result) === bytes(b.result) &&
    JSON.stringify(a.headers) === JSON.stringify(b.headers)
  );
}

/** Virtual time allowed, once no step is left, for runtimes to finish what they hold (store-error retries). */
const DRAIN_MS = 60_000;

const never = (): Promise<never> => new Promise<never>(() => undefined);

/**
 * Runs `runs` with `runner` under seeded faults and returns what happened,
 * with the invariants checked. It does not throw on a violation: call
 * `assertSimulation(report)` (or inspect `report.violations`), then assert
 * your own invariants on the report and your runner's side effects.
 */
export async function simulate(options: SimulationOptions): Promise<SimulationReport> {
  const simulation = new Simulation(options);
  try {
    return await simulation.run();
  } catch (error) {
    // Something escaped the simulation (a runtime loop died, a submit kept failing): name the seed.
    const message = error instanceof Error ? error.message : String(error);
    throw new SimulationFailedError(options.seed, `simulate seed ${options.seed} aborted: ${message}`, { cause: error });
  }
}

/** Throws `SimulationFailedError` (message names the seed and how to replay it) if the report has violations. */
export function assertSimulation(report: SimulationReport): void {
  if (report.violations.length > 0) throw new SimulationFailedError(report.seed, formatReport(report));
}

/** A readable summary: seed, faults, violations, lost notifications. */
export function formatReport(report: SimulationReport): string {
  const counts = new Map<string, number>();
  for (const f of report.faultsInjected) counts.set(f.kind, (counts.get(f.kind) ?? 0) + 1);
  const faults = [...counts].map(([k, n]) => `${k} ${n}`).join(', ') || 'none';
  const lines = [
    `simulate seed ${report.seed}: ${report.violations.length} invariant violation(s), ${report.deliveries.length} deliveries, ${report.workers} runtime(s), faults: ${faults}`,
    ...report.violations.map((v) => `  - [${v.invariant}] ${v.message}`),
  ];
  if (report.lostNotifications.length > 0) lines.push(`  lost notifications: ${report.lostNotifications.map((l) => `${l.runId} (${l.reason})`).join('; ')}`);
  lines.push(`Replay exactly with the same options and seed: ${report.seed}`);
  return lines.join('\n');
}

class Simulation {
  private readonly world: World;
  private readonly prng: Prng;
  private readonly faults: FaultRates;
  private readonly queueName: string;
  private readonly outcomeQueue: string | undefined;
  private readonly cursorPrefix: string;
  private readonly maxSteps: number;
  private readonly maxVirtualTimeMs: number;
  private readonly workers: Worker[] = [];
  private readonly client: { view: InterceptingStore; runtime: WorkflowRuntime };
  private readonly faultLog: InjectedFault[] = [];
  private readonly violations: Violation[] = [];
  private readonly hookCalls = new Map<string, RunOutcome[]>();
  private readonly lostHooks = new Map<string, string>();
  private readonly cancelCalls = new Map<string, Array<boolean | 'error'>>();
  private readonly terminal = new Map<string, TerminalCommit[]>();
  private readonly deliverySeq = new Map<Delivery, number>();
  private readonly commitSeq = new Map<Delivery, number>();
  private readonly blockedTokens = new Set<string>();
  private readonly commitOfCall = new WeakMap<unknown[], TerminalCommit>();
  private suspended: Array<{ jobId: string; attempts: number; resume: () => void }> = [];
  private runIds: string[] = [];
  private events = 0;
  private restartNeeded = false;
  private guardTripped = false;
  private workerError: unknown;

  constructor(private readonly options: SimulationOptions) {
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- untyped callers reach this through the public API
    if (!options || (typeof options.runner !== 'function' && !(Array.isArray(options.workflows) && options.workflows.length > 0))) {
      throw new InvalidArgumentError('runner', 'expected a runner (step) => StepOutcome, or workflows');
    }
    if (!Array.isArray(options.runs)) throw new InvalidArgumentError('runs', 'expected an array of { input }');
    if (typeof options.seed !== 'number' || !Number.isSafeInteger(options.seed))
      throw new InvalidArgumentError('seed', `expected an integer, got ${String(options.seed)}`);
    this.faults = { ...DEFAULT_FAULTS, ...options.faults };
    for (const [name, p] of Object.entries(this.faults)) {
      if (typeof p !== 'number' || !(p >= 0 && p <= 1)) throw new InvalidArgumentError(`faults.${name}`, `expected a probability in [0, 1], got ${String(p)}`);
    }
    this.queueName = options.queueName ?? 'workflow-steps';
    this.cursorPrefix = runKeys(this.queueName, '').cursor;
    this.maxSteps = options.maxSteps ?? DEFAULT_MAX_STEPS;
    this.maxVirtualTimeMs = options.maxVirtualTimeMs ?? DEFAULT_MAX_VIRTUAL_TIME_MS;
    this.prng = createPrng(options.seed);
    this.world = new World(this.queueName, options, options.store ?? memoryStoreFactory);
    const clientView = new InterceptingStore(this.world.store, this.interceptor('client'));
    this.client = { view: clientView, runtime: this.newRuntime(clientView, 'client') };
    this.outcomeQueue = this.client.runtime.outcomeQueue;
    for (const lane of this.client.runtime.lanes) {
      this.world.watchQueue(lane.steps, false);
      this.world.watchQueue(lane.notifications);
    }
  }

  async run(): Promise<SimulationReport> {
    const startedAt = this.world.clock.now();
    this.startWorker();
    await this.submitAll();
    let completed = true;
    let drainUntil: number | undefined;
    for (;;) {
      await this.world.quiesce();
      // eslint-disable-next-line @typescript-eslint/only-throw-error -- a caught value may be anything, rethrown as it was
      if (this.workerError !== undefined) throw this.workerError;
      if (await this.releaseSuspended()) continue;
      if (this.restartNeeded) {
        this.restartNeeded = false;
        this.startWorker();
        continue;
      }
      const jobs = await this.world.liveJobs();
      const live = jobs.length > 0 || (await this.world.hasLiveJobs());
      const running = this.world.deliveries.some((d) => d.endedAt === undefined && !this.workers[d.worker]?.dead);
      const next = this.world.nextEventAt(jobs);
      if (!live && !running && this.suspended.length === 0) {
        // Nothing left to run; let what the runtimes still have in hand (a retry after a store error) play out.
        drainUntil ??= this.world.clock.now() + DRAIN_MS;
        if (next === undefined || next > drainUntil) break;
        await this.world.jumpTo(next);
        continue;
      }
      drainUntil = undefined;
      const stop = this.guardTripped
        ? `more than ${this.maxSteps} steps ran (maxSteps)`
        : next === undefined
          ? live
            ? 'nothing can make progress (no timer, scheduled step or lease pending)'
            : undefined
          : next - startedAt > this.maxVirtualTimeMs
            ? `more than ${this.maxVirtualTimeMs} ms of virtual time passed (maxVirtualTimeMs)`
            : undefined;
      if (stop !== undefined) {
        completed = false;
        this.violate('guard', undefined, `simulation stopped: ${stop}; runs still active:\n${describeActiveRuns(this.world.activeRuns(jobs))}`);
        break;
      }
      if (next === undefined) break; // only stale deliveries waiting on something outside virtual time
      if (live && this.prng.chance(this.faults.cancel)) await this.schedulerCancel();
      await this.world.jumpTo(next);
    }
    for (const lane of this.client.runtime.lanes) await this.collectDeadNotifications(lane.notifications);
    if (completed) await this.checkInvariants();
    for (const worker of this.workers) {
      if (!worker.dead) continue;
      for (const d of this.world.deliveries) if (d.worker === worker.id && d.settled === undefined) d.settled = 'crashed';
    }
    const outcomes = new Map<string, RunOutcome>();
    for (const [runId, calls] of this.hookCalls) if (calls[0]) outcomes.set(runId, calls[0]);
    const lostNotifications: SimulationReport['lostNotifications'] = [];
    for (const runId of this.runIds) {
      if (this.hookCalls.has(runId)) continue;
      const reason = this.lostReason(runId);
      if (reason !== undefined) lostNotifications.push({ runId, reason });
    }
    return {
      seed: this.options.seed,
      runIds: [...this.runIds],
      deliveries: this.world.deliveries.map((d) => ({ ...d })),
      outcomes,
      faultsInjected: this.faultLog,
      violations: this.violations,
      lostNotifications,
      workers: this.workers.length,
      virtualTimeMs: this.world.clock.now() - startedAt,
      completed,
    };
  }

  // ---- processes ---------------------------------------------------------------

  private newRuntime(view: InterceptingStore, id: number | 'client'): WorkflowRuntime {
    return new WorkflowRuntime({
      store: view,
      clock: this.world.clock,
      queueName: this.queueName,
      pollIntervalMs: WORKER_POLL_MS,
      ...(this.options.maxConcurrentSteps === undefined ? {} : { maxConcurrentSteps: this.options.maxConcurrentSteps }),
      ...(this.options.hookDelivery === undefined ? {} : { hookDelivery: this.options.hookDelivery }),
      ...(this.options.workflows === undefined ? {} : { workflows: this.options.workflows }),
      ...(id === 'client'
        ? {}
        : {
            runner: this.options.runner ?? (() => never()),
            aroundStep: (step: Step, run: () => StepOutcome | Promise<StepOutcome>) => this.runStep(step, id, run),
          }),
      hook: (outcome) => this.onHook(outcome, id),
    });
  }

  private startWorker(): void {
    const id = this.workers.length;
    const view = new InterceptingStore(this.world.store, this.interceptor(id));
    const worker: Worker = { id, view, runtime: this.newRuntime(view, id), dead: false };
    this.workers.push(worker);
    worker.runtime.run(new AbortController().signal).catch((error: unknown) => {
      if (!worker.dead) this.workerError = error;
    });
  }

  /** Drops a worker's runtime (its store link never answers again); a new one takes over at the next turn. */
  private crash(worker: Worker, fault: Omit<InjectedFault, 'at'>): void {
    if (worker.dead) return;
    this.record(fault);
    worker.dead = true;
    worker.view.detach();
    for (const d of this.world.deliveries) if (d.worker === worker.id && d.settled === undefined) d.settled = 'crashed';
    this.restartNeeded = true;
  }

  private async submitAll(): Promise<void> {
    this.runIds = this.options.runs.map((run, index) => run.runId ?? `run-${index}`);
    for (const [index, run] of this.options.runs.entries()) {
      const spec = { ...run, runId: this.runIds[index] as string };
      for (let attempt = 0; ; attempt++) {
        try {
          if (run.workflow === undefined) await this.client.runtime.submit({ ...spec, input: run.input as Uint8Array });
          else await this.client.runtime.start(run.workflow, { ...spec, input: run.input });
          break;
        } catch (error) {
          // A submitter retries transient errors; the run id makes the retry idempotent.
          if (!isTransientError(error) || attempt >= 20) throw error;
        }
      }
    }
  }

  // ---- faults ----------------------------------------------------------------------

  private interceptor(worker: number | 'client'): StoreInterceptor {
    const process = (): Worker | undefined => (worker === 'client' ? undefined : this.workers[worker]);
    return {
      before: (op, args) => {
        if (op === 'renewLease' && this.blockedTokens.has((args[0] as ClaimRef).token)) {
          throw new StoreUnavailableError('lease renewal lost (injected lease expiry)');
        }
        const write = WRITE_OPS.has(op);
        const r = this.prng.next();
        const { storeError, crash } = this.faults;
        const where = { point: 'store' as const, op, worker, ...this.runOf(op, args) };
        if (r < storeError) {
          if (write && r >= storeError / 2) return { kind: 'mark', mark: 'errorAfter' };
          this.record({ kind: 'storeError', when: 'before', ...where });
          throw new StoreUnavailableError(`injected store error before ${op}`);
        }
        const owner = process();
        if (owner && write && r < storeError + crash) {
          if (r >= storeError + crash / 2) return { kind: 'mark', mark: 'crashAfter' };
          this.crash(owner, { kind: 'crash', when: 'before', ...where });
          return { kind: 'hang' };
        }
        return undefined;
      },
      after: async (op, args, result, mark) => {
        const owner = process();
        if (op === 'settle') this.noteSettle(args[0] as ClaimRef);
        this.world.observe(op, args, result);
        await this.noteTerminal(op, args, result, mark !== undefined || owner?.dead === true);
        const where = { point: 'store' as const, op, when: 'after' as const, worker, ...this.runOf(op, args) };
        if (mark === 'errorAfter' && !owner?.dead) {
          this.record({ kind: 'storeError', ...where });
          throw new StoreUnavailableError(`injected store error after ${op} committed`);
        }
        if (mark === 'crashAfter' && owner) {
          this.crash(owner, { kind: 'crash', ...where });
          return 'hang';
        }
        return undefined;
      },
      unanswered: (_op, args) => {
        const commit = this.commitOfCall.get(args);
        if (commit) commit.hidden = true;
      },
      failed: (op, args, error) => this.world.observeFailure(op, args, error),
    };
  }

  private runOf(op: StoreOp, args: unknown[]): { runId?: string; step?: number } {
    if (op !== 'settle' && op !== 'renewLease') return {};
    const d = this.world.deliveryOf(args[0] as ClaimRef);
    return d ? { runId: d.runId, step: d.step } : {};
  }

  private record(fault: Omit<InjectedFault, 'at'>): void {
    this.faultLog.push({ ...fault, at: this.world.clock.now() });
  }

  /** A step boundary in a worker: maybe crash, expire the lease, or cancel the run. */
  private async boundary(point: 'runnerStart' | 'runnerEnd', worker: Worker, step: Step): Promise<void> {
    const r = this.prng.next();
    const { crash, leaseExpiry, cancel } = this.faults;
    const where = { point, worker: worker.id, runId: step.runId, step: step.stepNumber, attempt: step.attempts };
    if (r < crash) {
      this.crash(worker, { kind: 'crash', ...where });
    } else if (r < crash + leaseExpiry) {
      const token = this.world.tokenOf(step.jobId, step.attempts);
      if (token === undefined) return;
      this.record({ kind: 'leaseExpiry', ...where });
      this.blockedTokens.add(token);
      try {
        // The lease runs out a millisecond from now; the scheduler reaps it and the step is delivered again.
        await this.world.store.renewLease({ jobId: step.jobId, token }, 1);
      } catch (error) {
        if (error instanceof LeaseLostError) return;
        throw error;
      }
      await new Promise<void>((resume) => this.suspended.push({ jobId: step.jobId, attempts: step.attempts, resume }));
    } else if (r < crash + leaseExpiry + cancel) {
      this.record({ kind: 'cancel', ...where });
      await this.externalCancel(step.runId);
    }
  }

  /** Resumes deliveries whose lease expiry has played out (the job moved on). Returns whether any resumed. */
  private async releaseSuspended(): Promise<boolean> {
    if (this.suspended.length === 0) return false;
    const still: typeof this.suspended = [];
    let released = false;
    for (const s of this.suspended) {
      const job = await this.world.store.getJob(s.jobId);
      if (job && job.status === 'claimed' && job.attempts === s.attempts) still.push(s);
      else {
        s.resume();
        released = true;
      }
    }
    this.suspended = still;
    return released;
  }

  private async externalCancel(runId: string): Promise<void> {
    const calls = this.cancelCalls.get(runId) ?? [];
    this.cancelCalls.set(runId, calls);
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        calls.push(await this.client.runtime.cancel(runId));
        return;
      } catch (error) {
        if (!isTransientError(error)) throw error;
        calls.push('error');
      }
    }
  }

  private async schedulerCancel(): Promise<void> {
    const active = this.runIds.filter((id) => !this.terminal.has(id) && !this.hookCalls.has(id));
    if (active.length === 0) return;
    const runId = active[this.prng.int(active.length)] as string;
    this.record({ kind: 'cancel', point: 'scheduler', runId });
    await this.externalCancel(runId);
  }

  // ---- the runner and the hook ------------------------------------------------------

  private async runStep(step: Step, workerId: number, run: () => StepOutcome | Promise<StepOutcome>): Promise<StepOutcome> {
    const worker = this.workers[workerId] as Worker;
    if (this.world.deliveries.length >= this.maxSteps) {
      this.guardTripped = true;
      return never();
    }
    const delivery = this.world.startDelivery(step, workerId);
    this.deliverySeq.set(delivery, ++this.events);
    await this.boundary('runnerStart', worker, step);
    if (worker.dead) return never();
    let outcome: { ok: true; value: StepOutcome } | { ok: false; error: unknown };
    try {
      outcome = { ok: true, value: await run() };
    } catch (error) {
      outcome = { ok: false, error };
    }
    this.world.endDelivery(delivery, outcome);
    await this.boundary('runnerEnd', worker, step);
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- a worker dies while its call is in flight
    if (worker.dead) return never();
    if (outcome.ok) return outcome.value;
    throw outcome.error;
  }

  private async onHook(outcome: RunOutcome, id: number | 'client'): Promise<void> {
    this.world.progress++;
    if (id !== 'client' && this.workers[id]?.dead) {
      this.lostHooks.set(outcome.runId, `runtime ${id} died between the terminal commit and the hook`);
      return;
    }
    const calls = this.hookCalls.get(outcome.runId) ?? [];
    this.hookCalls.set(outcome.runId, calls);
    calls.push(outcome);
    await this.options.hook?.(outcome);
  }

  // ---- bookkeeping of commits ----------------------------------------------------------

  private noteSettle(claim: ClaimRef): void {
    const delivery = this.world.deliveryOf(claim);
    if (delivery && !this.commitSeq.has(delivery)) this.commitSeq.set(delivery, ++this.events);
  }

  /** Records a commit that ended a run (its cursor record deleted). */
  private async noteTerminal(op: StoreOp, args: unknown[], result: unknown, hidden: boolean): Promise<void> {
    let runId: string | undefined;
    let status: TerminalStatus | undefined;
    let delivery: Delivery | undefined;
    let how: TerminalCommit['how'] = 'settle';
    if (op === 'settle') {
      const settlement = args[1] as Settlement;
      const settled = result as SettleResult;
      const branch = settled.branch === 'cancel' ? settlement.ifCancelRequested : settlement;
      runId = this.endedRun(branch?.effects);
      if (runId === undefined) return;
      delivery = this.world.deliveryOf(args[0] as ClaimRef);
      const kind = delivery?.result?.kind;
      // A compensation (onCancel) that returns ends the run cancelled; one whose cancel branch is its primary
      // (a compensation, a runner's own cancel, a non-cancellable step that ended the run) ends as its step says.
      const byStep = kind === 'cancel' ? 'cancelled' : kind === 'succeed' ? (delivery?.onCancel === true ? 'cancelled' : 'succeeded') : 'failed';
      const ownBranch = settlement.ifCancelRequested !== undefined && settlement.ifCancelRequested.effects === settlement.effects;
      status = settled.branch === 'cancel' && !ownBranch ? 'cancelled' : byStep;
    } else if (op === 'cancel') {
      if ((result as CancelResult).outcome !== 'removed') return;
      runId = this.endedRun(args[1] as Effects | undefined);
      status = 'cancelled';
      how = 'cancel';
    } else if (op === 'kvDelete') {
      const key = args[0] as string;
      if (result !== true || !key.startsWith(this.cursorPrefix)) return;
      runId = key.slice(this.cursorPrefix.length);
      const ifValue = (args[1] as { ifValue?: Uint8Array } | undefined)?.ifValue;
      const job = ifValue ? await this.world.store.getJob(decodeRecord<RunCursor>(ifValue).jobId) : undefined;
      status = job?.cancelRequested ? 'cancelled' : 'failed';
      how = 'finalize';
    }
    if (runId === undefined || status === undefined) return;
    const commits = this.terminal.get(runId) ?? [];
    this.terminal.set(runId, commits);
    const commit: TerminalCommit = { seq: ++this.events, status, how, hidden, ...(delivery ? { delivery } : {}) };
    commits.push(commit);
    this.commitOfCall.set(args, commit);
  }

  private endedRun(effects: Effects | undefined): string | undefined {
    const key = effects?.kvDeletes?.find((k) => k.startsWith(this.cursorPrefix));
    return key?.slice(this.cursorPrefix.length);
  }

  /** Notification jobs that went dead (their hook never succeeded), by run: durable delivery, and reaper-ended runs. */
  private readonly deadNotifications = new Map<string, string>();

  private async collectDeadNotifications(queue: string): Promise<void> {
    let after: string | undefined;
    for (;;) {
      const page = await this.world.store.deadJobs(queue, { ...(after === undefined ? {} : { after }), limit: 500 });
      for (const job of page) {
        try {
          this.deadNotifications.set(decodeOutcome(job.payload).runId, `its notification job was dead-lettered (${job.lastError ?? 'no error'})`);
        } catch {
          // not an outcome notification
        }
      }
      if (page.length < 500) return;
      after = page[page.length - 1]?.id;
    }
  }

  /** Why a run that ended has no hook call, when that is allowed; undefined when it is not. */
  private lostReason(runId: string): string | undefined {
    const commit = this.terminal.get(runId)?.[0];
    // No runtime commit seen: the reaper's commit ended the run, and its hook goes through a notification job.
    if (this.outcomeQueue !== undefined || commit === undefined) return this.deadNotifications.get(runId);
    return this.lostHooks.get(runId) ?? (commit.hidden ? `the ${commit.how} that ended it committed, but its caller saw an error or died` : undefined);
  }

  // ---- invariants ------------------------------------------------------------------------

  private violate(invariant: Violation['invariant'], runId: string | undefined, message: string): void {
    this.violations.push({ invariant, ...(runId === undefined ? {} : { runId }), message: `${message} (seed ${this.options.seed})` });
  }

  private async checkInvariants(): Promise<void> {
    const store = this.world.store;
    for (const runId of this.runIds) {
      const hooks = this.hookCalls.get(runId) ?? [];
      const commits = this.terminal.get(runId) ?? [];
      const commit = commits[0];
      const keys = runKeys(this.queueName, runId);
      const identity = await store.kvGet(keys.identity);
      const cursor = await store.kvGet(keys.cursor);
      const cancels = this.cancelCalls.get(runId) ?? [];
      const run = `run ${runId}`;
      // At least once through a notification job (durable delivery, or a run the reaper's commit ended); once otherwise.
      if (hooks.length > 1 && this.outcomeQueue === undefined && commit !== undefined) {
        this.violate('hookFiredTwice', runId, `${run}: the hook fired ${hooks.length} times (${hooks.map((h) => h.status).join(', ')})`);
      }
      if (hooks.some((h) => !sameOutcome(h, hooks[0] as RunOutcome))) {
        this.violate(
          'hookInconsistent',
          runId,
          `${run}: the hook received different outcomes (${hooks.map((h) => `${h.status}/${h.error ?? ''}`).join(', ')})`,
        );
      }
      if (commits.length > 1) this.violate('endedTwice', runId, `${run}: ${commits.length} commits ended it (${commits.map((c) => c.how).join(', ')})`);
      if (identity !== undefined || cursor !== undefined) {
        const where = cursor ? decodeRecord<RunCursor>(cursor) : undefined;
        const job = where ? await store.getJob(where.jobId) : undefined;
        const left = [identity && 'identity', cursor && 'cursor'].filter(Boolean).join(', ');
        if (job?.status === 'dead') {
          // The reaper dead-lettered the run's step, but the run's end did not commit with it.
          this.violate(
            'reapedRunNotFinalized',
            runId,
            `${run}: the reaper dead-lettered step ${where?.step} (${job.lastError ?? 'no error'}) but the run did not end with it: records left (${left}), ` +
              (hooks.length > 0 ? `although the hook reported ${hooks[0]?.status}` : 'hook not fired'),
          );
        } else {
          this.violate(
            'runNotEnded',
            runId,
            `${run} never ended: records left (${left})` +
              (where ? `, cursor at step ${where.step}, job ${job ? job.status : 'gone'}` : '') +
              (hooks.length > 0 ? `, although the hook reported ${hooks[0]?.status}` : ''),
          );
        }
      } else if (hooks.length === 0 && this.lostReason(runId) === undefined) {
        const why = this.outcomeQueue === undefined ? 'no fault explains it' : 'durable delivery must not lose it';
        this.violate('hookNotFired', runId, `${run} ended in the store (${commit ? commit.how : 'no terminal commit seen'}) but its hook never fired: ${why}`);
      }
      const hook = hooks[0];
      const status = hook?.status ?? commit?.status;
      if (hook && commit && hook.status !== commit.status) {
        this.violate('statusMismatch', runId, `${run}: the hook reported ${hook.status} but the commit that ended it means ${commit.status}`);
      }
      if (cancels.includes(true) && status !== undefined && status !== 'cancelled') {
        this.violate('cancelPrecedence', runId, `${run}: cancel returned true but the run ended ${status}`);
      }
      if (hook && hook.status === 'cancelled' && hook.error === undefined && cancels.length === 0) {
        this.violate('cancelWithoutRequest', runId, `${run} ended cancelled without a reason, but nobody cancelled it`);
      }
      if (hook?.status === 'succeeded' && commit?.delivery?.result?.kind === 'succeed') {
        const expected = commit.delivery.result.result;
        if (!hook.result || Buffer.compare(Buffer.from(hook.result), Buffer.from(expected)) !== 0) {
          this.violate('resultMismatch', runId, `${run}: the hook's result differs from what the committing delivery returned`);
        }
      }
      if (commit) {
        for (const d of this.world.deliveries) {
          if (d.runId === runId && (this.deliverySeq.get(d) ?? 0) > commit.seq) {
            this.violate('stepAfterEnd', runId, `${run}: step ${d.step} (attempt ${d.attempt}) was delivered after the run ended`);
          }
        }
      }
    }
    // A step whose settlement acked or dead-lettered it must never be delivered again.
    for (const d of this.world.deliveries) {
      const at = this.commitSeq.get(d);
      if (at === undefined || (d.jobStatus !== 'done' && d.jobStatus !== 'dead')) continue;
      for (const later of this.world.deliveries) {
        if (later.runId === d.runId && later.step === d.step && (this.deliverySeq.get(later) ?? 0) > at) {
          this.violate('settledStepReran', d.runId, `run ${d.runId}: step ${d.step} ran again (attempt ${later.attempt}) after its settlement committed`);
        }
      }
    }
    // A delivery whose job was claimed again (lease lost) must never commit afterwards.
    for (const d of this.world.deliveries) {
      const at = this.commitSeq.get(d);
      if (at === undefined) continue;
      const newer = this.world.deliveries.find((o) => o.jobId === d.jobId && o.attempt > d.attempt && (this.deliverySeq.get(o) ?? 0) < at);
      if (newer)
        this.violate(
          'staleSettlement',
          d.runId,
          `run ${d.runId}: step ${d.step} attempt ${d.attempt} committed its settlement after attempt ${newer.attempt} had taken the step over`,
        );
    }
    if (await this.world.hasLiveJobs()) {
      const stats = await store.stats(this.queueName);
      this.violate('liveJobsLeft', undefined, `live step jobs left at the end: ${JSON.stringify(stats)}`);
    }
  }
}
