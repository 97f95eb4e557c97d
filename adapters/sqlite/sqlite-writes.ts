/**
 * The write path of the SQLite store: every write operation runs in a
 * `BEGIN IMMEDIATE` transaction, and with group commit the operations
 * called in one event-loop turn share one. Inside it, operations record
 * counter moves (written as one row update per queue at the end) and the
 * notifications, completions and wakeups they cause, which are delivered
 * only once the transaction committed.
 */
import type BetterSqlite3 from 'better-sqlite3';
import { StoreClosedError } from '../../core/errors.js';
import type { CompletionResult, JobStatus, StoreNotification } from '../../core/queue-store.js';
import { endsBatch } from './sqlite-errors.js';
import type { Statements } from './sqlite-statements.js';

/** What the write path needs of its store. */
export interface WriteHost {
  isClosed(): boolean;
  /** Throws when the files are no longer the ones opened (checked before every commit). */
  verifyFiles(): void;
  /** The library's error for a failure of `operation` (a damaged file stops the store). */
  mapError(error: unknown, operation: string): unknown;
  /** Delivers what a committed transaction caused. */
  notify(queue: string, notification: StoreNotification): void;
  completed(jobId: string, result: CompletionResult): void;
  scheduled(runAt: number): void;
}

type Counts = [pending: number, claimed: number, scheduled: number, dead: number, done: number];
const COUNT_INDEX = { pending: 0, claimed: 1, scheduled: 2, dead: 3, done: 4 } as const satisfies Record<JobStatus, number>;
type PendingWrite = { operation: string; fn: () => unknown; resolve: (value: unknown) => void; reject: (error: unknown) => void };
/** Outcome of one operation of a group-commit batch. */
type BatchResult = { ok: true; value: unknown } | { ok: false; error: unknown };
type Outbound = { queue: string; notification: StoreNotification };

export class WritePipeline {
  private readonly inTransaction: BetterSqlite3.Transaction<(fn: () => unknown) => unknown>;
  /** Queues whose counter row is known to exist (rows are never deleted). */
  private readonly knownQueues = new Set<string>();
  // State of the transaction in progress: counter deltas of the operation
  // running and of the batch so far, and what is delivered after the commit.
  private readonly deltas = new Map<string, Counts>();
  private readonly batchDeltas = new Map<string, Counts>();
  private newQueues: string[] = [];
  private outbox: Outbound[] = [];
  private completions: Array<[string, CompletionResult]> = [];
  private earliestScheduled: number | undefined;
  private pendingWrites: PendingWrite[] = [];
  private flushScheduled = false;

  constructor(
    db: BetterSqlite3.Database,
    private readonly sql: Statements,
    private readonly groupCommit: boolean,
    private readonly host: WriteHost,
  ) {
    this.inTransaction = db.transaction((fn: () => unknown) => fn());
  }

  /** No write is queued for the next group commit. */
  get idle(): boolean {
    return this.pendingWrites.length === 0;
  }

  /**
   * Runs a write operation. With group commit, the operations called in one
   * event-loop turn run in call order inside one transaction, each in its
   * own savepoint (an operation that throws is rolled back alone), and the
   * promise of each settles once that transaction committed. Without it,
   * each runs in its own transaction. Either way, notifications and
   * completions are delivered only after the commit, and nothing of an
   * operation is visible unless it committed.
   */
  write<T>(operation: string, fn: () => T): Promise<T> {
    if (!this.groupCommit) {
      try {
        return Promise.resolve(this.now(operation, fn));
      } catch (error) {
        return Promise.reject(error);
      }
    }
    return new Promise<T>((resolve, reject) => {
      this.pendingWrites.push({ operation, fn, resolve: resolve as (value: unknown) => void, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** Runs `fn` in its own `BEGIN IMMEDIATE` transaction, now. */
  now<T>(operation: string, fn: () => T): T {
    this.host.verifyFiles();
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
      throw this.host.mapError(error, operation);
    }
    this.afterCommit();
    return result;
  }

  /** Commits every queued write operation in one transaction (see `write`). */
  flush(): void {
    this.flushScheduled = false;
    const batch = this.pendingWrites;
    this.pendingWrites = [];
    if (batch.length === 0) return;
    if (this.host.isClosed()) {
      for (const item of batch) item.reject(new StoreClosedError());
      return;
    }
    if (batch.length === 1) {
      const item = batch[0] as PendingWrite;
      try {
        item.resolve(this.now(item.operation, item.fn));
      } catch (error) {
        item.reject(error);
      }
      return;
    }
    let results: BatchResult[];
    try {
      this.host.verifyFiles();
      results = this.runBatch(batch);
    } catch (error) {
      this.resetTransactionState();
      const mapped = this.host.mapError(error, batch.map((item) => item.operation).join('+'));
      for (const item of batch) item.reject(mapped);
      return;
    }
    this.afterCommit();
    batch.forEach((item, i) => {
      const result = results[i] as BatchResult;
      if (result.ok) item.resolve(result.value);
      else item.reject(this.host.mapError(result.error, item.operation));
    });
  }

  // ---- what operations record inside the transaction --------------------------------

  /** Moves a queue's counter by `by` (written at the end of the transaction). */
  count(queue: string, status: JobStatus, by: number): void {
    let counts = this.deltas.get(queue);
    if (!counts) this.deltas.set(queue, (counts = [0, 0, 0, 0, 0]));
    counts[COUNT_INDEX[status]] += by;
  }

  /** Wakes the queue's subscribers after the commit. */
  jobsAvailable(queue: string): void {
    // Successive enqueues to one queue need one wakeup. (A rollback truncates the outbox to a
    // mark, which never drops an entry an operation before the mark pushed.)
    const last = this.outbox[this.outbox.length - 1];
    if (last?.notification.type === 'jobsAvailable' && last.queue === queue) return;
    this.outbox.push({ queue, notification: { type: 'jobsAvailable', queue } });
  }

  /** Delivers `notification` to the queue's subscribers after the commit. */
  notifyAfterCommit(queue: string, notification: StoreNotification): void {
    this.outbox.push({ queue, notification });
  }

  /** Ends the waits for `jobId` after the commit. */
  completedAfterCommit(jobId: string, result: CompletionResult): void {
    this.completions.push([jobId, result]);
  }

  /** A job falls due at `runAt`: the wakeup is armed for it after the commit. */
  scheduledAt(runAt: number): void {
    if (this.earliestScheduled === undefined || runAt < this.earliestScheduled) this.earliestScheduled = runAt;
  }

  // ---- internals ----------------------------------------------------------------------

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
    for (const { queue, notification } of outbox) this.host.notify(queue, notification);
    for (const [jobId, result] of completions) this.host.completed(jobId, result);
    if (scheduled !== undefined) this.host.scheduled(scheduled);
  }
}
