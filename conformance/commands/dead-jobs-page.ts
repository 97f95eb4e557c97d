/** One deadJobs page after a cursor, with a limit. */
import fc from 'fast-check';
import { show } from '../compare.js';
import { jobPickArb, maybe } from './arbitraries.js';
import { READ_QUEUES, both, showJobPick } from './world.js';
import type { JobPick, StoreCommand, StoreWorld } from './world.js';

export class DeadJobsPageCommand implements StoreCommand {
  constructor(
    readonly queue: string,
    readonly after: JobPick | undefined,
    readonly limit: number | undefined,
  ) {}
  check = (): boolean => true;
  async run(world: StoreWorld): Promise<void> {
    const after = this.after === undefined ? undefined : world.target(this.after);
    const options: { after?: string; limit?: number } = {};
    if (this.limit !== undefined) options.limit = this.limit;
    await both(
      world,
      `${this.toString()} [after ${after}]`,
      () => world.model.deadJobs(this.queue, after === undefined ? options : { ...options, after }),
      () => world.store.deadJobs(this.queue, after === undefined ? options : { ...options, after: world.toReal(after) }),
      (records) => records.map(world.record),
    );
  }
  toString(): string {
    return `deadJobs(${this.queue}, ${show({ after: this.after === undefined ? undefined : showJobPick(this.after), limit: this.limit })})`;
  }
}

/** Generated `DeadJobsPageCommand`s. */
export const deadJobsPageCommands: fc.Arbitrary<DeadJobsPageCommand> = fc
  .tuple(fc.constantFrom(...READ_QUEUES), maybe(jobPickArb, 1), maybe(fc.constantFrom(1, 2, 100), 1))
  .map(([q, after, limit]) => new DeadJobsPageCommand(q, after, limit));
