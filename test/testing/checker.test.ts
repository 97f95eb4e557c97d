/**
 * The simulator's invariant checks have teeth: on stores with planted bugs
 * they report violations (and on the real memory store, with the same seeds,
 * none: see simulate.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { ManualClock, StepOutcome, sleep } from '../../core/index.js';
import type { ClaimRef, SettleResult, Settlement, StepRunner } from '../../core/index.js';
import { MemoryStore } from '../../adapters/memory/index.js';
import { simulate } from '../../testing/index.js';
import type { SimulationReport, StoreFactory } from '../../testing/index.js';

const threeSteps: StepRunner = (step) => (step.stepNumber < 2 ? StepOutcome.continue(step.payload) : StepOutcome.succeed(step.payload));
const runs = [1, 2, 3, 4].map((n) => ({ input: new Uint8Array([n]) }));

/** Ignores the cancel branch: an external cancel never wins. */
class NoCancelBranchStore extends MemoryStore {
  override settle(claim: ClaimRef, settlement: Settlement): Promise<SettleResult> {
    return super.settle(claim, { action: settlement.action, ...(settlement.effects ? { effects: settlement.effects } : {}) });
  }
}

/** Forgets the kv deletes of a settlement: ended runs keep their records. */
class LeakyRecordsStore extends MemoryStore {
  override settle(claim: ClaimRef, settlement: Settlement): Promise<SettleResult> {
    const strip = <T extends { effects?: Settlement['effects'] }>(b: T): T => ({ ...b, effects: { ...b.effects, kvDeletes: [] } });
    return super.settle(claim, { ...strip(settlement), ...(settlement.ifCancelRequested ? { ifCancelRequested: strip(settlement.ifCancelRequested) } : {}) });
  }
}

/** Lets a stale claim token settle (it borrows the current owner's token). */
class StaleTokenStore extends MemoryStore {
  override settle(claim: ClaimRef, settlement: Settlement): Promise<SettleResult> {
    const jobs = (this as unknown as { jobs: Map<string, { token?: string }> }).jobs;
    const current = jobs.get(claim.jobId)?.token;
    return super.settle({ jobId: claim.jobId, token: current ?? claim.token }, settlement);
  }
}

const factory =
  (Store: typeof MemoryStore): StoreFactory =>
  ({ clock, queueConfig }) =>
    new Store({ clock, backgroundMaintenance: false, ...(queueConfig ? { defaultQueueConfig: queueConfig } : {}) });

async function violationsOver(seeds: number, options: Omit<Parameters<typeof simulate>[0], 'seed'>): Promise<Set<string>> {
  const found = new Set<string>();
  for (let seed = 0; seed < seeds; seed++) {
    const report: SimulationReport = await simulate({ ...options, seed });
    for (const v of report.violations) {
      expect(v.message).toContain(`seed ${seed}`);
      found.add(v.invariant);
    }
  }
  return found;
}

describe('invariant checks', () => {
  it('catch a store that ignores the cancel branch', async () => {
    const found = await violationsOver(20, {
      runner: threeSteps,
      runs,
      store: factory(NoCancelBranchStore),
      faults: { crash: 0, leaseExpiry: 0, storeError: 0, cancel: 0.3 },
    });
    expect(found).toContain('cancelPrecedence');
  });

  it('catch a store that leaves run records behind', async () => {
    const found = await violationsOver(3, {
      runner: threeSteps,
      runs,
      store: factory(LeakyRecordsStore),
      faults: { crash: 0, leaseExpiry: 0, storeError: 0, cancel: 0 },
    });
    expect(found).toContain('runNotEnded');
  });

  it('catch a store that lets a stale delivery settle', async () => {
    const found = new Set<string>();
    for (let seed = 0; seed < 20; seed++) {
      const clock = new ManualClock();
      // A slow step, so the re-delivery is still running when the stale one returns.
      const slow: StepRunner = async (step) => {
        await sleep(clock, 5_000);
        return threeSteps(step);
      };
      const report = await simulate({
        clock,
        runner: slow,
        runs,
        seed,
        store: factory(StaleTokenStore),
        queueConfig: { maxAttempts: 10 },
        faults: { crash: 0, leaseExpiry: 0.3, storeError: 0, cancel: 0 },
      });
      for (const v of report.violations) found.add(v.invariant);
    }
    expect(found).toContain('staleSettlement');
  });

  it('report none on the memory store with the same seeds', async () => {
    expect(await violationsOver(20, { runner: threeSteps, runs, faults: { crash: 0, leaseExpiry: 0, storeError: 0, cancel: 0.3 } })).toEqual(new Set());
    expect(
      await violationsOver(20, {
        runner: threeSteps,
        runs,
        queueConfig: { maxAttempts: 10 },
        faults: { crash: 0, leaseExpiry: 0.3, storeError: 0, cancel: 0 },
      }),
    ).toEqual(new Set());
  });
});
