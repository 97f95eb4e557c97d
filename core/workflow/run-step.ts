/**
 * A workflow definition as a `StepRunner`: decodes the state with the
 * workflow's codec, runs the step the job names (`workflow.step_name`),
 * and turns what the step's `ctx` returned into the engine's outcome. The
 * next step's name travels in its job's header and its max attempts on its
 * job; a step name the workflow does not have fails the run with a clear
 * reason, and a value the codec refuses fails it too, with nothing stored.
 */
import { StepError, StepOutcome } from '../outcomes.js';
import type { Step, StepRunner } from '../outcomes.js';
import type { Headers } from '../queue-store.js';
import type { ResolvedWorkflow, StepContext, WorkflowStepResult } from './define.js';

const NOTHING = new Uint8Array(0);

/** Results made by a `ctx`: anything else a step returns is refused. */
const made = new WeakSet<object>();

function result<T extends WorkflowStepResult>(value: T): T {
  made.add(value);
  return Object.freeze(value);
}

class Context<S, R, K extends string> implements StepContext<S, R, K> {
  readonly #step: Step;

  constructor(
    readonly workflow: string,
    readonly step: K,
    delivery: Step,
  ) {
    this.#step = delivery;
  }
  get runId(): string {
    return this.#step.runId;
  }
  get attempt(): number {
    return this.#step.attempts;
  }
  get signal(): AbortSignal {
    return this.#step.signal;
  }
  get headers(): Readonly<Headers> {
    return this.#step.headers;
  }
  next(step: K, state: S, options?: { delayMs?: number }): WorkflowStepResult {
    return result({ kind: 'next', step, state, delayMs: options?.delayMs ?? 0 });
  }
  succeed(value: R): WorkflowStepResult {
    return result({ kind: 'succeed', result: value });
  }
  fail(reason: string): WorkflowStepResult {
    return result({ kind: 'fail', reason });
  }
  cancel(reason: string): WorkflowStepResult {
    return result({ kind: 'cancel', reason });
  }
}

/** The step a job of `workflow` runs: the one its header names, else the start (a job with no name is a first step). */
export function stepNameOf(workflow: ResolvedWorkflow, step: Pick<Step, 'stepName'>): string {
  return step.stepName ?? workflow.start;
}

/** Runs the steps of `workflow`. */
export function workflowRunner(workflow: ResolvedWorkflow): StepRunner {
  return async (step) => {
    const name = stepNameOf(workflow, step);
    const decode = (): unknown => permanent(() => workflow.codec.decode(step.payload), `step ${JSON.stringify(name)}: cannot decode its state`);
    if (step.onCancel === true) {
      // The compensation of an external cancel (named after the step it came at): its success ends the run cancelled.
      await workflow.onCancel?.(decode(), new Context(workflow.name, name, step));
      return StepOutcome.succeed(NOTHING);
    }
    const spec = workflow.steps.get(name);
    if (spec === undefined) return StepOutcome.fail(`workflow ${JSON.stringify(workflow.name)} has no step ${JSON.stringify(name)}`);
    const returned: unknown = await spec.run(decode(), new Context(workflow.name, name, step));
    if (returned === null || typeof returned !== 'object' || !made.has(returned)) {
      throw StepError.permanent(`step ${JSON.stringify(name)} returned no outcome: return ctx.next(...), ctx.succeed(...), ctx.fail(...) or ctx.cancel(...)`);
    }
    const outcome = returned as WorkflowStepResult;
    switch (outcome.kind) {
      case 'next': {
        const next = workflow.steps.get(outcome.step);
        if (next === undefined) {
          return StepOutcome.fail(
            `step ${JSON.stringify(name)} chose next step ${JSON.stringify(outcome.step)}, which workflow ${JSON.stringify(workflow.name)} does not have`,
          );
        }
        const payload = permanent(() => workflow.codec.encode(outcome.state), `step ${JSON.stringify(name)}: cannot encode the next state`);
        const named = next.retry?.maxAttempts === undefined ? { step: outcome.step } : { step: outcome.step, maxAttempts: next.retry.maxAttempts };
        return outcome.delayMs > 0 ? StepOutcome.continueAfter(payload, outcome.delayMs, named) : StepOutcome.continue(payload, named);
      }
      case 'succeed':
        return StepOutcome.succeed(permanent(() => workflow.resultCodec.encode(outcome.result), `step ${JSON.stringify(name)}: cannot encode the result`));
      case 'fail':
        return StepOutcome.fail(outcome.reason);
      case 'cancel':
        return StepOutcome.cancel(outcome.reason);
    }
  };
}

/** `fn()`, or a permanent step failure saying what could not be done (a codec refusal never heals on retry). */
function permanent<T>(fn: () => T, what: string): T {
  try {
    return fn();
  } catch (error) {
    throw StepError.permanent(`${what}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
}
