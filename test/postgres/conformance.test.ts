/**
 * Both conformance suites against the real server. Every store gets a fresh
 * random schema on a shared pool, dropped when the suite destroys it. The
 * cross-instance checks open several PostgresStore on one fresh schema, as
 * several processes would; LISTEN/NOTIFY carries notifications between them.
 */
import pg from 'pg';
import { afterAll, describe, it } from 'vitest';
import { describeQueueStoreConformance, describeWorkflowConformance } from '../../conformance/index.js';
import type { ConformanceOptions, StoreContext } from '../../conformance/index.js';
import { PostgresStore } from '../../adapters/postgres/index.js';
import { PG_URL, dropSchema, freshSchemaName, postgresAvailable } from './helpers.js';

const available = await postgresAvailable();
const pool = new pg.Pool({ connectionString: PG_URL, max: 12 });
pool.on('error', () => undefined);
afterAll(() => pool.end());

async function createStore(ctx: StoreContext): Promise<PostgresStore> {
  return PostgresStore.open({ pool, schema: freshSchemaName('tq_conf'), ...ctx });
}

async function destroyStore(store: PostgresStore): Promise<void> {
  await store.close();
  await dropSchema(store.schema);
}

async function createStores(n: number, ctx: StoreContext): Promise<PostgresStore[]> {
  const schema = freshSchemaName('tq_conf_shared');
  const stores: PostgresStore[] = [];
  for (let i = 0; i < n; i++) stores.push(await PostgresStore.open({ pool, schema, ...ctx }));
  return stores;
}

async function destroyStores(stores: PostgresStore[]): Promise<void> {
  for (const store of stores) await store.close();
  if (stores[0]) await dropSchema(stores[0].schema);
}

const options: ConformanceOptions<PostgresStore> = {
  name: 'postgres',
  createStore,
  destroyStore,
  createStores,
  destroyStores,
  crossProcessNotifications: true,
};

if (available) {
  describeQueueStoreConformance(options);
  describeWorkflowConformance({ name: 'postgres', createStore, destroyStore });
} else {
  describe('postgres conformance', () => {
    it.skip('needs PostgreSQL at 127.0.0.1:5432 (set CI to make its absence fail)', () => undefined);
  });
}
