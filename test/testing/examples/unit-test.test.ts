import { describe, expect, it } from 'vitest';
import { StepError, StepOutcome } from '../../../core/index.js';
import type { StepRunner } from '../../../core/index.js';
import { createTestEnvironment } from '../../../testing/index.js';

const THREE_DAYS = 3 * 24 * 60 * 60 * 1000;
const encode = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));
const decode = (bytes: Uint8Array) => JSON.parse(new TextDecoder().decode(bytes));

// The workflow under test: invoice now, charge three days later.
// Its dependencies are injected, so a test can hand it fakes.
function invoiceWorkflow(gateway: { charge(invoice: string): Promise<string> }): StepRunner {
  return async (step) => {
    const order = decode(step.payload);
    if (step.stepNumber === 0) return StepOutcome.continueAfter(encode({ ...order, invoice: `inv-${order.id}` }), THREE_DAYS);
    try {
      return StepOutcome.succeed(encode({ receipt: await gateway.charge(order.invoice) }));
    } catch {
      throw StepError.transient('payment gateway unavailable'); // retried with backoff
    }
  };
}

describe('invoice workflow', () => {
  it('charges three days after invoicing, retrying a busy gateway', async () => {
    let calls = 0;
    const gateway = {
      async charge(invoice: string) {
        if (++calls <= 2) throw new Error('503');
        return `paid ${invoice}`;
      },
    };
    const env = createTestEnvironment({ runner: invoiceWorkflow(gateway) });
    const { runId } = await env.submit({ runId: 'order-42', input: encode({ id: 42 }) });

    await env.runUntilIdle(); // three virtual days and two retries, in milliseconds

    const outcome = env.outcome(runId);
    expect(outcome?.status).toBe('succeeded');
    expect(decode(outcome!.result!)).toEqual({ receipt: 'paid inv-42' });
    const start = env.history(runId)[0]!.startedAt;
    expect(env.history(runId).map((d) => [d.step, d.attempt, d.startedAt - start, d.error?.message])).toEqual([
      [0, 1, 0, undefined],
      [1, 1, THREE_DAYS, 'payment gateway unavailable'],
      [1, 2, THREE_DAYS + 1_000, 'payment gateway unavailable'], // default backoff: 1 s, then 2 s
      [1, 3, THREE_DAYS + 3_000, undefined],
    ]);
  });

  it('is cancelled while it waits, and never charges', async () => {
    const gateway = { charge: async () => expect.fail('must not charge a cancelled order') };
    const env = createTestEnvironment({ runner: invoiceWorkflow(gateway) });
    const { runId } = await env.submit({ input: encode({ id: 7 }) });

    await env.advanceTime(24 * 60 * 60 * 1000); // one day in: invoiced, waiting
    expect(await env.status(runId)).toEqual({ runId, state: 'pending', currentStep: 1 });
    expect(await env.cancel(runId)).toBe(true);

    await env.runUntilIdle();
    expect(env.outcome(runId)).toMatchObject({ status: 'cancelled', finalStep: 1 });
  });
});
