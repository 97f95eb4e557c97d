/**
 * Group commit of settlements and claims. Both are queued and flushed at the
 * end of the event-loop turn (so those issued together, a runtime's
 * settlements and the claim for the slots they freed, share one
 * transaction); at most `settleConcurrency` flushes are in flight. A flush
 * runs its settlements (in job-id order) and then its claims, which so see
 * the jobs those settlements enqueued. Claims wait until no flush is in
 * flight (they would otherwise miss the jobs being committed), nor a reap or
 * promotion, and settlements queued meanwhile wait with them, so claims are
 * never starved.
 *
 * Except with a backlog: when the queue's last claim came back full, other
 * jobs are waiting, so a claim needs nothing from the settlements in flight
 * or queued; it goes at once in its own statement, and the settlements'
 * transaction runs beside it instead of ahead of it (the runtime gets its
 * next steps while the database commits the last ones).
 */
import { compareIds } from '../../core/ids.js';
import type { Claim, SettleResult } from '../../core/queue-store.js';
import { mapError } from './postgres-errors.js';
import { toRecord } from './postgres-rows.js';
import type { ClaimItemJson, FlushJson, JobRow, SettleItemJson, SettleJson } from './postgres-rows.js';
import type { Statements } from './postgres-sql.js';

interface Waiter<Item, Result> {
  item: Item;
  resolve: (result: Result) => void;
  reject: (error: unknown) => void;
}

type SettleWaiter = Waiter<SettleItemJson, SettleResult>;
type ClaimWaiter = Waiter<ClaimItemJson, Claim[]>;

/**
 * Counters for benchmarks and monitoring: statements sent (each is one
 * transaction), transactions of claims alone, transactions carrying
 * settlements, the settlements committed in them, and the claims that rode
 * in those same transactions.
 */
export interface FlushMetrics {
  statements: number;
  claimStatements: number;
  settleTransactions: number;
  settlements: number;
  claimsWithSettlements: number;
}

/** What the pipeline needs from its store. */
export interface FlushHost {
  readonly metrics: FlushMetrics;
  /** The `now` parameter of the next statement. */
  now(): number | null;
  /** The queue configs' JSON the settle functions read. */
  readonly configJson: string;
  isClosed(): boolean;
  settleOne(params: Statements['settleOne']['params']): Promise<SettleJson>;
  claimJobs(params: Statements['claim']['params']): Promise<JobRow[]>;
  settleAndClaim(params: Statements['settleAndClaim']['params']): Promise<FlushJson>;
  /** A committed settlement's result, with the store's local follow-ups (wakeups, completions) done. */
  settled(jobId: string, result: Exclude<SettleJson, { error: unknown }>): SettleResult;
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

/** Most jobs one claim asks for (the SQL's integer). */
const MAX_CLAIM_LIMIT = 2_147_483_647;

export class FlushPipeline {
  private settleQueue: SettleWaiter[] = [];
  private claimQueue: ClaimWaiter[] = [];
  private flushesInFlight = 0;
  private flushScheduled = false;
  /** Queues whose last claim came back full: their claims need not wait for settlements. */
  private readonly backlog = new Set<string>();
  /** Reaps and promotions in flight: claims wait for them. */
  private maintenanceInFlight = 0;
  /** Lease renewals waiting for the reaps and promotions in flight. */
  private maintenanceWaiters: Array<() => void> = [];

  constructor(
    private readonly host: FlushHost,
    private readonly settleConcurrency: number,
    private readonly maxSettleBatch: number,
  ) {}

  /** Queued synchronously: settlements (and claims) of one event-loop turn share a transaction. */
  settle(item: SettleItemJson): Promise<SettleResult> {
    return new Promise<SettleResult>((resolve, reject) => {
      this.settleQueue.push({ item, resolve, reject });
      this.scheduleFlush();
    });
  }

  /** Queued synchronously: a claim issued in the same event-loop turn as settlements shares their transaction. */
  claim(queue: string, leaseMs: number, limit: number): Promise<Claim[]> {
    return new Promise<Claim[]>((resolve, reject) => {
      this.claimQueue.push({ item: { queue, limit: Math.min(limit, MAX_CLAIM_LIMIT), leaseMs }, resolve, reject });
      this.scheduleFlush();
    });
  }

  /**
   * A reap or promotion: claims issued while it runs wait for it, so they see
   * the jobs it made claimable (a claim issued after the reaper fired finds
   * the expired claims requeued, whichever connection answers first).
   */
  async maintenance<T>(operation: () => Promise<T>): Promise<T> {
    this.maintenanceInFlight++;
    try {
      return await operation();
    } finally {
      this.maintenanceInFlight--;
      if (this.maintenanceInFlight === 0) {
        for (const resume of this.maintenanceWaiters.splice(0)) resume();
        if (this.claimQueue.length > 0) this.scheduleFlush();
      }
    }
  }

  /** Resolves once no reap or promotion is in flight (at once when none is). */
  async maintenanceDone(): Promise<void> {
    if (this.maintenanceInFlight > 0) await new Promise<void>((resolve) => this.maintenanceWaiters.push(resolve));
  }

  /** Fails everything still queued (the store closes). */
  rejectQueued(error: Error): void {
    for (const waiter of this.settleQueue.splice(0)) waiter.reject(error);
    for (const waiter of this.claimQueue.splice(0)) waiter.reject(error);
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    deferToEndOfTurn(() => {
      this.flushScheduled = false;
      this.pumpFlushes();
    });
  }

  private pumpFlushes(): void {
    if (this.claimQueue.length > 0 && this.maintenanceInFlight === 0 && !this.host.isClosed()) {
      const waiting: ClaimWaiter[] = [];
      for (const claim of this.claimQueue) {
        if (this.backlog.has(claim.item.queue)) void this.runFlush([], [claim]);
        else waiting.push(claim);
      }
      this.claimQueue = waiting;
    }
    while (this.flushesInFlight < this.settleConcurrency && !this.host.isClosed()) {
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

  /** One transaction: a lone settlement or claim takes its own function, anything more `settle_and_claim`. */
  private async send(settles: SettleWaiter[], claims: ClaimWaiter[]): Promise<FlushJson> {
    const now = this.host.now();
    const only = settles[0];
    if (claims.length === 0 && settles.length === 1 && only) {
      return { settled: [await this.host.settleOne({ now, config: this.host.configJson, item: JSON.stringify(only.item) })], claimed: [] };
    }
    const claim = claims[0];
    if (settles.length === 0 && claims.length === 1 && claim) {
      return { settled: [], claimed: [await this.host.claimJobs({ now, ...claim.item })] };
    }
    return this.host.settleAndClaim({
      now,
      config: this.host.configJson,
      items: JSON.stringify(settles.map((waiter) => waiter.item)),
      claims: JSON.stringify(claims.map((waiter) => waiter.item)),
    });
  }

  private async runFlush(settles: SettleWaiter[], claims: ClaimWaiter[]): Promise<void> {
    let result: FlushJson;
    try {
      result = await this.send(settles, claims);
    } catch (error) {
      for (const waiter of settles) waiter.reject(error);
      for (const waiter of claims) waiter.reject(error);
      return;
    }
    const metrics = this.host.metrics;
    if (settles.length > 0) {
      metrics.settleTransactions++;
      metrics.settlements += settles.length;
      metrics.claimsWithSettlements += claims.length;
    } else {
      metrics.claimStatements++;
    }
    settles.forEach((waiter, index) => {
      const settled = result.settled[index] as SettleJson;
      if ('error' in settled) waiter.reject(mapError(settled.error, 'settle'));
      else waiter.resolve(this.host.settled(waiter.item.jobId, settled));
    });
    claims.forEach((waiter, index) => {
      const rows = result.claimed[index] ?? [];
      if (rows.length === waiter.item.limit) this.backlog.add(waiter.item.queue);
      else this.backlog.delete(waiter.item.queue);
      const claimed = rows.map((row) => ({ jobId: row.id, token: row.token as string, job: toRecord(row) }));
      claimed.sort((a, b) => a.job.priority - b.job.priority || compareIds(a.jobId, b.jobId));
      waiter.resolve(claimed);
    });
  }
}
