/**
 * Proof of durability: a child process runs a batch of multi-step workflows
 * on one SQLite file and is SIGKILLed at random moments, again and again,
 * each time restarted on the same file, until every run ended. Checks:
 * - every run ends exactly once, with the outcome its script dictates
 *   (the hook is delivered durably, at least once: repeated deliveries of
 *   the same outcome are counted, differing ones fail);
 * - no settled step runs again: per run, step numbers never go back in the
 *   log, no step runs after the run ended, and a step runs more than once
 *   only after its scripted transient failure or in a process that was killed;
 * - no run records (kv keys) and no live jobs are left.
 * Default: ~25 kills. `TAQUBA_DEEP=1`: more runs and ~150 kills.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { SqliteStore } from '../../adapters/sqlite/index.js';
import { runKeys } from '../../core/index.js';
import { runScript } from './fixtures/crash-script.js';

const DEEP = process.env.TAQUBA_DEEP === '1';
const RUNS = DEEP ? 500 : 60;
const MAX_KILLS = DEEP ? 150 : 25;
const QUEUE = 'workflow-steps';
const worker = fileURLToPath(new URL('./fixtures/crash-worker.ts', import.meta.url));

interface ChildEnd {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Starts the worker; resolves `opened` when its store is open, `exit` when it ends. */
function startChild(dir: string): { child: ChildProcess; opened: Promise<boolean>; exit: Promise<ChildEnd>; stderr: () => string } {
  const child = spawn(process.execPath, ['--import', 'tsx', worker, dir, String(RUNS)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exit = new Promise<ChildEnd>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  const opened = new Promise<boolean>((resolve) => {
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes('opened\n')) resolve(true);
    });
    void exit.then(() => resolve(false));
  });
  return { child, opened, exit, stderr: () => stderr };
}

describe('SQLite crash test (SIGKILL at random moments, restart on the same file)', () => {
  it(
    'every run ends exactly once with its scripted outcome; no settled step re-runs; nothing left behind',
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'taquba-sqlite-crash-'));
      const killedPids = new Set<number>();
      let children = 0;
      try {
        for (;;) {
          children++;
          const { child, opened, exit, stderr } = startChild(dir);
          if (killedPids.size < MAX_KILLS && (await opened)) {
            // A random moment after the store opened: during submits, claims, steps, settlements or hooks.
            const delay = Math.floor(Math.random() * 250);
            const timer = new Promise<'timer'>((resolve) => setTimeout(() => resolve('timer'), delay));
            if ((await Promise.race([timer, exit.then(() => 'exit' as const)])) === 'timer' && child.exitCode === null) {
              killedPids.add(child.pid!);
              child.kill('SIGKILL');
            }
          }
          const end = await exit;
          if (end.signal === 'SIGKILL' && killedPids.has(child.pid!)) continue;
          expect(end, `child failed: ${stderr()}`).toEqual({ code: 0, signal: null });
          break;
        }

        const lines = readFileSync(join(dir, 'events.log'), 'utf8')
          .split('\n')
          .filter((l) => l.length > 0);
        const steps = new Map<string, Array<{ step: number; pid: number; tag: string }>>();
        const ends = new Map<string, string[]>();
        const violations: string[] = [];
        for (const line of lines) {
          const parts = line.split(' ');
          const runId = parts[1] as string;
          if (parts[0] === 'STEP') {
            if (ends.has(runId)) violations.push(`${runId}: step ran after the run ended: ${line}`);
            const list = steps.get(runId) ?? [];
            list.push({ step: Number(parts[2]), pid: Number(parts[4]), tag: parts[5] as string });
            steps.set(runId, list);
          } else if (parts[0] === 'END') {
            const list = ends.get(runId) ?? [];
            list.push(parts.slice(2).join(' '));
            ends.set(runId, list);
          } else {
            violations.push(`unparseable line: ${line}`);
          }
        }

        let reruns = 0;
        let transientRetries = 0;
        let repeatedHooks = 0;
        let lost = 0;
        for (let i = 0; i < RUNS; i++) {
          const runId = `run-${i}`;
          const script = runScript(i);
          const outcomes = ends.get(runId) ?? [];
          const expected = `${script.outcome} ${script.steps - 1} ${script.outcome === 'failed' ? 'scripted failure' : '-'}`;
          if (outcomes.length === 0) lost++;
          else if (outcomes.some((o) => o !== expected)) violations.push(`${runId}: outcomes ${JSON.stringify(outcomes)}, expected "${expected}"`);
          repeatedHooks += Math.max(0, outcomes.length - 1);
          const executions = steps.get(runId) ?? [];
          let highest = -1;
          for (const [k, execution] of executions.entries()) {
            if (execution.step < highest) violations.push(`${runId}: step ${execution.step} ran after step ${highest}`);
            highest = Math.max(highest, execution.step);
            const next = executions[k + 1];
            if (next?.step !== execution.step) continue;
            // Ran again: legitimate only after a scripted transient failure, or when its process was killed before settling.
            if (execution.tag === 'transient') transientRetries++;
            else if (killedPids.has(execution.pid)) reruns++;
            else violations.push(`${runId}: settled step ${execution.step} ran again (pid ${execution.pid} was not killed)`);
          }
          if (highest !== script.steps - 1) violations.push(`${runId}: last step run was ${highest}, expected ${script.steps - 1}`);
        }

        const store = new SqliteStore({ path: join(dir, 'store.db'), backgroundMaintenance: false });
        const leftovers: string[] = [];
        for (const queue of [QUEUE, `${QUEUE}.outcomes`]) {
          const stats = await store.stats(queue);
          if (stats.pending + stats.claimed + stats.scheduled + stats.dead > 0) leftovers.push(`${queue}: ${JSON.stringify(stats)}`);
        }
        for (let i = 0; i < RUNS; i++) {
          const keys = runKeys(QUEUE, `run-${i}`);
          if ((await store.kvGet(keys.identity)) !== undefined || (await store.kvGet(keys.cursor)) !== undefined) leftovers.push(`run-${i}: run records left`);
        }
        const doneSteps = (await store.stats(QUEUE)).done;
        await store.close();

        console.log(
          `[sqlite crash test] runs ${RUNS}, child processes ${children}, kills ${killedPids.size}, step executions ${lines.filter((l) => l.startsWith('STEP')).length}, ` +
            `settled step transitions ${doneSteps}, re-runs of unsettled steps ${reruns}, scripted transient retries ${transientRetries}, ` +
            `repeated hook deliveries ${repeatedHooks}, lost runs ${lost}, leftovers ${leftovers.length}, violations ${violations.length}`,
        );
        expect(violations).toEqual([]);
        expect(lost).toBe(0);
        expect(leftovers).toEqual([]);
        expect(killedPids.size).toBeGreaterThan(0);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
    DEEP ? 900_000 : 120_000,
  );
});
