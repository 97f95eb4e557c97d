import { BaseQueueStore } from '../../core/base-store.js';
import { copyBytes } from '../../core/bytes.js';
import type { BatchItem, CompletionState } from '../../core/base-store.js';
import { InvalidStateError, JobNotFoundError, LeaseLostError } from '../../core/errors.js';
import { copyHeaders } from '../../core/headers.js';
import { jobRecord } from '../../core/job-record.js';
import { compareIds, hasNativeIdOrder, newId } from '../../core/ids.js';
import { enqueueDueAt, nackDelayMs } from '../../core/queue-config.js';
import { STALE_BRANCH, copyReaperBranch, reaperEffects } from '../../core/carried-effects.js';
import { copyReaperTemplate, reaperBranchOf } from '../../core/reaper-template.js';
import { MemoryKv } from './memory-kv.js';
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
  KvPrecondition,
  KvWrite,
  QueueStats,
  ReaperDeadLetterBranch,
  ReaperTemplate,
  ReapReport,
  RenewResult,
  SettleResult,
  Settlement,
} from '../../core/queue-store.js';
import { bytesEqual, checkNewJobIds } from '../../core/store-validation.js';
import { BinaryHeap, SortedStringSet } from './binary-heap.js';

/**
 * A job as kept in memory: the record plus the current claim token and a
 * version for lazy heap deletion. A class with every field always present
 * (undefined when unset), so V8 keeps one fast object shape: `delete` would
 * turn each job into a slow dictionary object.
 */
class StoredJob {
  status: JobStatus = 'pending';
  attempts = 0;
  claimedAt: number | undefined = undefined;
  leaseExpiresAt: number | undefined = undefined;
  runAt: number | undefined = undefined;
  lastError: string | undefined = undefined;
  dedupKey: string | undefined = undefined;
  completedAt: number | undefined = undefined;
  failedAt: number | undefined = undefined;
  cancelRequested = false;
  token: string | undefined = undefined;
  /** Bumped whenever the job changes status, invalidating heap entries made before. */
  version = 0;
  /** Set when a cancel deletes the job: it may still sit in the pending heap. */
  removed = false;
  /** What the reaper commits with a dead-letter of this job (a detached copy). */
  reaperDeadLetter: ReaperDeadLetterBranch | undefined = undefined;

  constructor(
    readonly id: string,
    readonly queue: string,
    readonly payload: Uint8Array,
    readonly headers: Record<string, string>,
    readonly maxAttempts: number,
    readonly priority: number,
    readonly enqueuedAt: number,
  ) {
    this.nativeOrder = hasNativeIdOrder(id);
  }

  /** `<` orders this id as `compareIds` does (checked once; the heaps compare ids on every push and pop). */
  readonly nativeOrder: boolean;
}

/** `a` before `b` in id order. */
function idBefore(a: StoredJob, b: StoredJob): boolean {
  return a.nativeOrder && b.nativeOrder ? a.id < b.id : compareIds(a.id, b.id) < 0;
}

interface HeapEntry {
  key: number;
  id: string;
  version: number;
  job: StoredJob;
}

const byKeyThenId = (a: HeapEntry, b: HeapEntry): boolean => a.key < b.key || (a.key === b.key && idBefore(a.job, b.job));
const byPriorityThenId = (a: StoredJob, b: StoredJob): boolean => a.priority < b.priority || (a.priority === b.priority && idBefore(a, b));

class QueueState {
  /**
   * Jobs themselves, no entry objects: a job enters this heap only when it
   * becomes pending and leaves it when claimed, so it is never in it twice;
   * one popped after a cancel removed it is skipped.
   */
  readonly pending = new BinaryHeap<StoredJob>(byPriorityThenId);
  readonly scheduled = new BinaryHeap<HeapEntry>(byKeyThenId);
  readonly leases = new BinaryHeap<HeapEntry>(byKeyThenId);
  readonly done = new BinaryHeap<HeapEntry>(byKeyThenId);
  readonly deadByTime = new BinaryHeap<HeapEntry>(byKeyThenId);
  readonly deadIds = new SortedStringSet();
  readonly dedup = new Map<string, string>();
  readonly counters: QueueStats = { pending: 0, claimed: 0, scheduled: 0, dead: 0, done: 0 };
}

/** Claims answered in microtasks before one waits for a macrotask (setImmediate). */
const CLAIMS_PER_YIELD = 64;

/** Options of `MemoryStore`: the common `StoreOptions`. */
export type MemoryStoreOptions = StoreOptions;

/**
 * The in-memory reference store: the store contract to the letter, fast with
 * large backlogs (ordered heaps with lazy deletion, no scans), and fully
 * deterministic under a `ManualClock`. Nothing survives the process.
 */
export class MemoryStore extends BaseQueueStore {
  private readonly jobs = new Map<string, StoredJob>();
  private readonly queues = new Map<string, QueueState>();
  private readonly kv = new MemoryKv();
  private readonly templates = new Map<string, ReaperTemplate>();
  private tokenSeq = 0;
  /** Claims since the last yield to the event loop (see `claim`). */
  private claimsSinceYield = 0;

  constructor(options: MemoryStoreOptions = {}) {
    super(options);
    this.startMaintenance();
  }

  protected async _enqueue(queue: string, payload: Uint8Array, options: EnqueueOptions | undefined, kvWrites: KvWrite[] | undefined): Promise<EnqueueResult> {
    const existing = options?.dedupKey === undefined ? undefined : this.queues.get(queue)?.dedup.get(options.dedupKey);
    if (existing !== undefined) return { kind: 'alreadyEnqueued', id: existing };
    for (const write of kvWrites ?? []) {
      if (write.ifAbsent && this.kv.get(write.key, this.clock.now()) !== undefined) return { kind: 'kvConflict', key: write.key };
    }
    this.checkNewIds([options === undefined ? { queue, payload } : { queue, payload, options }]);
    const result = this.insertJob(queue, payload, options);
    this.applyKvWrites(kvWrites);
    return result;
  }

  protected async _enqueueBatch(queue: string, items: BatchItem[]): Promise<EnqueueResult[]> {
    this.checkNewIds(items.map((item) => ({ queue, ...item })));
    return items.map((item) => this.insertJob(queue, item.payload, item.options));
  }

  protected async _claim(queue: string, lease: number, limit: number): Promise<Claim[]> {
    // Every call here settles in a microtask, so a worker whose steps keep
    // continuing would never let timers or I/O run. Every so many claims,
    // answer after a macrotask instead, as a durable store's I/O would.
    if (++this.claimsSinceYield >= CLAIMS_PER_YIELD) {
      this.claimsSinceYield = 0;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    this.checkOpen(); // closed while it yielded
    const state = this.queues.get(queue);
    if (!state) return [];
    const now = this.clock.now();
    const claims: Claim[] = [];
    while (claims.length < limit) {
      const job = state.pending.pop();
      if (!job) break;
      if (job.removed || job.status !== 'pending') continue;
      this.releaseDedup(state, job);
      job.status = 'claimed';
      job.attempts += 1;
      job.claimedAt = now;
      job.leaseExpiresAt = now + lease;
      job.token = `c${++this.tokenSeq}`;
      job.version++;
      state.counters.pending--;
      state.counters.claimed++;
      state.leases.push({ key: job.leaseExpiresAt, id: job.id, version: job.version, job });
      claims.push({ jobId: job.id, token: job.token, job: toRecord(job) });
    }
    return claims;
  }

  protected async _settle(claim: ClaimRef, settlement: Settlement): Promise<SettleResult> {
    const job = this.ownedJob(claim);
    const stale = settlement.precondition !== undefined && !this.holds(settlement.precondition);
    const cancelBranch = !stale && job.cancelRequested ? settlement.ifCancelRequested : undefined;
    const useCancel = cancelBranch !== undefined;
    const branch = stale ? STALE_BRANCH : (cancelBranch ?? settlement);
    this.checkNewIds(branch.effects?.enqueue ?? []);
    const state = this.queueState(job.queue);
    const config = this.configs.get(job.queue);
    const now = this.clock.now();
    state.counters.claimed--;
    job.leaseExpiresAt = undefined;
    job.token = undefined;
    job.version++;
    const action = branch.action;
    let status: SettleResult['status'];
    if (action.type === 'ack') {
      status = 'done';
      state.counters.done++;
      if (config.keepDoneJobsMs === undefined) {
        this.jobs.delete(job.id);
        this.completed(job.id, { kind: 'completed' });
      } else {
        job.status = 'done';
        job.completedAt = now;
        state.done.push({ key: now, id: job.id, version: job.version, job });
        this.completed(job.id, { kind: 'completed', job: toRecord(job) });
      }
    } else if (action.type === 'deadLetter' || job.attempts >= job.maxAttempts) {
      status = 'dead';
      job.lastError = action.type === 'deadLetter' ? action.reason : action.error;
      this.makeDead(state, job, now);
    } else {
      job.lastError = action.error;
      const delay = nackDelayMs(action, config, job.attempts);
      status = delay === 0 ? 'pending' : 'scheduled';
      if (delay === 0) this.makePending(state, job);
      else this.makeScheduled(state, job, now + delay);
    }
    const enqueued = this.applyEffects(branch.effects);
    return { branch: stale ? 'stale' : useCancel ? 'cancel' : 'primary', status, enqueued };
  }

  protected async _renewLease(claim: ClaimRef, extendMs: number): Promise<RenewResult> {
    const job = this.ownedJob(claim);
    job.leaseExpiresAt = this.clock.now() + extendMs;
    this.queueState(job.queue).leases.push({ key: job.leaseExpiresAt, id: job.id, version: job.version, job });
    return { leaseExpiresAt: job.leaseExpiresAt, cancelRequested: job.cancelRequested };
  }

  protected async _cancel(jobId: string, effects: Effects | undefined): Promise<CancelResult> {
    const job = this.jobs.get(jobId);
    if (!job || job.status === 'done' || job.status === 'dead') return { outcome: 'notFound' };
    const state = this.queueState(job.queue);
    if (job.status === 'claimed') {
      const firstRequest = !job.cancelRequested;
      job.cancelRequested = true;
      this.notify(job.queue, { type: 'cancelRequested', queue: job.queue, jobId });
      return { outcome: 'requested', job: toRecord(job), firstRequest };
    }
    this.checkNewIds(effects?.enqueue ?? []);
    const removed = toRecord(job);
    this.releaseDedup(state, job);
    state.counters[job.status]--;
    job.version++;
    job.removed = true;
    this.jobs.delete(jobId);
    this.applyEffects(effects);
    this.completed(jobId, { kind: 'notFound' });
    return { outcome: 'removed', job: removed };
  }

  protected async _reap(): Promise<ReapReport> {
    const now = this.clock.now();
    const report: ReapReport = { requeued: [], deadLettered: [], effectsApplied: [], doneSwept: 0, deadSwept: 0 };
    const carrying: StoredJob[] = [];
    this.kv.sweep(now);
    for (const [name, state] of this.queues) {
      const config = this.configs.get(name);
      const deadHere: JobRecord[] = [];
      for (let entry = state.leases.peek(); entry && entry.key <= now; entry = state.leases.peek()) {
        state.leases.pop();
        const job = entry.job;
        if (job.version !== entry.version || job.status !== 'claimed' || job.leaseExpiresAt !== entry.key) continue;
        state.counters.claimed--;
        job.leaseExpiresAt = undefined;
        job.token = undefined;
        job.version++;
        if (job.attempts >= job.maxAttempts) {
          job.lastError = 'lease expired';
          this.makeDead(state, job, now);
          if (job.reaperDeadLetter !== undefined || this.templates.has(name)) carrying.push(job);
          deadHere.push(toRecord(job));
        } else {
          this.makePending(state, job);
          report.requeued.push(job.id);
        }
      }
      if (config.keepDoneJobsMs !== undefined) {
        const keep = config.keepDoneJobsMs;
        for (let entry = state.done.peek(); entry && entry.key + keep <= now; entry = state.done.peek()) {
          state.done.pop();
          if (entry.job.version !== entry.version || this.jobs.get(entry.id) !== entry.job) continue;
          this.jobs.delete(entry.id);
          report.doneSwept++;
        }
      }
      if (config.deadRetentionMs !== null) {
        const keep = config.deadRetentionMs;
        for (let entry = state.deadByTime.peek(); entry && entry.key + keep <= now; entry = state.deadByTime.peek()) {
          state.deadByTime.pop();
          const job = entry.job;
          if (job.version !== entry.version || job.status !== 'dead' || this.jobs.get(entry.id) !== job) continue;
          this.jobs.delete(job.id);
          state.deadIds.delete(job.id);
          state.counters.dead--;
          report.deadSwept++;
        }
      }
      if (deadHere.length > 0) {
        report.deadLettered.push(...deadHere);
        this.notify(name, { type: 'deadLettered', queue: name, jobs: deadHere });
      }
    }
    // Carried effects commit in job-id order, the same order on every store.
    carrying.sort((a, b) => compareIds(a.id, b.id));
    for (const job of carrying) if (this.applyReaperEffects(job)) report.effectsApplied.push(job.id);
    return report;
  }

  protected async _promote(): Promise<number> {
    return this.promoteDue();
  }

  protected async _setReaperTemplate(queue: string, template: ReaperTemplate | undefined): Promise<void> {
    if (template === undefined) this.templates.delete(queue);
    else this.templates.set(queue, copyReaperTemplate(template));
  }

  protected async _requeueDead(jobId: string): Promise<void> {
    const job = this.jobs.get(jobId);
    if (!job) throw new JobNotFoundError(jobId);
    if (job.status !== 'dead') throw new InvalidStateError(jobId, job.status, 'requeue');
    const state = this.queueState(job.queue);
    state.counters.dead--;
    state.deadIds.delete(job.id);
    job.attempts = 0;
    job.cancelRequested = false;
    job.lastError = undefined;
    job.failedAt = undefined;
    job.version++;
    this.makePending(state, job);
  }

  protected async _getJob(jobId: string): Promise<JobRecord | undefined> {
    const job = this.jobs.get(jobId);
    return job ? toRecord(job) : undefined;
  }

  protected async _deadJobs(queue: string, after: string | undefined, limit: number): Promise<JobRecord[]> {
    const state = this.queues.get(queue);
    if (!state) return [];
    return state.deadIds.page(after, limit).map((id) => toRecord(this.jobs.get(id) as StoredJob));
  }

  protected async _stats(queue: string): Promise<QueueStats> {
    const counters = this.queues.get(queue)?.counters;
    return counters ? { ...counters } : { pending: 0, claimed: 0, scheduled: 0, dead: 0, done: 0 };
  }

  protected async _listQueues(): Promise<string[]> {
    return [...this.queues.keys()].sort();
  }

  protected async _completionState(jobId: string): Promise<CompletionState> {
    const job = this.jobs.get(jobId);
    if (!job) return { done: { kind: 'notFound' } };
    const record = toRecord(job);
    return job.status === 'done' || job.status === 'dead' ? { done: { kind: 'completed', job: record } } : { live: record };
  }

  protected async _kvGet(key: string): Promise<Uint8Array | undefined> {
    return this.kv.get(key, this.clock.now())?.slice();
  }

  protected async _kvDelete(key: string, ifValue: Uint8Array | undefined): Promise<boolean> {
    const current = this.kv.get(key, this.clock.now());
    if (current === undefined) return false;
    if (ifValue !== undefined && !bytesEqual(current, ifValue)) return false;
    this.kv.delete(key);
    return true;
  }

  protected async _close(): Promise<void> {}

  // ---- internals -------------------------------------------------------

  private queueState(queue: string): QueueState {
    let state = this.queues.get(queue);
    if (!state) this.queues.set(queue, (state = new QueueState()));
    return state;
  }

  private ownedJob(claim: ClaimRef): StoredJob {
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- untyped callers reach this through the public API
    const job = typeof claim?.jobId === 'string' ? this.jobs.get(claim.jobId) : undefined;
    if (!job || job.status !== 'claimed' || job.token === undefined || job.token !== claim.token) {
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- untyped callers reach this through the public API
      throw new LeaseLostError(String(claim?.jobId));
    }
    return job;
  }

  /** Rejects ids already in the store or repeated in one request, before anything is written. */
  private checkNewIds(requests: EnqueueRequest[]): void {
    checkNewJobIds(requests, (id) => this.jobs.has(id));
  }

  private insertJob(queue: string, payload: Uint8Array, options: EnqueueOptions | undefined): EnqueueResult {
    const state = this.queueState(queue);
    const dedupKey = options?.dedupKey;
    if (dedupKey !== undefined) {
      const existing = state.dedup.get(dedupKey);
      if (existing !== undefined) return { kind: 'alreadyEnqueued', id: existing };
    }
    const config = this.configs.get(queue);
    const now = this.clock.now();
    const id = options?.id ?? newId(now);
    const job = new StoredJob(
      id,
      queue,
      copyBytes(payload),
      copyHeaders(options?.headers),
      options?.maxAttempts ?? config.maxAttempts,
      options?.priority ?? config.defaultPriority,
      now,
    );
    if (dedupKey !== undefined) {
      job.dedupKey = dedupKey;
      state.dedup.set(dedupKey, id);
    }
    if (options?.reaperDeadLetter !== undefined) job.reaperDeadLetter = copyReaperBranch(options.reaperDeadLetter);
    this.jobs.set(id, job);
    const runAt = enqueueDueAt(options, now);
    if (runAt !== undefined && runAt > now) this.makeScheduled(state, job, runAt);
    else this.makePending(state, job);
    return { kind: 'new', id };
  }

  private holds(precondition: KvPrecondition): boolean {
    const current = this.kv.get(precondition.key, this.clock.now());
    return current !== undefined && bytesEqual(current, precondition.equals);
  }

  /** The effects a reaper-dead job carries; none when one of their ids is taken (see the contract). */
  private applyReaperEffects(job: StoredJob): boolean {
    const branch = reaperBranchOf(job.reaperDeadLetter, this.templates.get(job.queue), job);
    const effects = reaperEffects(branch, job.cancelRequested, (p) => this.holds(p));
    if (effects === undefined) return false;
    try {
      this.checkNewIds(effects.enqueue ?? []);
    } catch {
      return false;
    }
    this.applyEffects(effects);
    return true;
  }

  private applyEffects(effects: Effects | undefined): EnqueueResult[] {
    const enqueued = (effects?.enqueue ?? []).map((request) => this.insertJob(request.queue, request.payload, request.options));
    this.applyKvWrites(effects?.kvWrites);
    for (const key of effects?.kvDeletes ?? []) this.kv.delete(key);
    return enqueued;
  }

  private applyKvWrites(writes: KvWrite[] | undefined): void {
    for (const write of writes ?? []) this.kv.set(write.key, copyBytes(write.value), write.ttlMs === undefined ? undefined : this.clock.now() + write.ttlMs);
  }

  private releaseDedup(state: QueueState, job: StoredJob): void {
    if (job.dedupKey === undefined) return;
    if (state.dedup.get(job.dedupKey) === job.id) state.dedup.delete(job.dedupKey);
    job.dedupKey = undefined;
  }

  private makePending(state: QueueState, job: StoredJob): void {
    job.status = 'pending';
    job.runAt = undefined;
    state.counters.pending++;
    state.pending.push(job);
    this.notify(job.queue, { type: 'jobsAvailable', queue: job.queue });
  }

  private makeScheduled(state: QueueState, job: StoredJob, runAt: number): void {
    job.status = 'scheduled';
    job.runAt = runAt;
    state.counters.scheduled++;
    state.scheduled.push({ key: runAt, id: job.id, version: job.version, job });
    this.armWakeAt(runAt);
  }

  private makeDead(state: QueueState, job: StoredJob, now: number): void {
    job.status = 'dead';
    job.failedAt = now;
    state.counters.dead++;
    state.deadIds.add(job.id);
    state.deadByTime.push({ key: now, id: job.id, version: job.version, job });
    this.completed(job.id, { kind: 'completed', job: toRecord(job) });
  }

  private promoteDue(): number {
    const now = this.clock.now();
    let moved = 0;
    for (const state of this.queues.values()) {
      for (let entry = state.scheduled.peek(); entry && entry.key <= now; entry = state.scheduled.peek()) {
        state.scheduled.pop();
        const job = entry.job;
        if (job.version !== entry.version || job.status !== 'scheduled') continue;
        state.counters.scheduled--;
        job.version++;
        this.makePending(state, job);
        moved++;
      }
    }
    return moved;
  }

  /** Wakes exactly when the earliest scheduled job falls due, so delays are not rounded up to the promote interval. */
  private armWakeAt(runAt: number): void {
    this.armWake(runAt, () => {
      this.promoteDue();
      const next = this.nextScheduledAt();
      if (next !== undefined) this.armWakeAt(next);
    });
  }

  private nextScheduledAt(): number | undefined {
    let best: number | undefined;
    for (const state of this.queues.values()) {
      for (let entry = state.scheduled.peek(); entry; entry = state.scheduled.peek()) {
        if (entry.job.version === entry.version && entry.job.status === 'scheduled') {
          if (best === undefined || entry.key < best) best = entry.key;
          break;
        }
        state.scheduled.pop();
      }
    }
    return best;
  }
}

/** A detached copy of the public fields. */
function toRecord(job: StoredJob): JobRecord {
  return jobRecord(job, job.payload.slice(), copyHeaders(job.headers));
}
