/**
 * The kit under `node:test` (no vitest, no globals): run with
 * `node --import tsx --test test/testing/node-test-runner.mts`.
 * `node-test.test.ts` runs it in a child process.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { StepError, StepOutcome } from '../../core/index.js';
import { assertSimulation, createTestEnvironment, simulate } from '../../testing/index.js';

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

test('createTestEnvironment skips an hour of virtual time and retries', async () => {
  const env = createTestEnvironment({
    runner: (step) => {
      if (step.stepNumber === 0) return StepOutcome.continueAfter(step.payload, 3_600_000);
      if (step.attempts < 3) throw StepError.transient('busy');
      return StepOutcome.succeed(bytes('done'));
    },
  });
  const { runId } = await env.submit({ input: bytes('x') });
  await env.runUntilIdle();
  assert.equal(env.outcome(runId)?.status, 'succeeded');
  assert.deepEqual(
    env.history(runId).map((d) => [d.step, d.attempt, d.startedAt - env.history(runId)[0]!.startedAt]),
    [
      [0, 1, 0],
      [1, 1, 3_600_000],
      [1, 2, 3_601_000],
      [1, 3, 3_603_000],
    ],
  );
});

test('simulate checks invariants under faults', async () => {
  const report = await simulate({
    runner: (step) => (step.stepNumber < 2 ? StepOutcome.continue(step.payload) : StepOutcome.succeed(step.payload)),
    runs: [{ input: bytes('a') }, { input: bytes('b') }],
    seed: 3,
    queueConfig: { maxAttempts: 10 },
  });
  assertSimulation(report);
  assert.equal(report.runIds.length, 2);
});
