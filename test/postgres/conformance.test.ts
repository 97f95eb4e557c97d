/**
 * Both conformance suites against the real server. Every store gets a fresh
 * random schema on a shared pool, dropped when the suite destroys it.
 */
import pg from 'pg';
import { afterAll, describe, it } from 'vitest';
import { describeQueueStoreConformance, describeWorkflowConformance } from '../../conformance/index.js';
import type { StoreContext } from '../../conformance/index.js';
import { PostgresStore } from '../../adapters/postgres/index.js';
import { PG_URL, dropSchema, freshSchemaName, postgresAvailable } from './helpers.js';

const available = await postgresAvailable();
const pool = new pg.Pool({ connectionString: PG_URL, max: 8 });
pool.on('error', () => undefined);
afterAll(() => pool.end());

async function createStore(ctx: StoreContext): Promise<PostgresStore> {
  return PostgresStore.open({ pool, schema: freshSchemaName('tq_conf'), ...ctx });
}

async function destroyStore(store: PostgresStore): Promise<void> {
  await store.close();
  await dropSchema(store.schema);
}

if (available) {
  describeQueueStoreConformance({ name: 'postgres', createStore, destroyStore });
  describeWorkflowConformance({ name: 'postgres', createStore, destroyStore });
} else {
  describe('postgres conformance', () => {
    it.skip('needs PostgreSQL at 127.0.0.1:5432 (set CI to make its absence fail)', () => undefined);
  });
}
