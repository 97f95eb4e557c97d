/** One cancel of a job in any state (claimed ones often), maybe with effects for a removal. */
import fc from 'fast-check';
import { buildEffects, showEffects } from './specs.js';
import type { EffectsSpec } from './specs.js';
import { cancelEffectsArb, jobPickArb, maybe, statusPickArb } from './arbitraries.js';
import { both, showJobPick } from './world.js';
import type { JobPick, StoreCommand, StoreWorld } from './world.js';

export class CancelCommand implements StoreCommand {
  constructor(
    readonly pick: JobPick,
    readonly effects: EffectsSpec | undefined,
  ) {}
  check = (): boolean => true;
  async run(world: StoreWorld): Promise<void> {
    const id = world.target(this.pick);
    const effects = buildEffects(this.effects, world.clock.now());
    await both(
      world,
      `${this.toString()} [job ${id}]`,
      (now) => world.model.cancel(now, id, effects),
      () => world.store.cancel(world.toReal(id), effects),
      (result) => (result.outcome === 'notFound' ? result : { ...result, job: world.record(result.job) }),
    );
    // A removal's effects may enqueue jobs: they have supplied ids only (generated ids would need the results).
    world.trackSuppliedIds();
    await world.checkState(this.toString());
  }
  toString(): string {
    return `cancel(${showJobPick(this.pick)}, effects ${showEffects(this.effects)})`;
  }
}

/** Generated `CancelCommand`s. */
export const cancelCommands: fc.Arbitrary<CancelCommand> = fc
  .tuple(fc.oneof(statusPickArb('claimed'), jobPickArb), maybe(cancelEffectsArb, 3))
  .map(([pick, effects]) => new CancelCommand(pick, effects));
