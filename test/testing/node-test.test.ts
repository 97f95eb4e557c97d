/** The kit needs no vitest globals: the same checks pass under `node:test` in a child process. */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

describe('under node:test', () => {
  it('runs the environment and a simulation without vitest', async () => {
    const root = fileURLToPath(new URL('../../', import.meta.url));
    const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = execFile(
        process.execPath,
        ['--import', 'tsx', '--test', 'test/testing/node-test-runner.mts'],
        { cwd: root, timeout: 60_000 },
        (error, stdout, stderr) => resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
      child.stdin?.end();
    });
    expect(code, `${stdout}\n${stderr}`).toBe(0);
    expect(stdout).toMatch(/# pass 2/);
    expect(stdout).toMatch(/# fail 0/);
  });
});
