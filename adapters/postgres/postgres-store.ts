import { createHash } from 'node:crypto';
import pg from 'pg';
import { HOUSEKEEPING, SystemClock } from '../../core/clock.js';
import type { Clock } from '../../core/clock.js';
import { InvalidArgumentError, LeaseLostError, StoreClosedError } from '../../core/errors.js';
import { copyHeaders } from '../../core/headers.js';
import { LocalNotifications } from '../../core/local-notifications.js';
import { compareIds, newId } from '../../core/ids.js';
import { DEFAULT_PROMOTE_INTERVAL_MS, DEFAULT_REAPER_INTERVAL_MS, QueueConfigs, resolveQueueConfig } from '../../core/queue-config.js';
import type { QueueConfig, StoreOptions } from '../../core/queue-config.js';
import type {
  CancelResult,
  Claim,
  ClaimRef,
  CompletionResult,
  Effects,
  EnqueueOptions,
  EnqueueRequest,
  EnqueueResult,
  JobRecord,
  KvPrecondition,
  KvWrite,
  QueueStats,
  QueueStore,
  ReapReport,
  ReaperDeadLetterBranch,
  RenewResult,
  SettleResult,
  Settlement,
  SettlementBranch,
  StoreNotification,
} from '../../core/queue-store.js';
import {
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
} from '../../core/store-validation.js';
import { SQLSTATE, mapError, mapOpenError, serverError } from './postgres-errors.js';
import { SCHEMA_VERSION, migrate } from './postgres-migrations.js';
import { PostgresNotifier } from './postgres-notifier.js';
import type { PgPoolLike, PgQueryResult } from './postgres-pool.js';
import { SCHEMA_NAME_PATTERN } from './postgres-pool.js';
import { base64, toRecord } from './postgres-rows.js';
import type { JobRow } from './postgres-rows.js';
import { statements } from './postgres-sql.js';
import { checkStorableText, storableText } from './postgres-text.js';
import type { StatementName } from './postgres-sql.js';

/** Options of `PostgresStore`: the common `StoreOptions` plus where the data lives. */
export interface PostgresStoreOptions extends StoreOptions {
  /** A libpq-style URL; the store then owns a `pg.Pool` and ends it on `close()`. */
  connectionString?: string;
  /** Your own pool (`pg.Pool` or compatible). The store never ends it. */
  pool?: PgPoolLike;
  /** Schema holding the tables; created and migrated on open. Default `taquba`. */
  schema?: string;
  /**
   * Size of the pool the store creates from `connectionString`. Default 10.
   * At least 2 with `listen` (the LISTEN connection is held for good), at
   * least 1 without.
   */
  maxConnections?: number;
  /**
   * Settlement transactions in flight at once from this store. Settlements
   * arriving meanwhile are committed together in the next one (group commit),
   * each with its own all-or-nothing outcome; claims ride in the same
   * transaction, after the settlements (a claim of a queue with a backlog
   * goes at once, in its own). Default 2.
   */
  settleConcurrency?: number;
  /** Most settlements in one transaction. Default 64. */
  maxSettleBatch?: number;
  /** Cross-process wakeups with LISTEN/NOTIFY on a dedicated connection. Default true. */
  listen?: boolean;
}

interface JobJson {
  /** Absent only in a carried branch's enqueue without a caller-chosen id: the database takes one when it applies. */
  id?: string;
  /** The caller chose the id (an id in use is then an error even on a dedup hit). */
  own: boolean;
  queue: string;
  payload: string;
  headers: string;
  priority: number;
  maxAttempts: number;
  runAt?: number;
  /** Resolved in SQL against the statement's `now` (the database's clock unless one is injected). */
  delayMs?: number;
  dedupKey?: string;
  reaperDeadLetter?: ReaperBranchJson;
}

interface PreconditionJson {
  key: string;
  equals: string;
}

/** `ReaperDeadLetterBranch` as the `reaper_dead_letter` column keeps it: effects in the form settlements send them. */
interface ReaperBranchJson {
  precondition?: PreconditionJson;
  effects?: EffectsJson;
  ifCancelRequested?: EffectsJson;
}

interface EffectsJson {
  enqueue?: JobJson[];
  kvWrites?: Array<{ key: string; value: string }>;
  kvDeletes?: string[];
}

interface InsertJson {
  kind: 'new' | 'alreadyEnqueued';
  id: string;
  queue?: string;
  runAt?: number;
}

interface SettleJson {
  branch?: SettleResult['branch'];
  status?: SettleResult['status'];
  queue?: string;
  runAt?: number | null;
  enqueued?: InsertJson[];
  error?: { code: string; message: string; detail: string | null; constraint: string | null };
}

interface SettleWaiter {
  item: { jobId: string; token: string; settlement: unknown };
  resolve: (result: SettleResult) => void;
  reject: (error: unknown) => void;
}

interface ClaimWaiter {
  item: { queue: string; limit: number; lease: number };
  resolve: (claims: Claim[]) => void;
  reject: (error: unknown) => void;
}

/**
 * The real `setImmediate`, taken at load: a flush deferred to the end of the
 * event-loop turn still runs when a test fakes timers afterwards.
 */
const deferToEndOfTurn: (callback: () => void) => void = (() => {
  const real = globalThis.setImmediate;
  return typeof real === 'function' ? (callback: () => void) => void real(callback) : (callback: () => void) => setTimeout(callback, 0);
})();

const byJobId = (a: SettleWaiter, b: SettleWaiter): number => compareIds(a.item.jobId, b.item.jobId);

/**
 * `QueueStore` on PostgreSQL: many worker processes on many hosts share one
 * database. Claims use `FOR UPDATE SKIP LOCKED`; every multi-statement
 * operation is a single-round-trip SQL function, so it commits whole or not
 * at all; concurrent settlements from one process share a transaction (group
 * commit); LISTEN/NOTIFY wakes waiting workers and carries cancel requests
 * across processes. Times come from the injected clock when one is given (tests),
 * otherwise from the database's clock, so all hosts agree.
 *
 * Call `open()` (or use `PostgresStore.open`) to migrate up front; otherwise
 * the first operation does it.
 */
export class PostgresStore implements QueueStore {
  /** The schema the tables live in. */
  readonly schema: string;
  private readonly pool: PgPoolLike;
  private readonly ownsPool: boolean;
  private readonly clock: Clock;
  private readonly injectedClock: boolean;
  private readonly configs: QueueConfigs;
  private readonly configJson: string;
  private readonly sql: Record<StatementName, string>;
  private readonly names: Record<StatementName, string>;
  private readonly channel: string;
  private readonly notifier: PostgresNotifier | undefined;
  private readonly background: boolean;
  private readonly settleConcurrency: number;
  private readonly maxSettleBatch: number;
  private opening: Promise<void> | undefined;
  private opened = false;
  private closed = false;
  private readonly notifications = new LocalNotifications();
  private readonly completionWaiters = new Map<string, Set<(result: CompletionResult) => void>>();
  private readonly timers = new Set<() => void>();
  private wake: { at: number; cancel: () => void } | undefined;
  private settleQueue: SettleWaiter[] = [];
  private claimQueue: ClaimWaiter[] = [];
  private flushesInFlight = 0;
  /** Queues whose last claim came back full: their claims need not wait for settlements (see `pumpFlushes`). */
  private readonly backlog = new Set<string>();
  /** Reaps and promotions in flight: claims wait for them (see `pumpFlushes`). */
  private maintenanceInFlight = 0;
  /** Lease renewals waiting for the reaps and promotions in flight (see `renewLease`). */
  private maintenanceWaiters: Array<() => void> = [];
  private flushScheduled = false;
  private readonly inFlight = new Set<Promise<unknown>>();
  /**
   * Counters for benchmarks and monitoring: statements sent (each is one
   * transaction), transactions of claims alone, transactions carrying
   * settlements, the settlements committed in them, and the claims that rode
   * in those same transactions.
   */
  readonly metrics = { statements: 0, claimStatements: 0, settleTransactions: 0, settlements: 0, claimsWithSettlements: 0 };

  constructor(options: PostgresStoreOptions) {
    const schema = options.schema ?? 'taquba';
    if (typeof schema !== 'string' || !SCHEMA_NAME_PATTERN.test(schema)) {
      throw new InvalidArgumentError('schema', `expected an identifier matching ${String(SCHEMA_NAME_PATTERN)}, got ${JSON.stringify(schema)}`);
    }
    if (!options.pool && !options.connectionString) throw new InvalidArgumentError('options', 'give a connectionString or a pool');
    this.schema = schema;
    this.settleConcurrency = options.settleConcurrency ?? 2;
    this.maxSettleBatch = options.maxSettleBatch ?? 64;
    checkPositiveInt('settleConcurrency', this.settleConcurrency);
    checkPositiveInt('maxSettleBatch', this.maxSettleBatch);
    const maxConnections = options.maxConnections ?? 10;
    checkPositiveInt('maxConnections', maxConnections);
    // The LISTEN connection never returns to the pool: with one connection, every statement would wait forever.
    // (A pool passed in is checked when it tells its size, as pg.Pool does.)
    const poolMax = (options.pool as { options?: { max?: unknown } } | undefined)?.options?.max;
    const [argument, size] = options.pool ? ['pool', typeof poolMax === 'number' ? poolMax : Infinity] : ['maxConnections', maxConnections];
    if (options.listen !== false && size < 2) {
      throw new InvalidArgumentError(argument, `expected at least 2 connections with listen on (one is held by LISTEN), got ${size}; or pass listen: false`);
    }
    this.injectedClock = options.clock !== undefined;
    this.clock = options.clock ?? new SystemClock();
    this.configs = new QueueConfigs(options);
    const queues: Record<string, QueueConfig> = Object.create(null) as Record<string, QueueConfig>;
    for (const name of Object.keys(options.queueConfigs ?? {})) queues[name] = this.configs.get(name);
    this.configJson = JSON.stringify({ default: resolveQueueConfig(options.defaultQueueConfig), queues });
    this.sql = statements(schema);
    // Statement names are per connection, and a pool may serve stores of several schemas: the name carries the
    // schema as a short hash, so it stays unique within PostgreSQL's 63-byte limit whatever the schema's length.
    const schemaTag = createHash('sha256').update(schema).digest('hex').slice(0, 16);
    this.names = Object.fromEntries(Object.keys(this.sql).map((key) => [key, `taquba_${schemaTag}_v${SCHEMA_VERSION}_${key}`])) as Record<StatementName, string>;
    this.channel = `taquba_${schema}`.slice(0, 63);
    if (options.pool) {
      this.pool = options.pool;
      this.ownsPool = false;
    } else {
      this.pool = new pg.Pool({ connectionString: options.connectionString, max: maxConnections }) as unknown as PgPoolLike;
      this.ownsPool = true;
      // An idle pooled connection whose backend dies emits 'error' on the pool; unhandled, it would crash the process.
      // (A pool passed in is the caller's to guard, as pg's documentation asks.)
      this.pool.on('error', () => undefined);
    }
    this.notifier =
      options.listen === false ? undefined : new PostgresNotifier(this.pool, this.channel, (payload) => this.onRemote(payload), () => this.onListenConnected());
    this.background = options.backgroundMaintenance !== false;
    if (this.background) {
      this.every(options.reaperIntervalMs ?? DEFAULT_REAPER_INTERVAL_MS, () => this.reap());
      this.every(options.promoteIntervalMs ?? DEFAULT_PROMOTE_INTERVAL_MS, () => this.promote());
    }
  }

  /** Creates the store and applies migrations before returning. */
  static async open(options: PostgresStoreOptions): Promise<PostgresStore> {
    const store = new PostgresStore(options);
    try {
      await store.open();
    } catch (error) {
      await store.close().catch(() => undefined);
      throw error;
    }
    return store;
  }

  /**
   * Creates the schema or migrates it to this version (idempotent; safe from
   * many processes at once; a schema already at this version is only read,
   * so a role without CREATE privileges can open it). Throws
   * `IncompatibleSchemaError` when the database holds a newer schema,
   * `StoreOpenError` when it refuses for good (missing privilege, unknown
   * database or role, reserved schema name, a schema holding tables of
   * another application), `StoreUnavailableError` when unreachable.
   */
  async open(): Promise<void> {
    this.checkOpen();
    if (this.opened) return;
    this.opening ??= migrate(this.pool, this.schema, this.channel).then(
      () => {
        this.opened = true;
      },
      (error: unknown) => {
        this.opening = undefined;
        throw mapOpenError(error);
      },
    );
    await this.opening;
  }

  async enqueue(queue: string, payload: Uint8Array, options?: EnqueueOptions, kvWrites?: KvWrite[]): Promise<EnqueueResult> {
    this.checkOpen();
    checkQueueName(queue);
    checkPayload(payload);
    checkEnqueueOptions(options);
    checkKvWrites(kvWrites);
    for (const write of kvWrites ?? []) storedKvKey(write.key);
    const job = this.jobJson({ queue, payload, options });
    const kv = kvWrites && kvWrites.length > 0 ? kvWrites.map((w) => ({ key: w.key, value: base64(w.value), ifAbsent: w.ifAbsent === true })) : null;
    let result: PgQueryResult;
    try {
      result = await this.query('enqueue', [this.now(), JSON.stringify([job]), kv === null ? null : JSON.stringify(kv), true]);
    } catch (error) {
      const e = serverError((error as { cause?: unknown }).cause);
      if (e.code === SQLSTATE.kvConflict) return { kind: 'kvConflict', key: e.message };
      throw error;
    }
    const inserted = (result.rows[0] as { r: InsertJson[] }).r;
    return this.afterInserts(inserted)[0] as EnqueueResult;
  }

  async enqueueBatch(queue: string, items: Array<{ payload: Uint8Array; options?: EnqueueOptions }>): Promise<EnqueueResult[]> {
    this.checkOpen();
    checkQueueName(queue);
    if (!Array.isArray(items)) throw new InvalidArgumentError('items', 'expected an array');
    for (const item of items) {
      checkPayload(item?.payload);
      checkEnqueueOptions(item.options);
    }
    if (items.length === 0) return [];
    checkDistinctIds(items.map((item) => item.options?.id));
    const jobs = items.map((item) => this.jobJson({ queue, payload: item.payload, options: item.options }));
    const result = await this.query('enqueue', [this.now(), JSON.stringify(jobs), null, false]);
    return this.afterInserts((result.rows[0] as { r: InsertJson[] }).r);
  }

  async claim(queue: string, options?: { leaseMs?: number; limit?: number }): Promise<Claim[]> {
    this.checkOpen();
    checkStoredQueueName(queue);
    if (options?.leaseMs !== undefined) checkPositiveInt('leaseMs', options.leaseMs);
    const limit = options?.limit ?? 1;
    checkPositiveInt('limit', limit);
    const lease = options?.leaseMs ?? this.configs.get(queue).leaseDurationMs;
    if (!this.opened) await this.open();
    // Queued synchronously: a claim issued in the same event-loop turn as settlements shares their transaction.
    return new Promise<Claim[]>((resolve, reject) => {
      this.claimQueue.push({ item: { queue, limit: Math.min(limit, 2_147_483_647), lease }, resolve, reject });
      this.scheduleFlush();
    });
  }

  async settle(claim: ClaimRef, settlement: Settlement): Promise<SettleResult> {
    this.checkOpen();
    checkSettlement(settlement);
    checkClaimRef(claim);
    const item: SettleWaiter['item'] = { jobId: claim.jobId, token: claim.token, settlement: this.settlementJson(settlement) };
    if (!this.opened) await this.open();
    // Queued synchronously when open: settlements (and claims) of one event-loop turn share a transaction.
    return new Promise<SettleResult>((resolve, reject) => {
      this.settleQueue.push({ item, resolve, reject });
      this.scheduleFlush();
    });
  }

  async renewLease(claim: ClaimRef, extendMs: number): Promise<RenewResult> {
    this.checkOpen();
    checkPositiveInt('extendMs', extendMs);
    checkClaimRef(claim);
    // A renewal issued after a reap was fired is committed after it, as in memory: an expired lease the
    // reaper was told to move is not renewed from under it by a renewal that merely reached the database first.
    const now = this.now();
    if (this.maintenanceInFlight > 0) await new Promise<void>((resolve) => this.maintenanceWaiters.push(resolve));
    const result = await this.query('renew', [now, claim.jobId, claim.token, extendMs]);
    const row = result.rows[0] as { lease_expires_at: string; cancel_requested: boolean } | undefined;
    if (!row) throw new LeaseLostError(claim.jobId);
    return { leaseExpiresAt: Number(row.lease_expires_at), cancelRequested: row.cancel_requested };
  }

  async cancel(jobId: string, effects?: Effects): Promise<CancelResult> {
    this.checkOpen();
    checkStoredJobId(jobId);
    checkEffects(effects);
    const result = await this.query('cancel', [this.now(), jobId, effects ? JSON.stringify(this.effectsJson(effects)) : null]);
    const r = (result.rows[0] as { r: { outcome: CancelResult['outcome']; job?: JobRow; firstRequest?: boolean; enqueued?: InsertJson[] } }).r;
    if (r.outcome === 'notFound') return { outcome: 'notFound' };
    const job = toRecord(r.job as JobRow);
    if (r.outcome === 'requested') {
      this.notify(job.queue, { type: 'cancelRequested', queue: job.queue, jobId });
      return { outcome: 'requested', job, firstRequest: r.firstRequest === true };
    }
    this.afterInserts(r.enqueued ?? []);
    this.resolveCompletion(jobId, { kind: 'notFound' });
    return { outcome: 'removed', job };
  }

  async reap(): Promise<ReapReport> {
    this.checkOpen();
    const result = await this.maintenance(this.query('reap', [this.now(), this.configJson]));
    const r = (
      result.rows[0] as {
        r: { requeued: string[]; deadLettered: JobRow[]; effectsApplied: string[]; enqueued: InsertJson[]; doneSwept: number; deadSwept: number };
      }
    ).r;
    const deadLettered = r.deadLettered.map(toRecord);
    this.afterInserts(r.enqueued);
    if (r.requeued.length > 0) for (const queue of this.notifications.queues()) this.notify(queue, { type: 'jobsAvailable', queue });
    const byQueue = new Map<string, JobRecord[]>();
    for (const job of deadLettered) {
      const list = byQueue.get(job.queue) ?? [];
      list.push(job);
      byQueue.set(job.queue, list);
      this.resolveCompletion(job.id, { kind: 'completed', job });
    }
    for (const [queue, jobs] of byQueue) this.notify(queue, { type: 'deadLettered', queue, jobs: jobs.map(cloneRecord) });
    return { requeued: r.requeued, deadLettered, effectsApplied: r.effectsApplied, doneSwept: Number(r.doneSwept), deadSwept: Number(r.deadSwept) };
  }

  async promote(): Promise<number> {
    this.checkOpen();
    const result = await this.maintenance(this.query('promote', [this.now()]));
    const r = (result.rows[0] as { r: { moved: number; queues: string[]; next: number | null } }).r;
    for (const queue of r.queues) this.notify(queue, { type: 'jobsAvailable', queue });
    if (r.next !== null) this.armWake(Number(r.next));
    return Number(r.moved);
  }

  async requeueDead(jobId: string): Promise<void> {
    this.checkOpen();
    checkStoredJobId(jobId);
    const result = await this.query('requeueDead', [jobId]);
    const queue = (result.rows[0] as { r: string }).r;
    this.notify(queue, { type: 'jobsAvailable', queue });
  }

  async getJob(jobId: string): Promise<JobRecord | undefined> {
    this.checkOpen();
    checkStoredJobId(jobId);
    const result = await this.query('getJob', [jobId]);
    const row = result.rows[0] as unknown as JobRow | undefined;
    return row ? toRecord(row) : undefined;
  }

  async deadJobs(queue: string, options?: { after?: string; limit?: number }): Promise<JobRecord[]> {
    this.checkOpen();
    checkStoredQueueName(queue);
    const limit = options?.limit ?? 100;
    checkPositiveInt('limit', limit);
    if (options?.after !== undefined && typeof options.after !== 'string') throw new InvalidArgumentError('after', 'expected a job id string');
    if (options?.after !== undefined) checkStorableText('after', options.after);
    const result =
      options?.after === undefined ? await this.query('deadJobs', [queue, limit]) : await this.query('deadJobsAfter', [queue, limit, options.after]);
    return (result.rows as unknown as JobRow[]).map(toRecord);
  }

  async stats(queue: string): Promise<QueueStats> {
    this.checkOpen();
    checkStoredQueueName(queue);
    const row = (await this.query('stats', [queue])).rows[0] as Record<keyof QueueStats, string>;
    return { pending: Number(row.pending), claimed: Number(row.claimed), scheduled: Number(row.scheduled), dead: Number(row.dead), done: Number(row.done) };
  }

  async listQueues(): Promise<string[]> {
    this.checkOpen();
    const result = await this.query('listQueues', []);
    return (result.rows as Array<{ queue: string }>).map((row) => row.queue).sort();
  }

  async waitForCompletion(jobId: string, timeoutMs: number): Promise<CompletionResult> {
    this.checkOpen();
    checkStoredJobId(jobId);
    checkTimeoutMs(timeoutMs);
    // The timeout runs from the call (not from the first read), so clock time moved meanwhile counts.
    let timedOut = false;
    let onTimeout: (() => void) | undefined;
    const cancelTimeout = this.clock.setTimer(() => {
      timedOut = true;
      onTimeout?.();
    }, timeoutMs);
    let job: JobRecord | undefined;
    try {
      job = await this.getJob(jobId);
    } catch (error) {
      cancelTimeout();
      throw error;
    }
    if (!job || job.status === 'done' || job.status === 'dead' || timedOut) cancelTimeout();
    if (!job) return { kind: 'notFound' };
    if (job.status === 'done' || job.status === 'dead') return { kind: 'completed', job };
    if (timedOut) return { kind: 'timedOut' };
    return new Promise((resolve) => {
      let waiters = this.completionWaiters.get(jobId);
      if (!waiters) this.completionWaiters.set(jobId, (waiters = new Set()));
      const set = waiters;
      let done = false;
      let cancelPoll: () => void = () => undefined;
      const finish = (result: CompletionResult): void => {
        if (done) return;
        done = true;
        cancelTimeout();
        cancelPoll();
        set.delete(finish);
        if (set.size === 0 && this.completionWaiters.get(jobId) === set) this.completionWaiters.delete(jobId);
        resolve(result);
      };
      onTimeout = () => finish({ kind: 'timedOut' });
      // Completions committed by other processes are seen by polling; local ones resolve at once. A row gone
      // was acked, unless a cancel left its tombstone (the job named by id and enqueue time: ids may be reused).
      const enqueuedAt = (job as JobRecord).enqueuedAt;
      const poll = (): void => {
        cancelPoll = this.clock.setTimer(() => {
          this.query('completion', [jobId, enqueuedAt]).then(
            (result) => {
              const row = result.rows[0] as { job: JobRow | null; removed: boolean };
              const current = row.job ? toRecord(row.job) : undefined;
              if (!current || current.enqueuedAt !== enqueuedAt) finish(row.removed ? { kind: 'notFound' } : { kind: 'completed' });
              else if (current.status === 'done' || current.status === 'dead') finish({ kind: 'completed', job: current });
              else if (!done) poll();
            },
            () => {
              if (!done && !this.closed) poll();
            },
          );
        }, Math.min(250, Math.max(1, timeoutMs)));
      };
      poll();
      set.add(finish);
    });
  }

  async kvGet(key: string): Promise<Uint8Array | undefined> {
    this.checkOpen();
    checkStoredKvKey(key);
    const row = (await this.query('kvGet', [key])).rows[0] as { value: Buffer } | undefined;
    return row ? new Uint8Array(row.value) : undefined;
  }

  async kvDelete(key: string, options?: { ifValue?: Uint8Array }): Promise<boolean> {
    this.checkOpen();
    checkStoredKvKey(key);
    if (options?.ifValue !== undefined) checkPayload(options.ifValue, 'ifValue');
    const result =
      options?.ifValue === undefined
        ? await this.query('kvDelete', [key])
        : await this.query('kvDeleteIf', [key, Buffer.from(options.ifValue.buffer, options.ifValue.byteOffset, options.ifValue.byteLength)]);
    return (result.rowCount ?? 0) > 0;
  }

  subscribe(queue: string, listener: (notification: StoreNotification) => void): () => void {
    const unsubscribe = this.notifications.subscribe(queue, listener);
    if (!this.closed) this.notifier?.start();
    return unsubscribe;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const cancel of this.timers) cancel();
    this.timers.clear();
    this.wake?.cancel();
    this.wake = undefined;
    for (const waiter of this.settleQueue.splice(0)) waiter.reject(new StoreClosedError());
    for (const waiter of this.claimQueue.splice(0)) waiter.reject(new StoreClosedError());
    for (const [id, waiters] of this.completionWaiters) {
      for (const finish of [...waiters]) finish({ kind: 'timedOut' });
      this.completionWaiters.delete(id);
    }
    this.notifications.clear();
    await this.notifier?.stop();
    await Promise.allSettled([...this.inFlight]);
    if (this.ownsPool) await this.pool.end().catch(() => undefined);
  }

  /** Process-local diagnostics: the LISTEN connection's backend pid and how often it was re-established. */
  async listenStatus(): Promise<{ connected: boolean; backendPid: number | undefined; reconnects: number }> {
    return {
      connected: this.notifier?.connected ?? false,
      backendPid: await this.notifier?.backendPid().catch(() => undefined),
      reconnects: this.notifier?.reconnects ?? 0,
    };
  }

  // ---- internals -------------------------------------------------------

  private checkOpen(): void {
    if (this.closed) throw new StoreClosedError();
  }

  /** The `now` parameter: the injected clock's time, or null for "the database's clock". */
  private now(): number | null {
    return this.injectedClock ? this.clock.now() : null;
  }

  private async query(name: StatementName, values: unknown[]): Promise<PgQueryResult> {
    if (!this.opened) await this.open();
    this.checkOpen();
    this.metrics.statements++;
    const promise = this.pool.query({ name: this.names[name], text: this.sql[name], values });
    this.inFlight.add(promise);
    try {
      return await promise;
    } catch (error) {
      throw mapError(error, name);
    } finally {
      this.inFlight.delete(promise);
    }
  }

  /**
   * `carried`: the job is enqueued by a reaper dead-letter, maybe long from now and more than once
   * (after `requeueDead`), so without a caller-chosen id it gets one from the database when it applies.
   */
  private jobJson(request: EnqueueRequest, carried = false): JobJson {
    const config = this.configs.get(request.queue);
    const options = request.options;
    checkStorableText('queue name', request.queue);
    if (options?.id !== undefined) checkStorableText('id', options.id);
    if (options?.dedupKey !== undefined) checkStorableText('dedupKey', options.dedupKey);
    const job: JobJson = {
      own: options?.id !== undefined,
      queue: request.queue,
      payload: base64(request.payload),
      headers: JSON.stringify(copyHeaders(options?.headers)),
      priority: options?.priority ?? config.defaultPriority,
      maxAttempts: options?.maxAttempts ?? config.maxAttempts,
    };
    if (options?.id !== undefined || !carried) job.id = options?.id ?? newId(this.injectedClock ? this.clock.now() : Date.now());
    if (options?.runAt !== undefined) job.runAt = options.runAt;
    if (options?.delayMs !== undefined) job.delayMs = options.delayMs;
    if (options?.dedupKey !== undefined) job.dedupKey = options.dedupKey;
    if (options?.reaperDeadLetter !== undefined) job.reaperDeadLetter = this.reaperBranchJson(options.reaperDeadLetter);
    return job;
  }

  private effectsJson(effects: Effects | undefined, carried = false): EffectsJson | undefined {
    if (!effects) return undefined;
    const out: EffectsJson = {};
    if (effects.enqueue?.length) out.enqueue = effects.enqueue.map((request) => this.jobJson(request, carried));
    if (effects.kvWrites?.length) out.kvWrites = effects.kvWrites.map((w) => ({ key: storedKvKey(w.key), value: base64(w.value) }));
    if (effects.kvDeletes?.length) out.kvDeletes = effects.kvDeletes.map(storedKvKey);
    return out;
  }

  private reaperBranchJson(branch: ReaperDeadLetterBranch): ReaperBranchJson {
    const out: ReaperBranchJson = {};
    if (branch.precondition !== undefined) out.precondition = preconditionJson(branch.precondition);
    if (branch.effects !== undefined) out.effects = this.effectsJson(branch.effects, true);
    if (branch.ifCancelRequested !== undefined) out.ifCancelRequested = this.effectsJson(branch.ifCancelRequested, true);
    return out;
  }

  private branchJson(branch: SettlementBranch): unknown {
    // Diagnostic text is made storable here (see postgres-text.ts), so one odd message cannot fail its flush.
    const action =
      branch.action.type === 'ack'
        ? { type: 'ack' }
        : branch.action.type === 'nack'
          ? { type: 'nack', error: storableText(branch.action.error) }
          : { type: 'deadLetter', reason: storableText(branch.action.reason) };
    // An id repeated within the branch is an error if (and only if) the branch is applied: flagged for the SQL.
    const repeatedId = findRepeatedId((branch.effects?.enqueue ?? []).map((request) => request.options?.id));
    const effects = this.effectsJson(branch.effects);
    return repeatedId === undefined ? { action, effects } : { action, effects, repeatedId };
  }

  private settlementJson(settlement: Settlement): unknown {
    const primary = this.branchJson(settlement) as Record<string, unknown>;
    if (settlement.ifCancelRequested) primary.ifCancelRequested = this.branchJson(settlement.ifCancelRequested);
    if (settlement.precondition) primary.precondition = preconditionJson(settlement.precondition);
    return primary;
  }

  /** Local wakeups and precise promotion timers for freshly inserted jobs; strips the internal fields. */
  private afterInserts(inserted: InsertJson[]): EnqueueResult[] {
    return inserted.map((r) => {
      if (r.kind === 'new' && r.queue !== undefined) {
        if (r.runAt === undefined || r.runAt === null) this.notify(r.queue, { type: 'jobsAvailable', queue: r.queue });
        else this.armWake(Number(r.runAt));
      }
      return { kind: r.kind, id: r.id };
    });
  }

  /**
   * Group commit. Settlements and claims are queued and flushed at the end of
   * the event-loop turn (so those issued together, a runtime's settlements
   * and the claim for the slots they freed, share one transaction); at most
   * `settleConcurrency` flushes are in flight. A flush runs its settlements
   * (in job-id order) and then its claims, which so see the jobs those
   * settlements enqueued. Claims wait until no flush is in flight (they would
   * otherwise miss the jobs being committed), nor a reap or promotion, and
   * settlements queued meanwhile wait with them, so claims are never starved.
   *
   * Except with a backlog: when the queue's last claim came back full, other
   * jobs are waiting, so a claim needs nothing from the settlements in flight
   * or queued; it goes at once in its own statement, and the settlements'
   * transaction runs beside it instead of ahead of it (the runtime gets its
   * next steps while the database commits the last ones).
   */
  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    deferToEndOfTurn(() => {
      this.flushScheduled = false;
      this.pumpFlushes();
    });
  }

  private pumpFlushes(): void {
    if (this.claimQueue.length > 0 && this.maintenanceInFlight === 0 && !this.closed) {
      const waiting: ClaimWaiter[] = [];
      for (const claim of this.claimQueue) {
        if (this.backlog.has(claim.item.queue)) void this.runFlush([], [claim]);
        else waiting.push(claim);
      }
      this.claimQueue = waiting;
    }
    while (this.flushesInFlight < this.settleConcurrency && !this.closed) {
      const claimsWaiting = this.claimQueue.length > 0;
      if (claimsWaiting ? this.flushesInFlight > 0 || this.maintenanceInFlight > 0 : this.settleQueue.length === 0) return;
      // Id order: concurrent batches and the reaper then lock rows in one global order (no deadlocks).
      const settles = this.settleQueue.splice(0, this.maxSettleBatch).sort(byJobId);
      const claims = this.claimQueue.splice(0);
      this.flushesInFlight++;
      void this.runFlush(settles, claims).finally(() => {
        this.flushesInFlight--;
        // Deferred too: what the callers do with these results (settle more, claim again) joins the next flush.
        if (this.settleQueue.length > 0 || this.claimQueue.length > 0) this.scheduleFlush();
      });
    }
  }

  /**
   * A reap or promotion: claims issued while it runs wait for it, so they see
   * the jobs it made claimable (a claim issued after the reaper fired finds
   * the expired claims requeued, whichever connection answers first).
   */
  private async maintenance<T>(operation: Promise<T>): Promise<T> {
    this.maintenanceInFlight++;
    try {
      return await operation;
    } finally {
      this.maintenanceInFlight--;
      if (this.maintenanceInFlight === 0) {
        for (const resume of this.maintenanceWaiters.splice(0)) resume();
        if (this.claimQueue.length > 0) this.scheduleFlush();
      }
    }
  }

  private async runFlush(settles: SettleWaiter[], claims: ClaimWaiter[]): Promise<void> {
    let settled: SettleJson[] = [];
    let claimed: JobRow[][] = [];
    try {
      if (claims.length === 0 && settles.length === 1) {
        const only = settles[0] as SettleWaiter;
        const result = await this.query('settleOne', [this.now(), this.configJson, JSON.stringify(only.item)]);
        settled = [(result.rows[0] as { r: SettleJson }).r];
      } else if (settles.length === 0 && claims.length === 1) {
        const { queue, limit, lease } = (claims[0] as ClaimWaiter).item;
        const result = await this.query('claim', [this.now(), queue, limit, lease]);
        claimed = [result.rows as unknown as JobRow[]];
      } else {
        const result = await this.query('settleAndClaim', [
          this.now(),
          this.configJson,
          JSON.stringify(settles.map((w) => w.item)),
          JSON.stringify(claims.map((w) => w.item)),
        ]);
        const r = (result.rows[0] as { r: { s: SettleJson[]; c: JobRow[][] } }).r;
        settled = r.s;
        claimed = r.c;
      }
    } catch (error) {
      for (const waiter of settles) waiter.reject(error);
      for (const waiter of claims) waiter.reject(error);
      return;
    }
    if (settles.length > 0) {
      this.metrics.settleTransactions++;
      this.metrics.settlements += settles.length;
      this.metrics.claimsWithSettlements += claims.length;
    } else {
      this.metrics.claimStatements++;
    }
    settles.forEach((waiter, index) => {
      const r = settled[index] as SettleJson;
      if (r.error) {
        waiter.reject(mapError({ code: r.error.code, message: r.error.message, detail: r.error.detail, constraint: r.error.constraint }, 'settle'));
        return;
      }
      const queue = r.queue as string;
      if (r.status === 'pending') this.notify(queue, { type: 'jobsAvailable', queue });
      else if (r.status === 'scheduled' && r.runAt != null) this.armWake(Number(r.runAt));
      else if (r.status === 'done' || r.status === 'dead') this.completedLocally(waiter.item.jobId, r.status);
      waiter.resolve({ branch: r.branch as SettleResult['branch'], status: r.status as SettleResult['status'], enqueued: this.afterInserts(r.enqueued ?? []) });
    });
    this.resolveClaims(claims, claimed);
  }

  private resolveClaims(claims: ClaimWaiter[], claimed: JobRow[][]): void {
    claims.forEach((waiter, index) => {
      const rows = claimed[index] ?? [];
      if (rows.length === waiter.item.limit) this.backlog.add(waiter.item.queue);
      else this.backlog.delete(waiter.item.queue);
      const result = rows.map((row) => ({ jobId: row.id, token: row.token as string, job: toRecord(row) }));
      result.sort((a, b) => a.job.priority - b.job.priority || compareIds(a.jobId, b.jobId));
      waiter.resolve(result);
    });
  }

  private completedLocally(jobId: string, status: 'done' | 'dead'): void {
    if (!this.completionWaiters.has(jobId)) return;
    void this.getJob(jobId).then(
      (job) => this.resolveCompletion(jobId, job && (job.status === 'done' || job.status === 'dead') ? { kind: 'completed', job } : { kind: 'completed' }),
      () => this.resolveCompletion(jobId, status === 'done' ? { kind: 'completed' } : { kind: 'timedOut' }),
    );
  }

  private resolveCompletion(jobId: string, result: CompletionResult): void {
    const waiters = this.completionWaiters.get(jobId);
    if (!waiters) return;
    for (const finish of [...waiters]) finish(result);
  }

  private onRemote(payload: string): void {
    let message: { t?: string; q?: string; id?: string };
    try {
      message = JSON.parse(payload) as typeof message;
    } catch {
      return;
    }
    if (typeof message.q !== 'string') return;
    if (message.t === 'j') this.notify(message.q, { type: 'jobsAvailable', queue: message.q });
    else if (message.t === 'c' && typeof message.id === 'string') this.notify(message.q, { type: 'cancelRequested', queue: message.q, jobId: message.id });
  }

  /** After (re)connecting LISTEN, anything may have been missed: wake every subscribed queue. */
  private onListenConnected(): void {
    for (const queue of this.notifications.queues()) this.notify(queue, { type: 'jobsAvailable', queue });
  }

  private notify(queue: string, notification: StoreNotification): void {
    this.notifications.notify(queue, notification);
  }

  /** Wakes when the earliest known scheduled job falls due, so delays are not rounded up to the promote interval. */
  private armWake(runAt: number): void {
    if (!this.background || this.closed) return;
    if (this.wake && this.wake.at <= runAt) return;
    this.wake?.cancel();
    const delay = Math.max(0, runAt - (this.injectedClock ? this.clock.now() : Date.now()));
    const cancel = this.clock.setTimer(() => {
      this.wake = undefined;
      if (!this.closed) void this.promote().catch(() => undefined);
    }, delay, HOUSEKEEPING);
    this.wake = { at: runAt, cancel };
  }

  /**
   * Runs `task` every `intervalMs` of clock time. The timer is re-armed at
   * once (a long clock jump fires it as often as memory's would); a tick that
   * comes while the previous run is still in flight runs again right after it,
   * with the time of that moment, rather than being dropped.
   */
  private every(intervalMs: number, task: () => Promise<unknown>): void {
    checkPositiveInt('maintenance interval', intervalMs);
    let cancel: () => void = () => undefined;
    let running = false;
    let again = false;
    const run = (): void => {
      if (running) {
        again = true;
        return;
      }
      running = true;
      void task()
        .catch(() => undefined)
        .finally(() => {
          running = false;
          if (again && !this.closed) {
            again = false;
            run();
          }
        });
    };
    const tick = (): void => {
      this.timers.delete(cancel);
      if (this.closed) return;
      cancel = this.clock.setTimer(tick, intervalMs, HOUSEKEEPING);
      this.timers.add(cancel);
      run();
    };
    cancel = this.clock.setTimer(tick, intervalMs, HOUSEKEEPING);
    this.timers.add(cancel);
  }
}

function findRepeatedId(ids: Array<string | undefined>): string | undefined {
  const seen = new Set<string>();
  for (const id of ids) {
    if (id === undefined) continue;
    if (seen.has(id)) return id;
    seen.add(id);
  }
  return undefined;
}

/** Ids repeated within one batch are rejected before anything is sent (a dedup hit does not excuse them). */
function checkDistinctIds(ids: Array<string | undefined>): void {
  const repeated = findRepeatedId(ids);
  if (repeated !== undefined) throw new InvalidArgumentError('id', `job id "${repeated}" is already in use`);
}

// The shared argument checks, plus what PostgreSQL can store (postgres-text.ts).

function checkStoredJobId(jobId: unknown): asserts jobId is string {
  checkJobId(jobId);
  checkStorableText('job id', jobId);
}

function checkStoredQueueName(queue: unknown): asserts queue is string {
  checkQueueName(queue);
  checkStorableText('queue name', queue);
}

function checkStoredKvKey(key: unknown): asserts key is string {
  checkKvKey(key);
  storedKvKey(key);
}

/** A kv key the shared checks passed, once PostgreSQL can store it. */
function storedKvKey(key: string): string {
  checkStorableText('kv key', key);
  return key;
}

function preconditionJson(precondition: KvPrecondition): PreconditionJson {
  return { key: storedKvKey(precondition.key), equals: base64(precondition.equals) };
}

/** A claim this store could never have issued is not held: `LEASE_LOST`, as for any other. */
function checkClaimRef(claim: ClaimRef): void {
  if (typeof claim?.jobId !== 'string' || typeof claim.token !== 'string') throw new LeaseLostError(String(claim?.jobId));
  try {
    checkStorableText('job id', claim.jobId);
    checkStorableText('token', claim.token);
  } catch {
    throw new LeaseLostError(claim.jobId);
  }
}

function cloneRecord(job: JobRecord): JobRecord {
  return { ...job, payload: job.payload.slice(), headers: copyHeaders(job.headers) };
}
