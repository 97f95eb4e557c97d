/**
 * The store-level suite without vitest: `checkQueueStore` runs every group
 * and rejects naming each failed check. The describe functions are thin
 * vitest wrappers over the same groups.
 */
import { runChecks } from './checks.js';
import type { ConformanceGroup } from './checks.js';
import type { ConformanceOptions } from './options.js';
import { storeConcurrencyChecks } from './store-concurrency.js';
import { crossInstanceChecks } from './store-cross-instance.js';
import { checkStoreModel } from './store-model.js';
import { crossInstanceNotificationChecks, storeNotificationChecks } from './store-notifications.js';
import { storeBadInputChecks, storeOperationChecks } from './store-operations.js';

/** Model-based properties (random command sequences compared with the reference model). */
export function storeModelChecks(): ConformanceGroup {
  return {
    name: 'store model properties',
    checks: [
      {
        name: 'random command sequences agree with the reference model (every result, record, counter, dead page, kv value)',
        run: (options) => checkStoreModel(options),
      },
    ],
  };
}

/**
 * Every store-level group, in the order the suite runs them. The
 * cross-instance groups depend on what `options` offers (`createStores`,
 * `crossProcessNotifications`): without it their checks are listed as skipped.
 */
export function queueStoreGroups(options: Pick<ConformanceOptions, 'createStores' | 'crossProcessNotifications'> = {}): ConformanceGroup[] {
  return [
    storeOperationChecks(),
    storeBadInputChecks(),
    storeModelChecks(),
    storeConcurrencyChecks(),
    storeNotificationChecks(),
    crossInstanceNotificationChecks(options),
    crossInstanceChecks(options),
  ];
}

/** Runs the whole store-level suite; rejects with an `AggregateError` naming every failed check. */
export async function checkQueueStore(options: ConformanceOptions): Promise<{ passed: string[]; skipped: string[] }> {
  return runChecks(queueStoreGroups(options), options);
}
