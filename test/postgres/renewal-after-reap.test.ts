/**
 * A lease renewal issued after this store fired a reap commits after that
 * reap, whichever statement reaches the database first: an expired lease
 * the reaper was told to move is dead-lettered, not renewed from under it
 * (the memory store, which reaps inside the timer, behaves so too). The
 * reap is held back at the pool so the renewal would otherwise win.
 */
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../core/clock.js';
import { PostgresStore } from '../../adapters/postgres/index.js';
import type { PgPoolLike, PgQueryConfig } from '../../adapters/postgres/postgres-pool.js';
import { PG_URL, dropSchema, freshSchemaName, postgresAvailable } from './helpers.js';

const available = await postgresAvailable();
const schemas = new Set<string>();

describe.skipIf(!available)('PostgresStore lease renewal after a reap', () => {
  const real = new pg.Pool({ connectionString: PG_URL, max: 4 });
  real.on('error', () => undefined);
  afterAll(async () => {
    await real.end();
    for (const schema of schemas) await dropSchema(schema);
  });

  it('a renewal issued while the reaper dead-letters the expired claim is refused (LEASE_LOST)', async () => {
    // The reap statement reaches the database 200 ms late (real time), the renewal at once.
    const slowReaps: PgPoolLike = {
      query: async (config: PgQueryConfig) => {
        if (config.name?.endsWith('_reap')) await new Promise((resolve) => setTimeout(resolve, 200));
        return real.query(config as pg.QueryConfig) as never;
      },
      connect: () => real.connect(),
      end: async () => undefined,
      on: () => undefined,
    };
    const schema = freshSchemaName('tq_renew');
    schemas.add(schema);
    const clock = new ManualClock(Date.parse('2026-01-01'));
    const store = await PostgresStore.open({ pool: slowReaps, schema, clock, listen: false, reaperIntervalMs: 5000 });
    try {
      await store.enqueue('q', new Uint8Array([1]), { id: 'job', maxAttempts: 1 });
      const [claim] = await store.claim('q', { leaseMs: 1000 });
      clock.advance(5000); // the reaper's tick: a reap of the expired claim is on its way
      await expect(store.renewLease(claim!, 1000)).rejects.toMatchObject({ code: 'LEASE_LOST' });
      expect(await store.getJob('job')).toMatchObject({ status: 'dead', lastError: 'lease expired' });
    } finally {
      await store.close();
    }
  });
});
