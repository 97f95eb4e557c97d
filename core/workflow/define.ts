/**
 * Workflows as code: `defineWorkflow` names a workflow, its typed state and
 * result (through codecs), and its steps by name, each with its own
 * attempts and timeout. A definition is plain data plus functions; the
 * runtime runs it on the explicit-outcome engine underneath (a step's
 * `ctx.next('charge', state)` is a continue whose next job carries the
 * step name `charge`).
 */
import { InvalidArgumentError, WorkflowError } from '../errors.js';
import { checkStepName } from '../outcomes.js';
import type { Headers } from '../queue-store.js';
import { json } from './codec.js';
import type { Codec } from './codec.js';

/** What a step decided; made only by its `ctx` (`next`, `succeed`, `fail`, `cancel`). */
export type WorkflowStepResult =
  | { readonly kind: 'next'; readonly step: string; readonly state: unknown; readonly delayMs: number }
  | { readonly kind: 'succeed'; readonly result: unknown }
  | { readonly kind: 'fail'; readonly reason: string }
  | { readonly kind: 'cancel'; readonly reason: string };

/** Where a step (or a compensation) runs: the run, the step's name and this delivery. */
export interface RunContext<K extends string> {
  readonly runId: string;
  readonly workflow: string;
  /** This step's name; for `onCancel`, the step the run was cancelled at (the one that would have run next, or was running). */
  readonly step: K;
  /** Delivery count of this step, from 1. */
  readonly attempt: number;
  /** Aborted when the run is cancelled (never for `onCancel` or a non-cancellable step), the step times out, or the worker stops. */
  readonly signal: AbortSignal;
  /** The headers the run was started with. */
  readonly headers: Readonly<Headers>;
}

/** Where a step runs, and the outcomes it can return. */
export interface StepContext<S, R, K extends string> extends RunContext<K> {
  /** Run step `step` next with `state`, now or after `delayMs`. */
  next(step: K, state: S, options?: { delayMs?: number }): WorkflowStepResult;
  /** End the run as succeeded with `result`. */
  succeed(result: R): WorkflowStepResult;
  /** End the run as failed (the step ran cleanly: no retry). */
  fail(reason: string): WorkflowStepResult;
  /** End the run as cancelled with a reason. */
  cancel(reason: string): WorkflowStepResult;
}

export type StepFunction<S, R, K extends string> = (state: S, ctx: StepContext<S, R, K>) => WorkflowStepResult | Promise<WorkflowStepResult>;

export interface StepRetry {
  maxAttempts?: number;
  initialDelayMs?: number;
  maxDelayMs?: number;
}

/** A step with its own policies. */
export interface StepDefinition<S, R, K extends string> {
  run: StepFunction<S, R, K>;
  /**
   * This step's retry policy: its attempts (else the queue's `maxAttempts`)
   * and the delay before each retry of a transient failure, doubling from
   * `initialDelayMs` up to `maxDelayMs` (default 32 x `initialDelayMs`);
   * without `initialDelayMs`, the queue's backoff.
   */
  retry?: StepRetry;
  /** Longest this step may run, in ms (else the runtime's `stepTimeoutMs`). */
  timeoutMs?: number;
  /**
   * Default true. A step marked `false` is never interrupted by an external
   * cancel: its signal is not aborted for it and its outcome commits; the
   * cancel applies at the next step boundary, with the state it committed.
   */
  cancellable?: boolean;
}

/** A workflow's compensation: runs, at least once, with the last committed state after an external cancel. */
export type CancelHandler<S, K extends string> = (lastState: S, ctx: RunContext<K>) => void | Promise<void>;

export interface WorkflowDefinition<S, R, K extends string> {
  /** 1 to 64 characters of [A-Za-z0-9_-]: routes runs to this definition, and is stored with every step. */
  name: string;
  /** The state's codec. Default `json()`. */
  codec?: Codec<S>;
  /** The result's codec. Default `json()`. */
  resultCodec?: Codec<R>;
  /** The steps by name; the first is where a run starts, unless `start` names another. */
  steps: { [P in K]: StepFunction<S, R, K> | StepDefinition<S, R, K> };
  start?: NoInfer<K>;
  /**
   * Run when an external cancel commits: a durable compensation step with
   * the last committed state, retried like any step (the queue's policy),
   * after which the run ends `cancelled`; if it fails for good the run ends
   * `failed` with `onCancel failed: <message>`. Without it, a cancel ends
   * the run at once.
   */
  onCancel?: CancelHandler<S, K>;
}

/** A defined workflow: pass it to `WorkflowRuntime({ workflows })` and `runtime.start`. */
export interface Workflow<S = unknown, R = unknown, K extends string = string> {
  readonly name: string;
  /** The step a run starts at. */
  readonly start: K;
  /** Never set: carries the state and result types, so `runtime.start` checks its input at compile time. */
  readonly types?: { readonly state: S; readonly result: R };
}

/** What the runtime needs of a definition, its types erased (see `definitionOf`). */
export interface ResolvedWorkflow {
  readonly name: string;
  readonly start: string;
  readonly codec: Codec<unknown>;
  readonly resultCodec: Codec<unknown>;
  /** The steps, each with its policies resolved. */
  readonly steps: ReadonlyMap<string, Readonly<StepDefinition<unknown, unknown, string>>>;
  readonly onCancel: CancelHandler<unknown, string> | undefined;
}

const definitions = new WeakMap<Workflow, ResolvedWorkflow>();

/** The definition behind a `Workflow`; a typed error for anything `defineWorkflow` did not make. */
export function definitionOf(workflow: Workflow): ResolvedWorkflow {
  const resolved = (workflow as object | null) !== null && typeof workflow === 'object' ? definitions.get(workflow) : undefined;
  if (resolved === undefined) throw new InvalidArgumentError('workflow', 'expected a workflow made by defineWorkflow');
  return resolved;
}

/** A definition that cannot run (a bad name, no steps, an unknown `start`, a step that is not a function). */
export class WorkflowDefinitionError extends WorkflowError {
  readonly code = 'INVALID_WORKFLOW';
  readonly isPermanent = true;
  constructor(workflow: string, problem: string) {
    super(`workflow ${JSON.stringify(workflow)}: ${problem}`);
  }
}

const WORKFLOW_NAME = /^[A-Za-z0-9_-]{1,64}$/;

/** Checks a definition and resolves its defaults; throws `WorkflowDefinitionError` for one that cannot run. */
export function defineWorkflow<S, R = unknown, K extends string = string>(definition: WorkflowDefinition<S, R, K>): Workflow<S, R, K> {
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- untyped callers reach this through the public API
  if (definition === null || typeof definition !== 'object') throw new InvalidArgumentError('workflow definition', 'expected an object');
  const name = definition.name;
  if (typeof name !== 'string' || !WORKFLOW_NAME.test(name)) {
    throw new WorkflowDefinitionError(String(name), 'the name must be 1 to 64 characters of [A-Za-z0-9_-]');
  }
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- untyped callers reach this through the public API
  if (definition.steps === null || typeof definition.steps !== 'object') throw new WorkflowDefinitionError(name, 'steps must be an object of named steps');
  const steps = new Map<string, StepDefinition<S, R, K>>();
  for (const [stepName, value] of Object.entries<StepFunction<S, R, K> | StepDefinition<S, R, K>>(definition.steps)) {
    try {
      checkStepName(stepName);
    } catch (error) {
      throw new WorkflowDefinitionError(name, (error as Error).message);
    }
    steps.set(stepName, resolveStep(name, stepName, value));
  }
  const first = steps.keys().next();
  if (first.done === true) throw new WorkflowDefinitionError(name, 'it has no steps');
  const start = definition.start ?? (first.value as K);
  if (!steps.has(start)) throw new WorkflowDefinitionError(name, `start names step ${JSON.stringify(start)}, which is not one of its steps`);
  const workflow: Workflow<S, R, K> = Object.freeze({ name, start });
  definitions.set(workflow, {
    name,
    start,
    codec: checkCodec(name, 'codec', definition.codec) ?? json<S>(),
    resultCodec: checkCodec(name, 'resultCodec', definition.resultCodec) ?? json<R>(),
    steps: steps as unknown as ReadonlyMap<string, StepDefinition<unknown, unknown, string>>,
    onCancel: checkOnCancel(name, definition.onCancel) as CancelHandler<unknown, string> | undefined,
  });
  return workflow;
}

function resolveStep<S, R, K extends string>(workflow: string, step: string, value: StepFunction<S, R, K> | StepDefinition<S, R, K>): StepDefinition<S, R, K> {
  const spec: StepDefinition<S, R, K> = typeof value === 'function' ? { run: value } : value;
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- untyped callers reach this through the public API
  if (spec === null || typeof spec !== 'object' || typeof spec.run !== 'function') {
    throw new WorkflowDefinitionError(workflow, `step ${JSON.stringify(step)} must be a function or { run, retry?, timeoutMs? }`);
  }
  const { maxAttempts, initialDelayMs, maxDelayMs } = spec.retry ?? {};
  if (maxAttempts !== undefined && (!Number.isSafeInteger(maxAttempts) || maxAttempts < 1)) {
    throw new WorkflowDefinitionError(workflow, `step ${JSON.stringify(step)}: retry.maxAttempts must be a positive integer, got ${String(maxAttempts)}`);
  }
  if (initialDelayMs !== undefined && (!Number.isSafeInteger(initialDelayMs) || initialDelayMs < 0)) {
    throw new WorkflowDefinitionError(
      workflow,
      `step ${JSON.stringify(step)}: retry.initialDelayMs must be a non-negative integer, got ${String(initialDelayMs)}`,
    );
  }
  if (maxDelayMs !== undefined && (initialDelayMs === undefined || !Number.isSafeInteger(maxDelayMs) || maxDelayMs < initialDelayMs)) {
    throw new WorkflowDefinitionError(
      workflow,
      `step ${JSON.stringify(step)}: retry.maxDelayMs must be an integer of at least retry.initialDelayMs, got ${String(maxDelayMs)}`,
    );
  }
  if (spec.cancellable !== undefined && typeof spec.cancellable !== 'boolean') {
    throw new WorkflowDefinitionError(workflow, `step ${JSON.stringify(step)}: cancellable must be a boolean`);
  }
  if (spec.timeoutMs !== undefined && (!Number.isSafeInteger(spec.timeoutMs) || spec.timeoutMs < 1)) {
    throw new WorkflowDefinitionError(workflow, `step ${JSON.stringify(step)}: timeoutMs must be a positive integer, got ${String(spec.timeoutMs)}`);
  }
  return Object.freeze({ ...spec });
}

function checkOnCancel<T>(workflow: string, handler: T | undefined): T | undefined {
  if (handler !== undefined && typeof handler !== 'function')
    throw new WorkflowDefinitionError(workflow, 'onCancel must be a function (lastState, ctx) => void');
  return handler;
}

function checkCodec<T>(workflow: string, what: string, codec: Codec<T> | undefined): Codec<T> | undefined {
  if (codec === undefined) return undefined;
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- untyped callers reach this through the public API
  if (codec === null || typeof codec.encode !== 'function' || typeof codec.decode !== 'function') {
    throw new WorkflowDefinitionError(workflow, `${what} must be an object with encode and decode functions`);
  }
  return codec;
}
