/**
 * Schema of the SQLite store, its migrations, and the check made when a
 * file is opened.
 *
 * Every table is prefixed `taquba_` so the store can live in a file that
 * also holds an application's own tables. `taquba_schema` records the
 * version of the layout; an older file is migrated in place when opened,
 * and a newer one (or one whose `taquba_` tables were not made by us) is
 * refused rather than misread.
 */
import type BetterSqlite3 from 'better-sqlite3';
import { IncompatibleSchemaError } from '../../core/errors.js';
import { JOB_COLUMNS } from './sqlite-rows.js';

/**
 * The jobs table. Status is text; its CHECK is a chain of `=` tests
 * because SQLite evaluates `IN (list)` in a CHECK by building a temporary
 * index for every row written, which cost a tenth of a step transition.
 */
const JOBS_TABLE = (name: string): string => `
CREATE TABLE ${name} (
  id TEXT NOT NULL PRIMARY KEY,
  queue TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status = 'pending' OR status = 'scheduled' OR status = 'claimed' OR status = 'done' OR status = 'dead'),
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
) WITHOUT ROWID;`;

/**
 * Partial indexes keep each hot lookup an index seek that only covers the
 * rows of one status: claim order, due scheduled jobs, expired leases,
 * remote cancels, dead pages, retention sweeps, and dedup uniqueness.
 */
const JOBS_INDEXES = `
CREATE INDEX taquba_jobs_claim ON taquba_jobs (queue, priority, id) WHERE status = 'pending';
CREATE INDEX taquba_jobs_due ON taquba_jobs (run_at) WHERE status = 'scheduled';
CREATE INDEX taquba_jobs_lease ON taquba_jobs (lease_expires_at) WHERE status = 'claimed';
CREATE INDEX taquba_jobs_cancel ON taquba_jobs (id) WHERE status = 'claimed' AND cancel_requested = 1;
CREATE INDEX taquba_jobs_dead ON taquba_jobs (queue, id) WHERE status = 'dead';
CREATE INDEX taquba_jobs_dead_age ON taquba_jobs (queue, failed_at) WHERE status = 'dead';
CREATE INDEX taquba_jobs_done_age ON taquba_jobs (queue, completed_at) WHERE status = 'done';
CREATE UNIQUE INDEX taquba_jobs_dedup ON taquba_jobs (queue, dedup_key) WHERE dedup_key IS NOT NULL;`;

/**
 * Jobs that `cancel` removed while pending or scheduled, kept a while so a
 * `waitForCompletion` in another connection that finds the job gone can tell
 * a removal (`notFound`) from an ack (`completed`). `enqueued_at` tells the
 * removed job from a later one that reused its id. Swept by the reaper.
 */
const REMOVED_TABLE = `
CREATE TABLE taquba_removed (
  id TEXT NOT NULL PRIMARY KEY,
  enqueued_at INTEGER NOT NULL,
  removed_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX taquba_removed_age ON taquba_removed (removed_at);`;

/**
 * The reaper template of each queue that has one (`setReaperTemplate`), as
 * `encodeReaperTemplate` text. Kept in the file, not in the store, so every
 * connection reaps with the template last set by any of them.
 */
const REAPER_TEMPLATES_TABLE = `
CREATE TABLE taquba_reaper_templates (
  queue TEXT NOT NULL PRIMARY KEY,
  template TEXT NOT NULL
) WITHOUT ROWID;`;

/**
 * When a kv record expires (`KvWrite.ttlMs`): `expires_at`, on the store's
 * clock, NULL for a permanent record. A record with `expires_at <= now` is
 * gone for every read (each kv statement filters on it with the
 * transaction's `now`) until the reaper deletes it; the partial index holds
 * only expiring records, so the sweep is an index seek that finds nothing
 * when none is due, and writing a permanent record leaves the index alone.
 */
const KV_EXPIRY = `
ALTER TABLE taquba_kv ADD COLUMN expires_at INTEGER;
CREATE INDEX taquba_kv_expiry ON taquba_kv (expires_at) WHERE expires_at IS NOT NULL;`;

/**
 * The layout of version 2, which a new file is created with before the
 * migrations after it run. The counters of `taquba_queues` are updated by the
 * store in the same transaction as every job change (one row update per
 * queue touched, applied at the end of the transaction); `done` counts acks.
 */
const SCHEMA = `
CREATE TABLE taquba_schema (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  version INTEGER NOT NULL,
  created_at INTEGER NOT NULL
);
${JOBS_TABLE('taquba_jobs')}
${JOBS_INDEXES}

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
 * `MIGRATIONS[v]` brings a file from version `v + 1` to `v + 2`; each runs
 * inside the transaction that records the new version. A new file is made
 * with the version 2 layout above and migrated forward like any other.
 * - 1 → 2: the status CHECK as `=` tests (see `JOBS_TABLE`). SQLite cannot
 *   alter a CHECK, so the jobs table is rebuilt with its rows and indexes
 *   (the columns of both versions are those of a full record, `JOB_COLUMNS`).
 * - 2 → 3: the record of removed jobs (see `REMOVED_TABLE`).
 * - 3 → 4: `reaper_dead_letter`, the effects a job carries for the
 *   reaper's dead-letter of it (text from `encodeReaperBranch`, or NULL).
 * - 4 → 5: the reaper templates of queues (see `REAPER_TEMPLATES_TABLE`),
 *   and the expiry of kv records (see `KV_EXPIRY`; the records already
 *   there stay permanent).
 */
const MIGRATIONS: ReadonlyArray<(db: BetterSqlite3.Database) => void> = [
  (db) =>
    db.exec(`
      ${JOBS_TABLE('taquba_jobs_v2')}
      INSERT INTO taquba_jobs_v2 (${JOB_COLUMNS}) SELECT ${JOB_COLUMNS} FROM taquba_jobs;
      DROP TABLE taquba_jobs;
      ALTER TABLE taquba_jobs_v2 RENAME TO taquba_jobs;
      ${JOBS_INDEXES}`),
  (db) => db.exec(REMOVED_TABLE),
  (db) => db.exec('ALTER TABLE taquba_jobs ADD COLUMN reaper_dead_letter TEXT'),
  (db) => db.exec(`${REAPER_TEMPLATES_TABLE}${KV_EXPIRY}`),
];

/** The version `SCHEMA` creates; migrations then bring a new file to `SCHEMA_VERSION`. */
const CREATED_VERSION = 2;

/** Version of the layout above: the number of migrations plus one. */
export const SCHEMA_VERSION = MIGRATIONS.length + 1;

/**
 * Creates the schema in an empty file, migrates an older one in place, or
 * checks the version of a current one. The check of a current file is a
 * plain read (no write lock, so it never waits behind another process's
 * write); creation and migration run in one immediate transaction each, so
 * two processes opening a file at once cannot both create or migrate it,
 * and a failed migration leaves the file as it was. Throws
 * `IncompatibleSchemaError` naming the file for a newer or unknown version,
 * and writes nothing then.
 */
export function ensureSchema(db: BetterSqlite3.Database, file: string, now: number): void {
  const hasTable = (name: string): boolean => db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(name) !== undefined;
  /** The file's version: 0 when it has no schema yet. */
  const version = (): number => {
    if (hasTable('taquba_schema')) {
      const row = db.prepare('SELECT version FROM taquba_schema WHERE id = 1').get() as { version: number } | undefined;
      if (row !== undefined && Number.isInteger(row.version) && row.version >= 1 && row.version <= SCHEMA_VERSION) return row.version;
      throw new IncompatibleSchemaError(
        `${file}: schema version ${row === undefined ? 'unknown' : String(row.version)} cannot be used by this version of taquba-workflow (it knows versions 1 to ${SCHEMA_VERSION}); ` +
          'open it with the version that created it, or use a new file',
      );
    }
    if (hasTable('taquba_jobs') || hasTable('taquba_kv') || hasTable('taquba_queues') || hasTable('taquba_removed') || hasTable('taquba_reaper_templates')) {
      throw new IncompatibleSchemaError(`${file}: has taquba_ tables without a schema version; it was not made by taquba-workflow's SQLite store`);
    }
    return 0;
  };
  if (version() === SCHEMA_VERSION) return;
  const createOrMigrate = db.transaction(() => {
    const found = version(); // another process may have created or migrated it meanwhile
    let from = found;
    if (found === 0) {
      db.exec(SCHEMA);
      db.prepare('INSERT INTO taquba_schema (id, version, created_at) VALUES (1, ?, ?)').run(CREATED_VERSION, now);
      from = CREATED_VERSION;
    }
    for (; from < SCHEMA_VERSION; from++) (MIGRATIONS[from - 1] as (db: BetterSqlite3.Database) => void)(db);
    db.prepare('UPDATE taquba_schema SET version = ? WHERE id = 1').run(SCHEMA_VERSION);
  });
  // Legacy renames leave an application's views and triggers on our tables alone; the
  // modern ones re-check every view mid-rebuild and fail on one that reads the dropped table.
  db.pragma('legacy_alter_table = ON');
  try {
    createOrMigrate.immediate();
  } finally {
    db.pragma('legacy_alter_table = OFF');
  }
}
