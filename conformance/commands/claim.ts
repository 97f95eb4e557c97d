/** One claim of up to `limit` jobs; every claim is remembered for later settles and renewals. */
import fc from 'fast-check';
import type { Claim } from '../../core/queue-store.js';
import { ConformanceError, show } from '../compare.js';
import { maybe } from './arbitraries.js';
import { both } from './world.js';
import type { StoreCommand, StoreWorld } from './world.js';

export class ClaimCommand implements StoreCommand {
  constructor(
    readonly queue: string,
    readonly leaseMs: number | undefined,
    readonly limit: number | undefined,
  ) {}
  check = (): boolean => true;
  async run(world: StoreWorld): Promise<void> {
    const options: { leaseMs?: number; limit?: number } = {};
    if (this.leaseMs !== undefined) options.leaseMs = this.leaseMs;
    if (this.limit !== undefined) options.limit = this.limit;
    const { expected, actual } = await both(
      world,
      this.toString(),
      (now) => world.model.claim(now, this.queue, options),
      () => world.store.claim(this.queue, options),
      (claims) => claims.map(world.claim),
      undefined,
      (claims) => claims.map(world.claim),
    );
    if (expected.ok && actual.ok) {
      expected.value.forEach((claim, i) => {
        const real = actual.value[i] as Claim;
        world.claims.push({ model: { jobId: claim.jobId, token: claim.token }, real: { jobId: real.jobId, token: real.token } });
      });
      const tokens = actual.value.map((c) => c.token);
      if (new Set(tokens).size !== tokens.length || tokens.some((t) => typeof t !== 'string' || t.length === 0)) {
        throw new ConformanceError(`${this.toString()}: claim tokens must be distinct non-empty strings, got ${show(tokens)}`);
      }
    }
    await world.checkState(this.toString());
  }
  toString(): string {
    return `claim(${this.queue}, ${show({ leaseMs: this.leaseMs, limit: this.limit })})`;
  }
}

/** Generated `ClaimCommand`s. */
export const claimCommands: fc.Arbitrary<ClaimCommand> = fc
  .tuple(fc.constantFrom('q1', 'q1', 'q2', 'q3'), maybe(fc.constantFrom(50, 1000, 5000)), maybe(fc.constantFrom(1, 2, 3)))
  .map(([q, lease, limit]) => new ClaimCommand(q, lease, limit));
