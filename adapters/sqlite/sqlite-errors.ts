/** Maps better-sqlite3 failures to the library's typed errors, in one place. */
import { StoreCorruptedError, StoreOpenError, StoreUnavailableError, WorkflowError } from '../../core/errors.js';

/** SQLite result codes (primary part) that may succeed on retry. */
const TRANSIENT_CODES = new Set(['SQLITE_BUSY', 'SQLITE_LOCKED', 'SQLITE_IOERR', 'SQLITE_FULL', 'SQLITE_PROTOCOL', 'SQLITE_CANTOPEN', 'SQLITE_INTERRUPT']);

/**
 * SQLite result codes (primary part) saying the file is damaged: a page that
 * does not parse, or a header that is no longer a database's. Retrying reads
 * the same bytes again.
 */
const CORRUPT_CODES = new Set(['SQLITE_CORRUPT', 'SQLITE_NOTADB']);

/** Primary code of a better-sqlite3 error (`SQLITE_BUSY_SNAPSHOT` → `SQLITE_BUSY`), if it is one. */
export function sqliteCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== 'string' || !code.startsWith('SQLITE_')) return undefined;
  const second = code.indexOf('_', 'SQLITE_'.length);
  return second === -1 ? code : code.slice(0, second);
}

/** A driver error (not one of ours) that may succeed on retry: busy, locked, I/O, disk full. */
export function isTransientSqliteError(error: unknown): boolean {
  if (error instanceof WorkflowError) return false;
  const code = sqliteCode(error);
  return code !== undefined && TRANSIENT_CODES.has(code);
}

/** A driver error saying the file is damaged (see `CORRUPT_CODES`). */
export function isCorruptSqliteError(error: unknown): boolean {
  const code = sqliteCode(error);
  return code !== undefined && CORRUPT_CODES.has(code);
}

/**
 * A driver error after which the transaction in progress cannot go on: a
 * transient failure may have ended it, and a corrupt page fails whatever
 * runs next. A group-commit batch gives up whole on one.
 */
export function endsBatch(error: unknown): boolean {
  return isTransientSqliteError(error) || isCorruptSqliteError(error);
}

/** The typed error for a damaged file, naming it. */
export function corruptedError(file: string, error: unknown): StoreCorruptedError {
  const detail = error instanceof Error ? error.message : String(error);
  return new StoreCorruptedError(
    `${file}: the database file is corrupted (${sqliteCode(error) ?? 'error'}: ${detail}); retrying cannot help: restore it from a backup, or check it with PRAGMA integrity_check`,
    { cause: error },
  );
}

/**
 * Wraps a driver error raised by an operation: busy/locked past the busy
 * timeout, I/O errors and a full disk become `StoreUnavailableError`
 * (transient, driver error as `cause`); a damaged file becomes
 * `StoreCorruptedError` (permanent); library errors pass through.
 */
export function mapOperationError(error: unknown, file: string, operation: string): unknown {
  if (error instanceof WorkflowError) return error;
  const code = sqliteCode(error);
  if (code !== undefined && TRANSIENT_CODES.has(code)) {
    const detail = error instanceof Error ? error.message : String(error);
    return new StoreUnavailableError(`${file}: ${operation} failed (${code}: ${detail}); it may succeed on retry`, { cause: error });
  }
  if (code !== undefined && CORRUPT_CODES.has(code)) return corruptedError(file, error);
  return error;
}

/**
 * Wraps a failure to open or initialise the file. Busy/locked stays
 * transient; a file that is not a database at all is `StoreOpenError`, one
 * whose pages are damaged `StoreCorruptedError`.
 */
export function mapOpenError(error: unknown, file: string): WorkflowError {
  if (error instanceof WorkflowError) return error;
  const code = sqliteCode(error);
  if (code === 'SQLITE_CORRUPT') return corruptedError(file, error);
  const detail = error instanceof Error ? error.message : String(error);
  if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED') {
    return new StoreUnavailableError(`${file}: the database is locked by another connection (${code}: ${detail}); it may succeed on retry`, { cause: error });
  }
  const hint =
    code === 'SQLITE_NOTADB'
      ? 'the file is not a SQLite database'
      : code === 'SQLITE_READONLY'
        ? 'the file is read-only'
        : 'cannot open or initialise the file';
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- a caught value may be anything
  return new StoreOpenError(`${file}: ${hint} (${code ?? (error as Error)?.name ?? 'error'}: ${detail})`, { cause: error });
}
