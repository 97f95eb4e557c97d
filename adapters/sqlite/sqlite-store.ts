import type BetterSqlite3 from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { BaseQueueStore } from '../../core/base-store.js';
import type { BatchItem, CompletionState } from '../../core/base-store.js';
import { STALE_BRANCH, decodeReaperBranch, encodeReaperBranch, reaperEffects } from '../../core/carried-effects.js';
import { InvalidArgumentError, InvalidStateError, JobNotFoundError, LeaseLostError, StoreCorruptedError } from '../../core/errors.js';
import type { WorkflowError } from '../../core/errors.js';
import { compareIds, newId } from '../../core/ids.js';
import { copyReaperTemplate, decodeReaperTemplate, encodeReaperTemplate, reaperBranchOf } from '../../core/reaper-template.js';
import { enqueueDueAt, nackDelayMs } from '../../core/queue-config.js';
import type {
  CancelResult,
  Claim,
  ClaimRef,
  CompletionResult,
  Effects,
  EnqueueOptions,
  EnqueueResult,
  JobRecord,
  KvPrecondition,
  KvWrite,
  QueueStats,
  ReaperDeadLetterBranch,
  ReaperTemplate,
} from '../../core/queue-store.js';
import type { ReapReport, RenewResult, SettleResult, Settlement, SettlementBranch } from '../../core/queue-store.js';
import { bytesEqual, checkNewJobIds, describe, jobIdInUse } from '../../core/store-validation.js';
import { ChangePoll, OpenedFiles } from './sqlite-changes.js';
import type { ChangeHost } from './sqlite-changes.js';
import { checkOptionsObject, openDatabase, sqliteSettings } from './sqlite-open.js';
import type { SqliteStoreOptions } from './sqlite-open.js';
import { mapOperationError } from './sqlite-errors.js';
import { claimedRecord, rowToRecord } from './sqlite-rows.js';
import type { ClaimRow, DeletedRow, JobRow, OwnerRow, ReapedRow, RequeuedRow } from './sqlite-rows.js';
import type { Statements } from './sqlite-statements.js';
import { WritePipeline } from './sqlite-writes.js';
import type { WriteHost } from './sqlite-writes.js';

/**
 * How long the record of a job `cancel` removed is kept: a waiter in another
 * connection must look for it after the removal and before this runs out.
 */
const REMOVED_RETENTION_MS = 24 * 60 * 60 * 1000;

/**
 * The durable embedded store, on a WAL-journaled SQLite file that several
 * processes on one machine may share. Every operation is atomic: writes run
 * in `BEGIN IMMEDIATE` transactions (so processes sharing the file never
 * deadlock or lose an update), and concurrent writes of one event-loop turn
 * share a commit, each in its own savepoint (`groupCommit`, see
 * sqlite-writes.ts). Reads are single statements. Commits of other
 * connections are seen by the change poll (sqlite-changes.ts). See
 * docs/sqlite.md.
 */
export class SqliteStore extends BaseQueueStore {
  /** The file this store opened (as given). */
  readonly path: string;
  private readonly db: BetterSqlite3.Database;
  private readonly sql: Statements;
  private readonly writes: WritePipeline;
  private readonly changes: ChangePoll;
  /** The database file and its `-wal` as opened; none for `':memory:'`. */
  private readonly files: OpenedFiles | undefined;
  private readonly tokenPrefix = randomBytes(9).toString('base64url');
  private tokenSeq = 0;
  /** Set once the file turned out damaged or replaced: every later operation throws it. */
  private failure: WorkflowError | undefined;

  constructor(options: SqliteStoreOptions) {
    super(checkOptionsObject(options));
    const settings = sqliteSettings(options);
    this.path = settings.path;
    const { db, sql } = openDatabase(settings, this.clock.now());
    this.db = db;
    this.sql = sql;
    const host: WriteHost & ChangeHost = {
      isClosed: () => this.isClosed,
      wanted: () => !this.housekeepingStopped() && (this.notifications.size > 0 || this.completionWaiters.size > 0),
      verifyFiles: () => this.verifyFiles(),
      mapError: (error, operation) => this.mapError(error, operation),
      subscribedQueues: () => this.notifications.queues(),
      waitedJobIds: () => this.completionWaiters.jobIds(),
      notify: (queue, notification) => this.notify(queue, notification),
      completed: (jobId, result) => this.completed(jobId, result),
      scheduled: (runAt) => this.armWakeAt(runAt),
      rearmWake: () => this.rearmWake(),
    };
    this.writes = new WritePipeline(db, sql, settings.groupCommit, host);
    this.changes = new ChangePoll(sql, this.clock, settings.changePollIntervalMs, host);
    this.files = OpenedFiles.of(options.path, this.clock.now());
    this.startMaintenance();
    this.rearmWake();
  }

  // ---- enqueue -------------------------------------------------------------

  protected _enqueue(queue: string, payload: Uint8Array, options: EnqueueOptions | undefined, kvWrites: KvWrite[] | undefined): Promise<EnqueueResult> {
    return this.writes.write('enqueue', () => {
      const now = this.clock.now();
      if (options?.dedupKey !== undefined) {
        const existing = this.sql.findDedup.get(queue, options.dedupKey) as string | undefined;
        if (existing !== undefined) return { kind: 'alreadyEnqueued', id: existing };
      }
      for (const write of kvWrites ?? []) {
        if (write.ifAbsent && this.sql.kvExists.get(write.key, now) !== undefined) return { kind: 'kvConflict', key: write.key };
      }
      const result = this.insertJob(queue, payload, options, now);
      this.applyKvWrites(kvWrites, now);
      return result;
    });
  }

  protected _enqueueBatch(queue: string, items: BatchItem[]): Promise<EnqueueResult[]> {
    return this.writes.write('enqueueBatch', () => {
      this.checkNewIds(items); // ids are checked before any dedup lookup, as for settlement effects
      const now = this.clock.now();
      return items.map((item) => this.insertJob(queue, item.payload, item.options, now));
    });
  }

  // ---- claim / settle / renew ------------------------------------------------

  protected _claim(queue: string, lease: number, limit: number): Promise<Claim[]> {
    // An empty queue is answered by a read, without taking the write lock, so idle
    // workers polling a shared file do not queue up behind each other's writes.
    if (this.writes.idle && this.read('claim', () => this.sql.hasPending.get(queue)) === undefined) return Promise.resolve([]);
    return this.writes.write('claim', () => {
      const now = this.clock.now();
      // A per-call prefix that never repeats, plus the row: each delivery gets its own token.
      const token = `${this.tokenPrefix}.${(this.tokenSeq++).toString(36)}`;
      const leaseExpiresAt = now + lease;
      const rows = this.sql.claim.all({ queue, now, leaseExpiresAt, token, limit }) as ClaimRow[];
      if (rows.length > 0) {
        this.writes.count(queue, 'pending', -rows.length);
        this.writes.count(queue, 'claimed', rows.length);
      }
      // RETURNING has no order: claims are handed out in claim order.
      const claims = rows.map((row): Claim => ({ jobId: row.id, token: row.claim_token, job: claimedRecord(row, queue, now, leaseExpiresAt) }));
      return claims.sort((a, b) => a.job.priority - b.job.priority || compareIds(a.jobId, b.jobId));
    });
  }

  protected _settle(claim: ClaimRef, settlement: Settlement): Promise<SettleResult> {
    // Both branches ack and no queue keeps done jobs: one DELETE checks ownership and settles.
    if (settlement.action.type === 'ack' && (settlement.ifCancelRequested?.action.type ?? 'ack') === 'ack' && !this.configs.anyKeepsDoneJobs) {
      return this.writes.write('settle', () => this.settleByDelete(claim, settlement));
    }
    return this.writes.write('settle', () => {
      const owner = this.owned(claim);
      const now = this.clock.now();
      const { taken, branch } = this.branchOf(settlement, owner.cancel_requested !== 0, now);
      this.checkNewIds(branch.effects?.enqueue, claim.jobId);
      const jobId = claim.jobId;
      const queue = owner.queue;
      const config = this.configs.get(queue);
      const action = branch.action;
      let status: SettleResult['status'];
      this.writes.count(queue, 'claimed', -1);
      if (action.type === 'ack') {
        status = 'done';
        this.writes.count(queue, 'done', 1);
        if (config.keepDoneJobsMs === undefined) {
          this.sql.deleteJob.run(jobId);
          this.writes.completedAfterCommit(jobId, { kind: 'completed' });
        } else {
          const row = this.sql.ackKeep.get(now, jobId) as JobRow;
          this.writes.completedAfterCommit(jobId, { kind: 'completed', job: rowToRecord(row) });
        }
      } else if (action.type === 'deadLetter' || owner.attempts >= owner.max_attempts) {
        status = 'dead';
        this.writes.count(queue, 'dead', 1);
        const row = this.sql.toDead.get(action.type === 'deadLetter' ? action.reason : action.error, now, jobId) as JobRow;
        this.writes.completedAfterCommit(jobId, { kind: 'completed', job: rowToRecord(row) });
      } else {
        const delay = nackDelayMs(action, config, owner.attempts);
        status = delay === 0 ? 'pending' : 'scheduled';
        this.writes.count(queue, status, 1);
        this.sql.toRetry.run(status, delay === 0 ? null : now + delay, action.error, jobId);
        if (delay === 0) this.writes.jobsAvailable(queue);
        else this.writes.scheduledAt(now + delay);
      }
      const enqueued = this.applyEffects(branch.effects, now);
      return { branch: taken, status, enqueued };
    });
  }

  /** `settle` when whichever branch applies acks and done jobs are not kept: the owned row goes either way. */
  private settleByDelete(claim: ClaimRef, settlement: Settlement): SettleResult {
    const deleted =
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- untyped callers reach this through the public API
      typeof claim?.jobId === 'string' && typeof claim.token === 'string'
        ? (this.sql.deleteOwned.get(claim.jobId, claim.token) as DeletedRow | undefined)
        : undefined;
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- untyped callers reach this through the public API
    if (!deleted) throw new LeaseLostError(String(claim?.jobId));
    const queue = deleted.queue;
    const now = this.clock.now();
    const { taken, branch } = this.branchOf(settlement, deleted.cancel_requested !== 0, now);
    // Checked after the delete here: a throw still rolls the whole operation back.
    this.checkNewIds(branch.effects?.enqueue, claim.jobId);
    this.writes.count(queue, 'claimed', -1);
    this.writes.count(queue, 'done', 1);
    this.writes.completedAfterCommit(claim.jobId, { kind: 'completed' });
    const enqueued = this.applyEffects(branch.effects, now);
    return { branch: taken, status: 'done', enqueued };
  }

  /** The branch of a settlement that applies at `now`: a precondition that fails makes it stale, else a requested cancel picks its branch. */
  private branchOf(settlement: Settlement, cancelRequested: boolean, now: number): { taken: SettleResult['branch']; branch: SettlementBranch } {
    if (settlement.precondition !== undefined && !this.holds(settlement.precondition, now)) return { taken: 'stale', branch: STALE_BRANCH };
    if (cancelRequested && settlement.ifCancelRequested !== undefined) return { taken: 'cancel', branch: settlement.ifCancelRequested };
    return { taken: 'primary', branch: settlement };
  }

  protected _renewLease(claim: ClaimRef, extendMs: number): Promise<RenewResult> {
    return this.writes.write('renewLease', () => {
      const owner = this.owned(claim);
      const leaseExpiresAt = this.clock.now() + extendMs;
      this.sql.renew.run(leaseExpiresAt, claim.jobId);
      return { leaseExpiresAt, cancelRequested: owner.cancel_requested !== 0 };
    });
  }

  // ---- cancel / maintenance ----------------------------------------------------

  protected _cancel(jobId: string, effects: Effects | undefined): Promise<CancelResult> {
    return this.writes.write('cancel', (): CancelResult => {
      const row = this.sql.getJob.get(jobId) as JobRow | undefined;
      if (!row || row.status === 'done' || row.status === 'dead') return { outcome: 'notFound' };
      if (row.status === 'claimed') {
        const firstRequest = row.cancel_requested === 0;
        const updated = firstRequest ? (this.sql.flagCancel.get(jobId) as JobRow) : row;
        this.writes.notifyAfterCommit(row.queue, { type: 'cancelRequested', queue: row.queue, jobId });
        this.changes.cancelReported(jobId, row.claim_token);
        return { outcome: 'requested', job: rowToRecord(updated), firstRequest };
      }
      this.checkNewIds(effects?.enqueue, jobId);
      const now = this.clock.now();
      this.sql.deleteJob.run(jobId);
      this.sql.recordRemoved.run(jobId, row.enqueued_at, now);
      this.writes.count(row.queue, row.status, -1);
      this.applyEffects(effects, now);
      this.writes.completedAfterCommit(jobId, { kind: 'notFound' });
      return { outcome: 'removed', job: rowToRecord(row) };
    });
  }

  protected _reap(): Promise<ReapReport> {
    return this.writes.write('reap', () => this.reapExpired());
  }

  /** The reaper pass (see `reap`), inside the caller's transaction. */
  private reapExpired(): ReapReport {
    const now = this.clock.now();
    const report: ReapReport = { requeued: [], deadLettered: [], effectsApplied: [], doneSwept: 0, deadSwept: 0 };
    const deadByQueue = new Map<string, JobRecord[]>();
    const carrying: Array<{ id: string; cancelRequested: boolean; branch: ReaperDeadLetterBranch }> = [];
    const templates = new Map<string, ReaperTemplate | undefined>();
    this.sql.sweepKv.run(now);
    for (const row of this.sql.reapDead.all({ now }) as ReapedRow[]) {
      const record = rowToRecord(row);
      const branch = this.reaperBranch(row, record, templates);
      if (branch !== undefined) carrying.push({ id: row.id, cancelRequested: row.cancel_requested !== 0, branch });
      this.writes.count(row.queue, 'claimed', -1);
      this.writes.count(row.queue, 'dead', 1);
      report.deadLettered.push(record);
      let list = deadByQueue.get(row.queue);
      if (!list) deadByQueue.set(row.queue, (list = []));
      list.push(record);
      this.writes.completedAfterCommit(row.id, { kind: 'completed', job: record });
    }
    // Carried and template effects commit in job-id order, each seeing those before it.
    carrying.sort((a, b) => compareIds(a.id, b.id));
    for (const { id, cancelRequested, branch } of carrying) {
      const effects = reaperEffects(branch, cancelRequested, (p) => this.holds(p, now));
      if (effects === undefined || !this.idsFree(effects.enqueue)) continue;
      this.applyEffects(effects, now);
      report.effectsApplied.push(id);
    }
    for (const row of this.sql.reapRequeue.all({ now }) as RequeuedRow[]) {
      report.requeued.push(row.id);
      this.writes.count(row.queue, 'claimed', -1);
      this.writes.count(row.queue, 'pending', 1);
      this.writes.jobsAvailable(row.queue);
    }
    for (const queue of this.sql.queueNames.all() as string[]) {
      const config = this.configs.get(queue);
      if (config.keepDoneJobsMs !== undefined) report.doneSwept += this.sql.sweepDone.run(queue, now - config.keepDoneJobsMs).changes;
      if (config.deadRetentionMs !== null) {
        const swept = this.sql.sweepDead.run(queue, now - config.deadRetentionMs).changes;
        if (swept > 0) this.writes.count(queue, 'dead', -swept);
        report.deadSwept += swept;
      }
    }
    this.sql.sweepRemoved.run(now - REMOVED_RETENTION_MS);
    for (const [queue, jobs] of deadByQueue) this.writes.notifyAfterCommit(queue, { type: 'deadLettered', queue, jobs });
    return report;
  }

  /**
   * The branch the reaper applies to a job it dead-letters: the one the job
   * carries, else the one its queue's template makes from it. A template is
   * read (in the reap's transaction, so as any connection last set it) only
   * for a job that carries nothing, and once per queue and pass.
   */
  private reaperBranch(row: ReapedRow, job: JobRecord, templates: Map<string, ReaperTemplate | undefined>): ReaperDeadLetterBranch | undefined {
    const carried = row.reaper_dead_letter === null ? undefined : decodeReaperBranch(row.reaper_dead_letter);
    if (carried === undefined && !templates.has(row.queue)) {
      const text = this.sql.reaperTemplate.get(row.queue) as string | undefined;
      templates.set(row.queue, text === undefined ? undefined : decodeReaperTemplate(text));
    }
    return reaperBranchOf(carried, templates.get(row.queue), job);
  }

  protected _promote(): Promise<number> {
    return this.writes.write('promote', () => this.promoteDue());
  }

  protected _setReaperTemplate(queue: string, template: ReaperTemplate | undefined): Promise<void> {
    // Encoded now: a group commit runs the write later, and the caller may change its object meanwhile.
    // The copy leaves out whatever the template holds beyond its fields.
    const text = template === undefined ? undefined : encodeReaperTemplate(copyReaperTemplate(template));
    return this.writes.write('setReaperTemplate', () => {
      if (text === undefined) this.sql.deleteReaperTemplate.run(queue);
      else this.sql.putReaperTemplate.run(queue, text);
    });
  }

  protected _requeueDead(jobId: string): Promise<void> {
    return this.writes.write('requeueDead', () => {
      const row = this.sql.owner.get(jobId) as OwnerRow | undefined;
      if (!row) throw new JobNotFoundError(jobId);
      if (row.status !== 'dead') throw new InvalidStateError(jobId, row.status, 'requeue');
      this.sql.requeueDead.run(jobId);
      this.writes.count(row.queue, 'dead', -1);
      this.writes.count(row.queue, 'pending', 1);
      this.writes.jobsAvailable(row.queue);
    });
  }

  // ---- reads -------------------------------------------------------------------

  protected async _getJob(jobId: string): Promise<JobRecord | undefined> {
    const row = this.read('getJob', () => this.sql.getJob.get(jobId) as JobRow | undefined);
    return row ? rowToRecord(row) : undefined;
  }

  protected async _deadJobs(queue: string, after: string | undefined, limit: number): Promise<JobRecord[]> {
    // Bound as a statement parameter, where a non-string would compare by SQLite's type order.
    if (after !== undefined && typeof after !== 'string') throw new InvalidArgumentError('after', `expected a job id, got ${describe(after)}`);
    const rows = this.read('deadJobs', () => this.sql.deadPage.all(queue, after ?? '', limit) as JobRow[]);
    return rows.map(rowToRecord);
  }

  protected async _stats(queue: string): Promise<QueueStats> {
    const row = this.read('stats', () => this.sql.stats.get(queue) as QueueStats | undefined);
    return row ? { ...row } : { pending: 0, claimed: 0, scheduled: 0, dead: 0, done: 0 };
  }

  protected async _listQueues(): Promise<string[]> {
    return this.read('listQueues', () => this.sql.queueNames.all() as string[]);
  }

  protected async _completionState(jobId: string): Promise<CompletionState> {
    const row = this.read('waitForCompletion', () => this.sql.getJob.get(jobId) as JobRow | undefined);
    if (!row) return { done: { kind: 'notFound' } };
    const record = rowToRecord(row);
    return row.status === 'done' || row.status === 'dead' ? { done: { kind: 'completed', job: record } } : { live: record };
  }

  protected async _kvGet(key: string): Promise<Uint8Array | undefined> {
    const value = this.read('kvGet', () => this.sql.kvGet.get(key, this.clock.now()) as Buffer | undefined);
    return value === undefined ? undefined : new Uint8Array(value);
  }

  protected _kvDelete(key: string, ifValue: Uint8Array | undefined): Promise<boolean> {
    return this.writes.write('kvDelete', () => {
      const now = this.clock.now();
      return (ifValue === undefined ? this.sql.kvDeleteLive.run(key, now) : this.sql.kvDeleteIf.run(key, ifValue, now)).changes > 0;
    });
  }

  // ---- the base store's hooks -------------------------------------------------------

  protected override checkOpen(): void {
    super.checkOpen();
    if (this.failure) throw this.failure;
  }

  protected override housekeepingStopped(): boolean {
    return super.housekeepingStopped() || this.failure !== undefined;
  }

  /** Timer-driven maintenance commits at once (not batched), so a clock tick's effects are visible when it returns. */
  protected override maintain(task: 'reap' | 'promote'): void {
    try {
      if (task === 'reap') this.writes.now('reap', () => this.reapExpired());
      else this.writes.now('promote', () => this.promoteDue());
    } catch {
      // busy or I/O: the next tick retries
    }
  }

  /** Another process may complete the job: the change poll watches for it while someone waits. */
  protected override watchCompletion(job: JobRecord, waiting: Promise<CompletionResult>): void {
    this.changes.watch(job.id, job.enqueuedAt);
    this.changes.update();
    void waiting.finally(() => {
      if (!this.completionWaiters.has(job.id)) this.changes.unwatch(job.id);
      this.changes.update();
    });
  }

  protected override subscribersChanged(): void {
    this.changes.update();
  }

  /** Operations called before `close` still commit. */
  protected override beforeClose(): void {
    this.writes.flush();
  }

  protected async _close(): Promise<void> {
    this.db.close();
  }

  // ---- internals -------------------------------------------------------------------

  /** A read: single statements are atomic snapshots in SQLite. */
  private read<T>(operation: string, fn: () => T): T {
    try {
      return fn();
    } catch (error) {
      throw this.mapError(error, operation);
    }
  }

  /** Maps a driver error (see `mapOperationError`); a damaged file stops the store. */
  private mapError(error: unknown, operation: string): unknown {
    const mapped = mapOperationError(error, this.path, operation);
    if (mapped instanceof StoreCorruptedError) this.stop(mapped);
    return mapped;
  }

  /**
   * Stops the store for good after `error` (a damaged or replaced file):
   * later operations throw it and the background timers end. The file stays
   * open until `close`.
   */
  private stop(error: WorkflowError): void {
    this.failure ??= error;
    this.stopHousekeeping();
    this.changes.stop();
    // Waiting workers call in and meet the error rather than sleep on.
    for (const queue of this.notifications.queues()) this.notify(queue, { type: 'jobsAvailable', queue });
  }

  /** Throws (and stops the store) when the database file or its `-wal` is no longer the file opened. */
  private verifyFiles(): void {
    if (this.failure) throw this.failure;
    const error = this.files?.check(this.clock.now());
    if (error === undefined) return;
    this.stop(error);
    throw error;
  }

  private owned(claim: ClaimRef): OwnerRow {
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- untyped callers reach this through the public API
    const row = typeof claim?.jobId === 'string' ? (this.sql.owner.get(claim.jobId) as OwnerRow | undefined) : undefined;
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- untyped callers reach this through the public API
    if (!row || row.status !== 'claimed' || row.claim_token === null || row.claim_token !== claim.token) throw new LeaseLostError(String(claim?.jobId));
    return row;
  }

  /**
   * Rejects batch or effect enqueues whose ids are in use (including by
   * `removing`, the job the operation settles or cancels) or repeated,
   * before anything is changed. A lone request needs no lookup: its insert
   * meets the primary key, and the failing operation is rolled back whole.
   */
  private checkNewIds(requests: ReadonlyArray<{ options?: EnqueueOptions }> | undefined, removing?: string): void {
    if (requests === undefined || requests.length === 0) return;
    // One id: the INSERT's primary key refuses an id in use, except the job being settled (deleted in the same commit).
    checkNewJobIds(requests, requests.length === 1 ? (id) => id === removing : (id) => this.sql.jobExists.get(id) !== undefined);
  }

  /** Whether a kv precondition holds at `now`: the record exists, has not expired and is byte-equal. */
  private holds(precondition: KvPrecondition, now: number): boolean {
    const current = this.sql.kvGet.get(precondition.key, now) as Buffer | undefined;
    return current !== undefined && bytesEqual(current, precondition.equals);
  }

  /** Whether none of the supplied ids is in use or repeated (carried effects apply whole or not at all). */
  private idsFree(requests: ReadonlyArray<{ options?: EnqueueOptions }> | undefined): boolean {
    try {
      this.checkNewIds(requests);
      const only = requests?.length === 1 ? requests[0]?.options?.id : undefined;
      return only === undefined || this.sql.jobExists.get(only) === undefined;
    } catch {
      return false;
    }
  }

  /** Inserts a job; a live job with the same dedup key wins (an id in use is an error first). */
  private insertJob(queue: string, payload: Uint8Array, options: EnqueueOptions | undefined, now: number): EnqueueResult {
    const dedupKey = options?.dedupKey;
    const config = this.configs.get(queue);
    const id = options?.id ?? newId(now);
    const runAt = enqueueDueAt(options, now);
    const scheduled = runAt !== undefined && runAt > now;
    try {
      this.sql.insertJob.run(
        id,
        queue,
        scheduled ? 'scheduled' : 'pending',
        payload, // better-sqlite3 binds any Uint8Array (offset and length respected) as a BLOB
        JSON.stringify(options?.headers ?? {}),
        options?.maxAttempts ?? config.maxAttempts,
        options?.priority ?? config.defaultPriority,
        now,
        scheduled ? runAt : null,
        dedupKey ?? null,
        options?.reaperDeadLetter === undefined ? null : encodeReaperBranch(options.reaperDeadLetter),
      );
    } catch (error) {
      // The constraints decide (two lookups fewer than checking first); a failed statement is undone alone.
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- a caught value may be anything
      const code = (error as { code?: unknown })?.code;
      if (code === 'SQLITE_CONSTRAINT_PRIMARYKEY') throw jobIdInUse(id);
      if (code === 'SQLITE_CONSTRAINT_UNIQUE' && dedupKey !== undefined) {
        if (this.sql.jobExists.get(id) !== undefined) throw jobIdInUse(id);
        const existing = this.sql.findDedup.get(queue, dedupKey) as string | undefined;
        if (existing !== undefined) return { kind: 'alreadyEnqueued', id: existing };
      }
      throw error;
    }
    this.writes.count(queue, scheduled ? 'scheduled' : 'pending', 1);
    if (scheduled) this.writes.scheduledAt(runAt);
    else this.writes.jobsAvailable(queue);
    return { kind: 'new', id };
  }

  private applyEffects(effects: Effects | undefined, now: number): EnqueueResult[] {
    const enqueued = (effects?.enqueue ?? []).map((request) => this.insertJob(request.queue, request.payload, request.options, now));
    this.applyKvWrites(effects?.kvWrites, now);
    for (const key of effects?.kvDeletes ?? []) this.sql.kvDelete.run(key);
    return enqueued;
  }

  /** Each record permanent, or kept until `now + ttlMs`. */
  private applyKvWrites(writes: KvWrite[] | undefined, now: number): void {
    for (const write of writes ?? []) this.sql.kvUpsert.run(write.key, write.value, write.ttlMs === undefined ? null : now + write.ttlMs);
  }

  private promoteDue(): number {
    const queues = this.sql.promote.all(this.clock.now()) as string[];
    for (const queue of queues) {
      this.writes.count(queue, 'scheduled', -1);
      this.writes.count(queue, 'pending', 1);
    }
    for (const queue of new Set(queues)) this.writes.jobsAvailable(queue);
    return queues.length;
  }

  /** Wakes exactly when the earliest scheduled job falls due, so delays are not rounded up to the promote interval. */
  private armWakeAt(runAt: number): void {
    this.armWake(runAt, () => {
      try {
        this.writes.now('promote', () => this.promoteDue());
      } catch {
        // transient (busy): the promote interval retries
      }
      this.rearmWake();
    });
  }

  private rearmWake(): void {
    if (!this.background || this.housekeepingStopped()) return;
    try {
      const next = this.sql.nextDue.get() as number | undefined;
      if (next !== undefined) this.armWakeAt(next);
    } catch {
      // transient: the promote interval covers it
    }
  }
}
