/**
 * Opening a PostgreSQL store: refusals that no retry can change are the
 * permanent STORE_OPEN_FAILED (missing privilege, unknown database or role,
 * reserved schema, a schema holding another application's tables), and a
 * least-privilege worker role, with only the grants docs/postgres.md lists,
 * runs a schema its owner migrated.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../core/clock.js';
import { PostgresStore } from '../../adapters/postgres/index.js';
import type { PostgresStoreOptions } from '../../adapters/postgres/index.js';
import { PG_URL, admin, dropSchema, freshSchemaName, postgresAvailable } from './helpers.js';

const available = await postgresAvailable();
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const schemas = new Set<string>();
const roles = new Set<string>();
const stores = new Set<PostgresStore>();

/** PG_URL with another user and/or database. */
function urlWith(parts: { user?: string; database?: string }): string {
  const url = new URL(PG_URL);
  if (parts.user !== undefined) url.username = parts.user;
  if (parts.database !== undefined) url.pathname = `/${parts.database}`;
  return url.toString();
}

async function open(options: Partial<PostgresStoreOptions>): Promise<PostgresStore> {
  const store = await PostgresStore.open({ connectionString: PG_URL, backgroundMaintenance: false, maxConnections: 3, ...options });
  stores.add(store);
  return store;
}

async function createWorkerRole(): Promise<string> {
  const role = `tq_worker_${randomBytes(5).toString('hex')}`;
  await admin(`CREATE ROLE ${role} LOGIN`);
  roles.add(role);
  return role;
}

/** The grants docs/postgres.md lists for a worker role, on a schema an owner migrated. */
async function grantWorker(schema: string, role: string): Promise<void> {
  await admin(`GRANT USAGE ON SCHEMA "${schema}" TO ${role}`);
  await admin(`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "${schema}" TO ${role}`);
  await admin(`GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA "${schema}" TO ${role}`);
}

describe.skipIf(!available)('PostgresStore open errors and least privilege', () => {
  afterEach(async () => {
    for (const store of stores) await store.close();
    stores.clear();
  });
  afterAll(async () => {
    for (const schema of schemas) await dropSchema(schema);
    for (const role of roles) {
      await admin(`DROP OWNED BY ${role}`);
      await admin(`DROP ROLE ${role}`);
    }
  });

  it('a worker role with USAGE and table privileges only runs a schema its owner migrated', async () => {
    const schema = freshSchemaName('tq_role');
    schemas.add(schema);
    const owner = await open({ schema, listen: false });
    await owner.close();
    const role = await createWorkerRole();
    // Nothing granted yet: refused for good, not "unavailable".
    await expect(open({ connectionString: urlWith({ user: role }), schema })).rejects.toMatchObject({ code: 'STORE_OPEN_FAILED', isPermanent: true });
    await grantWorker(schema, role);
    const clock = new ManualClock(Date.parse('2026-01-01'));
    const worker = await open({ connectionString: urlWith({ user: role }), schema, clock });
    const woken = new Promise<void>((resolve) => worker.subscribe('q', () => resolve()));
    await worker.enqueue('q', bytes('a'), { id: 'a' }, [{ key: 'k', value: bytes('v'), ifAbsent: true }]);
    await worker.enqueue('q', bytes('b'), { id: 'b', runAt: clock.now() + 1_000 });
    await woken;
    const [a] = await worker.claim('q', { leaseMs: 1_000 });
    expect(a?.jobId).toBe('a');
    await worker.renewLease(a!, 1_000);
    const settled = await worker.settle(a!, {
      action: { type: 'ack' },
      effects: { enqueue: [{ queue: 'q', payload: bytes('c'), options: { id: 'c', maxAttempts: 1 } }], kvDeletes: ['k'] },
    });
    expect(settled.status).toBe('done');
    const [c] = await worker.claim('q', { leaseMs: 1_000 });
    expect(c?.jobId).toBe('c');
    expect(await worker.cancel('c')).toMatchObject({ outcome: 'requested' });
    clock.advance(1_000);
    expect(await worker.promote()).toBe(1);
    expect((await worker.reap()).deadLettered.map((j) => j.id)).toEqual(['c']);
    expect(await worker.stats('q')).toMatchObject({ pending: 1, claimed: 0, dead: 1 });
    expect(await worker.kvGet('k')).toBeUndefined();
    await worker.requeueDead('c');
    expect((await worker.claim('q', { limit: 5 })).map((x) => x.jobId).sort()).toEqual(['b', 'c']);
    // The worker role cannot create a schema of its own, and says so permanently.
    await expect(open({ connectionString: urlWith({ user: role }), schema: freshSchemaName('tq_role_new') })).rejects.toMatchObject({
      code: 'STORE_OPEN_FAILED',
    });
  });

  it('reports an unknown database and an unknown role as STORE_OPEN_FAILED', async () => {
    await expect(open({ connectionString: urlWith({ database: `tq_nodb_${randomBytes(4).toString('hex')}` }), schema: 'x' })).rejects.toMatchObject({
      code: 'STORE_OPEN_FAILED',
      isPermanent: true,
    });
    await expect(open({ connectionString: urlWith({ user: `tq_norole_${randomBytes(4).toString('hex')}` }), schema: 'x' })).rejects.toMatchObject({
      code: 'STORE_OPEN_FAILED',
      isPermanent: true,
    });
  });

  it('refuses a schema reserved by PostgreSQL with STORE_OPEN_FAILED', async () => {
    for (const schema of ['pg_catalog', 'pg_toast', `pg_tq_${randomBytes(4).toString('hex')}`]) {
      await expect(open({ schema, listen: false })).rejects.toMatchObject({ code: 'STORE_OPEN_FAILED', isPermanent: true });
    }
  });

  it("refuses a schema holding the application's own jobs table with STORE_OPEN_FAILED, touching nothing", async () => {
    const schema = freshSchemaName('tq_app');
    schemas.add(schema);
    await admin(`CREATE SCHEMA "${schema}"`);
    await admin(`CREATE TABLE "${schema}".jobs (title text)`);
    await admin(`INSERT INTO "${schema}".jobs VALUES ('mine')`);
    await expect(open({ schema, listen: false })).rejects.toMatchObject({
      code: 'STORE_OPEN_FAILED',
      isPermanent: true,
      message: expect.stringContaining('jobs'),
    });
    expect(await admin(`SELECT title FROM "${schema}".jobs`)).toEqual([{ title: 'mine' }]);
    expect(await admin(`SELECT to_regclass($1) AS t`, [`"${schema}".schema_migrations`])).toEqual([{ t: null }]);
  });
});
