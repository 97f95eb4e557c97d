/** Conversions between `taquba_jobs` rows and `JobRecord`s. */
import { parseHeadersJson } from '../../core/headers.js';
import { jobRecord } from '../../core/job-record.js';
import type { JobRecord, JobStatus } from '../../core/queue-store.js';

/** A `taquba_jobs` row as better-sqlite3 returns it. */
export interface JobRow {
  id: string;
  queue: string;
  status: JobStatus;
  payload: Buffer;
  headers: string;
  attempts: number;
  max_attempts: number;
  priority: number;
  enqueued_at: number;
  claimed_at: number | null;
  lease_expires_at: number | null;
  run_at: number | null;
  last_error: string | null;
  dedup_key: string | null;
  completed_at: number | null;
  failed_at: number | null;
  cancel_requested: number;
  claim_token: string | null;
  /** Only where a statement asks for it. */
  reaper_dead_letter?: string | null;
}

/** Columns of a full record, in `SELECT` form. */
export const JOB_COLUMNS =
  'id, queue, status, payload, headers, attempts, max_attempts, priority, enqueued_at, claimed_at, lease_expires_at, run_at, last_error, dedup_key, completed_at, failed_at, cancel_requested, claim_token';

/** The columns a claim returns: the ones it does not set itself. */
export const CLAIM_RETURNING = 'id, payload, headers, attempts, max_attempts, priority, enqueued_at, last_error, cancel_requested, claim_token';

/**
 * The record of a job the claim statement returned in raw mode
 * (`CLAIM_RETURNING` order), completed with what the claim itself set: a
 * pending job has no run time, completion or failure time, and the claim
 * released its dedup key. Rows as arrays of only these columns: better-sqlite3
 * builds row objects through V8's slow property path, and copies every
 * returned column twice.
 */
export function claimedRecord(v: unknown[], queue: string, now: number, leaseExpiresAt: number): JobRecord {
  return jobRecord({
    id: v[0] as string,
    queue,
    payload: new Uint8Array(v[1] as Buffer),
    headers: parseHeadersJson(v[2] as string),
    status: 'claimed',
    attempts: v[3] as number,
    maxAttempts: v[4] as number,
    priority: v[5] as number,
    enqueuedAt: v[6] as number,
    cancelRequested: (v[8] as number) !== 0,
    claimedAt: now,
    leaseExpiresAt,
    lastError: v[7] as string | null,
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
