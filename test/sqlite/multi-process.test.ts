/**
 * Several processes on one SQLite file at the same time: each job is
 * claimed and settled by exactly one of them, follow-up enqueues and kv
 * writes commit with their settlement, and the counters stay exact.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { bytes } from '../support/harness.js';
import { openStore, tempDbPath } from './helpers.js';

const worker = fileURLToPath(new URL('./fixtures/claim-worker.ts', import.meta.url));
const PROCESSES = 3;
const JOBS = 600;

function runWorker(path: string, startAt: number): Promise<{ pid: number; settled: string[]; nextEnqueued: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', worker, path, String(startAt)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
    child.on('exit', (code) =>
      code === 0 ? resolve(JSON.parse(out) as { pid: number; settled: string[]; nextEnqueued: number }) : reject(new Error(`worker exited ${code}: ${err}`)),
    );
  });
}

describe('several processes on one file', () => {
  it(`${PROCESSES} processes drain ${JOBS} jobs and their follow-ups: each settled exactly once, counters exact`, async () => {
    const path = tempDbPath('shared');
    const store = openStore({ path, backgroundMaintenance: false });
    const ids = await store.enqueueBatch(
      'q',
      Array.from({ length: JOBS }, (_, i) => ({ payload: bytes(String(i)), options: { headers: { generation: '0' } } })),
    );
    const startAt = Date.now() + 2_500; // after every child has started (tsx startup)
    const results = await Promise.all(Array.from({ length: PROCESSES }, () => runWorker(path, startAt)));
    const all = results.flatMap((r) => r.settled);
    expect(all).toHaveLength(2 * JOBS);
    expect(new Set(all).size).toBe(2 * JOBS);
    expect(results.reduce((sum, r) => sum + r.nextEnqueued, 0)).toBe(JOBS);
    expect(await store.stats('q')).toEqual({ pending: 0, claimed: 0, scheduled: 0, dead: 0, done: 2 * JOBS });
    for (const result of ids) {
      const id = (result as { id: string }).id;
      expect(await store.getJob(id)).toBeUndefined();
      expect(await store.kvGet(`seen/${id}`), `kv record of ${id}`).toBeDefined();
    }
    console.log(`[sqlite multi-process] settled per process: ${results.map((r) => r.settled.length).join(', ')}`);
  });
});
