/**
 * Numbered schema migrations, applied on open under a transaction-scoped
 * advisory lock so that any number of processes may open the same schema at
 * once. A database whose schema is newer than the newest migration known
 * here is refused with `IncompatibleSchemaError` rather than used.
 *
 * The migrations are the files sql/000001.sql, sql/000002.sql, ... next to
 * this module (the build copies them into dist). Each operation with more
 * than one statement is a PL/pgSQL function there, so it commits in a single
 * round trip and its decisions (which settlement branch, dedup hits, lease
 * ownership) are taken inside the transaction from locked rows. `{{S}}` is
 * the quoted schema, `{{CHANNEL}}` the NOTIFY channel literal.
 */
import { readFileSync } from 'node:fs';
import { IncompatibleSchemaError, StoreOpenError } from '../../core/errors.js';
import type { PgPoolLike } from './postgres-pool.js';
import { quoteIdent } from './postgres-pool.js';

/** How long a removed job's tombstone is kept: a cross-process waiter polling less often than this sees `completed`. */
export const REMOVED_RETENTION_MS = 3_600_000;

/** Migration files in order; index + 1 is the version. Never edit a released one: append. */
export const MIGRATION_FILES: readonly string[] = ['000001.sql', '000002.sql', '000003.sql', '000004.sql', '000005.sql', '000006.sql'];

/** The migrations' SQL, read once at load from the files next to this module. */
export const MIGRATIONS: readonly string[] = MIGRATION_FILES.map((file) => readFileSync(new URL(`./sql/${file}`, import.meta.url), 'utf8'));

/** The schema version this code writes and understands. */
export const SCHEMA_VERSION = MIGRATION_FILES.length;

export function render(sql: string, schema: string, channel: string): string {
  return sql
    .replaceAll('{{S}}', quoteIdent(schema))
    .replaceAll('{{CHANNEL}}', `'${channel.replace(/'/g, "''")}'`)
    .replaceAll('{{REMOVED_RETENTION_MS}}', String(REMOVED_RETENTION_MS));
}

/** Advisory lock key of one schema's migrations (any 64-bit value; derived from the name). */
function lockKey(schema: string): string {
  let hash = 0n;
  for (const char of `taquba-workflow:${schema}`) hash = (hash * 131n + BigInt(char.codePointAt(0) as number)) & 0x7fffffffffffffffn;
  return hash.toString();
}

/** The tables migration 1 creates: a schema holding one of them but no `schema_migrations` is not ours. */
const OWN_TABLES = ['jobs', 'kv', 'counters', 'wakeups', 'removed_jobs'];

function checkVersion(schema: string, current: number): void {
  if (current > SCHEMA_VERSION) {
    throw new IncompatibleSchemaError(
      `schema "${schema}" is at version ${current}, newer than this taquba-workflow (knows up to ${SCHEMA_VERSION}); upgrade the package or use another schema`,
    );
  }
}

/**
 * Brings `schema` to `SCHEMA_VERSION`. A schema already there is only read
 * (no DDL, no lock), so a role with no CREATE privilege opens a schema its
 * owner migrated. Otherwise concurrent callers serialise on an advisory lock;
 * the first applies the migrations, the others find them done.
 */
export async function migrate(pool: PgPoolLike, schema: string, channel: string): Promise<void> {
  // PostgreSQL reserves these names for its own schemas (pg_catalog, pg_toast, ...).
  if (schema.startsWith('pg_')) throw new StoreOpenError(`schema "${schema}" is reserved by PostgreSQL (names starting with pg_); choose another schema`);
  const S = quoteIdent(schema);
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    const present = await client.query({ text: `SELECT to_regclass($1) IS NOT NULL AS present`, values: [`${S}.schema_migrations`] });
    if ((present.rows[0] as { present: boolean }).present) {
      const result = await client.query(`SELECT coalesce(max(version), 0) AS version FROM ${S}.schema_migrations`);
      const current = Number((result.rows[0] as { version: number | string }).version);
      checkVersion(schema, current);
      if (current === SCHEMA_VERSION) return;
    }
    await client.query('BEGIN');
    try {
      await client.query({ text: 'SELECT pg_advisory_xact_lock($1::bigint)', values: [lockKey(schema)] });
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${S}`);
      await client.query(`CREATE TABLE IF NOT EXISTS ${S}.schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`);
      const result = await client.query(`SELECT coalesce(max(version), 0) AS version FROM ${S}.schema_migrations`);
      const current = Number((result.rows[0] as { version: number | string }).version);
      checkVersion(schema, current);
      if (current === 0) {
        const taken = await client.query({
          text: `SELECT t FROM unnest($1::text[]) t WHERE to_regclass(format('%I.%I', $2::text, t)) IS NOT NULL`,
          values: [OWN_TABLES, schema],
        });
        if (taken.rows.length > 0) {
          const names = (taken.rows as Array<{ t: string }>).map((row) => row.t).join(', ');
          throw new StoreOpenError(`schema "${schema}" already holds tables taquba-workflow did not create (${names}); use a schema of its own`);
        }
      }
      for (let version = current + 1; version <= SCHEMA_VERSION; version++) {
        await client.query(render(MIGRATIONS[version - 1] as string, schema, channel));
        await client.query({ text: `INSERT INTO ${S}.schema_migrations (version) VALUES ($1)`, values: [version] });
      }
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK').catch((rollbackError: unknown) => {
        broken = rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError));
      });
      throw error;
    }
  } finally {
    client.release(broken ?? false);
  }
}
