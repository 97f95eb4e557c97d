/**
 * Opening a file made by an older version of the SQLite store migrates it in
 * place: every job (whatever its status, lease or dedup key), counter and kv
 * entry is kept and keeps working; a migration that fails leaves the file as
 * it was.
 */
import { readFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../core/clock.js';
import { SCHEMA_VERSION } from '../../adapters/sqlite/index.js';
import { bytes } from '../support/harness.js';
import { openStore, tempDbPath } from './helpers.js';

const T0 = Date.parse('2026-01-01T00:00:00Z');
const V1_SCHEMA = readFileSync(new URL('./fixtures/schema-v1.sql', import.meta.url), 'utf8');

/** A version 1 file holding one job of each status, a live lease, a dedup key, counters and a kv entry. */
function versionOneFile(): string {
  const path = tempDbPath('v1');
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.exec(V1_SCHEMA);
  db.prepare('INSERT INTO taquba_schema (id, version, created_at) VALUES (1, 1, ?)').run(T0);
  const insert = db.prepare(
    `INSERT INTO taquba_jobs (id, queue, status, payload, headers, attempts, max_attempts, priority, enqueued_at, claimed_at, lease_expires_at, run_at, last_error, dedup_key, failed_at, claim_token)
     VALUES (@id, 'q', @status, @payload, '{"tenant":"acme"}', @attempts, 3, 1000, ${T0}, @claimedAt, @lease, @runAt, @lastError, @dedupKey, @failedAt, @token)`,
  );
  const job = { claimedAt: null, lease: null, runAt: null, lastError: null, dedupKey: null, failedAt: null, token: null, attempts: 0 };
  insert.run({ ...job, id: 'a-pending', status: 'pending', payload: Buffer.from('p'), dedupKey: 'key-1' });
  insert.run({
    ...job,
    id: 'b-claimed',
    status: 'claimed',
    payload: Buffer.from('c'),
    attempts: 1,
    claimedAt: T0,
    lease: T0 + 30_000,
    token: 'tok.0.b-claimed',
  });
  insert.run({ ...job, id: 'c-scheduled', status: 'scheduled', payload: Buffer.from('s'), runAt: T0 + 60_000 });
  insert.run({ ...job, id: 'd-dead', status: 'dead', payload: Buffer.from('d'), attempts: 3, lastError: 'boom', failedAt: T0 });
  db.prepare('INSERT INTO taquba_queues (name, pending, claimed, scheduled, dead, done) VALUES (?, 1, 1, 1, 1, 7)').run('q');
  db.prepare('INSERT INTO taquba_kv (key, value) VALUES (?, ?)').run('cursor', Buffer.from('v'));
  db.close();
  return path;
}

function readOnly<T>(path: string, fn: (db: Database.Database) => T): T {
  const db = new Database(path, { readonly: true });
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

describe('schema migration', () => {
  it('the current version is recorded in a new file', () => {
    const path = tempDbPath();
    openStore({ path, backgroundMaintenance: false });
    expect(readOnly(path, (db) => db.prepare('SELECT version FROM taquba_schema').pluck().get())).toBe(SCHEMA_VERSION);
  });

  it('a version 1 file is migrated in place: every job, lease, dedup key, counter and kv entry is kept and works', async () => {
    const path = versionOneFile();
    const clock = new ManualClock(T0 + 1_000);
    const store = openStore({ path, clock, backgroundMaintenance: false });

    expect(readOnly(path, (db) => db.prepare('SELECT version FROM taquba_schema').pluck().get())).toBe(SCHEMA_VERSION);
    const table = readOnly(path, (db) => db.prepare("SELECT sql FROM sqlite_master WHERE name = 'taquba_jobs'").pluck().get()) as string;
    expect(table).not.toContain('status IN');
    const indexes = readOnly(path, (db) =>
      db.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'taquba_jobs' AND sql IS NOT NULL ORDER BY name").pluck().all(),
    );
    expect(indexes).toEqual([
      'taquba_jobs_cancel',
      'taquba_jobs_claim',
      'taquba_jobs_dead',
      'taquba_jobs_dead_age',
      'taquba_jobs_dedup',
      'taquba_jobs_done_age',
      'taquba_jobs_due',
      'taquba_jobs_lease',
    ]);
    expect(readOnly(path, (db) => db.pragma('integrity_check', { simple: true }))).toBe('ok');
    // Version 3 keeps a record of removed jobs, for waiters in other connections.
    expect(readOnly(path, (db) => db.prepare("SELECT name FROM sqlite_master WHERE tbl_name = 'taquba_removed' ORDER BY name").pluck().all())).toEqual([
      'taquba_removed',
      'taquba_removed_age',
    ]);

    expect(await store.stats('q')).toEqual({ pending: 1, claimed: 1, scheduled: 1, dead: 1, done: 7 });
    expect(await store.kvGet('cursor')).toEqual(bytes('v'));
    expect(await store.getJob('d-dead')).toMatchObject({ status: 'dead', attempts: 3, lastError: 'boom', headers: { tenant: 'acme' } });
    // The dedup key still holds, and the claim index still finds the pending job.
    expect(await store.enqueue('q', bytes('dup'), { dedupKey: 'key-1' })).toEqual({ kind: 'alreadyEnqueued', id: 'a-pending' });
    const [claimed] = await store.claim('q', { limit: 5 });
    expect(claimed?.jobId).toBe('a-pending');
    // The lease taken before the migration can still be settled with its token, and only with it.
    await expect(store.settle({ jobId: 'b-claimed', token: 'tok.0.other' }, { action: { type: 'ack' } })).rejects.toMatchObject({ code: 'LEASE_LOST' });
    expect(await store.settle({ jobId: 'b-claimed', token: 'tok.0.b-claimed' }, { action: { type: 'ack' } })).toMatchObject({ status: 'done' });
    // The due index still finds the scheduled job.
    clock.advance(60_000);
    expect(await store.promote()).toBe(1);
    expect(await store.stats('q')).toEqual({ pending: 1, claimed: 1, scheduled: 0, dead: 1, done: 8 });

    // Reopening a migrated file is a plain check.
    await store.close();
    const again = openStore({ path, backgroundMaintenance: false });
    expect(await again.stats('q')).toEqual({ pending: 1, claimed: 1, scheduled: 0, dead: 1, done: 8 });
  });

  it("an application's view over the jobs table survives the migration", async () => {
    const path = versionOneFile();
    const db = new Database(path);
    db.exec("CREATE VIEW app_pending AS SELECT id FROM taquba_jobs WHERE status = 'pending'");
    db.close();
    openStore({ path, backgroundMaintenance: false });
    expect(readOnly(path, (check) => check.prepare('SELECT id FROM app_pending').pluck().all())).toEqual(['a-pending']);
  });

  it('a migration that fails leaves the version 1 file as it was', () => {
    const path = versionOneFile();
    const db = new Database(path);
    db.exec('CREATE TABLE taquba_jobs_v2 (x)'); // the application's own table, in the migration's way
    db.close();
    expect(() => openStore({ path, backgroundMaintenance: false })).toThrow(/taquba_jobs_v2/);
    readOnly(path, (check) => {
      expect(check.prepare('SELECT version FROM taquba_schema').pluck().get()).toBe(1);
      expect(check.prepare('SELECT id FROM taquba_jobs ORDER BY id').pluck().all()).toEqual(['a-pending', 'b-claimed', 'c-scheduled', 'd-dead']);
      expect(check.prepare("SELECT sql FROM sqlite_master WHERE name = 'taquba_jobs'").pluck().get()).toContain('status IN');
    });
  });
});
