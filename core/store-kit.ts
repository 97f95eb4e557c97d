/**
 * `taquba-workflow/store-kit`: what a store adapter builds on. Extend
 * `BaseQueueStore` and implement its protected primitives; the helpers
 * below are the ones the bundled stores use, so a third-party store raises
 * the same errors, orders ids the same way and hands out the same records.
 * The contract itself is `QueueStore` (core/queue-store.ts); see
 * docs/writing-an-adapter.md.
 */
export { BaseQueueStore, DEFAULT_DEAD_PAGE } from './base-store.js';
export type { BatchItem, CompletionState } from './base-store.js';
export {
  bytesEqual,
  checkEffects,
  checkEnqueueOptions,
  checkHeaders,
  checkJobId,
  checkKvKey,
  checkKvWrites,
  checkNonNegativeInt,
  checkPayload,
  checkPositiveInt,
  checkPrecondition,
  checkQueueName,
  checkSettlement,
  isValidKvKey,
  checkTimeoutMs,
  checkNewJobIds,
  jobIdInUse,
} from './store-validation.js';
export { QueueConfigs, resolveQueueConfig, retryDelayMs, nackDelayMs, enqueueDueAt } from './queue-config.js';
export type { QueueConfig, StoreOptions } from './queue-config.js';
export { STALE_BRANCH, copyEffects, copyReaperBranch, reaperEffects, encodeReaperBranch, decodeReaperBranch } from './carried-effects.js';
export {
  checkReaperTemplate,
  copyReaperTemplate,
  decodeReaperTemplate,
  encodeReaperTemplate,
  instantiateReaperTemplate,
  reaperBranchOf,
  renderJobText,
} from './reaper-template.js';
export { copyBytes } from './bytes.js';
export { compareIds, newId } from './ids.js';
export { jobRecord } from './job-record.js';
export type { JobFields } from './job-record.js';
export { copyHeaders, createHeaders, headerBytes, parseHeadersJson } from './headers.js';
export { CompletionWaiters, LocalNotifications } from './local-notifications.js';
export { HOUSEKEEPING } from './clock.js';
