/**
 * Values PostgreSQL cannot hold, or that the database refuses, inside a
 * group-commit flush: the settlements and claims that share the flush with
 * them still commit, and the bad item alone gets its result (replaced text)
 * or a permanent typed error. See adapters/postgres/postgres-text.ts for what
 * is replaced and what is refused.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { Claim, Settlement } from '../../core/queue-store.js';
import { PostgresStore } from '../../adapters/postgres/index.js';
import { PG_URL, dropSchema, freshSchemaName, postgresAvailable } from './helpers.js';

const available = await postgresAvailable();
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const schemas = new Set<string>();
const stores = new Set<PostgresStore>();

/** A lone high surrogate, as `message.slice(0, n)` leaves it when n cuts an emoji in half. */
const LONE_SURROGATE = 'failed: 😀'.slice(0, 9);
const GOOD = 5;

async function open(): Promise<PostgresStore> {
  const schema = freshSchemaName('tq_poison');
  schemas.add(schema);
  const store = await PostgresStore.open({ connectionString: PG_URL, schema, backgroundMaintenance: false, listen: false, maxConnections: 4 });
  stores.add(store);
  return store;
}

/**
 * GOOD + 1 claimed jobs on queue `w` and 3 pending on queue `c`; then, in one
 * event-loop turn, GOOD good settlements (each enqueueing a successor on
 * `next`), the `bad` one, and a claim of 2 on `c`: one flush.
 */
async function flushWith(
  store: PostgresStore,
  bad: Settlement,
): Promise<{
  good: PromiseSettledResult<unknown>[];
  bad: PromiseSettledResult<unknown>;
  claimed: PromiseSettledResult<Claim[]>;
  badJob: string;
  statements: number;
}> {
  for (let i = 0; i <= GOOD; i++) await store.enqueue('w', bytes(`w${i}`), { id: `w${i}` });
  for (let i = 0; i < 3; i++) await store.enqueue('c', bytes(`c${i}`), { id: `c${i}` });
  const claims = await store.claim('w', { limit: 10 });
  expect(claims).toHaveLength(GOOD + 1);
  const [badClaim, ...goodClaims] = claims as [Claim, ...Claim[]];
  const before = { ...store.metrics };
  const good = goodClaims.map((c) =>
    store.settle(c, {
      action: { type: 'ack' },
      effects: {
        enqueue: [{ queue: 'next', payload: bytes('n'), options: { id: `next-${c.jobId}` } }],
        kvWrites: [{ key: `k-${c.jobId}`, value: bytes('v') }],
      },
    }),
  );
  const badResult = store.settle(badClaim, bad);
  const claimed = store.claim('c', { limit: 2 });
  const [goodSettled, badSettled, claimSettled] = await Promise.all([Promise.allSettled(good), Promise.allSettled([badResult]), Promise.allSettled([claimed])]);
  return {
    good: goodSettled,
    bad: badSettled[0] as PromiseSettledResult<unknown>,
    claimed: claimSettled[0],
    badJob: badClaim.jobId,
    statements: store.metrics.statements - before.statements,
  };
}

async function expectGoodCommitted(store: PostgresStore, result: Awaited<ReturnType<typeof flushWith>>): Promise<void> {
  expect(result.good.map((r) => r.status)).toEqual(Array(GOOD).fill('fulfilled'));
  expect(result.claimed.status).toBe('fulfilled');
  expect((result.claimed as PromiseFulfilledResult<Claim[]>).value.map((c) => c.jobId)).toEqual(['c0', 'c1']);
  expect((await store.stats('next')).pending).toBe(GOOD);
  expect((await store.stats('c')).claimed).toBe(2);
  for (let i = 1; i <= GOOD; i++) expect(await store.kvGet(`k-w${i}`)).toEqual(bytes('v'));
  // They really shared one statement.
  expect(result.statements).toBe(1);
}

describe.skipIf(!available)('PostgresStore: one bad item in a flush', () => {
  afterEach(async () => {
    for (const store of stores) await store.close();
    stores.clear();
  });
  afterAll(async () => {
    for (const schema of schemas) await dropSchema(schema);
  });

  it.each([
    ['a NUL', 'bad\u0000message', 'bad\uFFFDmessage'],
    ['a lone surrogate', LONE_SURROGATE, 'failed: \uFFFD'],
  ])('a dead-letter reason holding %s is stored with U+FFFD, and the rest of the flush commits', async (_, reason, stored) => {
    const store = await open();
    const result = await flushWith(store, { action: { type: 'deadLetter', reason } });
    await expectGoodCommitted(store, result);
    expect(result.bad).toMatchObject({ status: 'fulfilled', value: { status: 'dead' } });
    expect((await store.getJob(result.badJob))?.lastError).toBe(stored);
  });

  it.each([
    ['a NUL', 'oops\u0000', 'oops\uFFFD'],
    ['a lone low surrogate', '\uDE00tail', '\uFFFDtail'],
  ])('a nack error holding %s is stored with U+FFFD, and the rest of the flush commits', async (_, error, stored) => {
    const store = await open();
    const result = await flushWith(store, { action: { type: 'nack', error } });
    await expectGoodCommitted(store, result);
    expect(result.bad).toMatchObject({ status: 'fulfilled' });
    expect((await store.getJob(result.badJob))?.lastError).toBe(stored);
  });

  it('headers holding a NUL and a lone surrogate are stored faithfully', async () => {
    const store = await open();
    const headers = { 'a\u0000b': `x\u0000y`, s: LONE_SURROGATE };
    const result = await flushWith(store, {
      action: { type: 'ack' },
      effects: { enqueue: [{ queue: 'h', payload: bytes('h'), options: { id: 'h1', headers } }] },
    });
    await expectGoodCommitted(store, result);
    expect(result.bad.status).toBe('fulfilled');
    expect((await store.getJob('h1'))?.headers).toEqual(headers);
    await store.enqueue('h', bytes('h'), { id: 'h2', headers });
    expect((await store.getJob('h2'))?.headers).toEqual(headers);
  });

  it('a kv key holding a NUL fails only its settlement, with a permanent INVALID_ARGUMENT', async () => {
    const store = await open();
    const result = await flushWith(store, { action: { type: 'ack' }, effects: { kvWrites: [{ key: 'k\u0000', value: bytes('v') }] } });
    await expectGoodCommitted(store, result);
    expect(result.bad).toMatchObject({ status: 'rejected', reason: { code: 'INVALID_ARGUMENT', isPermanent: true } });
    // Nothing of it was applied: the job is still claimed, and settles normally afterwards.
    expect((await store.getJob(result.badJob))?.status).toBe('claimed');
  });

  it('identities PostgreSQL cannot hold are refused with INVALID_ARGUMENT before anything is sent', async () => {
    const store = await open();
    for (const call of [
      () => store.enqueue('q\u0000', bytes('x')),
      () => store.enqueue('q', bytes('x'), { id: LONE_SURROGATE }),
      () => store.enqueue('q', bytes('x'), { dedupKey: 'd\u0000' }),
      () => store.enqueue('q', bytes('x'), {}, [{ key: LONE_SURROGATE, value: bytes('v') }]),
      () => store.kvGet('k\u0000'),
      () => store.getJob(LONE_SURROGATE),
      () => store.claim('q\u0000'),
    ]) {
      await expect(call()).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', isPermanent: true });
    }
    expect(await store.listQueues()).toEqual([]);
  });

  it('a value the database refuses (a dedup key too large for its index) fails only its settlement, with a permanent error', async () => {
    const store = await open();
    const huge = randomBytes(6_000).toString('base64');
    const result = await flushWith(store, {
      action: { type: 'ack' },
      effects: { enqueue: [{ queue: 'next', payload: bytes('x'), options: { dedupKey: huge } }] },
    });
    await expectGoodCommitted(store, result);
    expect(result.bad.status).toBe('rejected');
    expect((result.bad as PromiseRejectedResult).reason).toMatchObject({ isPermanent: true });
    expect((await store.getJob(result.badJob))?.status).toBe('claimed');
  });
});
