// Copies the PostgreSQL migrations (adapters/postgres/sql/*.sql) next to the compiled store in dist,
// where the store reads them at run time (relative to its own module's URL).
import { cpSync } from 'node:fs';

cpSync(new URL('../adapters/postgres/sql', import.meta.url), new URL('../dist/adapters/postgres/sql', import.meta.url), { recursive: true });
