/**
 * Group commit: operations called in one event-loop turn share a
 * transaction, each in its own savepoint. Each stays atomic on its own: a
 * failing one is rolled back alone, and counters stay exact.
 */
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { KV_VALUE_MAX_BYTES } from '../../core/queue-store.js';
import { bytes } from '../support/harness.js';
import { openStore, tempDbPath } from './helpers.js';

describe('group commit', () => {
  it('concurrent settlements commit together; a failing one is rolled back alone', async () => {
    const store = openStore({ backgroundMaintenance: false });
    for (let i = 0; i < 6; i++) await store.enqueue('q', bytes(`${i}`), { id: `j${i}` });
    const claims = await store.claim('q', { limit: 6 });
    const results = await Promise.allSettled(
      claims.map((claim, i) =>
        store.settle(
          i === 2 ? { ...claim, token: 'stale' } : claim,
          i === 4
            ? { action: { type: 'ack' }, effects: { kvWrites: [{ key: 'big', value: new Uint8Array(KV_VALUE_MAX_BYTES + 1) }] } }
            : i === 5
              ? {
                  action: { type: 'ack' },
                  effects: { enqueue: [{ queue: 'q', payload: bytes('dup'), options: { id: 'j2' } }], kvWrites: [{ key: 'k5', value: bytes('5') }] },
                }
              : {
                  action: { type: 'ack' },
                  effects: {
                    enqueue: [{ queue: 'next', payload: bytes(`n${i}`), options: { id: `n${i}` } }],
                    kvWrites: [{ key: `k${i}`, value: bytes(`${i}`) }],
                  },
                },
        ),
      ),
    );
    expect(results.map((r) => (r.status === 'fulfilled' ? 'ok' : (r.reason as { code: string }).code))).toEqual([
      'ok',
      'ok',
      'LEASE_LOST',
      'ok',
      'KV_VALUE_TOO_LARGE',
      'INVALID_ARGUMENT',
    ]);
    expect(await store.stats('q')).toEqual({ pending: 0, claimed: 3, scheduled: 0, dead: 0, done: 3 });
    expect(await store.stats('next')).toMatchObject({ pending: 3 });
    expect(await store.kvGet('k5')).toBeUndefined();
    expect(await store.getJob('j5')).toMatchObject({ status: 'claimed' });
    expect(await store.getJob('j0')).toBeUndefined();
    expect(await store.getJob('j2')).toMatchObject({ status: 'claimed', payload: bytes('2') });
  });

  it('a batch that cannot take the write lock fails as a whole with STORE_UNAVAILABLE, nothing applied', async () => {
    const path = tempDbPath();
    const store = openStore({ path, backgroundMaintenance: false, busyTimeoutMs: 30 });
    await store.enqueue('q', bytes('a'));
    const other = new Database(path);
    other.exec('BEGIN IMMEDIATE');
    const results = await Promise.allSettled([store.enqueue('q', bytes('b')), store.enqueue('q', bytes('c')), store.claim('q')]);
    other.exec('ROLLBACK');
    other.close();
    expect(results.map((r) => (r.status === 'rejected' ? (r.reason as { code: string }).code : 'ok'))).toEqual([
      'STORE_UNAVAILABLE',
      'STORE_UNAVAILABLE',
      'STORE_UNAVAILABLE',
    ]);
    expect(await store.stats('q')).toMatchObject({ pending: 1, claimed: 0 });
  });

  it('operations called before close still commit', async () => {
    const path = tempDbPath();
    const store = openStore({ path, backgroundMaintenance: false });
    const pending = store.enqueue('q', bytes('a'), { id: 'last' });
    await store.close();
    expect(await pending).toEqual({ kind: 'new', id: 'last' });
    const again = openStore({ path, backgroundMaintenance: false });
    expect(await again.getJob('last')).toBeDefined();
  });

  it('groupCommit: false gives one transaction per operation with the same results', async () => {
    const store = openStore({ backgroundMaintenance: false, groupCommit: false });
    const results = await Promise.all([store.enqueue('q', bytes('a'), { dedupKey: 'k' }), store.enqueue('q', bytes('b'), { dedupKey: 'k' })]);
    expect(results.map((r) => r.kind)).toEqual(['new', 'alreadyEnqueued']);
  });
});
