/**
 * The multi-process proof: worker processes (each its own WorkflowRuntime and
 * pool) share one schema and drain scripted multi-step runs submitted by
 * another process, while this process issues status and cancel. Checked: every
 * run ends with the outcome its script dictates, none is lost, no step is
 * settled twice, and no two deliveries of a run's step overlap unless one of
 * them belongs to a process that was paused past its lease. Then the same
 * under faults: SIGKILL, SIGSTOP past the lease, pg_terminate_backend.
 * One line of figures per scenario. `TAQUBA_DEEP=1` runs bigger loads.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createConnection, createServer } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { StepOutcome, WorkflowRuntime } from '../../core/index.js';
import { PostgresStore } from '../../adapters/postgres/index.js';
import { PG_URL, admin, dropSchema, freshSchemaName, postgresAvailable } from './helpers.js';
import { QUEUE, expectedOutcome, kindOf, runId, runIndex } from './fixtures/proof-script.js';

const available = await postgresAvailable();
const DEEP = process.env.TAQUBA_DEEP === '1';
const workerScript = fileURLToPath(new URL('./fixtures/proof-worker.ts', import.meta.url));
const submitScript = fileURLToPath(new URL('./fixtures/submit.ts', import.meta.url));
const schemas: string[] = [];

interface Event {
  pid: number;
  t: number;
  e: string;
  run?: string;
  step?: number;
  attempts?: number;
  job?: string;
  status?: string;
  error?: string;
}

interface Worker {
  child: ChildProcess;
  pid: number;
  ready: Promise<void>;
  exited: Promise<number | null>;
}

function spawnWorker(url: string, schema: string, leaseMs: number, maxDelayMs: number, events: Event[]): Worker {
  const child = spawn(process.execPath, ['--import', 'tsx', workerScript, url, schema, String(leaseMs), String(maxDelayMs)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let buffer = '';
  let markReady!: () => void;
  const ready = new Promise<void>((resolve) => (markReady = resolve));
  child.stdout.on('data', (chunk: Buffer) => {
    buffer += chunk.toString();
    let newline: number;
    while ((newline = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + 1);
      if (!line) continue;
      const event = JSON.parse(line) as Event;
      if (event.e === 'ready') markReady();
      events.push(event);
    }
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) =>
    child.on('exit', (code) => {
      if (code !== 0 && code !== null && stderr) console.error(`worker ${child.pid} exited ${code}: ${stderr.slice(0, 2000)}`);
      resolve(code);
    }),
  );
  return { child, pid: child.pid as number, ready, exited };
}

function runScript(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', submitScript, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`submitter exited ${code}: ${err}`))));
  });
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A TCP proxy to the server whose live connections can be cut at once (there is no tc netem here). */
async function startProxy(): Promise<{ port: number; cut: () => number; close: () => Promise<void> }> {
  const target = new URL(PG_URL);
  const pairs = new Set<[Socket, Socket]>();
  const server = createServer((client) => {
    const upstream = createConnection({ host: target.hostname, port: Number(target.port || 5432) });
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    const drop = (): void => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    cut: () => {
      const n = pairs.size;
      for (const [client, upstream] of [...pairs]) {
        client.resetAndDestroy();
        upstream.destroy();
      }
      return n;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const [client, upstream] of pairs) {
          client.destroy();
          upstream.destroy();
        }
        server.close(() => resolve());
      }),
  };
}

interface FaultContext {
  workers: Worker[];
  spawn: () => Worker;
  /** pids whose in-flight deliveries may legitimately overlap a re-delivery (paused past their lease). */
  paused: Set<number>;
  url: string;
  appName: string;
  /** Cuts every worker connection at the TCP proxy (only with `proxy: true`); returns how many. */
  cutConnections: () => number;
}

interface Scenario {
  name: string;
  runs: number;
  workers: number;
  leaseMs: number;
  maxDelayMs: number;
  /** Route the workers through a small TCP proxy, so the test can cut their connections. */
  proxy?: boolean;
  /** Injects faults; returns how many. */
  fault?: (ctx: FaultContext) => Promise<number>;
}

interface Figures {
  runs: number;
  faults: number;
  redeliveries: number;
  lost: number;
  doubleSettlements: number;
  wrongOutcomes: number;
  duplicateHooks: number;
  overlaps: number;
  leaseLost: number;
  cancelled: number;
  seconds: number;
}

async function runScenario(scenario: Scenario): Promise<Figures> {
  const schema = freshSchemaName('tq_proof');
  schemas.push(schema);
  const appName = `tqw_${schema}`;
  const proxy = scenario.proxy ? await startProxy() : undefined;
  const url = `${proxy ? PG_URL.replace(/@[^/]+\//, `@127.0.0.1:${proxy.port}/`) : PG_URL}?application_name=${appName}`;
  const events: Event[] = [];
  // This process never submits nor runs steps: it only asks for status and cancels.
  const store = await PostgresStore.open({ connectionString: PG_URL, schema, backgroundMaintenance: false, maxConnections: 2 });
  const control = new WorkflowRuntime({ store, runner: () => StepOutcome.succeed(new Uint8Array()), hookDelivery: 'durable' });
  await runScript([PG_URL, schema, String(scenario.runs)]);
  const started = Date.now();
  const workers: Worker[] = [];
  const spawnOne = (): Worker => {
    const worker = spawnWorker(url, schema, scenario.leaseMs, scenario.maxDelayMs, events);
    workers.push(worker);
    return worker;
  };
  for (let i = 0; i < scenario.workers; i++) spawnOne();
  await Promise.all(workers.map((w) => w.ready));
  const paused = new Set<number>();
  const slow = Array.from({ length: scenario.runs }, (_, i) => i).filter((i) => kindOf(i) === 'slow');
  const toCancel = new Set(slow.map(runId));
  let cancelled = 0;
  let finished = false;
  const canceller = (async () => {
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- changed by another task while this one awaits
    while (!finished && toCancel.size > 0) {
      for (const id of [...toCancel]) {
        const status = await control.status(id).catch(() => undefined);
        if (status?.state === 'running' && status.currentStep === 1) {
          expect(await control.cancel(id)).toBe(true);
          expect((await control.status(id))?.state ?? 'ended').toMatch(/cancelling|ended/);
          toCancel.delete(id);
          cancelled++;
        }
      }
      await sleep(100);
    }
  })();
  const cutConnections = (): number => proxy?.cut() ?? 0;
  const faults = scenario.fault ? scenario.fault({ workers, spawn: spawnOne, paused, url, appName, cutConnections }) : Promise.resolve(0);
  const outcomeRuns = (): number => new Set(events.filter((e) => e.e === 'outcome').map((e) => e.run)).size;
  const deadline = Date.now() + (DEEP ? 600_000 : 90_000);
  while (outcomeRuns() < scenario.runs && Date.now() < deadline) await sleep(100);
  const faultCount = await faults;
  finished = true;
  await canceller;
  const seconds = (Date.now() - started) / 1000;
  for (const worker of workers) worker.child.kill('SIGTERM');
  await Promise.all(workers.map((w) => w.exited));
  await proxy?.close();

  // ---- checks ----
  const outcomes = new Map<string, Event[]>();
  for (const e of events.filter((x) => x.e === 'outcome')) outcomes.set(e.run!, [...(outcomes.get(e.run!) ?? []), e]);
  let lost = 0;
  let wrong = 0;
  let duplicateHooks = 0;
  for (let i = 0; i < scenario.runs; i++) {
    const got = outcomes.get(runId(i)) ?? [];
    if (got.length === 0) {
      lost++;
      continue;
    }
    duplicateHooks += got.length - 1;
    const expected = expectedOutcome(i);
    for (const o of got) if (o.status !== expected.status || (o.error ?? undefined) !== expected.error) wrong++;
  }
  const terminalSettles = new Map<string, number>();
  for (const e of events.filter((x) => x.e === 'settled' && (x.status === 'done' || x.status === 'dead'))) {
    const key = `${e.run}/${e.step}`;
    terminalSettles.set(key, (terminalSettles.get(key) ?? 0) + 1);
  }
  const doubleSettlements = [...terminalSettles.values()].filter((n) => n > 1).length;
  const starts = events.filter((e) => e.e === 'start');
  // Deliveries beyond the script's own (a transient step 0 runs twice by design). A claim whose reply was
  // lost never starts, so a step may also run fewer times than its attempt numbers suggest.
  const perStep = new Map<string, { run: string; step: number; n: number }>();
  for (const e of starts) {
    const key = `${e.run}/${e.step}`;
    const entry = perStep.get(key) ?? { run: e.run!, step: e.step!, n: 0 };
    entry.n++;
    perStep.set(key, entry);
  }
  let redeliveries = 0;
  for (const { run, step, n } of perStep.values()) {
    const scripted = kindOf(runIndex(run)) === 'transient' && step === 0 ? 2 : 1;
    redeliveries += Math.max(0, n - scripted);
  }
  // Executions of one run must not overlap, unless one side was paused past its lease.
  const ends = new Map<string, number>();
  for (const e of events.filter((x) => x.e === 'end')) ends.set(`${e.pid}/${e.job}/${e.attempts}`, e.t);
  const byRun = new Map<string, Array<{ pid: number; start: number; end: number }>>();
  for (const e of starts) {
    const end = ends.get(`${e.pid}/${e.job}/${e.attempts}`);
    if (end === undefined) continue; // killed mid-step
    byRun.set(e.run!, [...(byRun.get(e.run!) ?? []), { pid: e.pid, start: e.t, end }]);
  }
  let overlaps = 0;
  for (const list of byRun.values()) {
    list.sort((a, b) => a.start - b.start);
    for (let i = 1; i < list.length; i++) {
      const prev = list[i - 1]!;
      const cur = list[i]!;
      if (cur.start < prev.end && !paused.has(prev.pid) && !paused.has(cur.pid)) overlaps++;
    }
  }
  const stats = await store.stats(QUEUE);
  const outcomeStats = await store.stats(`${QUEUE}.outcomes`);
  const [leftover] = await admin<{ n: string }>(`SELECT count(*) AS n FROM "${schema}".kv WHERE key LIKE 'workflow/%' AND key NOT LIKE 'workflow/%/config/%'`);
  await store.close();
  const figures: Figures = {
    runs: scenario.runs,
    faults: faultCount,
    redeliveries,
    lost,
    doubleSettlements,
    wrongOutcomes: wrong,
    duplicateHooks,
    overlaps,
    leaseLost: events.filter((e) => e.e === 'leaseLost').length,
    cancelled,
    seconds,
  };
  console.log(
    `[postgres proof] ${scenario.name.padEnd(22)} runs ${figures.runs}, faults injected ${figures.faults}, re-deliveries ${figures.redeliveries}, runs lost ${figures.lost}, double settlements ${figures.doubleSettlements}, wrong outcomes ${figures.wrongOutcomes}, overlapping deliveries ${figures.overlaps}, late settlements rejected ${figures.leaseLost}, duplicate hook deliveries ${figures.duplicateHooks}, cancelled from another process ${figures.cancelled}, transient store errors seen by workers ${events.filter((e) => e.e === 'storeError').length}, ${figures.seconds.toFixed(1)} s`,
  );
  expect({ lost, wrong, doubleSettlements, overlaps }).toEqual({ lost: 0, wrong: 0, doubleSettlements: 0, overlaps: 0 });
  expect(cancelled).toBe(slow.length);
  expect({ pending: stats.pending, claimed: stats.claimed, scheduled: stats.scheduled }).toEqual({ pending: 0, claimed: 0, scheduled: 0 });
  expect({ pending: outcomeStats.pending, claimed: outcomeStats.claimed, scheduled: outcomeStats.scheduled }).toEqual({ pending: 0, claimed: 0, scheduled: 0 });
  expect(Number(leftover!.n)).toBe(0);
  return figures;
}

describe.skipIf(!available)('PostgreSQL: several worker processes on one schema', () => {
  afterAll(async () => {
    for (const schema of schemas) await dropSchema(schema);
  });

  it('drain scripted runs: each ends once, as scripted; status and cancel work from another process', { timeout: 180_000 }, async () => {
    await runScenario({ name: 'no faults', runs: DEEP ? 10_000 : 2_000, workers: 3, leaseMs: 30_000, maxDelayMs: 2 });
  });

  it('SIGKILL of workers mid-run: re-delivered after lease expiry, nothing lost', { timeout: 180_000 }, async () => {
    const figures = await runScenario({
      name: 'SIGKILL',
      runs: DEEP ? 3_000 : 600,
      workers: 3,
      leaseMs: 1_500,
      maxDelayMs: 40,
      fault: async (ctx) => {
        let faults = 0;
        for (let round = 0; round < 2; round++) {
          await sleep(800);
          const victim = ctx.workers[round] as Worker;
          victim.child.kill('SIGKILL');
          await victim.exited;
          faults++;
          await ctx.spawn().ready;
        }
        return faults;
      },
    });
    expect(figures.redeliveries).toBeGreaterThan(0);
  });

  it('SIGSTOP past the lease, then SIGCONT: the late settlements are rejected', { timeout: 180_000 }, async () => {
    const figures = await runScenario({
      name: 'SIGSTOP past lease',
      runs: DEEP ? 3_000 : 600,
      workers: 3,
      leaseMs: 1_500,
      maxDelayMs: 40,
      fault: async (ctx) => {
        await sleep(800);
        const victim = ctx.workers[0] as Worker;
        ctx.paused.add(victim.pid);
        victim.child.kill('SIGSTOP');
        await sleep(4_000);
        victim.child.kill('SIGCONT');
        return 1;
      },
    });
    expect(figures.leaseLost).toBeGreaterThan(0);
  });

  it('pg_terminate_backend of every worker connection (LISTEN included), repeatedly', { timeout: 180_000 }, async () => {
    await runScenario({
      name: 'pg_terminate_backend',
      runs: DEEP ? 3_000 : 600,
      workers: 3,
      leaseMs: 1_500,
      maxDelayMs: 40,
      fault: async (ctx) => {
        let faults = 0;
        for (let round = 0; round < 3; round++) {
          await sleep(600);
          const rows = await admin<{ ok: boolean }>('SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = $1', [ctx.appName]);
          faults += rows.filter((r) => r.ok).length;
        }
        return faults;
      },
    });
  });

  it('connections cut at a TCP proxy between the workers and the server, repeatedly', { timeout: 180_000 }, async () => {
    await runScenario({
      name: 'TCP connections cut',
      runs: DEEP ? 3_000 : 600,
      workers: 3,
      leaseMs: 1_500,
      maxDelayMs: 40,
      proxy: true,
      fault: async (ctx) => {
        let faults = 0;
        for (let round = 0; round < 3; round++) {
          await sleep(600);
          faults += ctx.cutConnections();
        }
        return faults;
      },
    });
  });
});
