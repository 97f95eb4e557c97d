/**
 * An AI-agent loop as a workflow on SQLite: think, act (a flaky tool call,
 * retried by the step's own policy), loop with a delay until the goal is
 * met or the turn budget runs out. The transcript is the run's typed state,
 * so after a crash the loop resumes with everything it had said and done.
 *
 *   npm run example:agent            # a few goals, a fresh database in a temp folder
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StepError, WorkflowRuntime, defineWorkflow, json } from '../core/index.js';
import { SqliteStore } from '../adapters/sqlite/index.js';

const MAX_TURNS = 6;

interface Conversation {
  goal: string;
  /** What the agent thought and did, turn by turn. */
  transcript: string[];
}

/** A stand-in for a model call: decides the next tool call from the transcript. */
function think(conversation: Conversation): string | undefined {
  const searches = conversation.transcript.filter((line) => line.startsWith('observed')).length;
  return searches >= 1 + (conversation.goal.length % 3) ? undefined : `search #${searches + 1} for "${conversation.goal}"`;
}

const agent = defineWorkflow({
  name: 'agent',
  codec: json<Conversation>(),
  resultCodec: json<{ answer: string; turns: number }>(),
  steps: {
    think: (conversation, ctx) => {
      const action = think(conversation);
      const turns = conversation.transcript.length;
      if (action === undefined) return ctx.succeed({ answer: `answered "${conversation.goal}" after ${turns} lines`, turns });
      if (turns >= MAX_TURNS * 2) return ctx.fail(`no answer within ${MAX_TURNS} turns`);
      return ctx.next('act', { ...conversation, transcript: [...conversation.transcript, `thought: ${action}`] });
    },
    act: {
      retry: { maxAttempts: 4, initialDelayMs: 100, maxDelayMs: 800 },
      timeoutMs: 5_000,
      run: (conversation, ctx) => {
        // The tool is flaky: every first attempt of an odd turn times out, and is retried.
        if (ctx.attempt === 1 && conversation.transcript.length % 4 === 1) throw StepError.transient('tool call timed out');
        const observed = `observed: result ${conversation.transcript.length} (attempt ${ctx.attempt})`;
        // Wait a little before thinking again (a rate limit, say): a delayed step, no worker held.
        return ctx.next('think', { ...conversation, transcript: [...conversation.transcript, observed] }, { delayMs: 200 });
      },
    },
  },
});

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'taquba-agent-'));
  const store = new SqliteStore({ path: join(dir, 'agent.db') });
  const goals = ['weather', 'train times', 'a recipe'];
  let ended = 0;
  let finished!: () => void;
  const allEnded = new Promise<void>((resolve) => (finished = resolve));
  const runtime = new WorkflowRuntime({
    store,
    workflows: [agent],
    hook: (outcome) => {
      const transcript = (outcome.lastState as Conversation | undefined)?.transcript ?? [];
      console.log(`✔ ${outcome.runId} ${outcome.status}: ${outcome.status === 'succeeded' ? (outcome.output as { answer: string }).answer : outcome.error}`);
      for (const line of transcript) console.log(`    ${line}`);
      if (++ended === goals.length) finished();
    },
  });
  runtime.on('stepSettled', (e) => {
    if (e.status === 'scheduled' && e.step === 'act' && e.branch === 'primary') console.log(`  ↻ ${e.runId} act failed, will retry`);
  });
  const controller = new AbortController();
  const worker = runtime.run(controller.signal);
  for (const goal of goals) await runtime.start(agent, { runId: `agent-${goal.replaceAll(' ', '-')}`, input: { goal, transcript: [] } });
  console.log(`agent loop on ${dir}: ${goals.length} goals`);
  await allEnded;
  controller.abort();
  await worker;
  await store.close();
  rmSync(dir, { recursive: true, force: true });
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
