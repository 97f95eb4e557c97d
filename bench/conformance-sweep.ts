/**
 * Sweeps the workflow property "every hazard combined" over many seeds on a
 * correct store, to measure false alarms: a correct store must pass every
 * seed. A seed here is one deep run of that property (500 runs scaled as the
 * suite scales workflow properties: 200 scenarios).
 *
 *   npx tsx bench/conformance-sweep.ts --store memory|model|sqlite [--from 1] [--seeds 200] [--runs 500] [--mode all]
 *
 * Prints progress every 10 seeds and, at the end, the failing seeds with
 * the first line of their report (replay one with TAQUBA_CONFORMANCE_SEED
 * on the store's conformance test file).
 */
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryStore } from '../adapters/memory/index.js';
import { SqliteStore } from '../adapters/sqlite/index.js';
import { ModelStore } from '../conformance/model/index.js';
import type { ConformanceOptions, StoreContext } from '../conformance/options.js';
import { checkWorkflowProperties } from '../conformance/workflow-suite.js';
import type { QueueStore } from '../core/queue-store.js';

function argument(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? fallback) : fallback;
}

function positive(name: string, fallback: number): number {
  const value = Number(argument(name, String(fallback)));
  if (!Number.isSafeInteger(value)) throw new TypeError(`--${name} must be an integer`);
  return value;
}

const storeKind = argument('store', 'memory');
const from = positive('from', 1);
const seeds = positive('seeds', 200);
const numRuns = positive('runs', 500);
const mode = argument('mode', 'all') as 'plain' | 'faults' | 'zombie' | 'all';
if (!['plain', 'faults', 'zombie', 'all'].includes(mode)) throw new TypeError(`--mode must be plain, faults, zombie or all`);

let fileSeq = 0;
function storeOptions(): Pick<ConformanceOptions, 'createStore' | 'destroyStore'> {
  switch (storeKind) {
    case 'memory':
      return { createStore: (ctx: StoreContext) => new MemoryStore(ctx) };
    case 'model':
      return { createStore: (ctx: StoreContext) => new ModelStore(ctx) };
    case 'sqlite':
      return {
        createStore: (ctx: StoreContext) => new SqliteStore({ path: join(tmpdir(), `tq-sweep-${process.pid}-${fileSeq++}.db`), ...ctx }),
        destroyStore: async (store: QueueStore) => {
          await store.close();
          if (!(store instanceof SqliteStore)) throw new TypeError('expected the SqliteStore this sweep created');
          const path = store.path;
          for (const file of [path, `${path}-wal`, `${path}-shm`]) rmSync(file, { force: true });
        },
      };
    default:
      throw new TypeError(`--store must be memory, model or sqlite, got ${storeKind}`);
  }
}

const failures: Array<{ seed: number; message: string }> = [];
const startedAt = Date.now();
for (let seed = from; seed < from + seeds; seed++) {
  const options: ConformanceOptions = { name: storeKind, ...storeOptions(), numRuns, seed };
  try {
    await checkWorkflowProperties(options, mode);
  } catch (error) {
    failures.push({ seed, message: (error instanceof Error ? error.message : String(error)).split('\n')[0] ?? '' });
  }
  const done = seed - from + 1;
  if (done % 10 === 0 || done === seeds) {
    console.log(`${storeKind}: ${done}/${seeds} seeds, ${failures.length} failed, ${((Date.now() - startedAt) / 1000).toFixed(1)} s`);
  }
}
console.log(
  `${storeKind} "${mode}": seeds ${from}..${from + seeds - 1} at ${numRuns} runs (x0.4 scenarios each): ${failures.length} failed in ${((Date.now() - startedAt) / 1000).toFixed(1)} s`,
);
for (const f of failures) console.log(`  seed ${f.seed}: ${f.message}`);
process.exitCode = failures.length > 0 ? 1 : 0;
