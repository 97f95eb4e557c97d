/**
 * The published shape: entry points resolve through the package's exports
 * map to the built output (`npm test` builds first), and the public API has
 * the types the README promises.
 */
import { existsSync } from 'node:fs';
import { describe, expect, expectTypeOf, it } from 'vitest';
import type { QueueStore, RunOutcome, RunStatus, Step, StepOutcome as StepOutcomeType, SubmitResult } from '../../core/index.js';

const built = existsSync(new URL('../../dist/core/index.js', import.meta.url));

describe.skipIf(!built)('built package (run `npm run build` first)', () => {
  it('taquba-workflow exports the runtime, outcomes, errors and clocks', async () => {
    const root = await import('taquba-workflow');
    for (const name of ['WorkflowRuntime', 'StepOutcome', 'StepError', 'ManualClock', 'SystemClock', 'WorkflowError', 'LeaseLostError', 'decideSettlement']) {
      expect(root, name).toHaveProperty(name);
    }
  });

  it('taquba-workflow/store-kit exports what an adapter builds on, and the main entry leaves those internals out', async () => {
    const kit = await import('taquba-workflow/store-kit');
    const names = [
      'BaseQueueStore',
      'DEFAULT_DEAD_PAGE',
      'bytesEqual',
      'checkEffects',
      'checkEnqueueOptions',
      'checkHeaders',
      'checkJobId',
      'checkKvKey',
      'checkKvWrites',
      'checkNonNegativeInt',
      'checkPayload',
      'checkPositiveInt',
      'checkPrecondition',
      'checkQueueName',
      'checkSettlement',
      'checkTimeoutMs',
      'QueueConfigs',
      'resolveQueueConfig',
      'retryDelayMs',
      'enqueueDueAt',
      'STALE_BRANCH',
      'copyEffects',
      'copyReaperBranch',
      'reaperEffects',
      'encodeReaperBranch',
      'decodeReaperBranch',
      'compareIds',
      'newId',
      'jobRecord',
      'copyHeaders',
      'createHeaders',
      'headerBytes',
      'parseHeadersJson',
      'CompletionWaiters',
      'LocalNotifications',
      'HOUSEKEEPING',
    ];
    for (const name of names) expect(kit, name).toHaveProperty(name);
    const root = await import('taquba-workflow');
    for (const name of [
      'storeValidation',
      'QueueConfigs',
      'resolveQueueConfig',
      'retryDelayMs',
      'copyHeaders',
      'createHeaders',
      'headerBytes',
      'parseHeadersJson',
      'newId',
      'compareIds',
    ]) {
      expect(root, name).not.toHaveProperty(name);
    }
    expect(typeof kit.BaseQueueStore).toBe('function');
  });

  it('taquba-workflow/memory runs a workflow end to end from the built files', async () => {
    const { WorkflowRuntime, StepOutcome, ManualClock } = await import('taquba-workflow');
    const { MemoryStore } = await import('taquba-workflow/memory');
    const clock = new ManualClock();
    const store = new MemoryStore({ clock });
    const outcomes: RunOutcome[] = [];
    const runtime = new WorkflowRuntime({
      store,
      clock,
      runner: (step) => (step.stepNumber < 2 ? StepOutcome.continue(step.payload) : StepOutcome.succeed(step.payload)),
      hook: (o) => {
        outcomes.push(o);
      },
    });
    const controller = new AbortController();
    const worker = runtime.run(controller.signal);
    const { runId } = await runtime.submit({ input: new Uint8Array([7]) });
    while (outcomes.length === 0) await new Promise((resolve) => setImmediate(resolve));
    controller.abort();
    await worker;
    expect(outcomes[0]).toMatchObject({ runId, status: 'succeeded', finalStep: 2 });
    await store.close();
  });
});

describe('public types', () => {
  it('runner, outcome and status types match the documented API', () => {
    expectTypeOf<Step['signal']>().toEqualTypeOf<AbortSignal>();
    expectTypeOf<Step['payload']>().toEqualTypeOf<Uint8Array>();
    expectTypeOf<RunOutcome['status']>().toEqualTypeOf<'succeeded' | 'failed' | 'cancelled'>();
    expectTypeOf<RunStatus['state']>().toEqualTypeOf<'pending' | 'running' | 'cancelling'>();
    expectTypeOf<SubmitResult>().toEqualTypeOf<{ runId: string; newlySubmitted: boolean }>();
    expectTypeOf<StepOutcomeType['kind']>().toEqualTypeOf<'continue' | 'continueAfter' | 'succeed' | 'fail' | 'cancel'>();
    expectTypeOf<QueueStore['claim']>().returns.resolves.items.toHaveProperty('token');
  });
});
