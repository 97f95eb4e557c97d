/**
 * PostgreSQL benchmark, all figures from one run on one database:
 * - the raw limit: single-row INSERT + COMMIT per second on 1 and 10 connections;
 * - the store's step-transition chain (N_RUNS runs x N_STEPS steps, each step
 *   continuing at once) through a WorkflowRuntime on PostgresStore, in one
 *   process and in WORKERS processes: transitions/s, p50/p99 claim-to-commit,
 *   and transitions per commit of the step phase (transactions of claims alone
 *   plus settlement transactions, which carry claims too; every statement is
 *   one transaction): the batching
 *   efficiency, which carries over to slower disks.
 *
 *   npx tsx bench/postgres-transitions.ts [--runs 1000] [--steps 10] [--workers 4] [--seconds 3] [--peers]
 *   (--peers also runs the same chain on graphile-worker and pg-boss, see postgres-peers.ts,
 *   and prints our figures as ratios of the fastest peer)
 *   (TAQUBA_PG_URL overrides postgres://postgres@127.0.0.1:5432/test)
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { StepOutcome, WorkflowRuntime } from '../core/index.js';
import { PostgresStore } from '../adapters/postgres/index.js';
import { measureTransitions } from './step-transitions.js';
import { formatPeer, measurePeers } from './postgres-peers.js';

const URL_ = process.env.TAQUBA_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

function arg(name: string, fallback: number): number {
  const index = process.argv.indexOf(`--${name}`);
  return index >= 0 ? Number(process.argv[index + 1]) : fallback;
}

async function rawCommits(connections: number, seconds: number, schema: string): Promise<number> {
  const pool = new pg.Pool({ connectionString: URL_, max: connections });
  await pool.query(`CREATE TABLE IF NOT EXISTS "${schema}".raw (id bigserial PRIMARY KEY, v integer NOT NULL)`);
  let count = 0;
  const end = performance.now() + seconds * 1000;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: connections }, async () => {
      const client = await pool.connect();
      try {
        while (performance.now() < end) {
          await client.query({ name: 'raw-insert', text: `INSERT INTO "${schema}".raw (v) VALUES ($1)`, values: [count] });
          count++;
        }
      } finally {
        client.release();
      }
    }),
  );
  const elapsed = (performance.now() - start) / 1000;
  await pool.end();
  return count / elapsed;
}

/**
 * Child mode: a worker process draining the chain until every run ended.
 * It opens its store, says `ready`, and starts its worker loop on the
 * parent's `go`, so process start-up and connection set-up are not timed.
 */
async function childWorker(schema: string, total: number): Promise<void> {
  const store = await PostgresStore.open({ connectionString: URL_, schema, maxConnections: 4 });
  const steps = Number(process.env.N_STEPS);
  const controller = new AbortController();
  const runtime = new WorkflowRuntime({
    store,
    maxConcurrentSteps: 16,
    pollIntervalMs: 50,
    runner: (step) => (step.stepNumber + 1 < steps ? StepOutcome.continue(step.payload) : StepOutcome.succeed(step.payload)),
  });
  let settled = 0;
  let lastSettledAt = 0;
  runtime.on('stepSettled', () => {
    settled++;
    lastSettledAt = Date.now();
  });
  process.stdout.write('ready\n');
  await new Promise<void>((resolve) => process.stdin.once('data', () => resolve()));
  const loop = runtime.run(controller.signal);
  // Stop once the shared queue is drained.
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    const stats = await store.stats('workflow-steps');
    if (stats.done >= total && stats.pending + stats.claimed + stats.scheduled === 0) break;
  }
  controller.abort();
  await loop;
  process.stdout.write(`${JSON.stringify({ settled, lastSettledAt, stepCommits: store.metrics.claimStatements + store.metrics.settleTransactions })}\n`);
  await store.close();
  process.stdin.destroy();
}

interface ChildReport {
  settled: number;
  /** Wall-clock ms of its last settlement (the parent times from `go` to the latest of these). */
  lastSettledAt: number;
  stepCommits: number;
}

async function multiProcess(workers: number, runs: number, steps: number): Promise<{ perSecond: number; perCommit: number }> {
  const schema = `tq_bench_${randomBytes(4).toString('hex')}`;
  const store = await PostgresStore.open({ connectionString: URL_, schema, backgroundMaintenance: false, listen: false });
  const runtime = new WorkflowRuntime({ store, runner: () => StepOutcome.succeed(new Uint8Array()) });
  const input = new Uint8Array(64);
  for (let i = 0; i < runs; i += 100)
    await Promise.all(Array.from({ length: Math.min(100, runs - i) }, (_, k) => runtime.submit({ runId: `b-${i + k}`, input })));
  const self = fileURLToPath(import.meta.url);
  const children = Array.from({ length: workers }, () => {
    const child = spawn(process.execPath, ['--import', 'tsx', self, '--child', schema, String(runs * steps)], {
      stdio: ['pipe', 'pipe', 'inherit'],
      env: { ...process.env, N_STEPS: String(steps) },
    });
    let out = '';
    let markReady!: () => void;
    const ready = new Promise<void>((resolve) => (markReady = resolve));
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.startsWith('ready\n')) markReady();
    });
    const report = new Promise<ChildReport>((resolve, reject) =>
      child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out.slice('ready\n'.length)) as ChildReport) : reject(new Error(`worker exited ${code}`)))),
    );
    return { child, ready, report };
  });
  await Promise.all(children.map((c) => c.ready));
  const start = Date.now();
  for (const { child } of children) child.stdin.write('go\n');
  const results = await Promise.all(children.map((c) => c.report));
  const seconds = (Math.max(...results.map((r) => r.lastSettledAt)) - start) / 1000;
  await store.close();
  await dropSchema(schema);
  const transitions = runs * steps;
  const commits = results.reduce((sum, r) => sum + r.stepCommits, 0);
  return { perSecond: transitions / seconds, perCommit: transitions / commits };
}

async function dropSchema(schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: URL_ });
  await client.connect();
  await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await client.end();
}

async function main(): Promise<void> {
  if (process.argv[2] === '--child') return childWorker(process.argv[3] as string, Number(process.argv[4]));
  const runs = arg('runs', 1000);
  const steps = arg('steps', 10);
  const workers = arg('workers', 4);
  const seconds = arg('seconds', 3);
  const rawSchema = `tq_bench_raw_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: URL_ });
  await admin.connect();
  await admin.query(`CREATE SCHEMA "${rawSchema}"`);
  const settings = await admin.query<{ sc: string; fsync: string; v: string }>(
    `SELECT current_setting('synchronous_commit') AS sc, current_setting('fsync') AS fsync, version() AS v`,
  );
  await admin.end();
  const setting = settings.rows[0]!;
  console.log(`PostgreSQL: ${setting.v.split(' on ')[0] ?? ''}, synchronous_commit=${setting.sc}, fsync=${setting.fsync}`);
  const raw1 = await rawCommits(1, seconds, rawSchema);
  const raw10 = await rawCommits(10, seconds, rawSchema);
  await dropSchema(rawSchema);

  // One process, one runtime.
  const schema = `tq_bench_${randomBytes(4).toString('hex')}`;
  const warm = await PostgresStore.open({ connectionString: URL_, schema: `${schema}_w` });
  await measureTransitions(warm, Math.min(runs, 200), steps, 16);
  await warm.close();
  await dropSchema(`${schema}_w`);
  const store = await PostgresStore.open({ connectionString: URL_, schema });
  const single = await measureTransitions(store, runs, steps, 16);
  // Commits of the step phase: claims and settlement transactions (submits are not transitions).
  const stepCommits = store.metrics.claimStatements + store.metrics.settleTransactions;
  const settlePerTx = store.metrics.settlements / Math.max(1, store.metrics.settleTransactions);
  await store.close();
  await dropSchema(schema);
  const multi = await multiProcess(workers, runs, steps);

  const rows: Array<[string, number, string]> = [
    ['raw INSERT+COMMIT/s, 1 connection', raw1, ''],
    ['raw INSERT+COMMIT/s, 10 connections', raw10, ''],
    [`taquba postgres, 1 process: transitions/s`, single.perSecond, `p50 ${single.p50Ms.toFixed(2)} ms, p99 ${single.p99Ms.toFixed(2)} ms (submit excluded)`],
    [`taquba postgres, ${workers} processes: transitions/s`, multi.perSecond, ''],
  ];
  console.log(`chain: ${runs} runs x ${steps} steps (each step enqueues the next), maxConcurrentSteps 16`);
  for (const [label, value, note] of rows) console.log(`${label.padEnd(48)} ${value.toFixed(0).padStart(8)}   ${note}`);
  console.log(`${'ratio 1-process transitions / raw 1-connection commits'.padEnd(48)} ${(single.perSecond / raw1).toFixed(2).padStart(8)}`);
  console.log(
    `${'transitions per commit, 1 process'.padEnd(48)} ${(single.transitions / stepCommits).toFixed(2).padStart(8)}   (${store.metrics.claimStatements} claims alone + ${store.metrics.settleTransactions} settle transactions; ${settlePerTx.toFixed(2)} settlements each, ${store.metrics.claimsWithSettlements} claims rode along)`,
  );
  console.log(`${`transitions per commit, ${workers} processes`.padEnd(48)} ${multi.perCommit.toFixed(2).padStart(8)}`);
  if (!process.argv.includes('--peers')) return;
  const peers = await measurePeers({ url: URL_, runs, steps, timeoutSeconds: 120, log: (line) => console.log(line) });
  for (const peer of peers) console.log(formatPeer(peer));
  const fastest = peers.reduce<(typeof peers)[number] | undefined>(
    (best, p) => (p.perSecond !== undefined && !p.timedOut && (best?.perSecond ?? 0) < p.perSecond ? p : best),
    undefined,
  );
  if (fastest?.perSecond === undefined) return;
  console.log(`${`ratio 1 process / fastest peer (${fastest.name})`.padEnd(48)} ${(single.perSecond / fastest.perSecond).toFixed(2).padStart(8)}`);
  console.log(`${`ratio ${workers} processes / fastest peer`.padEnd(48)} ${(multi.perSecond / fastest.perSecond).toFixed(2).padStart(8)}`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
