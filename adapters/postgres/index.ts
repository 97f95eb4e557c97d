/** `taquba-workflow/postgres`: the PostgreSQL store. */
export { PostgresStore } from './postgres-store.js';
export type { PostgresStoreOptions } from './postgres-store.js';
export type { PgPoolLike, PgPoolClientLike, PgQueryConfig, PgQueryResult, PgNotification } from './postgres-pool.js';
export { SCHEMA_VERSION } from './postgres-migrations.js';
