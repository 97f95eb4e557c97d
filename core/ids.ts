import { randomFillSync } from 'node:crypto';
import { monotonicFactory } from 'ulid';

// ulid's default PRNG makes one crypto call per character; a pooled buffer
// keeps the same crypto-quality randomness at a fraction of the cost.
const pool = new Uint8Array(4096);
let poolIndex = pool.length;
function pooledRandom(): number {
  if (poolIndex >= pool.length) {
    randomFillSync(pool);
    poolIndex = 0;
  }
  return (pool[poolIndex++] as number) / 256;
}

const nextUlid = monotonicFactory(pooledRandom);

/**
 * A new ULID. Ids taken in sequence in one process sort in the order they
 * were taken, even within one millisecond (monotonic factory).
 */
export function newId(nowMs: number = Date.now()): string {
  return nextUlid(nowMs);
}

/**
 * The id order of every store: the order of the ids' UTF-8 bytes, which is
 * Unicode code point order. It decides claim tie-breaks among equal
 * priorities, `deadJobs` paging and the order in which a batch locks jobs.
 * SQL stores get it from byte-wise collations (SQLite's BINARY, PostgreSQL's
 * "C"); JavaScript's `<` compares UTF-16 code units instead, which puts
 * U+E000..U+FFFF after the characters above U+FFFF (surrogate pairs), so
 * code in JavaScript compares ids with this.
 */
export function compareIds(a: string, b: string): number {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return codePointRank(x) - codePointRank(y);
  }
  return a.length - b.length;
}

/**
 * Whether JavaScript's `<` already orders `id` against any other such id as
 * `compareIds` does: no code unit at or above U+D800 (ULIDs and ASCII ids),
 * so a sorted structure may compare natively, which is several times faster.
 */
export function hasNativeIdOrder(id: string): boolean {
  return !NON_NATIVE_ORDER.test(id);
}

const NON_NATIVE_ORDER = /[\uD800-\uFFFF]/;

/**
 * A UTF-16 code unit moved so that units compare in code point order:
 * surrogates (U+D800..U+DFFF, the halves of code points above U+FFFF) go
 * after U+E000..U+FFFF. At the first unit two strings differ in, this
 * decides their code point order.
 */
function codePointRank(unit: number): number {
  if (unit < 0xd800) return unit;
  return unit < 0xe000 ? unit + 0x2000 : unit - 0x800;
}
