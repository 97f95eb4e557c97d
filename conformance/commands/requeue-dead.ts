/** One requeueDead: of a dead job often, of any other job or an unknown id otherwise. */
import fc from 'fast-check';
import { jobPickArb, statusPickArb } from './arbitraries.js';
import { both, showJobPick } from './world.js';
import type { JobPick, StoreCommand, StoreWorld } from './world.js';

export class RequeueDeadCommand implements StoreCommand {
  constructor(readonly pick: JobPick) {}
  check = (): boolean => true;
  async run(world: StoreWorld): Promise<void> {
    const id = world.target(this.pick);
    await both(
      world,
      `${this.toString()} [job ${id}]`,
      () => world.model.requeueDead(id),
      () => world.store.requeueDead(world.toReal(id)),
      (v) => v,
    );
    await world.checkState(this.toString());
  }
  toString(): string {
    return `requeueDead(${showJobPick(this.pick)})`;
  }
}

/** Generated `RequeueDeadCommand`s. */
export const requeueDeadCommands: fc.Arbitrary<RequeueDeadCommand> = fc.oneof(statusPickArb('dead'), jobPickArb).map((pick) => new RequeueDeadCommand(pick));
