/** The README's main job: runs to the end, and resumes after an interrupt instead of starting over. */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const dir = mkdtempSync(join(tmpdir(), 'taquba-example-'));
const script = new URL('../../examples/document-pipeline.ts', import.meta.url).pathname;

function runExample(db: string, options: { interruptOn?: RegExp } = {}): Promise<{ output: string; code: number | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', script], {
      env: { ...process.env, PIPELINE_DB: db, DOCS: '4' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    let interrupted = false;
    const onData = (chunk: Buffer): void => {
      output += chunk.toString();
      if (options.interruptOn && !interrupted && options.interruptOn.test(output)) {
        interrupted = true;
        child.kill('SIGINT');
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', reject);
    child.on('close', (code) => resolve({ output, code }));
  });
}

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('examples/document-pipeline.ts', () => {
  it('processes every document and prints a summary', async () => {
    const { output, code } = await runExample(join(dir, 'full.db'));
    expect(code).toBe(0);
    expect(output).toContain('4 new');
    expect(output).toMatch(/summary: 4 documents; this session 4 runs ended \(4 succeeded, 0 failed, 0 cancelled\)/);
    expect(output).toMatch(/doc-03 ocr failed, will retry/);
  });

  it('Ctrl-C settles in-flight steps; the next start resumes the unfinished runs', async () => {
    const db = join(dir, 'resume.db');
    const first = await runExample(db, { interruptOn: /ocr done/ });
    expect(first.code).toBe(0);
    expect(first.output).toContain('interrupted: letting in-flight steps settle');
    const second = await runExample(db);
    expect(second.code).toBe(0);
    expect(second.output).toMatch(/resuming \d+ unfinished runs where they stopped/);
    expect(second.output).not.toMatch(/doc-0[1-4] extract done/); // settled steps are not run again
    const finished = (first.output.match(/✔/g) ?? []).length + (second.output.match(/✔/g) ?? []).length;
    expect(finished).toBe(4);
    const third = await runExample(db);
    expect(third.output).toContain('nothing left to do');
  });
});
