/** One settle of a live or stale claim (or a forged token): a primary branch, maybe a cancel branch and a precondition. */
import fc from 'fast-check';
import type { Settlement, SettlementBranch } from '../../core/queue-store.js';
import { buildEffects, showAction, showEffects, showPrecondition } from './specs.js';
import type { BranchSpec, PreconditionSpec } from './specs.js';
import { branchArb, claimPickArb, maybe, preconditionArb } from './arbitraries.js';
import { both, pickClaim, showPick } from './world.js';
import type { ClaimPick, StoreCommand, StoreWorld } from './world.js';

export class SettleCommand implements StoreCommand {
  constructor(
    readonly pick: ClaimPick,
    readonly primary: BranchSpec,
    readonly ifCancelRequested: BranchSpec | undefined,
    readonly precondition?: PreconditionSpec,
  ) {}
  check = (world: Readonly<StoreWorld>): boolean => world.claims.length > 0;
  async run(world: StoreWorld): Promise<void> {
    const chosen = pickClaim(world, this.pick);
    if (!chosen) return;
    const now = world.clock.now();
    const branch = (spec: BranchSpec): SettlementBranch => {
      const effects = buildEffects(spec.effects, now);
      return effects ? { action: spec.action, effects } : { action: spec.action };
    };
    const settlement: Settlement = branch(this.primary);
    if (this.ifCancelRequested) settlement.ifCancelRequested = branch(this.ifCancelRequested);
    if (this.precondition) settlement.precondition = { key: this.precondition.key, equals: this.precondition.equals };
    await both(
      world,
      this.toString(),
      (t) => world.model.settle(t, chosen.model, settlement),
      () => world.store.settle(chosen.real, settlement),
      (result) => ({ ...result, enqueued: result.enqueued.map(world.enqueueResult) }),
      (e, a) => world.pairAll(this.toString(), e.enqueued, a.enqueued),
    );
    await world.checkState(this.toString());
  }
  toString(): string {
    const cancel = this.ifCancelRequested
      ? `, ifCancelRequested: ${showAction(this.ifCancelRequested.action)} effects ${showEffects(this.ifCancelRequested.effects)}`
      : '';
    const precondition = this.precondition ? `, if ${showPrecondition(this.precondition)}` : '';
    return `settle(${showPick(this.pick)}, ${showAction(this.primary.action)} effects ${showEffects(this.primary.effects)}${cancel}${precondition})`;
  }
}

/** Generated `SettleCommand`s. */
export const settleCommands: fc.Arbitrary<SettleCommand> = fc
  .tuple(claimPickArb, branchArb, maybe(branchArb, 1), maybe(preconditionArb, 3))
  .map(([pick, primary, alt, pre]) => new SettleCommand(pick, primary, alt, pre));
