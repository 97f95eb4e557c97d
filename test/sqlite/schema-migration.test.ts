/**
 * Opening a file made by an older version of the SQLite store migrates it in
 * place: every job (whatever its status, lease, dedup key or carried reaper
 * effects), counter and kv entry is kept and keeps working (kv entries stay
 * permanent; expiring ones can be written); a migration that fails leaves
 * the file as it was.
 */
import { readFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../core/clock.js';
import { SCHEMA_VERSION } from '../../adapters/sqlite/index.js';
import { encodeReaperBranch } from '../../core/carried-effects.js';
import { bytes, text } from '../support/harness.js';
import { openStore, tempDbPath } from './helpers.js';

const T0 = Date.parse('2026-01-01T00:00:00Z');
const fixture = (name: string): string => readFileSync(new URL(`./fixtures/${name}`, import.meta.url), 'utf8');
const V1_SCHEMA = fixture('schema-v1.sql');
const V4_SCHEMA = fixture('schema-v4.sql');

/** A file with the `schema` of `version`, filled by `fill`. */
function fileAt(version: number, schema: string, fill: (db: Database.Database) => void): string {
  const path = tempDbPath(`v${version}`);
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.exec(schema);
  db.prepare('INSERT INTO taquba_schema (id, version, created_at) VALUES (1, ?, ?)').run(version, T0);
  fill(db);
  db.close();
  return path;
}

/** A version 1 file holding one job of each status, a live lease, a dedup key, counters and a kv entry. */
function versionOneFile(): string {
  return fileAt(1, V1_SCHEMA, (db) => {
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
  });
}

/**
 * A version 4 file holding a job of every status (a done one kept), a live
 * lease, a dedup key, counters, kv entries, and two claims on their last
 * attempt whose leases run out at T0 + 10 s: one carrying reaper effects,
 * one carrying none.
 */
function versionFourFile(): string {
  return fileAt(4, V4_SCHEMA, (db) => {
    const insert = db.prepare(
      `INSERT INTO taquba_jobs (id, queue, status, payload, headers, attempts, max_attempts, priority, enqueued_at, claimed_at, lease_expires_at, run_at, last_error, dedup_key, completed_at, failed_at, claim_token, reaper_dead_letter)
       VALUES (@id, 'q', @status, @payload, @headers, @attempts, 3, 1000, ${T0}, @claimedAt, @lease, @runAt, @lastError, @dedupKey, @completedAt, @failedAt, @token, @branch)`,
    );
    const job = {
      headers: '{"tenant":"acme"}',
      claimedAt: null,
      lease: null,
      runAt: null,
      lastError: null,
      dedupKey: null,
      completedAt: null,
      failedAt: null,
      token: null,
      branch: null,
      attempts: 0,
    };
    const claimed = (id: string, attempts: number, lease: number) => ({
      ...job,
      id,
      status: 'claimed',
      payload: Buffer.from(id),
      attempts,
      claimedAt: T0,
      lease,
      token: `tok.0.${id}`,
    });
    insert.run({ ...job, id: 'a-pending', status: 'pending', payload: Buffer.from('p'), dedupKey: 'key-1' });
    insert.run(claimed('b-claimed', 1, T0 + 30_000));
    insert.run({ ...job, id: 'c-scheduled', status: 'scheduled', payload: Buffer.from('s'), runAt: T0 + 60_000 });
    insert.run({ ...job, id: 'd-dead', status: 'dead', payload: Buffer.from('d'), attempts: 3, lastError: 'boom', failedAt: T0 });
    insert.run({ ...job, id: 'e-done', status: 'done', payload: Buffer.from('e'), attempts: 1, completedAt: T0 });
    const branch = encodeReaperBranch({ effects: { enqueue: [{ queue: 'ended', payload: bytes('carried'), options: { id: 'carried-end' } }] } });
    insert.run({ ...claimed('f-carrying', 3, T0 + 10_000), branch });
    insert.run({ ...claimed('g-bare', 3, T0 + 10_000), headers: '{"tenant":"globex"}' });
    db.prepare('INSERT INTO taquba_queues (name, pending, claimed, scheduled, dead, done) VALUES (?, 1, 3, 1, 1, 7)').run('q');
    db.prepare('INSERT INTO taquba_kv (key, value) VALUES (?, ?)').run('cursor', Buffer.from('v'));
    db.prepare('INSERT INTO taquba_kv (key, value) VALUES (?, ?)').run('lock:globex', Buffer.from('held'));
  });
}

/** The kv table's rows as stored: key, value as text, and `expires_at`. */
const kvRows = (db: Database.Database): unknown[] => db.prepare('SELECT key, CAST(value AS TEXT) AS value, expires_at FROM taquba_kv ORDER BY key').all();

/** How SQLite runs the reaper's kv sweep on the file: through the partial index of expiring records. */
const kvSweepPlan = (db: Database.Database): string[] =>
  (db.prepare('EXPLAIN QUERY PLAN DELETE FROM taquba_kv WHERE expires_at <= ?').all(T0) as Array<{ detail: string }>).map((row) => row.detail);

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
    // Made at version 2 and migrated: the kv table has its expiry column and the sweep its index.
    expect(readOnly(path, (db) => db.prepare("SELECT name FROM pragma_table_info('taquba_kv') ORDER BY cid").pluck().all())).toEqual([
      'key',
      'value',
      'expires_at',
    ]);
    expect(readOnly(path, kvSweepPlan)).toEqual(['SEARCH taquba_kv USING INDEX taquba_kv_expiry (expires_at<?)']);
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

  it('a version 4 file is migrated in place: every job, lease, carried branch, counter and kv entry is kept, and templates then apply to its jobs', async () => {
    const path = versionFourFile();
    const clock = new ManualClock(T0 + 1_000);
    const store = openStore({ path, clock, backgroundMaintenance: false });

    expect(readOnly(path, (db) => db.prepare('SELECT version FROM taquba_schema').pluck().get())).toBe(SCHEMA_VERSION);
    expect(readOnly(path, (db) => db.prepare("SELECT name FROM sqlite_master WHERE tbl_name = 'taquba_reaper_templates'").pluck().all())).toEqual([
      'taquba_reaper_templates',
    ]);
    expect(readOnly(path, (db) => db.pragma('integrity_check', { simple: true }))).toBe('ok');
    // The kv entries it held are permanent (no expiry); the sweep has its index.
    expect(readOnly(path, kvRows)).toEqual([
      { key: 'cursor', value: 'v', expires_at: null },
      { key: 'lock:globex', value: 'held', expires_at: null },
    ]);
    expect(readOnly(path, kvSweepPlan)).toEqual(['SEARCH taquba_kv USING INDEX taquba_kv_expiry (expires_at<?)']);

    expect(await store.stats('q')).toEqual({ pending: 1, claimed: 3, scheduled: 1, dead: 1, done: 7 });
    expect(await store.kvGet('cursor')).toEqual(bytes('v'));
    expect(await store.getJob('d-dead')).toMatchObject({ status: 'dead', attempts: 3, lastError: 'boom', headers: { tenant: 'acme' } });
    expect(await store.getJob('e-done')).toMatchObject({ status: 'done', completedAt: T0 });
    expect(await store.enqueue('q', bytes('dup'), { dedupKey: 'key-1' })).toEqual({ kind: 'alreadyEnqueued', id: 'a-pending' });
    expect(await store.settle({ jobId: 'b-claimed', token: 'tok.0.b-claimed' }, { action: { type: 'ack' } })).toMatchObject({ status: 'done' });

    // A template set on the migrated file applies to the job that carries nothing; the carried branch still wins on its job.
    await store.setReaperTemplate('q', {
      effects: {
        enqueue: [{ queue: 'ended', payload: bytes('templated'), dedupKey: ['end:', { jobId: true }] }],
        kvDeletes: [['lock:', { header: 'tenant' }]],
      },
    });
    clock.advance(10_000);
    const report = await store.reap();
    expect(report.deadLettered.map((job) => job.id)).toEqual(['f-carrying', 'g-bare']);
    expect(report.effectsApplied).toEqual(['f-carrying', 'g-bare']);
    expect(await store.getJob('carried-end')).toMatchObject({ queue: 'ended', payload: bytes('carried') });
    // The template's enqueue holds its rendered dedup key until claimed.
    expect(await store.enqueue('ended', bytes('again'), { dedupKey: 'end:g-bare' })).toMatchObject({ kind: 'alreadyEnqueued' });
    const ended = await store.claim('ended', { limit: 5 });
    expect(ended.map((claim) => text(claim.job.payload)).sort()).toEqual(['carried', 'templated']);
    expect(await store.kvGet('lock:globex')).toBeUndefined();
    expect(await store.stats('q')).toEqual({ pending: 1, claimed: 0, scheduled: 1, dead: 3, done: 8 });
  });

  it('on a migrated version 4 file, its kv entries stay for good while records written with ttlMs expire and are swept', async () => {
    const path = versionFourFile();
    const clock = new ManualClock(T0 + 1_000);
    const store = openStore({ path, clock, backgroundMaintenance: false });
    const [claim] = await store.claim('q');
    if (claim === undefined) throw new Error('expected the pending job');
    // An old record (its precondition holds) made expiring, a new one with a ttl, and a new permanent one.
    const settled = store.settle(claim, {
      action: { type: 'ack' },
      precondition: { key: 'cursor', equals: bytes('v') },
      effects: {
        kvWrites: [
          { key: 'cursor', value: bytes('v2'), ttlMs: 5_000 },
          { key: 'lease:a', value: bytes('a'), ttlMs: 1_000 },
          { key: 'kept', value: bytes('k') },
        ],
      },
    });
    expect(await settled).toMatchObject({ branch: 'primary' });
    expect(readOnly(path, kvRows)).toEqual([
      { key: 'cursor', value: 'v2', expires_at: T0 + 6_000 },
      { key: 'kept', value: 'k', expires_at: null },
      { key: 'lease:a', value: 'a', expires_at: T0 + 2_000 },
      { key: 'lock:globex', value: 'held', expires_at: null },
    ]);
    clock.advance(1_000);
    expect(await store.kvGet('lease:a')).toBeUndefined();
    expect(await store.kvGet('cursor')).toEqual(bytes('v2'));
    // A write without ttlMs makes an expiring record permanent again.
    expect(await store.enqueue('q', bytes('n'), { id: 'n' }, [{ key: 'cursor', value: bytes('v3') }])).toEqual({ kind: 'new', id: 'n' });
    clock.advance(365 * 24 * 60 * 60 * 1000);
    await store.reap();
    expect(readOnly(path, kvRows)).toEqual([
      { key: 'cursor', value: 'v3', expires_at: null },
      { key: 'kept', value: 'k', expires_at: null },
      { key: 'lock:globex', value: 'held', expires_at: null },
    ]);
    expect(await store.kvGet('lock:globex')).toEqual(bytes('held'));
  });

  it('a migration that fails leaves the version 4 file as it was', () => {
    const path = versionFourFile();
    const db = new Database(path);
    db.exec('CREATE TABLE taquba_reaper_templates (x)'); // the application's own table, in the migration's way
    db.close();
    expect(() => openStore({ path, backgroundMaintenance: false })).toThrow(/taquba_reaper_templates/);
    readOnly(path, (check) => {
      expect(check.prepare('SELECT version FROM taquba_schema').pluck().get()).toBe(4);
      expect(check.prepare('SELECT id FROM taquba_jobs ORDER BY id').pluck().all()).toEqual([
        'a-pending',
        'b-claimed',
        'c-scheduled',
        'd-dead',
        'e-done',
        'f-carrying',
        'g-bare',
      ]);
      expect(check.prepare('SELECT sql FROM sqlite_master WHERE name = ?').pluck().get('taquba_reaper_templates')).toBe(
        'CREATE TABLE taquba_reaper_templates (x)',
      );
      // The kv table as version 4 left it, rows and all.
      expect(check.prepare("SELECT name FROM pragma_table_info('taquba_kv') ORDER BY cid").pluck().all()).toEqual(['key', 'value']);
      expect(check.prepare("SELECT name FROM sqlite_master WHERE tbl_name = 'taquba_kv' AND type = 'index' AND sql IS NOT NULL").all()).toEqual([]);
      expect(check.prepare('SELECT key FROM taquba_kv ORDER BY key').pluck().all()).toEqual(['cursor', 'lock:globex']);
    });
  });
});
