/**
 * The commands of the model-based property, one per file (each with its
 * `check`, `run` and arbitrary), assembled here with the weights that keep
 * sequences busy (claims and settlements often). The order and weights are
 * part of what a fast-check seed replays: change them and old seeds
 * generate other sequences.
 */
import type fc from 'fast-check';
import { advanceClockCommands } from './advance-clock.js';
import { cancelCommands } from './cancel.js';
import { claimCommands } from './claim.js';
import { deadJobsPageCommands } from './dead-jobs-page.js';
import { enqueueBatchCommands } from './enqueue-batch.js';
import { enqueueDuplicateCommands } from './enqueue-duplicate.js';
import { enqueueCommands } from './enqueue.js';
import { kvDeleteCommands } from './kv-delete.js';
import { reapCommands } from './reap.js';
import { renewLeaseCommands } from './renew-lease.js';
import { requeueDeadCommands } from './requeue-dead.js';
import { setReaperTemplateCommands } from './set-reaper-template.js';
import { settleCommands } from './settle.js';
import type { StoreCommand } from './world.js';

export { StoreWorld, QUEUES } from './world.js';
export type { StoreCommand, JobPick, ClaimPick } from './world.js';
export { EnqueueCommand } from './enqueue.js';
export { EnqueueBatchCommand } from './enqueue-batch.js';
export { EnqueueDuplicateCommand } from './enqueue-duplicate.js';
export { ClaimCommand } from './claim.js';
export { SettleCommand } from './settle.js';
export { RenewLeaseCommand } from './renew-lease.js';
export { CancelCommand } from './cancel.js';
export { RequeueDeadCommand } from './requeue-dead.js';
export { KvDeleteCommand } from './kv-delete.js';
export { AdvanceClockCommand } from './advance-clock.js';
export { ReapCommand } from './reap.js';
export { DeadJobsPageCommand } from './dead-jobs-page.js';
export { SetReaperTemplateCommand } from './set-reaper-template.js';

/** Every store command, weighted (a weight of n lists the arbitrary n times). */
export function storeCommandArbitraries(): Array<fc.Arbitrary<StoreCommand>> {
  const weighted = (weight: number, arb: fc.Arbitrary<StoreCommand>): Array<fc.Arbitrary<StoreCommand>> => Array.from({ length: weight }, () => arb);
  return [
    ...weighted(4, enqueueCommands),
    ...weighted(1, enqueueBatchCommands),
    ...weighted(4, claimCommands),
    ...weighted(4, settleCommands),
    ...weighted(1, renewLeaseCommands),
    ...weighted(2, cancelCommands),
    ...weighted(2, requeueDeadCommands),
    ...weighted(1, enqueueDuplicateCommands),
    ...weighted(1, kvDeleteCommands),
    ...weighted(3, advanceClockCommands),
    ...weighted(2, reapCommands),
    ...weighted(1, deadJobsPageCommands),
    ...weighted(1, setReaperTemplateCommands),
  ];
}
