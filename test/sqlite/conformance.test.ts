/**
 * Both conformance suites on SqliteStore, each store on a fresh temp file
 * (deleted when the suite destroys it). The store-level suite also runs
 * with `groupCommit: false`, so both write paths are held to the contract.
 * The cross-instance checks open several SqliteStore on one file, as several
 * processes would; they learn of each other's commits through the change
 * poll, so SQLite declares cross-process notifications.
 */
import { rmSync } from 'node:fs';
import { describeQueueStoreConformance, describeWorkflowConformance } from '../../conformance/index.js';
import type { ConformanceOptions, StoreContext } from '../../conformance/index.js';
import type { QueueStore } from '../../core/queue-store.js';
import { SqliteStore } from '../../adapters/sqlite/index.js';
import { tempDbPath } from './helpers.js';

type Extra = { groupCommit?: boolean };

function createStore(extra: Extra = {}): (ctx: StoreContext) => SqliteStore {
  return (ctx) => new SqliteStore({ path: tempDbPath('conformance'), ...extra, ...ctx });
}

function removeFiles(path: string): void {
  for (const file of [path, `${path}-wal`, `${path}-shm`]) rmSync(file, { force: true });
}

async function destroyStore(store: QueueStore): Promise<void> {
  await store.close();
  if (!(store instanceof SqliteStore)) throw new TypeError('expected the SqliteStore createStore made');
  removeFiles(store.path);
}

/** Several instances on one fresh file; a short change poll keeps the suite's bounded waits short. */
function createStores(extra: Extra = {}): (n: number, ctx: StoreContext) => SqliteStore[] {
  return (n, ctx) => {
    const path = tempDbPath('conformance-shared');
    return Array.from({ length: n }, () => new SqliteStore({ path, changePollIntervalMs: 20, ...extra, ...ctx }));
  };
}

async function destroyStores(stores: QueueStore[]): Promise<void> {
  for (const store of stores) await store.close();
  const first = stores[0] as SqliteStore | undefined;
  if (first) removeFiles(first.path);
}

function storeOptions(name: string, extra: Extra = {}): ConformanceOptions {
  return { name, createStore: createStore(extra), destroyStore, createStores: createStores(extra), destroyStores, crossProcessNotifications: true };
}

describeQueueStoreConformance(storeOptions('sqlite'));
describeQueueStoreConformance(storeOptions('sqlite (groupCommit: false)', { groupCommit: false }));
describeWorkflowConformance({ name: 'sqlite', createStore: createStore(), destroyStore });
describeWorkflowConformance({ name: 'sqlite (groupCommit: false)', createStore: createStore({ groupCommit: false }), destroyStore });
