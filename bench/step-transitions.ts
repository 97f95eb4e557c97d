/**
 * Step-transition benchmark: N_RUNS concurrent runs of N_STEPS steps whose
 * runner continues at once, on the store named by --store (memory, sqlite,
 * postgres). Prints transitions per second, p50/p99 claim-to-commit latency,
 * and, measured in the same run, a baseline with the ratio against it.
 *
 *   npm run bench:transitions -- --store memory --runs 1000 --steps 10 --warmup 2 --repeat 5
 *   npm run bench:transitions -- --store memory --heap      (heap bytes per pending run)
 */
import { performance } from 'node:perf_hooks';
import { StepOutcome, WorkflowRuntime, defineWorkflow } from '../core/index.js';
import type { QueueStore, Step } from '../core/index.js';
import { openBenchStore, sqliteSynchronous, storeNames } from './stores.js';

interface Args {
  store: string;
  runs: number;
  steps: number;
  concurrency: number;
  /** Measured rounds; the figures printed are their medians. */
  repeat: number;
  /** Rounds run first and discarded, so the JIT has compiled the hot paths. */
  warmup: number;
  heap: boolean;
  heapRuns: number;
}

function parseArgs(argv: string[]): Args {
  const args: Args = {
    store: process.env.BENCH_STORE ?? 'memory',
    runs: Number(process.env.N_RUNS ?? 1000),
    steps: Number(process.env.N_STEPS ?? 10),
    concurrency: Number(process.env.CONCURRENCY ?? 16),
    repeat: Number(process.env.REPEAT ?? 5),
    warmup: Number(process.env.WARMUP ?? 2),
    heap: false,
    heapRuns: 100_000,
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = argv[i + 1];
    const takesValue = ['--store', '--runs', '--steps', '--concurrency', '--repeat', '--warmup', '--heap-runs'].includes(flag ?? '');
    if (takesValue && value === undefined) throw new Error(`${flag} needs a value`);
    if (takesValue) i++;
    if (flag === '--store') args.store = value as string;
    else if (flag === '--runs') args.runs = Number(value);
    else if (flag === '--steps') args.steps = Number(value);
    else if (flag === '--concurrency') args.concurrency = Number(value);
    else if (flag === '--repeat') args.repeat = Number(value);
    else if (flag === '--warmup') args.warmup = Number(value);
    else if (flag === '--heap-runs') args.heapRuns = Number(value);
    else if (flag === '--heap') args.heap = true;
    else throw new Error(`unknown argument ${flag}; stores: ${storeNames.join(', ')}`);
  }
  for (const [name, value] of Object.entries({ runs: args.runs, steps: args.steps, concurrency: args.concurrency, repeat: args.repeat })) {
    if (!Number.isSafeInteger(value) || value < 1) throw new Error(`--${name} must be a positive integer, got ${value}`);
  }
  if (!Number.isSafeInteger(args.warmup) || args.warmup < 0) throw new Error(`--warmup must be a non-negative integer, got ${args.warmup}`);
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
  /** Claim-to-commit latency of every step, ms, ascending. */
  latenciesMs: number[];
}

function median(values: number[]): number {
  return percentile(
    [...values].sort((a, b) => a - b),
    50,
  );
}

/**
 * The same chain as a workflow definition: one named step that runs itself
 * again with a counter until the last, so the bench measures what
 * `defineWorkflow` adds (codec, ctx, named-step headers) over the runner.
 */
function chainWorkflow(steps: number) {
  return defineWorkflow({
    name: 'chain',
    steps: { step: (n: number, ctx) => (n + 1 < steps ? ctx.next('step', n + 1) : ctx.succeed(n)) },
  });
}

/** Drives `runs` x `steps` transitions through a WorkflowRuntime on `store`: the low-level runner, or (`path: 'workflow'`) a definition. */
export async function measureTransitions(
  store: QueueStore,
  runs: number,
  steps: number,
  concurrency: number,
  onProgress?: (done: number) => void,
  path: 'runner' | 'workflow' = 'runner',
): Promise<TransitionResult> {
  const total = runs * steps;
  let ended = 0;
  let settled = 0;
  const startedAt = new Map<string, number>();
  const latencies: number[] = [];
  let finished!: () => void;
  const allEnded = new Promise<void>((resolve) => (finished = resolve));
  const workflow = chainWorkflow(steps);
  const runtime = new WorkflowRuntime({
    store,
    maxConcurrentSteps: concurrency,
    pollIntervalMs: 50,
    ...(path === 'workflow'
      ? { workflows: [workflow] }
      : { runner: (step: Step) => (step.stepNumber + 1 < steps ? StepOutcome.continue(step.payload) : StepOutcome.succeed(step.payload)) }),
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
  for (let i = 0; i < runs; i++) {
    if (path === 'workflow') await runtime.start(workflow, { runId: `bench-${i}`, input: 0 });
    else await runtime.submit({ runId: `bench-${i}`, input });
  }
  const controller = new AbortController();
  const start = performance.now();
  const worker = runtime.run(controller.signal);
  await allEnded;
  const seconds = (performance.now() - start) / 1000;
  controller.abort();
  await worker;
  latencies.sort((a, b) => a - b);
  return {
    transitions: total,
    seconds,
    perSecond: total / seconds,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    latenciesMs: latencies,
  };
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

/** One round: our runtime on a fresh store and, for SQLite, the raw limit and plainjob at the same synchronous level. */
interface Round {
  ours: TransitionResult;
  /** The same chain as a `defineWorkflow` definition, on a fresh store of the same kind. */
  workflow: TransitionResult;
  rawTps?: number;
  /** The store's own SQL for the same transitions, nothing around it (see bareTransitionSqlTps). */
  bareSqlTps?: number;
  plainjob?: { perSecond: number } | { skipped: string };
}

async function measureRound(args: Args, onOpened?: (label: string) => void): Promise<Round> {
  const bench = await openBenchStore(args.store);
  onOpened?.(bench.label);
  let ours: TransitionResult;
  try {
    ours = await measureTransitions(bench.store, args.runs, args.steps, args.concurrency);
  } finally {
    await bench.close();
  }
  const onWorkflow = await openBenchStore(args.store);
  let workflow: TransitionResult;
  try {
    workflow = await measureTransitions(onWorkflow.store, args.runs, args.steps, args.concurrency, undefined, 'workflow');
  } finally {
    await onWorkflow.close();
  }
  if (args.store !== 'sqlite') return { ours, workflow };
  const { bareTransitionSqlTps, rawSqliteWriteTps, plainjobChainTps } = await import('./sqlite-baselines.js');
  const rawTps = rawSqliteWriteTps({ synchronous: sqliteSynchronous }).perSecond;
  const bareSqlTps = bareTransitionSqlTps({ synchronous: sqliteSynchronous, runs: args.runs, steps: args.steps, batch: args.concurrency }).perSecond;
  const plain = await plainjobChainTps({ synchronous: sqliteSynchronous, runs: args.runs, steps: args.steps });
  return { ours, workflow, rawTps, bareSqlTps, plainjob: plain.skipped ? { skipped: plain.skipped } : { perSecond: plain.perSecond } };
}

function printSqliteBaselines(rounds: Round[], oursPerSecond: number): void {
  const raw = median(rounds.map((r) => r.rawTps ?? Number.NaN));
  console.log(`raw sqlite write tx/s    ${raw.toFixed(0)}  (better-sqlite3, one-row BEGIN IMMEDIATE/COMMIT, WAL, synchronous=${sqliteSynchronous}; median)`);
  console.log(`ratio runtime/raw        ${median(rounds.map((r) => r.ours.perSecond / (r.rawTps ?? Number.NaN))).toFixed(3)}  (median of per-round ratios)`);
  console.log(
    `bare transition SQL/s    ${median(rounds.map((r) => r.bareSqlTps ?? Number.NaN)).toFixed(0)}  (the store's statements alone, same batch size; median; its ratio to raw ${median(rounds.map((r) => (r.bareSqlTps ?? Number.NaN) / (r.rawTps ?? Number.NaN))).toFixed(3)})`,
  );
  console.log(
    `ratio runtime/bare SQL   ${median(rounds.map((r) => r.ours.perSecond / (r.bareSqlTps ?? Number.NaN))).toFixed(3)}  (median of per-round ratios)`,
  );
  const skipped = rounds.find((r) => r.plainjob && 'skipped' in r.plainjob)?.plainjob as { skipped: string } | undefined;
  if (skipped) {
    console.log(`plainjob chain           skipped: ${skipped.skipped}`);
    return;
  }
  const plain = rounds.map((r) => (r.plainjob as { perSecond: number }).perSecond);
  console.log(`plainjob chain/s         ${median(plain).toFixed(0)}  (each job enqueues the next; median)`);
  console.log(
    `ratio runtime/plainjob   ${median(rounds.map((r, i) => r.ours.perSecond / (plain[i] as number))).toFixed(2)}  (median of per-round ratios; ours ${oursPerSecond.toFixed(0)}/s)`,
  );
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (args.heap) {
    const { store, close, label } = await openBenchStore(args.store);
    try {
      if (!(globalThis as { gc?: unknown }).gc) console.warn('note: run with NODE_OPTIONS=--expose-gc for exact heap figures');
      const perRun = await measureHeapPerPendingRun(store, args.heapRuns);
      console.log(`heap per pending run (${label}, ${args.heapRuns} runs submitted, none claimed): ${perRun.toFixed(0)} bytes`);
    } finally {
      await close();
    }
    return;
  }
  // The header names the first round's store (no store is opened just for it).
  const header = (label: string): void =>
    console.log(
      `step transitions on ${label}: ${args.runs} runs x ${args.steps} steps, maxConcurrentSteps ${args.concurrency}, ${args.warmup} warm-up + ${args.repeat} measured rounds, each on a fresh store`,
    );
  const rounds: Round[] = [];
  for (let i = 0; i < args.warmup + args.repeat; i++) {
    const round = await measureRound(args, i === 0 ? header : undefined);
    const warm = i < args.warmup;
    if (!warm) rounds.push(round);
    const extra =
      round.rawTps === undefined
        ? ''
        : `, raw ${round.rawTps.toFixed(0)} tx/s, bare SQL ${round.bareSqlTps?.toFixed(0)}/s, plainjob ${'perSecond' in (round.plainjob ?? {}) ? (round.plainjob as { perSecond: number }).perSecond.toFixed(0) + '/s' : 'skipped'}`;
    process.stderr.write(
      `  round ${i + 1}/${args.warmup + args.repeat}${warm ? ' (warm-up, discarded)' : ''}: ${round.ours.perSecond.toFixed(0)} transitions/s, defineWorkflow ${round.workflow.perSecond.toFixed(0)}/s${extra}\n`,
    );
  }
  const perSecond = median(rounds.map((r) => r.ours.perSecond));
  const latencies = rounds.flatMap((r) => r.ours.latenciesMs).sort((a, b) => a - b);
  const transitions = args.runs * args.steps;
  const baseline = await promiseHops(transitions);
  console.log(
    `transitions/s            ${perSecond.toFixed(0)}  (median of ${rounds.length} rounds of ${transitions}; min ${Math.min(...rounds.map((r) => r.ours.perSecond)).toFixed(0)}, max ${Math.max(...rounds.map((r) => r.ours.perSecond)).toFixed(0)})`,
  );
  console.log(`p50 claim-to-commit      ${percentile(latencies, 50).toFixed(3)} ms`);
  console.log(`p99 claim-to-commit      ${percentile(latencies, 99).toFixed(3)} ms`);
  console.log(`baseline promise hops/s  ${baseline.toFixed(0)}  (same count, no store)`);
  console.log(`ratio runtime/baseline   ${(perSecond / baseline).toFixed(4)}`);
  console.log(
    `defineWorkflow path/s    ${median(rounds.map((r) => r.workflow.perSecond)).toFixed(0)}  (the same chain as a workflow definition; ratio to the runner ${median(rounds.map((r) => r.workflow.perSecond / r.ours.perSecond)).toFixed(3)}, median of per-round ratios)`,
  );
  if (args.store === 'sqlite') printSqliteBaselines(rounds, perSecond);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
