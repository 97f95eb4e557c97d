/**
 * The suite as plain data: named checks grouped by area, runnable without
 * vitest (`runChecks`), so the describe functions and the mutant tests share
 * one definition.
 */
import { ManualClock } from '../core/clock.js';
import type { QueueStore } from '../core/queue-store.js';
import { ConformanceError, canonical, outcome } from './compare.js';
import { destroy } from './options.js';
import type { ConformanceOptions, StoreContext } from './options.js';

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

/** Creates a store for one example, runs `body`, and always destroys the store. */
export async function withStore(
  options: ConformanceOptions,
  body: (store: QueueStore, clock: ManualClock) => Promise<void>,
  ctx: Partial<Omit<StoreContext, 'clock'>> = {},
): Promise<void> {
  const clock = new ManualClock(SUITE_START);
  const store = await options.createStore({ backgroundMaintenance: false, ...ctx, clock });
  try {
    await body(store, clock);
  } finally {
    await destroy(options, store);
  }
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
        await check.run(options);
        passed.push(name);
      } catch (error) {
        failures.push({ name, error });
      }
    }
  }
  if (failures.length > 0) {
    const summary = failures.map((f) => `- ${f.name}: ${String((f.error as Error)?.message ?? f.error).split('\n').slice(0, 4).join('\n    ')}`).join('\n');
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
