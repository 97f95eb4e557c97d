/**
 * Both conformance suites against the real server. Every store gets a fresh
 * random schema on a shared pool, dropped when the suite destroys it. The
 * cross-instance checks open several PostgresStore on one fresh schema, as
 * several processes would; LISTEN/NOTIFY carries notifications between them.
 */
import pg from 'pg';
import { afterAll, describe, it } from 'vitest';
import { NOTIFICATION_RULES, describeConformanceGroups, describeWorkflowConformance, queueStoreGroups, skipChecks } from '../../conformance/index.js';
import type { ConformanceOptions, StoreContext } from '../../conformance/index.js';
import { PostgresStore } from '../../adapters/postgres/index.js';
import { PG_URL, dropSchema, freshSchemaName, postgresAvailable } from './helpers.js';

const available = await postgresAvailable();
const pool = new pg.Pool({ connectionString: PG_URL, max: 12 });
pool.on('error', () => undefined);
afterAll(() => pool.end());

async function createStore(ctx: StoreContext): Promise<PostgresStore> {
  return PostgresStore.open({ pool, schema: freshSchemaName('tq_conf'), ...ctx });
}

async function destroyStore(store: PostgresStore): Promise<void> {
  await store.close();
  await dropSchema(store.schema);
}

async function createStores(n: number, ctx: StoreContext): Promise<PostgresStore[]> {
  const schema = freshSchemaName('tq_conf_shared');
  const stores: PostgresStore[] = [];
  for (let i = 0; i < n; i++) stores.push(await PostgresStore.open({ pool, schema, ...ctx }));
  return stores;
}

async function destroyStores(stores: PostgresStore[]): Promise<void> {
  for (const store of stores) await store.close();
  if (stores[0]) await dropSchema(stores[0].schema);
}

const options: ConformanceOptions<PostgresStore> = { name: 'postgres', createStore, destroyStore, createStores, destroyStores, crossProcessNotifications: true };

/**
 * The new checks that rely on delays measured by the store, settlement
 * preconditions or effects carried for the reaper, none of which this store
 * implements yet (the random command sequences generate all three).
 */
const PENDING_RULES = 'the PostgreSQL store does not implement delayMs, Settlement.precondition and reaperDeadLetter yet';
/** Found by the cross-instance checks; left to the PostgreSQL store's own change (it needs a record of removed jobs in the schema). */
const KNOWN_DEFECT = 'known PostgreSQL defect: waitForCompletion reports a job removed by cancel through another instance as completed, not notFound';
const reaperRuleNames = NOTIFICATION_RULES.filter((rule) => rule.usesReaperEffects).map((rule) => rule.operation);
function pendingRule(group: string, check: string): string | undefined {
  if (group === 'cross-instance' && (check.startsWith('random command sequences') || check.startsWith('a run reaped'))) return PENDING_RULES;
  if ((group === 'store notifications' || group === 'cross-instance notifications') && reaperRuleNames.some((name) => check.startsWith(name))) return PENDING_RULES;
  if (group === 'cross-instance' && check.startsWith('waitForCompletion on one instance reports a pending job cancelled')) return KNOWN_DEFECT;
  return undefined;
}

if (available) {
  describeConformanceGroups('QueueStore conformance', options, skipChecks(queueStoreGroups(options), pendingRule));
  describeWorkflowConformance({ name: 'postgres', createStore, destroyStore });
} else {
  describe('postgres conformance', () => {
    it.skip('needs PostgreSQL at 127.0.0.1:5432 (set CI to make its absence fail)', () => undefined);
  });
}
