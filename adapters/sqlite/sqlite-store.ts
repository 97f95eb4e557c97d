import { randomBytes } from 'node:crypto';
import { realpathSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import Database from 'better-sqlite3';
import type BetterSqlite3 from 'better-sqlite3';
import { HOUSEKEEPING, SystemClock } from '../../core/clock.js';
import type { Clock } from '../../core/clock.js';
import { InvalidArgumentError, InvalidStateError, JobNotFoundError, LeaseLostError, StoreClosedError, StoreCorruptedError } from '../../core/errors.js';
import type { WorkflowError } from '../../core/errors.js';
import { compareIds, newId } from '../../core/ids.js';
import { DEFAULT_PROMOTE_INTERVAL_MS, DEFAULT_REAPER_INTERVAL_MS, QueueConfigs, enqueueDueAt, retryDelayMs } from '../../core/queue-config.js';
import { STALE_BRANCH, decodeReaperBranch, encodeReaperBranch, reaperEffects } from '../../core/carried-effects.js';
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
  JobStatus,
  KvPrecondition,
  KvWrite,
  QueueStats,
  QueueStore,
  ReapReport,
  RenewResult,
  SettleResult,
  Settlement,
  StoreNotification,
} from '../../core/queue-store.js';
import { CompletionWaiters, LocalNotifications } from '../../core/local-notifications.js';
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
  checkTimeoutMs,
  describe,
} from '../../core/store-validation.js';
import { endsBatch, mapOpenError, mapOperationError, sqliteCode } from './sqlite-errors.js';
import { claimedRecord, rowToRecord } from './sqlite-rows.js';
import type { JobRow } from './sqlite-rows.js';
import { ensureSchema } from './sqlite-schema.js';
import { prepareStatements } from './sqlite-statements.js';
import type { Statements } from './sqlite-statements.js';

/** SQLite `synchronous` levels. See docs/sqlite.md for what each survives. */
export type SqliteSynchronous = 'OFF' | 'NORMAL' | 'FULL' | 'EXTRA';

/** Options of `SqliteStore`: the common `StoreOptions` plus the file and its durability. */
export interface SqliteStoreOptions extends StoreOptions {
  /** Database file (created if missing; its directory must exist), or `':memory:'`. */
  path: string;
  /**
   * Durability of a commit. Default `NORMAL`: in WAL mode a committed
   * operation survives the process being killed, but the last commits may
   * be lost on power loss or an OS crash. `FULL`/`EXTRA` also survive those
   * (an fsync per commit); `OFF` survives neither reliably.
   */
  synchronous?: SqliteSynchronous;
  /** How long an operation waits for another connection's write lock before `StoreUnavailableError`. Default 5 000. */
  busyTimeoutMs?: number;
  /**
   * How often the store checks for commits made by other connections (other
   * processes or other stores on the same file), to wake waiting workers,
   * deliver remote cancels and finish `waitForCompletion`. Runs only while
   * someone subscribes or waits. Default 100.
   */
  changePollIntervalMs?: number;
  /**
   * Group commit (default true): write operations called in the same
   * event-loop turn share one transaction, each in its own savepoint, so
   * concurrent settlements cost one commit instead of one each. Every
   * operation stays atomic and its promise settles after the commit; a
   * failed commit fails them all with nothing applied. `false`: one
   * transaction per operation.
   */
  groupCommit?: boolean;
  /**
   * WAL pages after which a commit checkpoints the WAL into the database
   * file (SQLite's `wal_autocheckpoint`). Each checkpoint syncs both files,
   * so a larger value means fewer syncs and faster writes, and a larger
   * `-wal` file (about 4 KiB per page). Default 10 000 (about 40 MiB).
   */
  walAutocheckpointPages?: number;
}

type Outbound = { queue: string; notification: StoreNotification };
type Counts = [pending: number, claimed: number, scheduled: number, dead: number, done: number];
const COUNT_INDEX = { pending: 0, claimed: 1, scheduled: 2, dead: 3, done: 4 } as const;
type PendingWrite = { operation: string; fn: () => unknown; resolve: (value: unknown) => void; reject: (error: unknown) => void };
/** The columns of the `owner` statement. */
type OwnerRow = { queue: string; status: JobStatus; claim_token: string | null; cancel_requested: number; attempts: number; max_attempts: number };
/** Outcome of one operation of a group-commit batch. */
type BatchResult = { ok: true; value: unknown } | { ok: false; error: unknown };

const SYNC_LEVELS: readonly SqliteSynchronous[] = ['OFF', 'NORMAL', 'FULL', 'EXTRA'];
const DEFAULT_BUSY_TIMEOUT_MS = 5_000;
const DEFAULT_CHANGE_POLL_MS = 100;
const DEFAULT_WAL_AUTOCHECKPOINT_PAGES = 10_000;
/**
 * Least time between two checks that the database file and its `-wal` are
 * still the files the store opened (two `stat` calls, made before a commit
 * and on the housekeeping timers): it bounds the commits that can go to a
 * deleted write-ahead log before the store stops.
 */
const FILE_CHECK_INTERVAL_MS = 100;
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
 * share a commit, each in its own savepoint (`groupCommit`). Reads are
 * single statements. See docs/sqlite.md.
 */
export class SqliteStore implements QueueStore {
  /** The file this store opened (as given). */
  readonly path: string;
  private readonly db: BetterSqlite3.Database;
  private readonly sql: Statements;
  private readonly clock: Clock;
  private readonly configs: QueueConfigs;
  private readonly background: boolean;
  private readonly changePollMs: number;
  private readonly groupCommit: boolean;
  private readonly inTransaction: BetterSqlite3.Transaction<(fn: () => unknown) => unknown>;
  private readonly tokenPrefix = randomBytes(9).toString('base64url');
  private tokenSeq = 0;
  private closed = false;
  /** Set once the file turned out damaged or replaced: every later operation throws it. */
  private failure: WorkflowError | undefined;
  /** Device and inode (`dev:ino`) of the database file and its `-wal` at open, by real path; none for `':memory:'`. */
  private readonly fileIds: Map<string, string | undefined> | undefined;
  private filesCheckedAt = 0;

  private readonly notifications = new LocalNotifications();
  private readonly waiters: CompletionWaiters;
  private readonly timers = new Set<() => void>();
  private wake: { at: number; cancel: () => void } | undefined;
  private changePoll: (() => void) | undefined;
  private lastDataVersion = 0;
  /** `enqueuedAt` of each job waited for, as seen when the wait began: a record of its removal must match it. */
  private readonly waitedJobs = new Map<string, number>();
  /** Remote cancels already reported, as `id token`, so each is emitted once. */
  private reportedCancels = new Set<string>();

  /** Queues whose counter row is known to exist (rows are never deleted). */
  private readonly knownQueues = new Set<string>();
  // State of the transaction in progress: counter deltas written at its end,
  // effects delivered only after it commits.
  private readonly deltas = new Map<string, Counts>();
  private readonly batchDeltas = new Map<string, Counts>();
  private pendingWrites: PendingWrite[] = [];
  private flushScheduled = false;
  private newQueues: string[] = [];
  private outbox: Outbound[] = [];
  private completions: Array<[string, CompletionResult]> = [];
  private earliestScheduled: number | undefined;

  constructor(options: SqliteStoreOptions) {
    if (!options || typeof options !== 'object') throw new InvalidArgumentError('options', `expected an object, got ${describe(options)}`);
    if (typeof options.path !== 'string' || options.path.length === 0) {
      throw new InvalidArgumentError('path', `expected a file path or ':memory:', got ${describe(options.path)}`);
    }
    const synchronous = options.synchronous ?? 'NORMAL';
    if (!SYNC_LEVELS.includes(synchronous)) throw new InvalidArgumentError('synchronous', `expected one of ${SYNC_LEVELS.join(', ')}, got ${describe(synchronous)}`);
    const busyTimeoutMs = options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS;
    const walAutocheckpointPages = options.walAutocheckpointPages ?? DEFAULT_WAL_AUTOCHECKPOINT_PAGES;
    checkPositiveInt('walAutocheckpointPages', walAutocheckpointPages);
    checkPositiveInt('busyTimeoutMs', busyTimeoutMs);
    this.changePollMs = options.changePollIntervalMs ?? DEFAULT_CHANGE_POLL_MS;
    checkPositiveInt('changePollIntervalMs', this.changePollMs);
    const reaperMs = options.reaperIntervalMs ?? DEFAULT_REAPER_INTERVAL_MS;
    const promoteMs = options.promoteIntervalMs ?? DEFAULT_PROMOTE_INTERVAL_MS;
    checkPositiveInt('reaperIntervalMs', reaperMs);
    checkPositiveInt('promoteIntervalMs', promoteMs);
    this.path = options.path;
    this.clock = options.clock ?? new SystemClock();
    this.waiters = new CompletionWaiters(this.clock);
    this.configs = new QueueConfigs(options);
    this.background = options.backgroundMaintenance !== false;
    this.groupCommit = options.groupCommit !== false;

    let db: BetterSqlite3.Database | undefined;
    try {
      db = new Database(options.path, { timeout: busyTimeoutMs });
      // journal_mode reads the header first: a file that is not a database fails here, untouched.
      db.pragma('journal_mode = WAL');
      db.pragma(`synchronous = ${synchronous}`);
      db.pragma(`wal_autocheckpoint = ${walAutocheckpointPages}`);
      db.pragma('foreign_keys = OFF');
      ensureSchema(db, options.path, this.clock.now());
      this.sql = prepareStatements(db);
    } catch (error) {
      try {
        db?.close();
      } catch {
        // the open failure is the error worth reporting
      }
      throw mapOpenError(error, options.path);
    }
    this.db = db;
    this.inTransaction = db.transaction((fn: () => unknown) => fn());
    this.lastDataVersion = this.sql.dataVersion.get() as number;
    const real = options.path === ':memory:' ? undefined : realPath(options.path);
    if (real !== undefined) {
      this.fileIds = new Map([real, `${real}-wal`].map((file) => [file, fileIdentity(file) ?? undefined]));
      this.filesCheckedAt = this.clock.now();
    }

    if (this.background) {
      // Timer-driven maintenance commits at once (not batched), so a clock tick's effects are visible when it returns.
      this.every(reaperMs, () => this.maintain('reap', () => this.reapExpired()));
      this.every(promoteMs, () => this.maintain('promote', () => this.promoteDue()));
      this.rearmWake();
    }
  }

  // ---- enqueue -------------------------------------------------------------

  async enqueue(queue: string, payload: Uint8Array, options?: EnqueueOptions, kvWrites?: KvWrite[]): Promise<EnqueueResult> {
    this.checkOpen();
    checkQueueName(queue);
    checkPayload(payload);
    checkEnqueueOptions(options);
    checkKvWrites(kvWrites);
    return this.write('enqueue', () => {
      const now = this.clock.now();
      if (options?.dedupKey !== undefined) {
        const existing = this.sql.findDedup.get(queue, options.dedupKey) as string | undefined;
        if (existing !== undefined) return { kind: 'alreadyEnqueued', id: existing };
      }
      for (const write of kvWrites ?? []) {
        if (write.ifAbsent && this.sql.kvExists.get(write.key) !== undefined) return { kind: 'kvConflict', key: write.key };
      }
      const result = this.insertJob(queue, payload, options, now);
      this.applyKvWrites(kvWrites);
      return result;
    });
  }

  async enqueueBatch(queue: string, items: Array<{ payload: Uint8Array; options?: EnqueueOptions }>): Promise<EnqueueResult[]> {
    this.checkOpen();
    checkQueueName(queue);
    if (!Array.isArray(items)) throw new InvalidArgumentError('items', 'expected an array');
    for (const item of items) {
      checkPayload(item?.payload);
      checkEnqueueOptions(item.options);
    }
    return this.write('enqueueBatch', () => {
      this.checkNewIds(items); // ids are checked before any dedup lookup, as for settlement effects
      const now = this.clock.now();
      return items.map((item) => this.insertJob(queue, item.payload, item.options, now));
    });
  }

  // ---- claim / settle / renew ------------------------------------------------

  async claim(queue: string, options?: { leaseMs?: number; limit?: number }): Promise<Claim[]> {
    this.checkOpen();
    checkQueueName(queue);
    if (options?.leaseMs !== undefined) checkPositiveInt('leaseMs', options.leaseMs);
    const limit = options?.limit ?? 1;
    checkPositiveInt('limit', limit);
    const lease = options?.leaseMs ?? this.configs.get(queue).leaseDurationMs;
    // An empty queue is answered by a read, without taking the write lock, so idle
    // workers polling a shared file do not queue up behind each other's writes.
    if (this.pendingWrites.length === 0 && this.read('claim', () => this.sql.hasPending.get(queue)) === undefined) return [];
    return this.write('claim', () => {
      const now = this.clock.now();
      // A per-call prefix that never repeats, plus the row: each delivery gets its own token.
      const token = `${this.tokenPrefix}.${(this.tokenSeq++).toString(36)}`;
      const leaseExpiresAt = now + lease;
      const rows = this.sql.claim.all({ queue, now, leaseExpiresAt, token, limit }) as unknown[][];
      if (rows.length > 0) {
        this.count(queue, 'pending', -rows.length);
        this.count(queue, 'claimed', rows.length);
      }
      // RETURNING has no order: claims are handed out in claim order.
      const claims = rows.map((values): Claim => ({ jobId: values[0] as string, token: values[9] as string, job: claimedRecord(values, queue, now, leaseExpiresAt) }));
      return claims.sort((a, b) => a.job.priority - b.job.priority || compareIds(a.jobId, b.jobId));
    });
  }

  async settle(claim: ClaimRef, settlement: Settlement): Promise<SettleResult> {
    this.checkOpen();
    checkSettlement(settlement);
    // Both branches ack and no queue keeps done jobs: one DELETE checks ownership and settles.
    if (settlement.action.type === 'ack' && (settlement.ifCancelRequested?.action.type ?? 'ack') === 'ack' && !this.configs.anyKeepsDoneJobs) {
      return this.write('settle', () => this.settleByDelete(claim, settlement));
    }
    return this.write('settle', () => {
      const owner = this.owned(claim);
      const stale = settlement.precondition !== undefined && !this.holds(settlement.precondition);
      const useCancel = !stale && owner.cancel_requested !== 0 && settlement.ifCancelRequested !== undefined;
      const branch = stale ? STALE_BRANCH : useCancel ? settlement.ifCancelRequested! : settlement;
      this.checkNewIds(branch.effects?.enqueue, claim.jobId);
      const jobId = claim.jobId;
      const queue = owner.queue;
      const config = this.configs.get(queue);
      const now = this.clock.now();
      const action = branch.action;
      let status: SettleResult['status'];
      this.count(queue, 'claimed', -1);
      if (action.type === 'ack') {
        status = 'done';
        this.count(queue, 'done', 1);
        if (config.keepDoneJobsMs === undefined) {
          this.sql.deleteJob.run(jobId);
          this.completions.push([jobId, { kind: 'completed' }]);
        } else {
          const row = this.sql.ackKeep.get(now, jobId) as JobRow;
          this.completions.push([jobId, { kind: 'completed', job: rowToRecord(row) }]);
        }
      } else if (action.type === 'deadLetter' || owner.attempts >= owner.max_attempts) {
        status = 'dead';
        this.count(queue, 'dead', 1);
        const row = this.sql.toDead.get(action.type === 'deadLetter' ? action.reason : action.error, now, jobId) as JobRow;
        this.completions.push([jobId, { kind: 'completed', job: rowToRecord(row) }]);
      } else {
        const delay = retryDelayMs(config, owner.attempts);
        status = delay === 0 ? 'pending' : 'scheduled';
        this.count(queue, status, 1);
        this.sql.toRetry.run(status, delay === 0 ? null : now + delay, action.error, jobId);
        if (delay === 0) this.jobsAvailable(queue);
        else this.scheduledAt(now + delay);
      }
      const enqueued = this.applyEffects(branch.effects, now);
      return { branch: stale ? 'stale' : useCancel ? 'cancel' : 'primary', status, enqueued };
    });
  }

  /** `settle` when whichever branch applies acks and done jobs are not kept: the owned row goes either way. */
  private settleByDelete(claim: ClaimRef, settlement: Settlement): SettleResult {
    const deleted =
      typeof claim?.jobId === 'string' && typeof claim.token === 'string' ? (this.sql.deleteOwned.get(claim.jobId, claim.token) as [string, number] | undefined) : undefined;
    if (!deleted) throw new LeaseLostError(String(claim?.jobId));
    const [queue, cancelRequested] = deleted;
    const stale = settlement.precondition !== undefined && !this.holds(settlement.precondition);
    const useCancel = !stale && cancelRequested !== 0 && settlement.ifCancelRequested !== undefined;
    const branch = stale ? STALE_BRANCH : useCancel ? settlement.ifCancelRequested! : settlement;
    // Checked after the delete here: a throw still rolls the whole operation back.
    this.checkNewIds(branch.effects?.enqueue, claim.jobId);
    this.count(queue, 'claimed', -1);
    this.count(queue, 'done', 1);
    this.completions.push([claim.jobId, { kind: 'completed' }]);
    const enqueued = this.applyEffects(branch.effects, this.clock.now());
    return { branch: stale ? 'stale' : useCancel ? 'cancel' : 'primary', status: 'done', enqueued };
  }

  async renewLease(claim: ClaimRef, extendMs: number): Promise<RenewResult> {
    this.checkOpen();
    checkPositiveInt('extendMs', extendMs);
    return this.write('renewLease', () => {
      const owner = this.owned(claim);
      const leaseExpiresAt = this.clock.now() + extendMs;
      this.sql.renew.run(leaseExpiresAt, claim.jobId);
      return { leaseExpiresAt, cancelRequested: owner.cancel_requested !== 0 };
    });
  }

  // ---- cancel / maintenance ----------------------------------------------------

  async cancel(jobId: string, effects?: Effects): Promise<CancelResult> {
    this.checkOpen();
    checkJobId(jobId);
    checkEffects(effects);
    return this.write('cancel', (): CancelResult => {
      const row = this.sql.getJob.get(jobId) as JobRow | undefined;
      if (!row || row.status === 'done' || row.status === 'dead') return { outcome: 'notFound' };
      if (row.status === 'claimed') {
        const firstRequest = row.cancel_requested === 0;
        const updated = firstRequest ? (this.sql.flagCancel.get(jobId) as JobRow) : row;
        this.outbox.push({ queue: row.queue, notification: { type: 'cancelRequested', queue: row.queue, jobId } });
        // The change poll must not report this cancel a second time.
        this.reportedCancels.add(`${jobId} ${row.claim_token ?? ''}`);
        return { outcome: 'requested', job: rowToRecord(updated), firstRequest };
      }
      this.checkNewIds(effects?.enqueue, jobId);
      const now = this.clock.now();
      this.sql.deleteJob.run(jobId);
      this.sql.recordRemoved.run(jobId, row.enqueued_at, now);
      this.count(row.queue, row.status, -1);
      this.applyEffects(effects, now);
      this.completions.push([jobId, { kind: 'notFound' }]);
      return { outcome: 'removed', job: rowToRecord(row) };
    });
  }

  async reap(): Promise<ReapReport> {
    this.checkOpen();
    return this.write('reap', () => this.reapExpired());
  }

  /** The reaper pass (see `reap`), inside the caller's transaction. */
  private reapExpired(): ReapReport {
    const now = this.clock.now();
    const report: ReapReport = { requeued: [], deadLettered: [], effectsApplied: [], doneSwept: 0, deadSwept: 0 };
    const deadByQueue = new Map<string, JobRecord[]>();
    const carrying: JobRow[] = [];
    for (const row of this.sql.reapDead.all({ now }) as JobRow[]) {
      if (row.reaper_dead_letter != null) carrying.push(row);
      const record = rowToRecord(row);
      this.count(row.queue, 'claimed', -1);
      this.count(row.queue, 'dead', 1);
      report.deadLettered.push(record);
      let list = deadByQueue.get(row.queue);
      if (!list) deadByQueue.set(row.queue, (list = []));
      list.push(record);
      this.completions.push([row.id, { kind: 'completed', job: record }]);
    }
    // Carried effects commit in job-id order.
    carrying.sort((a, b) => compareIds(a.id, b.id));
    for (const row of carrying) {
      const effects = reaperEffects(decodeReaperBranch(row.reaper_dead_letter as string), row.cancel_requested !== 0, (p) => this.holds(p));
      if (effects === undefined || !this.idsFree(effects.enqueue)) continue;
      this.applyEffects(effects, now);
      report.effectsApplied.push(row.id);
    }
    for (const row of this.sql.reapRequeue.all({ now }) as Array<{ id: string; queue: string }>) {
      report.requeued.push(row.id);
      this.count(row.queue, 'claimed', -1);
      this.count(row.queue, 'pending', 1);
      this.jobsAvailable(row.queue);
    }
    for (const queue of this.sql.queueNames.all() as string[]) {
      const config = this.configs.get(queue);
      if (config.keepDoneJobsMs !== undefined) report.doneSwept += this.sql.sweepDone.run(queue, now - config.keepDoneJobsMs).changes;
      if (config.deadRetentionMs !== null) {
        const swept = this.sql.sweepDead.run(queue, now - config.deadRetentionMs).changes;
        if (swept > 0) this.count(queue, 'dead', -swept);
        report.deadSwept += swept;
      }
    }
    this.sql.sweepRemoved.run(now - REMOVED_RETENTION_MS);
    for (const [queue, jobs] of deadByQueue) this.outbox.push({ queue, notification: { type: 'deadLettered', queue, jobs } });
    return report;
  }

  async promote(): Promise<number> {
    this.checkOpen();
    return this.write('promote', () => this.promoteDue());
  }

  async requeueDead(jobId: string): Promise<void> {
    this.checkOpen();
    checkJobId(jobId);
    await this.write('requeueDead', () => {
      const row = this.ownerRow(jobId);
      if (!row) throw new JobNotFoundError(jobId);
      if (row.status !== 'dead') throw new InvalidStateError(jobId, row.status, 'requeue');
      this.sql.requeueDead.run(jobId);
      this.count(row.queue, 'dead', -1);
      this.count(row.queue, 'pending', 1);
      this.jobsAvailable(row.queue);
    });
  }

  // ---- reads -------------------------------------------------------------------

  async getJob(jobId: string): Promise<JobRecord | undefined> {
    this.checkOpen();
    checkJobId(jobId);
    const row = this.read('getJob', () => this.sql.getJob.get(jobId) as JobRow | undefined);
    return row ? rowToRecord(row) : undefined;
  }

  async deadJobs(queue: string, options?: { after?: string; limit?: number }): Promise<JobRecord[]> {
    this.checkOpen();
    checkQueueName(queue);
    const limit = options?.limit ?? 100;
    checkPositiveInt('limit', limit);
    if (options?.after !== undefined && typeof options.after !== 'string') throw new InvalidArgumentError('after', `expected a job id, got ${describe(options.after)}`);
    const rows = this.read('deadJobs', () => this.sql.deadPage.all(queue, options?.after ?? '', limit) as JobRow[]);
    return rows.map(rowToRecord);
  }

  async stats(queue: string): Promise<QueueStats> {
    this.checkOpen();
    checkQueueName(queue);
    const row = this.read('stats', () => this.sql.stats.get(queue) as QueueStats | undefined);
    return row ? { ...row } : { pending: 0, claimed: 0, scheduled: 0, dead: 0, done: 0 };
  }

  async listQueues(): Promise<string[]> {
    this.checkOpen();
    return this.read('listQueues', () => this.sql.queueNames.all() as string[]);
  }

  async waitForCompletion(jobId: string, timeoutMs: number): Promise<CompletionResult> {
    this.checkOpen();
    checkJobId(jobId);
    checkTimeoutMs(timeoutMs);
    const row = this.read('waitForCompletion', () => this.sql.getJob.get(jobId) as JobRow | undefined);
    if (!row) return { kind: 'notFound' };
    if (row.status === 'done' || row.status === 'dead') return { kind: 'completed', job: rowToRecord(row) };
    const waiting = this.waiters.wait(jobId, timeoutMs);
    this.waitedJobs.set(jobId, row.enqueued_at);
    this.updateChangePoll(); // another process may complete it
    return waiting.finally(() => {
      if (!this.waiters.has(jobId)) this.waitedJobs.delete(jobId);
      this.updateChangePoll();
    });
  }

  async kvGet(key: string): Promise<Uint8Array | undefined> {
    this.checkOpen();
    checkKvKey(key);
    const value = this.read('kvGet', () => this.sql.kvGet.get(key) as Buffer | undefined);
    return value === undefined ? undefined : new Uint8Array(value);
  }

  async kvDelete(key: string, options?: { ifValue?: Uint8Array }): Promise<boolean> {
    this.checkOpen();
    checkKvKey(key);
    const ifValue = options?.ifValue;
    if (ifValue !== undefined) checkPayload(ifValue, 'ifValue');
    return this.write('kvDelete', () =>
      ifValue === undefined ? this.sql.kvDelete.run(key).changes > 0 : this.sql.kvDeleteIf.run(key, ifValue).changes > 0,
    );
  }

  // ---- notifications / lifecycle -------------------------------------------------

  subscribe(queue: string, listener: (notification: StoreNotification) => void): () => void {
    const unsubscribe = this.notifications.subscribe(queue, listener);
    this.updateChangePoll();
    return () => {
      unsubscribe();
      this.updateChangePoll();
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.flushWrites(); // operations called before close still commit
    this.closed = true;
    for (const cancel of this.timers) cancel();
    this.timers.clear();
    this.wake?.cancel();
    this.wake = undefined;
    this.changePoll?.();
    this.changePoll = undefined;
    this.waiters.resolveAll();
    this.notifications.clear();
    this.db.close();
  }

  // ---- internals -------------------------------------------------------------------

  private checkOpen(): void {
    if (this.closed) throw new StoreClosedError();
    if (this.failure) throw this.failure;
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
    for (const cancel of this.timers) cancel();
    this.timers.clear();
    this.wake?.cancel();
    this.wake = undefined;
    this.changePoll?.();
    this.changePoll = undefined;
    // Waiting workers call in and meet the error rather than sleep on.
    for (const queue of this.notifications.queues()) this.notify(queue, { type: 'jobsAvailable', queue });
  }

  /**
   * Throws (and stops the store) when the database file or its `-wal` is no
   * longer the file opened: after the log was deleted, this connection goes
   * on writing to the unlinked file, and every other connection starts a new
   * log without those commits. Checked at most every
   * `FILE_CHECK_INTERVAL_MS` of clock time.
   */
  private verifyFiles(): void {
    if (this.failure) throw this.failure;
    if (this.fileIds === undefined) return;
    const now = this.clock.now();
    if (now >= this.filesCheckedAt && now - this.filesCheckedAt < FILE_CHECK_INTERVAL_MS) return;
    this.filesCheckedAt = now;
    for (const [file, opened] of this.fileIds) {
      const current = fileIdentity(file);
      if (current === null) continue; // cannot stat it (permissions): no verdict
      if (opened === undefined) {
        this.fileIds.set(file, current);
        continue;
      }
      if (current === opened) continue;
      const what = current === undefined ? 'was deleted' : 'was replaced by another file';
      const error = new StoreCorruptedError(
        `${file} ${what} while the store had ${this.path} open: commits made since may be lost, and going on would lose more; ` +
          'stop every process using the file, then check it (PRAGMA integrity_check) or restore a backup',
      );
      this.stop(error);
      throw error;
    }
  }

  /**
   * Runs a write operation. With group commit (default), the operations
   * called in one event-loop turn run in call order inside one `BEGIN
   * IMMEDIATE` transaction, each in its own savepoint (an operation that
   * throws is rolled back alone), and the promise of each settles once that
   * transaction committed. Without it, each runs in its own transaction.
   * Either way, notifications and completions are delivered only after the
   * commit, and nothing of an operation is visible unless it committed.
   */
  private write<T>(operation: string, fn: () => T): Promise<T> {
    if (!this.groupCommit) {
      try {
        return Promise.resolve(this.writeNow(operation, fn));
      } catch (error) {
        return Promise.reject(error);
      }
    }
    return new Promise<T>((resolve, reject) => {
      this.pendingWrites.push({ operation, fn, resolve: resolve as (value: unknown) => void, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flushWrites());
      }
    });
  }

  /** Runs `fn` in its own `BEGIN IMMEDIATE` transaction, now. */
  private writeNow<T>(operation: string, fn: () => T): T {
    this.verifyFiles();
    let result: T;
    try {
      result = this.inTransaction.immediate(() => {
        const value = fn();
        this.keepOpDeltas();
        this.writeCounts();
        return value;
      }) as T;
    } catch (error) {
      this.resetTransactionState();
      throw this.mapError(error, operation);
    }
    this.afterCommit();
    return result;
  }

  /** Commits every queued write operation in one transaction (see `write`). */
  private flushWrites(): void {
    this.flushScheduled = false;
    const batch = this.pendingWrites;
    this.pendingWrites = [];
    if (batch.length === 0) return;
    if (this.closed) {
      for (const item of batch) item.reject(new StoreClosedError());
      return;
    }
    if (batch.length === 1) {
      const item = batch[0] as PendingWrite;
      try {
        item.resolve(this.writeNow(item.operation, item.fn));
      } catch (error) {
        item.reject(error);
      }
      return;
    }
    let results: BatchResult[];
    try {
      this.verifyFiles();
      results = this.runBatch(batch);
    } catch (error) {
      this.resetTransactionState();
      const mapped = this.mapError(error, batch.map((item) => item.operation).join('+'));
      for (const item of batch) item.reject(mapped);
      return;
    }
    this.afterCommit();
    batch.forEach((item, i) => {
      const result = results[i] as BatchResult;
      if (result.ok) item.resolve(result.value);
      else item.reject(this.mapError(result.error, item.operation));
    });
  }

  /**
   * Runs a batch in one transaction. First without savepoints (two
   * statements fewer per operation): nearly every batch has no failing
   * operation. If one fails, the transaction is rolled back whole and the
   * batch runs again with each operation in its own savepoint, so the
   * failing one is undone alone. Throws (nothing committed) on a transient
   * driver failure.
   */
  private runBatch(batch: PendingWrite[]): BatchResult[] {
    try {
      return this.inTransaction.immediate(() => {
        const results: BatchResult[] = [];
        for (const item of batch) {
          results.push({ ok: true, value: item.fn() });
          this.keepOpDeltas();
        }
        this.writeCounts();
        return results;
      }) as BatchResult[];
    } catch (error) {
      this.resetTransactionState();
      if (endsBatch(error)) throw error;
    }
    return this.inTransaction.immediate(() => {
      const results: BatchResult[] = [];
      for (const item of batch) {
        const outboxMark = this.outbox.length;
        const completionsMark = this.completions.length;
        try {
          // Nested: better-sqlite3 runs it in a savepoint and rolls just it back on a throw.
          const value = this.inTransaction(item.fn);
          this.keepOpDeltas();
          results.push({ ok: true, value });
        } catch (error) {
          this.deltas.clear();
          this.outbox.length = outboxMark;
          this.completions.length = completionsMark;
          // A transient driver failure (busy, I/O) may have ended the transaction, and a corrupt
          // page fails whatever runs next: give up the whole batch.
          if (endsBatch(error)) throw error;
          results.push({ ok: false, error });
        }
      }
      this.writeCounts();
      return results;
    }) as BatchResult[];
  }

  private resetTransactionState(): void {
    this.deltas.clear();
    this.batchDeltas.clear();
    this.newQueues = [];
    this.outbox = [];
    this.completions = [];
    this.earliestScheduled = undefined;
  }

  /** A read: single statements are atomic snapshots in SQLite. */
  private read<T>(operation: string, fn: () => T): T {
    try {
      return fn();
    } catch (error) {
      throw this.mapError(error, operation);
    }
  }

  /** Moves a queue's counter by `by` (inside the transaction; written by `writeCounts`). */
  private count(queue: string, status: keyof typeof COUNT_INDEX, by: number): void {
    let counts = this.deltas.get(queue);
    if (!counts) this.deltas.set(queue, (counts = [0, 0, 0, 0, 0]));
    counts[COUNT_INDEX[status]] += by;
  }

  /** Keeps the counter moves of an operation that succeeded (in a batch, others may still roll back). */
  private keepOpDeltas(): void {
    for (const [queue, c] of this.deltas) {
      const total = this.batchDeltas.get(queue);
      if (!total) this.batchDeltas.set(queue, c);
      else for (let i = 0; i < 5; i++) (total[i] as number) += c[i] as number;
    }
    this.deltas.clear();
  }

  /** One counter-row update per queue touched by the transaction, at its end. */
  private writeCounts(): void {
    for (const [queue, c] of this.batchDeltas) {
      if (!this.knownQueues.has(queue)) {
        this.sql.ensureQueue.run(queue);
        this.newQueues.push(queue);
      }
      if (c[0] !== 0 || c[1] !== 0 || c[2] !== 0 || c[3] !== 0 || c[4] !== 0) this.sql.addCounts.run(c[0], c[1], c[2], c[3], c[4], queue);
    }
    this.batchDeltas.clear();
  }

  private afterCommit(): void {
    for (const queue of this.newQueues) this.knownQueues.add(queue);
    this.newQueues = [];
    const outbox = this.outbox;
    const completions = this.completions;
    const scheduled = this.earliestScheduled;
    this.outbox = [];
    this.completions = [];
    this.earliestScheduled = undefined;
    // Our own commits bump no data_version for this connection, so this reads what others did since.
    for (const { queue, notification } of outbox) this.notify(queue, notification);
    for (const [jobId, result] of completions) this.resolveCompletion(jobId, result);
    if (scheduled !== undefined) this.armWake(scheduled);
  }

  private ownerRow(jobId: string): OwnerRow | undefined {
    const v = this.sql.owner.get(jobId) as [string, JobStatus, string | null, number, number, number] | undefined;
    return v && { queue: v[0], status: v[1], claim_token: v[2], cancel_requested: v[3], attempts: v[4], max_attempts: v[5] };
  }

  private owned(claim: ClaimRef): OwnerRow {
    const row = typeof claim?.jobId === 'string' ? this.ownerRow(claim.jobId) : undefined;
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
    if (requests.length === 1) {
      const id = requests[0]?.options?.id;
      if (id !== undefined && id === removing) throw idInUse(id);
      return;
    }
    let seen: Set<string> | undefined;
    for (const request of requests) {
      const id = request.options?.id;
      if (id === undefined) continue;
      seen ??= new Set();
      if (seen.has(id) || this.sql.jobExists.get(id) !== undefined) throw idInUse(id);
      seen.add(id);
    }
  }

  /** Whether a kv precondition holds: the record exists and is byte-equal. */
  private holds(precondition: KvPrecondition): boolean {
    const current = this.sql.kvGet.get(precondition.key) as Buffer | undefined;
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
      const code = (error as { code?: unknown })?.code;
      if (code === 'SQLITE_CONSTRAINT_PRIMARYKEY') throw idInUse(id);
      if (code === 'SQLITE_CONSTRAINT_UNIQUE' && dedupKey !== undefined) {
        if (this.sql.jobExists.get(id) !== undefined) throw idInUse(id);
        const existing = this.sql.findDedup.get(queue, dedupKey) as string | undefined;
        if (existing !== undefined) return { kind: 'alreadyEnqueued', id: existing };
      }
      throw error;
    }
    this.count(queue, scheduled ? 'scheduled' : 'pending', 1);
    if (scheduled) this.scheduledAt(runAt);
    else this.jobsAvailable(queue);
    return { kind: 'new', id };
  }

  private applyEffects(effects: Effects | undefined, now: number): EnqueueResult[] {
    const enqueued = (effects?.enqueue ?? []).map((request) => this.insertJob(request.queue, request.payload, request.options, now));
    this.applyKvWrites(effects?.kvWrites);
    for (const key of effects?.kvDeletes ?? []) this.sql.kvDelete.run(key);
    return enqueued;
  }

  private applyKvWrites(writes: KvWrite[] | undefined): void {
    for (const write of writes ?? []) this.sql.kvUpsert.run(write.key, write.value);
  }

  private promoteDue(): number {
    const queues = this.sql.promote.all(this.clock.now()) as string[];
    for (const queue of queues) {
      this.count(queue, 'scheduled', -1);
      this.count(queue, 'pending', 1);
    }
    for (const queue of new Set(queues)) this.jobsAvailable(queue);
    return queues.length;
  }

  private jobsAvailable(queue: string): void {
    // Successive enqueues to one queue need one wakeup. (A rollback truncates the outbox to a
    // mark, which never drops an entry an operation before the mark pushed.)
    const last = this.outbox[this.outbox.length - 1];
    if (last?.notification.type === 'jobsAvailable' && last.queue === queue) return;
    this.outbox.push({ queue, notification: { type: 'jobsAvailable', queue } });
  }

  private scheduledAt(runAt: number): void {
    if (this.earliestScheduled === undefined || runAt < this.earliestScheduled) this.earliestScheduled = runAt;
  }

  /** Wakes exactly when the earliest scheduled job falls due, so delays are not rounded up to the promote interval. */
  private armWake(runAt: number): void {
    if (!this.background || this.closed || this.failure) return;
    if (this.wake && this.wake.at <= runAt) return;
    this.wake?.cancel();
    const cancel = this.clock.setTimer(() => {
      this.wake = undefined;
      if (this.closed) return;
      try {
        this.writeNow('promote', () => this.promoteDue());
      } catch {
        // transient (busy): the promote interval retries
      }
      this.rearmWake();
    }, runAt - this.clock.now(), HOUSEKEEPING);
    this.wake = { at: runAt, cancel };
  }

  private rearmWake(): void {
    if (!this.background || this.closed || this.failure) return;
    try {
      const next = this.sql.nextDue.get() as number | undefined;
      if (next !== undefined) this.armWake(next);
    } catch {
      // transient: the promote interval covers it
    }
  }

  private every(intervalMs: number, task: () => void): void {
    let cancel: () => void = () => undefined;
    const tick = (): void => {
      this.timers.delete(cancel);
      if (this.closed || this.failure) return;
      task();
      if (this.failure) return; // the task found the file damaged: no more ticks
      cancel = this.clock.setTimer(tick, intervalMs, HOUSEKEEPING);
      this.timers.add(cancel);
    };
    cancel = this.clock.setTimer(tick, intervalMs, HOUSEKEEPING);
    this.timers.add(cancel);
  }

  private maintain(operation: string, fn: () => unknown): void {
    try {
      this.writeNow(operation, fn);
    } catch {
      // busy or I/O: the next tick retries
    }
  }

  /** Runs the cross-connection change poll only while someone listens or waits. */
  private updateChangePoll(): void {
    const wanted = !this.closed && !this.failure && (this.notifications.size > 0 || this.waiters.size > 0);
    if (wanted && !this.changePoll) {
      const tick = (): void => {
        this.changePoll = undefined;
        if (this.closed) return;
        this.pollChanges();
        if (!this.changePoll) this.updateChangePoll();
      };
      this.changePoll = this.clock.setTimer(tick, this.changePollMs, HOUSEKEEPING);
    } else if (!wanted && this.changePoll) {
      this.changePoll();
      this.changePoll = undefined;
    }
  }

  /**
   * Reacts to commits of other connections (`PRAGMA data_version` moves
   * only for those): wakes subscribers, reports remote cancels of claimed
   * jobs, settles cross-process waiters and re-arms the due-job wakeup.
   */
  private pollChanges(): void {
    let version: number;
    try {
      this.verifyFiles();
      version = this.sql.dataVersion.get() as number;
    } catch (error) {
      if (!(error instanceof StoreCorruptedError)) this.mapError(error, 'change poll');
      return;
    }
    if (version === this.lastDataVersion) return;
    this.lastDataVersion = version;
    try {
      for (const queue of this.notifications.queues()) this.notify(queue, { type: 'jobsAvailable', queue });
      const seen = new Set<string>();
      for (const row of this.sql.cancelledClaims.all() as Array<{ id: string; queue: string; claim_token: string }>) {
        const key = `${row.id} ${row.claim_token}`;
        seen.add(key);
        if (!this.reportedCancels.has(key)) this.notify(row.queue, { type: 'cancelRequested', queue: row.queue, jobId: row.id });
      }
      this.reportedCancels = seen;
      for (const jobId of [...this.waiters.jobIds()]) {
        const row = this.sql.getJob.get(jobId) as JobRow | undefined;
        if (!row) this.resolveCompletion(jobId, this.wasRemoved(jobId) ? { kind: 'notFound' } : { kind: 'completed' });
        else if (row.status === 'done' || row.status === 'dead') this.resolveCompletion(jobId, { kind: 'completed', job: rowToRecord(row) });
      }
      this.rearmWake();
    } catch (error) {
      if (sqliteCode(error) === undefined) throw error;
      // busy or I/O: the next poll tries again; a damaged file stops the store
      this.mapError(error, 'change poll');
      this.lastDataVersion = -1;
    }
  }

  /** The job waited for is gone because `cancel` removed it (in any connection), not because it was acked. */
  private wasRemoved(jobId: string): boolean {
    const enqueuedAt = this.sql.removedEnqueuedAt.get(jobId) as number | undefined;
    return enqueuedAt !== undefined && enqueuedAt === this.waitedJobs.get(jobId);
  }

  private notify(queue: string, notification: StoreNotification): void {
    this.notifications.notify(queue, notification);
  }

  private resolveCompletion(jobId: string, result: CompletionResult): void {
    this.waiters.resolve(jobId, result);
  }
}

/**
 * The path SQLite names the log after (symlinks resolved), absolute so a
 * later `chdir` does not matter; `undefined` if it cannot be resolved (no
 * file checks then).
 */
function realPath(path: string): string | undefined {
  try {
    return realpathSync(resolve(path));
  } catch {
    return undefined;
  }
}

/** `dev:ino` of a file; `undefined` when it does not exist, `null` when it cannot be read. */
function fileIdentity(file: string): string | undefined | null {
  try {
    const stats = statSync(file, { bigint: true, throwIfNoEntry: false });
    return stats && `${stats.dev}:${stats.ino}`;
  } catch {
    return null;
  }
}

function idInUse(id: string): InvalidArgumentError {
  return new InvalidArgumentError('id', `job id "${id}" is already in use`);
}
