// Copies the PostgreSQL migrations (adapters/postgres/sql/*.sql) next to the compiled store in dist,
// where the store reads them at run time (relative to its own module's URL).
import { cpSync } from 'node:fs';
import { URL, fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
cpSync(`${root}adapters/postgres/sql`, `${root}dist/adapters/postgres/sql`, { recursive: true });
