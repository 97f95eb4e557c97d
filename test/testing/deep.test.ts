/**
 * Many seeds of a mixed workflow (waits, slow steps, retries, permanent
 * errors, fail and cancel outcomes) on the memory store: no invariant may
 * break. A few seeds by default; `TAQUBA_DEEP=1` runs 2 000.
 */
import { describe, expect, it } from 'vitest';
import { ManualClock, StepError, StepOutcome, sleep } from '../../core/index.js';
import type { StepRunner } from '../../core/index.js';
import { formatReport, simulate } from '../../testing/index.js';

const SEEDS = process.env.TAQUBA_DEEP ? 2_000 : 40;
const kinds = ['plain', 'slow', 'flaky', 'permanent', 'fail', 'self-cancel', 'wait'] as const;

function mixedRunner(clock: ManualClock): StepRunner {
  return async (step) => {
    const kind = new TextDecoder().decode(step.payload);
    const n = step.stepNumber;
    if (kind === 'slow' && n === 1) await sleep(clock, 50_000, step.signal).catch(() => undefined);
    if (kind === 'flaky' && n === 1 && step.attempts < 3) throw StepError.transient('flaky');
    if (kind === 'permanent' && n === 2) throw StepError.permanent('bad input');
    if (kind === 'fail' && n === 1) return StepOutcome.fail('declined');
    if (kind === 'self-cancel' && n === 1) return StepOutcome.cancel('no longer needed');
    if (kind === 'wait' && n === 0) return StepOutcome.continueAfter(step.payload, 60_000);
    return n < 3 ? StepOutcome.continue(step.payload) : StepOutcome.succeed(step.payload);
  };
}

describe(`simulate, ${SEEDS} seeds of a mixed workflow${process.env.TAQUBA_DEEP ? '' : ' (TAQUBA_DEEP=1 for 2 000)'}`, () => {
  it.each(['inProcess', 'durable'] as const)('keeps every invariant under heavy faults (%s hook delivery)', async (hookDelivery) => {
    const faults = { crash: 0.1, leaseExpiry: 0.1, storeError: 0.02, cancel: 0.05 };
    let deliveries = 0;
    let lost = 0;
    for (let seed = 0; seed < SEEDS; seed++) {
      const clock = new ManualClock();
      const report = await simulate({
        clock,
        runner: mixedRunner(clock),
        runs: kinds.map((k) => ({ input: new TextEncoder().encode(k) })),
        seed,
        faults,
        hookDelivery,
        queueConfig: { maxAttempts: 10 },
      });
      expect(report.violations, formatReport(report)).toEqual([]);
      deliveries += report.deliveries.length;
      lost += report.lostNotifications.length;
    }
    expect(deliveries).toBeGreaterThan(SEEDS * kinds.length);
    // In-process hooks lose notifications on crashes after terminal commits; durable delivery loses none.
    if (hookDelivery === 'inProcess') expect(lost).toBeGreaterThan(0);
    else expect(lost).toBe(0);
  });
});
