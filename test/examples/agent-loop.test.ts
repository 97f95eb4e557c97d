/** The second example: an agent loop on SQLite runs every goal to an answer, retrying its flaky tool, and exits by itself. */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

describe('examples/agent-loop.ts', () => {
  it('answers every goal, carrying the transcript in typed state, and exits', () => {
    const script = new URL('../../examples/agent-loop.ts', import.meta.url).pathname;
    const run = spawnSync(process.execPath, ['--import', 'tsx', script], { encoding: 'utf8', timeout: 60_000 });
    expect(run.status).toBe(0);
    expect(run.stdout.match(/✔ agent-\S+ succeeded: answered/g)).toHaveLength(3);
    expect(run.stdout).toContain('act failed, will retry');
    expect(run.stdout).toMatch(/observed: result 1 \(attempt 2\)/);
  });
});
