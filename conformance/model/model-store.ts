/**
 * `ModelStore` wraps the reference model as a real `QueueStore` (clock,
 * notifications, waits), so the conformance suite can run on its own
 * reference, as abstract-level runs its suite on a minimal implementation.
 */
import { SystemClock } from '../../core/clock.js';
import type { Clock } from '../../core/clock.js';
import { InvalidArgumentError, StoreClosedError } from '../../core/errors.js';
import { newId } from '../../core/ids.js';
import { CompletionWaiters, LocalNotifications } from '../../core/local-notifications.js';
import { DEFAULT_PROMOTE_INTERVAL_MS, DEFAULT_REAPER_INTERVAL_MS } from '../../core/queue-config.js';
import type { StoreOptions } from '../../core/queue-config.js';
import type {
  CancelResult,
  Claim,
  ClaimRef,
  CompletionResult,
  Effects,
  EnqueueOptions,
  EnqueueResult,
  JobRecord,
  KvWrite,
  QueueStats,
  QueueStore,
  ReapReport,
  ReaperTemplate,
  RenewResult,
  SettleResult,
  Settlement,
  StoreNotification,
} from '../../core/queue-store.js';
import { checkJobId, checkPositiveInt } from '../../core/store-validation.js';
import { QueueModel } from './queue-model.js';
import type { ModelEvents } from './state.js';

/** Options of `ModelStore`: the common `StoreOptions`. */
export type ModelStoreOptions = StoreOptions;

/**
 * The reference model as a `QueueStore`: the conformance suite runs on it to
 * show the suite and the model agree. Slow by design (every call copies the
 * whole state); use `MemoryStore` for anything else.
 */
export class ModelStore implements QueueStore {
  private readonly clock: Clock;
  private readonly model: QueueModel;
  private readonly notifications = new LocalNotifications();
  private readonly waiters: CompletionWaiters;
  private readonly timers: Array<() => void> = [];
  private closed = false;

  constructor(options: ModelStoreOptions = {}) {
    this.clock = options.clock ?? new SystemClock();
    this.waiters = new CompletionWaiters(this.clock);
    this.model = new QueueModel(options, (now) => newId(now));
    if (options.backgroundMaintenance !== false) {
      this.every(options.reaperIntervalMs ?? DEFAULT_REAPER_INTERVAL_MS, () => this.reap());
      this.every(options.promoteIntervalMs ?? DEFAULT_PROMOTE_INTERVAL_MS, () => this.promote());
    }
  }

  private every(intervalMs: number, task: () => Promise<unknown>): void {
    checkPositiveInt('maintenance interval', intervalMs);
    const tick = (): void => {
      if (this.closed) return;
      void task().catch(() => undefined);
      this.timers.push(this.clock.setTimer(tick, intervalMs));
    };
    this.timers.push(this.clock.setTimer(tick, intervalMs));
  }

  /** Runs one model operation and publishes what it changed. */
  private run<T>(operation: (now: number) => T): T {
    if (this.closed) throw new StoreClosedError();
    const before = this.model.events;
    const result = operation(this.clock.now());
    const events = this.model.events;
    if (events !== before) this.publish(events);
    return result;
  }

  private publish(events: ModelEvents): void {
    for (const queue of events.becamePending) this.notify(queue, { type: 'jobsAvailable', queue });
    for (const { queue, jobId } of events.cancelRequested) this.notify(queue, { type: 'cancelRequested', queue, jobId });
    const byQueue = new Map<string, JobRecord[]>();
    for (const record of events.deadLettered) byQueue.set(record.queue, [...(byQueue.get(record.queue) ?? []), record]);
    for (const [queue, jobs] of byQueue) this.notify(queue, { type: 'deadLettered', queue, jobs });
    for (const { id, record, removed } of events.finished) {
      const result: CompletionResult = removed ? { kind: 'notFound' } : record ? { kind: 'completed', job: record } : { kind: 'completed' };
      this.waiters.resolve(id, result);
    }
  }

  private notify(queue: string, notification: StoreNotification): void {
    this.notifications.notify(queue, notification);
  }

  async enqueue(queue: string, payload: Uint8Array, options?: EnqueueOptions, kvWrites?: KvWrite[]): Promise<EnqueueResult> {
    return this.run((now) => this.model.enqueue(now, queue, payload, options, kvWrites));
  }

  async enqueueBatch(queue: string, items: Array<{ payload: Uint8Array; options?: EnqueueOptions }>): Promise<EnqueueResult[]> {
    return this.run((now) => this.model.enqueueBatch(now, queue, items));
  }

  async claim(queue: string, options?: { leaseMs?: number; limit?: number }): Promise<Claim[]> {
    return this.run((now) => this.model.claim(now, queue, options));
  }

  async settle(claim: ClaimRef, settlement: Settlement): Promise<SettleResult> {
    return this.run((now) => this.model.settle(now, claim, settlement));
  }

  async renewLease(claim: ClaimRef, extendMs: number): Promise<RenewResult> {
    return this.run((now) => this.model.renewLease(now, claim, extendMs));
  }

  async cancel(jobId: string, effects?: Effects): Promise<CancelResult> {
    return this.run((now) => this.model.cancel(now, jobId, effects));
  }

  async reap(): Promise<ReapReport> {
    return this.run((now) => this.model.reap(now));
  }

  async promote(): Promise<number> {
    return this.run((now) => this.model.promote(now));
  }

  async setReaperTemplate(queue: string, template: ReaperTemplate | undefined): Promise<void> {
    this.run(() => this.model.setReaperTemplate(queue, template));
  }

  async requeueDead(jobId: string): Promise<void> {
    this.run(() => this.model.requeueDead(jobId));
  }

  async getJob(jobId: string): Promise<JobRecord | undefined> {
    return this.run(() => this.model.getJob(jobId));
  }

  async deadJobs(queue: string, options?: { after?: string; limit?: number }): Promise<JobRecord[]> {
    return this.run(() => this.model.deadJobs(queue, options));
  }

  async stats(queue: string): Promise<QueueStats> {
    return this.run(() => this.model.stats(queue));
  }

  async listQueues(): Promise<string[]> {
    return this.run(() => this.model.listQueues());
  }

  async waitForCompletion(jobId: string, timeoutMs: number): Promise<CompletionResult> {
    const job = this.run(() => {
      checkJobId(jobId);
      if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 0) throw new InvalidArgumentError('timeoutMs', `expected a non-negative integer, got ${timeoutMs}`);
      return this.model.getJob(jobId);
    });
    if (!job) return { kind: 'notFound' };
    if (job.status === 'done' || job.status === 'dead') return { kind: 'completed', job };
    return this.waiters.wait(jobId, timeoutMs);
  }

  async kvGet(key: string): Promise<Uint8Array | undefined> {
    return this.run((now) => this.model.kvGet(now, key));
  }

  async kvDelete(key: string, options?: { ifValue?: Uint8Array }): Promise<boolean> {
    return this.run((now) => this.model.kvDelete(now, key, options));
  }

  subscribe(queue: string, listener: (notification: StoreNotification) => void): () => void {
    return this.notifications.subscribe(queue, listener);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const cancel of this.timers) cancel();
    this.waiters.resolveAll();
    this.notifications.clear();
  }
}
