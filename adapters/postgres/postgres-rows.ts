/** Conversions between table rows (or their `to_jsonb` form) and `JobRecord`s. */
import { parseHeadersJson } from '../../core/headers.js';
import { jobRecord } from '../../core/job-record.js';
import type { JobRecord, JobStatus } from '../../core/queue-store.js';

/** A `jobs` row as the driver returns it (int8 as string, bytea as Buffer) or as `to_jsonb` renders it (numbers, `\x` hex). */
export interface JobRow {
  id: string;
  queue: string;
  payload: Uint8Array | string;
  headers: string;
  status: JobStatus;
  attempts: number | string;
  max_attempts: number | string;
  priority: number | string;
  enqueued_at: number | string;
  claimed_at: number | string | null;
  lease_expires_at: number | string | null;
  run_at: number | string | null;
  last_error: string | null;
  dedup_key: string | null;
  completed_at: number | string | null;
  failed_at: number | string | null;
  cancel_requested: boolean;
  token?: string | null;
}

function bytes(value: Uint8Array | string): Uint8Array {
  if (typeof value === 'string') return new Uint8Array(Buffer.from(value.startsWith('\\x') ? value.slice(2) : value, 'hex'));
  return new Uint8Array(value.buffer.slice(value.byteOffset, value.byteOffset + value.byteLength));
}

export function toRecord(row: JobRow): JobRecord {
  const time = (value: number | string | null): number | null => (value === null ? null : Number(value));
  return jobRecord({
    id: row.id,
    queue: row.queue,
    payload: bytes(row.payload),
    headers: parseHeadersJson(row.headers),
    status: row.status,
    attempts: Number(row.attempts),
    maxAttempts: Number(row.max_attempts),
    priority: Number(row.priority),
    enqueuedAt: Number(row.enqueued_at),
    cancelRequested: row.cancel_requested,
    claimedAt: time(row.claimed_at),
    leaseExpiresAt: time(row.lease_expires_at),
    runAt: time(row.run_at),
    lastError: row.last_error,
    dedupKey: row.dedup_key,
    completedAt: time(row.completed_at),
    failedAt: time(row.failed_at),
  });
}

export function base64(value: Uint8Array): string {
  return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64');
}
