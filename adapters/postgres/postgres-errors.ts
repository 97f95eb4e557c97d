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
 * Maps an error to a typed one. Our own SQLSTATEs become their permanent
 * errors; a duplicate primary key is a caller's id in use; everything else
 * (connection loss, terminated backend, deadlock, serialization failure,
 * server restart) is transient and keeps the driver error as `cause`.
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
    case '22021': // invalid byte sequence (a NUL in text): bad input, not a transient failure
    case '22P05':
      return new InvalidArgumentError(operation, `PostgreSQL cannot store this value: ${e.message}`);
    default:
      break;
  }
  return new StoreUnavailableError(`PostgreSQL ${operation} failed: ${e.message}`, { cause: error });
}
