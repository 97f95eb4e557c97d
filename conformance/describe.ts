/**
 * vitest front-ends of the suite. Each group is also exported on its own, so
 * an adapter author can rerun only the failing area (keyv style).
 */
import { relative } from 'node:path';
import { describe, it } from 'vitest';
import type { QueueStore } from '../core/queue-store.js';
import type { ConformanceGroup } from './checks.js';
import { conformanceRuns } from './options.js';
import type { ConformanceOptions } from './options.js';
import { storeConcurrencyChecks } from './store-concurrency.js';
import { crossInstanceChecks } from './store-cross-instance.js';
import { crossInstanceNotificationChecks, storeNotificationChecks } from './store-notifications.js';
import { storeBadInputChecks, storeOperationChecks } from './store-operations.js';
import { queueStoreGroups, storeModelChecks } from './store-suite.js';
import { workflowGroups, workflowPropertyChecks } from './workflow-suite.js';

/** Generous per-test timeout: property runs scale with `numRuns` (deep mode runs for minutes). */
function timeoutFor(options: ConformanceOptions): number {
  const runs = options.numRuns ?? conformanceRuns().numRuns;
  return Math.max(120_000, runs * 4_000);
}

function declareGroup(options: ConformanceOptions, group: ConformanceGroup): void {
  describe(group.name, () => {
    for (const check of group.checks) {
      if (check.skip) it.skip(`${check.name} (skipped: ${check.skip})`, () => undefined);
      else {
        it(
          check.name,
          (context) => check.run({ ...options, reportAs: { testFile: relative(process.cwd(), context.task.file.filepath), testName: check.name } }),
          timeoutFor(options),
        );
      }
    }
  });
}

function declare<S extends QueueStore>(title: string, typed: ConformanceOptions<S>, groups: ConformanceGroup[]): void {
  // Checks only hand `destroyStore` stores made by `createStore`, so widening S to QueueStore is safe.
  const options = typed as unknown as ConformanceOptions;
  describe(`${title}: ${options.name}`, () => {
    for (const group of groups) declareGroup(options, group);
  });
}

/** The whole store-level suite (the QueueStore contract and its invariants). */
export function describeQueueStoreConformance<S extends QueueStore>(options: ConformanceOptions<S>): void {
  declare('QueueStore conformance', options, queueStoreGroups(options));
}

/** Every operation in every job state (example-based, trait style). */
export function describeStoreOperations<S extends QueueStore>(options: ConformanceOptions<S>): void {
  declare('QueueStore operations', options, [storeOperationChecks()]);
}

/** Random command sequences compared with the reference model. */
export function describeStoreModelProperties<S extends QueueStore>(options: ConformanceOptions<S>): void {
  declare('QueueStore model properties', options, [storeModelChecks()]);
}

/** Concurrent calls interleaved by fast-check's scheduler. */
export function describeStoreConcurrency<S extends QueueStore>(options: ConformanceOptions<S>): void {
  declare('QueueStore concurrency', options, [storeConcurrencyChecks()]);
}

/** Bad input: typed errors, nothing changed. */
export function describeStoreBadInput<S extends QueueStore>(options: ConformanceOptions<S>): void {
  declare('QueueStore bad input', options, [storeBadInputChecks()]);
}

/** Which operation must notify what: in-process, and across instances for stores that declare it. */
export function describeStoreNotifications<S extends QueueStore>(options: ConformanceOptions<S>): void {
  declare('QueueStore notifications', options, [storeNotificationChecks(), crossInstanceNotificationChecks(options)]);
}

/** Several instances over one backing store (needs `createStores`; skipped with the reason otherwise). */
export function describeStoreCrossInstance<S extends QueueStore>(options: ConformanceOptions<S>): void {
  declare('QueueStore cross-instance', options, [crossInstanceChecks(options)]);
}

/**
 * Any groups under one title, e.g. `queueStoreGroups(options)` passed through
 * `skipChecks` while an adapter does not implement a rule yet: those checks
 * show as skipped, with the reason, instead of failing.
 */
export function describeConformanceGroups<S extends QueueStore>(title: string, options: ConformanceOptions<S>, groups: ConformanceGroup[]): void {
  declare(title, options, groups);
}

/** The whole workflow-level suite (runs, steps, cancels, hooks) on the store under test. */
export function describeWorkflowConformance<S extends QueueStore>(options: ConformanceOptions<S>): void {
  declare('Workflow conformance', options, workflowGroups());
}

/** Random workflows with cancels, restarts, shared stores, faults and zombies. */
export function describeWorkflowProperties<S extends QueueStore>(options: ConformanceOptions<S>): void {
  declare('Workflow properties', options, [workflowPropertyChecks()]);
}
