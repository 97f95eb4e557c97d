/**
 * Every error this library raises extends `WorkflowError` and carries a
 * stable `code` (codes never change between versions; messages may) and
 * `isPermanent` (true when retrying the same call cannot change the result).
 * The full list is in docs/errors.md.
 */
export abstract class WorkflowError extends Error {
  abstract readonly code: string;
  abstract readonly isPermanent: boolean;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A submitted header key starts with the runtime's reserved `workflow.` prefix. */
export class ReservedHeaderInSubmitError extends WorkflowError {
  readonly code = 'RESERVED_HEADER_IN_SUBMIT';
  readonly isPermanent = true;
  constructor(readonly header: string) {
    super(`header "${header}" uses the reserved "workflow." prefix; choose another key`);
  }
}

/** A caller-supplied run id is not 1 to 128 characters of [A-Za-z0-9_-]. */
export class InvalidRunIdError extends WorkflowError {
  readonly code = 'INVALID_RUN_ID';
  readonly isPermanent = true;
  constructor(readonly runId: unknown) {
    super(`invalid run id ${JSON.stringify(String(runId)).slice(0, 160)}: use 1 to 128 characters of [A-Za-z0-9_-]`);
  }
}

/** A run with this id is active and was submitted with a different input. */
export class InputMismatchError extends WorkflowError {
  readonly code = 'INPUT_MISMATCH';
  readonly isPermanent = true;
  constructor(readonly runId: string) {
    super(`run "${runId}" is already active with a different input; pick a fresh run id for a new run`);
  }
}

/** A step job lacks a header the runtime needs (`workflow.run_id` or `workflow.step`). */
export class MissingHeaderError extends WorkflowError {
  readonly code = 'MISSING_HEADER';
  readonly isPermanent = true;
  constructor(readonly header: string) {
    super(`step job is missing the "${header}" header`);
  }
}

/** A step job's `workflow.step` header is not a non-negative integer. */
export class InvalidStepHeaderError extends WorkflowError {
  readonly code = 'INVALID_STEP_HEADER';
  readonly isPermanent = true;
  constructor(
    readonly header: string,
    readonly value: string,
  ) {
    super(`step job header "${header}" has invalid value ${JSON.stringify(value)}; expected a non-negative integer`);
  }
}

/** A key-value write exceeds the 256 KiB value limit. Nothing was written. */
export class KvValueTooLargeError extends WorkflowError {
  readonly code = 'KV_VALUE_TOO_LARGE';
  readonly isPermanent = true;
  constructor(
    readonly key: string,
    readonly size: number,
    readonly limit: number,
  ) {
    super(`kv value for key "${key}" is ${size} bytes; the limit is ${limit} bytes`);
  }
}

/** No job with this id exists. */
export class JobNotFoundError extends WorkflowError {
  readonly code = 'JOB_NOT_FOUND';
  readonly isPermanent = true;
  constructor(readonly jobId: string) {
    super(`job "${jobId}" not found`);
  }
}

/** The job exists but is not in a state that allows the operation. */
export class InvalidStateError extends WorkflowError {
  readonly code = 'INVALID_STATE';
  readonly isPermanent = true;
  constructor(
    readonly jobId: string,
    readonly status: string,
    readonly operation: string,
  ) {
    super(`cannot ${operation} job "${jobId}" in status "${status}"`);
  }
}

/**
 * The claim token no longer owns the job (its lease expired and the job was
 * re-queued, re-claimed, cancelled, settled or dead-lettered meanwhile).
 * Nothing was changed.
 */
export class LeaseLostError extends WorkflowError {
  readonly code = 'LEASE_LOST';
  readonly isPermanent = true;
  constructor(readonly jobId: string) {
    super(`claim on job "${jobId}" is no longer held (lease lost); nothing was changed`);
  }
}

/** An argument is malformed: wrong type, negative/NaN/infinite number, and so on. */
export class InvalidArgumentError extends WorkflowError {
  readonly code = 'INVALID_ARGUMENT';
  readonly isPermanent = true;
  constructor(
    readonly argument: string,
    detail: string,
  ) {
    super(`invalid ${argument}: ${detail}`);
  }
}

/** A payload or header set exceeds a configured limit. Nothing was written. */
export class LimitExceededError extends WorkflowError {
  readonly code = 'LIMIT_EXCEEDED';
  readonly isPermanent = true;
  constructor(
    readonly limit: string,
    readonly actual: number,
    readonly maximum: number,
  ) {
    super(`${limit} is ${actual}; the limit is ${maximum}`);
  }
}

/** The store was closed; no further operations are accepted. */
export class StoreClosedError extends WorkflowError {
  readonly code = 'STORE_CLOSED';
  readonly isPermanent = true;
  constructor() {
    super('the store is closed');
  }
}

/**
 * The backend failed in a way that may succeed on retry: connection loss,
 * a busy database, a serialization conflict. The driver error is the `cause`.
 */
export class StoreUnavailableError extends WorkflowError {
  readonly code = 'STORE_UNAVAILABLE';
  readonly isPermanent = false;
}

/**
 * The backend refused this operation's values for good: a constraint or a
 * limit of the database (say, a key too large for its index), a privilege
 * missing. Retrying the same call cannot succeed; nothing of it was written.
 * The driver error is the `cause`.
 */
export class StoreRejectedError extends WorkflowError {
  readonly code = 'STORE_REJECTED';
  readonly isPermanent = true;
}

/** The database holds a schema this version cannot use (too new, or not ours). */
export class IncompatibleSchemaError extends WorkflowError {
  readonly code = 'INCOMPATIBLE_SCHEMA';
  readonly isPermanent = true;
}

/** A store could not be opened (bad path, not a database, permissions). */
export class StoreOpenError extends WorkflowError {
  readonly code = 'STORE_OPEN_FAILED';
  readonly isPermanent = true;
}

/**
 * The store's files are damaged, or were deleted or replaced while the store
 * had them open (so commits may be lost). Retrying cannot help: the store
 * refuses every later operation, and the file needs an operator (restore a
 * backup, or check and repair it). The message names the file.
 */
export class StoreCorruptedError extends WorkflowError {
  readonly code = 'STORE_CORRUPTED';
  readonly isPermanent = true;
}

/**
 * A `ManualClock` fired more than its limit of timers at one instant while
 * moving time: something re-arms a timer at the same instant over and over
 * (a timer storm), which would otherwise spin forever inside one synchronous
 * `advance`/`set`. `armedBy` is the stack that armed the storming timer.
 */
export class TimerStormError extends WorkflowError {
  readonly code = 'TIMER_STORM';
  readonly isPermanent = true;
  constructor(
    readonly instant: number,
    readonly fired: number,
    readonly armedBy: string,
  ) {
    super(
      `ManualClock: more than ${fired} timers fired at one instant (${new Date(instant).toISOString()}, ${instant}): ` +
        `a timer keeps re-arming itself with no delay (timer storm); time stops at that instant. The storming timer was armed ${armedBy}`,
    );
  }
}

/** True when `error` is a transient failure worth retrying. Unknown errors are transient. */
export function isTransientError(error: unknown): boolean {
  return !(error instanceof WorkflowError) || !error.isPermanent;
}

/**
 * A step's runner ran past the runtime's `stepTimeoutMs`. Transient: the step
 * is retried per its queue's policy, and the run fails with this message when
 * it was the last attempt. Also the reason of the step's aborted signal.
 */
export class StepTimeoutError extends WorkflowError {
  readonly code = 'STEP_TIMED_OUT';
  readonly isPermanent = false;
  constructor(readonly timeoutMs: number) {
    super(`step timed out after ${timeoutMs} ms`);
  }
}

/**
 * The worker loop stopped while this step's runner was still running (the
 * shutdown grace period ran out): the reason of its aborted signal. The step
 * is not settled; it is re-delivered once its lease expires.
 */
export class WorkerStoppedError extends WorkflowError {
  readonly code = 'WORKER_STOPPED';
  readonly isPermanent = false;
  constructor(readonly graceMs: number) {
    super(`the worker loop stopped and its ${graceMs} ms shutdown grace ran out before this step finished; it will be re-delivered after its lease`);
  }
}

/** `run()` was called on a runtime built without a runner (one meant for submit, status and cancel). */
export class RunnerRequiredError extends WorkflowError {
  readonly code = 'RUNNER_REQUIRED';
  readonly isPermanent = true;
  constructor() {
    super('this runtime has no runner: pass `runner` to the constructor to run steps');
  }
}

/**
 * Runtimes sharing a store and queue name are configured with different
 * `hookDelivery` settings (the first one recorded its setting in the store).
 * Mixed settings lose hooks: each runtime would deliver the outcomes it
 * commits its own way.
 */
export class HookDeliveryMismatchError extends WorkflowError {
  readonly code = 'HOOK_DELIVERY_MISMATCH';
  readonly isPermanent = true;
  constructor(
    readonly queueName: string,
    readonly recorded: string,
    readonly configured: string,
  ) {
    super(
      `queue "${queueName}" uses hookDelivery "${recorded}" (recorded in the store), but this runtime is configured with "${configured}"; every runtime sharing the queue must use the same setting`,
    );
  }
}
