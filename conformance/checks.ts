/**
 * The suite as plain data: named checks grouped by area, runnable without
 * vitest (`runChecks`), so the describe functions and the mutant tests share
 * one definition.
 */
import fc from 'fast-check';
import { ManualClock } from '../core/clock.js';
import type { QueueStore } from '../core/queue-store.js';
import { ConformanceError, canonical, outcome, show } from './compare.js';
import { DEFAULT_STORE_CALL_TIMEOUT_MS, destroy } from './options.js';
import type { ConformanceOptions, RunParameters, StoreContext } from './options.js';

/** One named check of the suite. */
export interface ConformanceCheck {
  name: string;
  run: (options: ConformanceOptions) => Promise<void>;
  /** Set when the check cannot run on this store; it is reported as skipped, with the reason. */
  skip?: string;
}

/** A group of checks, e.g. "store operations" or "workflow properties". */
export interface ConformanceGroup {
  name: string;
  checks: ConformanceCheck[];
}

export const SUITE_START = Date.parse('2026-01-01T00:00:00Z');

/**
 * Stores (by the factory that made them: options are copied per check) one
 * of whose calls never settled: later calls fail at once instead of waiting again.
 */
const hungStores = new WeakMap<object, ConformanceError>();

/** Short text of a call's arguments for failure messages. */
function brief(args: unknown[]): string {
  const text = args.map((arg) => show(arg)).join(', ');
  return text.length > 160 ? `${text.slice(0, 160)}…` : text;
}

/**
 * Every store call the suite and the runtimes under test make goes through
 * this guard: it races each call against a wall-clock deadline (a call that
 * never settles fails naming the operation, instead of hanging the run),
 * counts calls in flight, and remembers the latest call, so a timer storm
 * can be reported with the store operation that preceded it.
 */
export class StoreGuard {
  /** The guarded store: pass this one on, never the inner store. */
  readonly store: QueueStore;
  /** Set once a call missed its deadline; it is reported in place of any later error. */
  failure: ConformanceError | undefined;
  private latest: string | undefined;
  private calls = 0;
  private readonly timeoutMs: number;

  constructor(
    readonly inner: QueueStore,
    private readonly options: ConformanceOptions,
  ) {
    this.timeoutMs = options.storeCallTimeoutMs ?? DEFAULT_STORE_CALL_TIMEOUT_MS;
    this.failure = hungStores.get(options.createStore);
    this.store = new Proxy(inner, {
      get: (target, property, receiver) => {
        const value = Reflect.get(target, property, receiver) as unknown;
        if (typeof value !== 'function') return value;
        const name = String(property);
        // subscribe is synchronous; waitForCompletion waits on clock time by design, so it does not count as busy.
        if (name === 'subscribe') return (value as (...args: unknown[]) => unknown).bind(target);
        const counted = name !== 'waitForCompletion';
        return (...args: unknown[]): unknown => {
          const text = `${name}(${brief(args)})`;
          this.latest = text;
          if (this.failure) return Promise.reject(this.refused(text));
          const result = (value as (...a: unknown[]) => unknown).apply(target, args);
          if (!isThenable(result)) return result;
          if (counted) this.calls++;
          const settled = this.within(text, result);
          if (counted) void settled.then(this.done, this.done);
          return settled;
        };
      },
    });
  }

  private readonly done = (): void => {
    this.calls--;
  };

  /** Store calls in flight (not counting `waitForCompletion`). */
  inFlight(): number {
    return this.calls;
  }

  /** The latest store call made, as text. */
  lastCall(): string | undefined {
    return this.latest;
  }

  private refused(text: string): ConformanceError {
    return new ConformanceError(`${text} not attempted: an earlier store call never settled (${this.failure?.message ?? ''})`);
  }

  /** Races `promise` (the store call `text`) against the wall-clock deadline. */
  within<T>(text: string, promise: PromiseLike<T>): Promise<T> {
    return withinDeadline(text, promise, this.timeoutMs, (error) => {
      this.failure ??= error;
      hungStores.set(this.options.createStore, this.failure);
    });
  }

  /**
   * The error to report for `error`: the hang when a call never settled (the
   * root cause; what followed is noise), a timer storm with the store call
   * before it, or `error` itself.
   */
  explain(error: unknown): unknown {
    if (this.failure) return this.failure;
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- a caught value may be anything
    if ((error as { code?: unknown })?.code === 'TIMER_STORM') {
      const message = (error as Error).message;
      return new ConformanceError(`timer storm in the store's timers (latest store call: store.${this.latest ?? '(none)'}):\n  ${message}`, { cause: error });
    }
    return error;
  }

  /** Destroys the store; skipped (left to the garbage collector) when a call already hung. */
  async destroy(): Promise<void> {
    if (this.failure) {
      void Promise.resolve()
        .then(() => destroy(this.options, this.inner))
        .catch(() => undefined);
      return;
    }
    await this.within(
      'destroyStore(store)',
      Promise.resolve().then(() => destroy(this.options, this.inner)),
    );
  }
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return value !== null && (typeof value === 'object' || typeof value === 'function') && typeof (value as { then?: unknown }).then === 'function';
}

/**
 * Resolves or rejects as `promise` does, or rejects with a `ConformanceError`
 * naming `text` after `timeoutMs` of wall time (real time on purpose: the
 * suite's `ManualClock` does not move while a call hangs).
 */
function withinDeadline<T>(text: string, promise: PromiseLike<T>, timeoutMs: number, onTimeout: (error: ConformanceError) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      const error = new ConformanceError(
        `store call ${text} never settled: no result and no error after ${timeoutMs} ms of wall time (every store call must resolve or reject)`,
      );
      onTimeout(error);
      reject(error);
    }, timeoutMs);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

/**
 * Creates a store for `ctx` (under the deadline too), runs `body` with its
 * guard, and always destroys the store. Failures come out explained (see
 * `StoreGuard.explain`).
 */
export async function withGuardedStore<T>(options: ConformanceOptions, ctx: StoreContext, body: (guard: StoreGuard) => Promise<T>): Promise<T> {
  const known = hungStores.get(options.createStore);
  if (known) throw new ConformanceError(`createStore not attempted: an earlier store call never settled (${known.message})`);
  const timeoutMs = options.storeCallTimeoutMs ?? DEFAULT_STORE_CALL_TIMEOUT_MS;
  const raw = await withinDeadline(
    'createStore(ctx)',
    Promise.resolve().then(() => options.createStore(ctx)),
    timeoutMs,
    (error) => hungStores.set(options.createStore, error),
  );
  const guard = new StoreGuard(raw, options);
  let result: T;
  try {
    result = await body(guard);
  } catch (error) {
    await guard.destroy().catch(() => undefined);
    throw guard.explain(error);
  }
  try {
    await guard.destroy();
  } catch (error) {
    throw guard.explain(error);
  }
  return result;
}

/** Creates a store for one example, runs `body`, and always destroys the store. */
export async function withStore(
  options: ConformanceOptions,
  body: (store: QueueStore, clock: ManualClock) => Promise<void>,
  ctx: Partial<Omit<StoreContext, 'clock'>> = {},
): Promise<void> {
  const clock = new ManualClock(SUITE_START);
  await withGuardedStore(options, { backgroundMaintenance: false, ...ctx, clock }, (guard) => body(guard.store, clock));
}

/** Asserts two values are equal in canonical form. */
export function assertEqual(what: string, actual: unknown, expected: unknown): void {
  const a = canonical(actual);
  const e = canonical(expected);
  if (a !== e) throw new ConformanceError(`${what}:\n  expected: ${e}\n  actual:   ${a}`);
}

export function assert(what: string, condition: unknown): asserts condition {
  if (!condition) throw new ConformanceError(what);
}

/** Asserts the call rejects with a typed error of `code`; returns the error. */
export async function assertCode(what: string, call: () => Promise<unknown>, code: string): Promise<void> {
  const result = await outcome(call);
  if (result.ok) throw new ConformanceError(`${what}: expected error ${code}, but it returned ${canonical(result.value)}`);
  if (result.code !== code) throw new ConformanceError(`${what}: expected error ${code}, got ${result.code} (${result.message})`);
}

/** Runs every check; rejects with one error naming each failed check (and its first lines). */
export async function runChecks(groups: ConformanceGroup[], options: ConformanceOptions): Promise<{ passed: string[]; skipped: string[] }> {
  const passed: string[] = [];
  const skipped: string[] = [];
  const failures: Array<{ name: string; error: unknown }> = [];
  for (const group of groups) {
    for (const check of group.checks) {
      const name = `${group.name} > ${check.name}`;
      if (check.skip) {
        skipped.push(`${name} (${check.skip})`);
        continue;
      }
      try {
        await check.run({ ...options, reportAs: { ...options.reportAs, testName: check.name } });
        passed.push(name);
      } catch (error) {
        failures.push({ name, error });
      }
    }
  }
  if (failures.length > 0) {
    const summary = failures
      .map(
        (f) =>
          `- ${f.name}: ${String((f.error as { message?: unknown } | null | undefined)?.message ?? f.error)
            .split('\n')
            .slice(0, 4)
            .join('\n    ')}`,
      )
      .join('\n');
    throw new AggregateError(
      failures.map((f) => f.error),
      `${options.name}: ${failures.length} conformance check(s) failed:\n${summary}`,
    );
  }
  return { passed, skipped };
}

/**
 * Marks checks as skipped, with a reason, where `reason(group, check)`
 * returns one: how an adapter that does not implement a rule yet keeps that
 * gap visible in its report instead of dropping the checks.
 */
export function skipChecks(groups: ConformanceGroup[], reason: (group: string, check: string) => string | undefined): ConformanceGroup[] {
  return groups.map((group) => ({
    name: group.name,
    checks: group.checks.map((check) => {
      const why = check.skip ?? reason(group.name, check.name);
      return why === undefined ? check : { ...check, skip: why };
    }),
  }));
}

// ---- property failures ---------------------------------------------------------

/** `text` as one shell word. */
function shellWord(text: string): string {
  return /^[\w./:=@+-]+$/.test(text) ? text : `'${text.replace(/'/g, "'\\''")}'`;
}

/** The command line that replays one failure: the environment of `conformanceRuns` and the vitest command. */
export function replayCommand(options: Pick<ConformanceOptions, 'reportAs'>, seed: number, path: string | undefined, commandsReplayPath?: string): string {
  const env = [`TAQUBA_CONFORMANCE_SEED=${seed}`];
  if (path) env.push(`TAQUBA_CONFORMANCE_PATH=${shellWord(path)}`);
  if (commandsReplayPath) env.push(`TAQUBA_CONFORMANCE_REPLAY_PATH=${shellWord(commandsReplayPath)}`);
  const file = options.reportAs?.testFile ?? '<your conformance test file>';
  const name = options.reportAs?.testName;
  // vitest's -t is a regular expression: escape the check's name.
  const filter = name === undefined ? '' : ` -t ${shellWord(name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))}`;
  return `${env.join(' ')} npx vitest run ${shellWord(file)}${filter}`;
}

/**
 * Runs a property like `fc.assert`, but a failure throws a `ConformanceError`
 * whose message starts with what broke (the failing command, expected and
 * actual: the property's own error), then the counterexample, the seed and
 * path, and the exact command line that replays it. fast-check's report puts
 * that error only in `cause`, which many reporters (JSON, CI summaries) drop.
 */
export async function assertProperty<Ts extends [unknown, ...unknown[]]>(
  property: fc.IAsyncProperty<Ts>,
  options: ConformanceOptions,
  params: RunParameters,
): Promise<void> {
  const details = await fc.check(property, params);
  if (!details.failed) return;
  const error = details.errorInstance;
  const what = error instanceof Error ? error.message : String(error);
  const counterexample = details.counterexample === null ? '(none)' : fc.stringify(details.counterexample);
  // fc.commands prints its own replay path as a comment in the counterexample.
  const commandsReplayPath = /\/\*replayPath="([^"]*)"\*\//.exec(counterexample)?.[1];
  const lines = [
    what,
    `[${options.name}] property${options.reportAs?.testName ? ` "${options.reportAs.testName}"` : ''} failed after ${details.numRuns} run(s), shrunk ${details.numShrinks} time(s): seed ${details.seed}, path ${details.counterexamplePath ?? '(none)'}`,
    `Counterexample: ${counterexample}`,
    `Replay: ${replayCommand(options, details.seed, details.counterexamplePath ?? undefined, commandsReplayPath)}`,
  ];
  throw new ConformanceError(lines.join('\n'), { cause: error });
}
