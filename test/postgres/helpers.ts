/** Shared helpers of the PostgreSQL tests: server detection, fresh schemas, admin queries. */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { MIGRATIONS, render } from '../../adapters/postgres/postgres-migrations.js';

export const PG_URL = process.env.TAQUBA_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/**
 * Whether the server answers. Without it the tests skip with a message, except
 * in CI (env `CI` set), where a missing server is a failure.
 */
export async function postgresAvailable(): Promise<boolean> {
  const client = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 2_000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch (error) {
    if (process.env.CI) throw new Error(`PostgreSQL is required in CI (${PG_URL}): ${String(error)}`, { cause: error });
    console.warn(`skipping PostgreSQL tests: no server at ${PG_URL} (${String(error)})`);
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** A random, unused schema name. */
export function freshSchemaName(prefix = 'tq_test'): string {
  return `${prefix}_${randomBytes(6).toString('hex')}`;
}

/** Runs one admin query on a short-lived connection. */
export async function admin<R = Record<string, unknown>>(text: string, values: unknown[] = []): Promise<R[]> {
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  try {
    return (await client.query(text, values)).rows as R[];
  } finally {
    await client.end();
  }
}

export async function dropSchema(schema: string): Promise<void> {
  await admin(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
}

/** Terminates every backend that has run a query mentioning `needle` (the test's schema), except our own. */
export async function terminateBackends(filter: string): Promise<number> {
  const rows = await admin<{ ok: boolean }>(
    `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND datname = current_database() AND (${filter})`,
  );
  return rows.filter((r) => r.ok).length;
}

/**
 * Creates `schema` as the code of `version` left it: its migrations applied
 * the way `migrate` applies them, in one transaction. The schema joins
 * `created`, for the caller's clean-up.
 */
export async function schemaAtVersion(schema: string, created: Set<string>, version: number): Promise<void> {
  created.add(schema);
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  try {
    await client.query('BEGIN');
    await client.query(`CREATE SCHEMA "${schema}"`);
    await client.query(`CREATE TABLE "${schema}".schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`);
    for (let v = 1; v <= version; v++) {
      await client.query(render(MIGRATIONS[v - 1] as string, schema, `taquba_${schema}`));
      await client.query(`INSERT INTO "${schema}".schema_migrations (version) VALUES ($1)`, [v]);
    }
    await client.query('COMMIT');
  } finally {
    await client.end();
  }
}
