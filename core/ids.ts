import { monotonicFactory } from 'ulid';

const nextUlid = monotonicFactory();

/**
 * A new ULID. Ids taken in sequence in one process sort in the order they
 * were taken, even within one millisecond (monotonic factory).
 */
export function newId(nowMs: number = Date.now()): string {
  return nextUlid(nowMs);
}
