/**
 * Both conformance suites on SqliteStore, each store on a fresh temp file
 * (deleted when the suite destroys it). The store-level suite also runs
 * with `groupCommit: false`, so both write paths are held to the contract.
 */
import { rmSync } from 'node:fs';
import { describeQueueStoreConformance, describeWorkflowConformance } from '../../conformance/index.js';
import type { StoreContext } from '../../conformance/index.js';
import type { QueueStore } from '../../core/queue-store.js';
import { SqliteStore } from '../../adapters/sqlite/index.js';
import { tempDbPath } from './helpers.js';

function createStore(extra: { groupCommit?: boolean } = {}): (ctx: StoreContext) => SqliteStore {
  return (ctx) => new SqliteStore({ path: tempDbPath('conformance'), ...extra, ...ctx });
}

async function destroyStore(store: QueueStore): Promise<void> {
  await store.close();
  const path = (store as SqliteStore).path;
  for (const file of [path, `${path}-wal`, `${path}-shm`]) rmSync(file, { force: true });
}

describeQueueStoreConformance({ name: 'sqlite', createStore: createStore(), destroyStore });
describeQueueStoreConformance({ name: 'sqlite (groupCommit: false)', createStore: createStore({ groupCommit: false }), destroyStore });
describeWorkflowConformance({ name: 'sqlite', createStore: createStore(), destroyStore });
describeWorkflowConformance({ name: 'sqlite (groupCommit: false)', createStore: createStore({ groupCommit: false }), destroyStore });
