/** Temp files and store tracking for the SQLite tests. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach } from 'vitest';
import { SqliteStore } from '../../adapters/sqlite/index.js';
import type { SqliteStoreOptions } from '../../adapters/sqlite/index.js';

const root = mkdtempSync(join(tmpdir(), 'taquba-sqlite-test-'));
let counter = 0;
const open = new Set<SqliteStore>();

/** A fresh path for a database file in this test file's temp directory. */
export function tempDbPath(name = 'store'): string {
  return join(root, `${name}-${process.pid}-${++counter}.db`);
}

/** Opens a store (on a fresh temp file unless `path` is given); closed after each test. */
export function openStore(options: Partial<SqliteStoreOptions> = {}): SqliteStore {
  const store = new SqliteStore({ path: tempDbPath(), ...options });
  open.add(store);
  return store;
}

afterEach(async () => {
  for (const store of open) await store.close().catch(() => undefined);
  open.clear();
});

afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});
