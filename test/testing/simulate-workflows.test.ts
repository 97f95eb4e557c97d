/** `simulate` on workflow definitions: seeded crashes, lease expiries, store errors and cancels; every run still ends once, as its steps decide. */
import { describe, expect, it } from 'vitest';
import { StepError, defineWorkflow, json } from '../../core/index.js';
import { simulate } from '../../testing/index.js';

interface Order {
  id: number;
  charged?: boolean;
}

const charges = new Map<number, number>();
const order = defineWorkflow({
  name: 'order',
  codec: json<Order>(),
  steps: {
    reserve: (state, ctx) => ctx.next('charge', state),
    charge: {
      retry: { maxAttempts: 6, initialDelayMs: 100 },
      run: (state, ctx) => {
        if (ctx.attempt === 1 && state.id % 3 === 0) throw StepError.transient('card network down');
        charges.set(state.id, (charges.get(state.id) ?? 0) + 1);
        return ctx.next('ship', { ...state, charged: true });
      },
    },
    ship: (state, ctx) => (state.charged === true ? ctx.succeed({ shipped: state.id }) : ctx.fail('not charged')),
  },
});

describe('simulate({ workflows })', () => {
  it.each([1, 2, 3, 4, 5])('seed %i: no library invariant breaks; every run ends once; one that succeeded shipped what it charged', async (seed) => {
    charges.clear();
    const report = await simulate({ workflows: [order], runs: Array.from({ length: 8 }, (_, id) => ({ workflow: order, input: { id } })), seed });
    expect(report.violations).toEqual([]);
    expect(report.outcomes.size + report.lostNotifications.length).toBe(8);
    expect(report.completed).toBe(true);
    expect(report.deliveries.every((d) => d.stepName !== undefined)).toBe(true);
    for (const [runId, outcome] of report.outcomes) {
      expect(outcome.workflow, runId).toBe('order');
      if (outcome.status === 'succeeded') expect(outcome.output, runId).toEqual({ shipped: Number(runId.slice('run-'.length)) });
      // Faults may use up a step's attempts: the run then fails with why, never with "not charged".
      else if (outcome.status === 'failed') expect(['lease expired', 'card network down'], runId).toContain(outcome.error);
    }
  });

  it('refuses a workflow with onCancel, which it does not model yet', async () => {
    const compensated = defineWorkflow({ name: 'c', steps: { a: (n: number, ctx) => ctx.succeed(n) }, onCancel: () => undefined });
    await expect(simulate({ workflows: [compensated], runs: [], seed: 1 })).rejects.toThrow(/onCancel, which simulate does not model yet/);
  });
});
