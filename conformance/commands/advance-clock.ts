/** A clock advance, then promote: leases expire, scheduled jobs fall due, retention runs out. */
import fc from 'fast-check';
import { both } from './world.js';
import type { StoreCommand, StoreWorld } from './world.js';

/** Advances the clock, then promotes (so eager and lazy promotion agree). */
export class AdvanceClockCommand implements StoreCommand {
  constructor(readonly ms: number) {}
  check = (): boolean => true;
  async run(world: StoreWorld): Promise<void> {
    world.clock.advance(this.ms);
    await both(
      world,
      this.toString(),
      (now) => world.model.promote(now),
      () => world.store.promote(),
      (v) => v,
    );
    await world.checkState(this.toString());
  }
  toString(): string {
    return `advance(${this.ms}ms) + promote()`;
  }
}

/** Generated `AdvanceClockCommand`s. */
export const advanceClockCommands: fc.Arbitrary<AdvanceClockCommand> = fc.constantFrom(1, 50, 300, 1000, 3000, 30_000).map((ms) => new AdvanceClockCommand(ms));
