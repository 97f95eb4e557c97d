/**
 * What the SQLite store learns of other connections to its file (other
 * processes, or other stores in this one): their commits, seen by polling
 * `PRAGMA data_version`, and the file itself being deleted or replaced
 * under it, seen by comparing file identities.
 */
import { realpathSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Clock } from '../../core/clock.js';
import { HOUSEKEEPING } from '../../core/clock.js';
import { StoreCorruptedError } from '../../core/errors.js';
import type { CompletionResult, StoreNotification } from '../../core/queue-store.js';
import { sqliteCode } from './sqlite-errors.js';
import type { CancelledClaimRow, JobRow } from './sqlite-rows.js';
import { rowToRecord } from './sqlite-rows.js';
import type { Statements } from './sqlite-statements.js';

/**
 * Least time between two checks that the database file and its `-wal` are
 * still the files the store opened (two `stat` calls, made before a commit
 * and on the housekeeping timers): it bounds the commits that can go to a
 * deleted write-ahead log before the store stops.
 */
const FILE_CHECK_INTERVAL_MS = 100;

/** The database file and its `-wal` as opened, to tell when either is no longer the file opened. */
export class OpenedFiles {
  private checkedAt: number;

  private constructor(
    private readonly path: string,
    /** Device and inode (`dev:ino`) of each file at open, by real path; `undefined` while it does not exist. */
    private readonly ids: Map<string, string | undefined>,
    now: number,
  ) {
    this.checkedAt = now;
  }

  /** The files behind `path`; none for `':memory:'` or a path that cannot be resolved. */
  static of(path: string, now: number): OpenedFiles | undefined {
    const real = path === ':memory:' ? undefined : realPath(path);
    if (real === undefined) return undefined;
    return new OpenedFiles(path, new Map([real, `${real}-wal`].map((file) => [file, fileIdentity(file) ?? undefined])), now);
  }

  /**
   * The error to stop the store with when the database file or its `-wal`
   * is no longer the file opened: after the log was deleted, this
   * connection goes on writing to the unlinked file, and every other
   * connection starts a new log without those commits. Checked at most
   * every `FILE_CHECK_INTERVAL_MS` of clock time.
   */
  check(now: number): StoreCorruptedError | undefined {
    if (now >= this.checkedAt && now - this.checkedAt < FILE_CHECK_INTERVAL_MS) return undefined;
    this.checkedAt = now;
    for (const [file, opened] of this.ids) {
      const current = fileIdentity(file);
      if (current === null) continue; // cannot stat it (permissions): no verdict
      if (opened === undefined) {
        this.ids.set(file, current);
        continue;
      }
      if (current === opened) continue;
      const what = current === undefined ? 'was deleted' : 'was replaced by another file';
      return new StoreCorruptedError(
        `${file} ${what} while the store had ${this.path} open: commits made since may be lost, and going on would lose more; ` +
          'stop every process using the file, then check it (PRAGMA integrity_check) or restore a backup',
      );
    }
    return undefined;
  }
}

/** What the change poll needs of its store. */
export interface ChangeHost {
  /** Someone listens or waits (and the store still serves): the poll runs only then. */
  wanted(): boolean;
  /** Throws `StoreCorruptedError` (having stopped the store) when the files are no longer the ones opened. */
  verifyFiles(): void;
  /** Maps a driver error; a damaged file stops the store. */
  mapError(error: unknown, operation: string): unknown;
  subscribedQueues(): Iterable<string>;
  waitedJobIds(): Iterable<string>;
  notify(queue: string, notification: StoreNotification): void;
  completed(jobId: string, result: CompletionResult): void;
  /** Re-arms the due-job wakeup (another connection may have scheduled a job). */
  rearmWake(): void;
}

/**
 * Reacts to commits of other connections (`PRAGMA data_version` moves only
 * for those): wakes subscribers, reports remote cancels of claimed jobs,
 * settles cross-process waiters and re-arms the due-job wakeup.
 */
export class ChangePoll {
  private cancelTimer: (() => void) | undefined;
  private lastDataVersion: number;
  /** `enqueuedAt` of each job waited for, as seen when the wait began: a record of its removal must match it. */
  private readonly waitedJobs = new Map<string, number>();
  /** Remote cancels already reported, as `id token`, so each is emitted once. */
  private reportedCancels = new Set<string>();

  constructor(
    private readonly sql: Statements,
    private readonly clock: Clock,
    private readonly intervalMs: number,
    private readonly host: ChangeHost,
  ) {
    this.lastDataVersion = sql.dataVersion.get() as number;
  }

  /** Starts or stops the poll as `host.wanted()` says. */
  update(): void {
    const wanted = this.host.wanted();
    if (wanted && !this.cancelTimer) {
      const tick = (): void => {
        this.cancelTimer = undefined;
        if (!this.host.wanted()) return;
        this.poll();
        // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- update() may have cleared the timer
        if (!this.cancelTimer) this.update();
      };
      this.cancelTimer = this.clock.setTimer(tick, this.intervalMs, HOUSEKEEPING);
    } else if (!wanted) {
      this.stop();
    }
  }

  stop(): void {
    this.cancelTimer?.();
    this.cancelTimer = undefined;
  }

  /** A wait for a live job began; `enqueuedAt` tells its removal from a later job reusing the id. */
  watch(jobId: string, enqueuedAt: number): void {
    this.waitedJobs.set(jobId, enqueuedAt);
  }

  /** No one waits for `jobId` any more. */
  unwatch(jobId: string): void {
    this.waitedJobs.delete(jobId);
  }

  /** A cancel this store requested and reported itself: the poll must not report it a second time. */
  cancelReported(jobId: string, claimToken: string | null): void {
    this.reportedCancels.add(`${jobId} ${claimToken ?? ''}`);
  }

  private poll(): void {
    let version: number;
    try {
      this.host.verifyFiles();
      version = this.sql.dataVersion.get() as number;
    } catch (error) {
      if (!(error instanceof StoreCorruptedError)) this.host.mapError(error, 'change poll');
      return;
    }
    if (version === this.lastDataVersion) return;
    this.lastDataVersion = version;
    try {
      for (const queue of this.host.subscribedQueues()) this.host.notify(queue, { type: 'jobsAvailable', queue });
      const seen = new Set<string>();
      for (const row of this.sql.cancelledClaims.all() as CancelledClaimRow[]) {
        const key = `${row.id} ${row.claim_token}`;
        seen.add(key);
        if (!this.reportedCancels.has(key)) this.host.notify(row.queue, { type: 'cancelRequested', queue: row.queue, jobId: row.id });
      }
      this.reportedCancels = seen;
      for (const jobId of [...this.host.waitedJobIds()]) {
        const row = this.sql.getJob.get(jobId) as JobRow | undefined;
        if (!row) this.host.completed(jobId, this.wasRemoved(jobId) ? { kind: 'notFound' } : { kind: 'completed' });
        else if (row.status === 'done' || row.status === 'dead') this.host.completed(jobId, { kind: 'completed', job: rowToRecord(row) });
      }
      this.host.rearmWake();
    } catch (error) {
      if (sqliteCode(error) === undefined) throw error;
      // busy or I/O: the next poll tries again; a damaged file stops the store
      this.host.mapError(error, 'change poll');
      this.lastDataVersion = -1;
    }
  }

  /** The job waited for is gone because `cancel` removed it (in any connection), not because it was acked. */
  private wasRemoved(jobId: string): boolean {
    const enqueuedAt = this.sql.removedEnqueuedAt.get(jobId) as number | undefined;
    return enqueuedAt !== undefined && enqueuedAt === this.waitedJobs.get(jobId);
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
