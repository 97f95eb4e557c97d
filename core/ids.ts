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
