/**
 * Compile-time checks of the workflow API (this file is type-checked by
 * `npm run typecheck`; each `@ts-expect-error` fails the build if the
 * line below it compiles): step names in `ctx.next`, the state and result
 * types, and `runtime.start`'s input.
 */
import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../../adapters/memory/index.js';
import { WorkflowRuntime, defineWorkflow, json } from '../../core/index.js';

interface Cart {
  items: string[];
  total?: number;
}

const checkout = defineWorkflow({
  name: 'checkout',
  codec: json<Cart>(),
  resultCodec: json<{ receipt: string }>(),
  steps: {
    price: (cart, ctx) => {
      const items: string[] = cart.items; // the state is typed from the codec
      // @ts-expect-error a step name the workflow does not have
      if (items.length === 0) return ctx.next('prices', cart);
      // @ts-expect-error a state of the wrong type
      if (items.length > 99) return ctx.next('pay', { items: 'many' });
      return ctx.next('pay', { ...cart, total: items.length * 10 });
    },
    pay: (cart, ctx) => {
      // @ts-expect-error a result of the wrong type
      if (cart.total === undefined) return ctx.succeed({ receipt: 42 });
      return ctx.succeed({ receipt: `paid ${cart.total}` });
    },
  },
  start: 'price',
});

describe('workflow types', () => {
  it('runtime.start checks its input against the workflow state at compile time', async () => {
    const runtime = new WorkflowRuntime({ store: new MemoryStore(), workflows: [checkout] });
    // @ts-expect-error an input of the wrong type
    await expect(runtime.start(checkout, { input: { items: [1, 2] } })).resolves.toMatchObject({ newlySubmitted: true });
    await expect(runtime.start(checkout, { input: { items: ['a'] } })).resolves.toMatchObject({ newlySubmitted: true });
    await runtime.store.close();
  });

  it('start must name one of the steps (at compile time, and at definition time for untyped code)', () => {
    expect(() =>
      defineWorkflow({
        name: 'bad-start',
        codec: json<number>(),
        steps: { only: (n: number, ctx) => ctx.succeed(n) },
        // @ts-expect-error not one of the steps
        start: 'elsewhere',
      }),
    ).toThrow(/start names step "elsewhere"/);
    expect(checkout.start).toBe('price');
  });
});
