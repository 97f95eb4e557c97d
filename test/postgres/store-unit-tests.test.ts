/** The shared example-based store unit tests, on PostgreSQL: each store in a fresh schema, dropped afterwards. */
import pg from 'pg';
import { afterAll, afterEach, describe, it } from 'vitest';
import { PostgresStore } from '../../adapters/postgres/index.js';
import { describeStoreUnitTests } from '../support/store-unit-tests.js';
import { PG_URL, dropSchema, freshSchemaName, postgresAvailable } from './helpers.js';

const available = await postgresAvailable();
const pool = new pg.Pool({ connectionString: PG_URL, max: 6 });
pool.on('error', () => undefined);
const opened: PostgresStore[] = [];

afterEach(async () => {
  for (const store of opened.splice(0)) {
    await store.close();
    await dropSchema(store.schema);
  }
});
afterAll(() => pool.end());

if (available) {
  describeStoreUnitTests('PostgresStore', (options) => {
    const store = new PostgresStore({ pool, schema: freshSchemaName('tq_unit'), ...options });
    opened.push(store);
    return store;
  });
} else {
  describe('PostgresStore unit tests', () => {
    it.skip('needs PostgreSQL at 127.0.0.1:5432 (set CI to make its absence fail)', () => undefined);
  });
}
