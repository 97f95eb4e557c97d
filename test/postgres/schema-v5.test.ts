/**
 * Schema version 5 against the real server: every migration file applies in
 * a fresh schema; a schema made by version 4's files (a job in each status, a
 * live lease, a dedup key, kv, counters) migrates in place and its data and
 * behaviour survive; retry delays come from the store's `retryDelays` table,
 * past the cap too, on both settle paths; NOTIFY payloads have readable keys.
 * Fresh random schemas, dropped afterwards.
 */
import { readdirSync } from 'node:fs';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../core/clock.js';
import { DEFAULT_QUEUE_CONFIG, resolveQueueConfig } from '../../core/queue-config.js';
import { PostgresStore, SCHEMA_VERSION } from '../../adapters/postgres/index.js';
import { MIGRATION_FILES } from '../../adapters/postgres/postgres-migrations.js';
import { retryDelays } from '../../adapters/postgres/postgres-rows.js';
import { PG_URL, admin, dropSchema, freshSchemaName, postgresAvailable, schemaAtVersion } from './helpers.js';

const available = await postgresAvailable();
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const base64 = (s: string): string => Buffer.from(s).toString('base64');
const T0 = Date.parse('2026-01-01');
const schemas = new Set<string>();

/** The source of every function in `schema`, by name. */
async function functionSources(schema: string): Promise<Map<string, string>> {
  const rows = await admin<{ name: string; source: string }>(`SELECT proname AS name, prosrc AS source FROM pg_proc WHERE pronamespace = $1::regnamespace`, [
    `"${schema}"`,
  ]);
  return new Map(rows.map((row) => [row.name, row.source]));
}

describe('retryDelays', () => {
  it('lists retryDelayMs for attempts 1.. up to the cap, which then holds', () => {
    expect(retryDelays(resolveQueueConfig({ retryBackoffBaseMs: 1000, retryBackoffMaxMs: 5000 }))).toEqual([1000, 2000, 4000, 5000]);
    expect(retryDelays(resolveQueueConfig({ retryBackoffBaseMs: 0 }))).toEqual([0]);
    expect(retryDelays(resolveQueueConfig({ retryBackoffBaseMs: 9000, retryBackoffMaxMs: 5000 }))).toEqual([5000]);
    const defaults = retryDelays(resolveQueueConfig());
    expect(defaults.at(-1)).toBe(DEFAULT_QUEUE_CONFIG.retryBackoffMaxMs);
  });
});

describe.skipIf(!available)('PostgresStore schema version 5', () => {
  afterAll(async () => {
    for (const schema of schemas) await dropSchema(schema);
  });

  it('every migration file applies in a fresh schema, and the result has no dead functions and no backoff formula', async () => {
    const onDisk = readdirSync(new URL('../../adapters/postgres/sql/', import.meta.url))
      .filter((f) => f.endsWith('.sql'))
      .sort();
    expect(onDisk).toEqual([...MIGRATION_FILES]);
    expect(SCHEMA_VERSION).toBe(MIGRATION_FILES.length);
    const schema = freshSchemaName('tq_files');
    await schemaAtVersion(schema, schemas, SCHEMA_VERSION);
    const functions = await functionSources(schema);
    expect(functions.has('claim')).toBe(false);
    expect(functions.has('settle_batch')).toBe(false);
    for (const name of ['claim_jobs', 'settle_one', 'settle_set', 'settle_and_claim', 'retry_delay', 'bump', 'wake'])
      expect(functions.has(name), name).toBe(true);
    for (const [name, source] of functions) {
      expect(source, name).not.toContain('retryBackoffBaseMs');
      expect(source, name).not.toContain('power(');
    }
  });

  it('a version-4 schema migrates in place: jobs of every status, a live lease, a dedup key, kv and counters survive and work', async () => {
    const schema = freshSchemaName('tq_v4');
    await schemaAtVersion(schema, schemas, 4);
    // Version 4's own functions and payloads.
    const S = `"${schema}"`;
    const v4Config = JSON.stringify({ default: { ...resolveQueueConfig({ keepDoneJobsMs: 3_600_000 }) }, queues: {} });
    const job = (id: string, priority: number, extra: Record<string, unknown> = {}): unknown => ({
      id,
      own: true,
      queue: 'q',
      payload: base64(id),
      headers: '{"tenant":"acme"}',
      priority,
      maxAttempts: 3,
      ...extra,
    });
    await admin(`SELECT ${S}.enqueue($1::bigint, $2::jsonb, NULL, false)`, [
      T0,
      JSON.stringify([
        job('a-pending', 1000, { dedupKey: 'key-1' }),
        job('b-claimed', 1),
        job('c-scheduled', 1000, { runAt: T0 + 60_000 }),
        job('d-dead', 1),
        job('e-done', 1),
      ]),
    ]);
    const claimed = await admin<{ id: string; token: string }>(`SELECT id, token FROM ${S}.claim_jobs($1::bigint, 'q', 3, 30000)`, [T0]);
    expect(claimed.map((row) => row.id).sort()).toEqual(['b-claimed', 'd-dead', 'e-done']);
    const token = (id: string): string => (claimed.find((row) => row.id === id) as { token: string }).token;
    const settleV4 = (id: string, settlement: unknown): Promise<unknown> =>
      admin(`SELECT ${S}.settle_one($1::bigint, $2::jsonb, $3::jsonb)`, [T0, v4Config, JSON.stringify({ jobId: id, token: token(id), settlement })]);
    await settleV4('d-dead', { action: { type: 'deadLetter', reason: 'boom' } });
    await settleV4('e-done', { action: { type: 'ack' }, effects: { kvWrites: [{ key: 'cursor', value: base64('v') }] } });

    const clock = new ManualClock(T0 + 1000);
    const store = await PostgresStore.open({
      connectionString: PG_URL,
      schema,
      clock,
      backgroundMaintenance: false,
      listen: false,
      defaultQueueConfig: { keepDoneJobsMs: 3_600_000, retryBackoffBaseMs: 1000, retryBackoffMaxMs: 3000 },
    });
    try {
      expect(await admin(`SELECT max(version) AS v FROM ${S}.schema_migrations`)).toEqual([{ v: SCHEMA_VERSION }]);
      // A process of version 4 still running is refused before anything changes (its config has no retryDelays, its claims no leaseMs).
      const oldClaims = JSON.stringify([{ queue: 'q', limit: 10, lease: 1000 }]);
      await expect(admin(`SELECT ${S}.settle_and_claim($1::bigint, $2::jsonb, '[]', $3::jsonb)`, [T0, v4Config, oldClaims])).rejects.toThrow(
        /older than version 5/,
      );
      await expect(settleV4('b-claimed', { action: { type: 'nack', error: 'old' } })).rejects.toThrow(/older than version 5/);
      // The data, as version 4 left it.
      expect(await store.getJob('a-pending')).toMatchObject({ status: 'pending', dedupKey: 'key-1', payload: bytes('a-pending'), headers: { tenant: 'acme' } });
      expect(await store.getJob('b-claimed')).toMatchObject({ status: 'claimed', attempts: 1, claimedAt: T0, leaseExpiresAt: T0 + 30_000 });
      expect(await store.getJob('c-scheduled')).toMatchObject({ status: 'scheduled', runAt: T0 + 60_000 });
      expect(await store.getJob('d-dead')).toMatchObject({ status: 'dead', lastError: 'boom', failedAt: T0 });
      expect(await store.getJob('e-done')).toMatchObject({ status: 'done', completedAt: T0 });
      expect(await store.stats('q')).toEqual({ pending: 1, claimed: 1, scheduled: 1, dead: 1, done: 1 });
      expect(await store.kvGet('cursor')).toEqual(bytes('v'));

      // And it works: the dedup key still holds, the live lease is still owned (a nack retries after the table's delay),
      // completions, requeues, promotions and claims go on, and the counters follow.
      expect(await store.enqueue('q', bytes('again'), { dedupKey: 'key-1' })).toEqual({ kind: 'alreadyEnqueued', id: 'a-pending' });
      expect(await store.renewLease({ jobId: 'b-claimed', token: token('b-claimed') }, 60_000)).toEqual({
        leaseExpiresAt: T0 + 61_000,
        cancelRequested: false,
      });
      expect(await store.settle({ jobId: 'b-claimed', token: token('b-claimed') }, { action: { type: 'nack', error: 'again' } })).toMatchObject({
        branch: 'primary',
        status: 'scheduled',
      });
      expect(await store.getJob('b-claimed')).toMatchObject({ status: 'scheduled', runAt: T0 + 2000, lastError: 'again' });
      expect(await store.waitForCompletion('e-done', 1)).toMatchObject({ kind: 'completed', job: { id: 'e-done', status: 'done' } });
      await store.requeueDead('d-dead');
      expect((await store.claim('q', { limit: 10 })).map((c) => c.jobId)).toEqual(['d-dead', 'a-pending']);
      clock.advance(60_000);
      expect(await store.promote()).toBe(2);
      expect((await store.claim('q', { limit: 10 })).map((c) => c.jobId)).toEqual(['b-claimed', 'c-scheduled']);
      expect(await store.stats('q')).toEqual({ pending: 0, claimed: 4, scheduled: 0, dead: 0, done: 1 });
      clock.advance(30_000);
      expect((await store.reap()).requeued.sort()).toEqual(['a-pending', 'b-claimed', 'c-scheduled', 'd-dead']);
    } finally {
      await store.close();
    }
  });

  it('retry delays come from the table, past the cap too, on the single and the batched settle path', async () => {
    const schema = freshSchemaName('tq_delays');
    schemas.add(schema);
    const clock = new ManualClock(T0);
    const store = await PostgresStore.open({
      connectionString: PG_URL,
      schema,
      clock,
      backgroundMaintenance: false,
      listen: false,
      queueConfigs: { q: { retryBackoffBaseMs: 1000, retryBackoffMaxMs: 3000, maxAttempts: 10 } },
    });
    try {
      for (const id of ['a', 'b', 'c']) await store.enqueue('q', bytes(id), { id });
      const seen: number[][] = [];
      for (const expected of [1000, 2000, 3000, 3000, 3000]) {
        const claims = await store.claim('q', { limit: 3 });
        expect(claims.map((c) => c.jobId)).toEqual(['a', 'b', 'c']);
        const nack = { action: { type: 'nack', error: 'retry' } } as const;
        // Two in one turn share a transaction (settle_and_claim's set path); the third goes alone (settle_one).
        const [first, second] = claims as [(typeof claims)[0], (typeof claims)[0], (typeof claims)[0]];
        await Promise.all([store.settle(first, nack), store.settle(second, nack)]);
        await store.settle(claims[2] as (typeof claims)[0], nack);
        const jobs = await Promise.all(['a', 'b', 'c'].map((id) => store.getJob(id)));
        seen.push(jobs.map((job) => (job?.runAt as number) - clock.now()));
        expect(seen.at(-1)).toEqual([expected, expected, expected]);
        clock.advance(expected);
        expect(await store.promote()).toBe(3);
      }
      expect(store.metrics.settleTransactions).toBe(10);
    } finally {
      await store.close();
    }
  });

  it('NOTIFY payloads name their fields: jobsAvailable and cancelRequested', async () => {
    const schema = freshSchemaName('tq_notify');
    schemas.add(schema);
    const store = await PostgresStore.open({ connectionString: PG_URL, schema, backgroundMaintenance: false, listen: false });
    const listener = new pg.Client({ connectionString: PG_URL });
    await listener.connect();
    const payloads: unknown[] = [];
    listener.on('notification', (message) => payloads.push(JSON.parse(message.payload ?? 'null')));
    try {
      await listener.query(`LISTEN "taquba_${schema}"`);
      expect(await store.claim('n')).toEqual([]); // a short claim asks to be woken
      await store.enqueue('n', bytes('x'), { id: 'x' });
      const [claim] = await store.claim('n');
      expect(claim?.jobId).toBe('x');
      expect(await store.cancel('x')).toMatchObject({ outcome: 'requested' });
      await admin('SELECT 1'); // notifications of committed transactions arrive in order; give them a round trip
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(payloads).toEqual([
        { type: 'jobsAvailable', queue: 'n' },
        { type: 'cancelRequested', queue: 'n', jobId: 'x' },
      ]);
    } finally {
      await listener.end();
      await store.close();
    }
  });
});
