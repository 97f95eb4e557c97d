/**
 * What `WorkflowRuntime` takes and gives: run specs, results, statuses,
 * limits, options and its typed events.
 */
import type { Clock } from './clock.js';
import type { HookRetryPolicy } from './hook-retry.js';
import type { RunOutcome, Step, StepOutcome, StepRunner, TerminalHook } from './outcomes.js';
import type { Headers, QueueStore, SettleResult } from './queue-store.js';
import type { Workflow } from './workflow/define.js';

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
  /** The run's workflow (runs of a definition). */
  workflow?: string;
  /** The name of its current step (named steps). */
  step?: string;
}

/** Spec of a workflow run (`runtime.start`): `RunSpec` with a typed input. */
export interface StartSpec<S> extends Omit<RunSpec, 'input' | 'maxAttemptsPerStep'> {
  input: S;
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
  /**
   * Runs the steps of runs started with `submit` (the low-level API).
   * Optional: a runtime used only for submit, status and cancel needs none,
   * and one with `workflows` runs those without it; `run()` needs one or the other.
   */
  runner?: StepRunner;
  /**
   * Workflow definitions (`defineWorkflow`) this runtime runs, started with
   * `start`. Each has its own step queue, `<queueName>:<name>` (and its
   * notifications on `<queueName>:<name>.outcomes`), so a runtime never
   * claims a step of a workflow it does not have: services with different
   * workflows share one store and one `queueName`. Run ids are shared by
   * all of them (one run id, one run).
   */
  workflows?: readonly Workflow[];
  /**
   * Wraps every step delivery, of the runner and of every workflow: called
   * with the step and a function that runs it, it returns what that returns
   * (or throws what it throws). For tracing, metrics and test kits; a step
   * of a workflow is seen as the engine runs it (named, its state as bytes).
   */
  aroundStep?: (step: Step, run: () => StepOutcome | Promise<StepOutcome>) => StepOutcome | Promise<StepOutcome>;
  /** Called once per ended run, after the terminal commit. Default: no-op. */
  hook?: TerminalHook;
  /** Queue carrying the step jobs. Default `workflow-steps`; at most 247 characters (`<queueName>.outcomes` carries the hook notifications). */
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
   * job's worker, at least once, retried per `hookRetry` on failure.
   */
  hookDelivery?: 'inProcess' | 'durable';
  /**
   * Retry schedule of a failing hook with durable delivery. Default
   * `{ maxAttempts: 300, initialDelayMs: 1000, maxDelayMs: 300000 }`: a
   * delay doubling from 1 s to 5 min, about 24 hours of retries in all.
   */
  hookRetry?: Partial<HookRetryPolicy>;
  /**
   * Longest a runner may run, in clock ms. At the deadline its signal aborts
   * with a `StepTimeoutError`, its slot is freed, its lease is no longer
   * renewed and the step counts as a transient failure (retried per the
   * queue's policy; on the last attempt the run fails with "step timed out
   * after N ms"); whatever the runner returns later is ignored. Default:
   * none, since only the application knows how long a step may take; set
   * one if a runner can hang (one that ignores its signal otherwise holds
   * its slot and lease forever, and a cancel of its run never completes).
   */
  stepTimeoutMs?: number;
  /**
   * After `run()`'s signal aborts, how long in-flight steps get to finish
   * and settle before `run()` returns anyway, in clock ms. A step still out
   * then has its signal aborted (`WorkerStoppedError`) and its lease left to
   * expire, so it is re-delivered. Default 30 000.
   */
  shutdownGraceMs?: number;
}

/** Typed lifecycle events, for logging and metrics without wrapping the runner. */
export interface RuntimeEvents {
  runSubmitted: (event: { runId: string; jobId: string }) => void;
  /** `step` is the step's name, for named steps (workflow definitions). */
  stepStarted: (event: { runId: string; stepNumber: number; step?: string; jobId: string; attempts: number }) => void;
  stepSettled: (event: {
    runId: string;
    stepNumber: number;
    step?: string;
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
