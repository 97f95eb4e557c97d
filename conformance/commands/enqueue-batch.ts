/** One enqueueBatch: several jobs, all or none. */
import fc from 'fast-check';
import { show } from '../compare.js';
import { buildOptions, showOptions } from './specs.js';
import type { OptionSpec } from './specs.js';
import { optionSpecArb, payloadArb, queueArb } from './arbitraries.js';
import { both } from './world.js';
import type { StoreCommand, StoreWorld } from './world.js';

export class EnqueueBatchCommand implements StoreCommand {
  constructor(
    readonly queue: string,
    readonly items: Array<{ payload: Uint8Array; options: OptionSpec }>,
  ) {}
  check = (): boolean => true;
  async run(world: StoreWorld): Promise<void> {
    const now = world.clock.now();
    const items = this.items.map((item) => {
      const options = buildOptions(item.options, now);
      return options ? { payload: item.payload, options } : { payload: item.payload };
    });
    await both(
      world,
      this.toString(),
      (t) => world.model.enqueueBatch(t, this.queue, items),
      () => world.store.enqueueBatch(this.queue, items),
      (results) => results.map(world.enqueueResult),
      (e, a) => world.pairAll(this.toString(), e, a),
    );
    await world.checkState(this.toString());
  }
  toString(): string {
    return `enqueueBatch(${this.queue}, [${this.items.map((i) => `${show(i.payload)} ${showOptions(i.options)}`).join(', ')}])`;
  }
}

/** Generated `EnqueueBatchCommand`s. */
export const enqueueBatchCommands: fc.Arbitrary<EnqueueBatchCommand> = fc
  .tuple(queueArb, fc.array(fc.record({ payload: payloadArb, options: optionSpecArb }), { maxLength: 3 }))
  .map(([q, items]) => new EnqueueBatchCommand(q, items));
