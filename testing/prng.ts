/**
 * A small seeded PRNG (SplitMix32 seeding into Mulberry32), so a simulation
 * seed replays exactly, in any process. Never `Math.random`.
 */

/** A deterministic stream of numbers in [0, 1). */
export interface Prng {
  /** The next number in [0, 1). */
  next(): number;
  /** An integer in [0, n). */
  int(n: number): number;
  /** True with probability `p`. */
  chance(p: number): boolean;
}

/** Spreads any integer seed (fast-check gives negatives too) over 32 bits. */
function splitmix32(seed: number): number {
  let z = (Math.trunc(seed) + 0x9e3779b9) | 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

/** Mulberry32 seeded through SplitMix32: fast, tiny, and good enough for fault schedules. */
export function createPrng(seed: number): Prng {
  if (!Number.isFinite(seed)) throw new TypeError(`seed must be a finite number, got ${String(seed)}`);
  let state = splitmix32(seed);
  const next = (): number => {
    state = (state + 0x6d2b79f5) | 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (n) => Math.floor(next() * n),
    chance: (p) => p > 0 && next() < p,
  };
}
