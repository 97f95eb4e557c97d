/** PostgreSQL store for the benchmark harness: a fresh schema, dropped on close. */
import pg from 'pg';
import { PostgresStore } from '../adapters/postgres/index.js';
import type { BenchStore } from './stores.js';

export const benchDatabaseUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

export async function openPostgresBenchStore(): Promise<BenchStore> {
  const schema = `bench_${process.pid}_${Date.now()}`;
  const store = await PostgresStore.open({ connectionString: benchDatabaseUrl, schema });
  return {
    store,
    label: `postgres (${benchDatabaseUrl.replace(/\/\/[^@]*@/, '//')}, schema ${schema})`,
    close: async () => {
      await store.close();
      const client = new pg.Client({ connectionString: benchDatabaseUrl });
      await client.connect();
      await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await client.end();
    },
  };
}
