/**
 * Two store instances on one SQLite file, as two processes would hold them:
 * a submit-only "web" instance whose reaper is on, and a worker instance
 * whose reaper is off. The web instance reaps the step; the run must end in
 * that commit and its hook fire once in the worker's loop.
 */
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../core/clock.js';
import { WorkflowRuntime } from '../../core/index.js';
import type { StepRunner } from '../../core/index.js';
import { OutcomeChannel, bytes, eventually } from '../support/harness.js';
import { openStore, tempDbPath } from './helpers.js';

const never: StepRunner = () => new Promise(() => undefined);

describe('a run reaped by an instance that runs no worker loop', () => {
  for (const hookDelivery of ['inProcess', 'durable'] as const) {
    it(`ends in the reaper's commit and its hook fires once in another instance's worker loop (${hookDelivery})`, async () => {
      const path = tempDbPath('reaped');
      const clock = new ManualClock(Date.parse('2026-01-01T00:00:00Z'));
      const web = openStore({ path, clock, reaperIntervalMs: 1_000 });
      const workerStore = openStore({ path, clock, backgroundMaintenance: false });
      const client = new WorkflowRuntime({ store: web, clock, runner: never, hookDelivery });
      const hook = new OutcomeChannel();
      const worker = new WorkflowRuntime({ store: workerStore, clock, runner: never, hook: hook.hook, hookDelivery, pollIntervalMs: 50 });
      const { runId } = await client.submit({ input: bytes('x'), headers: { tenant: 'acme' }, maxAttemptsPerStep: 1 });
      // A worker that died took the only attempt.
      expect(await workerStore.claim('workflow-steps')).toHaveLength(1);
      const controller = new AbortController();
      const running = worker.run(controller.signal);
      clock.advance(31_000);
      await eventually(async () => (await web.stats('workflow-steps')).dead === 1);
      expect(await client.status(runId)).toBeUndefined();
      for (let i = 0; i < 5 && hook.received.length === 0; i++) {
        clock.advance(100);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      expect(await hook.next()).toEqual({ runId, status: 'failed', error: 'lease expired', headers: { tenant: 'acme' }, finalStep: 0 });
      controller.abort();
      await running;
      expect(hook.received).toHaveLength(1);
      expect(await web.stats('workflow-steps.outcomes')).toMatchObject({ pending: 0, claimed: 0, scheduled: 0 });
    });
  }
});
