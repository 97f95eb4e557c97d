/** One enqueue under the dedup key of a pending or scheduled job, with kv writes: the dedup-hit path. */
import fc from 'fast-check';
import type { KvWrite } from '../../core/queue-store.js';
import { show } from '../compare.js';
import { showKvWrites } from './specs.js';
import { kvWriteArb, payloadArb, statusPickArb } from './arbitraries.js';
import { both, showJobPick } from './world.js';
import type { JobPick, StoreCommand, StoreWorld } from './world.js';

/** Enqueues again under the dedup key (and queue) of a job that holds one, with kv writes: the dedup-hit path. */
export class EnqueueDuplicateCommand implements StoreCommand {
  constructor(
    readonly pick: JobPick,
    readonly payload: Uint8Array,
    readonly kvWrites: KvWrite[],
  ) {}
  check = (): boolean => true;
  async run(world: StoreWorld): Promise<void> {
    const holder = world.model.getJob(world.target(this.pick));
    const queue = holder?.queue ?? 'q1';
    const options = { dedupKey: holder?.dedupKey ?? 'd1' };
    await both(
      world,
      `${this.toString()} [queue ${queue}, dedupKey ${options.dedupKey}]`,
      (now) => world.model.enqueue(now, queue, this.payload, options, this.kvWrites),
      () => world.store.enqueue(queue, this.payload, options, this.kvWrites),
      world.enqueueResult,
      (e, a) => world.pair(this.toString(), e, a),
    );
    await world.checkState(this.toString());
  }
  toString(): string {
    return `enqueueWithDedupKeyOf(${showJobPick(this.pick)}, ${show(this.payload)}, kv=${showKvWrites(this.kvWrites)})`;
  }
}

/** Generated `EnqueueDuplicateCommand`s. */
export const enqueueDuplicateCommands: fc.Arbitrary<EnqueueDuplicateCommand> = fc
  .tuple(statusPickArb('pending', 'scheduled'), payloadArb, fc.array(kvWriteArb, { minLength: 1, maxLength: 2 }))
  .map(([pick, payload, kv]) => new EnqueueDuplicateCommand(pick, payload, kv));
