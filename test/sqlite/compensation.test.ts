/**
 * onCancel survives a SIGKILL of the worker running it: the compensation is
 * a step job like any other, so after the killed process's lease expires a
 * worker in another process runs it again, and the run ends cancelled once,
 * with its hook.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const fixture = fileURLToPath(new URL('./fixtures/compensation-worker.ts', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'taquba-compensation-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const events = (): string[] => {
  try {
    return readFileSync(join(dir, 'events.log'), 'utf8').split('\n').filter(Boolean);
  } catch {
    return [];
  }
};

function start(mode: 'first' | 'second'): {
  pid: number;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; output: string }>;
  kill: () => void;
} {
  const child = spawn(process.execPath, ['--import', 'tsx', fixture, dir, mode], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; output: string }>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal, output })),
  );
  return { pid: child.pid as number, exited, kill: () => child.kill('SIGKILL') };
}

async function until(condition: () => boolean, what: string, failsafeMs = 30_000): Promise<void> {
  const deadline = Date.now() + failsafeMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${failsafeMs} ms; events: ${events().join(' | ')}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('onCancel across a SIGKILL', () => {
  it('a compensation killed mid-way runs again in another process, and the run ends cancelled once', async () => {
    const first = start('first');
    await until(() => events().some((line) => line.startsWith('COMP 1 ')), 'the first compensation starts');
    first.kill();
    expect((await first.exited).signal).toBe('SIGKILL');
    const second = start('second');
    const { code, output } = await second.exited;
    expect(code, output).toBe(0);
    const log = events();
    expect(log.filter((line) => line.startsWith('COMP')).map((line) => line.split(' ').slice(0, 3).join(' '))).toEqual([
      `COMP 1 ${first.pid}`,
      `COMP 2 ${second.pid}`,
    ]);
    expect(log.filter((line) => line.startsWith('COMP')).every((line) => line.endsWith('{"booked":["flight"]}'))).toBe(true);
    expect(log.filter((line) => line.startsWith('END'))).toEqual(['END trip-1 cancelled {"booked":["flight"]}']);
  });
});
