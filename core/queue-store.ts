/**
 * The `QueueStore` contract: the queue semantics that every
 * storage adapter (memory, SQLite, PostgreSQL, third-party) implements and
 * that the conformance suite (`taquba-workflow/conformance`) checks.
 *
 * General rules for adapter authors:
 * - Every method is atomic: it commits entirely or not at all, and no
 *   concurrent caller (task, process or host, depending on the adapter) ever
 *   observes a half-applied change.
 * - Times are integer epoch milliseconds read from the store's injected
 *   `Clock` (or, for shared databases, a clock all hosts agree on), never
 *   `Date.now()`. Housekeeping timers (reaper, promotion, wakeups) pass
 *   `HOUSEKEEPING` to `setTimer`, so they never keep a process alive.
 * - A store accepts `StoreOptions` (clock, queue configs,
 *   `backgroundMaintenance`, intervals) and honours all of them.
 * - Arguments are checked before state, with the checks of
 *   core/store-validation.ts: a call with a bad argument fails with
 *   `InvalidArgumentError` (or `KvValueTooLargeError`) even when it would
 *   also fail on state (a stale token, an id in use). A call that throws
 *   changes nothing.
 * - Records handed out are copies: mutating them never changes the store,
 *   and the store never keeps the caller's objects or byte arrays (it may
 *   read them until the call's promise settles, as a store that batches
 *   writes does; a caller changes them only after that). Node `Buffer`s
 *   included: their `slice()` is a view, so copy with `copyBytes`.
 * - "Id order" (claim tie-breaks among equal priorities, `deadJobs` pages,
 *   the order a batch locks jobs in) is the order of the ids' UTF-8 bytes,
 *   which is Unicode code point order: `compareIds` (core/ids.ts) in
 *   JavaScript, a byte-wise collation in SQL (SQLite's BINARY, PostgreSQL's
 *   "C"). Not JavaScript's `<`, which compares UTF-16 code units.
 * - Errors are the typed classes of `core/errors.ts`; driver failures that
 *   may succeed on retry are wrapped in `StoreUnavailableError` (transient)
 *   with the driver error as `cause`.
 * - Nothing here is workflow-specific: stores hold no workflow logic.
 */

/** Lifecycle of a job. */
export type JobStatus = 'pending' | 'scheduled' | 'claimed' | 'done' | 'dead';

/** Header map. Stores must keep keys such as `__proto__` as plain data. */
export type Headers = Record<string, string>;

/** A job as stored. Optional fields are absent (not `undefined`, not null) when unset: build records with `jobRecord`. */
export interface JobRecord {
  id: string;
  queue: string;
  payload: Uint8Array;
  headers: Headers;
  status: JobStatus;
  /** Claims taken so far (incremented by every claim; reset only by `requeueDead`). */
  attempts: number;
  maxAttempts: number;
  priority: number;
  enqueuedAt: number;
  /** Set while `claimed`, and kept afterwards as the last claim time. */
  claimedAt?: number;
  /** Set only while `claimed`. */
  leaseExpiresAt?: number;
  /** Set only while `scheduled`. */
  runAt?: number;
  lastError?: string;
  /** Present only while the job is pending or scheduled: a claim releases it. */
  dedupKey?: string;
  /** Set when the job became `done`. */
  completedAt?: number;
  /** Set when the job became `dead`. */
  failedAt?: number;
  /** A cancel was requested while the job was claimed. */
  cancelRequested: boolean;
}

/** Options of one enqueue. */
export interface EnqueueOptions {
  /**
   * Caller-chosen id. Must not be held by any job record in the store, in
   * any status (done and dead included); ids of deleted jobs may be reused.
   * Otherwise the store generates one: ids it generates in sequence sort in
   * the order they were generated (`newId`, a monotonic ULID).
   */
  id?: string;
  headers?: Headers;
  /** Earliest claim time. At or before now: `pending`; later: `scheduled`. Not with `delayMs`. */
  runAt?: number;
  /**
   * Earliest claim time as a delay from the store's own clock at commit:
   * `runAt = now + delayMs`, with `now` read where the job is committed (the
   * database's clock for shared stores), so hosts whose clocks disagree still
   * agree on when the job is due. `0` is an immediate enqueue. Not with `runAt`.
   */
  delayMs?: number;
  /** Lower is claimed first. Defaults to the queue's `defaultPriority`. */
  priority?: number;
  /** Defaults to the queue's `maxAttempts`. */
  maxAttempts?: number;
  /** At most one pending-or-scheduled job per `(queue, dedupKey)`. */
  dedupKey?: string;
  /**
   * What the reaper commits, in the same transaction, when it dead-letters
   * this job because its lease expired on its last attempt. Kept with the
   * job for its whole life (copied, like the payload; retries and
   * `requeueDead` keep it); settlements carry their own effects and never
   * apply these. When one of its enqueues names an id already in use, none
   * of these effects apply and the job still goes dead.
   */
  reaperDeadLetter?: ReaperDeadLetterBranch;
}

/**
 * A condition on one kv record, checked inside the commit it guards: the
 * record must exist and be byte-equal to `equals`.
 */
export interface KvPrecondition {
  key: string;
  equals: Uint8Array;
}

/** Effects a job carries for the reaper's dead-letter of it (see `EnqueueOptions.reaperDeadLetter`). */
export interface ReaperDeadLetterBranch {
  /** When given and false at the reaper's commit, the job still goes dead but no effects apply. */
  precondition?: KvPrecondition;
  effects?: Effects;
  /** Applied instead of `effects` when the job's cancel flag is set at the reaper's commit. */
  ifCancelRequested?: Effects;
}

/**
 * Text made from the job being reaped, joined in order: literal strings,
 * the job's id (`{ jobId: true }`) and the values of its headers
 * (`{ header: name }`).
 */
export type JobText = ReadonlyArray<string | JobTextField>;

/** A part of `JobText` read from the job. */
export type JobTextField = { readonly jobId: true } | { readonly header: string };

/** A job a reaper template enqueues: always a new job, with an id the store generates. */
export interface TemplateEnqueue {
  queue: string;
  payload: Uint8Array;
  /** Start from a copy of the reaped job's headers (then `headers` are set over them). */
  copyJobHeaders?: boolean;
  /** Literal headers, set after the copied ones. */
  headers?: Headers;
  dedupKey?: JobText;
}

/** Effects of a reaper template, made from the reaped job. */
export interface TemplateEffects {
  enqueue?: TemplateEnqueue[];
  kvDeletes?: JobText[];
}

/**
 * What the reaper commits for every job of one queue it dead-letters on
 * its last attempt whose job carries no `reaperDeadLetter` of its own: a
 * `ReaperDeadLetterBranch` whose run-specific parts are made from the job
 * (its id and headers) at the reap. Kept by the store, once per queue
 * (`setReaperTemplate`), so every process that reaps applies it and no job
 * has to carry it. A template naming a header the job lacks makes nothing:
 * the job goes dead with no effects, as when the precondition fails.
 */
export interface ReaperTemplate {
  /** The record at `key` must exist and equal the UTF-8 bytes of `equals`. */
  precondition?: { key: JobText; equals: JobText };
  effects?: TemplateEffects;
  /** Made and applied instead of `effects` when the job's cancel flag is set. */
  ifCancelRequested?: TemplateEffects;
}

/** One key-value write. Values are at most `KV_VALUE_MAX_BYTES`. */
export interface KvWrite {
  key: string;
  value: Uint8Array;
  /**
   * Write only if the key does not exist. If it exists, the whole operation
   * (job and every other write) is not applied and the result reports
   * `kvConflict`. Used to make "create once" records race-free across processes.
   */
  ifAbsent?: boolean;
  /**
   * Keep the record for this many milliseconds of the store's clock from
   * the commit (the database's clock for shared stores), a positive
   * integer. From `now + ttlMs` on, the record is gone for every read:
   * `kvGet`, preconditions, `ifValue` and `ifAbsent` see no record, and
   * `reap` deletes it. Without it the record stays until deleted; a write
   * without it makes an expiring record permanent again.
   */
  ttlMs?: number;
}

/** Largest kv value a store accepts (256 KiB). */
export const KV_VALUE_MAX_BYTES = 256 * 1024;

/** Result of an enqueue. */
export type EnqueueResult =
  | { kind: 'new'; id: string }
  /** A pending or scheduled job already holds the dedup key: nothing was written. */
  | { kind: 'alreadyEnqueued'; id: string }
  /** A `KvWrite` with `ifAbsent` found its key present: nothing was written. */
  | { kind: 'kvConflict'; key: string };

/** A job to enqueue, as part of a batch or of settlement effects. */
export interface EnqueueRequest {
  queue: string;
  payload: Uint8Array;
  options?: EnqueueOptions;
}

/**
 * Writes that commit together with a transition, in this order: the
 * enqueues, then the kv writes, then the kv deletes.
 */
export interface Effects {
  /** Jobs to enqueue, each under the dedup rules of `enqueue`. */
  enqueue?: EnqueueRequest[];
  /** Plain writes (`ifAbsent` is not honoured inside effects; `ttlMs` is). */
  kvWrites?: KvWrite[];
  kvDeletes?: string[];
}

/** How a settlement ends a claim. */
export type SettleAction =
  /** Count it done and delete the job (or keep it `done`, with `completedAt`, when the queue retains done jobs). */
  | { type: 'ack' }
  /**
   * Record the error (`lastError`); `dead` (with `failedAt`) when attempts >=
   * maxAttempts, else `scheduled` after the queue's backoff (`retryDelayMs`:
   * `min(base * 2^(attempts-1), max)`), or straight `pending` when the base is 0.
   * `delayMs`, when given, is this retry's delay instead of the queue's
   * backoff (`0`: pending at once): a job with a retry policy of its own
   * (`nackDelayMs` picks the delay).
   */
  | { type: 'nack'; error: string; delayMs?: number }
  /** Straight to `dead`, whatever the attempts. */
  | { type: 'deadLetter'; reason: string };

/** A branch of a settlement: an action and the effects that commit with it. */
export interface SettlementBranch {
  action: SettleAction;
  effects?: Effects;
}

/**
 * What to do with a claim. `ifCancelRequested`, when given, is applied
 * *instead* of the primary branch if the job's `cancelRequested` flag is set
 * at commit time; the store chooses atomically and reports which it applied.
 */
export interface Settlement extends SettlementBranch {
  ifCancelRequested?: SettlementBranch;
  /**
   * Checked in the same commit, before either branch: when it does not hold,
   * the job is acked with no effects at all (neither branch applies) and the
   * result reports `branch: 'stale'`. A job that no longer carries what its
   * settlement would change (a run that already ended, or whose id a newer
   * run now holds) so settles with no effect on anything else.
   */
  precondition?: KvPrecondition;
}

/** The proof of one delivery. Only the current owner can settle or renew. */
export interface ClaimRef {
  jobId: string;
  token: string;
}

/** One claimed job. `job` is the record as it is after the claim. */
export interface Claim extends ClaimRef {
  job: JobRecord;
}

/** Result of a committed settlement. */
export interface SettleResult {
  /** Which branch was applied; `stale` when the precondition failed (acked, no effects). */
  branch: 'primary' | 'cancel' | 'stale';
  /** Status the job ended in: `done` (ack, also when not retained), `pending`, `scheduled` or `dead`. */
  status: Exclude<JobStatus, 'claimed'>;
  /** One result per effect enqueue, in order. */
  enqueued: EnqueueResult[];
}

/** Result of `cancel`. */
export type CancelResult =
  /** The job was pending or scheduled and is gone (with its dedup key); `job` is its last state. */
  | { outcome: 'removed'; job: JobRecord }
  /** The job is claimed; its cancel flag is set. `firstRequest` is false when it already was. */
  | { outcome: 'requested'; job: JobRecord; firstRequest: boolean }
  /** Done, dead or unknown. */
  | { outcome: 'notFound' };

/** Result of `renewLease`. */
export interface RenewResult {
  leaseExpiresAt: number;
  cancelRequested: boolean;
}

/** What one `reap` pass moved. */
export interface ReapReport {
  /** Expired claims put back to `pending`. */
  requeued: string[];
  /**
   * Expired claims on their last attempt, now `dead` with `lastError =
   * "lease expired"`, each committed with the effects it carried
   * (`EnqueueOptions.reaperDeadLetter`), or else those of its queue's
   * reaper template, when their precondition held.
   */
  deadLettered: JobRecord[];
  /** Ids of the dead-lettered jobs whose carried or template effects committed with them, in `deadLettered` order. */
  effectsApplied: string[];
  /** Done jobs deleted by retention. */
  doneSwept: number;
  /** Dead jobs deleted by retention. */
  deadSwept: number;
}

/** Counters of one queue. `done` is cumulative (acks); the others always equal the records in that status. */
export interface QueueStats {
  pending: number;
  claimed: number;
  scheduled: number;
  dead: number;
  done: number;
}

/** Result of `waitForCompletion`. */
export type CompletionResult =
  /** The job was acked (`job` present when retained as done) or went dead (`job.status === 'dead'`). */
  { kind: 'completed'; job?: JobRecord } | { kind: 'timedOut' } | { kind: 'notFound' };

/** Something a waiting worker may want to react to. */
export type StoreNotification =
  /** A job may have become claimable on the queue. */
  | { type: 'jobsAvailable'; queue: string }
  /** A cancel was requested for a claimed job. */
  | { type: 'cancelRequested'; queue: string; jobId: string }
  /** The reaper dead-lettered expired claims (their records, as after the move). */
  | { type: 'deadLettered'; queue: string; jobs: JobRecord[] };

/**
 * The storage contract: these doc comments are its prose (the one place it
 * is written down), the conformance suite is its executable form.
 * docs/writing-an-adapter.md is the guide to implementing it.
 */
export interface QueueStore {
  /**
   * Adds one job, and applies `kvWrites` in the same commit.
   * - With `dedupKey`: if a pending or scheduled job on `queue` holds it,
   *   nothing is written (no kv write either) → `alreadyEnqueued(existingId)`.
   * - With an `ifAbsent` kv write whose key exists: nothing is written → `kvConflict`.
   * - Otherwise the job and every kv write commit → `new(id)`.
   * The checks run in that order (dedup, then `ifAbsent`, then the id), so a
   * dedup hit with an id in use is `alreadyEnqueued`, not an error.
   * Errors: `KvValueTooLargeError`, `InvalidArgumentError` (bad priority,
   * maxAttempts, runAt, id in use); nothing is written on error.
   * `listQueues` lists the queue from its first job on.
   */
  enqueue(queue: string, payload: Uint8Array, options?: EnqueueOptions, kvWrites?: KvWrite[]): Promise<EnqueueResult>;

  /**
   * All-or-nothing enqueue of many jobs; one result per item, in input order.
   * Every item's arguments and ids (against the store and within the batch)
   * are checked before anything is written. An item whose dedup key an
   * earlier item of the same batch took gets `alreadyEnqueued` with that
   * item's id.
   */
  enqueueBatch(queue: string, items: Array<{ payload: Uint8Array; options?: EnqueueOptions }>): Promise<EnqueueResult[]>;

  /**
   * Claims up to `limit` (default 1) pending jobs in `(priority, id)` order
   * (lowest priority number first, then id order: UTF-8 bytes of the id).
   * For each: status `claimed`, `claimedAt = now`, `leaseExpiresAt = now +
   * lease` (`leaseMs` or the queue's `leaseDurationMs`), `attempts + 1`, dedup
   * key released, a fresh claim token (a non-empty string, unique per
   * delivery). A job whose cancel flag is set stays claimable; the flag is
   * reported in the record. Scheduled jobs are not claimable until promoted.
   * Never returns a job twice to concurrent callers. Returns `[]` when
   * nothing is claimable. Concurrent claims may pass over jobs another
   * claim in flight is taking (as `FOR UPDATE SKIP LOCKED` does), so one of
   * them can come back short, or with a later job than a serial claim would
   * take, while the others take the rest; a job no claim takes is never
   * passed over.
   */
  claim(queue: string, options?: { leaseMs?: number; limit?: number }): Promise<Claim[]>;

  /**
   * Ends a claim with one atomic commit of the action and its effects,
   * choosing the `ifCancelRequested` branch when the job's cancel flag is set
   * at commit time; with a `precondition` that does not hold, acks the job
   * and applies no effects (`branch: 'stale'`). A token that no longer owns the job (expired and
   * re-queued, re-claimed, cancelled, settled, dead) changes nothing and
   * throws `LeaseLostError`. An expired lease that the reaper has not yet
   * moved is still owned. The action then applies (see `SettleAction`):
   * in every case the lease ends (`leaseExpiresAt` cleared, the token stops
   * working) and `claimedAt` stays; the branch's effects commit with it.
   * `status` is `done` for an ack even when the job was deleted. An effect
   * enqueue naming an id in use throws `InvalidArgumentError`, and
   * `KvValueTooLargeError` too leaves everything unchanged.
   */
  settle(claim: ClaimRef, settlement: Settlement): Promise<SettleResult>;

  /**
   * Moves the owner's `leaseExpiresAt` to now + `extendMs` and reports the
   * cancel flag. A stale token throws `LeaseLostError`.
   */
  renewLease(claim: ClaimRef, extendMs: number): Promise<RenewResult>;

  /**
   * Cancels a job: pending or scheduled → deleted with its dedup key
   * (`effects` commit with the removal and only then); claimed → the cancel
   * flag is persisted and the claiming process is notified (`cancelRequested`
   * notification); done, dead or unknown → `notFound`.
   */
  cancel(jobId: string, effects?: Effects): Promise<CancelResult>;

  /**
   * Moves every expired claim (`leaseExpiresAt <= now`): to `dead` with
   * `lastError = "lease expired"` and `failedAt = now` when `attempts >=
   * maxAttempts`, otherwise back to `pending` (attempts unchanged, lease
   * fields cleared). Then deletes done jobs older than `keepDoneJobsMs`
   * (by `completedAt`), dead jobs older than `deadRetentionMs` (by
   * `failedAt`) and kv records whose `ttlMs` has passed. A job dead-lettered here commits, in the same transaction,
   * the effects it carries (`reaperDeadLetter`: `ifCancelRequested` when its
   * cancel flag is set, `effects` otherwise; none when its precondition does
   * not hold); a job that carries none commits those of its queue's reaper
   * template (`setReaperTemplate`) as it stands at the reap, made from the
   * job. So what the dead-letter implies is durable whichever process
   * reaps. Several such dead-letters of one pass apply their effects in job
   * id order, each seeing the effects before it (a precondition included).
   * A job dead-lettered here is swept in the same pass when its retention
   * is 0. Emits `deadLettered` for reaper dead-letters. The order of ids
   * inside the report is not part of the contract.
   */
  reap(): Promise<ReapReport>;

  /**
   * Stores the reaper template of `queue` (see `ReaperTemplate`), replacing
   * the one before; `undefined` removes it. Durable like a job: every
   * instance and process sharing the storage reaps with the template last
   * set. The store keeps a copy. Errors: `InvalidArgumentError` for a bad
   * queue name or a malformed template.
   */
  setReaperTemplate(queue: string, template: ReaperTemplate | undefined): Promise<void>;

  /**
   * Scheduled jobs with `runAt <= now` become pending (`runAt` cleared).
   * Returns how many moved. A store may instead treat due scheduled jobs as
   * claimable directly, as long as every observable result (records,
   * counters, claim order) is the same as if `promote` had just run.
   */
  promote(): Promise<number>;

  /**
   * Dead → pending with `attempts = 0` and no `lastError`, `failedAt` or
   * cancel flag. `JobNotFoundError` for an unknown id, `InvalidStateError`
   * for a job that is not dead.
   */
  requeueDead(jobId: string): Promise<void>;

  /** The job, or `undefined`. */
  getJob(jobId: string): Promise<JobRecord | undefined>;

  /** Dead jobs of `queue` in id order (UTF-8 bytes of the id), strictly after the cursor `after`; `limit` defaults to 100. */
  deadJobs(queue: string, options?: { after?: string; limit?: number }): Promise<JobRecord[]>;

  /** Counters of `queue` (all zero for an unknown queue). */
  stats(queue: string): Promise<QueueStats>;

  /** Names of queues that have ever held a job, sorted. */
  listQueues(): Promise<string[]>;

  /**
   * Waits until the job is acked or dead, up to `timeoutMs` of clock time.
   * `notFound` when the job does not exist at the call, and when `cancel`
   * removes it (pending or scheduled) while waited on, through this store or
   * any other instance or process sharing the storage: a removed job was
   * never completed.
   */
  waitForCompletion(jobId: string, timeoutMs: number): Promise<CompletionResult>;

  /** Value of a kv key, or `undefined`. Kv keys never collide with job data. */
  kvGet(key: string): Promise<Uint8Array | undefined>;

  /**
   * Deletes a kv key. With `ifValue`, deletes only when the stored value is
   * byte-equal to it (compare-and-delete). Returns whether a key was deleted.
   */
  kvDelete(key: string, options?: { ifValue?: Uint8Array }): Promise<boolean>;

  /**
   * Subscribes to notifications about `queue`. In-process notifications are
   * required, and never delivered synchronously inside the store call that
   * caused them; cross-process ones (e.g. LISTEN/NOTIFY) are a capability
   * that lets workers react faster. Returns an unsubscribe function.
   */
  subscribe(queue: string, listener: (notification: StoreNotification) => void): () => void;

  /**
   * Stops background timers (with `backgroundMaintenance`, the store runs
   * `reap` and `promote` on timers from its clock), ends pending waits
   * (`timedOut`) and releases resources. Later calls throw `StoreClosedError`.
   */
  close(): Promise<void>;
}
