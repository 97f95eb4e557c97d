/**
 * The reference model of the QueueStore contract: a deliberately naive, obviously
 * correct implementation of the queue semantics. Plain arrays and maps, full
 * scans, every counter recomputed by counting. Speed is not a goal; being easy
 * to check against the contract by reading is.
 *
 * `QueueModel` is pure in the sense that matters for testing: no I/O, no
 * timers, no hidden clock. Every operation takes `now` and works on a copy of
 * the state that replaces the current one only when the operation succeeds,
 * so a failing operation changes nothing (atomicity by construction).
 *
 * The retry delay is core's `retryDelayMs`: the store-operation examples pin
 * its values with literals, so the model need not restate the formula.
 */
import { copyBytes } from '../../core/bytes.js';
import { InvalidArgumentError, InvalidStateError, JobNotFoundError, LeaseLostError } from '../../core/errors.js';
import { copyHeaders } from '../../core/headers.js';
import { compareIds } from '../../core/ids.js';
import { copyReaperBranch } from '../../core/carried-effects.js';
import { checkReaperTemplate, copyReaperTemplate, reaperBranchOf } from '../../core/reaper-template.js';
import { QueueConfigs, nackDelayMs } from '../../core/queue-config.js';
import type { StoreOptions } from '../../core/queue-config.js';
import type {
  CancelResult,
  Claim,
  ClaimRef,
  Effects,
  EnqueueOptions,
  EnqueueRequest,
  EnqueueResult,
  JobRecord,
  JobStatus,
  KvWrite,
  QueueStats,
  ReapReport,
  ReaperTemplate,
  RenewResult,
  SettleResult,
  Settlement,
  SettlementBranch,
} from '../../core/queue-store.js';
import {
  bytesEqual,
  checkEffects,
  checkEnqueueOptions,
  checkJobId,
  checkKvKey,
  checkKvWrites,
  checkPayload,
  checkPositiveInt,
  checkQueueName,
  checkSettlement,
} from '../../core/store-validation.js';
import { claimOrder, cloneState, holds, liveKv, modelRecord, noEvents, writeKv } from './state.js';
import type { ModelEvents, ModelJob, ModelState } from './state.js';

/**
 * The reference model. `nextId(now)` names jobs enqueued without an id
 * (the property tests use readable sequential ids; `ModelStore` uses ULIDs).
 */
export class QueueModel {
  state: ModelState = { jobs: [], kv: new Map(), doneCount: new Map(), queues: new Set(), reaperTemplates: new Map(), tokenSeq: 0 };
  /** Events of the last successful operation. */
  events: ModelEvents = noEvents();
  readonly configs: QueueConfigs;

  constructor(
    private readonly options: Pick<StoreOptions, 'defaultQueueConfig' | 'queueConfigs'>,
    private readonly nextId: (now: number) => string,
  ) {
    this.configs = new QueueConfigs(options);
  }

  /** An independent copy with the same configuration and state (for trying alternative histories). */
  fork(): QueueModel {
    const copy = new QueueModel(this.options, this.nextId);
    copy.state = cloneState(this.state);
    return copy;
  }

  /** Runs `change` on a copy of the state and keeps the copy only if it returns. */
  private transaction<T>(change: (draft: ModelState, events: ModelEvents) => T): T {
    const draft = cloneState(this.state);
    const events = noEvents();
    const result = change(draft, events);
    this.state = draft;
    this.events = events;
    return result;
  }

  private find(state: ModelState, id: string): ModelJob | undefined {
    return state.jobs.find((job) => job.id === id);
  }

  private remove(state: ModelState, id: string): void {
    state.jobs = state.jobs.filter((job) => job.id !== id);
  }

  /** Ids must be new to the store and unique within one request. */
  private checkNewIds(state: ModelState, requests: EnqueueRequest[]): void {
    const seen: string[] = [];
    for (const request of requests) {
      const id = request.options?.id;
      if (id === undefined) continue;
      if (this.find(state, id) !== undefined || seen.includes(id)) throw new InvalidArgumentError('id', `job id "${id}" is already in use`);
      seen.push(id);
    }
  }

  private dedupHolder(state: ModelState, queue: string, dedupKey: string | undefined): ModelJob | undefined {
    if (dedupKey === undefined) return undefined;
    return state.jobs.find((job) => job.queue === queue && job.dedupKey === dedupKey && (job.status === 'pending' || job.status === 'scheduled'));
  }

  private insert(state: ModelState, events: ModelEvents, now: number, queue: string, payload: Uint8Array, options: EnqueueOptions | undefined): EnqueueResult {
    const holder = this.dedupHolder(state, queue, options?.dedupKey);
    if (holder) return { kind: 'alreadyEnqueued', id: holder.id };
    const config = this.configs.get(queue);
    const id = options?.id ?? this.nextId(now);
    // Written out here, not taken from core: a delay counts from the commit's own time.
    const dueAt = options?.runAt ?? (options?.delayMs ? now + options.delayMs : undefined);
    const scheduled = dueAt !== undefined && dueAt > now;
    const job: ModelJob = {
      id,
      queue,
      payload: copyBytes(payload),
      headers: copyHeaders(options?.headers),
      status: scheduled ? 'scheduled' : 'pending',
      attempts: 0,
      maxAttempts: options?.maxAttempts ?? config.maxAttempts,
      priority: options?.priority ?? config.defaultPriority,
      enqueuedAt: now,
      cancelRequested: false,
    };
    if (scheduled) job.runAt = dueAt;
    else events.becamePending.add(queue);
    if (options?.dedupKey !== undefined) job.dedupKey = options.dedupKey;
    if (options?.reaperDeadLetter !== undefined) job.reaperDeadLetter = copyReaperBranch(options.reaperDeadLetter);
    state.jobs.push(job);
    state.queues.add(queue);
    return { kind: 'new', id };
  }

  private applyEffects(state: ModelState, events: ModelEvents, now: number, effects: Effects | undefined): EnqueueResult[] {
    const enqueued = (effects?.enqueue ?? []).map((request) => this.insert(state, events, now, request.queue, request.payload, request.options));
    for (const write of effects?.kvWrites ?? []) writeKv(state, write, now);
    for (const key of effects?.kvDeletes ?? []) state.kv.delete(key);
    return enqueued;
  }

  /** The job's carried effects, by its cancel flag; none when the precondition fails or an id is taken. */
  private applyReaperEffects(state: ModelState, events: ModelEvents, now: number, job: ModelJob): boolean {
    // The branch the job carries, else the one its queue's template makes from it.
    const branch = reaperBranchOf(job.reaperDeadLetter, state.reaperTemplates.get(job.queue), job);
    if (branch === undefined) return false;
    if (branch.precondition !== undefined && !holds(state, branch.precondition, now)) return false;
    const effects = job.cancelRequested ? branch.ifCancelRequested : branch.effects;
    if (effects === undefined) return false;
    try {
      this.checkNewIds(state, effects.enqueue ?? []);
    } catch {
      return false;
    }
    this.applyEffects(state, events, now, effects);
    return true;
  }

  private makeDead(job: ModelJob, events: ModelEvents, now: number, error: string): void {
    job.status = 'dead';
    job.lastError = error;
    job.failedAt = now;
    delete job.leaseExpiresAt;
    delete job.token;
    events.finished.push({ id: job.id, record: modelRecord(job) });
  }

  enqueue(now: number, queue: string, payload: Uint8Array, options?: EnqueueOptions, kvWrites?: KvWrite[]): EnqueueResult {
    checkQueueName(queue);
    checkPayload(payload);
    checkEnqueueOptions(options);
    checkKvWrites(kvWrites);
    return this.transaction((state, events) => {
      const holder = this.dedupHolder(state, queue, options?.dedupKey);
      if (holder) return { kind: 'alreadyEnqueued', id: holder.id };
      const conflict = (kvWrites ?? []).find((write) => write.ifAbsent === true && liveKv(state, write.key, now) !== undefined);
      if (conflict) return { kind: 'kvConflict', key: conflict.key };
      this.checkNewIds(state, [options === undefined ? { queue, payload } : { queue, payload, options }]);
      const result = this.insert(state, events, now, queue, payload, options);
      for (const write of kvWrites ?? []) writeKv(state, write, now);
      return result;
    });
  }

  enqueueBatch(now: number, queue: string, items: Array<{ payload: Uint8Array; options?: EnqueueOptions }>): EnqueueResult[] {
    checkQueueName(queue);
    if (!Array.isArray(items)) throw new InvalidArgumentError('items', 'expected an array');
    for (const item of items) {
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- untyped callers reach this through the public API
      checkPayload(item?.payload);
      checkEnqueueOptions(item.options);
    }
    return this.transaction((state, events) => {
      this.checkNewIds(
        state,
        items.map((item) => ({ queue, ...item })),
      );
      return items.map((item) => this.insert(state, events, now, queue, item.payload, item.options));
    });
  }

  /** Returns the claims with the model's tokens (`t1`, `t2`, ...). */
  /**
   * `skip`: jobs a concurrent claim is taking, which this claim passes over
   * as `FOR UPDATE SKIP LOCKED` does (used when replaying concurrent claims).
   */
  claim(now: number, queue: string, options?: { leaseMs?: number; limit?: number; skip?: ReadonlySet<string> }): Claim[] {
    checkQueueName(queue);
    if (options?.leaseMs !== undefined) checkPositiveInt('leaseMs', options.leaseMs);
    const limit = options?.limit ?? 1;
    checkPositiveInt('limit', limit);
    return this.transaction((state) => {
      const lease = options?.leaseMs ?? this.configs.get(queue).leaseDurationMs;
      const skip = options?.skip;
      const chosen = state.jobs
        .filter((job) => job.queue === queue && job.status === 'pending' && !skip?.has(job.id))
        .sort(claimOrder)
        .slice(0, limit);
      return chosen.map((job) => {
        job.status = 'claimed';
        job.attempts += 1;
        job.claimedAt = now;
        job.leaseExpiresAt = now + lease;
        delete job.dedupKey;
        job.token = `t${++state.tokenSeq}`;
        return { jobId: job.id, token: job.token, job: modelRecord(job) };
      });
    });
  }

  private owned(state: ModelState, claim: ClaimRef): ModelJob {
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- untyped callers reach this through the public API
    const job = typeof claim?.jobId === 'string' ? this.find(state, claim.jobId) : undefined;
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- untyped callers reach this through the public API
    if (!job || job.status !== 'claimed' || job.token === undefined || job.token !== claim.token) throw new LeaseLostError(String(claim?.jobId));
    return job;
  }

  settle(now: number, claim: ClaimRef, settlement: Settlement): SettleResult {
    checkSettlement(settlement);
    return this.transaction((state, events) => {
      const job = this.owned(state, claim);
      const stale = settlement.precondition !== undefined && !holds(state, settlement.precondition, now);
      const useCancel = !stale && job.cancelRequested && settlement.ifCancelRequested !== undefined;
      const branch: SettlementBranch = stale
        ? { action: { type: 'ack' } }
        : useCancel && settlement.ifCancelRequested
          ? settlement.ifCancelRequested
          : settlement;
      this.checkNewIds(state, branch.effects?.enqueue ?? []);
      const config = this.configs.get(job.queue);
      delete job.leaseExpiresAt;
      delete job.token;
      let status: SettleResult['status'];
      const action = branch.action;
      if (action.type === 'ack') {
        status = 'done';
        state.doneCount.set(job.queue, (state.doneCount.get(job.queue) ?? 0) + 1);
        if (config.keepDoneJobsMs === undefined) {
          this.remove(state, job.id);
          events.finished.push({ id: job.id });
        } else {
          job.status = 'done';
          job.completedAt = now;
          events.finished.push({ id: job.id, record: modelRecord(job) });
        }
      } else if (action.type === 'deadLetter') {
        status = 'dead';
        this.makeDead(job, events, now, action.reason);
      } else if (job.attempts >= job.maxAttempts) {
        status = 'dead';
        this.makeDead(job, events, now, action.error);
      } else {
        job.lastError = action.error;
        const delay = nackDelayMs(action, config, job.attempts);
        if (delay === 0) {
          status = 'pending';
          job.status = 'pending';
          events.becamePending.add(job.queue);
        } else {
          status = 'scheduled';
          job.status = 'scheduled';
          job.runAt = now + delay;
        }
      }
      const enqueued = this.applyEffects(state, events, now, branch.effects);
      return { branch: stale ? 'stale' : useCancel ? 'cancel' : 'primary', status, enqueued };
    });
  }

  renewLease(now: number, claim: ClaimRef, extendMs: number): RenewResult {
    checkPositiveInt('extendMs', extendMs);
    return this.transaction((state) => {
      const job = this.owned(state, claim);
      job.leaseExpiresAt = now + extendMs;
      return { leaseExpiresAt: job.leaseExpiresAt, cancelRequested: job.cancelRequested };
    });
  }

  cancel(now: number, jobId: string, effects?: Effects): CancelResult {
    checkJobId(jobId);
    checkEffects(effects);
    return this.transaction((state, events): CancelResult => {
      const job = this.find(state, jobId);
      if (!job || job.status === 'done' || job.status === 'dead') return { outcome: 'notFound' };
      if (job.status === 'claimed') {
        const firstRequest = !job.cancelRequested;
        job.cancelRequested = true;
        events.cancelRequested.push({ queue: job.queue, jobId });
        return { outcome: 'requested', job: modelRecord(job), firstRequest };
      }
      this.checkNewIds(state, effects?.enqueue ?? []);
      const removed = modelRecord(job);
      this.remove(state, jobId);
      this.applyEffects(state, events, now, effects);
      events.finished.push({ id: jobId, removed: true });
      return { outcome: 'removed', job: removed };
    });
  }

  reap(now: number): ReapReport {
    return this.transaction((state, events) => {
      const report: ReapReport = { requeued: [], deadLettered: [], effectsApplied: [], doneSwept: 0, deadSwept: 0 };
      for (const [key, entry] of state.kv) if (entry.expiresAt !== undefined && entry.expiresAt <= now) state.kv.delete(key);
      // Id order: the carried effects of several dead-letters commit in that order.
      const expired = state.jobs
        .filter((job) => job.status === 'claimed' && job.leaseExpiresAt !== undefined && job.leaseExpiresAt <= now)
        .sort((a, b) => compareIds(a.id, b.id));
      for (const job of expired) {
        if (job.attempts >= job.maxAttempts) {
          this.makeDead(job, events, now, 'lease expired');
          const record = modelRecord(job);
          report.deadLettered.push(record);
          events.deadLettered.push(record);
          if (this.applyReaperEffects(state, events, now, job)) report.effectsApplied.push(job.id);
        } else {
          job.status = 'pending';
          delete job.leaseExpiresAt;
          delete job.token;
          report.requeued.push(job.id);
          events.becamePending.add(job.queue);
        }
      }
      for (const job of [...state.jobs]) {
        const config = this.configs.get(job.queue);
        if (job.status === 'done' && config.keepDoneJobsMs !== undefined && (job.completedAt ?? 0) + config.keepDoneJobsMs <= now) {
          this.remove(state, job.id);
          report.doneSwept++;
        }
        if (job.status === 'dead' && config.deadRetentionMs !== null && (job.failedAt ?? 0) + config.deadRetentionMs <= now) {
          this.remove(state, job.id);
          report.deadSwept++;
        }
      }
      return report;
    });
  }

  setReaperTemplate(queue: string, template: ReaperTemplate | undefined): void {
    checkQueueName(queue);
    checkReaperTemplate(template);
    this.transaction((state) => {
      if (template === undefined) state.reaperTemplates.delete(queue);
      else state.reaperTemplates.set(queue, copyReaperTemplate(template));
    });
  }

  promote(now: number): number {
    return this.transaction((state, events) => {
      let moved = 0;
      for (const job of state.jobs) {
        if (job.status === 'scheduled' && job.runAt !== undefined && job.runAt <= now) {
          job.status = 'pending';
          delete job.runAt;
          events.becamePending.add(job.queue);
          moved++;
        }
      }
      return moved;
    });
  }

  requeueDead(jobId: string): void {
    checkJobId(jobId);
    this.transaction((state, events) => {
      const job = this.find(state, jobId);
      if (!job) throw new JobNotFoundError(jobId);
      if (job.status !== 'dead') throw new InvalidStateError(jobId, job.status, 'requeue');
      job.status = 'pending';
      job.attempts = 0;
      job.cancelRequested = false;
      delete job.lastError;
      delete job.failedAt;
      events.becamePending.add(job.queue);
    });
  }

  getJob(jobId: string): JobRecord | undefined {
    const job = this.find(this.state, jobId);
    return job ? modelRecord(job) : undefined;
  }

  deadJobs(queue: string, options?: { after?: string; limit?: number }): JobRecord[] {
    checkQueueName(queue);
    const limit = options?.limit ?? 100;
    checkPositiveInt('limit', limit);
    const after = options?.after;
    return this.state.jobs
      .filter((job) => job.queue === queue && job.status === 'dead' && (after === undefined || compareIds(job.id, after) > 0))
      .sort((a, b) => compareIds(a.id, b.id))
      .slice(0, limit)
      .map(modelRecord);
  }

  stats(queue: string): QueueStats {
    checkQueueName(queue);
    const count = (status: JobStatus): number => this.state.jobs.filter((job) => job.queue === queue && job.status === status).length;
    return {
      pending: count('pending'),
      claimed: count('claimed'),
      scheduled: count('scheduled'),
      dead: count('dead'),
      done: this.state.doneCount.get(queue) ?? 0,
    };
  }

  listQueues(): string[] {
    return [...this.state.queues].sort();
  }

  kvGet(now: number, key: string): Uint8Array | undefined {
    checkKvKey(key);
    return liveKv(this.state, key, now)?.slice();
  }

  kvDelete(now: number, key: string, options?: { ifValue?: Uint8Array }): boolean {
    checkKvKey(key);
    if (options?.ifValue !== undefined) checkPayload(options.ifValue, 'ifValue');
    return this.transaction((state) => {
      const current = liveKv(state, key, now);
      if (current === undefined) return false;
      if (options?.ifValue !== undefined && !bytesEqual(current, options.ifValue)) return false;
      state.kv.delete(key);
      return true;
    });
  }
}
