/**
 * The rows the store's statements return, and their conversion to
 * `JobRecord`s. Each row type and the column list its statements select
 * come from one declaration, so they cannot drift apart.
 */
import { parseHeadersJson } from '../../core/headers.js';
import { jobRecord } from '../../core/job-record.js';
import type { JobRecord, JobStatus } from '../../core/queue-store.js';

/** Declares a column of type `T` (the value only carries the type). */
const column = <T>(): T => undefined as T;

/**
 * The columns of a full record: the keys are the selected columns, the
 * types what better-sqlite3 returns for them. They are also the columns of
 * versions 1 and 2 of `taquba_jobs`, which the 1 → 2 migration copies: a
 * column added here must be left out of that copy.
 */
const JOB_ROW = {
  id: column<string>(),
  queue: column<string>(),
  status: column<JobStatus>(),
  payload: column<Buffer>(),
  headers: column<string>(),
  attempts: column<number>(),
  max_attempts: column<number>(),
  priority: column<number>(),
  enqueued_at: column<number>(),
  claimed_at: column<number | null>(),
  lease_expires_at: column<number | null>(),
  run_at: column<number | null>(),
  last_error: column<string | null>(),
  dedup_key: column<string | null>(),
  completed_at: column<number | null>(),
  failed_at: column<number | null>(),
  cancel_requested: column<number>(),
  claim_token: column<string | null>(),
};

/** A full `taquba_jobs` row as better-sqlite3 returns it (`SELECT ${JOB_COLUMNS}`). */
export type JobRow = typeof JOB_ROW;
type JobColumn = keyof JobRow;

/** Columns of a full record, in `SELECT` form. */
export const JOB_COLUMNS = Object.keys(JOB_ROW).join(', ');

/** A full row plus what the job carries for the reaper's dead-letter of it (`reapDead` only). */
export type ReapedRow = JobRow & { reaper_dead_letter: string | null };

/** The columns a claim returns: the ones it does not set itself. */
const CLAIM_ROW = [
  'id',
  'payload',
  'headers',
  'attempts',
  'max_attempts',
  'priority',
  'enqueued_at',
  'last_error',
  'cancel_requested',
  'claim_token',
] as const satisfies readonly JobColumn[];
export type ClaimRow = Pick<JobRow, (typeof CLAIM_ROW)[number]> & { claim_token: string };
export const CLAIM_COLUMNS = CLAIM_ROW.join(', ');

/** What a settlement, renewal or requeue checks of the job it changes. */
const OWNER_ROW = ['queue', 'status', 'claim_token', 'cancel_requested', 'attempts', 'max_attempts'] as const satisfies readonly JobColumn[];
export type OwnerRow = Pick<JobRow, (typeof OWNER_ROW)[number]>;
export const OWNER_COLUMNS = OWNER_ROW.join(', ');

/** What deleting an owned job returns (the ack fast path). */
const DELETED_ROW = ['queue', 'cancel_requested'] as const satisfies readonly JobColumn[];
export type DeletedRow = Pick<JobRow, (typeof DELETED_ROW)[number]>;
export const DELETED_COLUMNS = DELETED_ROW.join(', ');

/** A job the reaper put back to pending. */
const REQUEUED_ROW = ['id', 'queue'] as const satisfies readonly JobColumn[];
export type RequeuedRow = Pick<JobRow, (typeof REQUEUED_ROW)[number]>;
export const REQUEUED_COLUMNS = REQUEUED_ROW.join(', ');

/** A claimed job someone asked to cancel (what the change poll reports). */
const CANCELLED_CLAIM_ROW = ['id', 'queue', 'claim_token'] as const satisfies readonly JobColumn[];
export type CancelledClaimRow = Pick<JobRow, (typeof CANCELLED_CLAIM_ROW)[number]> & { claim_token: string };
export const CANCELLED_CLAIM_COLUMNS = CANCELLED_CLAIM_ROW.join(', ');

/**
 * The record of a job the claim statement returned, completed with what
 * the claim itself set: a pending job has no run time, completion or
 * failure time, and the claim released its dedup key.
 */
export function claimedRecord(row: ClaimRow, queue: string, now: number, leaseExpiresAt: number): JobRecord {
  return jobRecord({
    id: row.id,
    queue,
    payload: new Uint8Array(row.payload),
    headers: parseHeadersJson(row.headers),
    status: 'claimed',
    attempts: row.attempts,
    maxAttempts: row.max_attempts,
    priority: row.priority,
    enqueuedAt: row.enqueued_at,
    cancelRequested: row.cancel_requested !== 0,
    claimedAt: now,
    leaseExpiresAt,
    lastError: row.last_error,
  });
}

/** A detached record with absent optional fields omitted (plain `Uint8Array` payload). */
export function rowToRecord(row: JobRow): JobRecord {
  return jobRecord({
    id: row.id,
    queue: row.queue,
    payload: new Uint8Array(row.payload),
    headers: parseHeadersJson(row.headers),
    status: row.status,
    attempts: row.attempts,
    maxAttempts: row.max_attempts,
    priority: row.priority,
    enqueuedAt: row.enqueued_at,
    cancelRequested: row.cancel_requested !== 0,
    claimedAt: row.claimed_at,
    leaseExpiresAt: row.lease_expires_at,
    runAt: row.run_at,
    lastError: row.last_error,
    dedupKey: row.dedup_key,
    completedAt: row.completed_at,
    failedAt: row.failed_at,
  });
}
