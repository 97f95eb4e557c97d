import { EventEmitter } from 'eventemitter3';
import { copyBytes } from './bytes.js';
import { definitionOf } from './workflow/define.js';
import type { ResolvedWorkflow, Workflow } from './workflow/define.js';
import { workflowRunner } from './workflow/run-step.js';
import { Lane, notificationQueueOf } from './lane.js';
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
  HookDeliveryMismatchError,
  RunnerRequiredError,
  StepTimeoutError,
  WorkerStoppedError,
  isTransientError,
} from './errors.js';
import type { WorkflowError } from './errors.js';
import { HEADER_ON_CANCEL, HEADER_STEP_NAME, HEADER_WORKFLOW, copyHeaders, headerBytes, userHeaders } from './headers.js';
import { decodeDeliveryMode, deliveryModeKey, deliveryModeWrite } from './delivery-mode.js';
import type { HookDelivery } from './delivery-mode.js';
import { hookAttempt, hookFailureSettlement, resolveHookRetry } from './hook-retry.js';
import type { HookRetryPolicy } from './hook-retry.js';
import { newId } from './ids.js';
import { LeaseKeeper } from './lease-keeper.js';
import type { LeasedJob } from './lease-keeper.js';
import { StepError, checkDueTime, describeFailure, noopHook, toRunnerResult } from './outcomes.js';
import type { RunOutcome, RunnerResult, StepOutcome, StepRunner, TerminalHook } from './outcomes.js';
import type { CancelResult, Claim, Effects, Headers, JobRecord, KvWrite, QueueStore, SettleResult, Settlement, StoreNotification } from './queue-store.js';
import { decodeNotification, decodeReceipt, decodeRecord, encodeRecord, runKeys, sha256Hex } from './run-records.js';
import type { EndedReceipt, RunCursor, RunIdentity, RunKeys } from './run-records.js';
import {
  HEADER_RUN_ID,
  HEADER_STEP,
  RESERVED_HEADER_PREFIX,
  compensationEffects,
  cursorValue,
  decideSettlement,
  endRunEffects,
  reaperTemplate,
  stepDedupKey,
  stepHeaders,
} from './settlement.js';
import type { SettlementDecision, StepFacts, StepNames } from './settlement.js';
import { checkHeaders, checkNonNegativeInt, checkPositiveInt, checkQueueName, describe } from './store-validation.js';
import { DEFAULT_LIMITS } from './runtime-types.js';
import type { RunSpec, RunState, RunStatus, RuntimeEvents, RuntimeLimits, StartSpec, SubmitResult, WorkflowRuntimeOptions } from './runtime-types.js';
import { LazyAbort, RunnerStep, WorkerLoop, isThenable } from './worker-parts.js';

export { DEFAULT_LIMITS } from './runtime-types.js';
export type { RunSpec, RunState, RunStatus, RuntimeEvents, RuntimeLimits, StartSpec, SubmitResult, WorkflowRuntimeOptions } from './runtime-types.js';

const RUN_ID_PATTERN = /^[A-Za-z0-9_-]{1,128}$/;
const MAX_STORE_BACKOFF_MS = 5_000;
/** Cap of the backoff between settlement retries (also a sixth of the lease, whichever is shorter). */
const MAX_SETTLE_BACKOFF_MS = 1_000;
/** Reads of an ended receipt while the store is unavailable (about a minute at the capped backoff). */
const RECEIPT_READ_ATTEMPTS = 60;
const DEFAULT_SHUTDOWN_GRACE_MS = 30_000;
/** With durable delivery, hooks may hold at most this share of the slots, and are claimed first: neither starves the other. */
const HOOK_SLOT_SHARE = 4;

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
  /** The low-level runner's lane (`queueName`), then one per workflow. */
  private readonly laneList: Lane[];
  private readonly lanesByWorkflow = new Map<string, Lane>();
  private readonly startOnlyLanes = new Map<string, Lane>();
  private readonly hook: TerminalHook;
  private readonly aroundStep: WorkflowRuntimeOptions['aroundStep'];
  private readonly hookRetry: HookRetryPolicy;
  private readonly stepTimeoutMs: number | undefined;
  private readonly shutdownGraceMs: number;
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
  /** Every claim being worked on: its lease renewal, its runner's deadline, its abort signal. */
  private readonly keeper: LeaseKeeper;
  private running = false;
  private readonly hookDelivery: HookDelivery;
  /** The store's recorded delivery mode matched ours once: never read again. */
  private deliveryModeVerified = false;
  private wakeUp: (() => void) | undefined;
  private woken = false;
  private pollTimer: { dueAt: number; cancel: () => void } | undefined;

  constructor(options: WorkflowRuntimeOptions) {
    super();
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- untyped callers reach this through the public API
    if (!options || typeof options !== 'object') throw new InvalidArgumentError('runtime options', 'expected an object');
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- untyped callers reach this through the public API
    if (!options.store) throw new InvalidArgumentError('store', 'a QueueStore is required');
    if (options.runner !== undefined && typeof options.runner !== 'function')
      throw new InvalidArgumentError('runner', 'expected a function (step) => StepOutcome');
    if (options.hook !== undefined && typeof options.hook !== 'function') throw new InvalidArgumentError('hook', 'expected a function');
    this.store = options.store;
    this.hook = options.hook ?? noopHook;
    if (options.aroundStep !== undefined && typeof options.aroundStep !== 'function') throw new InvalidArgumentError('aroundStep', 'expected a function');
    this.aroundStep = options.aroundStep;
    this.queueName = options.queueName ?? 'workflow-steps';
    checkQueueName(this.queueName);
    this.maxConcurrentSteps = options.maxConcurrentSteps ?? 16;
    checkPositiveInt('maxConcurrentSteps', this.maxConcurrentSteps);
    this.pollIntervalMs = options.pollIntervalMs ?? 250;
    checkPositiveInt('pollIntervalMs', this.pollIntervalMs);
    this.clock = options.clock ?? new SystemClock();
    this.limits = { ...DEFAULT_LIMITS, ...options.limits };
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- untyped callers reach this through the public API
    if (options.hookDelivery !== undefined && options.hookDelivery !== 'inProcess' && options.hookDelivery !== 'durable') {
      throw new InvalidArgumentError('hookDelivery', `expected "inProcess" or "durable", got ${describe(options.hookDelivery)}`);
    }
    this.hookDelivery = options.hookDelivery ?? 'inProcess';
    this.notificationQueue = notificationQueueOf(this.queueName);
    checkQueueName(this.notificationQueue);
    this.outcomeQueue = this.hookDelivery === 'durable' ? this.notificationQueue : undefined;
    this.laneList = [new Lane(this.queueName, options.runner, undefined)];
    const workflows: unknown = options.workflows ?? [];
    if (!Array.isArray(workflows)) throw new InvalidArgumentError('workflows', 'expected an array of workflows');
    for (const workflow of workflows as readonly Workflow[]) {
      const resolved = definitionOf(workflow);
      if (this.lanesByWorkflow.has(resolved.name)) throw new InvalidArgumentError('workflows', `two workflows are named ${JSON.stringify(resolved.name)}`);
      const lane = new Lane(`${this.queueName}:${resolved.name}`, workflowRunner(resolved), resolved);
      this.laneList.push(lane);
      this.lanesByWorkflow.set(resolved.name, lane);
    }
    this.hookRetry = resolveHookRetry(options.hookRetry);
    if (options.stepTimeoutMs !== undefined) checkPositiveInt('stepTimeoutMs', options.stepTimeoutMs);
    this.stepTimeoutMs = options.stepTimeoutMs;
    this.shutdownGraceMs = options.shutdownGraceMs ?? DEFAULT_SHUTDOWN_GRACE_MS;
    checkNonNegativeInt('shutdownGraceMs', this.shutdownGraceMs);
    this.keeper = new LeaseKeeper(this.clock, this.store, {
      cancelRequested: (leased) => abortForCancel(leased),
      leaseLost: (leased) => leased.controller.abort(new LeaseLostError(leased.jobId)),
      renewFailed: (leased, error) =>
        this.emit('storeError', { operation: 'renewLease', error, ...(leased.runId === undefined ? {} : { runId: leased.runId }), jobId: leased.jobId }),
    });
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
  submit(spec: RunSpec): Promise<SubmitResult> {
    try {
      const checked = this.checkSpec(spec, spec.input);
      return this.submitTo(this.laneList[0] as Lane, checked, spec, undefined);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Starts a run of `workflow` at its start step with `spec.input`, encoded
   * by the workflow's codec (a value it cannot encode is a `CodecError`,
   * with nothing stored). Idempotent on `(runId, input)` as `submit` is.
   * Any runtime sharing the store can start a run, whether or not it runs
   * `workflow` itself.
   */
  start<S, R, K extends string>(workflow: Workflow<S, R, K>, spec: StartSpec<S>): Promise<SubmitResult> {
    try {
      const resolved = definitionOf(workflow);
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- untyped callers reach this through the public API
      if (!spec || typeof spec !== 'object') throw new InvalidArgumentError('start spec', `expected an object, got ${describe(spec)}`);
      const input = resolved.codec.encode(spec.input);
      const checked = this.checkSpec(spec, input);
      const lane = this.lanesByWorkflow.get(resolved.name) ?? this.startOnlyLane(resolved);
      const maxAttempts = resolved.steps.get(resolved.start)?.retry?.maxAttempts;
      return this.submitTo(lane, checked, maxAttempts === undefined ? spec : { ...spec, maxAttemptsPerStep: maxAttempts }, {
        workflow: resolved.name,
        step: resolved.start,
      });
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** The lane of a workflow this runtime starts but does not run (kept, so its reaper template is stored once). */
  private startOnlyLane(workflow: ResolvedWorkflow): Lane {
    let lane = this.startOnlyLanes.get(workflow.name);
    if (lane === undefined) {
      lane = new Lane(`${this.queueName}:${workflow.name}`, undefined, workflow);
      this.startOnlyLanes.set(workflow.name, lane);
    }
    return lane;
  }

  private async submitTo(
    lane: Lane,
    { runId, headers, input }: { runId: string; headers: Headers; input: Uint8Array },
    spec: Pick<RunSpec, 'priority' | 'maxAttemptsPerStep'>,
    names: StepNames | undefined,
  ): Promise<SubmitResult> {
    const keys = runKeys(this.queueName, runId);
    const inputSha256 = sha256Hex(input);
    const now = this.clock.now();
    const jobId = newId(now);
    let modeWrite = await this.checkDeliveryMode();
    await this.ensureReaperTemplate(lane);
    for (let attempt = 0; attempt < 5; attempt++) {
      const existing = await this.store.kvGet(keys.identity);
      if (existing !== undefined) return this.duplicateSubmit(runId, existing, inputSha256);
      const writes: KvWrite[] = [
        { key: keys.identity, value: encodeRecord({ runId, submittedAt: now, inputSha256 } satisfies RunIdentity), ifAbsent: true },
        { key: keys.cursor, value: cursorValue(jobId, 0) },
      ];
      if (modeWrite !== undefined) writes.push(modeWrite);
      const result = await this.store.enqueue(
        lane.queue,
        input,
        {
          id: jobId,
          headers: stepHeaders(headers, runId, 0, names),
          dedupKey: stepDedupKey(runId, 0),
          ...(spec.priority === undefined ? {} : { priority: spec.priority }),
          ...(spec.maxAttemptsPerStep === undefined ? {} : { maxAttempts: spec.maxAttemptsPerStep }),
        },
        writes,
      );
      if (result.kind === 'new') {
        if (modeWrite !== undefined) this.deliveryModeVerified = true;
        this.emit('runSubmitted', { runId, jobId });
        return { runId, newlySubmitted: true };
      }
      if (result.kind === 'kvConflict' && modeWrite !== undefined && result.key === modeWrite.key) {
        // Another runtime recorded its mode meanwhile: compare, then submit without the write.
        modeWrite = await this.checkDeliveryMode();
        continue;
      }
      // Another submitter won the race (dedup hit or identity present): compare inputs.
      const winner = await this.store.kvGet(keys.identity);
      if (winner !== undefined) return this.duplicateSubmit(runId, winner, inputSha256);
      if (result.kind === 'alreadyEnqueued') return { runId, newlySubmitted: false };
      // The identity vanished in between (that run just ended): try again.
    }
    return { runId, newlySubmitted: false };
  }

  /** The step queue and notification queue of the runner (first) and of each workflow this runtime has. */
  get lanes(): ReadonlyArray<{ readonly steps: string; readonly notifications: string; readonly workflow?: string }> {
    return this.laneList.map((lane) =>
      lane.workflow
        ? { steps: lane.queue, notifications: lane.notificationQueue, workflow: lane.workflow.name }
        : { steps: lane.queue, notifications: lane.notificationQueue },
    );
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
      const compensating = ownHeader(job.headers, HEADER_ON_CANCEL) !== undefined;
      const state: RunState =
        job.cancelRequested || compensating ? 'cancelling' : job.status === 'pending' || job.status === 'scheduled' ? 'pending' : 'running';
      const status: RunStatus = { runId, state, currentStep: cursor.step };
      const workflow = ownHeader(job.headers, HEADER_WORKFLOW);
      if (workflow !== undefined) status.workflow = workflow;
      const step = ownHeader(job.headers, HEADER_STEP_NAME);
      if (step !== undefined) status.step = step;
      return status;
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
    await this.checkDeliveryMode();
    const keys = runKeys(this.queueName, runId);
    let previousJobId: string | undefined;
    for (let attempt = 0; attempt < 20; attempt++) {
      const raw = await this.store.kvGet(keys.cursor);
      if (raw === undefined) return false;
      const cursor = decodeRecord<RunCursor>(raw);
      // Same job twice and still not found: it is not cancellable (done or dead, its run ending).
      if (cursor.jobId === previousJobId) return false;
      // The outcome carries the job's headers: read them first. The effects are attached whatever the
      // status read: they commit only with a removal, and the step may be re-queued meanwhile.
      const job = await this.store.getJob(cursor.jobId);
      // A compensation already runs: the run is being cancelled, and its compensation cannot be.
      if (job && ownHeader(job.headers, HEADER_ON_CANCEL) !== undefined) return false;
      const compensated = job ? this.compensationOnRemoval(job, keys, runId, cursor.step) : undefined;
      if (compensated) {
        const removed = await this.store.cancel(cursor.jobId, compensated);
        if (removed.outcome === 'removed') return true; // its onCancel runs next; the hook fires when it ends
        if (removed.outcome === 'requested') {
          const held = this.keeper.find(cursor.jobId);
          if (removed.firstRequest && held) abortForCancel(held);
          return removed.firstRequest;
        }
        previousJobId = cursor.jobId;
        continue;
      }
      const outcome = job && cancelledOutcome(runId, job, cursor.step);
      // The notification goes where the job's own lane sends them (the workflow's, for a workflow run).
      const outcomeQueue = job && this.outcomeQueue !== undefined ? notificationQueueOf(job.queue) : undefined;
      const effects: Effects = outcome
        ? endRunEffects({ keys, outcomeQueue, jobId: cursor.jobId, claimToken: '' }, outcome, 'removed')
        : { kvDeletes: [keys.identity, keys.cursor] };
      let result: CancelResult;
      try {
        result = await this.store.cancel(cursor.jobId, effects);
      } catch (error) {
        // A reply lost after the removal committed: the receipt it wrote says so, and the hook is ours to run.
        if (outcome === undefined || this.outcomeQueue !== undefined || !isTransientError(error)) throw error;
        if ((await this.readReceipt(keys, cursor.jobId, '')) !== 'removed') throw error;
        await this.finish(outcome);
        return true;
      }
      if (result.outcome === 'removed') {
        await this.finish(cancelledOutcome(runId, result.job, cursor.step));
        return true;
      }
      if (result.outcome === 'requested') {
        const held = this.keeper.find(cursor.jobId);
        if (result.firstRequest && held) abortForCancel(held);
        return result.firstRequest;
      }
      previousJobId = cursor.jobId; // the run moved on meanwhile: follow it
    }
    return false;
  }

  // ---- worker loop -------------------------------------------------------

  /**
   * Claims and runs steps until `signal` aborts, then lets in-flight steps
   * finish and settle, and resolves: within `shutdownGraceMs`, even if a
   * runner never returns. One loop per runtime at a time. Rejects with the
   * store's error when a claim fails permanently (the store cannot serve
   * this loop again), after draining in-flight steps the same way; throws
   * `RunnerRequiredError` on a runtime built without a runner.
   */
  async run(signal: AbortSignal): Promise<void> {
    const lanes = this.laneList.filter((lane) => lane.runner !== undefined);
    if (lanes.length === 0) throw new RunnerRequiredError();
    if (this.running) throw new InvalidStateError(this.queueName, 'running', 'start a second worker loop on');
    this.running = true;
    for (const lane of lanes) lane.notificationsMaybeWaiting = true;
    const loop = new WorkerLoop(() => this.wake());
    const crashed = (error: unknown): void => {
      this.emit('storeError', { operation: 'processStep', error });
      loop.finished();
    };
    // A step holds its slot while its runner runs; its settlement commits
    // after the slot is freed, so the next claim can share the settlement's
    // group commit (stores that batch writes). Settlements still in flight
    // are capped at another `maxConcurrentSteps`. Hook notifications (with
    // either delivery: runs the reaper ended go through them too) are
    // claimed first, up to their share of the slots, so a step backlog
    // cannot starve them, nor they the steps.
    const hookSlots = Math.max(1, Math.floor(this.maxConcurrentSteps / HOOK_SLOT_SHARE));
    const sources: Array<{ queue: string; lane: Lane; hooks: boolean; process: (claim: Claim) => Promise<void> }> = [
      ...lanes.map((lane) => ({ queue: lane.notificationQueue, lane, hooks: true, process: (c: Claim) => this.processOutcome(loop, c) })),
      ...lanes.map((lane) => ({ queue: lane.queue, lane, hooks: false, process: (c: Claim) => this.processStep(loop, lane, c) })),
    ];
    const unsubscribes = sources.map((source) => this.store.subscribe(source.queue, (n) => this.onNotification(n)));
    const onAbort = (): void => this.wake();
    signal.addEventListener('abort', onAbort);
    let fatal: unknown;
    try {
      try {
        await this.checkDeliveryMode();
      } catch (error) {
        if (error instanceof HookDeliveryMismatchError) throw error;
        this.emit('storeError', { operation: 'checkDeliveryMode', error }); // the loop looks again before claiming
      }
      let failures = 0;
      while (!signal.aborted) {
        let moreWaiting = false;
        this.woken = false;
        try {
          // Until a submit records the queue's mode, look again before each claim (a mismatch ends the loop).
          if (!this.deliveryModeVerified) await this.checkDeliveryMode();
          // Before the first claim: the steps this loop's settlements enqueue are reaped by the template.
          for (const lane of lanes) if (!lane.templateSet) await this.ensureReaperTemplate(lane);
          for (const source of sources) {
            let free = Math.min(this.maxConcurrentSteps - loop.slotsHeld, 2 * this.maxConcurrentSteps - loop.unfinishedSteps);
            if (source.hooks) {
              // Notifications are rare: their queue is claimed only when one may be there, not on every turn.
              if (!source.lane.notificationsMaybeWaiting) continue;
              free = Math.min(free, hookSlots - loop.hookSlotsHeld);
            }
            if (free <= 0) continue;
            if (source.hooks) source.lane.notificationsMaybeWaiting = false;
            const claims = await this.store.claim(source.queue, { limit: free });
            if (claims.length === free) {
              moreWaiting = true; // a full batch: more may be waiting
              if (source.hooks) source.lane.notificationsMaybeWaiting = true;
            }
            for (const claim of claims) {
              loop.slotsHeld++;
              if (source.hooks) loop.hookSlotsHeld++;
              loop.unfinishedSteps++;
              void source.process(claim).then(loop.finished, crashed);
            }
          }
          failures = 0;
        } catch (error) {
          if (error instanceof HookDeliveryMismatchError) {
            fatal = error;
            break;
          }
          this.emit('storeError', { operation: 'claim', error });
          for (const lane of lanes) lane.notificationsMaybeWaiting = true;
          if (!isTransientError(error)) {
            fatal = error; // the store refuses this loop for good: stop claiming, drain, report
            break;
          }
          failures++;
          await this.idle(Math.min(MAX_STORE_BACKOFF_MS, 50 * 2 ** Math.min(failures, 10)), signal);
          continue;
        }
        if (!moreWaiting) await this.idle(this.pollIntervalMs, signal);
      }
      await this.drain(loop);
    } finally {
      signal.removeEventListener('abort', onAbort);
      for (const unsubscribe of unsubscribes) unsubscribe();
      this.keeper.stop();
      this.pollTimer?.cancel();
      this.pollTimer = undefined;
      this.running = false;
    }
    // eslint-disable-next-line @typescript-eslint/only-throw-error -- a caught value may be anything, rethrown as it was
    if (fatal !== undefined) throw fatal;
  }

  /**
   * Waits until every step of `loop` finished, or `shutdownGraceMs` of clock
   * time passed: then the steps still out get their signal aborted and are
   * let go (no more renewals, no settlement), for the reaper to re-deliver.
   */
  private async drain(loop: WorkerLoop): Promise<void> {
    if (loop.unfinishedSteps === 0) return;
    let cancelGrace: () => void = () => undefined;
    const graceOver = await Promise.race([
      new Promise<false>((resolve) => (loop.drained = () => resolve(false))),
      new Promise<true>((resolve) => (cancelGrace = this.clock.setTimer(() => resolve(true), this.shutdownGraceMs))),
    ]);
    cancelGrace();
    if (!graceOver) return;
    loop.abandoned = true;
    loop.drained = undefined;
    const reason = new WorkerStoppedError(this.shutdownGraceMs);
    for (const leased of [...this.keeper.values()]) {
      leased.controller.abort(reason);
      this.keeper.release(leased);
    }
  }

  /** A step's runner (or an outcome's hook) is done: its slot goes to the next claim. Called once per step. */
  private releaseSlot(loop: WorkerLoop, hook = false): void {
    loop.slotsHeld--;
    if (hook) loop.hookSlotsHeld--;
    this.wake();
  }

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
          for (const lane of this.laneList) lane.notificationsMaybeWaiting = true; // a notice from another process may have been missed
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
        for (const lane of this.laneList) if (notification.queue === lane.notificationQueue) lane.notificationsMaybeWaiting = true;
        this.wake();
        return;
      case 'cancelRequested': {
        const held = this.keeper.find(notification.jobId);
        if (held) abortForCancel(held);
        return;
      }
      case 'deadLettered':
        return; // the reaper's commit already ended those runs (its queue's reaper template)
    }
  }

  // ---- one step ------------------------------------------------------------

  private async processStep(loop: WorkerLoop, lane: Lane, claim: Claim): Promise<void> {
    let holdsSlot = true;
    let runId: string | undefined;
    const controller = new LazyAbort();
    const claimedAt = this.clock.now(); // this runtime's clock: the store's claim time may be another host's
    const stepName = ownHeader(claim.job.headers, HEADER_STEP_NAME);
    const onCancel = ownHeader(claim.job.headers, HEADER_ON_CANCEL) !== undefined;
    const leased = this.keeper.hold(claim, controller, lane.timeoutFor(stepName, this.stepTimeoutMs));
    // A step that takes no cancel mid-step (and a compensation) keeps its signal when a cancel comes.
    const cancelRule = lane.cancelRuleFor(stepName, onCancel);
    leased.cancellable = cancelRule.cancellable;
    try {
      const job = claim.job;
      const parsed = parseStepHeaders(job.headers);
      if (parsed instanceof Error) {
        this.emit('malformedStep', { jobId: job.id, error: parsed });
        await this.settleRetrying(loop, leased, { settlement: { action: { type: 'deadLetter', reason: parsed.message } } }).catch(() => undefined);
        return;
      }
      runId = parsed.runId;
      leased.runId = runId;
      const stepNumber = parsed.stepNumber;
      const headers = userHeaders(job.headers);
      if (job.cancelRequested && leased.cancellable) controller.abort(cancelReason());
      if (this.listenerCount('stepStarted') > 0) {
        this.emit('stepStarted', { runId, stepNumber, ...(stepName === undefined ? {} : { step: stepName }), jobId: job.id, attempts: job.attempts });
      }
      const running = this.runStep(lane.runner as StepRunner, leased, new RunnerStep(runId, stepNumber, job, headers, controller, stepName, onCancel));
      // A runner that answers synchronously costs no extra promise hop.
      const returned = isThenable(running) ? await running : running;
      leased.deadline = undefined;
      leased.onTimeout = undefined;
      if (loop.abandoned) return; // `run()` gave up on it at its grace deadline: left to its lease
      const now = this.clock.now();
      const facts: StepFacts = {
        queueName: lane.queue,
        runId,
        stepNumber,
        attempts: job.attempts,
        maxAttempts: job.maxAttempts,
        priority: job.priority,
        userHeaders: headers,
        keys: runKeys(this.queueName, runId),
        nextJobId: newId(now),
        maxPayloadBytes: this.limits.maxPayloadBytes,
        outcomeQueue: this.outcomeQueue === undefined ? undefined : lane.notificationQueue,
        reapedOutcomeQueue: lane.notificationQueue,
        jobId: job.id,
        claimToken: claim.token,
        workflow: lane.workflow?.name,
        payload: job.payload,
        retryDelayMs: lane.retryDelayFor(stepName, job.attempts),
        stepName,
        cancel: cancelRule,
      };
      const decision = decideSettlement(facts, checkDueTime(returned, now));
      // Issued before the slot is freed, so the store sees the settlement ahead of the next claim.
      const settling = this.settleOnce(claim, decision.settlement);
      holdsSlot = false;
      this.releaseSlot(loop);
      let committed: { settled: SettleResult; decision: Pick<SettlementDecision, 'primaryOutcome' | 'cancelOutcome'> };
      try {
        try {
          // The common case, without the retry loop's extra promises.
          committed = { settled: await settling, decision };
        } catch (firstError) {
          const refused = (refusal: StepError): SettlementDecision => decideSettlement(facts, { ok: false, error: refusal });
          committed = await this.settleRetrying(loop, leased, decision, Promise.reject(firstError), refused, runId, facts.keys);
        }
      } catch (error) {
        if (error instanceof LeaseLostError && !(error instanceof SettlementUncertainError)) this.emit('leaseLost', { runId, stepNumber, jobId: job.id });
        else this.emit('storeError', { operation: 'settle', error, runId, jobId: job.id });
        return; // not committed (or unknown): the reaper re-delivers the step; no hook for an uncommitted outcome
      }
      const { settled } = committed;
      if (this.listenerCount('stepSettled') > 0) {
        this.emit('stepSettled', {
          runId,
          stepNumber,
          ...(stepName === undefined ? {} : { step: stepName }),
          jobId: job.id,
          branch: settled.branch,
          status: settled.status,
          durationMs: this.clock.now() - claimedAt,
        });
      }
      if (settled.branch === 'stale') {
        this.emit('staleStep', { runId, stepNumber, jobId: job.id });
        return;
      }
      const outcome = settled.branch === 'cancel' ? committed.decision.cancelOutcome : committed.decision.primaryOutcome;
      if (outcome) await this.finish(outcome);
    } catch (error) {
      // A bug past the step's own handling, not a runner failure: reported with what is known.
      this.emit('storeError', { operation: 'processStep', error, ...(runId === undefined ? {} : { runId }), jobId: claim.jobId });
    } finally {
      this.keeper.release(leased);
      if (holdsSlot) this.releaseSlot(loop);
    }
  }

  /**
   * Calls the runner. With a step timeout, its result races the deadline:
   * at the deadline the signal aborts and the step fails transiently with
   * `StepTimeoutError`; a later return is ignored.
   */
  private runStep(runner: StepRunner, leased: LeasedJob, step: RunnerStep): RunnerResult | Promise<RunnerResult> {
    let returned: StepOutcome | Promise<StepOutcome>;
    try {
      returned = this.aroundStep === undefined ? runner(step) : this.aroundStep(step, () => runner(step));
    } catch (error) {
      return { ok: false, error };
    }
    if (!isThenable(returned)) return toRunnerResult(returned);
    const result = Promise.resolve(returned).then(toRunnerResult, (error: unknown): RunnerResult => ({ ok: false, error }));
    if (leased.deadline === undefined) return result;
    const timeoutMs = leased.timeoutMs as number;
    const timedOut = new Promise<RunnerResult>((resolve) => {
      leased.onTimeout = () => {
        const error = new StepTimeoutError(timeoutMs);
        leased.controller.abort(error);
        resolve({ ok: false, error });
      };
    });
    return Promise.race([result, timedOut]);
  }

  /** One settlement attempt; a synchronous throw of a non-async adapter becomes a rejection. */
  private settleOnce(claim: Claim, settlement: Settlement): Promise<SettleResult> {
    try {
      return this.store.settle(claim, settlement);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Settles a held claim. A transient failure is retried, with capped
   * backoff, for as long as the lease lasts (the keeper renews it
   * meanwhile), so an outage shorter than the lease costs no re-execution.
   * A permanent refusal of the value (the store will never take it) is
   * handed to `onRefused`, which builds the settlement that ends the run
   * with that failure instead; without one, or when that is refused too,
   * it is thrown. If a retry finds the lease gone after a transient
   * failure, the failed attempt may have committed. With in-process
   * delivery and the run's `keys`, the run's ended receipt tells: when it
   * names this job, the attempt committed the branch it names, returned as
   * committed (its `enqueued` unknown, so empty); otherwise that attempt
   * ended no run, and `SettlementUncertainError` is thrown (no hook is owed).
   */
  private async settleRetrying<D extends { settlement: Settlement }>(
    loop: WorkerLoop,
    leased: LeasedJob,
    decision: D,
    first?: Promise<SettleResult>,
    onRefused?: (refusal: StepError) => D,
    runId?: string,
    keys?: RunKeys,
  ): Promise<{ settled: SettleResult; decision: D }> {
    let current = decision;
    let pending = first ?? this.settleOnce(leased.claim, decision.settlement);
    let lastTransient: unknown;
    let refusals = 0;
    for (let retries = 0; ;) {
      try {
        return { settled: await pending, decision: current };
      } catch (error) {
        if (error instanceof LeaseLostError) {
          if (lastTransient === undefined) throw error;
          // A failed attempt may have committed. With in-process delivery, its receipt says whether it ended the run.
          const how = keys === undefined ? undefined : await this.readReceipt(keys, leased.jobId, leased.claim.token, loop);
          if (how === undefined || how === 'removed') throw new SettlementUncertainError(leased.jobId, lastTransient);
          const branch = how === 'cancel' ? current.settlement.ifCancelRequested : current.settlement;
          const status = branch?.action.type === 'ack' ? 'done' : 'dead';
          return { settled: { branch: how, status, enqueued: [] }, decision: current };
        }
        if (!isTransientError(error)) {
          // Refused for good: end the run on a settlement the store can take (the code alone, the second time).
          if (onRefused === undefined || refusals >= 2) throw error;
          this.emit('storeError', { operation: 'settle', error, ...(runId === undefined ? {} : { runId }), jobId: leased.jobId });
          const code = (error as WorkflowError).code;
          const message = refusals === 0 ? `settlement rejected: ${code}: ${describeFailure(error).message}` : `settlement rejected: ${code}`;
          refusals++;
          current = onRefused(StepError.permanent(message, { cause: error }));
          pending = this.settleOnce(leased.claim, current.settlement);
          continue;
        }
        lastTransient = error;
        const backoff = Math.min(MAX_SETTLE_BACKOFF_MS, Math.max(1, Math.floor(leased.leaseMs / 6)), 20 * 2 ** retries++);
        if (loop.abandoned || this.clock.now() + backoff >= leased.leaseExpiresAt) throw error; // the lease ran out: the reaper re-delivers
        this.emit('storeError', { operation: 'settle', error, ...(runId === undefined ? {} : { runId }), jobId: leased.jobId });
        await sleepOn(this.clock, backoff);
        // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- changed by another task while this one awaits
        if (loop.abandoned) throw error;
        pending = this.settleOnce(leased.claim, current.settlement);
      }
    }
  }

  /**
   * Terminal bookkeeping after a commit: the event, then (in-process delivery)
   * the hook, errors caught. With durable delivery the committed notification
   * job runs the hook instead.
   */
  private async finish(outcome: RunOutcome): Promise<void> {
    this.decodeWorkflowFields(outcome);
    this.emit('runEnded', outcome);
    if (this.outcomeQueue === undefined) await this.runHook(outcome);
  }

  /**
   * A workflow run's `lastState` and `output`, decoded by its definition's
   * codecs when this runtime has it (a submit-only runtime may not); left
   * out when they cannot be decoded.
   */
  private decodeWorkflowFields(outcome: RunOutcome): void {
    const workflow = outcome.workflow === undefined ? undefined : this.lanesByWorkflow.get(outcome.workflow)?.workflow;
    if (workflow === undefined) return;
    try {
      if (outcome.lastPayload !== undefined) outcome.lastState = workflow.codec.decode(outcome.lastPayload);
      if (outcome.status === 'succeeded' && outcome.result !== undefined) outcome.output = workflow.resultCodec.decode(outcome.result);
    } catch (error) {
      this.emit('storeError', { operation: 'decodeOutcome', error, runId: outcome.runId });
    }
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

  /**
   * Durable delivery: one outcome notification job, its lease renewed while
   * the hook runs; acked once the hook succeeded, otherwise retried per
   * `hookRetry` (see core/hook-retry.ts).
   */
  private async processOutcome(loop: WorkerLoop, claim: Claim): Promise<void> {
    const leased = this.keeper.hold(claim, NO_SIGNAL);
    try {
      let outcome: RunOutcome;
      let endedByReaper: boolean;
      try {
        ({ outcome, endedByReaper } = decodeNotification(claim.job.payload, claim.job.headers));
        leased.runId = outcome.runId;
        this.decodeWorkflowFields(outcome);
      } catch (error) {
        await this.settleRetrying(loop, leased, {
          settlement: { action: { type: 'deadLetter', reason: `undecodable outcome: ${(error as Error).message}` } },
        }).catch(() => undefined);
        return;
      }
      // The reaper's commit ended this run and no runtime reported it: the first delivery does.
      if (endedByReaper && claim.job.attempts === 1 && hookAttempt(claim.job.headers) === 1) this.emit('runEnded', outcome);
      const error = await this.runHook(outcome);
      const settlement: Settlement =
        error === undefined ? { action: { type: 'ack' } } : hookFailureSettlement(this.hookRetry, claim.job, describeFailure(error).message);
      try {
        await this.settleRetrying(loop, leased, { settlement });
      } catch (settleError) {
        this.emit('storeError', { operation: 'settleOutcome', error: settleError, runId: outcome.runId, jobId: claim.jobId });
      }
    } finally {
      this.keeper.release(leased);
      this.releaseSlot(loop, true);
    }
  }

  // ---- input checks ----------------------------------------------------------

  /**
   * Checks a spec and snapshots it, synchronously: the caller may reuse its
   * buffer and header object as soon as `submit()` returns its promise, so
   * the stored bytes and their hash come from one copy taken here.
   */
  private checkSpec(spec: Omit<RunSpec, 'input'>, rawInput: unknown): { runId: string; headers: Headers; input: Uint8Array } {
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- untyped callers reach this through the public API
    if (!spec || typeof spec !== 'object') throw new InvalidArgumentError('run spec', `expected an object, got ${describe(spec)}`);
    if (!(rawInput instanceof Uint8Array)) throw new InvalidArgumentError('input', `expected a Uint8Array, got ${describe(rawInput)}`);
    let input: Uint8Array;
    try {
      input = copyBytes(rawInput);
    } catch {
      throw new InvalidArgumentError('input', 'its ArrayBuffer is detached (transferred); pass a buffer you still own');
    }
    if (spec.runId !== undefined) checkRunId(spec.runId);
    checkHeaders(spec.headers);
    const copied = copyHeaders(spec.headers);
    for (const key of Object.keys(copied)) if (key.startsWith(RESERVED_HEADER_PREFIX)) throw new ReservedHeaderInSubmitError(key);
    if (spec.priority !== undefined) checkNonNegativeInt('priority', spec.priority);
    if (spec.maxAttemptsPerStep !== undefined) checkPositiveInt('maxAttemptsPerStep', spec.maxAttemptsPerStep);
    if (input.byteLength > this.limits.maxPayloadBytes) throw new LimitExceededError('input size in bytes', input.byteLength, this.limits.maxPayloadBytes);
    const count = Object.keys(copied).length;
    if (count > this.limits.maxHeaders) throw new LimitExceededError('header count', count, this.limits.maxHeaders);
    const bytes = headerBytes(copied);
    if (bytes > this.limits.maxHeaderBytes) throw new LimitExceededError('header size in bytes', bytes, this.limits.maxHeaderBytes);
    return { runId: spec.runId ?? newId(this.clock.now()), headers: copied, input };
  }

  /**
   * Compares the queue's recorded hook delivery mode with ours, and throws
   * `HookDeliveryMismatchError` when they differ. Returns the write that
   * records ours when none is recorded yet (the first submit commits it).
   */
  private async checkDeliveryMode(): Promise<KvWrite | undefined> {
    if (this.deliveryModeVerified) return undefined;
    const raw = await this.store.kvGet(deliveryModeKey(this.queueName));
    if (raw === undefined) return deliveryModeWrite(this.queueName, this.hookDelivery);
    const recorded = decodeDeliveryMode(raw);
    if (recorded !== this.hookDelivery) throw new HookDeliveryMismatchError(this.queueName, recorded, this.hookDelivery);
    this.deliveryModeVerified = true;
    return undefined;
  }

  /**
   * For a pending step of a workflow with `onCancel`: the effects that
   * replace it with its compensation job (the state it would have run with),
   * committed with its removal; `undefined` when the run just ends.
   */
  private compensationOnRemoval(job: JobRecord, keys: RunKeys, runId: string, step: number): Effects | undefined {
    const workflowName = ownHeader(job.headers, HEADER_WORKFLOW);
    const workflow = workflowName === undefined ? undefined : this.lanesByWorkflow.get(workflowName)?.workflow;
    if (workflow?.onCancel === undefined) return undefined;
    const facts = {
      queueName: job.queue,
      runId,
      stepNumber: step,
      userHeaders: userHeaders(job.headers),
      keys,
      nextJobId: newId(this.clock.now()),
      priority: job.priority,
      workflow: workflow.name,
    };
    return compensationEffects(facts, job.payload, ownHeader(job.headers, HEADER_STEP_NAME));
  }

  /**
   * How `delivery` of `jobId` (its claim token; empty for a removal) ended
   * its run, from the run's ended receipt (in-process delivery); `undefined`
   * when the receipt names no ending by that delivery. Reads again with backoff while the store is unavailable (the
   * commit in doubt was made during an outage), up to `RECEIPT_READ_ATTEMPTS`
   * or until `run()` gives up on `loop`.
   */
  private async readReceipt(keys: RunKeys, jobId: string, delivery: string, loop?: WorkerLoop): Promise<EndedReceipt['how'] | undefined> {
    for (let attempt = 0; ; attempt++) {
      try {
        const raw = await this.store.kvGet(keys.ended);
        const receipt = raw === undefined ? undefined : decodeReceipt(raw);
        return receipt?.jobId === jobId && receipt.delivery === delivery ? receipt.how : undefined;
      } catch (error) {
        if (!isTransientError(error) || attempt + 1 >= RECEIPT_READ_ATTEMPTS || loop?.abandoned === true) throw error;
        this.emit('storeError', { operation: 'readReceipt', error, jobId });
        await sleepOn(this.clock, Math.min(MAX_SETTLE_BACKOFF_MS, 20 * 2 ** attempt));
      }
    }
  }

  /** Stores the reaper template of a lane's step queue, once per runtime (see `reaperTemplate`). */
  private async ensureReaperTemplate(lane: Lane): Promise<void> {
    if (lane.templateSet) return;
    await this.store.setReaperTemplate(lane.queue, reaperTemplate(this.queueName, lane.notificationQueue));
    lane.templateSet = true;
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

function cancelledOutcome(runId: string, job: JobRecord, finalStep: number): RunOutcome {
  const outcome: RunOutcome = { runId, status: 'cancelled', headers: userHeaders(job.headers), finalStep };
  const workflow = ownHeader(job.headers, HEADER_WORKFLOW);
  if (workflow !== undefined) {
    outcome.workflow = workflow;
    outcome.lastPayload = job.payload;
  }
  return outcome;
}

function ownHeader(headers: Headers, key: string): string | undefined {
  return Object.hasOwn(headers, key) ? headers[key] : undefined;
}

function checkRunId(runId: unknown): asserts runId is string {
  if (typeof runId !== 'string' || !RUN_ID_PATTERN.test(runId)) throw new InvalidRunIdError(runId);
}

/** The signal of a hook notification: nothing reads it. */
const NO_SIGNAL = { abort: (): void => undefined };

function cancelReason(): Error {
  return new Error('run cancelled');
}

/** Aborts a held step's signal for a cancel, unless the step takes no cancel mid-step. */
function abortForCancel(leased: LeasedJob): void {
  if (leased.cancellable) leased.controller.abort(cancelReason());
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
