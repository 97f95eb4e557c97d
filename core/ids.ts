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

/** UTF-16 unit → its rank in code point order (surrogates encode code points above U+FFFF). */
function codePointRank(unit: number): number {
  return unit < 0xd800 ? unit : unit < 0xe000 ? unit + 0x2000 : unit - 0x800;
}

/**
 * Id order: the order of the ids' UTF-8 bytes, which is Unicode code point
 * order (what PostgreSQL's `COLLATE "C"` and SQLite's BINARY collation give).
 * JavaScript's `<` compares UTF-16 units, which differs for characters above
 * U+FFFF against U+E000..U+FFFF.
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
