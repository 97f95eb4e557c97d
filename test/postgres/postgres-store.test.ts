/**
 * PostgresStore against the real server: every operation, bad input,
 * migrations (concurrent open, newer schema), the database clock, LISTEN/NOTIFY
 * across stores, and recovery from terminated backends. Each file uses fresh
 * random schemas, dropped afterwards.
 */
import pg from 'pg';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../core/clock.js';
import type { StoreNotification } from '../../core/queue-store.js';
import { PostgresStore } from '../../adapters/postgres/index.js';
import type { PostgresStoreOptions } from '../../adapters/postgres/index.js';
import { PG_URL, admin, dropSchema, freshSchemaName, postgresAvailable, terminateBackends } from './helpers.js';

const available = await postgresAvailable();
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const text = (b: Uint8Array | undefined): string | undefined => (b === undefined ? undefined : new TextDecoder().decode(b));

const schemas = new Set<string>();
const stores = new Set<PostgresStore>();

/** `connectionString: undefined` opens without the default connection string (a store on a caller's pool). */
async function open(options: Omit<Partial<PostgresStoreOptions>, 'connectionString'> & { connectionString?: string | undefined } = {}): Promise<PostgresStore> {
  const schema = options.schema ?? freshSchemaName();
  schemas.add(schema);
  const { connectionString, ...rest } = { connectionString: PG_URL, ...options };
  const store = await PostgresStore.open({
    schema,
    backgroundMaintenance: false,
    maxConnections: 4,
    ...rest,
    ...(connectionString === undefined ? {} : { connectionString }),
  });
  stores.add(store);
  return store;
}

/** Resolves with the first notification the predicate accepts. */
function nextNotification(store: PostgresStore, queue: string, accept: (n: StoreNotification) => boolean): Promise<StoreNotification> {
  return new Promise((resolve) => {
    const off = store.subscribe(queue, (n) => {
      if (!accept(n)) return;
      off();
      resolve(n);
    });
  });
}

describe.skipIf(!available)('PostgresStore', () => {
  afterEach(async () => {
    for (const store of stores) await store.close();
    stores.clear();
  });
  afterAll(async () => {
    for (const schema of schemas) await dropSchema(schema);
  });

  describe('construction and migrations', () => {
    it('rejects schema names that are not plain identifiers, and a missing connection', () => {
      for (const schema of ['', 'a-b', '1abc', 'x"; drop table y; --', 'a'.repeat(64)]) {
        expect(() => new PostgresStore({ connectionString: PG_URL, schema })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
      }
      expect(() => new PostgresStore({ schema: 'ok' })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    });

    it('works with schema names of the longest valid length (63 characters), two sharing a pool', async () => {
      // Names of this length once made every prepared statement's name the same 63-byte prefix (42P05).
      const prefix = freshSchemaName('tq_long');
      const [a, b] = ['a', 'b'].map((last) => `${prefix}_`.padEnd(62, 'x') + last) as [string, string];
      expect(a).toHaveLength(63);
      const pool = new pg.Pool({ connectionString: PG_URL, max: 2 });
      try {
        const pair = [await open({ schema: a, pool, listen: false }), await open({ schema: b, pool, listen: false })];
        for (const store of pair) {
          const results = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => store.enqueue('q', bytes(`j${i}`))));
          expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(20);
          const claims = await store.claim('q', { limit: 20 });
          expect(claims).toHaveLength(20);
          await Promise.all(claims.map((c) => store.settle(c, { action: { type: 'ack' } })));
          expect(await store.stats('q')).toMatchObject({ pending: 0, claimed: 0, done: 20 });
        }
      } finally {
        for (const store of [...stores]) await store.close();
        stores.clear();
        await pool.end();
      }
    });

    it('refuses maxConnections: 1 while LISTEN needs a connection of its own, and runs on one connection without it', async () => {
      // One connection held by LISTEN once left none for statements: everything hung.
      const build = (): PostgresStore =>
        new PostgresStore({ connectionString: PG_URL, schema: freshSchemaName(), maxConnections: 1, backgroundMaintenance: false });
      let built: PostgresStore | undefined;
      try {
        expect(() => (built = build())).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('at least 2') }));
      } finally {
        await built?.close();
      }
      const onePool = new pg.Pool({ connectionString: PG_URL, max: 1 });
      expect(() => new PostgresStore({ pool: onePool, backgroundMaintenance: false })).toThrow(
        expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('at least 2') }),
      );
      await onePool.end();
      for (const maxConnections of [0, 1.5, -1]) {
        expect(() => new PostgresStore({ connectionString: PG_URL, maxConnections, listen: false })).toThrow(
          expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
        );
      }
      const store = await open({ maxConnections: 1, listen: false });
      store.subscribe('q', () => undefined);
      await Promise.all([store.enqueue('q', bytes('a')), store.enqueue('q', bytes('b')), store.stats('q')]);
      const claims = await store.claim('q', { limit: 2 });
      await Promise.all([...claims.map((c) => store.settle(c, { action: { type: 'ack' } })), store.claim('q')]);
      expect(await store.stats('q')).toMatchObject({ pending: 0, claimed: 0, done: 2 });
    });

    it('applies migrations once when many processes open the same schema at once', async () => {
      const schema = freshSchemaName();
      const opened = await Promise.all(Array.from({ length: 6 }, () => open({ schema })));
      expect(opened).toHaveLength(6);
      const rows = await admin<{ version: number }>(`SELECT version FROM "${schema}".schema_migrations`);
      expect(rows.map((r) => r.version)).toEqual([1, 2, 3, 4, 5, 6]);
      await opened[0]!.enqueue('q', bytes('x'));
      expect((await opened[5]!.stats('q')).pending).toBe(1);
    });

    it('refuses a schema newer than the code with INCOMPATIBLE_SCHEMA', async () => {
      const store = await open();
      await admin(`INSERT INTO "${store.schema}".schema_migrations (version) VALUES (999)`);
      await expect(PostgresStore.open({ connectionString: PG_URL, schema: store.schema })).rejects.toMatchObject({ code: 'INCOMPATIBLE_SCHEMA' });
    });

    it('reports an unreachable server as STORE_UNAVAILABLE', async () => {
      await expect(PostgresStore.open({ connectionString: 'postgres://postgres@127.0.0.1:1/test', schema: 'nowhere' })).rejects.toMatchObject({
        code: 'STORE_UNAVAILABLE',
        isPermanent: false,
      });
    });

    it('works with a pool the caller owns, and never ends it', async () => {
      const pool = new pg.Pool({ connectionString: PG_URL, max: 2 });
      try {
        const store = await open({ pool, connectionString: undefined });
        await store.enqueue('q', bytes('x'));
        await store.close();
        expect((await pool.query('SELECT 1 AS one')).rows[0]).toEqual({ one: 1 });
      } finally {
        await pool.end();
      }
    });
  });

  describe('operations with an injected clock', () => {
    it('enqueue: dedup, kv writes, ifAbsent conflicts write nothing, ids in use', async () => {
      const clock = new ManualClock();
      const store = await open({ clock });
      const first = await store.enqueue('q', bytes('a'), { dedupKey: 'd', headers: JSON.parse('{"__proto__":"p","k":"v"}') as Record<string, string> }, [
        { key: 'k1', value: bytes('v1'), ifAbsent: true },
      ]);
      expect(first.kind).toBe('new');
      expect(await store.enqueue('q', bytes('b'), { dedupKey: 'd' }, [{ key: 'k9', value: bytes('x') }])).toEqual({
        kind: 'alreadyEnqueued',
        id: (first as { id: string }).id,
      });
      expect(await store.kvGet('k9')).toBeUndefined();
      expect(
        await store.enqueue('q', bytes('c'), {}, [
          { key: 'k2', value: bytes('v') },
          { key: 'k1', value: bytes('x'), ifAbsent: true },
        ]),
      ).toEqual({ kind: 'kvConflict', key: 'k1' });
      expect(await store.kvGet('k2')).toBeUndefined();
      expect(text(await store.kvGet('k1'))).toBe('v1');
      expect((await store.stats('q')).pending).toBe(1);
      await expect(store.enqueue('q', bytes('d'), { id: (first as { id: string }).id })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      await expect(
        store.enqueueBatch('q', [
          { payload: bytes('1'), options: { id: 'same' } },
          { payload: bytes('2'), options: { id: 'same' } },
        ]),
      ).rejects.toMatchObject({
        code: 'INVALID_ARGUMENT',
      });
      expect((await store.stats('q')).pending).toBe(1);
      const job = await store.getJob((first as { id: string }).id);
      expect(Object.prototype.isPrototypeOf.call(Object.prototype, job!.headers)).toBe(false);
      expect(Object.keys(job!.headers).sort()).toEqual(['__proto__', 'k']);
      expect(job).toMatchObject({ status: 'pending', dedupKey: 'd', enqueuedAt: clock.now(), attempts: 0, maxAttempts: 3, priority: 1000 });
    });

    it('claims in priority then id order, at most limit, never twice to concurrent callers', async () => {
      const store = await open({ clock: new ManualClock() });
      const ids = (
        await store.enqueueBatch(
          'q',
          [1000, 5, 1000, 5, 7].map((priority, i) => ({ payload: bytes(String(i)), options: { priority } })),
        )
      ).map((r) => (r as { id: string }).id);
      const [a, b, c] = await Promise.all([store.claim('q', { limit: 2 }), store.claim('q', { limit: 2 }), store.claim('q', { limit: 2 })]);
      const all = [...a, ...b, ...c];
      expect(new Set(all.map((x) => x.jobId)).size).toBe(5);
      const sequential = await open({ clock: new ManualClock() });
      await sequential.enqueueBatch(
        'q',
        [1000, 5, 1000, 5, 7].map((priority, i) => ({ payload: bytes(String(i)), options: { priority } })),
      );
      const claims = await sequential.claim('q', { limit: 10 });
      expect(claims.map((x) => text(x.job.payload))).toEqual(['1', '3', '4', '0', '2']);
      expect(claims.every((x) => x.job.attempts === 1 && x.job.status === 'claimed' && x.job.dedupKey === undefined)).toBe(true);
      expect(await sequential.claim('q')).toEqual([]);
      expect(ids).toHaveLength(5);
    });

    it('settles with the cancel branch chosen from the locked row, and rejects stale tokens', async () => {
      const clock = new ManualClock();
      const store = await open({ clock });
      await store.enqueue('q', bytes('x'));
      const [claim] = await store.claim('q');
      expect(await store.cancel(claim!.jobId)).toMatchObject({ outcome: 'requested', firstRequest: true });
      expect(await store.cancel(claim!.jobId)).toMatchObject({ outcome: 'requested', firstRequest: false });
      const result = await store.settle(claim!, {
        action: { type: 'ack' },
        effects: { enqueue: [{ queue: 'q', payload: bytes('next') }] },
        ifCancelRequested: { action: { type: 'ack' }, effects: { kvWrites: [{ key: 'cancelled', value: bytes('1') }] } },
      });
      expect(result).toEqual({ branch: 'cancel', status: 'done', enqueued: [] });
      expect(text(await store.kvGet('cancelled'))).toBe('1');
      expect(await store.stats('q')).toEqual({ pending: 0, claimed: 0, scheduled: 0, dead: 0, done: 1 });
      await expect(store.settle(claim!, { action: { type: 'ack' } })).rejects.toMatchObject({ code: 'LEASE_LOST' });
      await expect(store.renewLease(claim!, 100)).rejects.toMatchObject({ code: 'LEASE_LOST' });
    });

    it('nack retries with backoff, then dead; reaper requeues and dead-letters expired leases', async () => {
      const clock = new ManualClock();
      const store = await open({ clock, defaultQueueConfig: { maxAttempts: 2, retryBackoffBaseMs: 100 } });
      await store.enqueue('q', bytes('x'));
      let [claim] = await store.claim('q');
      expect(await store.settle(claim!, { action: { type: 'nack', error: 'e1' } })).toMatchObject({ status: 'scheduled' });
      expect(await store.promote()).toBe(0);
      clock.advance(100);
      expect(await store.promote()).toBe(1);
      [claim] = await store.claim('q', { leaseMs: 50 });
      expect(claim!.job).toMatchObject({ attempts: 2, lastError: 'e1', leaseExpiresAt: clock.now() + 50 });
      clock.advance(50);
      const report = await store.reap();
      expect(report.deadLettered.map((j) => [j.id, j.status, j.lastError, j.failedAt])).toEqual([[claim!.jobId, 'dead', 'lease expired', clock.now()]]);
      expect(await store.stats('q')).toEqual({ pending: 0, claimed: 0, scheduled: 0, dead: 1, done: 0 });
      expect((await store.deadJobs('q')).map((j) => j.id)).toEqual([claim!.jobId]);
      expect(await store.deadJobs('q', { after: claim!.jobId })).toEqual([]);
      await store.requeueDead(claim!.jobId);
      expect(await store.getJob(claim!.jobId)).toMatchObject({ status: 'pending', attempts: 0, cancelRequested: false });
      await expect(store.requeueDead(claim!.jobId)).rejects.toMatchObject({ code: 'INVALID_STATE' });
      await expect(store.requeueDead('unknown')).rejects.toMatchObject({ code: 'JOB_NOT_FOUND' });
    });

    it('group-commits concurrent settlements, each with its own outcome', async () => {
      const store = await open({ clock: new ManualClock() });
      await store.enqueue('other', bytes('keep'), { id: 'keep' });
      await store.enqueueBatch(
        'q',
        Array.from({ length: 20 }, (_, i) => ({ payload: bytes(String(i)) })),
      );
      const claims = await store.claim('q', { limit: 20 });
      const before = { ...store.metrics };
      const results = await Promise.allSettled([
        ...claims.map((claim, i) =>
          store.settle(claim, {
            action: { type: 'ack' },
            effects: { enqueue: [{ queue: 'next', payload: bytes(String(i)), options: i === 3 ? { id: 'keep' } : {} }] },
          }),
        ),
        store.settle({ jobId: claims[1]!.jobId, token: 'stale' }, { action: { type: 'ack' } }),
      ]);
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(19);
      expect(
        results
          .map((r) => (r.status === 'rejected' ? (r.reason as { code: string }).code : 'ok'))
          .filter((c) => c !== 'ok')
          .sort(),
      ).toEqual(['INVALID_ARGUMENT', 'LEASE_LOST']);
      expect(store.metrics.settleTransactions - before.settleTransactions).toBeLessThan(5);
      expect(await store.stats('q')).toEqual({ pending: 0, claimed: 1, scheduled: 0, dead: 0, done: 19 });
      expect((await store.stats('next')).pending).toBe(19);
      expect(await store.getJob(claims[3]!.jobId)).toMatchObject({ status: 'claimed' });
    });

    it('kv: compare-and-delete, and values never collide with jobs', async () => {
      const store = await open({ clock: new ManualClock() });
      const { id } = (await store.enqueue('q', bytes('x'), {}, [{ key: 'k', value: bytes('v') }])) as { id: string };
      expect(await store.kvGet(id)).toBeUndefined();
      expect(await store.kvDelete('k', { ifValue: bytes('w') })).toBe(false);
      expect(await store.kvDelete('k', { ifValue: bytes('v') })).toBe(true);
      expect(await store.kvDelete('k')).toBe(false);
    });

    it('cancel of pending removes the job with its effects; done jobs are kept and swept by retention', async () => {
      const clock = new ManualClock();
      const store = await open({ clock, defaultQueueConfig: { keepDoneJobsMs: 1000 } });
      const { id } = (await store.enqueue('q', bytes('x'), { dedupKey: 'd' })) as { id: string };
      const removed = await store.cancel(id, { kvWrites: [{ key: 'gone', value: bytes('1') }] });
      expect(removed).toMatchObject({ outcome: 'removed', job: { id, dedupKey: 'd', status: 'pending' } });
      expect(text(await store.kvGet('gone'))).toBe('1');
      expect(await store.cancel(id)).toEqual({ outcome: 'notFound' });
      expect((await store.enqueue('q', bytes('y'), { dedupKey: 'd' })).kind).toBe('new');
      const [claim] = await store.claim('q');
      await store.settle(claim!, { action: { type: 'ack' } });
      expect(await store.getJob(claim!.jobId)).toMatchObject({ status: 'done', completedAt: clock.now() });
      expect(await store.waitForCompletion(claim!.jobId, 10)).toMatchObject({ kind: 'completed', job: { status: 'done' } });
      clock.advance(1000);
      expect(await store.reap()).toMatchObject({ doneSwept: 1 });
      expect(await store.getJob(claim!.jobId)).toBeUndefined();
      expect(await store.stats('q')).toEqual({ pending: 0, claimed: 0, scheduled: 0, dead: 0, done: 1 });
      expect(await store.listQueues()).toEqual(['q']);
    });

    it('rejects bad input with the shared validators before touching the database', async () => {
      const store = await open({ clock: new ManualClock() });
      const bad: Array<() => Promise<unknown>> = [
        () => store.enqueue('', bytes('x')),
        () => store.enqueue('q', 'x' as unknown as Uint8Array),
        () => store.enqueue('q', bytes('x'), { priority: -1 }),
        () => store.enqueue('q', bytes('x'), { maxAttempts: 0 }),
        () => store.claim('q', { limit: 0 }),
        () => store.claim('q', { leaseMs: 1.5 }),
        () => store.renewLease({ jobId: 'x', token: 't' }, -1),
        () => store.settle({ jobId: 'x', token: 't' }, { action: { type: 'bogus' } } as never),
        () => store.deadJobs('q', { limit: 0 }),
        () => store.kvGet(''),
        () => store.waitForCompletion('x', -1),
      ];
      for (const call of bad) await expect(call()).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      await expect(store.enqueue('q', bytes('x'), {}, [{ key: 'k', value: new Uint8Array(256 * 1024 + 1) }])).rejects.toMatchObject({
        code: 'KV_VALUE_TOO_LARGE',
      });
      await store.close();
      await expect(store.stats('q')).rejects.toMatchObject({ code: 'STORE_CLOSED' });
    });
  });

  describe('database clock', () => {
    it('stamps times from the database when no clock is injected', async () => {
      const store = await open();
      const [row] = await admin<{ now: string }>('SELECT floor(extract(epoch FROM now()) * 1000)::bigint AS now');
      await store.enqueue('q', bytes('x'));
      const [claim] = await store.claim('q', { leaseMs: 60_000 });
      expect(Math.abs(claim!.job.enqueuedAt - Number(row!.now))).toBeLessThan(5_000);
      expect(claim!.job.leaseExpiresAt! - claim!.job.claimedAt!).toBe(60_000);
      const renewed = await store.renewLease(claim!, 120_000);
      expect(renewed.leaseExpiresAt).toBeGreaterThanOrEqual(claim!.job.claimedAt! + 120_000);
      expect((await store.enqueue('q', bytes('later'), { runAt: Date.now() + 3_600_000 })).kind).toBe('new');
      expect((await store.stats('q')).scheduled).toBe(1);
    });

    it('counts a kv ttlMs from the commit in database time, and the record is gone for reads from then on', async () => {
      const store = await open();
      const { id } = (await store.enqueue('q', bytes('x'), {}, [
        { key: 'hour', value: bytes('h'), ttlMs: 3_600_000 },
        { key: 'brief', value: bytes('b'), ttlMs: 1 },
      ])) as { id: string };
      const job = await store.getJob(id);
      const rows = await admin<{ key: string; expires_at: string }>(`SELECT key, expires_at FROM "${store.schema}".kv ORDER BY key`);
      // The job's enqueue time and the expiry come from the same statement's now.
      expect(rows.map((row) => [row.key, Number(row.expires_at) - job!.enqueuedAt])).toEqual([
        ['brief', 1],
        ['hour', 3_600_000],
      ]);
      await new Promise((resolve) => setTimeout(resolve, 20));
      expect(text(await store.kvGet('hour'))).toBe('h');
      expect(await store.kvGet('brief')).toBeUndefined();
      expect(await store.kvDelete('brief')).toBe(false);
      await store.reap();
      expect((await admin(`SELECT key FROM "${store.schema}".kv ORDER BY key`)).map((row) => (row as { key: string }).key)).toEqual(['hour']);
    });
  });

  describe('cross-process notifications', () => {
    it('wakes a waiting worker of another store and carries cancel requests to it', async () => {
      const schema = freshSchemaName();
      const worker = await open({ schema });
      const producer = await open({ schema });
      const off = worker.subscribe('q', () => undefined);
      await waitFor(async () => (await worker.listenStatus()).connected);
      expect(await worker.claim('q')).toEqual([]); // a short claim marks the queue as waited on
      const woke = nextNotification(worker, 'q', (n) => n.type === 'jobsAvailable');
      await producer.enqueue('q', bytes('x'));
      await woke;
      const [claim] = await worker.claim('q');
      const cancelled = nextNotification(worker, 'q', (n) => n.type === 'cancelRequested');
      await producer.cancel(claim!.jobId);
      expect(await cancelled).toEqual({ type: 'cancelRequested', queue: 'q', jobId: claim!.jobId });
      off();
    });

    it('waitForCompletion tells a job removed by another store from one acked there', async () => {
      // A removal seen only as "the row is gone" was once reported as completed.
      const schema = freshSchemaName();
      // The waiter's polls run on its own clock: each waits, having read its job, until the clock is advanced.
      const clock = new ManualClock(Date.now());
      const waiter = await open({ schema, listen: false, clock });
      const other = await open({ schema, listen: false });
      await other.enqueue('q', bytes('p'), { id: 'pending' });
      await other.enqueue('q', bytes('s'), { id: 'scheduled', runAt: Date.now() + 3_600_000 });
      await other.enqueue('q', bytes('a'), { id: 'acked', priority: 0 });
      const waits = ['pending', 'scheduled', 'acked'].map((id) => waiter.waitForCompletion(id, 10_000));
      await waitFor(async () => clock.pendingTimers() === 6); // a timeout and a poll each: every waiter has read its job
      expect(await other.cancel('pending')).toMatchObject({ outcome: 'removed' });
      expect(await other.cancel('scheduled')).toMatchObject({ outcome: 'removed' });
      const [claim] = await other.claim('q');
      expect(claim?.jobId).toBe('acked');
      await other.settle(claim!, { action: { type: 'ack' } });
      clock.advance(250);
      expect(await Promise.all(waits)).toEqual([{ kind: 'notFound' }, { kind: 'notFound' }, { kind: 'completed' }]);
    });

    it('waitForCompletion does not take an earlier removal of a reused id for the job it waits on', async () => {
      const schema = freshSchemaName();
      const clock = new ManualClock(Date.now());
      const waiter = await open({ schema, listen: false, clock });
      const other = await open({ schema, listen: false });
      await other.enqueue('q', bytes('1'), { id: 'again' });
      await other.cancel('again');
      await new Promise((resolve) => setTimeout(resolve, 5)); // a later enqueue time
      await other.enqueue('q', bytes('2'), { id: 'again' });
      const wait = waiter.waitForCompletion('again', 10_000);
      await waitFor(async () => clock.pendingTimers() === 2);
      const [claim] = await other.claim('q');
      await other.settle(claim!, { action: { type: 'ack' } });
      clock.advance(250);
      expect(await wait).toEqual({ kind: 'completed' });
    });

    it('re-establishes the LISTEN connection after its backend is terminated', async () => {
      const schema = freshSchemaName();
      const worker = await open({ schema });
      const producer = await open({ schema });
      worker.subscribe('q', () => undefined);
      await waitFor(async () => (await worker.listenStatus()).connected);
      const { backendPid } = await worker.listenStatus();
      await admin('SELECT pg_terminate_backend($1)', [backendPid]);
      await waitFor(async () => {
        const status = await worker.listenStatus();
        return status.connected && status.reconnects === 1 && status.backendPid !== backendPid;
      });
      await worker.enqueue('q', bytes('x'));
      const [claim] = await worker.claim('q');
      const cancelled = nextNotification(worker, 'q', (n) => n.type === 'cancelRequested');
      await producer.cancel(claim!.jobId);
      await cancelled;
    });
  });

  describe('connection faults', () => {
    it('surfaces terminated backends as STORE_UNAVAILABLE, then recovers', async () => {
      const store = await open({ clock: new ManualClock(), listen: false });
      await store.enqueue('q', bytes('x'));
      const appName = store.schema;
      expect(appName).toBeTruthy();
      // Terminate every connection of this store's pool (they are idle in the pool, or busy).
      const killed = await terminateBackends(`query ILIKE '%${store.schema}%'`);
      expect(killed).toBeGreaterThan(0);
      const outcomes: string[] = [];
      for (let i = 0; i < 6; i++) {
        try {
          await store.stats('q');
          outcomes.push('ok');
        } catch (error) {
          expect(error).toMatchObject({ code: 'STORE_UNAVAILABLE', isPermanent: false });
          expect((error as Error).cause).toBeDefined();
          outcomes.push('unavailable');
        }
      }
      expect(outcomes.at(-1)).toBe('ok');
      expect(await store.stats('q')).toMatchObject({ pending: 1 });
    });
  });
});

async function waitFor(condition: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
