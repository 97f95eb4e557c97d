/** One reap: expired claims requeued or dead-lettered (with their carried effects), retention swept. */
import fc from 'fast-check';
import { both } from './world.js';
import type { StoreCommand, StoreWorld } from './world.js';

export class ReapCommand implements StoreCommand {
  check = (): boolean => true;
  async run(world: StoreWorld): Promise<void> {
    await both(
      world,
      this.toString(),
      (now) => world.model.reap(now),
      () => world.store.reap(),
      world.reapReport,
      undefined,
      world.reapReport,
    );
    // Reaper effects may enqueue jobs: supplied ids only, as for cancel effects.
    world.trackSuppliedIds();
    await world.checkState(this.toString());
  }
  toString(): string {
    return 'reap()';
  }
}

/** Generated `ReapCommand`s. */
export const reapCommands: fc.Arbitrary<ReapCommand> = fc.constant(new ReapCommand());
