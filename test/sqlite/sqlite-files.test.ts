/**
 * SqliteStore on real files: bad files and paths, schema versions, a locked
 * database, durability across reopen, and several connections on one file
 * (the situation of several processes sharing it).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../core/clock.js';
import type { StoreNotification } from '../../core/queue-store.js';
import { SqliteStore, SCHEMA_VERSION } from '../../adapters/sqlite/index.js';
import { bytes } from '../support/harness.js';
import { openStore, tempDbPath } from './helpers.js';

const T0 = Date.parse('2026-01-01T00:00:00Z');

function openError(fn: () => unknown): { code: string; message: string; cause: unknown } {
  try {
    fn();
  } catch (error) {
    return error as { code: string; message: string; cause: unknown };
  }
  throw new Error('expected the open to fail');
}

describe('opening', () => {
  it('creates a new file with the schema and a WAL journal, and reopens it', async () => {
    const path = tempDbPath();
    const store = openStore({ path, backgroundMaintenance: false });
    await store.enqueue('q', bytes('a'), { id: 'a' }, [{ key: 'k', value: bytes('v') }]);
    await store.close();
    const raw = new Database(path, { readonly: true });
    expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(raw.prepare('SELECT version FROM taquba_schema').pluck().get()).toBe(SCHEMA_VERSION);
    raw.close();
    const again = openStore({ path, backgroundMaintenance: false });
    expect((await again.getJob('a'))?.payload).toEqual(bytes('a'));
    expect(await again.kvGet('k')).toEqual(bytes('v'));
    expect(await again.stats('q')).toMatchObject({ pending: 1 });
  });

  it("':memory:' works", async () => {
    const store = openStore({ path: ':memory:', backgroundMaintenance: false });
    await store.enqueue('q', bytes('a'));
    expect(await store.claim('q')).toHaveLength(1);
  });

  it('applies the synchronous level (NORMAL by default)', () => {
    const level = (store: SqliteStore): number => (store as unknown as { db: Database.Database }).db.pragma('synchronous', { simple: true }) as number;
    expect(level(openStore({ backgroundMaintenance: false }))).toBe(1);
    expect(level(openStore({ backgroundMaintenance: false, synchronous: 'FULL' }))).toBe(2);
    expect(level(openStore({ backgroundMaintenance: false, synchronous: 'EXTRA' }))).toBe(3);
    expect(level(openStore({ backgroundMaintenance: false, synchronous: 'OFF' }))).toBe(0);
  });

  it('rejects bad options with INVALID_ARGUMENT', () => {
    expect(openError(() => new SqliteStore({ path: '' })).code).toBe('INVALID_ARGUMENT');
    expect(openError(() => new SqliteStore({ path: tempDbPath(), synchronous: 'SOMETIMES' as never })).code).toBe('INVALID_ARGUMENT');
    expect(openError(() => new SqliteStore({ path: tempDbPath(), busyTimeoutMs: -1 })).code).toBe('INVALID_ARGUMENT');
    expect(openError(() => new SqliteStore(undefined as never)).code).toBe('INVALID_ARGUMENT');
  });

  it("keeps an application database's own tables intact", async () => {
    const path = tempDbPath();
    const raw = new Database(path);
    raw.exec("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users (name) VALUES ('ada')");
    raw.close();
    const store = openStore({ path, backgroundMaintenance: false });
    await store.enqueue('q', bytes('a'));
    await store.close();
    const after = new Database(path, { readonly: true });
    expect(after.prepare('SELECT name FROM users').pluck().all()).toEqual(['ada']);
    after.close();
  });
});

describe('bad files: a typed error naming the file, nothing damaged', () => {
  it('a file that is not a database: STORE_OPEN_FAILED, file unchanged', () => {
    const path = tempDbPath('not-a-db');
    const content = 'these are my notes, not a database\n'.repeat(200);
    writeFileSync(path, content);
    const error = openError(() => new SqliteStore({ path }));
    expect(error.code).toBe('STORE_OPEN_FAILED');
    expect(error.message).toContain(path);
    expect((error.cause as { code?: string }).code).toBe('SQLITE_NOTADB');
    expect(readFileSync(path, 'utf8')).toBe(content);
  });

  it('a path whose directory does not exist: STORE_OPEN_FAILED', () => {
    const path = join(dirname(tempDbPath()), 'no-such-dir', 'deeper', 'store.db');
    const error = openError(() => new SqliteStore({ path }));
    expect(error.code).toBe('STORE_OPEN_FAILED');
    expect(error.message).toContain(path);
    expect(error.cause).toBeDefined();
  });

  it('a path that is a directory: STORE_OPEN_FAILED', () => {
    const path = tempDbPath('a-directory');
    mkdirSync(path);
    const error = openError(() => new SqliteStore({ path }));
    expect(error.code).toBe('STORE_OPEN_FAILED');
    expect(error.message).toContain(path);
  });

  it('a schema from another version: INCOMPATIBLE_SCHEMA naming the file; data left as it was', async () => {
    const path = tempDbPath();
    const store = openStore({ path, backgroundMaintenance: false });
    await store.enqueue('q', bytes('a'), { id: 'keep-me' });
    await store.close();
    const raw = new Database(path);
    raw.prepare('UPDATE taquba_schema SET version = ?').run(SCHEMA_VERSION + 1);
    raw.close();
    const error = openError(() => new SqliteStore({ path }));
    expect(error.code).toBe('INCOMPATIBLE_SCHEMA');
    expect(error.message).toContain(path);
    const check = new Database(path, { readonly: true });
    expect(check.prepare('SELECT version FROM taquba_schema').pluck().get()).toBe(SCHEMA_VERSION + 1);
    expect(check.prepare('SELECT id FROM taquba_jobs').pluck().all()).toEqual(['keep-me']);
    check.close();
  });

  it('taquba_ tables not made by this store: INCOMPATIBLE_SCHEMA, untouched', () => {
    const path = tempDbPath();
    const raw = new Database(path);
    raw.exec("CREATE TABLE taquba_jobs (whatever TEXT); INSERT INTO taquba_jobs VALUES ('x')");
    raw.close();
    expect(openError(() => new SqliteStore({ path })).code).toBe('INCOMPATIBLE_SCHEMA');
    const check = new Database(path, { readonly: true });
    expect(check.prepare('SELECT whatever FROM taquba_jobs').pluck().all()).toEqual(['x']);
    expect(check.prepare("SELECT name FROM sqlite_master WHERE name = 'taquba_schema'").get()).toBeUndefined();
    check.close();
  });

  it('a database locked past the busy timeout: STORE_UNAVAILABLE (transient) with the driver cause; nothing lost', async () => {
    const path = tempDbPath();
    const store = openStore({ path, backgroundMaintenance: false, busyTimeoutMs: 50 });
    await store.enqueue('q', bytes('a'), { id: 'a' });
    const other = new Database(path);
    other.exec('BEGIN IMMEDIATE');
    try {
      for (const call of [() => store.enqueue('q', bytes('b')), () => store.claim('q'), () => store.reap(), () => store.kvDelete('k')]) {
        const error = await call().then(
          () => undefined,
          (e: unknown) => e as { code: string; isPermanent: boolean; cause: { code: string } },
        );
        expect(error).toMatchObject({ code: 'STORE_UNAVAILABLE', isPermanent: false });
        expect(error?.cause.code).toMatch(/^SQLITE_BUSY/);
      }
      // Readers are not blocked by a writer in WAL mode.
      expect(await store.stats('q')).toMatchObject({ pending: 1 });
    } finally {
      other.exec('ROLLBACK');
      other.close();
    }
    expect(await store.stats('q')).toMatchObject({ pending: 1, claimed: 0 });
    expect(await store.claim('q')).toHaveLength(1);
  });

  it("claiming from an empty queue does not wait for another connection's write lock", async () => {
    const path = tempDbPath();
    const store = openStore({ path, backgroundMaintenance: false, busyTimeoutMs: 5_000 });
    await store.enqueue('other', bytes('a'));
    const other = new Database(path);
    other.exec('BEGIN IMMEDIATE');
    try {
      const started = Date.now();
      expect(await store.claim('q')).toEqual([]);
      expect(Date.now() - started).toBeLessThan(1_000);
    } finally {
      other.exec('ROLLBACK');
      other.close();
    }
  });

  it('opening an existing file while another connection writes does not wait for it', async () => {
    const path = tempDbPath();
    await new SqliteStore({ path, backgroundMaintenance: false }).close();
    const other = new Database(path);
    other.exec('BEGIN IMMEDIATE');
    try {
      const store = openStore({ path, backgroundMaintenance: false, busyTimeoutMs: 50 });
      expect(store.path).toBe(path);
    } finally {
      other.exec('ROLLBACK');
      other.close();
    }
  });
});

describe('several connections on one file', () => {
  it('a committed settlement is visible to another connection and survives closing', async () => {
    const path = tempDbPath();
    const a = openStore({ path, backgroundMaintenance: false });
    const b = openStore({ path, backgroundMaintenance: false });
    await a.enqueue('q', bytes('a'), { id: 'a' });
    const [claim] = await b.claim('q');
    await expect(a.claim('q')).resolves.toEqual([]);
    await b.settle(claim!, {
      action: { type: 'ack' },
      effects: { enqueue: [{ queue: 'q', payload: bytes('n'), options: { id: 'n' } }], kvWrites: [{ key: 'cursor', value: bytes('1') }] },
    });
    await b.close();
    expect(await a.stats('q')).toEqual({ pending: 1, claimed: 0, scheduled: 0, dead: 0, done: 1 });
    expect(await a.kvGet('cursor')).toEqual(bytes('1'));
    // A token issued by one connection is checked by the other.
    await expect(a.settle(claim!, { action: { type: 'ack' } })).rejects.toMatchObject({ code: 'LEASE_LOST' });
  });

  it('concurrent submits of one dedup key: exactly one wins across connections', async () => {
    const path = tempDbPath();
    const stores = [openStore({ path, backgroundMaintenance: false }), openStore({ path, backgroundMaintenance: false })];
    const results = await Promise.all(
      stores.flatMap((s, i) =>
        [0, 1, 2].map((j) => s.enqueue('q', bytes(`${i}${j}`), { dedupKey: 'run:x:0' }, [{ key: 'identity', value: bytes(`${i}${j}`), ifAbsent: true }])),
      ),
    );
    expect(results.filter((r) => r.kind === 'new')).toHaveLength(1);
    expect(await stores[0]!.stats('q')).toMatchObject({ pending: 1 });
  });

  it('wakes subscribers, reports cancels and finishes waits from other connections at the change-poll interval', async () => {
    const path = tempDbPath();
    const clock = new ManualClock(T0);
    const worker = openStore({ path, clock, backgroundMaintenance: false, changePollIntervalMs: 50 });
    const other = openStore({ path, clock, backgroundMaintenance: false, changePollIntervalMs: 50 });
    const seen: StoreNotification[] = [];
    worker.subscribe('q', (n) => seen.push(n));
    await other.enqueue('q', bytes('a'), { id: 'a' });
    await Promise.resolve();
    expect(seen).toEqual([]);
    clock.advance(50);
    await Promise.resolve();
    expect(seen).toEqual([{ type: 'jobsAvailable', queue: 'q' }]);

    const [claim] = await worker.claim('q');
    const waiting = worker.waitForCompletion('a', 10_000);
    expect((await other.cancel('a')).outcome).toBe('requested');
    clock.advance(50);
    await Promise.resolve();
    expect(seen.filter((n) => n.type === 'cancelRequested')).toEqual([{ type: 'cancelRequested', queue: 'q', jobId: 'a' }]);
    clock.advance(50); // no new commit: the cancel is not reported twice
    await Promise.resolve();
    expect(seen.filter((n) => n.type === 'cancelRequested')).toHaveLength(1);

    // Completion seen through another connection's commit.
    const viaOther = other.waitForCompletion('a', 10_000);
    await worker.settle(claim!, { action: { type: 'deadLetter', reason: 'stop' } });
    clock.advance(50);
    expect(await viaOther).toMatchObject({ kind: 'completed', job: { status: 'dead', lastError: 'stop' } });
    expect(await waiting).toMatchObject({ kind: 'completed', job: { status: 'dead' } });
  });

  it('waitForCompletion of a job another connection removes with cancel: notFound, not completed', async () => {
    const path = tempDbPath();
    const clock = new ManualClock(T0);
    const waiter = openStore({ path, clock, backgroundMaintenance: false, changePollIntervalMs: 50 });
    const other = openStore({ path, clock, backgroundMaintenance: false, changePollIntervalMs: 50 });
    await waiter.enqueue('q', bytes('p'), { id: 'pending' });
    await waiter.enqueue('q', bytes('s'), { id: 'scheduled', runAt: T0 + 60_000 });
    await waiter.enqueue('q', bytes('a'), { id: 'acked' });
    const waits = ['pending', 'scheduled', 'acked'].map((id) => waiter.waitForCompletion(id, 10_000));
    expect((await other.cancel('pending')).outcome).toBe('removed');
    expect((await other.cancel('scheduled')).outcome).toBe('removed');
    const [claim] = await other.claim('q');
    expect(claim?.jobId).toBe('acked');
    await other.settle(claim!, { action: { type: 'ack' } });
    clock.advance(50);
    expect(await Promise.all(waits)).toEqual([{ kind: 'notFound' }, { kind: 'notFound' }, { kind: 'completed' }]);

    // A later job reusing a removed id is its own job: its ack is a completion.
    clock.advance(1);
    await waiter.enqueue('q', bytes('again'), { id: 'pending' });
    const again = waiter.waitForCompletion('pending', 10_000);
    const [reclaim] = await other.claim('q');
    await other.settle(reclaim!, { action: { type: 'ack' } });
    clock.advance(50);
    expect(await again).toEqual({ kind: 'completed' });
  });

  it('the record of removed jobs is swept by the reaper after a day', async () => {
    const path = tempDbPath();
    const clock = new ManualClock(T0);
    const store = openStore({ path, clock, backgroundMaintenance: false });
    await store.enqueue('q', bytes('p'), { id: 'p' });
    await store.cancel('p');
    const removed = (): number => {
      const raw = new Database(path, { readonly: true });
      try {
        return raw.prepare('SELECT count(*) FROM taquba_removed').pluck().get() as number;
      } finally {
        raw.close();
      }
    };
    expect(removed()).toBe(1);
    clock.advance(24 * 60 * 60 * 1000 - 1);
    await store.reap();
    expect(removed()).toBe(1);
    clock.advance(1);
    await store.reap();
    expect(removed()).toBe(0);
  });

  it('the scheduled-job wakeup of one connection promotes jobs another connection scheduled', async () => {
    const path = tempDbPath();
    const clock = new ManualClock(T0);
    const worker = openStore({ path, clock, changePollIntervalMs: 50, promoteIntervalMs: 60_000, reaperIntervalMs: 60_000 });
    const other = openStore({ path, clock, backgroundMaintenance: false });
    const seen: string[] = [];
    worker.subscribe('q', (n) => seen.push(n.type));
    await other.enqueue('q', bytes('later'), { runAt: T0 + 1_000 });
    clock.advance(50); // the change poll learns of the scheduled job and arms its wakeup
    await Promise.resolve();
    seen.length = 0;
    clock.advance(950);
    await Promise.resolve();
    expect(seen).toContain('jobsAvailable');
    expect(await worker.stats('q')).toMatchObject({ pending: 1, scheduled: 0 });
  });
});

describe('lifecycle', () => {
  it('close stops every timer and later calls throw STORE_CLOSED', async () => {
    const clock = new ManualClock(T0);
    const store = new SqliteStore({ path: tempDbPath(), clock });
    store.subscribe('q', () => undefined);
    await store.enqueue('q', bytes('later'), { runAt: T0 + 10_000 });
    await store.enqueue('q', bytes('x'), { id: 'x' });
    const waiting = store.waitForCompletion('x', 10_000);
    await store.close();
    expect(clock.pendingTimers()).toBe(0);
    expect(await waiting).toEqual({ kind: 'timedOut' });
    await expect(store.stats('q')).rejects.toMatchObject({ code: 'STORE_CLOSED' });
    await expect(store.enqueue('q', bytes('a'))).rejects.toMatchObject({ code: 'STORE_CLOSED' });
    await store.close();
  });
});
