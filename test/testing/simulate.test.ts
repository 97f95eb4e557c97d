import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { StepOutcome } from '../../core/index.js';
import type { StepRunner } from '../../core/index.js';
import { SimulationFailedError, assertSimulation, createPrng, formatReport, simulate } from '../../testing/index.js';
import type { Delivery, SimulationReport } from '../../testing/index.js';

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

/** validate → charge → receipt. `idempotent` dedups the charge by (runId, step), as the runtime's contract asks. */
function paymentWorkflow(idempotent: boolean): { runner: StepRunner; charges: Map<string, number> } {
  const charges = new Map<string, number>();
  const done = new Set<string>();
  const runner: StepRunner = (step) => {
    if (step.stepNumber === 0) return StepOutcome.continue(step.payload);
    if (step.stepNumber === 1) {
      const key = `${step.runId}:${step.stepNumber}`;
      if (!idempotent || !done.has(key)) {
        done.add(key);
        charges.set(step.runId, (charges.get(step.runId) ?? 0) + 1);
      }
      return StepOutcome.continue(step.payload);
    }
    return StepOutcome.succeed(bytes('receipt'));
  };
  return { runner, charges };
}

const orders = [1, 2, 3].map((n) => ({ input: bytes(`order-${n}`) }));
const SEEDS = 20;

/** A run charged more than once, or a succeeded run never charged. */
function chargeProblems(report: SimulationReport, charges: Map<string, number>): string[] {
  const problems: string[] = [];
  for (const runId of report.runIds) {
    const n = charges.get(runId) ?? 0;
    if (n > 1) problems.push(`${runId} charged ${n} times`);
    if (report.outcomes.get(runId)?.status === 'succeeded' && n !== 1) problems.push(`${runId} succeeded with ${n} charges`);
  }
  return problems;
}

const stable = (d: Delivery) => ({ ...d, jobId: undefined });

describe('simulate', () => {
  it('catches a non-idempotent payment step within a bounded number of seeds; the idempotent one passes the same seeds', async () => {
    let firstCaught: number | undefined;
    for (let seed = 0; seed < SEEDS; seed++) {
      const buggy = paymentWorkflow(false);
      const report = await simulate({ runner: buggy.runner, runs: orders, seed, queueConfig: { maxAttempts: 10 } });
      if (firstCaught === undefined && chargeProblems(report, buggy.charges).length > 0) firstCaught = seed;

      const fixed = paymentWorkflow(true);
      const fixedReport = await simulate({ runner: fixed.runner, runs: orders, seed, queueConfig: { maxAttempts: 10 } });
      assertSimulation(fixedReport);
      expect(chargeProblems(fixedReport, fixed.charges), formatReport(fixedReport)).toEqual([]);
    }
    console.log(`non-idempotent payment caught at seed ${firstCaught} (seeds tried from 0)`);
    expect(firstCaught, `not caught within ${SEEDS} seeds`).toBeDefined();
  });

  it('replays a seed exactly: same deliveries (virtual times included), faults and outcomes', async () => {
    const once = async (): Promise<SimulationReport> =>
      simulate({
        runner: paymentWorkflow(true).runner,
        runs: orders,
        seed: 1234,
        faults: { crash: 0.1, leaseExpiry: 0.1, storeError: 0.05, cancel: 0.05 },
        queueConfig: { maxAttempts: 10 },
      });
    const a = await once();
    const b = await once();
    expect(a.faultsInjected.length).toBeGreaterThan(0);
    expect(b.deliveries.map(stable)).toEqual(a.deliveries.map(stable));
    expect(b.faultsInjected).toEqual(a.faultsInjected);
    expect([...b.outcomes]).toEqual([...a.outcomes]);
    expect(b.lostNotifications).toEqual(a.lostNotifications);
    expect(b.virtualTimeMs).toBe(a.virtualTimeMs);
  });

  it('a lease expiry delivers the step again, and the first delivery is then rejected', async () => {
    let seen = false;
    for (let seed = 0; seed < 10 && !seen; seed++) {
      const report = await simulate({
        runner: paymentWorkflow(true).runner,
        runs: orders,
        seed,
        faults: { crash: 0, storeError: 0, cancel: 0, leaseExpiry: 0.3 },
        queueConfig: { maxAttempts: 10 },
      });
      assertSimulation(report);
      for (const first of report.deliveries.filter((d) => d.settled === 'leaseLost')) {
        const again = report.deliveries.find((d) => d.runId === first.runId && d.step === first.step && d.attempt === first.attempt + 1);
        expect(again, formatReport(report)).toBeDefined();
        expect(report.faultsInjected).toContainEqual(
          expect.objectContaining({ kind: 'leaseExpiry', runId: first.runId, step: first.step, attempt: first.attempt }),
        );
        seen = true;
      }
    }
    expect(seen).toBe(true);
  });

  it('a crash drops the runtime; a new one re-delivers the step once the lease (30 s) expired', async () => {
    let seen = false;
    for (let seed = 0; seed < 10 && !seen; seed++) {
      const report = await simulate({
        runner: paymentWorkflow(true).runner,
        runs: orders,
        seed,
        faults: { crash: 0.2, storeError: 0, cancel: 0, leaseExpiry: 0 },
        queueConfig: { maxAttempts: 10 },
      });
      assertSimulation(report);
      for (const crashed of report.deliveries.filter((d) => d.settled === 'crashed')) {
        const again = report.deliveries.find((d) => d.runId === crashed.runId && d.step === crashed.step && d.attempt > crashed.attempt);
        if (!again) continue; // the run ended otherwise (e.g. a later crash hid it, or max attempts)
        expect(again.worker).toBeGreaterThan(crashed.worker);
        expect(again.startedAt - crashed.startedAt).toBeGreaterThanOrEqual(30_000);
        seen = true;
      }
      expect(report.workers).toBe(1 + report.faultsInjected.filter((f) => f.kind === 'crash').length);
    }
    expect(seen).toBe(true);
  });

  it('reports a workflow that never ends as a guard violation naming the seed', async () => {
    const report = await simulate({
      runner: (step) => StepOutcome.continue(step.payload),
      runs: [{ input: bytes('x') }],
      seed: 77,
      maxSteps: 25,
      faults: { crash: 0, leaseExpiry: 0, storeError: 0, cancel: 0 },
    });
    expect(report.completed).toBe(false);
    expect(report.violations).toEqual([expect.objectContaining({ invariant: 'guard' })]);
    expect(report.violations[0]?.message).toContain('run run-0: step');
    const error = (() => {
      try {
        assertSimulation(report);
      } catch (e) {
        return e;
      }
      return undefined;
    })() as SimulationFailedError;
    expect(error).toBeInstanceOf(SimulationFailedError);
    expect(error.code).toBe('SIMULATION_FAILED');
    expect(error.seed).toBe(77);
    expect(error.message).toContain('seed 77');
  });

  it('composes with fast-check: a property over seeds and inputs finds the double charge and names a seed that replays it', async () => {
    const property = (idempotent: boolean) =>
      fc.asyncProperty(fc.integer(), fc.integer({ min: 1, max: 4 }), async (seed, runs) => {
        const workflow = paymentWorkflow(idempotent);
        const report = await simulate({ runner: workflow.runner, runs: orders.slice(0, runs), seed, queueConfig: { maxAttempts: 10 } });
        assertSimulation(report);
        const problems = chargeProblems(report, workflow.charges);
        if (problems.length > 0) throw new Error(`seed ${seed}: ${problems.join('; ')}`);
      });
    await fc.assert(property(true), { numRuns: 40, seed: 42 });
    const failure = await fc.assert(property(false), { numRuns: 200, seed: 42 }).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(failure, 'the double charge was not found in 200 runs').toBeInstanceOf(Error);
    // fast-check prints the (shrunk) counterexample: [seed, runs]; our own message names the seed too.
    const [, seedText, runsText] = /Counterexample: \[(-?\d+),(\d+)\]/.exec(failure?.message ?? '') ?? [];
    const seed = Number(seedText);
    expect(Number.isSafeInteger(seed)).toBe(true);
    expect(String((failure?.cause as Error | undefined)?.message)).toContain(`seed ${seed}:`);
    // The seed replays the failure exactly.
    const replay = paymentWorkflow(false);
    const report = await simulate({ runner: replay.runner, runs: orders.slice(0, Number(runsText)), seed, queueConfig: { maxAttempts: 10 } });
    expect(chargeProblems(report, replay.charges).length).toBeGreaterThan(0);
  });

  it('createPrng is deterministic and spreads small seeds', () => {
    const a = createPrng(1);
    const b = createPrng(1);
    const xs = Array.from({ length: 5 }, () => a.next());
    expect(Array.from({ length: 5 }, () => b.next())).toEqual(xs);
    expect(createPrng(2).next()).not.toBe(xs[0]);
    expect(createPrng(-5).int(10)).toBeGreaterThanOrEqual(0);
  });
});
