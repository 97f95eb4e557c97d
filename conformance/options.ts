import type { ManualClock } from '../core/clock.js';
import type { QueueConfig } from '../core/queue-config.js';
import type { QueueStore } from '../core/queue-store.js';

/**
 * What the suite hands a store factory. Pass every field through to the
 * store's constructor (all stores accept `StoreOptions`): the suite picks the
 * queue configuration per property and owns time.
 */
export interface StoreContext {
  /** The only time source the store may read. */
  clock: ManualClock;
  defaultQueueConfig?: Partial<QueueConfig>;
  queueConfigs?: Record<string, Partial<QueueConfig>>;
  /**
   * `false` for the store-level suite, which calls `reap()`/`promote()` itself;
   * `true` for the workflow suite, which relies on the store's own timers.
   */
  backgroundMaintenance: boolean;
}

/** Options of every conformance entry point. */
export interface ConformanceOptions<S extends QueueStore = QueueStore> {
  /** Shown in suite names and failure reports. */
  name: string;
  /** A fresh, isolated, empty store on every call. */
  createStore: (ctx: StoreContext) => S | Promise<S>;
  /** Releases a store made by `createStore`. Default: `store.close()`. */
  destroyStore?: (store: S) => void | Promise<void>;
  /**
   * Optional: `n` store instances over one fresh, empty backing store (one
   * SQLite file, one PostgreSQL schema), as `n` processes would open it, each
   * built from `ctx` (they share its clock). When given, the cross-instance
   * checks run: model properties with every command through a random
   * instance, `waitForCompletion` of a job settled or removed through another
   * instance, and a run reaped by an instance that runs no worker loop.
   * Without it those checks are skipped, with that reason, in the report (a
   * memory store cannot share its state, so it has nothing to offer here).
   */
  createStores?: (n: number, ctx: StoreContext) => S[] | Promise<S[]>;
  /** Releases the instances made by `createStores`, and their backing store. Default: `close()` on each. */
  destroyStores?: (stores: S[]) => void | Promise<void>;
  /**
   * Capability (default `false`): the store delivers `jobsAvailable` and
   * `cancelRequested` to subscribers of every instance sharing its storage,
   * not only of the instance that made the change (LISTEN/NOTIFY, a change
   * poll). When `true` (needs `createStores`), the suite requires every
   * operation that notifies in-process to reach a subscriber of another
   * instance too, within a bounded wait during which it advances the clock
   * in small steps (so a poll on the store's clock gets its turns). The
   * subscriber acts as a worker does: it subscribes, waits until its channel
   * is up (it hears a probe enqueue), and claims until the queue is empty
   * before the change, so a store may owe cross-process wakeups only to
   * subscribers that found their queue empty. When
   * `false`, those checks are skipped, with that reason, and workers on other
   * instances rely on their poll interval. `deadLettered` stays local to the
   * reaping instance either way: the reaper's commit already applied what
   * the dead-letter implies.
   */
  crossProcessNotifications?: boolean;
  /** fast-check runs per property. Default: `conformanceRuns().numRuns`. */
  numRuns?: number;
  /** fast-check seed, to replay a failure. Default: `conformanceRuns().seed` (random when unset). */
  seed?: number;
  /** fast-check path, to replay one shrunk failure exactly (printed in the failure report). */
  path?: string;
  /** fast-check `replayPath` of the command sequence (printed as a comment after the shrunk commands). */
  replayPath?: string;
  /**
   * Wall-clock milliseconds one store call (and `createStore`/`destroyStore`)
   * may take before the suite fails it as never settling. A failsafe against
   * hangs, not a speed requirement. Default `DEFAULT_STORE_CALL_TIMEOUT_MS`.
   */
  storeCallTimeoutMs?: number;
  /**
   * Where the check runs, for the replay command line of failure reports.
   * The vitest front-ends (`describe*`) and `runChecks` set it.
   */
  reportAs?: { testFile?: string; testName?: string };
}

/** Generous: a correct store on a loaded machine answers in far less. */
export const DEFAULT_STORE_CALL_TIMEOUT_MS = 30_000;

/** The environment's run settings: quick by default, deep for nightly runs. */
export interface ConformanceRuns {
  numRuns: number;
  seed: number | undefined;
  path: string | undefined;
  replayPath: string | undefined;
}

/** The quick default (CI): a property finishes in seconds on a small machine. */
export const QUICK_RUNS = 50;

/**
 * Reads `TAQUBA_CONFORMANCE_RUNS` (a number, or `deep` = 500),
 * `TAQUBA_CONFORMANCE_SEED`, `TAQUBA_CONFORMANCE_PATH` and `TAQUBA_CONFORMANCE_REPLAY_PATH`.
 */
export function conformanceRuns(env: Record<string, string | undefined> = process.env): ConformanceRuns {
  const raw = env.TAQUBA_CONFORMANCE_RUNS?.trim();
  let numRuns = QUICK_RUNS;
  if (raw === 'deep') numRuns = 500;
  else if (raw !== undefined && raw !== '') {
    const parsed = Number(raw);
    if (!Number.isSafeInteger(parsed) || parsed < 1) throw new TypeError(`TAQUBA_CONFORMANCE_RUNS must be a positive integer or "deep", got ${raw}`);
    numRuns = parsed;
  }
  const seedRaw = env.TAQUBA_CONFORMANCE_SEED?.trim();
  let seed: number | undefined;
  if (seedRaw !== undefined && seedRaw !== '') {
    seed = Number(seedRaw);
    if (!Number.isSafeInteger(seed)) throw new TypeError(`TAQUBA_CONFORMANCE_SEED must be an integer, got ${seedRaw}`);
  }
  const path = env.TAQUBA_CONFORMANCE_PATH?.trim() || undefined;
  const replayPath = env.TAQUBA_CONFORMANCE_REPLAY_PATH?.trim() || undefined;
  return { numRuns, seed, path, replayPath };
}

/** Resolved fast-check parameters of one property. */
export interface RunParameters {
  numRuns: number;
  seed?: number;
  path?: string;
  /** Set when replaying: stop at the first failure instead of shrinking again. */
  endOnFailure?: boolean;
}

/** Resolved fast-check parameters of one property (`scale` adjusts the run count of costly properties). */
export function runParameters(options: Pick<ConformanceOptions, 'numRuns' | 'seed' | 'path'>, scale = 1): RunParameters {
  const env = conformanceRuns();
  const numRuns = Math.max(1, Math.round((options.numRuns ?? env.numRuns) * scale));
  const seed = options.seed ?? env.seed;
  const path = options.path ?? env.path;
  const params: RunParameters = { numRuns };
  if (seed !== undefined) params.seed = seed;
  if (path !== undefined) {
    params.path = path;
    params.endOnFailure = true;
  }
  return params;
}

/** The command replay path, from options or the environment. */
export function replayPath(options: Pick<ConformanceOptions, 'replayPath'>): string | undefined {
  return options.replayPath ?? conformanceRuns().replayPath;
}

export async function destroy<S extends QueueStore>(options: ConformanceOptions<S>, store: S): Promise<void> {
  if (options.destroyStore) await options.destroyStore(store);
  else await store.close();
}

/** Releases instances made by `createStores`. */
export async function destroyAll<S extends QueueStore>(options: ConformanceOptions<S>, stores: S[]): Promise<void> {
  if (options.destroyStores) await options.destroyStores(stores);
  else for (const store of stores) await store.close();
}
