/**
 * PostgreSQL claim latency against the size of the backlog. For each backlog
 * size: a fresh schema holding that many pending jobs, then a steady state
 * (claim 16, ack each with a successor, so the backlog stays the same size)
 * for a number of rounds; prints the claim latency p50/p99, the dead tuples
 * left in `jobs` and the claim's own plan (EXPLAIN ANALYZE, BUFFERS) at the
 * end, where the buffers show how much of the index a claim had to walk.
 *
 *   npx tsx bench/postgres-claim-backlog.ts [--sizes 1000,100000] [--rounds 1500]
 *   (TAQUBA_PG_URL overrides postgres://postgres@127.0.0.1:5432/test)
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { PostgresStore } from '../adapters/postgres/index.js';

const URL_ = process.env.TAQUBA_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const LIMIT = 16;

function arg(name: string, fallback: string): string {
  const index = process.argv.indexOf(`--${name}`);
  return index >= 0 ? (process.argv[index + 1] as string) : fallback;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

async function measure(size: number, rounds: number, admin: pg.Client): Promise<void> {
  const schema = `bench_backlog_${randomBytes(4).toString('hex')}`;
  const store = await PostgresStore.open({ connectionString: URL_, schema, backgroundMaintenance: false, listen: false });
  try {
    const payload = new Uint8Array(64);
    for (let done = 0; done < size; done += 1000) {
      await store.enqueueBatch(
        'q',
        Array.from({ length: Math.min(1000, size - done) }, () => ({ payload })),
      );
    }
    if (process.env.BENCH_JOBS_RELOPTIONS) await admin.query(`ALTER TABLE "${schema}".jobs SET (${process.env.BENCH_JOBS_RELOPTIONS})`);
    await admin.query(`VACUUM ANALYZE "${schema}".jobs`);
    const latencies: number[] = [];
    for (let round = 0; round < rounds; round++) {
      const start = performance.now();
      const claims = await store.claim('q', { limit: LIMIT });
      latencies.push(performance.now() - start);
      await Promise.all(claims.map((c) => store.settle(c, { action: { type: 'ack' }, effects: { enqueue: [{ queue: 'q', payload }] } })));
    }
    latencies.sort((a, b) => a - b);
    const dead = await admin.query(`SELECT n_live_tup, n_dead_tup, autovacuum_count FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = 'jobs'`, [
      schema,
    ]);
    await admin.query('BEGIN');
    const plan = await admin.query(
      `EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT id FROM "${schema}".jobs WHERE queue = 'q' AND status = 'pending' ORDER BY priority, id LIMIT ${LIMIT} FOR UPDATE SKIP LOCKED`,
    );
    await admin.query('ROLLBACK');
    const stats = dead.rows[0] as { n_live_tup: string; n_dead_tup: string; autovacuum_count: string };
    console.log(
      `backlog ${String(size).padStart(7)}: claim p50 ${percentile(latencies, 50).toFixed(2)} ms, p99 ${percentile(latencies, 99).toFixed(2)} ms, ` +
        `max ${(latencies.at(-1) as number).toFixed(2)} ms over ${rounds} claims of ${LIMIT}; jobs live ${stats.n_live_tup}, dead ${stats.n_dead_tup}, autovacuums ${stats.autovacuum_count}`,
    );
    console.log((plan.rows as Array<{ 'QUERY PLAN': string }>).map((row) => `    ${row['QUERY PLAN']}`).join('\n'));
  } finally {
    await store.close();
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  }
}

const sizes = arg('sizes', '1000,100000').split(',').map(Number);
const rounds = Number(arg('rounds', '1500'));
const admin = new pg.Client({ connectionString: URL_ });
await admin.connect();
try {
  const version = await admin.query('SHOW server_version');
  console.log(`PostgreSQL ${(version.rows[0] as { server_version: string }).server_version}; claim ${LIMIT} then ack each with a successor, ${rounds} rounds`);
  for (const size of sizes) await measure(size, rounds, admin);
} finally {
  await admin.end();
}
