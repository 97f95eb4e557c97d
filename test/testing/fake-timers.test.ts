/** Users' global fake timers must neither break the kit nor be advanced by it. */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { StepError, StepOutcome } from '../../core/index.js';
import { assertSimulation, createTestEnvironment, simulate } from '../../testing/index.js';

describe('alongside vi.useFakeTimers', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('runUntilIdle works with every timer faked, and does not move the fake clock', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'setInterval', 'setImmediate', 'Date', 'performance'] });
    const fakeNow = Date.now();
    const env = createTestEnvironment({
      runner: (step) => {
        if (step.stepNumber === 0) return StepOutcome.continueAfter(step.payload, 3_600_000);
        if (step.attempts < 3) throw StepError.transient('retry me');
        return StepOutcome.succeed(step.payload);
      },
    });
    const { runId } = await env.submit({ input: new Uint8Array([1]) });
    await env.runUntilIdle();
    expect(env.outcome(runId)?.status).toBe('succeeded');
    expect(env.history(runId)).toHaveLength(4);
    expect(Date.now()).toBe(fakeNow);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('works under the default vi.useFakeTimers(), simulation included', async () => {
    vi.useFakeTimers();
    const env = createTestEnvironment({
      runner: (step) => (step.stepNumber < 3 ? StepOutcome.continueAfter(step.payload, 60_000) : StepOutcome.succeed(step.payload)),
    });
    const { runId } = await env.submit({ input: new Uint8Array([1]) });
    await env.runUntilIdle();
    expect(env.outcome(runId)?.finalStep).toBe(3);
    const report = await simulate({ runner: (step) => StepOutcome.succeed(step.payload), runs: [{ input: new Uint8Array([2]) }], seed: 9 });
    assertSimulation(report);
    expect(report.runIds).toEqual(['run-0']);
  });
});
