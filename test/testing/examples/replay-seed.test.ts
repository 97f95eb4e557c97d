import fc from 'fast-check';
import { expect, it } from 'vitest';
import { StepOutcome } from '../../../core/index.js';
import type { StepRunner } from '../../../core/index.js';
import { assertSimulation, formatReport, simulate } from '../../../testing/index.js';

// A counter that is NOT idempotent: it adds on every delivery.
function countingWorkflow(totals: Map<string, number>): StepRunner {
  return (step) => {
    totals.set(step.runId, (totals.get(step.runId) ?? 0) + 1);
    return StepOutcome.succeed(step.payload);
  };
}

async function countsOnce(seed: number, runs: number): Promise<void> {
  const totals = new Map<string, number>();
  const report = await simulate({
    runner: countingWorkflow(totals),
    runs: Array.from({ length: runs }, (_, i) => ({ input: new Uint8Array([i]) })),
    seed,
    queueConfig: { maxAttempts: 10 },
  });
  assertSimulation(report);
  for (const [runId, total] of totals) {
    if (total > 1) throw new Error(`seed ${seed}: ${runId} counted ${total} times\n${formatReport(report)}`);
  }
}

it('fast-check finds a seed where a re-delivery counts twice', async () => {
  const property = fc.asyncProperty(fc.integer(), fc.integer({ min: 1, max: 5 }), countsOnce);
  // fast-check reports "Counterexample: [seed, runs]" and shrinks both.
  await expect(fc.assert(property, { numRuns: 200 })).rejects.toThrow(/Counterexample/);
});

it('replays one seed exactly', async () => {
  // Paste the seed from a failure here: the same seed gives the same schedule,
  // faults and deliveries, so the failure comes back every time.
  const seed = 1;
  const first = await countsOnce(seed, 5).catch((error: Error) => error.message);
  const again = await countsOnce(seed, 5).catch((error: Error) => error.message);
  expect(first).toContain(`seed ${seed}:`);
  expect(again).toBe(first);
});
