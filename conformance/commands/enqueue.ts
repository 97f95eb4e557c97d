/** One enqueue: a job with options (dedup key, timing, priority, attempts, headers, carried reaper effects) and kv writes, some `ifAbsent`. */
import fc from 'fast-check';
import type { KvWrite } from '../../core/queue-store.js';
import { show } from '../compare.js';
import { buildOptions, showKvWrites, showOptions } from './specs.js';
import type { EnqueueSpec } from './specs.js';
import { enqueueSpecArb, kvWriteArb, maybe } from './arbitraries.js';
import { both } from './world.js';
import type { StoreCommand, StoreWorld } from './world.js';

export class EnqueueCommand implements StoreCommand {
  constructor(
    readonly spec: EnqueueSpec,
    readonly kvWrites: KvWrite[] | undefined,
  ) {}
  check = (): boolean => true;
  async run(world: StoreWorld): Promise<void> {
    const options = buildOptions(this.spec.options, world.clock.now());
    await both(
      world,
      this.toString(),
      (now) => world.model.enqueue(now, this.spec.queue, this.spec.payload, options, this.kvWrites),
      () => world.store.enqueue(this.spec.queue, this.spec.payload, options, this.kvWrites),
      world.enqueueResult,
      (e, a) => world.pair(this.toString(), e, a),
    );
    await world.checkState(this.toString());
  }
  toString(): string {
    return `enqueue(${this.spec.queue}, ${show(this.spec.payload)}, ${showOptions(this.spec.options)}${this.kvWrites ? `, kv=${showKvWrites(this.kvWrites)}` : ''})`;
  }
}

/** Generated `EnqueueCommand`s. */
export const enqueueCommands: fc.Arbitrary<EnqueueCommand> = fc
  .tuple(enqueueSpecArb, maybe(fc.array(kvWriteArb, { minLength: 1, maxLength: 2 })))
  .map(([spec, kv]) => new EnqueueCommand(spec, kv));
