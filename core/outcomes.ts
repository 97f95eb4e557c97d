import { InvalidArgumentError, WorkflowError } from './errors.js';
import type { Headers } from './queue-store.js';

/** What a runner decided for its step. Build with the `StepOutcome` helpers. */
export type StepOutcome =
  | { readonly kind: 'continue'; readonly payload: Uint8Array; readonly next?: NextStep }
  | { readonly kind: 'continueAfter'; readonly payload: Uint8Array; readonly delayMs: number; readonly next?: NextStep }
  | { readonly kind: 'succeed'; readonly result: Uint8Array }
  | { readonly kind: 'fail'; readonly reason: string }
  | { readonly kind: 'cancel'; readonly reason: string };

/**
 * What a continue says of the step it starts: its name (carried in the
 * `workflow.step_name` header of its job) and its max attempts (else the
 * current step's). Named steps are what `defineWorkflow` runs on.
 */
export interface NextStep {
  readonly step: string;
  readonly maxAttempts?: number;
}

/** A step name: 1 to 128 characters, none of them a control character. */
export function checkStepName(name: unknown, what = 'step name'): asserts name is string {
  // eslint-disable-next-line no-control-regex -- control characters are what is refused
  if (typeof name !== 'string' || name.length === 0 || name.length > 128 || /[\u0000-\u001f\u007f]/.test(name)) {
    throw new InvalidArgumentError(
      what,
      `expected 1 to 128 characters with no control characters, got ${typeof name === 'string' ? JSON.stringify(name) : typeof name}`,
    );
  }
}

function nextStep(value: unknown): NextStep | undefined {
  if (value === undefined) return undefined;
  if (value === null || typeof value !== 'object') throw new InvalidArgumentError('continue next', 'expected { step, maxAttempts? }');
  const { step, maxAttempts } = value as NextStep;
  checkStepName(step, 'continue next step');
  if (maxAttempts !== undefined && (!Number.isSafeInteger(maxAttempts) || maxAttempts < 1)) {
    throw new InvalidArgumentError('continue next maxAttempts', `expected a positive integer, got ${String(maxAttempts)}`);
  }
  return value as NextStep;
}

function bytes(name: string, value: unknown): Uint8Array {
  if (!(value instanceof Uint8Array)) throw new InvalidArgumentError(name, 'expected a Uint8Array');
  return value;
}

function delay(delayMs: unknown): number {
  if (typeof delayMs !== 'number' || !Number.isSafeInteger(delayMs) || delayMs < 0) {
    throw new InvalidArgumentError('continueAfter delayMs', `expected a non-negative integer of milliseconds, got ${String(delayMs)}`);
  }
  return delayMs;
}

function text(name: string, value: unknown): string {
  if (typeof value !== 'string') throw new InvalidArgumentError(name, 'expected a string');
  return value;
}

/** Builders for `StepOutcome`. */
export const StepOutcome = {
  /** Run the next step now with `payload` (named `next.step`, when given). */
  continue(payload: Uint8Array, next?: NextStep): StepOutcome {
    const named = nextStep(next);
    return named
      ? { kind: 'continue', payload: bytes('continue payload', payload), next: named }
      : { kind: 'continue', payload: bytes('continue payload', payload) };
  },
  /** Run the next step with `payload` once `delayMs` has passed (named `next.step`, when given). */
  continueAfter(payload: Uint8Array, delayMs: number, next?: NextStep): StepOutcome {
    const named = nextStep(next);
    const outcome = { kind: 'continueAfter' as const, payload: bytes('continueAfter payload', payload), delayMs: delay(delayMs) };
    return named ? { ...outcome, next: named } : outcome;
  },
  /** End the run as succeeded with `result`. */
  succeed(result: Uint8Array): StepOutcome {
    return { kind: 'succeed', result: bytes('succeed result', result) };
  },
  /** End the run as failed (the step itself ran cleanly: no dead-letter). */
  fail(reason: string): StepOutcome {
    return { kind: 'fail', reason: text('fail reason', reason) };
  },
  /** End the run as cancelled with a reason (wins over an external cancel). */
  cancel(reason: string): StepOutcome {
    return { kind: 'cancel', reason: text('cancel reason', reason) };
  },
};

/**
 * Thrown by runners. `transient` failures are retried with backoff up to the
 * step's max attempts; `permanent` ones dead-letter the step and fail the run.
 * Any other thrown value counts as transient.
 */
export class StepError extends WorkflowError {
  readonly code = 'STEP_FAILED';
  private constructor(
    message: string,
    readonly isPermanent: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  static transient(message: string, options?: { cause?: unknown }): StepError {
    return new StepError(message, false, options);
  }

  static permanent(message: string, options?: { cause?: unknown }): StepError {
    return new StepError(message, true, options);
  }
}

/** One step as handed to the runner. */
export interface Step {
  readonly runId: string;
  /** Zero-based step number. */
  readonly stepNumber: number;
  readonly payload: Uint8Array;
  /** The submitter's headers (the runtime's `workflow.*` headers are stripped). */
  readonly headers: Headers;
  readonly jobId: string;
  /** Delivery count of this step, starting at 1. */
  readonly attempts: number;
  /** Aborted when the run is cancelled (or this delivery lost its lease). */
  readonly signal: AbortSignal;
  /** The step's name, for named steps (`StepOutcome.continue(payload, { step })`, and workflow definitions). */
  readonly stepName?: string | undefined;
  /** True for the delivery that runs a workflow's `onCancel` (after an external cancel). */
  readonly onCancel?: boolean;
}

/** Runs one step. Must be idempotent for `(runId, stepNumber)`: delivery is at least once. */
export type StepRunner = (step: Step) => StepOutcome | Promise<StepOutcome>;

/** How a run ended. */
export type TerminalStatus = 'succeeded' | 'failed' | 'cancelled';

/** The single terminal outcome of a run, handed to the hook. */
export interface RunOutcome {
  runId: string;
  status: TerminalStatus;
  /** Present when succeeded. */
  result?: Uint8Array;
  /** Failure message, or the runner's cancel reason; absent for an external cancel. */
  error?: string;
  /** The submitter's headers only. */
  headers: Headers;
  /** Step number the run ended on. */
  finalStep: number;
  /** Name of the run's workflow (runs of a `defineWorkflow` definition). */
  workflow?: string;
  /**
   * Workflow runs: the state the last step ran with, decoded by the
   * workflow's codec (absent when the reaper ended the run: the reaper has
   * no step's outcome to read it from).
   */
  lastState?: unknown;
  /** Workflow runs that succeeded: the result, decoded by the workflow's result codec. */
  output?: unknown;
  /** Workflow runs: the bytes the last step ran with (what `lastState` is decoded from). */
  lastPayload?: Uint8Array;
}

/** Called once per run after its terminal settlement committed. Errors are caught and reported. */
export type TerminalHook = (outcome: RunOutcome) => void | Promise<void>;

/** A hook that does nothing. */
export const noopHook: TerminalHook = () => undefined;

/** What the runner produced: an outcome, or a thrown value. */
export type RunnerResult = { ok: true; outcome: StepOutcome } | { ok: false; error: unknown };

const OUTCOME_KINDS = new Set(['continue', 'continueAfter', 'succeed', 'fail', 'cancel']);

/** Checks a value returned by a runner; a malformed one becomes a permanent error. */
export function toRunnerResult(value: unknown): RunnerResult {
  const outcome = value as StepOutcome | undefined;
  let kind: unknown;
  try {
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- a runner returns whatever it returns
    kind = outcome !== null && typeof outcome === 'object' ? outcome.kind : undefined;
  } catch {
    kind = undefined; // a throwing getter: as malformed as a missing kind
  }
  if (typeof kind !== 'string' || !OUTCOME_KINDS.has(kind)) {
    return { ok: false, error: StepError.permanent(`runner returned an invalid outcome (${describeValue(value, kind)}); use the StepOutcome builders`) };
  }
  try {
    // The builders' checks, on the runner's own object (no copy: it is read once, at settlement).
    switch (kind as StepOutcome['kind']) {
      case 'continue':
        bytes('continue payload', (outcome as { payload: unknown }).payload);
        nextStep((outcome as { next?: unknown }).next);
        break;
      case 'continueAfter':
        bytes('continueAfter payload', (outcome as { payload: unknown }).payload);
        delay((outcome as { delayMs: unknown }).delayMs);
        nextStep((outcome as { next?: unknown }).next);
        break;
      case 'succeed':
        bytes('succeed result', (outcome as { result: unknown }).result);
        break;
      case 'fail':
        text('fail reason', (outcome as { reason: unknown }).reason);
        break;
      case 'cancel':
        text('cancel reason', (outcome as { reason: unknown }).reason);
        break;
    }
  } catch (error) {
    return { ok: false, error: StepError.permanent(`runner returned an invalid outcome: ${describeFailure(error).message}`) };
  }
  return { ok: true, outcome: outcome as StepOutcome };
}

/**
 * The due time of a `continueAfter`, checked where the clock is known (the
 * builder has none): a delay that puts the next step past the largest safe
 * integer of ms becomes a permanent failure of the step, where the store
 * would otherwise refuse the settlement.
 */
export function checkDueTime(result: RunnerResult, now: number): RunnerResult {
  if (!result.ok || result.outcome.kind !== 'continueAfter' || Number.isSafeInteger(now + result.outcome.delayMs)) return result;
  return {
    ok: false,
    error: StepError.permanent(
      `runner returned an invalid outcome: continueAfter delay of ${result.outcome.delayMs} ms from now is past the latest representable time`,
    ),
  };
}

function describeValue(value: unknown, kind: unknown): string {
  if (value === null || value === undefined) return String(value);
  if (typeof value === 'object') return `object with kind ${typeof kind === 'string' ? JSON.stringify(kind) : typeof kind}`;
  return typeof value;
}

/**
 * The message of a thrown value, and whether it is permanent (only
 * `WorkflowError`s can say so). Total: runners throw anything (`undefined`,
 * prototype-free objects, objects whose `toString` or getters throw,
 * proxies), and a failure to describe one must not keep its step from
 * settling.
 */
export function describeFailure(error: unknown): { message: string; permanent: boolean } {
  try {
    if (error instanceof WorkflowError) return { message: String(error.message), permanent: error.isPermanent };
    if (error instanceof Error) return { message: String(error.message), permanent: false };
    if (error === undefined || error === null) return { message: `runner threw ${String(error)}`, permanent: false };
    // eslint-disable-next-line @typescript-eslint/no-base-to-string -- a thrown non-Error is described as String() shows it
    return { message: String(error), permanent: false };
  } catch {
    return { message: `runner threw a value that cannot be described (${safeTypeName(error)})`, permanent: false };
  }
}

function safeTypeName(value: unknown): string {
  try {
    if (typeof value !== 'object' || value === null) return typeof value;
    const proto: unknown = Object.getPrototypeOf(value);
    if (proto === null) return 'object without prototype';
    const name: unknown = (proto as { constructor?: { name?: unknown } }).constructor?.name;
    return typeof name === 'string' ? `object (${name})` : 'object';
  } catch {
    return 'object';
  }
}
