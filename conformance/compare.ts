/**
 * Comparison helpers: a canonical text form of results and records, so a
 * mismatch prints both sides in full and `undefined`-valued keys (which the
 * contract forbids: optional fields are absent) show up.
 */

/** Thrown when the store under test disagrees with the reference model or an invariant. */
export class ConformanceError extends Error {
  override name = 'ConformanceError';
}

function canonicalValue(value: unknown): unknown {
  if (value === undefined) return '<undefined>';
  if (value instanceof Uint8Array) return `bytes[${Array.from(value).join(',')}]`;
  if (Array.isArray(value)) return value.map(canonicalValue);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
    for (const key of Object.keys(value).sort()) out[key] = canonicalValue((value as Record<string, unknown>)[key]);
    return out;
  }
  return value;
}

/** Stable JSON with sorted keys, bytes as `bytes[...]`, and `undefined` made visible. */
export function canonical(value: unknown): string {
  return JSON.stringify(canonicalValue(value));
}

/** Throws a `ConformanceError` naming `what` when the canonical forms differ. */
export function expectSame(what: string, expected: unknown, actual: unknown): void {
  const e = canonical(expected);
  const a = canonical(actual);
  if (e !== a) throw new ConformanceError(`${what}:\n  expected (model): ${e}\n  actual (store):   ${a}`);
}

/** Compact, readable text of a command argument (bytes as `[1,2]`, no quotes on plain keys). */
export function show(value: unknown): string {
  if (value === undefined) return 'undefined';
  if (value instanceof Uint8Array) return `[${Array.from(value).join(',')}]`;
  if (Array.isArray(value)) return `[${value.map(show).join(', ')}]`;
  if (value !== null && typeof value === 'object') {
    const parts = Object.keys(value)
      .filter((key) => (value as Record<string, unknown>)[key] !== undefined)
      .map((key) => `${/^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? key : JSON.stringify(key)}: ${show((value as Record<string, unknown>)[key])}`);
    return `{${parts.join(', ')}}`;
  }
  return JSON.stringify(value);
}

/** The outcome of one call: its value, or the `code` of the error it threw. */
export type Outcome<T> = { ok: true; value: T } | { ok: false; code: string; message: string };

export async function outcome<T>(call: () => T | Promise<T>): Promise<Outcome<T>> {
  try {
    return { ok: true, value: await call() };
  } catch (error) {
    const caught = error as { code?: unknown; name?: unknown; message?: unknown } | null | undefined; // a caught value may be anything
    const code = caught?.code;
    return {
      ok: false,
      code: typeof code === 'string' ? code : `<no code: ${String(caught?.name)}>`,
      message: String(caught?.message ?? error),
    };
  }
}

/** Compares two outcomes: same error code, or same value after `normalize` of the store's value. */
export function expectSameOutcome<T>(what: string, expected: Outcome<T>, actual: Outcome<T>, normalize: (value: T) => unknown = (v) => v): void {
  if (!expected.ok || !actual.ok) {
    const e = expected.ok ? `returned ${canonical(expected.value)}` : `threw ${expected.code}`;
    const a = actual.ok ? `returned ${canonical(normalize(actual.value))}` : `threw ${actual.code} (${actual.message})`;
    if (expected.ok !== actual.ok || (!expected.ok && !actual.ok && expected.code !== actual.code)) {
      throw new ConformanceError(`${what}:\n  expected (model): ${e}\n  actual (store):   ${a}`);
    }
    return;
  }
  expectSame(what, expected.value, normalize(actual.value));
}
