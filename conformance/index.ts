/**
 * `taquba-workflow/conformance`: the executable form of the `QueueStore`
 * contract. A store adapter runs it in its own tests:
 *
 *   describeQueueStoreConformance({ name: 'my-store', createStore: (ctx) => new MyStore(ctx) });
 *   describeWorkflowConformance({ name: 'my-store', createStore: (ctx) => new MyStore(ctx) });
 *
 * vitest and fast-check are peer dependencies. The `check*` functions run the
 * same checks without vitest and reject on the first failing group.
 * See docs/writing-an-adapter.md.
 */
export {
  describeQueueStoreConformance,
  describeWorkflowConformance,
  describeStoreOperations,
  describeStoreModelProperties,
  describeStoreConcurrency,
  describeStoreBadInput,
  describeWorkflowProperties,
  describeStoreNotifications,
  describeStoreCrossInstance,
  describeConformanceGroups,
} from './describe.js';
export type { StoreContext, ConformanceOptions, ConformanceRuns, RunParameters } from './options.js';
export { conformanceRuns, QUICK_RUNS, DEFAULT_STORE_CALL_TIMEOUT_MS } from './options.js';
export { QueueModel, ModelStore, modelRetryDelay } from './model/index.js';
export type { ModelState, ModelStoreOptions } from './model/index.js';
export { runChecks, skipChecks } from './checks.js';
export type { ConformanceCheck, ConformanceGroup } from './checks.js';
export { ConformanceError } from './compare.js';
export { checkQueueStore, queueStoreGroups, storeModelChecks } from './store-suite.js';
export { checkStoreModel, CONFIG_PROFILES } from './store-model.js';
export type { ConfigProfile } from './store-model.js';
export { checkStoreConcurrency, storeConcurrencyChecks } from './store-concurrency.js';
export { storeOperationChecks, storeBadInputChecks, JOB_TRAITS } from './store-operations.js';
export type { JobTrait, JobInState } from './store-operations.js';
export { checkWorkflow, checkWorkflowProperties, workflowGroups, workflowPropertyChecks } from './workflow-suite.js';
export { workflowDefinitionChecks } from './workflow-definitions.js';
export { FaultInjectingStore } from './fault-injection.js';
export { storeNotificationChecks, crossInstanceNotificationChecks, NOTIFICATION_RULES } from './store-notifications.js';
export type { NotificationRule } from './store-notifications.js';
export { crossInstanceChecks, checkStoreModelAcrossInstances } from './store-cross-instance.js';
