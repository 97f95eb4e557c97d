/**
 * Peer job queues on PostgreSQL running the same chain workload as
 * bench/postgres-transitions.ts: `runs` chains x `steps` jobs, each job's
 * handler enqueues the next job of its chain, until every job is done.
 * The first job of every chain is inserted before the clock starts (as our
 * side submits every run before timing), so the figure is jobs completed per
 * second of the processing phase. Each peer gets its own fresh schema, dropped
 * afterwards.
 *
 *   npx tsx bench/postgres-peers.ts [--runs 1000] [--steps 10] [--timeout 120]
 *   (TAQUBA_PG_URL overrides postgres://postgres@127.0.0.1:5432/test)
 *
 * Peers, each in its documented fast configuration:
 * - graphile-worker 0.16: run() with concurrency 16, LISTEN/NOTIFY plus a
 *   100 ms poll; 0.16 has no batched job fetching (that is 0.17's localQueue).
 * - pg-boss 10: 8 work() loops, each fetching 125 jobs per round trip
 *   (together every ready chain) and completing them in one statement, at the
 *   minimum polling interval (0.5 s, which caps a loop at batchSize / 0.5 s);
 *   the next job is sent with send() from the handler. PGBOSS_WORKERS and
 *   PGBOSS_BATCH override (4 x 100: ~800/s, 4 x 250: ~1,300/s, 8 x 125: ~1,500/s).
 * - BullMQ: Redis-only; no PostgreSQL backend is published on npm.
 */
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import type * as GraphileWorker from 'graphile-worker';
import type PgBossClass from 'pg-boss';

/** One peer's figure, or the reason it was not measured. */
export interface PeerResult {
  name: string;
  version: string;
  /** Jobs (chain transitions) completed per second; undefined when skipped. */
  perSecond?: number;
  seconds?: number;
  completed?: number;
  timedOut?: boolean;
  skipped?: string;
}

export interface PeerOptions {
  url: string;
  runs: number;
  steps: number;
  timeoutSeconds: number;
  log?: (line: string) => void;
}

const require_ = createRequire(import.meta.url);

function versionOf(name: string): string {
  try {
    return (require_(`${name}/package.json`) as { version: string }).version;
  } catch {
    return 'not installed';
  }
}

interface ChainPayload {
  chain: number;
  step: number;
}

async function dropSchema(url: string, schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } finally {
    await client.end();
  }
}

/**
 * Polls `count()` until it reaches `total` or the time limit passes, printing
 * progress every 5 s. Returns the completed count and elapsed seconds.
 */
async function waitForCompletion(
  name: string,
  count: () => Promise<number>,
  total: number,
  start: number,
  options: PeerOptions,
): Promise<{ completed: number; seconds: number; timedOut: boolean }> {
  const deadline = start + options.timeoutSeconds * 1000;
  let nextLog = start + 5000;
  for (;;) {
    const completed = await count();
    const now = performance.now();
    if (completed >= total) return { completed, seconds: (now - start) / 1000, timedOut: false };
    if (now >= deadline) return { completed, seconds: (now - start) / 1000, timedOut: true };
    if (now >= nextLog) {
      options.log?.(`  ${name}: ${completed}/${total} jobs after ${((now - start) / 1000).toFixed(0)} s`);
      nextLog += 5000;
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function graphileWorker(options: PeerOptions): Promise<PeerResult> {
  const name = 'graphile-worker';
  const version = versionOf(name);
  let gw: typeof GraphileWorker;
  try {
    gw = await import('graphile-worker');
  } catch (error) {
    return { name, version, skipped: `import failed: ${String(error)}` };
  }
  const { runs, steps, url } = options;
  const total = runs * steps;
  const schema = `tq_peer_gw_${randomBytes(4).toString('hex')}`;
  const concurrency = 16;
  const quiet = new gw.Logger(() => () => {});
  const utils = await gw.makeWorkerUtils({ connectionString: url, schema, logger: quiet });
  let runner: Awaited<ReturnType<typeof gw.run>> | undefined;
  try {
    await utils.migrate();
    // Seed the first job of every chain in one statement (add_jobs, 0.16's batch API).
    const specs = Array.from({ length: runs }, (_, chain) => ({ identifier: 'chain', payload: { chain, step: 0 } }));
    await utils.withPgClient((client) =>
      client.query(`SELECT "${schema}".add_jobs(array(SELECT json_populate_recordset(NULL::"${schema}".job_spec, $1::json)))`, [JSON.stringify(specs)]),
    );
    let completed = 0;
    const start = performance.now();
    runner = await gw.run({
      connectionString: url,
      schema,
      concurrency,
      // Pool: one connection per concurrent job plus the listener and helpers.addJob.
      maxPoolSize: concurrency + 4,
      pollInterval: 100,
      noHandleSignals: true,
      logger: quiet,
      taskList: {
        chain: async (payload, helpers) => {
          const { chain, step } = payload as ChainPayload;
          if (step + 1 < steps) await helpers.addJob('chain', { chain, step: step + 1 });
        },
      },
    });
    // job:success fires after the job row is deleted (the completion commit).
    runner.events.on('job:success', () => completed++);
    const result = await waitForCompletion(name, () => Promise.resolve(completed), total, start, options);
    return { name, version, perSecond: result.completed / result.seconds, ...result };
  } catch (error) {
    return { name, version, skipped: `failed: ${String(error)}` };
  } finally {
    await runner?.stop().catch(() => {});
    await Promise.resolve(utils.release()).catch(() => {});
    await dropSchema(url, schema);
  }
}

async function pgBoss(options: PeerOptions): Promise<PeerResult> {
  const name = 'pg-boss';
  const version = versionOf(name);
  let PgBoss: typeof PgBossClass;
  try {
    PgBoss = (await import('pg-boss')).default;
  } catch (error) {
    return { name, version, skipped: `import failed: ${String(error)}` };
  }
  const { runs, steps, url } = options;
  const total = runs * steps;
  const schema = `tq_peer_pgboss_${randomBytes(4).toString('hex')}`;
  const workers = Number(process.env.PGBOSS_WORKERS ?? 8);
  const batchSize = Number(process.env.PGBOSS_BATCH ?? 125);
  // No supervision or cron: maintenance would only add load to the measurement.
  const boss = new PgBoss({ connectionString: url, schema, supervise: false, schedule: false, max: workers + 6 });
  let bossError: unknown;
  boss.on('error', (error: unknown) => (bossError ??= error));
  const counter = new pg.Client({ connectionString: url });
  let started = false;
  try {
    await boss.start();
    started = true;
    await boss.createQueue('chain');
    await boss.insert(Array.from({ length: runs }, (_, chain) => ({ name: 'chain', data: { chain, step: 0 } })));
    await counter.connect();
    const start = performance.now();
    for (let i = 0; i < workers; i++) {
      await boss.work<ChainPayload>('chain', { batchSize, pollingIntervalSeconds: 0.5 }, async (jobs) => {
        await Promise.all(jobs.filter(({ data }) => data.step + 1 < steps).map(({ data }) => boss.send('chain', { chain: data.chain, step: data.step + 1 })));
      });
    }
    // Completed jobs stay in the job table (no supervisor archives them), so count them.
    const count = async (): Promise<number> => {
      if (bossError !== undefined) throw bossError instanceof Error ? bossError : new Error('pg-boss reported a non-Error', { cause: bossError });
      const r = await counter.query<{ n: string }>(`SELECT count(*) AS n FROM "${schema}".job WHERE name = 'chain' AND state = 'completed'`);
      return Number(r.rows[0]?.n ?? 0);
    };
    const result = await waitForCompletion(`${name} (${workers} x batchSize ${batchSize})`, count, total, start, options);
    return { name: `${name} (${workers} work() x batch ${batchSize})`, version, perSecond: result.completed / result.seconds, ...result };
  } catch (error) {
    return { name, version, skipped: `failed: ${String(error)}` };
  } finally {
    if (started) await boss.stop({ graceful: false, wait: true, timeout: 5000 }).catch(() => {});
    await counter.end().catch(() => {});
    await dropSchema(url, schema);
  }
}

function bullmqPostgres(): PeerResult {
  return {
    name: 'BullMQ (PostgreSQL backend)',
    version: '-',
    skipped: 'no PostgreSQL backend for BullMQ is published on npm (BullMQ runs on Redis only)',
  };
}

/** Runs every peer in turn on the same database and returns one result each. */
export async function measurePeers(options: PeerOptions): Promise<PeerResult[]> {
  const results: PeerResult[] = [];
  for (const peer of [graphileWorker, pgBoss]) {
    options.log?.(`measuring ${peer === graphileWorker ? 'graphile-worker' : 'pg-boss'}...`);
    results.push(await peer(options));
  }
  results.push(bullmqPostgres());
  return results;
}

/** One printable line per peer. */
export function formatPeer(result: PeerResult): string {
  const label = `${result.name} ${result.version}`.padEnd(48);
  if (result.perSecond === undefined) return `${label} skipped: ${result.skipped ?? 'unknown'}`;
  const note = result.timedOut ? `  TIMED OUT: ${result.completed} jobs done` : '';
  return `${label} ${result.perSecond.toFixed(0).padStart(8)} transitions/s   ${(result.seconds ?? 0).toFixed(2)} s${note}`;
}

function arg(name: string, fallback: number): number {
  const index = process.argv.indexOf(`--${name}`);
  return index >= 0 ? Number(process.argv[index + 1]) : fallback;
}

async function main(): Promise<void> {
  const options: PeerOptions = {
    url: process.env.TAQUBA_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test',
    runs: arg('runs', 1000),
    steps: arg('steps', 10),
    timeoutSeconds: arg('timeout', 120),
    log: (line) => console.log(line),
  };
  console.log(`chain: ${options.runs} chains x ${options.steps} jobs (each job enqueues the next)`);
  const results = await measurePeers(options);
  for (const result of results) console.log(formatPeer(result));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
