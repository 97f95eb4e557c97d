/** One renewLease of a live or stale claim (or a forged token). */
import fc from 'fast-check';
import { claimPickArb } from './arbitraries.js';
import { both, pickClaim, showPick } from './world.js';
import type { ClaimPick, StoreCommand, StoreWorld } from './world.js';

export class RenewLeaseCommand implements StoreCommand {
  constructor(
    readonly pick: ClaimPick,
    readonly extendMs: number,
  ) {}
  check = (world: Readonly<StoreWorld>): boolean => world.claims.length > 0;
  async run(world: StoreWorld): Promise<void> {
    const chosen = pickClaim(world, this.pick);
    if (!chosen) return;
    await both(
      world,
      this.toString(),
      (now) => world.model.renewLease(now, chosen.model, this.extendMs),
      () => world.store.renewLease(chosen.real, this.extendMs),
      (r) => r,
    );
    await world.checkState(this.toString());
  }
  toString(): string {
    return `renewLease(${showPick(this.pick)}, ${this.extendMs})`;
  }
}

/** Generated `RenewLeaseCommand`s. */
export const renewLeaseCommands: fc.Arbitrary<RenewLeaseCommand> = fc
  .tuple(claimPickArb, fc.constantFrom(1, 500, 2000))
  .map(([pick, ms]) => new RenewLeaseCommand(pick, ms));
