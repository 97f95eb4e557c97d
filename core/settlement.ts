/**
 * The settlement decision of the runtime as one pure function:
 * runner result × attempts → the store settlement (primary branch, and the
 * branch the store applies instead when an external cancel is flagged at
 * commit time) and the terminal outcome each branch implies.
 *
 * | runner result                      | primary action                  | run ends            |
 * |------------------------------------|---------------------------------|---------------------|
 * | continue / continueAfter           | ack + enqueue step n+1 + cursor | no                  |
 * | succeed(result)                    | ack + delete run records        | succeeded, result   |
 * | fail(reason)                       | ack + delete run records        | failed, reason      |
 * | cancel(reason)                     | ack + delete run records        | cancelled, reason   |
 * | permanent error                    | dead-letter + delete records    | failed, message     |
 * | transient error, attempts < max    | nack (retry with backoff)       | no                  |
 * | transient error, attempts >= max   | nack (dead) + delete records    | failed, message     |
 * | any of the above, cancel flagged   | ack + delete run records        | cancelled, no error |
 *   (except a runner-issued cancel, whose reason wins)
 */
import { HEADER_ON_CANCEL, HEADER_RUN_ID, HEADER_STEP, HEADER_STEP_NAME, HEADER_WORKFLOW, RESERVED_HEADER_PREFIX, createHeaders } from './headers.js';
import {
  CURSOR_TEXT,
  ENDED_RECEIPT_TTL_MS,
  HEADER_REAPED,
  OUTCOME_DEDUP_TEXT,
  REAPED_NOTICE_PAYLOAD,
  encodeCursor,
  encodeOutcome,
  encodeReceipt,
  outcomeDedupKey,
  runKeyTexts,
} from './run-records.js';
import type { EndedReceipt, RunKeys } from './run-records.js';
import { describeFailure } from './outcomes.js';
import type { RunOutcome, RunnerResult } from './outcomes.js';
import type {
  Effects,
  EnqueueOptions,
  Headers,
  JobText,
  KvPrecondition,
  ReaperTemplate,
  SettleAction,
  Settlement,
  SettlementBranch,
  TemplateEffects,
} from './queue-store.js';

export { HEADER_RUN_ID, HEADER_STEP, RESERVED_HEADER_PREFIX };

/** Dedup key of a run's step: two live jobs for one `(run, step)` never exist at once. */
export function stepDedupKey(runId: string, step: number): string {
  return `run:${runId}:${step}`;
}

/** Everything the decision needs to know about the step that ran. */
export interface StepFacts {
  queueName: string;
  runId: string;
  stepNumber: number;
  attempts: number;
  maxAttempts: number;
  priority: number;
  userHeaders: Headers;
  /** Run record keys (see run-records.ts). */
  keys: RunKeys;
  /** Id to give the next step's job, so the cursor can name it in the same commit. */
  nextJobId: string;
  /** Largest payload a continue may carry. */
  maxPayloadBytes: number;
  /**
   * Durable hook delivery: terminal branches also enqueue the outcome on this queue.
   * `undefined` (in-process delivery: terminal branches write an ended receipt instead) is written
   * out: the facts are built in one shape on every step.
   */
  outcomeQueue: string | undefined;
  /** Where the outcome of a run the reaper ends goes (whatever the hook delivery). */
  reapedOutcomeQueue: string;
  /** Id of the job being settled (names the outcome notification; the cursor must name it). */
  jobId: string;
  /** Claim token of this delivery (named by the ended receipt of in-process delivery). */
  claimToken: string;
  /** The run's workflow (runs of a definition), carried to every step and into the outcome; else `undefined`. */
  workflow: string | undefined;
  /** The payload the step ran with: a workflow run's outcome carries it as `lastPayload`. */
  payload: Uint8Array;
  /** The delay before a retry of this step, from its own retry policy; `undefined`: the queue's backoff. */
  retryDelayMs: number | undefined;
  /** The step's name (named steps); the compensation job of a cancel carries it. */
  stepName: string | undefined;
  /** How an external cancel is taken at this step (`ENDS_AT_ONCE` for the low-level API). */
  cancel: CancelRule;
}

/**
 * How an external cancel flagged at commit is taken:
 * - `compensate`: the run does not end; its workflow's `onCancel` runs next,
 *   as a step job of its own (`compensationEffects`), with the state the
 *   cancelled step started with (else the run ends cancelled at once);
 * - `cancellable: false`: the step's own outcome commits and the cancel
 *   applies at the boundary after it, with the state it committed (no
 *   effect if the step ended the run);
 * - `compensating`: this step is the compensation: a cancel changes nothing,
 *   and its success ends the run cancelled.
 */
export interface CancelRule {
  readonly compensate: boolean;
  readonly cancellable: boolean;
  readonly compensating: boolean;
}

/** The low-level API's rule: a cancel ends the run at once, whatever the step. */
export const ENDS_AT_ONCE: CancelRule = Object.freeze({ compensate: false, cancellable: true, compensating: false });

/** The decision: what to commit, and how the run ends on each branch. */
export interface SettlementDecision {
  settlement: Settlement;
  /** Terminal outcome when the primary branch commits; undefined when the run goes on. */
  primaryOutcome: RunOutcome | undefined;
  /** Terminal outcome when the cancel branch commits; undefined when the run goes on (to its `onCancel`). */
  cancelOutcome: RunOutcome | undefined;
  /** Set when the primary branch enqueues the next step. */
  next?: { jobId: string; stepNumber: number };
}

/** Step-job headers: the user's, plus the runtime's own (the workflow and step names of named steps). */
export function stepHeaders(userHeaders: Headers, runId: string, step: number, names?: StepNames): Headers {
  const headers = createHeaders();
  for (const key of Object.keys(userHeaders)) headers[key] = userHeaders[key] as string;
  headers[HEADER_RUN_ID] = runId;
  headers[HEADER_STEP] = String(step);
  if (names?.workflow !== undefined) headers[HEADER_WORKFLOW] = names.workflow;
  if (names?.step !== undefined) headers[HEADER_STEP_NAME] = names.step;
  return headers;
}

/** The names a step job of a workflow run carries. */
export interface StepNames {
  workflow?: string | undefined;
  step?: string | undefined;
}

/** The run cursor's value while `jobId` carries the run at `step`. */
export function cursorValue(jobId: string, step: number): Uint8Array {
  return encodeCursor(jobId, step);
}

/** The settlement's precondition: the run's cursor still names this job, so a stale job touches no run. */
export function cursorPrecondition(keys: Pick<RunKeys, 'cursor'>, jobId: string, step: number): KvPrecondition {
  return { key: keys.cursor, equals: cursorValue(jobId, step) };
}

/**
 * The reaper template of a runtime's step queue: when a step job's lease
 * expires on its last attempt while the run's cursor still names it, the
 * reaper's commit ends the run (failed "lease expired", or cancelled when a
 * cancel was requested) and enqueues its outcome, whichever process reaps.
 * The store keeps it once per queue and makes each run's part from the
 * reaped job's id and headers, so step jobs carry nothing for their reaper.
 */
export function reaperTemplate(queueName: string, reapedOutcomeQueue: string): ReaperTemplate {
  const runId: JobText = [{ header: HEADER_RUN_ID }];
  const keys = runKeyTexts(queueName, runId);
  const ending = (cancelled: boolean): TemplateEffects => ({
    kvDeletes: [keys.identity, keys.cursor],
    enqueue: [
      {
        queue: reapedOutcomeQueue,
        payload: REAPED_NOTICE_PAYLOAD,
        // The step job's headers are the run's plus its id and step: all a notice needs (see `decodeNotification`).
        copyJobHeaders: true,
        headers: { [HEADER_REAPED]: cancelled ? 'cancelled' : 'failed' },
        dedupKey: OUTCOME_DEDUP_TEXT,
      },
    ],
  });
  return { precondition: { key: keys.cursor, equals: CURSOR_TEXT }, effects: ending(false), ifCancelRequested: ending(true) };
}

/** Shared, frozen: stores read actions and never keep or change them. */
const ACK: SettleAction = Object.freeze({ type: 'ack' });

/** The outcome of a run ending on this step; `result`/`error` only when given. */
function ended(facts: StepFacts, status: RunOutcome['status'], result?: Uint8Array, error?: string, lastPayload: Uint8Array = facts.payload): RunOutcome {
  const outcome: RunOutcome = { runId: facts.runId, status, headers: facts.userHeaders, finalStep: facts.stepNumber };
  if (result !== undefined) outcome.result = result;
  if (error !== undefined) outcome.error = error;
  if (facts.workflow !== undefined) {
    outcome.workflow = facts.workflow;
    outcome.lastPayload = lastPayload;
  }
  return outcome;
}

/** A branch that ends the run with `outcome`, cancellable by an external cancel. */
function terminal(
  facts: StepFacts,
  action: SettleAction,
  outcome: RunOutcome,
  cancelBranch: SettlementBranch,
  cancelOutcome: RunOutcome | undefined,
): SettlementDecision {
  return {
    settlement: {
      action,
      effects: endRunEffects(facts, outcome, 'primary'),
      ifCancelRequested: cancelBranch,
      precondition: cursorPrecondition(facts.keys, facts.jobId, facts.stepNumber),
    },
    primaryOutcome: outcome,
    cancelOutcome,
  };
}

/** Decides the settlement of one step. Pure: same input, same output. */
export function decideSettlement(facts: StepFacts, result: RunnerResult): SettlementDecision {
  if (facts.cancel.compensating) return decideCompensation(facts, result);
  const decision = decideStep(facts, result, cancelAt(facts, facts.payload, facts.stepName));
  return facts.cancel.cancellable ? decision : deferCancel(facts, decision);
}

/** The branch an external cancel takes at a step boundary where the run's state is `payload`, and how it ends the run. */
function cancelAt(facts: StepFacts, payload: Uint8Array, stepName: string | undefined): { branch: SettlementBranch; outcome: RunOutcome | undefined } {
  if (facts.cancel.compensate) return { branch: { action: ACK, effects: compensationEffects(facts, payload, stepName) }, outcome: undefined };
  const outcome = ended(facts, 'cancelled', undefined, undefined, payload);
  return { branch: { action: ACK, effects: endRunEffects(facts, outcome, 'cancel') }, outcome };
}

/** A step that is not cancellable: its own outcome commits either way, and the cancel moves to the boundary after it. */
function deferCancel(facts: StepFacts, decision: SettlementDecision): SettlementDecision {
  const settlement = decision.settlement;
  if (decision.next) {
    const next = settlement.effects?.enqueue?.[0];
    const nextName = next?.options?.headers?.[HEADER_STEP_NAME];
    const boundary = cancelAt(facts, next?.payload ?? facts.payload, nextName);
    return { ...decision, settlement: { ...settlement, ifCancelRequested: boundary.branch }, cancelOutcome: boundary.outcome };
  }
  if (decision.primaryOutcome) {
    // The step ended the run: the cancel comes too late.
    const primary: SettlementBranch = settlement.effects ? { action: settlement.action, effects: settlement.effects } : { action: settlement.action };
    return { ...decision, settlement: { ...settlement, ifCancelRequested: primary }, cancelOutcome: decision.primaryOutcome };
  }
  return decision; // a retry: the boundary is now
}

/**
 * The compensation job of a cancelled run (its workflow's `onCancel`): step
 * n+1, carrying `payload` (the state to compensate) and the name of the
 * step the cancel came at; the cursor moves to it, so the run is still
 * active (and `cancelling`) until it ends.
 */
export function compensationEffects(
  facts: Pick<StepFacts, 'queueName' | 'runId' | 'stepNumber' | 'userHeaders' | 'keys' | 'nextJobId' | 'priority' | 'workflow'>,
  payload: Uint8Array,
  stepName: string | undefined,
): Effects {
  const step = facts.stepNumber + 1;
  const headers = stepHeaders(facts.userHeaders, facts.runId, step, { workflow: facts.workflow, step: stepName });
  headers[HEADER_ON_CANCEL] = '1';
  return {
    enqueue: [
      { queue: facts.queueName, payload, options: { id: facts.nextJobId, headers, priority: facts.priority, dedupKey: stepDedupKey(facts.runId, step) } },
    ],
    kvWrites: [{ key: facts.keys.cursor, value: cursorValue(facts.nextJobId, step) }],
  };
}

/** The compensation step: a cancel cannot cancel it; it ends the run cancelled, or failed if it fails for good. */
function decideCompensation(facts: StepFacts, result: RunnerResult): SettlementDecision {
  const precondition = cursorPrecondition(facts.keys, facts.jobId, facts.stepNumber);
  const ending = (action: SettleAction, outcome: RunOutcome): SettlementDecision => {
    const branch: SettlementBranch = { action, effects: endRunEffects(facts, outcome, 'primary') };
    return { settlement: { ...branch, ifCancelRequested: branch, precondition }, primaryOutcome: outcome, cancelOutcome: outcome };
  };
  if (result.ok) return ending(ACK, ended(facts, 'cancelled'));
  const failure = describeFailure(result.error);
  const message = `onCancel failed: ${failure.message}`;
  if (failure.permanent) return ending({ type: 'deadLetter', reason: message }, ended(facts, 'failed', undefined, message));
  if (facts.attempts >= facts.maxAttempts) return ending({ type: 'nack', error: message }, ended(facts, 'failed', undefined, message));
  const retry: SettlementBranch = { action: { type: 'nack', error: message } };
  return { settlement: { ...retry, ifCancelRequested: retry, precondition }, primaryOutcome: undefined, cancelOutcome: undefined };
}

function decideStep(facts: StepFacts, result: RunnerResult, cancel: { branch: SettlementBranch; outcome: RunOutcome | undefined }): SettlementDecision {
  const cancelOutcome = cancel.outcome;
  const cancelBranch = cancel.branch;

  if (result.ok) {
    const outcome = result.outcome;
    switch (outcome.kind) {
      case 'continue':
      case 'continueAfter': {
        if (outcome.payload.byteLength > facts.maxPayloadBytes) {
          const message = `continue payload is ${outcome.payload.byteLength} bytes; the limit is ${facts.maxPayloadBytes} bytes`;
          return terminal(facts, { type: 'deadLetter', reason: message }, ended(facts, 'failed', undefined, message), cancelBranch, cancelOutcome);
        }
        const nextStep = facts.stepNumber + 1;
        const named = outcome.next;
        const options: EnqueueOptions = {
          id: facts.nextJobId,
          headers: stepHeaders(facts.userHeaders, facts.runId, nextStep, named && { workflow: facts.workflow, step: named.step }),
          priority: facts.priority,
          maxAttempts: named?.maxAttempts ?? facts.maxAttempts,
          dedupKey: stepDedupKey(facts.runId, nextStep),
        };
        // A delay, not a time: the store measures it on its own clock, which every host sharing it agrees on.
        if (outcome.kind === 'continueAfter' && outcome.delayMs > 0) options.delayMs = outcome.delayMs;
        return {
          settlement: {
            action: ACK,
            effects: {
              enqueue: [{ queue: facts.queueName, payload: outcome.payload, options }],
              kvWrites: [{ key: facts.keys.cursor, value: cursorValue(facts.nextJobId, nextStep) }],
            },
            ifCancelRequested: cancelBranch,
            precondition: cursorPrecondition(facts.keys, facts.jobId, facts.stepNumber),
          },
          primaryOutcome: undefined,
          cancelOutcome,
          next: { jobId: facts.nextJobId, stepNumber: nextStep },
        };
      }
      case 'succeed':
        return terminal(facts, ACK, ended(facts, 'succeeded', outcome.result), cancelBranch, cancelOutcome);
      case 'fail':
        return terminal(facts, ACK, ended(facts, 'failed', undefined, outcome.reason), cancelBranch, cancelOutcome);
      case 'cancel': {
        // A runner-issued cancel wins over an external one: same branch either way.
        const own = ended(facts, 'cancelled', undefined, outcome.reason);
        const branch: SettlementBranch = { action: ACK, effects: endRunEffects(facts, own, 'primary') };
        return {
          settlement: { ...branch, ifCancelRequested: branch, precondition: cursorPrecondition(facts.keys, facts.jobId, facts.stepNumber) },
          primaryOutcome: own,
          cancelOutcome: own,
        };
      }
    }
  }

  const failure = describeFailure(result.error);
  if (failure.permanent) {
    return terminal(facts, { type: 'deadLetter', reason: failure.message }, ended(facts, 'failed', undefined, failure.message), cancelBranch, cancelOutcome);
  }
  if (facts.attempts >= facts.maxAttempts) {
    // Last attempt: this nack dead-letters, and the run ends with it.
    return terminal(facts, { type: 'nack', error: failure.message }, ended(facts, 'failed', undefined, failure.message), cancelBranch, cancelOutcome);
  }
  const nack: SettleAction =
    facts.retryDelayMs === undefined ? { type: 'nack', error: failure.message } : { type: 'nack', error: failure.message, delayMs: facts.retryDelayMs };
  return {
    settlement: {
      action: nack,
      ifCancelRequested: cancelBranch,
      precondition: cursorPrecondition(facts.keys, facts.jobId, facts.stepNumber),
    },
    primaryOutcome: undefined,
    cancelOutcome,
  };
}

/**
 * Effects that end a run, `how` (see `EndedReceipt`): both run records
 * deleted and, with durable hook delivery, the outcome enqueued as a
 * notification job in the same commit; with in-process delivery, the ended
 * receipt written instead (it expires on its own).
 */
export function endRunEffects(
  facts: { keys: RunKeys; outcomeQueue?: string | undefined; jobId: string; claimToken: string },
  outcome: RunOutcome,
  how: EndedReceipt['how'],
): Effects {
  const effects: Effects = { kvDeletes: [facts.keys.identity, facts.keys.cursor] };
  if (facts.outcomeQueue !== undefined) {
    effects.enqueue = [{ queue: facts.outcomeQueue, payload: encodeOutcome(outcome), options: { dedupKey: outcomeDedupKey(facts.jobId) } }];
  } else {
    effects.kvWrites = [{ key: facts.keys.ended, value: encodeReceipt({ jobId: facts.jobId, delivery: facts.claimToken, how }), ttlMs: ENDED_RECEIPT_TTL_MS }];
  }
  return effects;
}
