/**
 * `taquba-workflow/sqlite`: the durable embedded store on better-sqlite3 12
 * (a peer dependency). See docs/sqlite.md.
 */
export { SqliteStore } from './sqlite-store.js';
export type { SqliteStoreOptions, SqliteSynchronous } from './sqlite-open.js';
export { SCHEMA_VERSION } from './sqlite-schema.js';
