import type { Clock } from './clock.js';
import { LeaseLostError } from './errors.js';
import { InFlightSteps } from './in-flight-steps.js';
import type { Claim, QueueStore } from './queue-store.js';

/** One claimed job whose lease the runtime keeps alive (a step, or a durable hook notification). */
export interface LeasedJob {
  readonly jobId: string;
  /** Position in `InFlightSteps`; -1 once released. */
  slot: number;
  readonly claim: Claim;
  /** The run the job belongs to, once known (for reports). */
  runId: string | undefined;
  readonly leaseMs: number;
  /** Clock ms of the next renewal: a third of the lease after the claim or the last renewal. */
  renewAt: number;
  /**
   * Clock ms (this runtime's clock) the lease runs out: the time the claim
   * was handed over or the last renewal was asked for, plus the lease. The
   * store's own lease times are never compared with this clock: on a shared
   * database they are the database's, and a host's clock may be off.
   */
  leaseExpiresAt: number;
  /** Clock ms the runner is timed out at; undefined for none (no timeout, or the runner returned). */
  deadline: number | undefined;
  /** The step timeout the deadline was set from. */
  readonly timeoutMs: number | undefined;
  /** Whether a cancel aborts the runner's signal (false for a step that takes no cancel mid-step). */
  cancellable: boolean;
  /** A renewal of this lease is in flight. */
  renewing: boolean;
  /** Called once when `deadline` passes. */
  onTimeout: (() => void) | undefined;
  /** Aborts the runner's signal (cancel requested, lease lost, shutdown). */
  readonly controller: { abort(reason: unknown): void };
}

export interface LeaseKeeperEvents {
  cancelRequested(job: LeasedJob): void;
  leaseLost(job: LeasedJob): void;
  renewFailed(job: LeasedJob, error: unknown): void;
}

/**
 * Renews every held lease on its own schedule (a third of its length after
 * the claim or the last renewal) and times out runners at their deadline,
 * with one clock timer armed at the earliest due time. A job that is
 * released before it is due costs no timer of its own: most steps finish
 * long before a third of their lease, so adding one is O(1) and the shared
 * timer, when it fires, scans only the jobs still held.
 */
export class LeaseKeeper {
  private readonly held = new InFlightSteps<LeasedJob>();
  private timer: { at: number; cancel: () => void } | undefined;

  constructor(
    private readonly clock: Clock,
    private readonly store: QueueStore,
    private readonly events: LeaseKeeperEvents,
  ) {}

  /** Starts keeping `claim`'s lease; `timeoutMs` bounds its runner. */
  hold(claim: Claim, controller: { abort(reason: unknown): void }, timeoutMs?: number): LeasedJob {
    const now = this.clock.now();
    const job = claim.job;
    const leaseMs = Math.max(1, (job.leaseExpiresAt ?? now) - (job.claimedAt ?? now));
    const leased: LeasedJob = {
      jobId: claim.jobId,
      slot: -1,
      claim,
      runId: undefined,
      leaseMs,
      renewAt: now + renewalPeriod(leaseMs),
      leaseExpiresAt: now + leaseMs,
      deadline: timeoutMs === undefined ? undefined : now + timeoutMs,
      timeoutMs,
      cancellable: true,
      renewing: false,
      onTimeout: undefined,
      controller,
    };
    this.held.add(leased);
    this.arm(dueAt(leased));
    return leased;
  }

  /** Stops keeping the lease (idempotent). */
  release(leased: LeasedJob): void {
    if (leased.slot >= 0) this.held.remove(leased);
  }

  find(jobId: string): LeasedJob | undefined {
    return this.held.find(jobId);
  }

  values(): readonly LeasedJob[] {
    return this.held.values();
  }

  /** Cancels the timer (the worker loop ended); `hold` re-arms it. */
  stop(): void {
    this.timer?.cancel();
    this.timer = undefined;
  }

  private arm(at: number): void {
    if (this.timer && this.timer.at <= at) return;
    this.timer?.cancel();
    const timer = { at, cancel: this.clock.setTimer(() => this.fire(timer), Math.max(0, at - this.clock.now())) };
    this.timer = timer;
  }

  private fire(timer: { at: number }): void {
    if (this.timer === timer) this.timer = undefined;
    const now = this.clock.now();
    // A copy: a timed-out runner's handler may release its job while we iterate.
    for (const leased of [...this.held.values()]) {
      if (leased.deadline !== undefined && leased.deadline <= now) {
        leased.deadline = undefined;
        leased.onTimeout?.();
      } else if (!leased.renewing && leased.renewAt <= now) {
        void this.renew(leased, now);
      }
    }
    this.rearm();
  }

  private rearm(): void {
    let next: number | undefined;
    for (const leased of this.held.values()) {
      if (leased.renewing && leased.deadline === undefined) continue; // re-armed when the renewal answers
      const at = leased.renewing ? (leased.deadline as number) : dueAt(leased);
      if (next === undefined || at < next) next = at;
    }
    if (next !== undefined) this.arm(next);
  }

  private async renew(leased: LeasedJob, now: number): Promise<void> {
    leased.renewing = true;
    try {
      const renewed = await this.store.renewLease(leased.claim, leased.leaseMs);
      leased.leaseExpiresAt = now + leased.leaseMs; // from before the request: never later than the store's
      leased.renewAt = now + renewalPeriod(leased.leaseMs);
      if (renewed.cancelRequested) this.events.cancelRequested(leased);
    } catch (error) {
      if (error instanceof LeaseLostError) {
        this.events.leaseLost(leased);
        this.release(leased);
        return;
      }
      // Transient: try again well before the lease runs out.
      leased.renewAt = this.clock.now() + Math.max(1, Math.floor(leased.leaseMs / 12));
      this.events.renewFailed(leased, error);
    } finally {
      leased.renewing = false;
    }
    if (leased.slot >= 0) this.arm(dueAt(leased));
  }
}

function renewalPeriod(leaseMs: number): number {
  return Math.max(1, Math.floor(leaseMs / 3));
}

function dueAt(leased: LeasedJob): number {
  return leased.deadline === undefined ? leased.renewAt : Math.min(leased.renewAt, leased.deadline);
}
