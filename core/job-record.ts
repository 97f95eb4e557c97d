import type { JobRecord } from './queue-store.js';

type Optional = 'claimedAt' | 'leaseExpiresAt' | 'runAt' | 'lastError' | 'dedupKey' | 'completedAt' | 'failedAt';

/**
 * A job's fields as a store holds them: optional ones may be absent, `undefined`
 * (a store's in-memory slot for a field it does not have) or `null` (SQL); the
 * record built from them leaves all three out.
 */
export type JobFields = Omit<JobRecord, Optional> & { [K in Optional]?: JobRecord[K] | null | undefined };

/**
 * The public record every adapter hands out: absent optional fields are
 * omitted (never `undefined` or `null`), so records from different stores
 * compare equal field for field. Payload and headers are taken as given
 * (or from `payload`/`headers` when passed): pass copies.
 */
export function jobRecord(fields: JobFields, payload: Uint8Array = fields.payload, headers: JobRecord['headers'] = fields.headers): JobRecord {
  const record: JobRecord = {
    id: fields.id,
    queue: fields.queue,
    payload,
    headers,
    status: fields.status,
    attempts: fields.attempts,
    maxAttempts: fields.maxAttempts,
    priority: fields.priority,
    enqueuedAt: fields.enqueuedAt,
    cancelRequested: fields.cancelRequested,
  };
  // Written out field by field (not a loop over names): records then share a few hidden classes.
  if (fields.claimedAt != null) record.claimedAt = fields.claimedAt;
  if (fields.leaseExpiresAt != null) record.leaseExpiresAt = fields.leaseExpiresAt;
  if (fields.runAt != null) record.runAt = fields.runAt;
  if (fields.lastError != null) record.lastError = fields.lastError;
  if (fields.dedupKey != null) record.dedupKey = fields.dedupKey;
  if (fields.completedAt != null) record.completedAt = fields.completedAt;
  if (fields.failedAt != null) record.failedAt = fields.failedAt;
  return record;
}
