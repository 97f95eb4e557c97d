import { expect, it } from 'vitest';
import { StepOutcome } from '../../../core/index.js';
import type { StepRunner } from '../../../core/index.js';
import { assertSimulation, simulate } from '../../../testing/index.js';

const encode = (text: string) => new TextEncoder().encode(text);

// A payment workflow: reserve, charge, confirm. Steps are delivered at least
// once, so the charge is keyed by (runId, stepNumber): a re-delivery of the
// same step finds the payment already made and does not pay twice.
function paymentWorkflow(ledger: Map<string, number>): StepRunner {
  return (step) => {
    if (step.stepNumber === 0) return StepOutcome.continue(step.payload);
    if (step.stepNumber === 1) {
      const key = `${step.runId}/${step.stepNumber}`;
      if (!ledger.has(key)) ledger.set(key, 100);
      return StepOutcome.continue(step.payload);
    }
    return StepOutcome.succeed(encode('confirmed'));
  };
}

it('charges each order exactly once despite crashes, lease expiries, store errors and cancels', async () => {
  let redelivered = 0;
  for (let seed = 0; seed < 25; seed++) {
    const ledger = new Map<string, number>();
    const report = await simulate({
      runner: paymentWorkflow(ledger),
      runs: [{ input: encode('order-1') }, { input: encode('order-2') }, { input: encode('order-3') }],
      seed,
      faults: { crash: 0.05, leaseExpiry: 0.05, storeError: 0.02, cancel: 0.02 },
      queueConfig: { maxAttempts: 10 },
    });

    assertSimulation(report); // the library's own invariants; the message names the seed

    for (const runId of report.runIds) {
      const charged = ledger.has(`${runId}/1`) ? 1 : 0;
      if (report.outcomes.get(runId)?.status === 'succeeded') expect(charged, `seed ${seed}, ${runId}`).toBe(1);
      if (report.deliveries.filter((d) => d.runId === runId && d.step === 1).length > 1) redelivered++;
    }
  }
  expect(redelivered).toBeGreaterThan(0); // the faults did deliver charges twice: the dedup was exercised
});
