/**
 * Chaos test on PostgreSQL with a history checker. Three worker processes
 * (durable hook delivery, 1.5 s leases) and one submit-only process share a
 * schema on a server of the test's own. At seeded random moments the test
 * kills workers with SIGKILL and restarts them, stops them with SIGSTOP past
 * their lease, terminates their backends, and restarts the server in
 * immediate mode; one worker runs with its clock several minutes off. Then
 * every process is made healthy and the system quiesces until every run has
 * ended (or a deadline passes). The checker (history.ts) reads every side
 * effect the processes logged plus the store's final state.
 *
 * Environment: TAQUBA_CHAOS_SEED replays a seed (the fault schedule and the
 * run scripts; the interleaving of processes stays up to the machine),
 * TAQUBA_CHAOS_SKEW_MS sets the skew (signed ms), TAQUBA_CHAOS_DEEP=1 runs
 * more runs for longer. Skips with a message when no server can be created,
 * except with CI set, where that is a failure. When a check fails the log
 * directory is kept; `npx tsx test/chaos/recheck.ts <dir>` checks it again.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { HEADER_RUN_ID } from '../../core/index.js';
import { createCluster } from './cluster.js';
import type { Cluster } from './cluster.js';
import { checkHistory, formatSummary, readLogs } from './history.js';
import type { FinalState } from './history.js';
import { openLog } from './fixtures/chaos-log.js';
import { OUTCOME_QUEUE, int, stream } from './fixtures/chaos-script.js';

const DEEP = process.env.TAQUBA_CHAOS_DEEP === '1';
const SEED = process.env.TAQUBA_CHAOS_SEED !== undefined ? Number(process.env.TAQUBA_CHAOS_SEED) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
const LEASE_MS = 1_500;
const WORKERS = 3;
const SKEWED_SLOT = WORKERS - 1;
const PLAN = DEEP
  ? { runs: 3_000, submitMs: 240_000, chaosMs: 300_000, quiesceMs: 300_000, maxRestarts: 20 }
  : { runs: 400, submitMs: 30_000, chaosMs: 40_000, quiesceMs: 45_000, maxRestarts: 3 };
const SKEW_MS = (() => {
  if (process.env.TAQUBA_CHAOS_SKEW_MS !== undefined) return Number(process.env.TAQUBA_CHAOS_SKEW_MS);
  const random = stream(SEED, 'skew');
  return (random() < 0.5 ? -1 : 1) * int(random, 3 * 60_000, 6 * 60_000);
})();

const workerScript = fileURLToPath(new URL('./fixtures/chaos-worker.ts', import.meta.url));
const submitterScript = fileURLToPath(new URL('./fixtures/chaos-submitter.ts', import.meta.url));

const created = await createCluster();
const cluster: Cluster | undefined = typeof created === 'string' ? undefined : created;
if (typeof created === 'string') {
  if (process.env.CI) throw new Error(`the chaos test needs its own PostgreSQL server in CI: ${created}`);
  console.warn(`skipping the PostgreSQL chaos test: ${created}`);
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

interface Proc {
  name: string;
  child: ChildProcess;
  pid: number;
  exited: Promise<number | null>;
  alive: boolean;
  lines: Set<string>;
  stderr: string;
}

function start(script: string, args: object, name: string): Proc {
  const child = spawn(process.execPath, ['--import', 'tsx', script, JSON.stringify(args)], { stdio: ['ignore', 'pipe', 'pipe'] });
  const proc: Proc = { name, child, pid: child.pid as number, exited: Promise.resolve(null), alive: true, lines: new Set(), stderr: '' };
  let buffer = '';
  child.stdout.on('data', (chunk: Buffer) => {
    buffer += chunk.toString();
    for (let nl = buffer.indexOf('\n'); nl >= 0; nl = buffer.indexOf('\n')) {
      proc.lines.add(buffer.slice(0, nl));
      buffer = buffer.slice(nl + 1);
    }
  });
  child.stderr.on('data', (chunk: Buffer) => (proc.stderr = (proc.stderr + chunk.toString()).slice(-4_000)));
  proc.exited = new Promise((resolve) =>
    child.on('exit', (code) => {
      proc.alive = false;
      resolve(code);
    }),
  );
  return proc;
}

async function waitFor(proc: Proc, line: string, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!proc.lines.has(line)) {
    if (!proc.alive) throw new Error(`${proc.name} (pid ${proc.pid}) exited before "${line}": ${proc.stderr}`);
    if (Date.now() > until) throw new Error(`${proc.name} (pid ${proc.pid}) did not print "${line}" within ${timeoutMs} ms`);
    await sleep(50);
  }
}

async function stop(proc: Proc, graceMs = 15_000): Promise<void> {
  if (!proc.alive) return;
  proc.child.kill('SIGCONT');
  proc.child.kill('SIGTERM');
  const timer = setTimeout(() => proc.child.kill('SIGKILL'), graceMs);
  await proc.exited;
  clearTimeout(timer);
}

async function query<R>(url: string, text: string, values: unknown[] = []): Promise<R[]> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  await client.connect();
  try {
    return (await client.query(text, values)).rows as R[];
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function finalState(url: string, schema: string): Promise<FinalState> {
  const kv = await query<{ key: string }>(
    url,
    `SELECT key FROM "${schema}".kv WHERE key LIKE 'workflow/%/run/%' OR key LIKE 'workflow/%/cursor/%' ORDER BY key`,
  );
  const jobs = await query<{ id: string; queue: string; status: string; headers: string }>(
    url,
    `SELECT id, queue, status, headers FROM "${schema}".jobs WHERE status IN ('pending', 'scheduled', 'claimed') ORDER BY id`,
  );
  const [dead] = await query<{ n: string }>(url, `SELECT count(*) AS n FROM "${schema}".jobs WHERE queue = $1 AND status = 'dead'`, [OUTCOME_QUEUE]);
  return {
    kvKeys: kv.map((r) => r.key),
    activeJobs: jobs.map((j) => {
      let run: string | undefined;
      try {
        run = (JSON.parse(j.headers) as Record<string, string>)[HEADER_RUN_ID];
      } catch {
        run = undefined;
      }
      return { id: j.id, queue: j.queue, status: j.status, ...(run ? { run } : {}) };
    }),
    deadOutcomeJobs: Number(dead?.n ?? 0),
  };
}

describe.skipIf(!cluster)('PostgreSQL chaos: kills, stops, backend terminations, server restarts, clock skew', () => {
  afterAll(async () => {
    await cluster?.drop();
  });

  it(`every run ends exactly once with one hook and leaves nothing behind (seed ${SEED})`, { timeout: PLAN.chaosMs + PLAN.quiesceMs + 180_000 }, async () => {
    const server = cluster as Cluster;
    const schema = `tq_chaos_${SEED.toString(16)}`;
    const logDir = mkdtempSync(join(tmpdir(), 'tqchaos-'));
    const log = openLog(logDir, 'chaos');
    console.log(
      `[chaos] seed ${SEED} (replay: TAQUBA_CHAOS_SEED=${SEED}), skew ${SKEW_MS} ms on worker ${SKEWED_SLOT}, ${PLAN.runs} runs, ${PLAN.chaosMs / 1000} s of chaos, server port ${server.port}, log ${logDir}`,
    );
    log({ e: 'phase', phase: 'start', seed: SEED, skewMs: SKEW_MS, plan: PLAN });
    const urlFor = (app: string): string => `${server.url}?application_name=${app}`;
    const procs: Proc[] = [];
    const workers: Proc[] = [];
    const spawnWorker = (slot: number, skewMs: number): Proc => {
      const proc = start(workerScript, { url: urlFor(`tqchaos_w${slot}`), schema, logDir, leaseMs: LEASE_MS, skewMs, name: String(slot) }, `worker ${slot}`);
      workers[slot] = proc;
      procs.push(proc);
      log({ e: 'spawn', target: proc.pid, slot, skewMs });
      return proc;
    };
    let passed = false;
    try {
      // The submitter creates the schema; the workers follow.
      const submitter = start(
        submitterScript,
        { url: urlFor('tqchaos_submitter'), schema, logDir, seed: SEED, runs: PLAN.runs, submitMs: PLAN.submitMs, reaperIntervalMs: 250 },
        'submitter',
      );
      procs.push(submitter);
      await waitFor(submitter, 'ready', 60_000);
      for (let slot = 0; slot < WORKERS; slot++) spawnWorker(slot, slot === SKEWED_SLOT ? SKEW_MS : 0);
      await Promise.all(workers.map((w) => waitFor(w, 'ready', 60_000)));

      // ---- chaos ----
      const random = stream(SEED, 'faults');
      const kinds = ['kill', 'stop', 'terminate', 'restart'] as const;
      // The first four faults are one of each kind, in a seeded order, so every run sees each at least once.
      const opening = [...kinds].sort(() => random() - 0.5);
      const background: Array<Promise<void>> = [];
      let restarts = 0;
      let lastRestart = 0;
      const chaosEnd = Date.now() + PLAN.chaosMs;
      for (let n = 0; Date.now() < chaosEnd; n++) {
        await sleep(int(random, 700, 2_500));
        const roll = random();
        let kind: (typeof kinds)[number] = opening[n] ?? (roll < 0.35 ? 'kill' : roll < 0.6 ? 'stop' : roll < 0.88 ? 'terminate' : 'restart');
        const slot = int(random, 0, WORKERS - 1);
        const pauseMs = LEASE_MS + int(random, 500, 2_500);
        const respawnMs = int(random, 0, 1_000);
        const everyone = random() < 0.25;
        if (kind === 'restart' && (restarts >= PLAN.maxRestarts || Date.now() - lastRestart < 8_000)) kind = 'terminate';
        const victim = workers[slot] as Proc;
        switch (kind) {
          case 'kill': {
            if (!victim.alive) break;
            victim.child.kill('SIGKILL');
            log({ e: 'fault', kind: 'kill', target: victim.pid, slot });
            await victim.exited;
            await sleep(respawnMs);
            spawnWorker(slot, slot === SKEWED_SLOT ? SKEW_MS : 0);
            break;
          }
          case 'stop': {
            if (!victim.alive) break;
            victim.child.kill('SIGSTOP');
            log({ e: 'fault', kind: 'stop', target: victim.pid, slot, pauseMs });
            background.push(
              sleep(pauseMs).then(() => {
                victim.child.kill('SIGCONT');
                log({ e: 'fault', kind: 'cont', target: victim.pid, slot });
              }),
            );
            break;
          }
          case 'terminate': {
            const names = everyone ? workers.map((_, i) => `tqchaos_w${i}`) : [`tqchaos_w${slot}`];
            try {
              const rows = await query<{ ok: boolean }>(
                server.url,
                'SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = ANY($1::text[])',
                [names],
              );
              log({ e: 'fault', kind: 'terminate', target: everyone ? 0 : victim.pid, names, count: rows.filter((r) => r.ok).length });
            } catch (error) {
              log({ e: 'faultFailed', kind: 'terminate', message: String(error) });
            }
            break;
          }
          case 'restart': {
            restarts++;
            log({ e: 'fault', kind: 'restart' });
            await server.restart();
            lastRestart = Date.now();
            log({ e: 'restarted' });
            break;
          }
        }
      }
      await Promise.all(background);

      // ---- quiesce: every worker healthy, no faults ----
      log({ e: 'phase', phase: 'quiesce' });
      for (let slot = 0; slot < WORKERS; slot++) {
        const worker = workers[slot] as Proc;
        if (slot === SKEWED_SLOT && worker.alive) await stop(worker);
        if (!worker.alive || slot === SKEWED_SLOT) spawnWorker(slot, 0);
      }
      await Promise.all(workers.map((w) => waitFor(w, 'ready', 60_000)));
      const deadline = Date.now() + PLAN.quiesceMs;
      await waitFor(submitter, 'done', PLAN.quiesceMs);
      for (;;) {
        const state = await finalState(server.url, schema).catch(() => undefined);
        if (state && state.kvKeys.length === 0 && state.activeJobs.length === 0) break;
        if (Date.now() > deadline) {
          log({ e: 'phase', phase: 'deadline' });
          break;
        }
        await sleep(500);
      }
      // Late re-deliveries (a lease that was still running) would show within two leases.
      await sleep(2 * LEASE_MS);
      log({ e: 'phase', phase: 'stop' });
      await Promise.all(procs.map((p) => stop(p)));

      // ---- check ----
      const final = await finalState(server.url, schema);
      writeFileSync(join(logDir, 'final-state.json'), JSON.stringify(final, null, 1));
      const verdict = checkHistory(readLogs(logDir), final);
      console.log(formatSummary(verdict, `[chaos] seed ${SEED}, skew ${SKEW_MS} ms, log ${logDir}`));
      const f = verdict.figures;
      expect(f.runsSubmitted).toBe(PLAN.runs);
      expect({ kills: f.kills > 0, stops: f.stops > 0, restarts: f.serverRestarts > 0 }).toEqual({ kills: true, stops: true, restarts: true });
      expect({
        lost: f.lostRuns,
        endedTwice: f.endedTwice,
        missingHooks: f.missingHooks,
        notificationsTwice: f.notificationsTwice,
        duplicatedHooksUnexplained: f.duplicateHooksUnexplained,
        wrongOutcomes: f.wrongOutcomes,
        prematureRedeliveries: f.prematureRedeliveries,
        reapedRunsHung: f.reapedRunsHung,
        settledStepsRerunNotByStoppedProcess: f.settledStepsRerun - f.settledStepsRerunByStoppedProcess,
        leftoverKv: f.leftoverKv,
        leftoverStepJobs: f.leftoverStepJobs,
        leftoverOutcomeJobs: f.leftoverOutcomeJobs,
        deadOutcomeJobs: f.deadOutcomeJobs,
        processCrashes: f.processCrashes,
        corruptLines: f.corruptLines,
      }).toEqual({
        lost: 0,
        endedTwice: 0,
        missingHooks: 0,
        notificationsTwice: 0,
        duplicatedHooksUnexplained: 0,
        wrongOutcomes: 0,
        prematureRedeliveries: 0,
        reapedRunsHung: 0,
        settledStepsRerunNotByStoppedProcess: 0,
        leftoverKv: 0,
        leftoverStepJobs: 0,
        leftoverOutcomeJobs: 0,
        deadOutcomeJobs: 0,
        processCrashes: 0,
        corruptLines: 0,
      });
      passed = true;
    } finally {
      await Promise.all(procs.map((p) => stop(p, 2_000)));
      log.close();
      // The history stays for inspection when the checks fail.
      if (passed) rmSync(logDir, { recursive: true, force: true });
    }
  });
});
