import { describe, expect, it } from 'vitest';
import { StepError, StepOutcome } from '../../core/index.js';
import type { Step } from '../../core/index.js';
import { ManualClock, TestGuardError, createTestEnvironment, sleep } from '../../testing/index.js';
import type { Delivery } from '../../testing/index.js';

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const text = (b: Uint8Array | undefined): string | undefined => (b === undefined ? undefined : new TextDecoder().decode(b));
const HOUR = 3_600_000;

/** Step 0 waits an hour; step 1 fails transiently five times, then works 45 s (past its 30 s lease) and succeeds. */
function hourLongWorkflow(clock: ManualClock) {
  return async (step: Step): Promise<StepOutcome> => {
    if (step.stepNumber === 0) return StepOutcome.continueAfter(bytes('charge'), HOUR);
    if (step.attempts <= 5) throw StepError.transient(`gateway busy (${step.attempts})`);
    await sleep(clock, 45_000, step.signal);
    return StepOutcome.succeed(bytes('paid'));
  };
}

/** The fields of a delivery that must be the same on every execution (job ids are ULIDs and differ). */
const stable = (d: Delivery) => ({ ...d, jobId: undefined });

async function runHourLong(): Promise<{ runId: string; history: Delivery[]; env: ReturnType<typeof createTestEnvironment> }> {
  const clock = new ManualClock(Date.parse('2026-01-01T00:00:00Z'));
  const env = createTestEnvironment({ clock, runner: hourLongWorkflow(clock), queueConfig: { leaseDurationMs: 30_000 } });
  const { runId } = await env.submit({ runId: 'order-1', input: bytes('order'), maxAttemptsPerStep: 6 });
  await env.runUntilIdle();
  return { runId, history: env.history(runId), env };
}

describe('createTestEnvironment', () => {
  it('runs an hour-long workflow with retries and a long step in milliseconds, deterministically', async () => {
    const wallStart = performance.now();
    const first = await runHourLong();
    const wallMs = performance.now() - wallStart;
    const T0 = Date.parse('2026-01-01T00:00:00Z');
    expect(first.env.outcome(first.runId)).toMatchObject({ status: 'succeeded', finalStep: 1 });
    expect(text(first.env.outcome(first.runId)?.result)).toBe('paid');
    const h = first.history;
    expect(h.map((d) => [d.step, d.attempt, d.startedAt - T0, d.settled, d.jobStatus])).toEqual([
      [0, 1, 0, 'primary', 'done'],
      [1, 1, HOUR, 'primary', 'scheduled'],
      [1, 2, HOUR + 1_000, 'primary', 'scheduled'],
      [1, 3, HOUR + 3_000, 'primary', 'scheduled'],
      [1, 4, HOUR + 7_000, 'primary', 'scheduled'],
      [1, 5, HOUR + 15_000, 'primary', 'scheduled'],
      [1, 6, HOUR + 31_000, 'primary', 'done'],
    ]);
    expect(h[6]?.endedAt).toBe(T0 + HOUR + 31_000 + 45_000);
    expect(h[1]?.error).toEqual({ message: 'gateway busy (1)', permanent: false });
    expect(wallMs).toBeLessThan(1_000);
    console.log(`hour-long workflow: ${wallMs.toFixed(1)} ms wall time`);

    const second = await runHourLong();
    expect(second.history.map(stable)).toEqual(first.history.map(stable));
  });
});

describe('createTestEnvironment: guards', () => {
  it('fails with a clear error listing the active runs when a workflow never ends (maxSteps)', async () => {
    const env = createTestEnvironment({ runner: (step) => StepOutcome.continue(step.payload), maxSteps: 50 });
    await env.submit({ runId: 'forever', input: bytes('x') });
    await env.submit({ runId: 'done', input: bytes('y'), headers: {} });
    const error = await env.runUntilIdle().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TestGuardError);
    const guard = error as TestGuardError;
    expect(guard.code).toBe('TEST_GUARD_EXCEEDED');
    expect(guard.guard).toBe('maxSteps');
    expect(guard.activeRuns.map((r) => r.runId).sort()).toEqual(['done', 'forever']);
    expect(guard.message).toContain('run forever: step');
    expect(guard.message).toContain('maxSteps');
    // The environment stays usable: a later drive may go on (here with the same result).
    await expect(env.runUntilIdle({ maxSteps: 10 })).rejects.toMatchObject({ guard: 'maxSteps' });
    expect(env.history('forever').length).toBeGreaterThanOrEqual(30);
  });

  it('fails when the next event is beyond maxVirtualTimeMs', async () => {
    const env = createTestEnvironment({ runner: (step) => StepOutcome.continueAfter(step.payload, 24 * HOUR), maxVirtualTimeMs: 7 * 24 * HOUR });
    await env.submit({ runId: 'daily-forever', input: bytes('x') });
    const error = (await env.runUntilIdle().catch((e: unknown) => e)) as TestGuardError;
    expect(error).toBeInstanceOf(TestGuardError);
    expect(error.guard).toBe('maxVirtualTime');
    expect(error.activeRuns).toEqual([expect.objectContaining({ runId: 'daily-forever', step: 8, state: 'scheduled' })]);
    expect(env.history('daily-forever')).toHaveLength(8); // steps 0..7, at days 0..7
  });

  it('a runner stuck on a promise outside virtual time trips the virtual-time guard instead of hanging', async () => {
    const env = createTestEnvironment({ runner: () => new Promise<StepOutcome>(() => undefined), maxVirtualTimeMs: HOUR });
    await env.submit({ runId: 'stuck', input: bytes('x') });
    const error = (await env.runUntilIdle().catch((e: unknown) => e)) as TestGuardError;
    expect(error.guard).toBe('maxVirtualTime');
    expect(error.activeRuns).toEqual([expect.objectContaining({ runId: 'stuck', step: 0, state: 'running', attempts: 1 })]);
  });
});

describe('createTestEnvironment: driving', () => {
  it('runs nothing until driven; cancel of a pending run ends it at once', async () => {
    const env = createTestEnvironment({ runner: () => StepOutcome.succeed(bytes('ok')) });
    const a = await env.submit({ runId: 'a', input: bytes('a') });
    const b = await env.submit({ runId: 'b', input: bytes('b'), headers: { tenant: 'acme' } });
    expect(await env.status(a.runId)).toEqual({ runId: 'a', state: 'pending', currentStep: 0 });
    expect(await env.cancel(b.runId)).toBe(true);
    expect(env.outcome('b')).toEqual({ runId: 'b', status: 'cancelled', headers: { tenant: 'acme' }, finalStep: 0 });
    expect(env.history()).toHaveLength(0);
    await env.runUntilIdle();
    expect(env.outcome('a')?.status).toBe('succeeded');
    expect(await env.status('a')).toBeUndefined();
    expect([...env.outcomes().keys()]).toEqual(['b', 'a']);
  });

  it('advanceTime runs what falls due and stops at the target time', async () => {
    const env = createTestEnvironment({
      runner: (step) => (step.stepNumber === 0 ? StepOutcome.continueAfter(step.payload, 10 * 60_000) : StepOutcome.succeed(step.payload)),
    });
    const start = env.clock.now();
    await env.submit({ runId: 'reminder', input: bytes('x') });
    await env.advanceTime(5 * 60_000);
    expect(env.clock.now()).toBe(start + 5 * 60_000);
    expect(await env.status('reminder')).toEqual({ runId: 'reminder', state: 'pending', currentStep: 1 });
    await env.advanceTime(5 * 60_000);
    expect(env.outcome('reminder')?.status).toBe('succeeded');
    expect(env.history('reminder').map((d) => d.startedAt - start)).toEqual([0, 10 * 60_000]);
  });

  it('an external cancel while a step runs wins over its result', async () => {
    const env = createTestEnvironment({
      runner: async (step) => {
        await sleep(env.clock, 60_000); // ignores the signal on purpose
        return StepOutcome.succeed(step.payload);
      },
    });
    await env.submit({ runId: 'c', input: bytes('x') });
    await env.advanceTime(1_000);
    expect((await env.status('c'))?.state).toBe('running');
    expect(await env.cancel('c')).toBe(true);
    await env.runUntilIdle();
    expect(env.outcome('c')).toMatchObject({ status: 'cancelled', finalStep: 0 });
    expect(env.history('c')).toEqual([expect.objectContaining({ settled: 'cancel', result: expect.objectContaining({ kind: 'succeed' }) })]);
  });

  it('calls the user hook once per run, after recording the outcome', async () => {
    const seen: string[] = [];
    const env = createTestEnvironment({ runner: () => StepOutcome.fail('declined'), hook: (o) => void seen.push(`${o.runId}:${o.status}:${o.error}`) });
    await env.submit({ runId: 'x', input: bytes('x') });
    await env.runUntilIdle();
    expect(seen).toEqual(['x:failed:declined']);
  });
});

describe('createTestEnvironment: advanceTime guard', () => {
  it('advanceTime also stops a step loop that never yields to time', async () => {
    const env = createTestEnvironment({ runner: (step) => StepOutcome.continue(step.payload), maxSteps: 20 });
    await env.submit({ runId: 'spin', input: bytes('x') });
    await expect(env.advanceTime(1_000)).rejects.toMatchObject({ code: 'TEST_GUARD_EXCEEDED', guard: 'maxSteps' });
  });
});

describe('createTestEnvironment: durable hook delivery', () => {
  it('waits for the outcome notification job, which runs the hook', async () => {
    const seen: string[] = [];
    const env = createTestEnvironment({
      hookDelivery: 'durable',
      runner: (step) => (step.stepNumber === 0 ? StepOutcome.continueAfter(step.payload, HOUR) : StepOutcome.succeed(bytes('ok'))),
      hook: (o) => void seen.push(`${o.runId}:${o.status}`),
    });
    await env.submit({ runId: 'durable-1', input: bytes('x') });
    await env.runUntilIdle();
    expect(seen).toEqual(['durable-1:succeeded']);
    expect(env.outcome('durable-1')).toMatchObject({ status: 'succeeded', finalStep: 1 });
    expect(await env.store.stats('workflow-steps.outcomes')).toMatchObject({ pending: 0, claimed: 0, done: 1 });
  });

  it('a cancelled pending run is notified through the outcome queue too', async () => {
    const env = createTestEnvironment({ hookDelivery: 'durable', runner: () => StepOutcome.succeed(bytes('no')) });
    await env.submit({ runId: 'c', input: bytes('x') });
    expect(await env.cancel('c')).toBe(true);
    expect(env.outcome('c')).toBeUndefined(); // not delivered yet: nothing runs until driven
    await env.runUntilIdle();
    expect(env.outcome('c')).toMatchObject({ status: 'cancelled' });
    expect(env.history('c')).toEqual([]);
  });
});
