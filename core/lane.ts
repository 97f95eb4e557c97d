/**
 * A lane of a runtime: one step queue and what runs on it (the low-level
 * runner on `queueName`, or one workflow definition on
 * `<queueName>:<name>`), with its notification queue and reaper template,
 * and the per-step policies of its workflow (timeout, retry delay, how a
 * cancel is taken).
 */
import { retryDelayMs } from './queue-config.js';
import type { StepRunner } from './outcomes.js';
import { ENDS_AT_ONCE } from './settlement.js';
import type { CancelRule } from './settlement.js';
import { checkQueueName } from './store-validation.js';
import type { ResolvedWorkflow, StepDefinition } from './workflow/define.js';
import { stepNameOf } from './workflow/run-step.js';

/** The rule of a workflow's compensation step. */
const COMPENSATING: CancelRule = Object.freeze({ compensate: false, cancellable: false, compensating: true });

/**
 * One step queue and what runs on it: the low-level runner on `queueName`,
 * or one workflow definition on `<queueName>:<name>`. Each has its own
 * notification queue and reaper template.
 */
export class Lane {
  readonly notificationQueue: string;
  /** Whether the notification queue may hold a claimable job (set by its notices and by polls). */
  notificationsMaybeWaiting = true;
  /** The store holds this lane's reaper template (set once, before its first step job). */
  templateSet = false;

  constructor(
    readonly queue: string,
    readonly runner: StepRunner | undefined,
    readonly workflow: ResolvedWorkflow | undefined,
  ) {
    this.notificationQueue = notificationQueueOf(queue);
    checkQueueName(queue);
    checkQueueName(this.notificationQueue);
  }

  /** The definition of the step a job names (workflow lanes). */
  private stepOf(stepName: string | undefined): StepDefinition<unknown, unknown, string> | undefined {
    return this.workflow?.steps.get(stepNameOf(this.workflow, { stepName }));
  }

  /** The delay before the retry of a step that failed on its `attempts`-th attempt: its own policy's, else `undefined` (the queue's). */
  retryDelayFor(stepName: string | undefined, attempts: number): number | undefined {
    const retry = this.stepOf(stepName)?.retry;
    if (retry?.initialDelayMs === undefined) return undefined;
    return retryDelayMs({ retryBackoffBaseMs: retry.initialDelayMs, retryBackoffMaxMs: retry.maxDelayMs ?? 32 * retry.initialDelayMs }, attempts);
  }

  /** How an external cancel is taken at a step (see `CancelRule`). */
  cancelRuleFor(stepName: string | undefined, onCancel: boolean): CancelRule {
    const workflow = this.workflow;
    if (workflow === undefined) return ENDS_AT_ONCE;
    if (onCancel) return COMPENSATING;
    const cancellable = this.stepOf(stepName)?.cancellable !== false;
    const compensate = workflow.onCancel !== undefined;
    return cancellable && !compensate ? ENDS_AT_ONCE : { compensate, cancellable, compensating: false };
  }

  /** The step timeout of `job`: its workflow step's own, else the runtime's. */
  timeoutFor(stepName: string | undefined, fallback: number | undefined): number | undefined {
    return this.stepOf(stepName)?.timeoutMs ?? fallback;
  }
}

/** Where the outcome notifications of a step queue go. */
export function notificationQueueOf(stepQueue: string): string {
  return `${stepQueue}.outcomes`;
}
