/**
 * `taquba-workflow`: what an application uses (the runtime, outcomes and
 * errors, clocks, queue settings, the store contract's types). What only a
 * store adapter needs (argument checks, queue config resolution, ids,
 * headers, records, carried effects, `BaseQueueStore`) is in
 * `taquba-workflow/store-kit`.
 */
export { WorkflowRuntime, DEFAULT_LIMITS, SettlementUncertainError } from './runtime.js';
export type { RunSpec, StartSpec, SubmitResult, RunState, RunStatus, RuntimeLimits, WorkflowRuntimeOptions, RuntimeEvents } from './runtime.js';
export { defineWorkflow, WorkflowDefinitionError } from './workflow/define.js';
export type {
  Workflow,
  WorkflowDefinition,
  RunContext,
  StepContext,
  StepDefinition,
  StepFunction,
  StepRetry,
  CancelHandler,
  WorkflowStepResult,
} from './workflow/define.js';
export { json, bytes, CodecError } from './workflow/codec.js';
export type { Codec } from './workflow/codec.js';
export { StepOutcome, StepError, noopHook, describeFailure, toRunnerResult, checkDueTime } from './outcomes.js';
export { DEFAULT_HOOK_RETRY, HEADER_HOOK_ATTEMPT, hookRetryDelayMs } from './hook-retry.js';
export type { HookRetryPolicy } from './hook-retry.js';
export type { Step, StepRunner, RunOutcome, TerminalHook, TerminalStatus, RunnerResult, NextStep } from './outcomes.js';
export {
  decideSettlement,
  endRunEffects,
  reaperTemplate,
  cursorPrecondition,
  stepDedupKey,
  stepHeaders,
  HEADER_RUN_ID,
  HEADER_STEP,
  RESERVED_HEADER_PREFIX,
} from './settlement.js';
export type { StepFacts, SettlementDecision } from './settlement.js';
export { runKeys, encodeRecord, decodeRecord, sha256Hex, encodeOutcome, decodeOutcome, decodeNotification, outcomeDedupKey } from './run-records.js';
export type { RunIdentity, RunCursor } from './run-records.js';
export { SystemClock, ManualClock, sleep, HOUSEKEEPING, DEFAULT_MAX_TIMERS_PER_INSTANT } from './clock.js';
export type { Clock, TimerOptions, ManualClockOptions } from './clock.js';
export * from './errors.js';
export { Priority, DEFAULT_QUEUE_CONFIG, DEFAULT_PROMOTE_INTERVAL_MS, DEFAULT_REAPER_INTERVAL_MS } from './queue-config.js';
export type { QueueConfig, StoreOptions } from './queue-config.js';
export { KV_VALUE_MAX_BYTES } from './queue-store.js';
export type * from './queue-store.js';
