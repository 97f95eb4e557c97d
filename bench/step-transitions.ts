/**
 * Step-transition benchmark: N_RUNS concurrent runs of N_STEPS steps whose
 * runner continues at once, on the store named by --store (memory, sqlite,
 * postgres). Prints transitions per second, p50/p99 claim-to-commit latency,
 * and, measured in the same run, a baseline with the ratio against it.
 *
 *   npm run bench:transitions -- --store memory --runs 1000 --steps 10
 *   npm run bench:transitions -- --store memory --heap      (heap bytes per pending run)
 */
import { performance } from 'node:perf_hooks';
import { StepOutcome, WorkflowRuntime } from '../core/index.js';
import type { QueueStore } from '../core/index.js';
import { openBenchStore, sqliteSynchronous, storeNames } from './stores.js';

interface Args {
  store: string;
  runs: number;
  steps: number;
  concurrency: number;
  heap: boolean;
  heapRuns: number;
}

function parseArgs(argv: string[]): Args {
  const args: Args = {
    store: process.env.BENCH_STORE ?? 'memory',
    runs: Number(process.env.N_RUNS ?? 1000),
    steps: Number(process.env.N_STEPS ?? 10),
    concurrency: Number(process.env.CONCURRENCY ?? 16),
    heap: false,
    heapRuns: 100_000,
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = argv[i + 1];
    const takesValue = ['--store', '--runs', '--steps', '--concurrency', '--heap-runs'].includes(flag ?? '');
    if (takesValue && value === undefined) throw new Error(`${flag} needs a value`);
    if (takesValue) i++;
    if (flag === '--store') args.store = value as string;
    else if (flag === '--runs') args.runs = Number(value);
    else if (flag === '--steps') args.steps = Number(value);
    else if (flag === '--concurrency') args.concurrency = Number(value);
    else if (flag === '--heap-runs') args.heapRuns = Number(value);
    else if (flag === '--heap') args.heap = true;
    else throw new Error(`unknown argument ${flag}; stores: ${storeNames.join(', ')}`);
  }
  for (const [name, value] of Object.entries({ runs: args.runs, steps: args.steps, concurrency: args.concurrency })) {
    if (!Number.isSafeInteger(value) || value < 1) throw new Error(`--${name} must be a positive integer, got ${value}`);
  }
  return args;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

/** The baseline: as many bare awaited promise hops as there are transitions, no store. */
async function promiseHops(count: number): Promise<number> {
  const start = performance.now();
  for (let i = 0; i < count; i++) await Promise.resolve(i);
  return count / ((performance.now() - start) / 1000);
}

export interface TransitionResult {
  transitions: number;
  seconds: number;
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
}

/** Drives `runs` x `steps` transitions through a WorkflowRuntime on `store`. */
export async function measureTransitions(store: QueueStore, runs: number, steps: number, concurrency: number, onProgress?: (done: number) => void): Promise<TransitionResult> {
  const total = runs * steps;
  let ended = 0;
  let settled = 0;
  const startedAt = new Map<string, number>();
  const latencies: number[] = [];
  let finished!: () => void;
  const allEnded = new Promise<void>((resolve) => (finished = resolve));
  const runtime = new WorkflowRuntime({
    store,
    maxConcurrentSteps: concurrency,
    pollIntervalMs: 50,
    runner: (step) => (step.stepNumber + 1 < steps ? StepOutcome.continue(step.payload) : StepOutcome.succeed(step.payload)),
    hook: () => {
      if (++ended === runs) finished();
    },
  });
  runtime.on('stepStarted', (e) => startedAt.set(e.jobId, performance.now()));
  runtime.on('stepSettled', (e) => {
    const t0 = startedAt.get(e.jobId);
    if (t0 !== undefined) latencies.push(performance.now() - t0);
    startedAt.delete(e.jobId);
    if (++settled % Math.max(1, Math.floor(total / 10)) === 0) onProgress?.(settled);
  });
  runtime.on('storeError', (e) => console.error(`store error in ${e.operation}:`, e.error));
  const input = new Uint8Array(64);
  for (let i = 0; i < runs; i++) await runtime.submit({ runId: `bench-${i}`, input });
  const controller = new AbortController();
  const start = performance.now();
  const worker = runtime.run(controller.signal);
  await allEnded;
  const seconds = (performance.now() - start) / 1000;
  controller.abort();
  await worker;
  latencies.sort((a, b) => a - b);
  return { transitions: total, seconds, perSecond: total / seconds, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99) };
}

/** Heap bytes per pending run: `runs` submitted, none claimed. Needs --expose-gc for exact figures. */
export async function measureHeapPerPendingRun(store: QueueStore, runs: number): Promise<number> {
  const gc = (globalThis as { gc?: () => void }).gc;
  const collect = (): number => {
    gc?.();
    gc?.();
    return process.memoryUsage().heapUsed;
  };
  const runtime = new WorkflowRuntime({ store, runner: () => StepOutcome.succeed(new Uint8Array()) });
  const input = new Uint8Array(64);
  // Warm up code paths so their one-off allocations do not count.
  for (let i = 0; i < 100; i++) await runtime.submit({ runId: `warm-${i}`, input });
  const before = collect();
  for (let i = 0; i < runs; i++) await runtime.submit({ runId: `pending-${i}`, input, headers: { tenant: 'acme' } });
  const after = collect();
  return (after - before) / runs;
}

/** SQLite: the raw write-transaction limit and plainjob's chain workload, same sync level, same run. */
async function printSqliteBaselines(result: TransitionResult, args: Args): Promise<void> {
  const { rawSqliteWriteTps, plainjobChainTps } = await import('./sqlite-baselines.js');
  const raw = rawSqliteWriteTps({ synchronous: sqliteSynchronous });
  console.log(`raw sqlite write tx/s    ${raw.perSecond.toFixed(0)}  (better-sqlite3, one-row BEGIN IMMEDIATE/COMMIT, WAL, synchronous=${sqliteSynchronous})`);
  console.log(`ratio runtime/raw        ${(result.perSecond / raw.perSecond).toFixed(3)}`);
  const plain = await plainjobChainTps({ synchronous: sqliteSynchronous, runs: args.runs, steps: args.steps });
  if (plain.skipped) {
    console.log(`plainjob chain           skipped: ${plain.skipped}`);
    return;
  }
  console.log(`plainjob chain/s         ${plain.perSecond.toFixed(0)}  (${args.runs} x ${args.steps}, each job enqueues the next)`);
  console.log(`ratio runtime/plainjob   ${(result.perSecond / plain.perSecond).toFixed(2)}`);
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const { store, close, label } = await openBenchStore(args.store);
  try {
    if (args.heap) {
      if (!(globalThis as { gc?: unknown }).gc) console.warn('note: run with NODE_OPTIONS=--expose-gc for exact heap figures');
      const perRun = await measureHeapPerPendingRun(store, args.heapRuns);
      console.log(`heap per pending run (${label}, ${args.heapRuns} runs submitted, none claimed): ${perRun.toFixed(0)} bytes`);
      return;
    }
    console.log(`step transitions on ${label}: ${args.runs} runs x ${args.steps} steps, maxConcurrentSteps ${args.concurrency}`);
    // Warm the JIT on a separate store first, so the figure is steady-state rather than compile time.
    const warm = await openBenchStore(args.store);
    await measureTransitions(warm.store, Math.min(args.runs, 500), args.steps, args.concurrency).finally(() => warm.close());
    const result = await measureTransitions(store, args.runs, args.steps, args.concurrency, (done) => process.stderr.write(`  ${done}/${args.runs * args.steps} transitions\r`));
    process.stderr.write('\n');
    const baseline = await promiseHops(result.transitions);
    console.log(`transitions/s            ${result.perSecond.toFixed(0)}  (${result.transitions} in ${result.seconds.toFixed(2)} s)`);
    console.log(`p50 claim-to-commit      ${result.p50Ms.toFixed(3)} ms`);
    console.log(`p99 claim-to-commit      ${result.p99Ms.toFixed(3)} ms`);
    console.log(`baseline promise hops/s  ${baseline.toFixed(0)}  (same count, no store)`);
    console.log(`ratio runtime/baseline   ${(result.perSecond / baseline).toFixed(4)}`);
    if (args.store === 'sqlite') await printSqliteBaselines(result, args);
  } finally {
    await close();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
