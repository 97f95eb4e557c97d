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

  it.each(Array.from({ length: 12 }, (_, i) => i + 1))(
    'seed %i: onCancel compensations and a non-cancellable step under faults; invariants hold, every cancelled run compensated',
    async (seed) => {
      const compensated = new Map<string, unknown>();
      const trip = defineWorkflow({
        name: 'trip',
        codec: json<{ booked: string[] }>(),
        steps: {
          flight: (s, ctx) => ctx.next('hotel', { booked: [...s.booked, 'flight'] }),
          hotel: { cancellable: false, run: (s, ctx) => ctx.next('car', { booked: [...s.booked, 'hotel'] }) },
          car: (s, ctx) => ctx.succeed({ booked: [...s.booked, 'car'] }),
        },
        onCancel: (state, ctx) => void compensated.set(ctx.runId, state),
      });
      const report = await simulate({
        workflows: [trip],
        runs: Array.from({ length: 8 }, () => ({ workflow: trip, input: { booked: [] } })),
        seed,
        faults: { cancel: 0.15 },
        queueConfig: { maxAttempts: 10 },
      });
      expect(report.violations).toEqual([]);
      for (const [runId, outcome] of report.outcomes) {
        if (outcome.status === 'cancelled') expect(compensated.get(runId), runId).toEqual(outcome.lastState);
        else expect(compensated.has(runId), runId).toBe(false);
      }
    },
  );
});
