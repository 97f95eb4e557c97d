/**
 * The options of the SQLite store, and opening its file: the connection's
 * pragmas, the schema check (and migration), and the prepared statements.
 */
import Database from 'better-sqlite3';
import type BetterSqlite3 from 'better-sqlite3';
import { InvalidArgumentError } from '../../core/errors.js';
import type { StoreOptions } from '../../core/queue-config.js';
import { checkPositiveInt, describe } from '../../core/store-validation.js';
import { mapOpenError } from './sqlite-errors.js';
import { ensureSchema } from './sqlite-schema.js';
import { prepareStatements } from './sqlite-statements.js';
import type { Statements } from './sqlite-statements.js';

/** SQLite `synchronous` levels. See docs/sqlite.md for what each survives. */
export type SqliteSynchronous = 'OFF' | 'NORMAL' | 'FULL' | 'EXTRA';

/** Options of `SqliteStore`: the common `StoreOptions` plus the file and its durability. */
export interface SqliteStoreOptions extends StoreOptions {
  /** Database file (created if missing; its directory must exist), or `':memory:'`. */
  path: string;
  /**
   * Durability of a commit. Default `NORMAL`: in WAL mode a committed
   * operation survives the process being killed, but the last commits may
   * be lost on power loss or an OS crash. `FULL`/`EXTRA` also survive those
   * (an fsync per commit); `OFF` survives neither reliably.
   */
  synchronous?: SqliteSynchronous;
  /** How long an operation waits for another connection's write lock before `StoreUnavailableError`. Default 5 000. */
  busyTimeoutMs?: number;
  /**
   * How often the store checks for commits made by other connections (other
   * processes or other stores on the same file), to wake waiting workers,
   * deliver remote cancels and finish `waitForCompletion`. Runs only while
   * someone subscribes or waits. Default 100.
   */
  changePollIntervalMs?: number;
  /**
   * Group commit (default true): write operations called in the same
   * event-loop turn share one transaction, each in its own savepoint, so
   * concurrent settlements cost one commit instead of one each. Every
   * operation stays atomic and its promise settles after the commit; a
   * failed commit fails them all with nothing applied. `false`: one
   * transaction per operation.
   */
  groupCommit?: boolean;
  /**
   * WAL pages after which a commit checkpoints the WAL into the database
   * file (SQLite's `wal_autocheckpoint`). Each checkpoint syncs both files,
   * so a larger value means fewer syncs and faster writes, and a larger
   * `-wal` file (about 4 KiB per page). Default 10 000 (about 40 MiB).
   */
  walAutocheckpointPages?: number;
}

const SYNC_LEVELS: readonly SqliteSynchronous[] = ['OFF', 'NORMAL', 'FULL', 'EXTRA'];
const DEFAULT_BUSY_TIMEOUT_MS = 5_000;
const DEFAULT_CHANGE_POLL_MS = 100;
const DEFAULT_WAL_AUTOCHECKPOINT_PAGES = 10_000;

/** The SQLite-specific options, checked, with their defaults. */
export type SqliteSettings = Required<
  Pick<SqliteStoreOptions, 'path' | 'synchronous' | 'busyTimeoutMs' | 'changePollIntervalMs' | 'groupCommit' | 'walAutocheckpointPages'>
>;

/** The options object itself, checked before the base store reads it. */
export function checkOptionsObject(options: SqliteStoreOptions): SqliteStoreOptions {
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- untyped callers reach this through the public API
  if (!options || typeof options !== 'object') throw new InvalidArgumentError('options', `expected an object, got ${describe(options)}`);
  return options;
}

export function sqliteSettings(options: SqliteStoreOptions): SqliteSettings {
  if (typeof options.path !== 'string' || options.path.length === 0) {
    throw new InvalidArgumentError('path', `expected a file path or ':memory:', got ${describe(options.path)}`);
  }
  const synchronous = options.synchronous ?? 'NORMAL';
  if (!SYNC_LEVELS.includes(synchronous))
    throw new InvalidArgumentError('synchronous', `expected one of ${SYNC_LEVELS.join(', ')}, got ${describe(synchronous)}`);
  const busyTimeoutMs = options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS;
  const walAutocheckpointPages = options.walAutocheckpointPages ?? DEFAULT_WAL_AUTOCHECKPOINT_PAGES;
  checkPositiveInt('walAutocheckpointPages', walAutocheckpointPages);
  checkPositiveInt('busyTimeoutMs', busyTimeoutMs);
  const changePollIntervalMs = options.changePollIntervalMs ?? DEFAULT_CHANGE_POLL_MS;
  checkPositiveInt('changePollIntervalMs', changePollIntervalMs);
  return { path: options.path, synchronous, busyTimeoutMs, changePollIntervalMs, groupCommit: options.groupCommit !== false, walAutocheckpointPages };
}

/** Opens (creating or migrating) the file; a failure closes it again and is mapped by `mapOpenError`. */
export function openDatabase(settings: SqliteSettings, now: number): { db: BetterSqlite3.Database; sql: Statements } {
  let db: BetterSqlite3.Database | undefined;
  try {
    db = new Database(settings.path, { timeout: settings.busyTimeoutMs });
    // journal_mode reads the header first: a file that is not a database fails here, untouched.
    db.pragma('journal_mode = WAL');
    db.pragma(`synchronous = ${settings.synchronous}`);
    db.pragma(`wal_autocheckpoint = ${settings.walAutocheckpointPages}`);
    db.pragma('foreign_keys = OFF');
    ensureSchema(db, settings.path, now);
    return { db, sql: prepareStatements(db) };
  } catch (error) {
    try {
      db?.close();
    } catch {
      // the open failure is the error worth reporting
    }
    throw mapOpenError(error, settings.path);
  }
}
