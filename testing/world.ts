/**
 * The machinery shared by the test environment and the simulator: a memory
 * store on a manual clock, a record of every delivery, and a scheduler that
 * lets the runtime run everything claimable at the current virtual time and
 * then jumps the clock to the next thing that can happen.
 */
import { setImmediate as realSetImmediate } from 'node:timers';
import { HEADER_RUN_ID, HEADER_STEP, LeaseLostError, ManualClock, decodeOutcome, describeFailure } from '../core/index.js';
import type { Claim, ClaimRef, EnqueueResult, JobRecord, QueueConfig, QueueStore, SettleResult, Step, StepOutcome } from '../core/index.js';
import { MemoryStore } from '../adapters/memory/index.js';
import type { ActiveRun } from './errors.js';
import type { StoreOp } from './intercepting-store.js';

/** One delivery of a step to the runner (a claim that reached the runner). */
export interface Delivery {
  /** Order in which deliveries started (0-based, across all runs). */
  seq: number;
  runId: string;
  step: number;
  /** The step's name, for workflow definitions (and named low-level steps). */
  stepName?: string;
  /** Set on the delivery that runs a workflow's `onCancel`. */
  onCancel?: true;
  /** The job's attempt count at this delivery (1 for the first). */
  attempt: number;
  /** Differs between executions (ids are ULIDs); leave it out of equality checks. */
  jobId: string;
  /** Runtime instance that ran it: 0 first; a simulation starts a new one after each crash. */
  worker: number;
  /** Virtual time (epoch ms) the runner was called. */
  startedAt: number;
  /** Virtual time the runner returned or threw; undefined while running or if never (crash). */
  endedAt: number | undefined;
  /** What the runner returned. */
  result: StepOutcome | undefined;
  /** What the runner threw. */
  error: { message: string; permanent: boolean } | undefined;
  /**
   * How the delivery's settlement went: the branch that committed
   * (`primary`, `cancel` when an external cancel won, or `stale` when the
   * job no longer carried its run and settled with no effect), `leaseLost` (the
   * store rejected it: another delivery owns the step now), `crashed` (its
   * runtime was dropped first), or undefined while not settled.
   */
  settled: 'primary' | 'cancel' | 'stale' | 'leaseLost' | 'crashed' | undefined;
  /** Job status the committed settlement left: `done`, `scheduled`/`pending` (retry) or `dead`. */
  jobStatus: SettleResult['status'] | undefined;
}

/** Defaults shared by the environment and the simulator. */
export const DEFAULT_START_TIME = Date.parse('2026-01-01T00:00:00Z');
export const DEFAULT_MAX_STEPS = 10_000;
export const DEFAULT_MAX_VIRTUAL_TIME_MS = 30 * 24 * 60 * 60 * 1000;
/** The runtime polls only as a fallback; in one process store notifications wake it at once. */
export const WORKER_POLL_MS = 24 * 60 * 60 * 1000;

const tick = (): Promise<void> => new Promise((resolve) => realSetImmediate(resolve));

/** Makes the store a world runs on. It must read time from `clock`, run no background timers of its own, and answer without real I/O. */
export type StoreFactory = (options: { clock: ManualClock; queueConfig: Partial<QueueConfig> | undefined }) => QueueStore;

/** The default: a memory store whose maintenance the scheduler drives. */
export const memoryStoreFactory = ({ clock, queueConfig }: Parameters<StoreFactory>[0]): MemoryStore =>
  new MemoryStore({ clock, backgroundMaintenance: false, ...(queueConfig ? { defaultQueueConfig: queueConfig } : {}) });

export class World<S extends QueueStore = QueueStore> {
  readonly clock: ManualClock;
  readonly store: S;
  readonly deliveries: Delivery[] = [];
  /** Bumped by every store call and runner start/end: "did anything happen?". */
  progress = 0;
  private readonly liveIds = new Set<string>();
  private readonly byKey = new Map<string, Delivery>();
  private readonly tokens = new Map<string, { jobId: string; attempts: number }>();

  /** The queues whose jobs count as live work: the steps queues, and the outcome queues. */
  readonly queues: string[];
  /** Of those, the outcome-notification queues. */
  private readonly notificationQueues = new Set<string>();

  constructor(
    readonly queueName: string,
    options: { clock?: ManualClock; startTime?: number; queueConfig?: Partial<QueueConfig> },
    makeStore: (options: { clock: ManualClock; queueConfig: Partial<QueueConfig> | undefined }) => S,
  ) {
    this.queues = [queueName];
    this.clock = options.clock ?? new ManualClock(options.startTime ?? DEFAULT_START_TIME);
    // Maintenance is driven by the scheduler (promote/reap exactly when due), so no periodic timers.
    this.store = makeStore({ clock: this.clock, queueConfig: options.queueConfig });
  }

  /** Counts another queue's jobs as live work: a workflow's steps, or (`notifications`) a queue of outcome notifications. */
  watchQueue(queue: string | undefined, notifications = true): void {
    if (queue === undefined) return;
    if (!this.queues.includes(queue)) this.queues.push(queue);
    if (notifications) this.notificationQueues.add(queue);
  }

  // ---- observation ---------------------------------------------------------

  /** Records what a landed store call changed (job ids to watch, claim tokens, settlements). */
  observe(op: StoreOp, args: unknown[], result: unknown): void {
    this.progress++;
    const track = (results: EnqueueResult[]): void => {
      for (const r of results) if (r.kind === 'new') this.liveIds.add(r.id);
    };
    switch (op) {
      case 'enqueue':
        track([result as EnqueueResult]);
        return;
      case 'enqueueBatch':
        track(result as EnqueueResult[]);
        return;
      case 'requeueDead':
        this.liveIds.add(args[0] as string);
        return;
      case 'claim':
        for (const claim of result as Claim[]) {
          this.liveIds.add(claim.jobId);
          this.tokens.set(claim.token, { jobId: claim.jobId, attempts: claim.job.attempts });
        }
        return;
      case 'settle': {
        const settled = result as SettleResult;
        track(settled.enqueued);
        const delivery = this.deliveryOf(args[0] as ClaimRef);
        if (delivery && (delivery.settled === undefined || delivery.settled === 'leaseLost' || delivery.settled === 'crashed')) {
          delivery.settled = settled.branch;
          delivery.jobStatus = settled.status;
        }
        return;
      }
      default:
        return;
    }
  }

  /** Records a store call that failed in the store. */
  observeFailure(op: StoreOp, args: unknown[], error: unknown): void {
    this.progress++;
    if (op !== 'settle' || !(error instanceof LeaseLostError)) return;
    const delivery = this.deliveryOf(args[0] as ClaimRef);
    if (delivery && delivery.settled === undefined) delivery.settled = 'leaseLost';
  }

  /** The delivery a claim token belongs to. */
  deliveryOf(claim: ClaimRef | undefined): Delivery | undefined {
    const owner = claim ? this.tokens.get(claim.token) : undefined;
    return owner ? this.byKey.get(`${owner.jobId}#${owner.attempts}`) : undefined;
  }

  /** The claim token of a delivery (for fault injection). */
  tokenOf(jobId: string, attempts: number): string | undefined {
    for (const [token, owner] of this.tokens) if (owner.jobId === jobId && owner.attempts === attempts) return token;
    return undefined;
  }

  startDelivery(step: Step, worker: number): Delivery {
    this.progress++;
    const delivery: Delivery = {
      seq: this.deliveries.length,
      runId: step.runId,
      step: step.stepNumber,
      ...(step.stepName === undefined ? {} : { stepName: step.stepName }),
      ...(step.onCancel === true ? { onCancel: true as const } : {}),
      attempt: step.attempts,
      jobId: step.jobId,
      worker,
      startedAt: this.clock.now(),
      endedAt: undefined,
      result: undefined,
      error: undefined,
      settled: undefined,
      jobStatus: undefined,
    };
    this.deliveries.push(delivery);
    this.byKey.set(`${step.jobId}#${step.attempts}`, delivery);
    return delivery;
  }

  endDelivery(delivery: Delivery, outcome: { ok: true; value: StepOutcome } | { ok: false; error: unknown }): void {
    this.progress++;
    delivery.endedAt = this.clock.now();
    if (outcome.ok) delivery.result = outcome.value;
    else delivery.error = describeFailure(outcome.error);
  }

  // ---- scheduling ------------------------------------------------------------

  /**
   * Lets every pending promise chain run to its end at the current virtual
   * time: real `setImmediate` turns (taken from `node:timers`, so users' fake
   * timers do not affect it) until a turn passes with no progress.
   */
  async quiesce(): Promise<void> {
    for (let rounds = 0; rounds < 1000; rounds++) {
      const before = this.progress;
      await tick();
      if (this.progress === before) return;
    }
  }

  /** Live jobs (pending, scheduled, claimed) of the world's queues, in id order. */
  async liveJobs(): Promise<JobRecord[]> {
    const jobs: JobRecord[] = [];
    for (const id of [...this.liveIds]) {
      const job = await this.store.getJob(id);
      if (!job || job.status === 'done' || job.status === 'dead') this.liveIds.delete(id);
      else if (this.queues.includes(job.queue)) jobs.push(job);
    }
    return jobs.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** True while a queue of the world holds a pending, scheduled or claimed job. */
  async hasLiveJobs(): Promise<boolean> {
    for (const queue of this.queues) {
      const stats = await this.store.stats(queue);
      if (stats.pending + stats.scheduled + stats.claimed > 0) return true;
    }
    return false;
  }

  /** Earliest virtual time at which something can happen: a timer, a scheduled step, a lease expiry. */
  nextEventAt(jobs: JobRecord[]): number | undefined {
    let next = this.clock.nextTimerAt();
    for (const job of jobs) {
      const at = job.status === 'scheduled' ? job.runAt : job.status === 'claimed' ? job.leaseExpiresAt : undefined;
      if (at !== undefined && (next === undefined || at < next)) next = at;
    }
    return next;
  }

  /** Moves the clock to `at` (firing due timers), then promotes due steps and reaps expired leases. */
  async jumpTo(at: number): Promise<void> {
    this.clock.set(Math.max(at, this.clock.now()));
    await this.store.promote();
    await this.store.reap();
    this.progress++;
  }

  /** The runs whose jobs are live, for guard messages. */
  activeRuns(jobs: JobRecord[]): ActiveRun[] {
    return jobs.map((job) => {
      const common = { jobId: job.id, attempts: job.attempts };
      if (this.notificationQueues.has(job.queue)) {
        // A durable outcome notification: the run has ended, its hook has not run yet.
        let outcome: { runId: string; finalStep: number } | undefined;
        try {
          outcome = decodeOutcome(job.payload);
        } catch {
          outcome = undefined;
        }
        return { runId: outcome?.runId ?? '?', step: outcome?.finalStep ?? Number.NaN, state: 'notifying', ...common };
      }
      return {
        runId: job.headers[HEADER_RUN_ID] ?? '?',
        step: Number(job.headers[HEADER_STEP] ?? Number.NaN),
        state: job.cancelRequested ? 'cancelling' : job.status === 'claimed' ? 'running' : job.status === 'scheduled' ? 'scheduled' : 'pending',
        ...common,
      };
    });
  }
}
