/**
 * A third-party store as an adapter author would write one: plain `Map`s and
 * full scans for the storage, `BaseQueueStore` for everything else (checks,
 * the closed state, housekeeping timers, the wakeup at the next due job,
 * notifications, completion waiters), public entry points only. No method
 * awaits, so each call is atomic: checks first, then the writes.
 */
import { InvalidStateError, JobNotFoundError, LeaseLostError } from '../../core/index.js';
import type { CancelResult, Claim, ClaimRef, Effects, EnqueueOptions, EnqueueRequest, EnqueueResult, JobRecord, JobStatus } from '../../core/index.js';
import type {
  KvPrecondition,
  KvWrite,
  QueueStats,
  ReaperDeadLetterBranch,
  ReaperTemplate,
  ReapReport,
  RenewResult,
  SettleResult,
  Settlement,
  StoreOptions,
} from '../../core/index.js';
import { BaseQueueStore, STALE_BRANCH, bytesEqual, checkNewJobIds, compareIds, copyHeaders, copyReaperBranch, enqueueDueAt } from '../../core/store-kit.js';
import { copyBytes, copyReaperTemplate, jobRecord, newId, reaperBranchOf, reaperEffects, nackDelayMs } from '../../core/store-kit.js';
import type { BatchItem, CompletionState, JobFields } from '../../core/store-kit.js';

/** A job as kept: the public fields (unset ones `undefined`), the current claim token, the effects it carries for the reaper. */
interface Job extends JobFields {
  token?: string | undefined;
  reaperDeadLetter?: ReaperDeadLetterBranch | undefined;
}

const toRecord = (job: Job): JobRecord => jobRecord(job, job.payload.slice(), copyHeaders(job.headers)); // detached; unset fields dropped
const byId = (a: Job, b: Job): number => compareIds(a.id, b.id);
const claimOrder = (a: Job, b: Job): number => a.priority - b.priority || byId(a, b);
/** Several fields at once, type-checked (unset ones become `undefined`). */
const update = (job: Job, changes: Partial<Job>): void => void Object.assign(job, changes);

export class MapStore extends BaseQueueStore {
  private readonly jobs = new Map<string, Job>();
  /** Kv records, each with the time it expires at (`ttlMs`), if any. */
  private readonly kv = new Map<string, { value: Uint8Array; expiresAt: number | undefined }>();
  private readonly templates = new Map<string, ReaperTemplate>();
  private readonly doneCounts = new Map<string, number>();
  private readonly queues = new Set<string>();
  private tokens = 0;

  constructor(options: StoreOptions = {}) {
    super(options);
    this.startMaintenance();
  }

  protected async _enqueue(queue: string, payload: Uint8Array, options: EnqueueOptions | undefined, kvWrites: KvWrite[] | undefined): Promise<EnqueueResult> {
    const holder = this.dedupHolder(queue, options?.dedupKey);
    if (holder) return { kind: 'alreadyEnqueued', id: holder.id };
    const conflict = kvWrites?.find((write) => write.ifAbsent && this.live(write.key) !== undefined);
    if (conflict) return { kind: 'kvConflict', key: conflict.key };
    this.checkNewIds([options === undefined ? { queue, payload } : { queue, payload, options }]);
    const result = this.insert(queue, payload, options);
    this.writeKv(kvWrites);
    return result;
  }

  protected async _enqueueBatch(queue: string, items: BatchItem[]): Promise<EnqueueResult[]> {
    this.checkNewIds(items.map((item) => ({ queue, ...item })));
    return items.map((item) => this.insert(queue, item.payload, item.options));
  }

  protected async _claim(queue: string, leaseMs: number, limit: number): Promise<Claim[]> {
    const now = this.clock.now();
    const claims: Claim[] = [];
    for (const job of this.inStatus(queue, 'pending').sort(claimOrder).slice(0, limit)) {
      const token = `m${++this.tokens}`;
      update(job, { status: 'claimed', attempts: job.attempts + 1, claimedAt: now, leaseExpiresAt: now + leaseMs, dedupKey: undefined, token });
      claims.push({ jobId: job.id, token, job: toRecord(job) });
    }
    return claims;
  }

  protected async _settle(claim: ClaimRef, settlement: Settlement): Promise<SettleResult> {
    const job = this.owned(claim);
    const stale = settlement.precondition !== undefined && !this.holds(settlement.precondition);
    const cancelBranch = stale || !job.cancelRequested ? undefined : settlement.ifCancelRequested;
    const branch = stale ? STALE_BRANCH : (cancelBranch ?? settlement);
    this.checkNewIds(branch.effects?.enqueue ?? []);
    const now = this.clock.now();
    const config = this.configs.get(job.queue);
    update(job, { leaseExpiresAt: undefined, token: undefined });
    const action = branch.action;
    let status: SettleResult['status'];
    if (action.type === 'ack') {
      status = 'done';
      this.doneCounts.set(job.queue, (this.doneCounts.get(job.queue) ?? 0) + 1);
      const kept = config.keepDoneJobsMs !== undefined;
      if (kept) update(job, { status: 'done', completedAt: now });
      else this.jobs.delete(job.id);
      this.completed(job.id, kept ? { kind: 'completed', job: toRecord(job) } : { kind: 'completed' });
    } else if (action.type === 'deadLetter' || job.attempts >= job.maxAttempts) {
      status = 'dead';
      this.kill(job, action.type === 'deadLetter' ? action.reason : action.error, now);
    } else {
      job.lastError = action.error;
      const delay = nackDelayMs(action, config, job.attempts);
      status = delay === 0 ? 'pending' : 'scheduled';
      this.makeDue(job, now + delay);
    }
    const enqueued = this.applyEffects(branch.effects);
    return { branch: stale ? 'stale' : cancelBranch ? 'cancel' : 'primary', status, enqueued };
  }

  protected async _renewLease(claim: ClaimRef, extendMs: number): Promise<RenewResult> {
    const job = this.owned(claim);
    job.leaseExpiresAt = this.clock.now() + extendMs;
    return { leaseExpiresAt: job.leaseExpiresAt, cancelRequested: job.cancelRequested };
  }

  protected async _cancel(jobId: string, effects: Effects | undefined): Promise<CancelResult> {
    const job = this.jobs.get(jobId);
    if (!job || job.status === 'done' || job.status === 'dead') return { outcome: 'notFound' };
    if (job.status === 'claimed') {
      const firstRequest = !job.cancelRequested;
      job.cancelRequested = true;
      this.notify(job.queue, { type: 'cancelRequested', queue: job.queue, jobId });
      return { outcome: 'requested', job: toRecord(job), firstRequest };
    }
    this.checkNewIds(effects?.enqueue ?? []);
    const removed = toRecord(job);
    this.jobs.delete(jobId);
    this.applyEffects(effects);
    this.completed(jobId, { kind: 'notFound' });
    return { outcome: 'removed', job: removed };
  }

  protected async _reap(): Promise<ReapReport> {
    const now = this.clock.now();
    const report: ReapReport = { requeued: [], deadLettered: [], effectsApplied: [], doneSwept: 0, deadSwept: 0 };
    const deadByQueue = new Map<string, JobRecord[]>();
    // Id order: the effects carried by several dead-letters commit in that order, each seeing the ones before.
    const expired = [...this.jobs.values()].filter((job) => job.status === 'claimed' && (job.leaseExpiresAt as number) <= now).sort(byId);
    for (const job of expired) {
      update(job, { leaseExpiresAt: undefined, token: undefined });
      if (job.attempts < job.maxAttempts) {
        this.makeDue(job, undefined);
        report.requeued.push(job.id);
        continue;
      }
      this.kill(job, 'lease expired', now);
      const record = toRecord(job);
      report.deadLettered.push(record);
      deadByQueue.set(job.queue, [...(deadByQueue.get(job.queue) ?? []), record]);
      if (this.applyCarriedEffects(job)) report.effectsApplied.push(job.id);
    }
    for (const job of [...this.jobs.values()]) {
      const { keepDoneJobsMs: keepDone, deadRetentionMs: keepDead } = this.configs.get(job.queue);
      const doneExpired = job.status === 'done' && keepDone !== undefined && (job.completedAt as number) + keepDone <= now;
      const deadExpired = job.status === 'dead' && keepDead !== null && (job.failedAt as number) + keepDead <= now;
      if (doneExpired || deadExpired) this.jobs.delete(job.id);
      if (doneExpired) report.doneSwept++;
      if (deadExpired) report.deadSwept++;
    }
    for (const [key, entry] of this.kv) if (entry.expiresAt !== undefined && entry.expiresAt <= now) this.kv.delete(key);
    for (const [queue, jobs] of deadByQueue) this.notify(queue, { type: 'deadLettered', queue, jobs });
    return report;
  }

  protected async _promote(): Promise<number> {
    const due = [...this.jobs.values()].filter((job) => job.status === 'scheduled' && (job.runAt as number) <= this.clock.now());
    for (const job of due) this.makeDue(job, undefined);
    return due.length;
  }

  protected async _setReaperTemplate(queue: string, template: ReaperTemplate | undefined): Promise<void> {
    if (template === undefined) this.templates.delete(queue);
    else this.templates.set(queue, copyReaperTemplate(template));
  }

  protected async _requeueDead(jobId: string): Promise<void> {
    const job = this.jobs.get(jobId);
    if (!job) throw new JobNotFoundError(jobId);
    if (job.status !== 'dead') throw new InvalidStateError(jobId, job.status, 'requeue');
    update(job, { attempts: 0, cancelRequested: false, lastError: undefined, failedAt: undefined });
    this.makeDue(job, undefined);
  }

  protected async _getJob(jobId: string): Promise<JobRecord | undefined> {
    const job = this.jobs.get(jobId);
    return job && toRecord(job);
  }

  protected async _deadJobs(queue: string, after: string | undefined, limit: number): Promise<JobRecord[]> {
    const dead = this.inStatus(queue, 'dead').filter((job) => after === undefined || compareIds(job.id, after) > 0);
    return dead.sort(byId).slice(0, limit).map(toRecord);
  }

  protected async _stats(queue: string): Promise<QueueStats> {
    const count = (status: JobStatus): number => this.inStatus(queue, status).length;
    return { pending: count('pending'), claimed: count('claimed'), scheduled: count('scheduled'), dead: count('dead'), done: this.doneCounts.get(queue) ?? 0 };
  }

  protected async _listQueues(): Promise<string[]> {
    return [...this.queues].sort();
  }

  protected async _completionState(jobId: string): Promise<CompletionState> {
    const job = this.jobs.get(jobId);
    if (!job) return { done: { kind: 'notFound' } };
    return job.status === 'done' || job.status === 'dead' ? { done: { kind: 'completed', job: toRecord(job) } } : { live: toRecord(job) };
  }

  protected async _kvGet(key: string): Promise<Uint8Array | undefined> {
    return this.live(key)?.slice();
  }

  protected async _kvDelete(key: string, ifValue: Uint8Array | undefined): Promise<boolean> {
    const current = this.live(key);
    if (current === undefined || (ifValue !== undefined && !bytesEqual(current, ifValue))) return false;
    return this.kv.delete(key);
  }

  protected async _close(): Promise<void> {}

  private inStatus(queue: string, status: JobStatus): Job[] {
    return [...this.jobs.values()].filter((job) => job.queue === queue && job.status === status);
  }

  private dedupHolder(queue: string, dedupKey: string | undefined): Job | undefined {
    if (dedupKey === undefined) return undefined;
    return [...this.jobs.values()].find((job) => job.queue === queue && job.dedupKey === dedupKey && (job.status === 'pending' || job.status === 'scheduled'));
  }

  private owned(claim: ClaimRef): Job {
    const ref = claim as Partial<ClaimRef> | undefined; // untyped callers reach this through the public API
    const job = typeof ref?.jobId === 'string' ? this.jobs.get(ref.jobId) : undefined;
    if (!job || job.status !== 'claimed' || job.token === undefined || job.token !== ref?.token) throw new LeaseLostError(String(ref?.jobId));
    return job;
  }

  private checkNewIds(requests: EnqueueRequest[]): void {
    checkNewJobIds(requests, (id) => this.jobs.has(id));
  }

  private insert(queue: string, payload: Uint8Array, options: EnqueueOptions | undefined): EnqueueResult {
    const holder = this.dedupHolder(queue, options?.dedupKey);
    if (holder) return { kind: 'alreadyEnqueued', id: holder.id };
    const config = this.configs.get(queue);
    const now = this.clock.now();
    const id = options?.id ?? newId(now);
    const [maxAttempts, priority] = [options?.maxAttempts ?? config.maxAttempts, options?.priority ?? config.defaultPriority];
    const fresh = { id, queue, status: 'pending', attempts: 0, enqueuedAt: now, cancelRequested: false, maxAttempts, priority } as const;
    const reaperDeadLetter = options?.reaperDeadLetter && copyReaperBranch(options.reaperDeadLetter);
    const job: Job = { ...fresh, payload: copyBytes(payload), headers: copyHeaders(options?.headers), dedupKey: options?.dedupKey, reaperDeadLetter };
    this.jobs.set(id, job);
    this.queues.add(queue);
    this.makeDue(job, enqueueDueAt(options, now));
    return { kind: 'new', id };
  }

  /** A kv value that has not expired. */
  private live(key: string): Uint8Array | undefined {
    const entry = this.kv.get(key);
    return entry === undefined || (entry.expiresAt !== undefined && entry.expiresAt <= this.clock.now()) ? undefined : entry.value;
  }

  private holds(precondition: KvPrecondition): boolean {
    const current = this.live(precondition.key);
    return current !== undefined && bytesEqual(current, precondition.equals);
  }

  private writeKv(writes: KvWrite[] | undefined): void {
    const now = this.clock.now();
    for (const write of writes ?? [])
      this.kv.set(write.key, { value: copyBytes(write.value), expiresAt: write.ttlMs === undefined ? undefined : now + write.ttlMs });
  }

  private applyEffects(effects: Effects | undefined): EnqueueResult[] {
    const enqueued = (effects?.enqueue ?? []).map((request) => this.insert(request.queue, request.payload, request.options));
    this.writeKv(effects?.kvWrites);
    for (const key of effects?.kvDeletes ?? []) this.kv.delete(key);
    return enqueued;
  }

  /** What a reaper dead-letter commits: none when the precondition fails or an enqueue names an id in use. */
  private applyCarriedEffects(job: Job): boolean {
    const branch = reaperBranchOf(job.reaperDeadLetter, this.templates.get(job.queue), job);
    const effects = reaperEffects(branch, job.cancelRequested, (precondition) => this.holds(precondition));
    if (effects === undefined) return false;
    try {
      this.checkNewIds(effects.enqueue ?? []);
    } catch {
      return false;
    }
    this.applyEffects(effects);
    return true;
  }

  private kill(job: Job, error: string, now: number): void {
    update(job, { status: 'dead', lastError: error, failedAt: now });
    this.completed(job.id, { kind: 'completed', job: toRecord(job) });
  }

  /** Pending at once (`runAt` unset or due), else scheduled with a wakeup at `runAt`. */
  private makeDue(job: Job, runAt: number | undefined): void {
    if (runAt !== undefined && runAt > this.clock.now()) {
      update(job, { status: 'scheduled', runAt });
      this.armWake(runAt, () => this.onWake());
    } else {
      update(job, { status: 'pending', runAt: undefined });
      this.notify(job.queue, { type: 'jobsAvailable', queue: job.queue });
    }
  }

  /** The wakeup fired: promote what is due and wake again at the next scheduled job. */
  private onWake(): void {
    void this._promote(); // no await inside: the due jobs are pending once this returns
    const next = Math.min(...[...this.jobs.values()].filter((job) => job.status === 'scheduled').map((job) => job.runAt as number));
    if (Number.isFinite(next)) this.armWake(next, () => this.onWake());
  }
}
