/** Store factories for the benchmarks, by name. Adapters load lazily so one missing driver does not stop the others. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { QueueStore } from '../core/index.js';
import { MemoryStore } from '../adapters/memory/index.js';

export interface BenchStore {
  store: QueueStore;
  label: string;
  close: () => Promise<void>;
}

export const storeNames = ['memory', 'sqlite', 'postgres'] as const;

/** SQLite synchronous level for benchmarks (env BENCH_SQLITE_SYNC, default NORMAL). */
export const sqliteSynchronous = (process.env.BENCH_SQLITE_SYNC ?? 'NORMAL').toUpperCase() as 'OFF' | 'NORMAL' | 'FULL' | 'EXTRA';

export async function openBenchStore(name: string): Promise<BenchStore> {
  switch (name) {
    case 'memory': {
      const store = new MemoryStore();
      return { store, label: 'memory', close: () => store.close() };
    }
    case 'sqlite': {
      const { SqliteStore } = await import('../adapters/sqlite/index.js');
      const dir = mkdtempSync(join(tmpdir(), 'taquba-bench-'));
      const store = new SqliteStore({ path: join(dir, 'bench.db'), synchronous: sqliteSynchronous });
      return {
        store,
        label: `sqlite (temp file, WAL, synchronous=${sqliteSynchronous})`,
        close: async () => {
          await store.close();
          rmSync(dir, { recursive: true, force: true });
        },
      };
    }
    case 'postgres': {
      const { openPostgresBenchStore } = await import('./postgres-bench-store.js');
      return openPostgresBenchStore();
    }
    default:
      throw new Error(`unknown store "${name}"; choose one of: ${storeNames.join(', ')}`);
  }
}
