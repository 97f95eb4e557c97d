/**
 * Schema of the SQLite store and the check made when a file is opened.
 *
 * Every table is prefixed `taquba_` so the store can live in a file that
 * also holds an application's own tables. `taquba_schema` records the
 * version that created the file; a file of another version (or one whose
 * `taquba_` tables were not made by us) is refused rather than misread.
 */
import type BetterSqlite3 from 'better-sqlite3';
import { IncompatibleSchemaError } from '../../core/errors.js';

/** Version of the layout below. Bump it (and add a migration) on any change. */
export const SCHEMA_VERSION = 1;

/**
 * Version 1.
 * - Status is text. The counters of `taquba_queues` are updated by the store
 *   in the same transaction as every job change (one row update per queue
 *   touched, applied at the end of the transaction); `done` counts acks.
 * - Partial indexes keep each hot lookup an index seek that only covers the
 *   rows of one status: claim order, due scheduled jobs, expired leases,
 *   dead pages, retention sweeps, and dedup uniqueness.
 */
const SCHEMA_V1 = `
CREATE TABLE taquba_schema (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  version INTEGER NOT NULL,
  created_at INTEGER NOT NULL
);

CREATE TABLE taquba_jobs (
  id TEXT NOT NULL PRIMARY KEY,
  queue TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('pending', 'scheduled', 'claimed', 'done', 'dead')),
  payload BLOB NOT NULL,
  headers TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  max_attempts INTEGER NOT NULL,
  priority INTEGER NOT NULL,
  enqueued_at INTEGER NOT NULL,
  claimed_at INTEGER,
  lease_expires_at INTEGER,
  run_at INTEGER,
  last_error TEXT,
  dedup_key TEXT,
  completed_at INTEGER,
  failed_at INTEGER,
  cancel_requested INTEGER NOT NULL DEFAULT 0,
  claim_token TEXT
) WITHOUT ROWID;

CREATE INDEX taquba_jobs_claim ON taquba_jobs (queue, priority, id) WHERE status = 'pending';
CREATE INDEX taquba_jobs_due ON taquba_jobs (run_at) WHERE status = 'scheduled';
CREATE INDEX taquba_jobs_lease ON taquba_jobs (lease_expires_at) WHERE status = 'claimed';
CREATE INDEX taquba_jobs_cancel ON taquba_jobs (id) WHERE status = 'claimed' AND cancel_requested = 1;
CREATE INDEX taquba_jobs_dead ON taquba_jobs (queue, id) WHERE status = 'dead';
CREATE INDEX taquba_jobs_dead_age ON taquba_jobs (queue, failed_at) WHERE status = 'dead';
CREATE INDEX taquba_jobs_done_age ON taquba_jobs (queue, completed_at) WHERE status = 'done';
CREATE UNIQUE INDEX taquba_jobs_dedup ON taquba_jobs (queue, dedup_key) WHERE dedup_key IS NOT NULL;

CREATE TABLE taquba_queues (
  name TEXT NOT NULL PRIMARY KEY,
  pending INTEGER NOT NULL DEFAULT 0,
  claimed INTEGER NOT NULL DEFAULT 0,
  scheduled INTEGER NOT NULL DEFAULT 0,
  dead INTEGER NOT NULL DEFAULT 0,
  done INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE taquba_kv (
  key TEXT NOT NULL PRIMARY KEY,
  value BLOB NOT NULL
) WITHOUT ROWID;
`;

/**
 * Creates the schema in an empty file, or checks the version of an existing
 * one. The check of an existing file is a plain read (no write lock, so it
 * never waits behind another process's write); creation runs in one
 * immediate transaction, so two processes opening a new file at once cannot
 * both create it. Throws `IncompatibleSchemaError` naming the file on a
 * version mismatch; writes nothing in that case.
 */
export function ensureSchema(db: BetterSqlite3.Database, file: string, now: number): void {
  const hasTable = (name: string): boolean => db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(name) !== undefined;
  const check = (): boolean => {
    if (hasTable('taquba_schema')) {
      const row = db.prepare('SELECT version FROM taquba_schema WHERE id = 1').get() as { version: number } | undefined;
      if (row?.version === SCHEMA_VERSION) return true;
      throw new IncompatibleSchemaError(
        `${file}: schema version ${row === undefined ? 'unknown' : String(row.version)} cannot be used by this version of taquba-workflow (expects ${SCHEMA_VERSION}); ` +
          'open it with the version that created it, or use a new file',
      );
    }
    if (hasTable('taquba_jobs') || hasTable('taquba_kv') || hasTable('taquba_queues')) {
      throw new IncompatibleSchemaError(`${file}: has taquba_ tables without a schema version; it was not made by taquba-workflow's SQLite store`);
    }
    return false;
  };
  if (check()) return;
  db.transaction(() => {
    if (check()) return; // another process created it meanwhile
    db.exec(SCHEMA_V1);
    db.prepare('INSERT INTO taquba_schema (id, version, created_at) VALUES (1, ?, ?)').run(SCHEMA_VERSION, now);
  }).immediate();
}
