/**
 * The reference model's state: plain arrays and maps, counters other than
 * `done` recomputed by counting, and the few pure helpers the operations
 * share (copying the state, public records, preconditions, claim order).
 */
import { copyBytes } from '../../core/bytes.js';
import { copyHeaders } from '../../core/headers.js';
import { compareIds } from '../../core/ids.js';
import type { JobRecord, KvPrecondition, KvWrite, ReaperDeadLetterBranch, ReaperTemplate } from '../../core/queue-store.js';
import { bytesEqual } from '../../core/store-validation.js';

/** A job in the model: the record's fields plus the token of the current claim and the branch it carries for its reaper. */
export interface ModelJob extends JobRecord {
  token?: string;
  reaperDeadLetter?: ReaperDeadLetterBranch;
}

/** Everything the model knows. Counters other than `done` are never stored: they are counted. */
export interface ModelState {
  /** Every live job, in insertion order (order is irrelevant: claims sort explicitly). */
  jobs: ModelJob[];
  /** Kv records; one with `expiresAt <= now` is gone for every read (`liveKv`), and a reap deletes it. */
  kv: Map<string, { value: Uint8Array; expiresAt?: number }>;
  /** Cumulative acks per queue. */
  doneCount: Map<string, number>;
  /** Queues that ever held a job. */
  queues: Set<string>;
  /** Reaper templates by queue (kept as copies, never changed in place). */
  reaperTemplates: Map<string, ReaperTemplate>;
  tokenSeq: number;
}

/** What the model tells its wrapper after a change (used by `ModelStore` for notifications). */
export interface ModelEvents {
  becamePending: Set<string>;
  cancelRequested: Array<{ queue: string; jobId: string }>;
  deadLettered: JobRecord[];
  /** Jobs that reached an end: acked (`record` when retained), dead (`record`), or removed by cancel (`removed`). */
  finished: Array<{ id: string; record?: JobRecord; removed?: boolean }>;
}

export const noEvents = (): ModelEvents => ({ becamePending: new Set(), cancelRequested: [], deadLettered: [], finished: [] });

export function cloneState(state: ModelState): ModelState {
  return {
    jobs: state.jobs.map((job) => ({ ...job })),
    kv: new Map(state.kv),
    doneCount: new Map(state.doneCount),
    queues: new Set(state.queues),
    reaperTemplates: new Map(state.reaperTemplates),
    tokenSeq: state.tokenSeq,
  };
}

/** A detached public record: absent optional fields are omitted, never `undefined`. */
export function modelRecord(job: ModelJob): JobRecord {
  const record: JobRecord = {
    id: job.id,
    queue: job.queue,
    payload: job.payload.slice(),
    headers: copyHeaders(job.headers),
    status: job.status,
    attempts: job.attempts,
    maxAttempts: job.maxAttempts,
    priority: job.priority,
    enqueuedAt: job.enqueuedAt,
    cancelRequested: job.cancelRequested,
  };
  if (job.claimedAt !== undefined) record.claimedAt = job.claimedAt;
  if (job.leaseExpiresAt !== undefined) record.leaseExpiresAt = job.leaseExpiresAt;
  if (job.runAt !== undefined) record.runAt = job.runAt;
  if (job.lastError !== undefined) record.lastError = job.lastError;
  if (job.dedupKey !== undefined) record.dedupKey = job.dedupKey;
  if (job.completedAt !== undefined) record.completedAt = job.completedAt;
  if (job.failedAt !== undefined) record.failedAt = job.failedAt;
  return record;
}

/** The value of a kv record that has not expired at `now`. */
export function liveKv(state: ModelState, key: string, now: number): Uint8Array | undefined {
  const entry = state.kv.get(key);
  return entry === undefined || (entry.expiresAt !== undefined && entry.expiresAt <= now) ? undefined : entry.value;
}

/** Writes a kv record: permanent, or until `now + ttlMs`. */
export function writeKv(state: ModelState, write: KvWrite, now: number): void {
  state.kv.set(write.key, write.ttlMs === undefined ? { value: copyBytes(write.value) } : { value: copyBytes(write.value), expiresAt: now + write.ttlMs });
}

/** Whether a kv precondition holds at `now`: the record exists, has not expired and is byte-equal. */
export function holds(state: ModelState, precondition: KvPrecondition, now: number): boolean {
  const current = liveKv(state, precondition.key, now);
  return current !== undefined && bytesEqual(current, precondition.equals);
}

/** Claim order: lowest priority number, then lowest id in id order (UTF-8 bytes, `compareIds`). */
export function claimOrder(a: ModelJob, b: ModelJob): number {
  if (a.priority !== b.priority) return a.priority - b.priority;
  return compareIds(a.id, b.id);
}
