/** Maps better-sqlite3 failures to the library's typed errors, in one place. */
import { StoreOpenError, StoreUnavailableError, WorkflowError } from '../../core/errors.js';

/** SQLite result codes (primary part) that may succeed on retry. */
const TRANSIENT_CODES = new Set(['SQLITE_BUSY', 'SQLITE_LOCKED', 'SQLITE_IOERR', 'SQLITE_FULL', 'SQLITE_PROTOCOL', 'SQLITE_CANTOPEN', 'SQLITE_INTERRUPT']);

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

/**
 * Wraps a driver error raised by an operation: busy/locked past the busy
 * timeout, I/O errors and a full disk become `StoreUnavailableError`
 * (transient, driver error as `cause`); library errors pass through.
 */
export function mapOperationError(error: unknown, file: string, operation: string): unknown {
  if (error instanceof WorkflowError) return error;
  const code = sqliteCode(error);
  if (code !== undefined && TRANSIENT_CODES.has(code)) {
    const detail = error instanceof Error ? error.message : String(error);
    return new StoreUnavailableError(`${file}: ${operation} failed (${code}: ${detail}); it may succeed on retry`, { cause: error });
  }
  return error;
}

/** Wraps a failure to open or initialise the file. Busy/locked stays transient. */
export function mapOpenError(error: unknown, file: string): WorkflowError {
  if (error instanceof WorkflowError) return error;
  const code = sqliteCode(error);
  const detail = error instanceof Error ? error.message : String(error);
  if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED') {
    return new StoreUnavailableError(`${file}: the database is locked by another connection (${code}: ${detail}); it may succeed on retry`, { cause: error });
  }
  const hint = code === 'SQLITE_NOTADB' ? 'the file is not a SQLite database' : code === 'SQLITE_READONLY' ? 'the file is read-only' : 'cannot open or initialise the file';
  return new StoreOpenError(`${file}: ${hint} (${code ?? (error as Error)?.name ?? 'error'}: ${detail})`, { cause: error });
}
