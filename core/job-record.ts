import type { JobRecord } from './queue-store.js';

type Optional = 'claimedAt' | 'leaseExpiresAt' | 'runAt' | 'lastError' | 'dedupKey' | 'completedAt' | 'failedAt';

/** A job's fields as a store holds them: optional ones may be `undefined` or `null` (SQL). */
export type JobFields = Omit<JobRecord, Optional> & { [K in Optional]?: JobRecord[K] | null };

const OPTIONAL_FIELDS: readonly Optional[] = ['claimedAt', 'leaseExpiresAt', 'runAt', 'lastError', 'dedupKey', 'completedAt', 'failedAt'];

/**
 * The public record every adapter hands out: absent optional fields are
 * omitted (never `undefined` or `null`), so records from different stores
 * compare equal field for field. Payload and headers are taken as given:
 * pass copies.
 */
export function jobRecord(fields: JobFields): JobRecord {
  const record: JobRecord = {
    id: fields.id,
    queue: fields.queue,
    payload: fields.payload,
    headers: fields.headers,
    status: fields.status,
    attempts: fields.attempts,
    maxAttempts: fields.maxAttempts,
    priority: fields.priority,
    enqueuedAt: fields.enqueuedAt,
    cancelRequested: fields.cancelRequested,
  };
  for (const key of OPTIONAL_FIELDS) {
    const value = fields[key];
    if (value !== undefined && value !== null) (record as unknown as Record<string, unknown>)[key] = value;
  }
  return record;
}
