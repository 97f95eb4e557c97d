/**
 * The skeleton every store shares, written once: argument checks, the
 * open/closed lifecycle, housekeeping timers (the reaper and promotion
 * ticks, and a wakeup at the next due job), local notifications and
 * `waitForCompletion` waiters. A store extends `BaseQueueStore` and
 * implements the protected primitives (`_enqueue`, `_claim`, ...), which
 * receive arguments already checked and resolved; the public methods of
 * `QueueStore` live here. (The split of abstract-level's `put()`/`_put()`.)
 *
 * Extending it is optional: a store may implement `QueueStore` directly,
 * as long as it passes the conformance suite.
 */
import { HOUSEKEEPING, SystemClock } from './clock.js';
import type { Clock } from './clock.js';
import { InvalidArgumentError, StoreClosedError } from './errors.js';
import { CompletionWaiters, LocalNotifications } from './local-notifications.js';
import { DEFAULT_PROMOTE_INTERVAL_MS, DEFAULT_REAPER_INTERVAL_MS, QueueConfigs } from './queue-config.js';
import type { StoreOptions } from './queue-config.js';
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
} from './queue-store.js';
import {
  checkEffects,
  checkEnqueueOptions,
  checkJobId,
  checkKvKey,
  checkKvWrites,
  checkPayload,
  checkPositiveInt,
  checkQueueName,
  checkSettlement,
  checkTimeoutMs,
} from './store-validation.js';
import { checkReaperTemplate } from './reaper-template.js';

/** One item of `enqueueBatch`. */
export interface BatchItem {
  payload: Uint8Array;
  options?: EnqueueOptions;
}

/** What `_completionState` found: the wait is over, or the job is still live (its record as read). */
export type CompletionState = { done: CompletionResult } | { live: JobRecord };

/** Default page size of `deadJobs`. */
export const DEFAULT_DEAD_PAGE = 100;

export abstract class BaseQueueStore implements QueueStore {
  protected readonly clock: Clock;
  protected readonly configs: QueueConfigs;
  /** Whether the reaper and promotion run on the clock's timers (`backgroundMaintenance`). */
  protected readonly background: boolean;
  protected readonly reaperIntervalMs: number;
  protected readonly promoteIntervalMs: number;
  protected readonly notifications = new LocalNotifications();
  protected readonly completionWaiters: CompletionWaiters;
  private readonly timers = new Set<() => void>();
  private wake: { at: number; cancel: () => void } | undefined;
  private closed = false;

  constructor(options: StoreOptions = {}) {
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- untyped callers reach this through the public API
    if (options === null || typeof options !== 'object') throw new InvalidArgumentError('options', 'expected an object');
    this.reaperIntervalMs = options.reaperIntervalMs ?? DEFAULT_REAPER_INTERVAL_MS;
    this.promoteIntervalMs = options.promoteIntervalMs ?? DEFAULT_PROMOTE_INTERVAL_MS;
    checkPositiveInt('reaperIntervalMs', this.reaperIntervalMs);
    checkPositiveInt('promoteIntervalMs', this.promoteIntervalMs);
    this.clock = options.clock ?? new SystemClock();
    this.configs = new QueueConfigs(options);
    this.background = options.backgroundMaintenance !== false;
    this.completionWaiters = new CompletionWaiters(this.clock);
  }

  // ---- the primitives a store implements: arguments arrive checked ----------------------

  protected abstract _enqueue(queue: string, payload: Uint8Array, options: EnqueueOptions | undefined, kvWrites: KvWrite[] | undefined): Promise<EnqueueResult>;
  protected abstract _enqueueBatch(queue: string, items: BatchItem[]): Promise<EnqueueResult[]>;
  /** `leaseMs` is resolved (the call's, else the queue's); `limit` is at least 1. */
  protected abstract _claim(queue: string, leaseMs: number, limit: number): Promise<Claim[]>;
  protected abstract _settle(claim: ClaimRef, settlement: Settlement): Promise<SettleResult>;
  protected abstract _renewLease(claim: ClaimRef, extendMs: number): Promise<RenewResult>;
  protected abstract _cancel(jobId: string, effects: Effects | undefined): Promise<CancelResult>;
  protected abstract _reap(): Promise<ReapReport>;
  protected abstract _promote(): Promise<number>;
  /** `template` arrives checked and is the caller's: keep a copy (`copyReaperTemplate`) or its text form. */
  protected abstract _setReaperTemplate(queue: string, template: ReaperTemplate | undefined): Promise<void>;
  protected abstract _requeueDead(jobId: string): Promise<void>;
  protected abstract _getJob(jobId: string): Promise<JobRecord | undefined>;
  protected abstract _deadJobs(queue: string, after: string | undefined, limit: number): Promise<JobRecord[]>;
  protected abstract _stats(queue: string): Promise<QueueStats>;
  protected abstract _listQueues(): Promise<string[]>;
  protected abstract _kvGet(key: string): Promise<Uint8Array | undefined>;
  protected abstract _kvDelete(key: string, ifValue: Uint8Array | undefined): Promise<boolean>;
  /** Whether `waitForCompletion` can return at once, read in one go. */
  protected abstract _completionState(jobId: string): Promise<CompletionState>;
  /** Releases the store's resources, after timers, waiters and subscribers are gone. */
  protected abstract _close(): Promise<void>;

  // ---- hooks a store may override ---------------------------------------------------------

  /** Checks of a job id, queue name or kv key argument; a store with narrower limits tightens them. */
  protected checkJobIdArgument(jobId: unknown): asserts jobId is string {
    checkJobId(jobId);
  }
  protected checkQueueArgument(queue: unknown): asserts queue is string {
    checkQueueName(queue);
  }
  protected checkKvKeyArgument(key: unknown): asserts key is string {
    checkKvKey(key);
  }

  /** Throws if the store cannot serve calls; a store that can fail for good adds its own failure. */
  protected checkOpen(): void {
    if (this.closed) throw new StoreClosedError();
  }

  /** Whether housekeeping should stop (closed, or a store-specific failure). */
  protected housekeepingStopped(): boolean {
    return this.closed;
  }

  /** One tick of background maintenance. Failures are left to the next tick. */
  protected maintain(task: 'reap' | 'promote'): void {
    void (task === 'reap' ? this._reap() : this._promote()).catch(() => undefined);
  }

  /** A live job someone now waits for: a store that sees other processes' commits starts watching it here. */
  protected watchCompletion(_job: JobRecord, _waiting: Promise<CompletionResult>): void {}

  /** Subscribers came or went (`notifications.size` tells how many queues are listened to). */
  protected subscribersChanged(): void {}

  /** Runs before the store counts as closed: calls made before `close()` may still finish here. */
  protected beforeClose(): void {}

  // ---- helpers for stores --------------------------------------------------------------------

  protected get isClosed(): boolean {
    return this.closed;
  }

  /** Starts the reaper and promotion ticks (`backgroundMaintenance`); call once the store can serve them. */
  protected startMaintenance(): void {
    if (!this.background) return;
    this.every(this.reaperIntervalMs, () => this.maintain('reap'));
    this.every(this.promoteIntervalMs, () => this.maintain('promote'));
  }

  /** Runs `task` every `intervalMs` on the clock until the store closes or housekeeping stops. */
  protected every(intervalMs: number, task: () => void): void {
    let cancel: () => void = () => undefined;
    const tick = (): void => {
      this.timers.delete(cancel);
      if (this.housekeepingStopped()) return;
      task();
      if (this.housekeepingStopped()) return;
      cancel = this.clock.setTimer(tick, intervalMs, HOUSEKEEPING);
      this.timers.add(cancel);
    };
    cancel = this.clock.setTimer(tick, intervalMs, HOUSEKEEPING);
    this.timers.add(cancel);
  }

  /**
   * Wakes at `runAt` (when earlier than the wakeup already armed) and calls
   * `onWake`, so scheduled jobs are promoted when due rather than at the next
   * promotion tick. `onWake` promotes and re-arms for the next due job.
   */
  protected armWake(runAt: number, onWake: () => void): void {
    if (!this.background || this.housekeepingStopped()) return;
    if (this.wake && this.wake.at <= runAt) return;
    this.wake?.cancel();
    const cancel = this.clock.setTimer(
      () => {
        this.wake = undefined;
        if (this.housekeepingStopped()) return;
        onWake();
      },
      runAt - this.clock.now(),
      HOUSEKEEPING,
    );
    this.wake = { at: runAt, cancel };
  }

  /** Cancels the housekeeping timers and the wakeup at once (for a store that failed for good; `close` does it too). */
  protected stopHousekeeping(): void {
    for (const cancel of this.timers) cancel();
    this.timers.clear();
    this.wake?.cancel();
    this.wake = undefined;
  }

  protected notify(queue: string, notification: StoreNotification): void {
    this.notifications.notify(queue, notification);
  }

  /** Ends the waits for `jobId` with `result`. */
  protected completed(jobId: string, result: CompletionResult): void {
    this.completionWaiters.resolve(jobId, result);
  }

  // ---- QueueStore -----------------------------------------------------------------------------
  // The pass-through methods are not `async`: they hand back the primitive's own promise (a check that
  // throws becomes a rejection), so a call costs no second promise and no extra microtask turns.

  enqueue(queue: string, payload: Uint8Array, options?: EnqueueOptions, kvWrites?: KvWrite[]): Promise<EnqueueResult> {
    try {
      this.checkOpen();
      this.checkQueueArgument(queue);
      checkPayload(payload);
      checkEnqueueOptions(options);
      checkKvWrites(kvWrites);
      return this._enqueue(queue, payload, options, kvWrites);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  enqueueBatch(queue: string, items: BatchItem[]): Promise<EnqueueResult[]> {
    try {
      this.checkOpen();
      this.checkQueueArgument(queue);
      if (!Array.isArray(items)) throw new InvalidArgumentError('items', 'expected an array');
      for (const item of items) {
        // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- untyped callers reach this through the public API
        checkPayload(item?.payload);
        checkEnqueueOptions(item.options);
      }
      return this._enqueueBatch(queue, items);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  claim(queue: string, options?: { leaseMs?: number; limit?: number }): Promise<Claim[]> {
    try {
      this.checkOpen();
      this.checkQueueArgument(queue);
      if (options?.leaseMs !== undefined) checkPositiveInt('leaseMs', options.leaseMs);
      const limit = options?.limit ?? 1;
      checkPositiveInt('limit', limit);
      return this._claim(queue, options?.leaseMs ?? this.configs.get(queue).leaseDurationMs, limit);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  settle(claim: ClaimRef, settlement: Settlement): Promise<SettleResult> {
    try {
      this.checkOpen();
      checkSettlement(settlement);
      return this._settle(claim, settlement);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  renewLease(claim: ClaimRef, extendMs: number): Promise<RenewResult> {
    try {
      this.checkOpen();
      checkPositiveInt('extendMs', extendMs);
      return this._renewLease(claim, extendMs);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  cancel(jobId: string, effects?: Effects): Promise<CancelResult> {
    try {
      this.checkOpen();
      this.checkJobIdArgument(jobId);
      checkEffects(effects);
      return this._cancel(jobId, effects);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  reap(): Promise<ReapReport> {
    try {
      this.checkOpen();
      return this._reap();
    } catch (error) {
      return Promise.reject(error);
    }
  }

  promote(): Promise<number> {
    try {
      this.checkOpen();
      return this._promote();
    } catch (error) {
      return Promise.reject(error);
    }
  }

  setReaperTemplate(queue: string, template: ReaperTemplate | undefined): Promise<void> {
    try {
      this.checkOpen();
      this.checkQueueArgument(queue);
      checkReaperTemplate(template);
      return this._setReaperTemplate(queue, template);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  requeueDead(jobId: string): Promise<void> {
    try {
      this.checkOpen();
      this.checkJobIdArgument(jobId);
      return this._requeueDead(jobId);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  getJob(jobId: string): Promise<JobRecord | undefined> {
    try {
      this.checkOpen();
      this.checkJobIdArgument(jobId);
      return this._getJob(jobId);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  deadJobs(queue: string, options?: { after?: string; limit?: number }): Promise<JobRecord[]> {
    try {
      this.checkOpen();
      this.checkQueueArgument(queue);
      const limit = options?.limit ?? DEFAULT_DEAD_PAGE;
      checkPositiveInt('limit', limit);
      return this._deadJobs(queue, options?.after, limit);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  stats(queue: string): Promise<QueueStats> {
    try {
      this.checkOpen();
      this.checkQueueArgument(queue);
      return this._stats(queue);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  listQueues(): Promise<string[]> {
    try {
      this.checkOpen();
      return this._listQueues();
    } catch (error) {
      return Promise.reject(error);
    }
  }

  async waitForCompletion(jobId: string, timeoutMs: number): Promise<CompletionResult> {
    this.checkOpen();
    this.checkJobIdArgument(jobId);
    checkTimeoutMs(timeoutMs);
    // Registered before the read (which may yield), so a completion committed meanwhile is not missed.
    // The timeout runs from the call, but a final state read wins over a timeout passed during the read.
    const startedAt = this.clock.now();
    const waiter = this.completionWaiters.waiter(jobId);
    let state: CompletionState;
    try {
      state = await this._completionState(jobId);
    } catch (error) {
      waiter.end({ kind: 'timedOut' });
      throw error;
    }
    if ('done' in state) {
      waiter.end(state.done);
    } else {
      waiter.expireIn(timeoutMs - (this.clock.now() - startedAt));
      this.watchCompletion(state.live, waiter.result);
    }
    return waiter.result;
  }

  kvGet(key: string): Promise<Uint8Array | undefined> {
    try {
      this.checkOpen();
      this.checkKvKeyArgument(key);
      return this._kvGet(key);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  kvDelete(key: string, options?: { ifValue?: Uint8Array }): Promise<boolean> {
    try {
      this.checkOpen();
      this.checkKvKeyArgument(key);
      const ifValue = options?.ifValue;
      if (ifValue !== undefined) checkPayload(ifValue, 'ifValue');
      return this._kvDelete(key, ifValue);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  subscribe(queue: string, listener: (notification: StoreNotification) => void): () => void {
    const unsubscribe = this.notifications.subscribe(queue, listener);
    this.subscribersChanged();
    return () => {
      unsubscribe();
      this.subscribersChanged();
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.beforeClose();
    this.closed = true;
    this.stopHousekeeping();
    this.completionWaiters.resolveAll();
    this.notifications.clear();
    this.subscribersChanged();
    await this._close();
  }
}
