import { createHash } from 'node:crypto';
import pg from 'pg';
import { BaseQueueStore } from '../../core/base-store.js';
import type { BatchItem, CompletionState } from '../../core/base-store.js';
import { InvalidArgumentError, LeaseLostError, StoreClosedError } from '../../core/errors.js';
import { copyHeaders } from '../../core/headers.js';
import { newId } from '../../core/ids.js';
import type { StoreOptions } from '../../core/queue-config.js';
import type {
  CancelResult,
  Claim,
  ClaimRef,
  CompletionResult,
  Effects,
  EnqueueOptions,
  EnqueueResult,
  JobRecord,
  KvWrite,
  QueueStats,
  ReapReport,
  ReaperTemplate,
  RenewResult,
  SettleResult,
  Settlement,
} from '../../core/queue-store.js';
import { copyReaperTemplate, encodeReaperTemplate } from '../../core/reaper-template.js';
import { checkJobId, checkKvKey, checkPositiveInt, checkQueueName } from '../../core/store-validation.js';
import { SQLSTATE, mapError, mapOpenError, serverError } from './postgres-errors.js';
import { FlushPipeline } from './postgres-flush.js';
import type { FlushHost } from './postgres-flush.js';
import { SCHEMA_VERSION, migrate } from './postgres-migrations.js';
import { PostgresNotifier } from './postgres-notifier.js';
import type { PgPoolLike } from './postgres-pool.js';
import { SCHEMA_NAME_PATTERN } from './postgres-pool.js';
import { WireEncoder, findRepeatedId, kvWriteJson, parseNotification, queueConfigsJson, storedKvKey, toRecord } from './postgres-rows.js';
import type { InsertJson, SettleJson } from './postgres-rows.js';
import { paramValues, statements } from './postgres-sql.js';
import type { PreparedText, StatementName, Statements } from './postgres-sql.js';
import { checkStorableText } from './postgres-text.js';

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

/** How often a `waitForCompletion` looks for a completion committed by another process. */
const COMPLETION_POLL_MS = 250;

/**
 * `QueueStore` on PostgreSQL: many worker processes on many hosts share one
 * database. Claims use `FOR UPDATE SKIP LOCKED`; every multi-statement
 * operation is a single-round-trip SQL function, so it commits whole or not
 * at all; concurrent settlements from one process share a transaction (group
 * commit, postgres-flush.ts); LISTEN/NOTIFY wakes waiting workers and carries
 * cancel requests across processes. Times come from the injected clock when
 * one is given (tests), otherwise from the database's clock, so all hosts agree.
 *
 * Call `open()` (or use `PostgresStore.open`) to migrate up front; otherwise
 * the first operation does it.
 */
export class PostgresStore extends BaseQueueStore {
  /** The schema the tables live in. */
  readonly schema: string;
  /** Counters for benchmarks and monitoring (see `FlushMetrics`). */
  readonly metrics = { statements: 0, claimStatements: 0, settleTransactions: 0, settlements: 0, claimsWithSettlements: 0 };
  private readonly pool: PgPoolLike;
  private readonly ownsPool: boolean;
  private readonly injectedClock: boolean;
  private readonly configJson: string;
  private readonly encoder: WireEncoder;
  private readonly sql: Record<StatementName, PreparedText>;
  private readonly names: Record<StatementName, string>;
  private readonly channel: string;
  private readonly notifier: PostgresNotifier | undefined;
  private readonly flush: FlushPipeline;
  /** Reaps and promotions whose timer fired while the last was still running: run once more after it. */
  private readonly maintenanceRuns = { reap: rerunWhileBusy(), promote: rerunWhileBusy() };
  private opening: Promise<void> | undefined;
  private opened = false;
  private readonly inFlight = new Set<Promise<unknown>>();

  constructor(options: PostgresStoreOptions) {
    super(options);
    const schema = options.schema ?? 'taquba';
    if (typeof schema !== 'string' || !SCHEMA_NAME_PATTERN.test(schema)) {
      throw new InvalidArgumentError('schema', `expected an identifier matching ${String(SCHEMA_NAME_PATTERN)}, got ${JSON.stringify(schema)}`);
    }
    if (!options.pool && !options.connectionString) throw new InvalidArgumentError('options', 'give a connectionString or a pool');
    this.schema = schema;
    const settleConcurrency = options.settleConcurrency ?? 2;
    const maxSettleBatch = options.maxSettleBatch ?? 64;
    checkPositiveInt('settleConcurrency', settleConcurrency);
    checkPositiveInt('maxSettleBatch', maxSettleBatch);
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
    this.configJson = queueConfigsJson(options, this.configs);
    this.encoder = new WireEncoder(this.configs, () => newId(this.injectedClock ? this.clock.now() : Date.now()));
    this.sql = statements(schema);
    // Statement names are per connection, and a pool may serve stores of several schemas: the name carries the
    // schema as a short hash, so it stays unique within PostgreSQL's 63-byte limit whatever the schema's length.
    const schemaTag = createHash('sha256').update(schema).digest('hex').slice(0, 16);
    this.names = Object.fromEntries(Object.keys(this.sql).map((key) => [key, `taquba_${schemaTag}_v${SCHEMA_VERSION}_${key}`])) as Record<
      StatementName,
      string
    >;
    this.channel = `taquba_${schema}`.slice(0, 63);
    if (options.pool) {
      this.pool = options.pool;
      this.ownsPool = false;
    } else {
      this.pool = new pg.Pool({ connectionString: options.connectionString, max: maxConnections });
      this.ownsPool = true;
      // An idle pooled connection whose backend dies emits 'error' on the pool; unhandled, it would crash the process.
      // (A pool passed in is the caller's to guard, as pg's documentation asks.)
      this.pool.on('error', () => undefined);
    }
    this.notifier =
      options.listen === false
        ? undefined
        : new PostgresNotifier(
            this.pool,
            this.channel,
            (payload) => this.onRemote(payload),
            () => this.onListenConnected(),
          );
    this.flush = new FlushPipeline(this.flushHost(), settleConcurrency, maxSettleBatch);
    this.startMaintenance();
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

  /** Process-local diagnostics: the LISTEN connection's backend pid and how often it was re-established. */
  async listenStatus(): Promise<{ connected: boolean; backendPid: number | undefined; reconnects: number }> {
    return {
      connected: this.notifier?.connected ?? false,
      backendPid: await this.notifier?.backendPid().catch(() => undefined),
      reconnects: this.notifier?.reconnects ?? 0,
    };
  }

  // ---- the primitives -------------------------------------------------------------------------

  protected async _enqueue(queue: string, payload: Uint8Array, options: EnqueueOptions | undefined, kvWrites: KvWrite[] | undefined): Promise<EnqueueResult> {
    const kv = kvWrites && kvWrites.length > 0 ? kvWrites.map((w) => kvWriteJson(w, true)) : null;
    const job = this.encoder.job(options === undefined ? { queue, payload } : { queue, payload, options });
    let inserted: InsertJson[];
    try {
      inserted = (await this.one('enqueue', { now: this.now(), jobs: JSON.stringify([job]), kvWrites: kv && JSON.stringify(kv), single: true })).result;
    } catch (error) {
      const e = serverError((error as { cause?: unknown }).cause);
      if (e.code === SQLSTATE.kvConflict) return { kind: 'kvConflict', key: e.message };
      throw error;
    }
    return this.afterInserts(inserted)[0] as EnqueueResult;
  }

  protected async _enqueueBatch(queue: string, items: BatchItem[]): Promise<EnqueueResult[]> {
    if (items.length === 0) return [];
    // Ids repeated within one batch are rejected before anything is sent (a dedup hit does not excuse them).
    const repeated = findRepeatedId(items.map((item) => item.options?.id));
    if (repeated !== undefined) throw new InvalidArgumentError('id', `job id "${repeated}" is already in use`);
    const jobs = items.map(({ payload, options }) => this.encoder.job(options === undefined ? { queue, payload } : { queue, payload, options }));
    const row = await this.one('enqueue', { now: this.now(), jobs: JSON.stringify(jobs), kvWrites: null, single: false });
    return this.afterInserts(row.result);
  }

  protected async _claim(queue: string, leaseMs: number, limit: number): Promise<Claim[]> {
    if (!this.opened) await this.open();
    return this.flush.claim(queue, leaseMs, limit);
  }

  protected async _settle(claim: ClaimRef, settlement: Settlement): Promise<SettleResult> {
    checkClaimRef(claim);
    const item = { jobId: claim.jobId, token: claim.token, settlement: this.encoder.settlement(settlement) };
    if (!this.opened) await this.open();
    return this.flush.settle(item);
  }

  protected async _renewLease(claim: ClaimRef, extendMs: number): Promise<RenewResult> {
    checkClaimRef(claim);
    // A renewal issued after a reap was fired is committed after it, as in memory: an expired lease the
    // reaper was told to move is not renewed from under it by a renewal that merely reached the database first.
    const now = this.now();
    await this.flush.maintenanceDone();
    const [row] = await this.rows('renew', { now, jobId: claim.jobId, token: claim.token, extendMs });
    if (!row) throw new LeaseLostError(claim.jobId);
    return { leaseExpiresAt: Number(row.lease_expires_at), cancelRequested: row.cancel_requested };
  }

  protected async _cancel(jobId: string, effects: Effects | undefined): Promise<CancelResult> {
    const encoded = effects ? JSON.stringify(this.encoder.effects(effects)) : null;
    const { result } = await this.one('cancel', { now: this.now(), jobId, effects: encoded });
    if (result.outcome === 'notFound') return { outcome: 'notFound' };
    const job = toRecord(result.job);
    if (result.outcome === 'requested') {
      this.notify(job.queue, { type: 'cancelRequested', queue: job.queue, jobId });
      return { outcome: 'requested', job, firstRequest: result.firstRequest };
    }
    this.afterInserts(result.enqueued ?? []);
    this.completed(jobId, { kind: 'notFound' });
    return { outcome: 'removed', job };
  }

  protected async _reap(): Promise<ReapReport> {
    const { result } = await this.flush.maintenance(() => this.one('reap', { now: this.now(), config: this.configJson }));
    const deadLettered = result.deadLettered.map(toRecord);
    this.afterInserts(result.enqueued);
    if (result.requeued.length > 0) for (const queue of this.notifications.queues()) this.notify(queue, { type: 'jobsAvailable', queue });
    const byQueue = new Map<string, JobRecord[]>();
    for (const job of deadLettered) {
      const list = byQueue.get(job.queue) ?? [];
      list.push(job);
      byQueue.set(job.queue, list);
      this.completed(job.id, { kind: 'completed', job });
    }
    for (const [queue, jobs] of byQueue) this.notify(queue, { type: 'deadLettered', queue, jobs: jobs.map(cloneRecord) });
    return {
      requeued: result.requeued,
      deadLettered,
      effectsApplied: result.effectsApplied,
      doneSwept: Number(result.doneSwept),
      deadSwept: Number(result.deadSwept),
    };
  }

  protected async _promote(): Promise<number> {
    const { result } = await this.flush.maintenance(() => this.one('promote', { now: this.now() }));
    for (const queue of result.queues) this.notify(queue, { type: 'jobsAvailable', queue });
    if (result.next !== null) this.wakeAt(Number(result.next));
    return Number(result.moved);
  }

  /**
   * The template in `reaper_templates`, which `reap` reads (sql/000006.sql). The copy keeps only the template's own
   * fields. A string jsonb cannot hold (a NUL, a lone surrogate) is a data exception there: `INVALID_ARGUMENT`.
   */
  protected async _setReaperTemplate(queue: string, template: ReaperTemplate | undefined): Promise<void> {
    if (template === undefined) await this.query('deleteReaperTemplate', { queue });
    else await this.query('setReaperTemplate', { queue, template: encodeReaperTemplate(copyReaperTemplate(template)) });
  }

  protected async _requeueDead(jobId: string): Promise<void> {
    const { queue } = await this.one('requeueDead', { jobId });
    this.notify(queue, { type: 'jobsAvailable', queue });
  }

  protected async _getJob(jobId: string): Promise<JobRecord | undefined> {
    const [row] = await this.rows('getJob', { jobId });
    return row ? toRecord(row) : undefined;
  }

  protected async _deadJobs(queue: string, after: string | undefined, limit: number): Promise<JobRecord[]> {
    if (after !== undefined && typeof after !== 'string') throw new InvalidArgumentError('after', 'expected a job id string');
    if (after !== undefined) checkStorableText('after', after);
    const rows = after === undefined ? await this.rows('deadJobs', { queue, limit }) : await this.rows('deadJobsAfter', { queue, limit, after });
    return rows.map(toRecord);
  }

  protected async _stats(queue: string): Promise<QueueStats> {
    const row = await this.one('stats', { queue });
    return { pending: Number(row.pending), claimed: Number(row.claimed), scheduled: Number(row.scheduled), dead: Number(row.dead), done: Number(row.done) };
  }

  protected async _listQueues(): Promise<string[]> {
    return (await this.rows('listQueues', {})).map((row) => row.queue).sort();
  }

  protected async _kvGet(key: string): Promise<Uint8Array | undefined> {
    const [row] = await this.rows('kvGet', { now: this.now(), key });
    return row ? new Uint8Array(row.value) : undefined;
  }

  protected async _kvDelete(key: string, ifValue: Uint8Array | undefined): Promise<boolean> {
    const result =
      ifValue === undefined
        ? await this.query('kvDelete', { now: this.now(), key })
        : await this.query('kvDeleteIf', { now: this.now(), key, value: Buffer.from(ifValue.buffer, ifValue.byteOffset, ifValue.byteLength) });
    return (result.rowCount ?? 0) > 0;
  }

  protected async _completionState(jobId: string): Promise<CompletionState> {
    const job = await this._getJob(jobId);
    if (!job) return { done: { kind: 'notFound' } };
    if (job.status === 'done' || job.status === 'dead') return { done: { kind: 'completed', job } };
    return { live: job };
  }

  protected async _close(): Promise<void> {
    this.flush.rejectQueued(new StoreClosedError());
    await this.notifier?.stop();
    await Promise.allSettled([...this.inFlight]);
    if (this.ownsPool) await this.pool.end().catch(() => undefined);
  }

  // ---- hooks --------------------------------------------------------------------------------------

  // The shared argument checks, plus what PostgreSQL can store (postgres-text.ts).
  protected override checkJobIdArgument(jobId: unknown): asserts jobId is string {
    checkJobId(jobId);
    checkStorableText('job id', jobId);
  }

  protected override checkQueueArgument(queue: unknown): asserts queue is string {
    checkQueueName(queue);
    checkStorableText('queue name', queue);
  }

  protected override checkKvKeyArgument(key: unknown): asserts key is string {
    checkKvKey(key);
    storedKvKey(key);
  }

  /** A tick that comes while the previous run is still in flight runs again right after it, rather than being dropped. */
  protected override maintain(task: 'reap' | 'promote'): void {
    this.maintenanceRuns[task](
      () => (task === 'reap' ? this._reap() : this._promote()),
      () => this.isClosed,
    );
  }

  /**
   * Completions committed by other processes are seen by polling; local ones resolve at once. A row gone
   * was acked, unless a cancel left its tombstone (the job named by id and enqueue time: ids may be reused).
   */
  protected override watchCompletion(job: JobRecord, waiting: Promise<CompletionResult>): void {
    let done = false;
    let cancelPoll: () => void = () => undefined;
    void waiting.then(() => {
      done = true;
      cancelPoll();
    });
    const poll = (): void => {
      cancelPoll = this.clock.setTimer(() => {
        this.one('completion', { jobId: job.id, enqueuedAt: job.enqueuedAt }).then(
          (row) => {
            const current = row.job ? toRecord(row.job) : undefined;
            if (!current || current.enqueuedAt !== job.enqueuedAt) this.completed(job.id, row.removed ? { kind: 'notFound' } : { kind: 'completed' });
            else if (current.status === 'done' || current.status === 'dead') this.completed(job.id, { kind: 'completed', job: current });
            else if (!done) poll();
          },
          () => {
            if (!done && !this.isClosed) poll();
          },
        );
      }, COMPLETION_POLL_MS);
    };
    poll();
  }

  protected override subscribersChanged(): void {
    if (!this.isClosed && this.notifications.size > 0) this.notifier?.start();
  }

  // ---- internals ------------------------------------------------------------------------------------

  private flushHost(): FlushHost {
    return {
      metrics: this.metrics,
      configJson: this.configJson,
      now: () => this.now(),
      isClosed: () => this.isClosed,
      settleOne: async (params) => (await this.one('settleOne', params)).result,
      claimJobs: (params) => this.rows('claim', params),
      settleAndClaim: async (params) => (await this.one('settleAndClaim', params)).result,
      settled: (jobId, result) => this.settled(jobId, result),
    };
  }

  /** A settlement committed: local wakeups, promotion timers and completions, then its result. */
  private settled(jobId: string, result: Exclude<SettleJson, { error: unknown }>): SettleResult {
    const queue = result.queue;
    if (result.status === 'pending') this.notify(queue, { type: 'jobsAvailable', queue });
    else if (result.status === 'scheduled' && result.runAt != null) this.wakeAt(Number(result.runAt));
    else if (result.status === 'done' || result.status === 'dead') this.completedLocally(jobId, result.status);
    return { branch: result.branch, status: result.status, enqueued: this.afterInserts(result.enqueued ?? []) };
  }

  /** Waiters of a job settled here get its final record (when it was kept), read after the commit. */
  private completedLocally(jobId: string, status: 'done' | 'dead'): void {
    if (!this.completionWaiters.has(jobId)) return;
    void this._getJob(jobId).then(
      (job) => this.completed(jobId, job && (job.status === 'done' || job.status === 'dead') ? { kind: 'completed', job } : { kind: 'completed' }),
      () => this.completed(jobId, status === 'done' ? { kind: 'completed' } : { kind: 'timedOut' }),
    );
  }

  /** Local wakeups and precise promotion timers for freshly inserted jobs; strips the internal fields. */
  private afterInserts(inserted: InsertJson[]): EnqueueResult[] {
    return inserted.map((r) => {
      if (r.kind === 'new' && r.queue !== undefined) {
        if (r.runAt === undefined || r.runAt === null) this.notify(r.queue, { type: 'jobsAvailable', queue: r.queue });
        else this.wakeAt(Number(r.runAt));
      }
      return { kind: r.kind, id: r.id };
    });
  }

  /** Wakes when the earliest known scheduled job falls due, so delays are not rounded up to the promote interval. */
  private wakeAt(runAt: number): void {
    this.armWake(runAt, () => this.maintain('promote'));
  }

  private onRemote(payload: string): void {
    const notification = parseNotification(payload);
    if (notification) this.notify(notification.queue, notification);
  }

  /** After (re)connecting LISTEN, anything may have been missed: wake every subscribed queue. */
  private onListenConnected(): void {
    for (const queue of this.notifications.queues()) this.notify(queue, { type: 'jobsAvailable', queue });
  }

  /** The `now` parameter: the injected clock's time, or null for "the database's clock". */
  private now(): number | null {
    return this.injectedClock ? this.clock.now() : null;
  }

  private async query<N extends StatementName>(
    name: N,
    params: Statements[N]['params'],
  ): Promise<{ rows: Array<Statements[N]['row']>; rowCount: number | null }> {
    if (!this.opened) await this.open();
    this.checkOpen();
    this.metrics.statements++;
    const statement = this.sql[name];
    const promise = this.pool.query({ name: this.names[name], text: statement.text, values: paramValues(statement, params) });
    this.inFlight.add(promise);
    try {
      const result = await promise;
      // The one place rows get their type: each statement's result row is declared in `Statements`.
      return { rows: result.rows as Array<Statements[N]['row']>, rowCount: result.rowCount };
    } catch (error) {
      throw mapError(error, name);
    } finally {
      this.inFlight.delete(promise);
    }
  }

  private async rows<N extends StatementName>(name: N, params: Statements[N]['params']): Promise<Array<Statements[N]['row']>> {
    return (await this.query(name, params)).rows;
  }

  /** A statement that returns exactly one row (a function call, an aggregate). */
  private async one<N extends StatementName>(name: N, params: Statements[N]['params']): Promise<Statements[N]['row']> {
    const [row] = await this.rows(name, params);
    if (row === undefined) throw new Error(`statement ${name} returned no row`);
    return row;
  }
}

/**
 * A task run by a timer: a call while the previous run is still in flight
 * runs it once more right after (with the time of that moment), unless the
 * store stopped meanwhile. Failures are left to the next tick.
 */
function rerunWhileBusy(): (task: () => Promise<unknown>, stopped: () => boolean) => void {
  let running = false;
  let again = false;
  const run = (task: () => Promise<unknown>, stopped: () => boolean): void => {
    if (running) {
      again = true;
      return;
    }
    running = true;
    void task()
      .catch(() => undefined)
      .finally(() => {
        running = false;
        if (again && !stopped()) {
          again = false;
          run(task, stopped);
        }
      });
  };
  return run;
}

/** A claim this store could never have issued is not held: `LEASE_LOST`, as for any other. */
function checkClaimRef(claim: ClaimRef): void {
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- untyped callers reach this through the public API
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
