/**
 * Schema version 6 against the real server: a schema made by version 5's
 * files (a job in each status, a live lease, two claims about to be reaped,
 * one carrying its own branch, a dedup key, kv, counters) migrates in place,
 * its data and behaviour survive, and the reaper templates it adds apply on
 * it: set through one store, applied by the reap of another on the same
 * schema. Its kv records are permanent (they never expire, nor does the
 * record its carried branch writes), and records written with `ttlMs` on it
 * expire and are swept. Fresh random schemas, dropped afterwards.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../core/clock.js';
import { QueueConfigs } from '../../core/queue-config.js';
import type { StoreOptions } from '../../core/queue-config.js';
import { PostgresStore, SCHEMA_VERSION } from '../../adapters/postgres/index.js';
import { queueConfigsJson } from '../../adapters/postgres/postgres-rows.js';
import { PG_URL, admin, dropSchema, freshSchemaName, postgresAvailable, schemaAtVersion } from './helpers.js';

const available = await postgresAvailable();
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const base64 = (s: string): string => Buffer.from(s).toString('base64');
const T0 = Date.parse('2026-01-01');
const schemas = new Set<string>();

describe.skipIf(!available)('PostgresStore schema version 6', () => {
  afterAll(async () => {
    for (const schema of schemas) await dropSchema(schema);
  });

  it('a version-5 schema migrates in place: its jobs, leases, dedup key, kv and counters survive; templates set after apply to its jobs; kv expiry works on it', async () => {
    expect(SCHEMA_VERSION).toBe(6);
    const schema = freshSchemaName('tq_v5');
    await schemaAtVersion(schema, schemas, 5);
    // Version 5's own functions and payloads (its queue config is this version's: version 6 did not change it).
    const S = `"${schema}"`;
    const options: StoreOptions = { defaultQueueConfig: { keepDoneJobsMs: 3_600_000, retryBackoffBaseMs: 1000 } };
    const config = queueConfigsJson(options, new QueueConfigs(options));
    const job = (id: string, extra: Record<string, unknown> = {}): unknown => ({
      id,
      own: true,
      queue: 'q',
      payload: base64(id),
      headers: JSON.stringify({ run: `run-${id}` }),
      priority: 1,
      maxAttempts: 3,
      ...extra,
    });
    await admin(`SELECT ${S}.enqueue($1::bigint, $2::jsonb, $3::jsonb, false)`, [
      T0,
      JSON.stringify([
        job('b-claimed'),
        job('d-dead'),
        job('e-done'),
        job('f-expiring', { maxAttempts: 1 }),
        job('g-carrying', { maxAttempts: 1, reaperDeadLetter: { effects: { kvWrites: [{ key: 'g.own', value: base64('yes') }] } } }),
        job('a-pending', { priority: 1000, dedupKey: 'key-1' }),
        job('c-scheduled', { priority: 1000, runAt: T0 + 60_000 }),
      ]),
      null,
    ]);
    await admin(`SELECT ${S}.enqueue($1::bigint, '[]', $2::jsonb, false)`, [T0, JSON.stringify([{ key: 'lock:run-f-expiring', value: base64('1') }])]);
    const claimed = await admin<{ id: string; token: string }>(`SELECT id, token FROM ${S}.claim_jobs($1::bigint, 'q', 5, 60000)`, [T0]);
    expect(claimed.map((row) => row.id).sort()).toEqual(['b-claimed', 'd-dead', 'e-done', 'f-expiring', 'g-carrying']);
    const token = (id: string): string => (claimed.find((row) => row.id === id) as { token: string }).token;
    const settleV5 = (id: string, settlement: unknown): Promise<unknown> =>
      admin(`SELECT ${S}.settle_one($1::bigint, $2::jsonb, $3::jsonb)`, [T0, config, JSON.stringify({ jobId: id, token: token(id), settlement })]);
    await settleV5('d-dead', { action: { type: 'deadLetter', reason: 'boom' } });
    await settleV5('e-done', { action: { type: 'ack' }, effects: { kvWrites: [{ key: 'cursor', value: base64('v') }] } });
    // The two on their last attempt get a lease that expires before the live one.
    await admin(`UPDATE ${S}.jobs SET lease_expires_at = $1::bigint WHERE id IN ('f-expiring', 'g-carrying')`, [T0 + 1000]);

    const clock = new ManualClock(T0 + 500);
    const open = (): Promise<PostgresStore> =>
      PostgresStore.open({ connectionString: PG_URL, schema, clock, backgroundMaintenance: false, listen: false, ...options });
    const setter = await open();
    const reaper = await open();
    try {
      expect(await admin(`SELECT max(version) AS v FROM ${S}.schema_migrations`)).toEqual([{ v: 6 }]);
      expect(await admin(`SELECT count(*)::int AS n FROM ${S}.reaper_templates`)).toEqual([{ n: 0 }]);
      // The data, as version 5 left it.
      expect(await setter.getJob('a-pending')).toMatchObject({ status: 'pending', dedupKey: 'key-1', payload: bytes('a-pending') });
      expect(await setter.getJob('b-claimed')).toMatchObject({ status: 'claimed', attempts: 1, leaseExpiresAt: T0 + 60_000 });
      expect(await setter.getJob('c-scheduled')).toMatchObject({ status: 'scheduled', runAt: T0 + 60_000 });
      expect(await setter.getJob('d-dead')).toMatchObject({ status: 'dead', lastError: 'boom', failedAt: T0 });
      expect(await setter.getJob('e-done')).toMatchObject({ status: 'done', completedAt: T0 });
      expect(await setter.getJob('f-expiring')).toMatchObject({ status: 'claimed', headers: { run: 'run-f-expiring' }, leaseExpiresAt: T0 + 1000 });
      expect(await setter.stats('q')).toEqual({ pending: 1, claimed: 3, scheduled: 1, dead: 1, done: 1 });
      expect(await setter.kvGet('cursor')).toEqual(bytes('v'));
      // The kv records from before are permanent.
      expect(await admin(`SELECT key, expires_at FROM ${S}.kv ORDER BY key`)).toEqual([
        { key: 'cursor', expires_at: null },
        { key: 'lock:run-f-expiring', expires_at: null },
      ]);

      // A template set through one store applies at the reap of another: to the job that carries nothing, not to the one that carries its own.
      await setter.setReaperTemplate('q', {
        effects: {
          kvDeletes: [['lock:', { header: 'run' }]],
          enqueue: [{ queue: 'outcomes', payload: bytes('reaped'), copyJobHeaders: true, headers: { how: 'failed' }, dedupKey: ['outcome:', { jobId: true }] }],
        },
      });
      clock.advance(1000);
      const report = await reaper.reap();
      expect(report.deadLettered.map((j) => j.id)).toEqual(['f-expiring', 'g-carrying']);
      expect(report.effectsApplied).toEqual(['f-expiring', 'g-carrying']);
      expect(await reaper.kvGet('lock:run-f-expiring')).toBeUndefined();
      expect(await reaper.kvGet('g.own')).toEqual(bytes('yes'));
      expect(await admin(`SELECT dedup_key FROM ${S}.jobs WHERE queue = 'outcomes'`)).toEqual([{ dedup_key: 'outcome:f-expiring' }]);
      const outcomes = await reaper.claim('outcomes', { limit: 10 });
      expect(outcomes.map((c) => [c.job.headers, c.job.payload])).toEqual([[{ run: 'run-f-expiring', how: 'failed' }, bytes('reaped')]]);

      // And the rest works on: the dedup key holds, the live lease is owned, completions, requeues, promotions and claims go on.
      expect(await setter.enqueue('q', bytes('again'), { dedupKey: 'key-1' })).toEqual({ kind: 'alreadyEnqueued', id: 'a-pending' });
      expect(await setter.settle({ jobId: 'b-claimed', token: token('b-claimed') }, { action: { type: 'nack', error: 'again' } })).toMatchObject({
        status: 'scheduled',
      });
      expect(await setter.waitForCompletion('e-done', 1)).toMatchObject({ kind: 'completed', job: { id: 'e-done', status: 'done' } });
      await setter.requeueDead('d-dead');
      expect((await setter.claim('q', { limit: 10 })).map((c) => c.jobId)).toEqual(['d-dead', 'a-pending']);
      clock.advance(60_000);
      expect(await setter.promote()).toBe(2);
      expect((await setter.claim('q', { limit: 10 })).map((c) => c.jobId)).toEqual(['b-claimed', 'c-scheduled']);
      expect(await setter.stats('q')).toEqual({ pending: 0, claimed: 4, scheduled: 0, dead: 2, done: 1 });
      expect(await setter.stats('outcomes')).toEqual({ pending: 0, claimed: 1, scheduled: 0, dead: 0, done: 0 });

      // An hour of store time on (the leases above expire too), the records from before and the one the carried branch wrote are
      // still there, through a reap.
      clock.advance(3_600_000);
      await reaper.reap();
      expect([await setter.kvGet('cursor'), await setter.kvGet('g.own')]).toEqual([bytes('v'), bytes('yes')]);
      // Records with ttlMs expire on the migrated schema: written by an enqueue and by settlement effects, at now + ttlMs.
      const now = clock.now();
      await setter.enqueue('ttl', bytes('t'), { id: 't-1' }, [
        { key: 'short', value: bytes('s'), ttlMs: 1000 },
        { key: 'cursor', value: bytes('v2'), ttlMs: 1000 },
      ]);
      const [next] = await setter.claim('ttl');
      expect(next?.jobId).toBe('t-1');
      expect(
        await setter.settle(next!, {
          action: { type: 'ack' },
          precondition: { key: 'short', equals: bytes('s') },
          effects: {
            kvWrites: [
              { key: 'cursor', value: bytes('v3') },
              { key: 'later', value: bytes('l'), ttlMs: 3000 },
            ],
          },
        }),
      ).toMatchObject({ branch: 'primary' });
      expect(await admin(`SELECT key, expires_at::float8 AS expires_at FROM ${S}.kv ORDER BY key`)).toEqual([
        { key: 'cursor', expires_at: null },
        { key: 'g.own', expires_at: null },
        { key: 'later', expires_at: now + 3000 },
        { key: 'short', expires_at: now + 1000 },
      ]);
      clock.advance(1000);
      expect(await setter.kvGet('short')).toBeUndefined();
      expect(await setter.kvDelete('short', { ifValue: bytes('s') })).toBe(false);
      expect(await setter.enqueue('ttl', bytes('u'), { id: 't-2' }, [{ key: 'short', value: bytes('again'), ifAbsent: true }])).toEqual({
        kind: 'new',
        id: 't-2',
      });
      expect(await setter.kvGet('later')).toEqual(bytes('l'));
      clock.advance(2000);
      expect(await setter.kvGet('later')).toBeUndefined();
      await reaper.reap();
      expect(await admin(`SELECT key, expires_at FROM ${S}.kv ORDER BY key`)).toEqual([
        { key: 'cursor', expires_at: null },
        { key: 'g.own', expires_at: null },
        { key: 'short', expires_at: null },
      ]);
      expect(await setter.kvGet('short')).toEqual(bytes('again'));
    } finally {
      await setter.close();
      await reaper.close();
    }
  });
});
