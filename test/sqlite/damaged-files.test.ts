/**
 * SqliteStore on damaged files: pages corrupted in the middle of a real
 * database, and the database file or its write-ahead log deleted or
 * replaced while the store has it open. Each must stop the store with the
 * permanent `STORE_CORRUPTED` naming the file, never a raw driver error
 * (which callers would retry as transient) nor silently going on.
 */
import { closeSync, copyFileSync, openSync, renameSync, statSync, symlinkSync, unlinkSync, writeSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../core/clock.js';
import { isTransientError } from '../../core/errors.js';
import { SqliteStore } from '../../adapters/sqlite/index.js';
import { bytes } from '../support/harness.js';
import { openStore, tempDbPath } from './helpers.js';

const T0 = Date.parse('2026-01-01T00:00:00Z');
const PAGE = 4096;

type Failure = { code?: string; isPermanent?: boolean; message: string; cause?: { code?: string } };

async function failure(call: () => Promise<unknown>): Promise<Failure> {
  return call().then(
    () => {
      throw new Error('expected the operation to fail');
    },
    (error: unknown) => error as Failure,
  );
}

/** A closed database of 5,000 pending jobs (about 380 pages) with the 4 pages at its middle overwritten. */
async function corruptedFile(): Promise<string> {
  const path = tempDbPath('corrupt');
  const store = new SqliteStore({ path, backgroundMaintenance: false });
  for (let i = 0; i < 50; i++) {
    await store.enqueueBatch(
      'q',
      Array.from({ length: 100 }, (_, j) => ({ payload: new Uint8Array(200).fill(i), options: { id: `job-${String(i).padStart(2, '0')}-${j}` } })),
    );
  }
  await store.close(); // the last connection checkpoints: every page is in the main file
  const pages = statSync(path).size / PAGE;
  expect(pages).toBeGreaterThan(100);
  const fd = openSync(path, 'r+');
  const junk = Buffer.alloc(4 * PAGE, 0xa5);
  writeSync(fd, junk, 0, junk.length, Math.floor(pages / 2) * PAGE);
  closeSync(fd);
  return path;
}

describe('a database file with corrupted pages', () => {
  it('an operation reading them fails with the permanent STORE_CORRUPTED naming the file, and the store stops', async () => {
    const path = await corruptedFile();
    const store = openStore({ path, backgroundMaintenance: false });
    // The pages at the start still read: the damage is met where it is.
    expect(await store.claim('q', { limit: 10 })).toHaveLength(10);
    const error = await failure(() => store.claim('q', { limit: 10_000 }));
    expect(error).toMatchObject({ code: 'STORE_CORRUPTED', isPermanent: true });
    expect(isTransientError(error)).toBe(false);
    expect(error.message).toContain(path);
    expect(error.cause?.code).toMatch(/^SQLITE_CORRUPT/);
    // Every later operation refuses, even ones that would not touch the damaged pages.
    expect(await failure(() => store.stats('q'))).toMatchObject({ code: 'STORE_CORRUPTED' });
    expect(await failure(() => store.enqueue('q', bytes('x')))).toMatchObject({ code: 'STORE_CORRUPTED' });
  });

  it('a damaged schema page: the open fails with STORE_CORRUPTED (not STORE_OPEN_FAILED) naming the file', async () => {
    const path = tempDbPath('corrupt-schema');
    const store = new SqliteStore({ path, backgroundMaintenance: false });
    await store.enqueue('q', bytes('a'));
    await store.close();
    const fd = openSync(path, 'r+');
    const junk = Buffer.alloc(PAGE - 200, 0xa5); // page 1 after its header: the schema table
    writeSync(fd, junk, 0, junk.length, 200);
    closeSync(fd);
    let error: Failure | undefined;
    try {
      new SqliteStore({ path, backgroundMaintenance: false });
    } catch (e) {
      error = e as Failure;
    }
    expect(error).toMatchObject({ code: 'STORE_CORRUPTED', isPermanent: true });
    expect(error?.message).toContain(path);
  });

  it('operations sharing a group commit with one that meets the damage all fail with STORE_CORRUPTED', async () => {
    const path = await corruptedFile();
    const store = openStore({ path, backgroundMaintenance: false });
    const results = await Promise.allSettled([store.enqueue('q', bytes('a')), store.claim('q', { limit: 10_000 }), store.kvDelete('k')]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected']);
    for (const result of results) expect((result as PromiseRejectedResult).reason).toMatchObject({ code: 'STORE_CORRUPTED' });
  });

  it('a reader of the damaged pages (getJob) gets STORE_CORRUPTED too', async () => {
    const path = await corruptedFile();
    const raw = openStore({ path, backgroundMaintenance: false });
    const errors: Failure[] = [];
    for (let i = 0; i < 50 && errors.length === 0; i++) {
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- errors is filled by the callbacks inside the loop
      for (let j = 0; j < 100 && errors.length === 0; j += 7) {
        await raw.getJob(`job-${String(i).padStart(2, '0')}-${j}`).catch((e: unknown) => errors.push(e as Failure));
      }
    }
    expect(errors[0]).toMatchObject({ code: 'STORE_CORRUPTED', isPermanent: true });
  });
});

describe('the database file or its -wal deleted or replaced while open', () => {
  it('deleting the -wal under a writer: its next commit fails with STORE_CORRUPTED, and nothing more is written', async () => {
    const path = tempDbPath('wal-deleted');
    const clock = new ManualClock(T0);
    const store = openStore({ path, clock, backgroundMaintenance: false });
    await store.enqueue('q', bytes('a'), { id: 'a' });
    unlinkSync(`${path}-wal`);
    clock.advance(100);
    const error = await failure(() => store.enqueue('q', bytes('b'), { id: 'b' }));
    expect(error).toMatchObject({ code: 'STORE_CORRUPTED', isPermanent: true });
    expect(error.message).toContain(`${path}-wal was deleted`);
    expect(await failure(() => store.claim('q'))).toMatchObject({ code: 'STORE_CORRUPTED' });
    expect(await failure(() => store.getJob('a'))).toMatchObject({ code: 'STORE_CORRUPTED' });
  });

  it('an idle store learns it on its housekeeping timer: the timers stop and a subscribed worker is woken to meet the error', async () => {
    const path = tempDbPath('wal-deleted-idle');
    const clock = new ManualClock(T0);
    const store = openStore({ path, clock, reaperIntervalMs: 1_000, promoteIntervalMs: 1_000 });
    const seen: string[] = [];
    store.subscribe('q', (n) => seen.push(n.type));
    await store.enqueue('q', bytes('a'));
    await Promise.resolve();
    seen.length = 0;
    unlinkSync(`${path}-wal`);
    clock.advance(1_000);
    await Promise.resolve();
    expect(seen).toContain('jobsAvailable');
    expect(clock.pendingTimers()).toBe(0);
    expect(await failure(() => store.claim('q'))).toMatchObject({ code: 'STORE_CORRUPTED' });
  });

  it('with no one subscribed, the reaper timer finds it and every timer ends', async () => {
    const path = tempDbPath('wal-deleted-reaper');
    const clock = new ManualClock(T0);
    const store = openStore({ path, clock, reaperIntervalMs: 1_000, promoteIntervalMs: 5_000 });
    await store.enqueue('q', bytes('a'));
    unlinkSync(`${path}-wal`);
    clock.advance(1_000);
    expect(clock.pendingTimers()).toBe(0);
    expect(await failure(() => store.stats('q'))).toMatchObject({ code: 'STORE_CORRUPTED' });
  });

  it('replacing the database file with another: STORE_CORRUPTED naming it', async () => {
    const path = tempDbPath('db-replaced');
    const clock = new ManualClock(T0);
    const store = openStore({ path, clock, backgroundMaintenance: false });
    await store.enqueue('q', bytes('a'));
    copyFileSync(path, `${path}.copy`);
    renameSync(`${path}.copy`, path);
    clock.advance(100);
    const error = await failure(() => store.enqueue('q', bytes('b')));
    expect(error).toMatchObject({ code: 'STORE_CORRUPTED' });
    expect(error.message).toContain(`${path} was replaced by another file`);
  });

  it('no false alarm: another store on the file closing, a path through a symlink, a WAL checkpoint', async () => {
    const path = tempDbPath('shared');
    const link = `${path}.link`;
    symlinkSync(path, link);
    const clock = new ManualClock(T0);
    const a = openStore({ path: link, clock, backgroundMaintenance: false, walAutocheckpointPages: 1 });
    const b = openStore({ path, clock, backgroundMaintenance: false });
    await b.enqueue('q', bytes('b'), { id: 'b' });
    await b.close();
    for (let i = 0; i < 5; i++) {
      clock.advance(100);
      await a.enqueue('q', bytes(`a${i}`)); // one-page autocheckpoints reset the log
    }
    expect(await a.stats('q')).toMatchObject({ pending: 6 });
    expect(await a.claim('q', { limit: 10 })).toHaveLength(6);
  });
});
