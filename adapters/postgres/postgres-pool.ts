/**
 * The subset of `pg` the store needs, typed structurally (as kysely does), so
 * users pass their own `pg.Pool` (or a compatible pool) and the store never
 * depends on one driver version's classes.
 */

/** One query, optionally named (a named query is prepared once per connection). */
export interface PgQueryConfig {
  text: string;
  values?: unknown[];
  name?: string;
}

export interface PgQueryResult<R = Record<string, unknown>> {
  rows: R[];
  rowCount: number | null;
}

/** A notification delivered to a LISTENing connection. */
export interface PgNotification {
  channel: string;
  payload?: string | undefined;
}

/** A connection checked out of the pool (used only for LISTEN). */
export interface PgPoolClientLike {
  query(config: PgQueryConfig | string): Promise<PgQueryResult>;
  release(error?: Error | boolean): void;
  on(event: 'notification', listener: (message: PgNotification) => void): unknown;
  on(event: 'error', listener: (error: Error) => void): unknown;
  on(event: 'end', listener: () => void): unknown;
  removeAllListeners(event?: string): unknown;
}

/** The pool: `pg.Pool` satisfies it. */
export interface PgPoolLike {
  query(config: PgQueryConfig): Promise<PgQueryResult>;
  connect(): Promise<PgPoolClientLike>;
  end(): Promise<void>;
  on(event: 'error', listener: (error: Error) => void): unknown;
}

/** Schema names are spliced into SQL (quoted), so only plain identifiers are accepted. */
export const SCHEMA_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}
