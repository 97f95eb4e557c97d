/**
 * One place that maps driver and server errors to the library's typed errors,
 * so every operation raises the same codes (SQLSTATEs `TQ0xx` are raised by
 * the store's own SQL functions, see postgres-migrations.ts).
 */
import {
  InvalidArgumentError,
  InvalidStateError,
  JobNotFoundError,
  LeaseLostError,
  StoreOpenError,
  StoreRejectedError,
  StoreUnavailableError,
  WorkflowError,
} from '../../core/errors.js';

/** Codes raised by the store's SQL functions. */
export const SQLSTATE = {
  leaseLost: 'TQ001',
  kvConflict: 'TQ003',
  jobNotFound: 'TQ004',
  invalidState: 'TQ005',
} as const;

interface PgErrorShape {
  code?: string;
  message?: string;
  constraint?: string;
  detail?: string;
}

/** The parts of a server error the store reacts to, from a thrown driver error or a batch item's error record. */
export interface ServerError {
  code: string | undefined;
  message: string;
  constraint: string | undefined;
}

export function serverError(error: unknown): ServerError {
  const e = (error ?? {}) as PgErrorShape;
  return { code: typeof e.code === 'string' ? e.code : undefined, message: String(e.message ?? error), constraint: e.constraint ?? undefined };
}

/**
 * SQLSTATE classes (besides data exceptions, class 22) that say "these
 * values, this statement, never": integrity constraint violation, syntax
 * error or access rule violation (a missing privilege), program limit
 * exceeded. Retrying cannot help.
 */
const PERMANENT_CLASSES = new Set(['23', '42', '54']);

/**
 * Maps an error to a typed one. Our own SQLSTATEs become their permanent
 * errors; a duplicate primary key is a caller's id in use; a data exception
 * is a bad value (`INVALID_ARGUMENT`); the other permanent classes above are
 * `STORE_REJECTED`; everything else (connection loss, terminated backend,
 * deadlock, serialization failure, server restart) is transient. Both keep
 * the driver error as `cause`.
 */
export function mapError(error: unknown, operation: string): Error {
  if (error instanceof WorkflowError) return error;
  const e = serverError(error);
  switch (e.code) {
    case SQLSTATE.leaseLost:
      return new LeaseLostError(e.message);
    case SQLSTATE.jobNotFound:
      return new JobNotFoundError(e.message);
    case SQLSTATE.invalidState: {
      const parsed = JSON.parse(e.message) as { id: string; status: string };
      return new InvalidStateError(parsed.id, parsed.status, 'requeue');
    }
    case '23505':
      if (e.constraint === 'jobs_pkey') {
        const id = /\(id\)=\((.*)\)/.exec((error as PgErrorShape).detail ?? '')?.[1] ?? '';
        return new InvalidArgumentError('id', `job id ${id ? `"${id}" ` : ''}is already in use`);
      }
      break;
    default:
      break;
  }
  // A data exception (class 22: a NUL in text, a number out of range): bad input, not a transient failure.
  if (e.code?.startsWith('22')) return new InvalidArgumentError(operation, `PostgreSQL cannot store this value: ${e.message}`);
  if (e.code !== undefined && PERMANENT_CLASSES.has(e.code.slice(0, 2))) {
    return new StoreRejectedError(`PostgreSQL refused ${operation}: ${e.message}`, { cause: error });
  }
  return new StoreUnavailableError(`PostgreSQL ${operation} failed: ${e.message}`, { cause: error });
}

/**
 * SQLSTATEs that make an open fail for good: a missing privilege, an
 * unknown database, an unknown role or refused credentials (class 28), a
 * reserved or invalid schema name. A supervisor should stop, not retry.
 */
const OPEN_FAILED = new Set(['42501', '3D000', '42939', '3F000', '42P07']);

/** `mapError` for `open`: the refusals above become `STORE_OPEN_FAILED`; unreachable stays transient. */
export function mapOpenError(error: unknown): Error {
  if (error instanceof WorkflowError) return error;
  const e = serverError(error);
  if (e.code !== undefined && (OPEN_FAILED.has(e.code) || e.code.startsWith('28'))) {
    return new StoreOpenError(`PostgreSQL refused to open the store: ${e.message}`, { cause: error });
  }
  return mapError(error, 'open');
}
