import { EventEmitter } from 'eventemitter3';
import { SystemClock } from './clock.js';
import type { Clock } from './clock.js';
import {
  InputMismatchError,
  InvalidArgumentError,
  InvalidRunIdError,
  InvalidStateError,
  LeaseLostError,
  LimitExceededError,
  MissingHeaderError,
  InvalidStepHeaderError,
  ReservedHeaderInSubmitError,
  isTransientError,
} from './errors.js';
import { copyHeaders, headerBytes } from './headers.js';
import { InFlightSteps } from './in-flight-steps.js';
import { newId } from './ids.js';
import { noopHook, toRunnerResult } from './outcomes.js';
import type { RunOutcome, RunnerResult, Step, StepRunner, TerminalHook } from './outcomes.js';
import type { Claim, Effects, Headers, JobRecord, QueueStore, SettleResult, Settlement, StoreNotification } from './queue-store.js';
import { decodeNotification, decodeRecord, encodeRecord, runKeys, sha256Hex } from './run-records.js';
import type { RunCursor, RunIdentity } from './run-records.js';
import { HEADER_RUN_ID, HEADER_STEP, RESERVED_HEADER_PREFIX, cursorValue, decideSettlement, endRunEffects, reaperBranch, stepDedupKey, stepHeaders } from './settlement.js';
import type { SettlementDecision } from './settlement.js';
import { checkNonNegativeInt, checkPositiveInt, describe } from './store-validation.js';

/** Spec of a new run. */
export interface RunSpec {
  /** 1 to 128 characters of [A-Za-z0-9_-]; a ULID when omitted. */
  runId?: string;
  /** Payload of step 0; its SHA-256 identifies the run on re-submission. */
  input: Uint8Array;
  /** Threaded through every step and handed to the hook. No `workflow.` keys. */
  headers?: Headers;
  /** Priority of every step of the run (lower first). */
  priority?: number;
  /** Max attempts of every step of the run. */
  maxAttemptsPerStep?: number;
}

/** Result of `submit`. */
export interface SubmitResult {
  runId: string;
  /** False when the run was already active with the same input (nothing was written). */
  newlySubmitted: boolean;
}

/** Where an active run is. */
export type RunState = 'pending' | 'running' | 'cancelling';

/** Status of an active run. */
export interface RunStatus {
  runId: string;
  state: RunState;
  currentStep: number;
}

/** Size caps on submitted runs (and on continue payloads). */
export interface RuntimeLimits {
  /** Default 2 MiB. */
  maxPayloadBytes: number;
  /** Default 64. */
  maxHeaders: number;
  /** UTF-8 bytes of all keys and values. Default 8 KiB. */
  maxHeaderBytes: number;
}

export const DEFAULT_LIMITS: Readonly<RuntimeLimits> = Object.freeze({
  maxPayloadBytes: 2 * 1024 * 1024,
  maxHeaders: 64,
  maxHeaderBytes: 8 * 1024,
});

/** Options of `WorkflowRuntime`. */
export interface WorkflowRuntimeOptions {
  store: QueueStore;
  runner: StepRunner;
  /** Called once per ended run, after the terminal commit. Default: no-op. */
  hook?: TerminalHook;
  /** Queue carrying the step jobs. Default `workflow-steps`. */
  queueName?: string;
  /**
   * Runners run at once by `run()`. Default 16. A step frees its slot when
   * its runner returns and its settlement is on its way; up to as many
   * settlements again may still be committing.
   */
  maxConcurrentSteps?: number;
  /** Longest wait on an empty queue before claiming again. Default 250. */
  pollIntervalMs?: number;
  /** Must be the store's clock. Default `SystemClock`. */
  clock?: Clock;
  limits?: Partial<RuntimeLimits>;
  /**
   * How the hook is delivered. `inProcess` (default): awaited right after the
   * terminal commit by the runtime that committed it; a crash in between loses
   * that one notification. `durable`: the terminal commit also enqueues the
   * outcome on `<queueName>.outcomes`, and worker loops run the hook as that
   * job's worker, at least once, retried with the queue's backoff on failure.
   */
  hookDelivery?: 'inProcess' | 'durable';
}

/** Typed lifecycle events, for logging and metrics without wrapping the runner. */
export interface RuntimeEvents {
  runSubmitted: (event: { runId: string; jobId: string }) => void;
  stepStarted: (event: { runId: string; stepNumber: number; jobId: string; attempts: number }) => void;
  stepSettled: (event: {
    runId: string;
    stepNumber: number;
    jobId: string;
    branch: SettleResult['branch'];
    status: SettleResult['status'];
    /** Clock ms from claim to committed settlement. */
    durationMs: number;
  }) => void;
  runEnded: (outcome: RunOutcome) => void;
  hookFailed: (event: { outcome: RunOutcome; error: unknown }) => void;
  storeError: (event: { operation: string; error: unknown; runId?: string; jobId?: string }) => void;
  leaseLost: (event: { runId: string; stepNumber: number; jobId: string }) => void;
  /**
   * A step job that no longer carries its run (the run ended, or its id now
   * belongs to a newer run: a requeued dead job, a late re-delivery) settled
   * with no effect on any run; its runner's outcome was discarded.
   */
  staleStep: (event: { runId: string; stepNumber: number; jobId: string }) => void;
  /** A step job without valid `workflow.*` headers was dead-lettered (no hook: it belongs to no run). */
  malformedStep: (event: { jobId: string; error: Error }) => void;
}

const RUN_ID_PATTERN = /^[A-Za-z0-9_-]{1,128}$/;
const MAX_STORE_BACKOFF_MS = 5_000;
const SETTLE_RETRIES = 5;
const STORE_RETRIES = 10;

/** Creates the step's AbortController only when the runner reads `signal` (most never do). */
class LazyAbort {
  private controller: AbortController | undefined;
  private reason: unknown;
  private aborted = false;

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.aborted) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    this.controller?.abort(reason);
  }
}

/** The `Step` handed to a runner; `signal` comes from the lazily created controller. */
class RunnerStep implements Step {
  readonly payload: Uint8Array;
  readonly jobId: string;
  readonly attempts: number;
  readonly #abort: LazyAbort;

  constructor(
    readonly runId: string,
    readonly stepNumber: number,
    job: JobRecord,
    readonly headers: Headers,
    abort: LazyAbort,
  ) {
    this.payload = job.payload;
    this.jobId = job.id;
    this.attempts = job.attempts;
    this.#abort = abort;
  }

  get signal(): AbortSignal {
    return this.#abort.signal;
  }
}

function isThenable<T>(value: T | PromiseLike<T>): value is PromiseLike<T> {
  return typeof (value as { then?: unknown } | null)?.then === 'function';
}

interface InFlightStep {
  readonly jobId: string;
  /** Position in `InFlightSteps`. */
  slot: number;
  claim: Claim;
  controller: LazyAbort;
  leaseMs: number;
  renewedAt: number;
}

/**
 * Drives workflow runs over a `QueueStore`: `submit` starts runs, `run`
 * executes their steps, `status` and `cancel` work from any runtime sharing
 * the store. All run state lives in the store, so any number of runtimes (in
 * one process or many) can share it, and a restart resumes every run at the
 * step after the last settled one.
 */
export class WorkflowRuntime extends EventEmitter<RuntimeEvents> {
  readonly store: QueueStore;
  readonly queueName: string;
  private readonly runner: StepRunner;
  private readonly hook: TerminalHook;
  private readonly maxConcurrentSteps: number;
  private readonly pollIntervalMs: number;
  private readonly clock: Clock;
  private readonly limits: RuntimeLimits;
  /** Queue of durable outcome notifications; undefined for in-process hook delivery. */
  readonly outcomeQueue: string | undefined;
  /**
   * Queue of outcome notifications the worker loops deliver: every outcome
   * with durable delivery, and with either delivery those of runs the
   * reaper's commit ended (no runtime was there to run the hook).
   */
  readonly notificationQueue: string;
  private readonly inFlight = new InFlightSteps<InFlightStep>();
  private running = false;
  /** Steps of `run()` whose runner (or hook) has not returned: each holds a concurrency slot. */
  private slotsHeld = 0;
  /** Steps of `run()` not yet finished, settlement included. */
  private unfinishedSteps = 0;
  private drained: (() => void) | undefined;
  private wakeUp: (() => void) | undefined;
  private woken = false;
  private pollTimer: { dueAt: number; cancel: () => void } | undefined;
  private renewTimer: (() => void) | undefined;

  constructor(options: WorkflowRuntimeOptions) {
    super();
    if (!options || typeof options !== 'object') throw new InvalidArgumentError('runtime options', 'expected an object');
    if (!options.store) throw new InvalidArgumentError('store', 'a QueueStore is required');
    if (typeof options.runner !== 'function') throw new InvalidArgumentError('runner', 'expected a function (step) => StepOutcome');
    if (options.hook !== undefined && typeof options.hook !== 'function') throw new InvalidArgumentError('hook', 'expected a function');
    this.store = options.store;
    this.runner = options.runner;
    this.hook = options.hook ?? noopHook;
    this.queueName = options.queueName ?? 'workflow-steps';
    if (typeof this.queueName !== 'string' || this.queueName.length === 0) throw new InvalidArgumentError('queueName', 'expected a non-empty string');
    this.maxConcurrentSteps = options.maxConcurrentSteps ?? 16;
    checkPositiveInt('maxConcurrentSteps', this.maxConcurrentSteps);
    this.pollIntervalMs = options.pollIntervalMs ?? 250;
    checkPositiveInt('pollIntervalMs', this.pollIntervalMs);
    this.clock = options.clock ?? new SystemClock();
    this.limits = { ...DEFAULT_LIMITS, ...options.limits };
    if (options.hookDelivery !== undefined && options.hookDelivery !== 'inProcess' && options.hookDelivery !== 'durable') {
      throw new InvalidArgumentError('hookDelivery', `expected "inProcess" or "durable", got ${describe(options.hookDelivery)}`);
    }
    this.notificationQueue = `${this.queueName}.outcomes`;
    this.outcomeQueue = options.hookDelivery === 'durable' ? this.notificationQueue : undefined;
    checkPositiveInt('limits.maxPayloadBytes', this.limits.maxPayloadBytes);
    checkNonNegativeInt('limits.maxHeaders', this.limits.maxHeaders);
    checkNonNegativeInt('limits.maxHeaderBytes', this.limits.maxHeaderBytes);
  }

  // ---- submit / status / cancel ------------------------------------------

  /**
   * Starts a run: step 0 and the run's durable records commit together.
   * Idempotent on `(runId, input)`: an active run with the same input gives
   * `newlySubmitted: false`; a different input throws `InputMismatchError`.
   * Bad input throws a typed error and writes nothing.
   */
  async submit(spec: RunSpec): Promise<SubmitResult> {
    const { runId, headers, input } = this.checkSpec(spec);
    const keys = runKeys(this.queueName, runId);
    const inputSha256 = sha256Hex(input);
    const now = this.clock.now();
    const jobId = newId(now);
    for (let attempt = 0; attempt < 5; attempt++) {
      const existing = await this.store.kvGet(keys.identity);
      if (existing !== undefined) return this.duplicateSubmit(runId, existing, inputSha256);
      const result = await this.store.enqueue(
        this.queueName,
        input,
        {
          id: jobId,
          headers: stepHeaders(headers, runId, 0),
          dedupKey: stepDedupKey(runId, 0),
          reaperDeadLetter: reaperBranch({ runId, userHeaders: headers, keys, reapedOutcomeQueue: this.notificationQueue }, jobId, 0),
          ...(spec.priority === undefined ? {} : { priority: spec.priority }),
          ...(spec.maxAttemptsPerStep === undefined ? {} : { maxAttempts: spec.maxAttemptsPerStep }),
        },
        [
          { key: keys.identity, value: encodeRecord({ runId, submittedAt: now, inputSha256 } satisfies RunIdentity), ifAbsent: true },
          { key: keys.cursor, value: cursorValue(jobId, 0) },
        ],
      );
      if (result.kind === 'new') {
        this.emit('runSubmitted', { runId, jobId });
        return { runId, newlySubmitted: true };
      }
      // Another submitter won the race (dedup hit or identity present): compare inputs.
      const winner = await this.store.kvGet(keys.identity);
      if (winner !== undefined) return this.duplicateSubmit(runId, winner, inputSha256);
      if (result.kind === 'alreadyEnqueued') return { runId, newlySubmitted: false };
      // The identity vanished in between (that run just ended): try again.
    }
    return { runId, newlySubmitted: false };
  }

  /** Status of an active run, from any runtime sharing the store; `undefined` once it ended or if unknown. */
  async status(runId: string): Promise<RunStatus | undefined> {
    checkRunId(runId);
    const keys = runKeys(this.queueName, runId);
    for (let attempt = 0; attempt < 5; attempt++) {
      const raw = await this.store.kvGet(keys.cursor);
      if (raw === undefined) return undefined;
      const cursor = decodeRecord<RunCursor>(raw);
      const job = await this.store.getJob(cursor.jobId);
      if (!job) continue; // the run advanced between the two reads
      const state: RunState = job.cancelRequested ? 'cancelling' : job.status === 'pending' || job.status === 'scheduled' ? 'pending' : 'running';
      return { runId, state, currentStep: cursor.step };
    }
    return undefined;
  }

  /**
   * Cancels an active run. A pending or scheduled step is removed and the run
   * ends cancelled (hook fired) before this returns; a running step gets its
   * signal aborted and the run ends cancelled when it settles. Returns false
   * for an unknown or ended run, and for a run already being cancelled.
   */
  async cancel(runId: string): Promise<boolean> {
    checkRunId(runId);
    const keys = runKeys(this.queueName, runId);
    let previousJobId: string | undefined;
    for (let attempt = 0; attempt < 20; attempt++) {
      const raw = await this.store.kvGet(keys.cursor);
      if (raw === undefined) return false;
      const cursor = decodeRecord<RunCursor>(raw);
      // Same job twice and still not found: it is not cancellable (done or dead, its run ending).
      if (cursor.jobId === previousJobId) return false;
      let effects: Effects = { kvDeletes: [keys.identity, keys.cursor] };
      if (this.outcomeQueue !== undefined) {
        // The notification carries the outcome, and so the job's headers: read them first.
        const job = await this.store.getJob(cursor.jobId);
        // Attach them whatever the status read: they commit only with a removal, and the step may be re-queued meanwhile.
        if (job) {
          effects = endRunEffects({ keys, outcomeQueue: this.outcomeQueue, jobId: job.id }, cancelledOutcome(runId, job.headers, cursor.step));
        }
      }
      const result = await this.store.cancel(cursor.jobId, effects);
      if (result.outcome === 'removed') {
        await this.finish(cancelledOutcome(runId, result.job.headers, cursor.step));
        return true;
      }
      if (result.outcome === 'requested') {
        if (result.firstRequest) this.inFlight.find(cursor.jobId)?.controller.abort(cancelReason());
        return result.firstRequest;
      }
      previousJobId = cursor.jobId; // the run moved on meanwhile: follow it
    }
    return false;
  }

  // ---- worker loop -------------------------------------------------------

  /**
   * Claims and runs steps until `signal` aborts, then lets in-flight steps
   * finish and settle, and resolves. One loop per runtime at a time.
   */
  async run(signal: AbortSignal): Promise<void> {
    if (this.running) throw new InvalidStateError(this.queueName, 'running', 'start a second worker loop on');
    this.running = true;
    // A step holds its slot while its runner runs; its settlement commits
    // after the slot is freed, so the next claim can share the settlement's
    // group commit (stores that batch writes). Settlements still in flight
    // are capped at another `maxConcurrentSteps`.
    const sources: Array<{ queue: string; process: (claim: Claim) => Promise<void> }> = [
      { queue: this.queueName, process: (c) => this.processStep(c) },
      { queue: this.notificationQueue, process: (c) => this.processOutcome(c) },
    ];
    const unsubscribes = sources.map((source) => this.store.subscribe(source.queue, (n) => this.onNotification(n)));
    const onAbort = (): void => this.wake();
    signal.addEventListener('abort', onAbort);
    try {
      let failures = 0;
      while (!signal.aborted) {
        let moreWaiting = false;
        this.woken = false;
        try {
          for (const source of sources) {
            const free = Math.min(this.maxConcurrentSteps - this.slotsHeld, 2 * this.maxConcurrentSteps - this.unfinishedSteps);
            if (free <= 0) break;
            const claims = await this.store.claim(source.queue, { limit: free });
            if (claims.length === free) moreWaiting = true; // a full batch: more may be waiting
            for (const claim of claims) {
              this.slotsHeld++;
              this.unfinishedSteps++;
              void source.process(claim).then(this.stepFinished, this.stepCrashed);
            }
          }
          failures = 0;
        } catch (error) {
          this.emit('storeError', { operation: 'claim', error });
          failures++;
          await this.idle(Math.min(MAX_STORE_BACKOFF_MS, 50 * 2 ** Math.min(failures, 10)), signal);
          continue;
        }
        if (!moreWaiting) await this.idle(this.pollIntervalMs, signal);
      }
      if (this.unfinishedSteps > 0) await new Promise<void>((resolve) => (this.drained = resolve));
    } finally {
      signal.removeEventListener('abort', onAbort);
      for (const unsubscribe of unsubscribes) unsubscribe();
      this.renewTimer?.();
      this.renewTimer = undefined;
      this.pollTimer?.cancel();
      this.pollTimer = undefined;
      this.running = false;
    }
  }

  /** A step's runner (or an outcome's hook) is done: its slot goes to the next claim. Called once per step. */
  private releaseSlot(): void {
    this.slotsHeld--;
    this.wake();
  }

  /** A step threw past its own handling (a bug, not a runner failure): reported, and counted as finished. */
  private readonly stepCrashed = (error: unknown): void => {
    this.emit('storeError', { operation: 'processStep', error });
    this.stepFinished();
  };

  /** A step is completely done, its settlement included. */
  private readonly stepFinished = (): void => {
    this.unfinishedSteps--;
    this.wake();
    if (this.unfinishedSteps === 0 && this.drained) {
      const drained = this.drained;
      this.drained = undefined;
      drained();
    }
  };

  private wake(): void {
    this.woken = true;
    this.wakeUp?.();
  }

  /**
   * Waits for a wakeup (store notification, a freed slot, abort) or `ms` of
   * clock time. One poll timer is shared by successive waits, so a busy
   * loop does not create and clear a timer per iteration.
   */
  private idle(ms: number, signal: AbortSignal): Promise<void> {
    if (this.woken || signal.aborted) {
      this.woken = false;
      return Promise.resolve();
    }
    const dueAt = this.clock.now() + ms;
    if (!this.pollTimer || this.pollTimer.dueAt > dueAt) {
      this.pollTimer?.cancel();
      const timer = {
        dueAt,
        cancel: this.clock.setTimer(() => {
          if (this.pollTimer === timer) this.pollTimer = undefined;
          this.wake();
        }, ms),
      };
      this.pollTimer = timer;
    }
    return new Promise((resolve) => {
      this.wakeUp = () => {
        this.wakeUp = undefined;
        this.woken = false;
        resolve();
      };
    });
  }

  private onNotification(notification: StoreNotification): void {
    switch (notification.type) {
      case 'jobsAvailable':
        this.wake();
        return;
      case 'cancelRequested':
        this.inFlight.find(notification.jobId)?.controller.abort(cancelReason());
        return;
      case 'deadLettered':
        return; // the reaper's commit already ended those runs (the effects each step job carries)
    }
  }

  // ---- one step ------------------------------------------------------------

  private async processStep(claim: Claim): Promise<void> {
    let holdsSlot = true;
    try {
      const job = claim.job;
      const parsed = parseStepHeaders(job.headers);
      if (parsed instanceof Error) {
        this.emit('malformedStep', { jobId: job.id, error: parsed });
        await this.settleWithRetry(claim, { settlement: { action: { type: 'deadLetter', reason: parsed.message } } }).catch(() => undefined);
        return;
      }
      const { runId, stepNumber } = parsed;
      const headers = userHeaders(job.headers);
      const controller = new LazyAbort();
      if (job.cancelRequested) controller.abort(cancelReason());
      const leaseMs = Math.max(1, (job.leaseExpiresAt ?? 0) - (job.claimedAt ?? 0));
      const inFlight: InFlightStep = { jobId: job.id, slot: -1, claim, controller, leaseMs, renewedAt: this.clock.now() };
      this.inFlight.add(inFlight);
      this.armRenewal(leaseMs);
      if (this.listenerCount('stepStarted') > 0) this.emit('stepStarted', { runId, stepNumber, jobId: job.id, attempts: job.attempts });
      let result: RunnerResult;
      try {
        const returned = this.runner(new RunnerStep(runId, stepNumber, job, headers, controller));
        // A runner that answers synchronously costs no extra promise hop.
        result = toRunnerResult(isThenable(returned) ? await returned : returned);
      } catch (error) {
        result = { ok: false, error };
      } finally {
        this.inFlight.remove(inFlight);
      }
      const now = this.clock.now();
      const decision = decideSettlement(
        {
          queueName: this.queueName,
          runId,
          stepNumber,
          attempts: job.attempts,
          maxAttempts: job.maxAttempts,
          priority: job.priority,
          userHeaders: headers,
          keys: runKeys(this.queueName, runId),
          nextJobId: newId(now),
          maxPayloadBytes: this.limits.maxPayloadBytes,
          outcomeQueue: this.outcomeQueue,
          reapedOutcomeQueue: this.notificationQueue,
          jobId: job.id,
        },
        result,
      );
      let settled: SettleResult;
      // Issued before the slot is freed, so the store sees the settlement ahead of the next claim.
      const settling = this.settleOnce(claim, decision.settlement);
      holdsSlot = false;
      this.releaseSlot();
      try {
        try {
          settled = await settling;
        } catch (error) {
          settled = await this.retrySettle(claim, decision.settlement, error);
        }
      } catch (error) {
        if (error instanceof LeaseLostError && !(error instanceof SettlementUncertainError)) this.emit('leaseLost', { runId, stepNumber, jobId: job.id });
        else this.emit('storeError', { operation: 'settle', error, runId, jobId: job.id });
        return; // not committed (or unknown): the reaper re-delivers the step; no hook for an uncommitted outcome
      }
      if (this.listenerCount('stepSettled') > 0) {
        this.emit('stepSettled', { runId, stepNumber, jobId: job.id, branch: settled.branch, status: settled.status, durationMs: this.clock.now() - (job.claimedAt ?? now) });
      }
      if (settled.branch === 'stale') {
        this.emit('staleStep', { runId, stepNumber, jobId: job.id });
        return;
      }
      const outcome = settled.branch === 'cancel' ? decision.cancelOutcome : decision.primaryOutcome;
      if (outcome) await this.finish(outcome);
    } finally {
      if (holdsSlot) this.releaseSlot();
    }
  }

  /**
   * Settles, retrying transient store errors. If a retry finds the lease
   * gone after a failed attempt, the first attempt may have committed: that
   * is reported as a store error, and no hook fires (never for an outcome
   * that might not have committed; at worst the notification is lost, as in
   * a crash between commit and hook).
   */
  private settleWithRetry(claim: Claim, decision: Pick<SettlementDecision, 'settlement'>): Promise<SettleResult> {
    return this.settleOnce(claim, decision.settlement).then(undefined, (error: unknown) => this.retrySettle(claim, decision.settlement, error));
  }

  /** One settlement attempt; a synchronous throw of a non-async adapter becomes a rejection. */
  private settleOnce(claim: Claim, settlement: Settlement): Promise<SettleResult> {
    try {
      return this.store.settle(claim, settlement);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** Retries a failed settlement while its errors are transient (see `settleWithRetry`). */
  private async retrySettle(claim: Claim, settlement: Settlement, firstError: unknown): Promise<SettleResult> {
    let error = firstError;
    let lastTransient: unknown;
    for (let attempt = 0; ; attempt++) {
      if (!isTransientError(error)) {
        if (attempt > 0 && error instanceof LeaseLostError) throw new SettlementUncertainError(claim.jobId, lastTransient);
        throw error;
      }
      lastTransient = error;
      this.emit('storeError', { operation: 'settle', error, jobId: claim.jobId });
      if (attempt + 1 >= SETTLE_RETRIES) throw error;
      await sleepOn(this.clock, Math.min(MAX_STORE_BACKOFF_MS, 20 * 2 ** attempt));
      try {
        return await this.store.settle(claim, settlement);
      } catch (retryError) {
        error = retryError;
      }
    }
  }

  /**
   * Terminal bookkeeping after a commit: the event, then (in-process delivery)
   * the hook, errors caught. With durable delivery the committed notification
   * job runs the hook instead.
   */
  private async finish(outcome: RunOutcome): Promise<void> {
    this.emit('runEnded', outcome);
    if (this.outcomeQueue === undefined) await this.runHook(outcome);
  }

  /** Runs the hook; reports and returns its error instead of throwing. */
  private async runHook(outcome: RunOutcome): Promise<unknown> {
    try {
      await this.hook(outcome);
      return undefined;
    } catch (error) {
      this.emit('hookFailed', { outcome, error });
      return error ?? new Error('hook failed');
    }
  }

  /** Durable delivery: one outcome notification job, acked once the hook succeeded, nacked (retried) otherwise. */
  private async processOutcome(claim: Claim): Promise<void> {
    try {
      let outcome: RunOutcome;
      let endedByReaper: boolean;
      try {
        ({ outcome, endedByReaper } = decodeNotification(claim.job.payload));
      } catch (error) {
        await this.settleWithRetry(claim, { settlement: { action: { type: 'deadLetter', reason: `undecodable outcome: ${(error as Error).message}` } } }).catch(() => undefined);
        return;
      }
      // The reaper's commit ended this run and no runtime reported it: the first delivery does.
      if (endedByReaper && claim.job.attempts === 1) this.emit('runEnded', outcome);
      const error = await this.runHook(outcome);
      const action = error === undefined ? ({ type: 'ack' } as const) : ({ type: 'nack', error: error instanceof Error ? error.message : String(error) } as const);
      try {
        await this.settleWithRetry(claim, { settlement: { action } });
      } catch (settleError) {
        this.emit('storeError', { operation: 'settleOutcome', error: settleError, runId: outcome.runId, jobId: claim.jobId });
      }
    } finally {
      this.releaseSlot();
    }
  }

  // ---- leases --------------------------------------------------------------

  /** One timer renews every in-flight lease at a third of its length (and learns of remote cancels). */
  private armRenewal(leaseMs: number): void {
    if (this.renewTimer) return;
    const period = Math.max(1, Math.floor(leaseMs / 3));
    this.renewTimer = this.clock.setTimer(() => {
      this.renewTimer = undefined;
      void this.renewLeases().finally(() => {
        let shortest: number | undefined;
        for (const step of this.inFlight.values()) shortest = Math.min(shortest ?? step.leaseMs, step.leaseMs);
        if (shortest !== undefined) this.armRenewal(shortest);
      });
    }, period);
  }

  private async renewLeases(): Promise<void> {
    const now = this.clock.now();
    await Promise.all(
      [...this.inFlight.values()]
        .filter((step) => now - step.renewedAt >= step.leaseMs / 3)
        .map(async (step) => {
          try {
            const renewed = await this.store.renewLease(step.claim, step.leaseMs);
            step.renewedAt = now;
            if (renewed.cancelRequested) step.controller.abort(cancelReason());
          } catch (error) {
            if (error instanceof LeaseLostError) step.controller.abort(new LeaseLostError(step.claim.jobId));
            else this.emit('storeError', { operation: 'renewLease', error, jobId: step.claim.jobId });
          }
        }),
    );
  }

  /** Retries transient store errors with backoff (reporting each); rethrows the last one, or a permanent one. */
  private async retryTransient<T>(operation: string, fn: () => Promise<T>, ids: { runId?: string; jobId?: string } = {}): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (error) {
        this.emit('storeError', { operation, error, ...ids });
        if (!isTransientError(error) || attempt + 1 >= STORE_RETRIES) throw error;
        await sleepOn(this.clock, Math.min(MAX_STORE_BACKOFF_MS, 20 * 2 ** attempt));
      }
    }
  }

  // ---- input checks ----------------------------------------------------------

  private checkSpec(spec: RunSpec): { runId: string; headers: Headers; input: Uint8Array } {
    if (!spec || typeof spec !== 'object') throw new InvalidArgumentError('run spec', `expected an object, got ${describe(spec)}`);
    if (!(spec.input instanceof Uint8Array)) throw new InvalidArgumentError('input', `expected a Uint8Array, got ${describe(spec.input)}`);
    if (spec.runId !== undefined) checkRunId(spec.runId);
    const headers = spec.headers ?? {};
    if (headers === null || typeof headers !== 'object' || Array.isArray(headers)) throw new InvalidArgumentError('headers', `expected an object, got ${describe(headers)}`);
    for (const key of Object.keys(headers)) {
      if (key.startsWith(RESERVED_HEADER_PREFIX)) throw new ReservedHeaderInSubmitError(key);
      if (typeof headers[key] !== 'string') throw new InvalidArgumentError('headers', `value of "${key}" must be a string, got ${describe(headers[key])}`);
    }
    if (spec.priority !== undefined) checkNonNegativeInt('priority', spec.priority);
    if (spec.maxAttemptsPerStep !== undefined) checkPositiveInt('maxAttemptsPerStep', spec.maxAttemptsPerStep);
    if (spec.input.byteLength > this.limits.maxPayloadBytes) throw new LimitExceededError('input size in bytes', spec.input.byteLength, this.limits.maxPayloadBytes);
    const copied = copyHeaders(headers);
    const count = Object.keys(copied).length;
    if (count > this.limits.maxHeaders) throw new LimitExceededError('header count', count, this.limits.maxHeaders);
    const bytes = headerBytes(copied);
    if (bytes > this.limits.maxHeaderBytes) throw new LimitExceededError('header size in bytes', bytes, this.limits.maxHeaderBytes);
    return { runId: spec.runId ?? newId(this.clock.now()), headers: copied, input: spec.input };
  }

  private duplicateSubmit(runId: string, existing: Uint8Array, inputSha256: string): SubmitResult {
    if (decodeRecord<RunIdentity>(existing).inputSha256 !== inputSha256) throw new InputMismatchError(runId);
    return { runId, newlySubmitted: false };
  }
}

/** A settlement whose first attempt failed and whose retry found the lease gone: it may have committed. */
export class SettlementUncertainError extends LeaseLostError {
  constructor(jobId: string, cause: unknown) {
    super(jobId);
    this.message = `settlement of job "${jobId}" failed and its retry found the lease gone: the first attempt may have committed`;
    this.cause = cause;
  }
}

function cancelledOutcome(runId: string, jobHeaders: Headers, finalStep: number): RunOutcome {
  return { runId, status: 'cancelled', headers: userHeaders(jobHeaders), finalStep };
}

function checkRunId(runId: unknown): asserts runId is string {
  if (typeof runId !== 'string' || !RUN_ID_PATTERN.test(runId)) throw new InvalidRunIdError(runId);
}

function cancelReason(): Error {
  return new Error('run cancelled');
}

/** The submitter's headers of a step job (every `workflow.*` key stripped). */
function userHeaders(headers: Headers): Headers {
  const out = copyHeaders(undefined);
  for (const key of Object.keys(headers)) if (!key.startsWith(RESERVED_HEADER_PREFIX)) out[key] = headers[key] as string;
  return out;
}

function parseStepHeaders(headers: Headers): { runId: string; stepNumber: number } | Error {
  const runId = Object.hasOwn(headers, HEADER_RUN_ID) ? headers[HEADER_RUN_ID] : undefined;
  if (runId === undefined) return new MissingHeaderError(HEADER_RUN_ID);
  const step = Object.hasOwn(headers, HEADER_STEP) ? headers[HEADER_STEP] : undefined;
  if (step === undefined) return new MissingHeaderError(HEADER_STEP);
  if (!/^\d{1,15}$/.test(step)) return new InvalidStepHeaderError(HEADER_STEP, step);
  return { runId, stepNumber: Number(step) };
}

function sleepOn(clock: Clock, ms: number): Promise<void> {
  return new Promise((resolve) => clock.setTimer(resolve, ms));
}
