import { describe, expect, it } from 'vitest';
import { StepError, defineWorkflow, json } from '../../../core/index.js';
import { createTestEnvironment } from '../../../testing/index.js';

interface Agent {
  goal: string;
  transcript: string[];
}

/** An agent loop: think, act, loop with a delay until done, at most 4 iterations. */
const agent = defineWorkflow({
  name: 'agent',
  codec: json<Agent>(),
  resultCodec: json<{ answer: string; turns: number }>(),
  steps: {
    think: (state, ctx) => {
      const turns = state.transcript.length;
      if (turns >= 4 || state.transcript.at(-1) === 'acted: found it') return ctx.succeed({ answer: `done after ${turns}`, turns });
      return ctx.next('act', { ...state, transcript: [...state.transcript, `thought ${turns}`] });
    },
    act: {
      retry: { maxAttempts: 3, initialDelayMs: 1_000 },
      run: (state, ctx) => {
        if (ctx.attempt === 1 && state.transcript.length === 1) throw StepError.transient('tool timed out');
        const found = state.transcript.length >= 3;
        return ctx.next('think', { ...state, transcript: [...state.transcript, found ? 'acted: found it' : 'acted'] }, { delayMs: 5_000 });
      },
    },
  },
});

describe('createTestEnvironment({ workflows })', () => {
  it('runs a workflow on virtual time; the history names its steps; the outcome is typed and decoded', async () => {
    const env = createTestEnvironment({ workflows: [agent] });
    const started = env.clock.now();
    await env.start(agent, { runId: 'a1', input: { goal: 'find it', transcript: [] } });
    await env.runUntilIdle();
    expect(env.outcome('a1')).toMatchObject({ status: 'succeeded', workflow: 'agent', output: { answer: 'done after 4', turns: 4 } });
    expect(env.history('a1').map((d) => [d.stepName, d.attempt])).toEqual([
      ['think', 1],
      ['act', 1],
      ['act', 2],
      ['think', 1],
      ['act', 1],
      ['think', 1],
    ]);
    // Two delays of 5 s and one retry after the step's own 1 s, all virtual.
    expect(env.clock.now() - started).toBeGreaterThanOrEqual(11_000);
    expect(env.clock.now() - started).toBeLessThan(12_000);
  });

  it('refuses an environment with neither a runner nor workflows', () => {
    expect(() => createTestEnvironment({})).toThrow(/a runner .* or workflows/);
  });
});
