/**
 * SQLite reference figures for the step-transition benchmark, at one
 * `synchronous` level (WAL journal):
 * - the raw limit: bare better-sqlite3 single-row write transactions per second;
 * - plainjob's equivalent chain workload (dev-only comparison, when installed);
 * - SqliteStore claim + settle-with-next-enqueue chains without the runtime
 *   (claims of 1 or 16 jobs; the 16 settled concurrently, with and without
 *   group commit).
 *
 * Runnable on its own: `npx tsx bench/sqlite-baselines.ts [--sync NORMAL] [--runs 1000] [--steps 10]`.
 * The functions are exported for `bench/step-transitions.ts`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import type * as Plainjob from 'plainjob';
import { SqliteStore } from '../adapters/sqlite/index.js';
import type { ClaimRow } from '../adapters/sqlite/sqlite-rows.js';
import { prepareStatements } from '../adapters/sqlite/sqlite-statements.js';
import { newId } from '../core/ids.js';
import { runKeys } from '../core/run-records.js';
import type { SqliteSynchronous } from '../adapters/sqlite/index.js';

export interface BaselineResult {
  name: string;
  /** Operations (transactions or transitions) per second. */
  perSecond: number;
  operations: number;
  elapsedMs: number;
  /** Present when the measurement could not run. */
  skipped?: string;
  detail?: string;
}

/** A temp directory removed by `cleanup`. */
function tempDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'taquba-sqlite-bench-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * Raw limit: one `BEGIN IMMEDIATE; INSERT one row; COMMIT` after another on
 * a temp file, WAL journal, the given synchronous level.
 */
export function rawSqliteWriteTps(options: { synchronous?: SqliteSynchronous; transactions?: number; maxMs?: number } = {}): BaselineResult {
  const synchronous = options.synchronous ?? 'NORMAL';
  const maxTransactions = options.transactions ?? 50_000;
  // Time-bounded too: at FULL/EXTRA each commit is an fsync, and 50,000 of them take minutes.
  const maxMs = options.maxMs ?? 2_000;
  const { dir, cleanup } = tempDir();
  try {
    const db = new Database(join(dir, 'raw.db'));
    db.pragma('journal_mode = WAL');
    db.pragma(`synchronous = ${synchronous}`);
    db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, payload BLOB NOT NULL)');
    const insert = db.prepare('INSERT INTO t (payload) VALUES (?)');
    const tx = db.transaction((payload: Buffer) => insert.run(payload));
    const payload = Buffer.from('{"step":1}');
    for (let i = 0; i < 200; i++) tx.immediate(payload); // warm-up
    const start = performance.now();
    let transactions = 0;
    while (transactions < maxTransactions && (transactions % 100 !== 0 || performance.now() - start < maxMs)) {
      tx.immediate(payload);
      transactions++;
    }
    const elapsedMs = performance.now() - start;
    db.close();
    return { name: `raw better-sqlite3 write tx (WAL, ${synchronous})`, perSecond: (transactions / elapsedMs) * 1000, operations: transactions, elapsedMs };
  } finally {
    cleanup();
  }
}

/**
 * plainjob's chain workload: `runs` chains of `steps` jobs, each job's
 * processor enqueueing the next, one worker, WAL. plainjob itself sets
 * `synchronous = NORMAL`; another level is applied after it.
 */
export async function plainjobChainTps(options: { synchronous?: SqliteSynchronous; runs?: number; steps?: number } = {}): Promise<BaselineResult> {
  const synchronous = options.synchronous ?? 'NORMAL';
  const runs = options.runs ?? 1_000;
  const steps = options.steps ?? 10;
  const name = `plainjob chain (${runs} x ${steps}, WAL, ${synchronous})`;
  let plainjob: typeof Plainjob;
  try {
    plainjob = await import('plainjob');
  } catch (error) {
    return { name, perSecond: 0, operations: 0, elapsedMs: 0, skipped: `plainjob is not installed (${(error as Error).message})` };
  }
  const { dir, cleanup } = tempDir();
  try {
    const db = new Database(join(dir, 'plainjob.db'));
    const silent = { error: () => undefined, warn: () => undefined, info: () => undefined, debug: () => undefined };
    const queue = plainjob.defineQueue({ connection: plainjob.better(db), logger: silent });
    db.pragma(`synchronous = ${synchronous}`);
    const total = runs * steps;
    let completed = 0;
    let finished!: () => void;
    const allDone = new Promise<void>((resolve) => (finished = resolve));
    const worker = plainjob.defineWorker(
      'chain',
      (job) => {
        const { run, step } = JSON.parse(job.data) as { run: number; step: number };
        if (step + 1 < steps) queue.add('chain', { run, step: step + 1 });
      },
      {
        queue,
        logger: silent,
        pollIntervall: 1,
        onCompleted: () => {
          if (++completed === total) finished();
        },
      },
    );
    queue.addMany(
      'chain',
      Array.from({ length: runs }, (_, run) => ({ run, step: 0 })),
    );
    const start = performance.now();
    const running = worker.start();
    await allDone;
    const elapsedMs = performance.now() - start;
    await worker.stop();
    await running;
    queue.close();
    db.close();
    return { name, perSecond: (total / elapsedMs) * 1000, operations: total, elapsedMs };
  } finally {
    cleanup();
  }
}

/**
 * SqliteStore without the runtime: `runs` chains of `steps` jobs; a loop
 * claims up to `claimBatch` jobs, then settles each with ack + the next
 * step's enqueue (dedup key) + a cursor kv write, as the runtime's
 * settlement does. One transition = one committed settlement.
 */
export async function sqliteStoreChainTps(
  options: { synchronous?: SqliteSynchronous; runs?: number; steps?: number; claimBatch?: number; groupCommit?: boolean; walAutocheckpointPages?: number } = {},
): Promise<BaselineResult & { p50Ms: number; p99Ms: number }> {
  const synchronous = options.synchronous ?? 'NORMAL';
  const runs = options.runs ?? 1_000;
  const steps = options.steps ?? 10;
  const claimBatch = options.claimBatch ?? 16;
  const { dir, cleanup } = tempDir();
  const groupCommit = options.groupCommit ?? true;
  const store = new SqliteStore({
    path: join(dir, 'store.db'),
    synchronous,
    backgroundMaintenance: false,
    groupCommit,
    ...(options.walAutocheckpointPages === undefined ? {} : { walAutocheckpointPages: options.walAutocheckpointPages }),
  });
  try {
    const queue = 'chain';
    const encoder = new TextEncoder();
    await store.enqueueBatch(
      queue,
      Array.from({ length: runs }, (_, run) => ({
        payload: encoder.encode('{"step":0}'),
        options: { headers: { run: String(run), step: '0' }, dedupKey: `run:${run}:0` },
      })),
    );
    const latencies: number[] = [];
    let transitions = 0;
    const start = performance.now();
    for (;;) {
      const claims = await store.claim(queue, { limit: claimBatch });
      if (claims.length === 0) break;
      // Settle the claimed steps concurrently, as the runtime's in-flight steps do.
      await Promise.all(
        claims.map(async (claim) => {
          const t0 = performance.now();
          const run = claim.job.headers.run as string;
          const next = Number(claim.job.headers.step) + 1;
          await store.settle(claim, {
            action: { type: 'ack' },
            effects:
              next < steps
                ? {
                    enqueue: [
                      { queue, payload: encoder.encode(`{"step":${next}}`), options: { headers: { run, step: String(next) }, dedupKey: `run:${run}:${next}` } },
                    ],
                    kvWrites: [{ key: `cursor/${run}`, value: encoder.encode(`{"step":${next}}`) }],
                  }
                : { kvDeletes: [`cursor/${run}`] },
          });
          latencies.push(performance.now() - t0);
          transitions++;
        }),
      );
    }
    const elapsedMs = performance.now() - start;
    latencies.sort((a, b) => a - b);
    const at = (q: number): number => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
    return {
      name: `SqliteStore claim(${claimBatch})+settle chain (${runs} x ${steps}, WAL, ${synchronous}, group commit ${groupCommit ? 'on' : 'off'})`,
      perSecond: (transitions / elapsedMs) * 1000,
      operations: transitions,
      elapsedMs,
      p50Ms: at(0.5),
      p99Ms: at(0.99),
      detail: 'settle latency percentiles',
    };
  } finally {
    await store.close();
    cleanup();
  }
}

/**
 * The floor under SqliteStore: the statements one transition executes in
 * the store (claim as one of a batch, read the run cursor for the
 * settlement's precondition, delete-if-owned, insert the next step with its
 * dedup key and the reaper branch it carries, upsert the run cursor, one
 * counter update per transaction), run straight through better-sqlite3 with no runtime and no
 * store code around them, `batch` transitions per transaction as group
 * commit makes them. What SQLite itself costs per transition here.
 */
export function bareTransitionSqlTps(
  options: { synchronous?: SqliteSynchronous; runs?: number; steps?: number; batch?: number; split?: boolean } = {},
): BaselineResult & { splitUs?: Record<string, number> } {
  const synchronous = options.synchronous ?? 'NORMAL';
  const runs = options.runs ?? 1_000;
  const steps = options.steps ?? 10;
  const batch = options.batch ?? 16;
  const { dir, cleanup } = tempDir();
  try {
    const path = join(dir, 'bare.db');
    new SqliteStore({ path, synchronous, backgroundMaintenance: false }).close().catch(() => undefined); // creates the schema
    const db = new Database(path);
    db.pragma('journal_mode = WAL');
    db.pragma(`synchronous = ${synchronous}`);
    db.pragma('wal_autocheckpoint = 10000');
    const spentNs: Record<string, bigint> = {};
    const sql = options.split ? timedStatements(prepareStatements(db), spentNs) : prepareStatements(db);
    const payload = Buffer.from('{"step":0}');
    const keys = (run: number): { identity: string; cursor: string } => runKeys('chain', `r${run}`);
    const insert = (id: string, run: number, step: number): void => {
      sql.insertJob.run(
        id,
        'chain',
        'pending',
        payload,
        JSON.stringify({ 'workflow.run_id': `r${run}`, 'workflow.step': String(step) }),
        3,
        1000,
        Date.now(),
        null,
        `run:r${run}:${step}`,
        null, // step jobs carry nothing for their reaper: the queue's template serves them
      );
    };
    db.transaction(() => {
      sql.ensureQueue.run('chain');
      for (let run = 0; run < runs; run++) insert(newId(), run, 0);
    }).immediate();
    let transitions = 0;
    let token = 0;
    const start = performance.now();
    const step = db.transaction((): number => {
      const now = Date.now();
      const rows = sql.claim.all({ queue: 'chain', now, leaseExpiresAt: now + 30_000, token: `t${token++}`, limit: batch }) as ClaimRow[];
      for (const row of rows) {
        const headers = JSON.parse(row.headers) as Record<string, string>;
        const run = Number((headers['workflow.run_id'] as string).slice(1));
        const next = Number(headers['workflow.step']) + 1;
        sql.kvGet.get(keys(run).cursor, now);
        sql.deleteOwned.get(row.id, row.claim_token);
        if (next < steps) {
          const id = newId();
          insert(id, run, next);
          sql.kvUpsert.run(keys(run).cursor, Buffer.from(`{"jobId":"${id}","step":${next}}`), null);
        } else {
          sql.kvDelete.run(keys(run).cursor);
        }
      }
      sql.addCounts.run(0, 0, 0, 0, rows.length, 'chain');
      return rows.length;
    });
    let transactionNs = 0n;
    for (;;) {
      const t0 = options.split ? process.hrtime.bigint() : 0n;
      const claimed = step.immediate();
      if (options.split) transactionNs += process.hrtime.bigint() - t0;
      if (claimed === 0) break;
      transitions += claimed;
    }
    const elapsedMs = performance.now() - start;
    db.close();
    const result = {
      name: `bare transition SQL (${runs} x ${steps}, ${batch} per transaction, WAL, ${synchronous})`,
      perSecond: (transitions / elapsedMs) * 1000,
      operations: transitions,
      elapsedMs,
    };
    if (!options.split) return result;
    const perTransitionUs = (ns: bigint): number => Number(ns) / 1000 / transitions;
    const statementsNs = Object.values(spentNs).reduce((a, b) => a + b, 0n);
    const splitUs = Object.fromEntries(Object.entries(spentNs).map(([name, ns]) => [name, perTransitionUs(ns)]));
    // What the statements leave of each transaction: BEGIN, COMMIT (WAL writes, checkpoints) and the loop's own JS.
    splitUs['begin + commit + loop'] = perTransitionUs(transactionNs - statementsNs);
    return { ...result, splitUs };
  } finally {
    cleanup();
  }
}

/**
 * The transition statements with each call's time added to `spentNs` under
 * its name (claim, own-delete, next-insert, cursor, counters); the others as they are.
 */
function timedStatements(sql: ReturnType<typeof prepareStatements>, spentNs: Record<string, bigint>): ReturnType<typeof prepareStatements> {
  const parts = {
    claim: 'claim',
    deleteOwned: 'delete settled job',
    insertJob: 'insert next job',
    kvUpsert: 'cursor write',
    kvDelete: 'cursor write',
    addCounts: 'counters',
  } as const;
  const timed = { ...sql };
  for (const [statement, part] of Object.entries(parts) as Array<[keyof typeof parts, string]>) {
    const original = sql[statement];
    const wrap =
      (method: 'all' | 'get' | 'run') =>
      (...params: unknown[]): unknown => {
        const t0 = process.hrtime.bigint();
        try {
          return original[method](...params);
        } finally {
          spentNs[part] = (spentNs[part] ?? 0n) + (process.hrtime.bigint() - t0);
        }
      };
    timed[statement] = Object.assign(Object.create(original) as typeof original, { all: wrap('all'), get: wrap('get'), run: wrap('run') });
  }
  return timed;
}

function argValue(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i === -1 ? undefined : process.argv[i + 1];
}

async function main(): Promise<void> {
  const synchronous = (argValue('--sync') ?? 'NORMAL').toUpperCase() as SqliteSynchronous;
  const runs = Number(argValue('--runs') ?? 1_000);
  const steps = Number(argValue('--steps') ?? 10);
  const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');
  const raw = rawSqliteWriteTps({ synchronous });
  console.log(`${raw.name}: ${fmt(raw.perSecond)}/s (${raw.operations} in ${fmt(raw.elapsedMs)} ms)`);
  const bare = bareTransitionSqlTps({ synchronous, runs, steps });
  console.log(`${bare.name}: ${fmt(bare.perSecond)} transitions/s; ratio to raw ${(bare.perSecond / raw.perSecond).toFixed(2)}`);
  for (const batch of [16, 64]) {
    const split = bareTransitionSqlTps({ synchronous, runs, steps, batch, split: true });
    const parts = Object.entries(split.splitUs ?? {}).map(([part, us]) => `${part} ${us.toFixed(2)}`);
    console.log(`  where one transition's time goes, µs (${batch} per transaction, timed per call, so slower overall): ${parts.join(', ')}`);
  }
  const plain = await plainjobChainTps({ synchronous, runs, steps });
  if (plain.skipped) console.log(`${plain.name}: skipped: ${plain.skipped}`);
  else console.log(`${plain.name}: ${fmt(plain.perSecond)} transitions/s (${plain.operations} in ${fmt(plain.elapsedMs)} ms)`);
  for (const [claimBatch, groupCommit] of [
    [1, false],
    [16, false],
    [16, true],
  ] as const) {
    const store = await sqliteStoreChainTps({ synchronous, runs, steps, claimBatch, groupCommit });
    console.log(
      `${store.name}: ${fmt(store.perSecond)} transitions/s (${store.operations} in ${fmt(store.elapsedMs)} ms; settle p50 ${store.p50Ms.toFixed(3)} ms, p99 ${store.p99Ms.toFixed(3)} ms); ` +
        `ratio to raw ${(store.perSecond / raw.perSecond).toFixed(2)}` +
        (plain.skipped ? '' : `, to plainjob ${(store.perSecond / plain.perSecond).toFixed(2)}`),
    );
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main();
}
