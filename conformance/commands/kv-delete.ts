/** One kvDelete: plain, or compare-and-delete with `ifValue`. */
import fc from 'fast-check';
import { show } from '../compare.js';
import { kvValueArb, maybe } from './arbitraries.js';
import { KV_KEYS, both } from './world.js';
import type { StoreCommand, StoreWorld } from './world.js';

export class KvDeleteCommand implements StoreCommand {
  constructor(
    readonly key: string,
    readonly ifValue: Uint8Array | undefined,
  ) {}
  check = (): boolean => true;
  async run(world: StoreWorld): Promise<void> {
    const options = this.ifValue ? { ifValue: this.ifValue } : undefined;
    await both(
      world,
      this.toString(),
      (now) => world.model.kvDelete(now, this.key, options),
      () => world.store.kvDelete(this.key, options),
      (v) => v,
    );
    await world.checkState(this.toString());
  }
  toString(): string {
    return `kvDelete(${this.key}${this.ifValue ? `, ifValue ${show(this.ifValue)}` : ''})`;
  }
}

/** Generated `KvDeleteCommand`s. */
export const kvDeleteCommands: fc.Arbitrary<KvDeleteCommand> = fc
  .tuple(fc.constantFrom(...KV_KEYS), maybe(kvValueArb, 1))
  .map(([key, v]) => new KvDeleteCommand(key, v));
