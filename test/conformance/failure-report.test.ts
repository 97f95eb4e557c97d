/**
 * A property failure's message (not only its `cause`) says what broke first,
 * then the counterexample, the seed and path, and the command line that
 * replays it: reporters that print only `message` (JSON, CI summaries) show
 * everything needed.
 */
import { describe, expect, it } from 'vitest';
import { checkWorkflowProperties, storeModelChecks } from '../../conformance/index.js';
import type { ConformanceOptions } from '../../conformance/index.js';
import { MUTANTS } from './mutants.js';

function mutant(name: string): ConformanceOptions['createStore'] {
  const found = MUTANTS.find((m) => m.name === name);
  if (!found) throw new Error(`no mutant ${name}`);
  return found.create;
}

async function failure(run: Promise<unknown>): Promise<Error> {
  const error = await run.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, 'the property passed on a broken store').toBeInstanceOf(Error);
  return error as Error;
}

describe('property failure reports', () => {
  it('model property: the message starts with the failing command and expected vs actual, then seed, path and the replay command', async () => {
    const options: ConformanceOptions = {
      name: 'attempts-not-counted',
      createStore: mutant('attempts-not-counted-on-claim'),
      numRuns: 50,
      seed: 42,
      reportAs: { testFile: 'test/conformance/memory.test.ts', testName: 'random command sequences (every result)' },
    };
    const check = storeModelChecks().checks[0];
    const error = await failure((check as { run: (o: ConformanceOptions) => Promise<void> }).run(options));
    const lines = error.message.split('\n');
    // The failing command (a claim, the only call that counts attempts) with the model's and the store's answer.
    expect(lines[0]).toMatch(/^(after )?claim\(q\d/);
    expect(lines[1]).toMatch(/^ {2}expected \(model\): /);
    expect(lines[2]).toMatch(/^ {2}actual \(store\): {3}/);
    expect(error.message).toMatch(
      /\n\[attempts-not-counted\] property "random command sequences \(every result\)" failed after \d+ run\(s\), shrunk \d+ time\(s\): seed 42, path [\d:]+\n/,
    );
    expect(error.message).toMatch(/\nCounterexample: \[\d+,.*claim\(/);
    const replay = lines.find((line) => line.startsWith('Replay: '));
    const path = /path ([\d:]+)/.exec(error.message)?.[1] as string;
    // The command list's own replay path, printed by fast-check as a comment in the counterexample.
    const commands = /\/\*replayPath="([^"]*)"\*\//.exec(error.message)?.[1] as string;
    expect(replay).toBe(
      `Replay: TAQUBA_CONFORMANCE_SEED=42 TAQUBA_CONFORMANCE_PATH=${path} TAQUBA_CONFORMANCE_REPLAY_PATH=${/^[\w./:=@+-]+$/.test(commands) ? commands : `'${commands}'`} npx vitest run test/conformance/memory.test.ts -t 'random command sequences \\(every result\\)'`,
    );
    // Replaying seed and paths (as the printed command line does) reproduces the same failure at once.
    const again = await failure((check as { run: (o: ConformanceOptions) => Promise<void> }).run({ ...options, path, replayPath: commands }));
    expect(again.message.split('\n')[0]).toBe(lines[0]);
  });

  it('workflow property: the message starts with the violated invariant', async () => {
    const options: ConformanceOptions = { name: 'cancel-branch-ignored', createStore: mutant('cancel-branch-ignored'), numRuns: 40, seed: 7 };
    const error = await failure(checkWorkflowProperties(options, 'plain', 1));
    const lines = error.message.split('\n');
    expect(lines[0]).toMatch(/^workflow invariant violated: /);
    expect(error.message).toMatch(/\n\[cancel-branch-ignored\] property failed after \d+ run\(s\), shrunk \d+ time\(s\): seed 7, path [\d:]+\n/);
    expect(lines.find((line) => line.startsWith('Replay: '))).toMatch(
      /^Replay: TAQUBA_CONFORMANCE_SEED=7 TAQUBA_CONFORMANCE_PATH=[\d:]+ npx vitest run '<your conformance test file>'$/,
    );
  });
});
