/**
 * The set-based settlement of a group-commit batch (`settle_set`, with its
 * per-item fallback) against settling the same items one at a time in the
 * batch's order (`settle_one` each). Both stores start from the same jobs,
 * claims, cancels, kv records and dedup keys; every result and the whole
 * final state (jobs, kv, counters) must match. Settlements may share kv
 * keys, dedup keys and enqueued ids, name a job twice, carry stale tokens,
 * or name no job at all; their preconditions may read keys other items
 * write, and hold or not (a seeded record may have expired, or expire
 * later); their kv writes may expire (`ttlMs`); their enqueues may be
 * delayed or carry effects for their reaper dead-letter. `TAQUBA_DEEP=1`
 * runs more cases.
 */
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../core/clock.js';
import type { ClaimRef, KvWrite, Settlement, SettlementBranch } from '../../core/queue-store.js';
import { PostgresStore } from '../../adapters/postgres/index.js';
import { PG_URL, admin, dropSchema, freshSchemaName, postgresAvailable } from './helpers.js';

const available = await postgresAvailable();
const RUNS = process.env.TAQUBA_DEEP === '1' ? 300 : 12;
const START = Date.parse('2026-01-01');
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const schemas = new Set<string>();

/** A small deterministic generator, so one fast-check seed describes a whole scenario. */
function generator(seed: number): { chance: (p: number) => boolean; pick: <T>(items: readonly T[]) => T; int: (n: number) => number } {
  let state = seed >>> 0 || 1;
  const next = (): number => {
    state = (Math.imul(state, 1103515245) + 12345) & 0x7fffffff;
    return state / 0x7fffffff;
  };
  return { chance: (p) => next() < p, pick: (items) => items[Math.floor(next() * items.length)] as (typeof items)[number], int: (n) => Math.floor(next() * n) };
}

interface Scenario {
  config: { maxAttempts: number; retryBackoffBaseMs: number; retryBackoffMaxMs: number; keepDoneJobsMs?: number };
  jobIds: string[];
  kvSeeds: string[];
  /** Seeded records already expired at the settlements' time, and records that expire after it. */
  kvExpired: string[];
  kvExpiring: string[];
  dedupSeeds: string[];
  cancelled: string[];
  items: Array<{ jobId: string; stale: boolean; settlement: Settlement }>;
}

function scenario(seed: number): Scenario {
  const g = generator(seed);
  // Expiry draws from a generator of its own, so a seed describes the same settlements as before expiry existed.
  const t = generator(seed ^ 0x2545f491);
  const jobIds = Array.from({ length: 2 + g.int(8) }, (_, i) => `j${String(i).padStart(2, '0')}`);
  const shared = g.chance(0.4); // settlements that touch the same keys and ids
  let counter = 0;
  // Keys of their own (seeded, so deleting or overwriting one shows) keep items apart; shared keys make them interact.
  const effects = (jobId: string): NonNullable<SettlementBranch['effects']> => {
    const out: NonNullable<SettlementBranch['effects']> = {};
    if (g.chance(0.7)) {
      out.enqueue = Array.from({ length: 1 + g.int(2) }, () => {
        const options: NonNullable<NonNullable<SettlementBranch['effects']>['enqueue']>[number]['options'] = {
          id: shared && g.chance(0.2) ? g.pick([...jobIds, 'e0', 'e1']) : `n${counter++}`,
        };
        if (g.chance(0.4)) options.dedupKey = shared ? g.pick(['d0', 'd1', 'd2']) : `dd${counter++}`;
        if (g.chance(0.2)) options.runAt = START + g.pick([-10, 0, 500]);
        const delayMs = options.runAt === undefined && g.chance(0.2) ? g.pick([0, 500]) : undefined;
        if (delayMs !== undefined) options.delayMs = delayMs;
        if (g.chance(0.2)) options.reaperDeadLetter = { precondition: { key: 'k0', equals: bytes('old') }, effects: { kvDeletes: [`c${counter++}`] } };
        if (g.chance(0.2)) options.priority = 5;
        return { queue: g.pick(['q', 'r']), payload: bytes(`p${counter++}`), options };
      });
    }
    if (g.chance(0.6)) {
      const write: KvWrite = { key: shared ? g.pick(['k0', 'k1', 'k2', 'k3']) : `own-${jobId}-${g.int(2)}`, value: bytes(`v${counter++}`) };
      if (t.chance(0.4)) write.ttlMs = t.pick([1, 1000]);
      out.kvWrites = [write];
    }
    if (g.chance(0.3)) out.kvDeletes = [shared ? g.pick(['k0', 'k1', 'k2', 'k3']) : `own-${jobId}-${g.int(2)}`];
    return out;
  };
  const branch = (jobId: string): SettlementBranch => {
    const type = g.pick(['ack', 'ack', 'nack', 'deadLetter'] as const);
    const action = type === 'ack' ? { type } : type === 'nack' ? { type, error: 'err' } : { type, reason: 'why' };
    return g.chance(0.8) ? { action, effects: effects(jobId) } : { action };
  };
  const items: Scenario['items'] = [];
  for (const jobId of jobIds) {
    if (g.chance(0.15)) continue;
    const settlement: Settlement = branch(jobId);
    if (g.chance(0.5)) settlement.ifCancelRequested = branch(jobId);
    // Seeded keys hold 'old' until an item changes them: a precondition holds, fails, or reads a key an
    // earlier item writes (another job's own key: the only interaction between otherwise separate items).
    if (g.chance(0.4)) {
      const key = shared ? g.pick(['k0', 'k1', 'k2', 'k3']) : `own-${g.chance(0.5) ? jobId : g.pick(jobIds)}-${g.int(2)}`;
      settlement.precondition = { key, equals: bytes(g.chance(0.8) ? 'old' : 'other') };
    }
    items.push({ jobId, stale: g.chance(0.15), settlement });
    if (g.chance(0.08)) items.push({ jobId, stale: false, settlement: branch(jobId) });
  }
  items.push({ jobId: 'missing', stale: false, settlement: { action: { type: 'ack' } } });
  const keep = g.chance(0.3);
  const kvSeeds = [...['k0', 'k1', 'k2'].filter(() => g.chance(0.5)), ...jobIds.flatMap((id) => [`own-${id}-0`, `own-${id}-1`])];
  const expiry = kvSeeds.map(() => t.pick(['permanent', 'permanent', 'expired', 'expiring'] as const));
  return {
    config: { maxAttempts: 1 + g.int(3), retryBackoffBaseMs: g.pick([0, 100]), retryBackoffMaxMs: 1000, ...(keep ? { keepDoneJobsMs: 5000 } : {}) },
    jobIds,
    kvSeeds,
    kvExpired: kvSeeds.filter((_, i) => expiry[i] === 'expired'),
    kvExpiring: kvSeeds.filter((_, i) => expiry[i] === 'expiring'),
    dedupSeeds: ['d0', 'd1'].filter(() => g.chance(0.5)),
    cancelled: jobIds.filter(() => g.chance(0.3)),
    items,
  };
}

/** Runs the scenario on a fresh schema, batched or one at a time; returns every result and the final state. */
async function play(s: Scenario, batched: boolean): Promise<unknown> {
  const schema = freshSchemaName('tq_set');
  schemas.add(schema);
  const store = await PostgresStore.open({
    connectionString: PG_URL,
    schema,
    clock: new ManualClock(START),
    backgroundMaintenance: false,
    listen: false,
    defaultQueueConfig: s.config,
  });
  try {
    for (const key of s.kvSeeds) await store.enqueue('q', bytes('seed'), { id: `kv-${key}` }, [{ key, value: bytes('old') }]);
    // Expired at the store's time (START): gone for preconditions and replaced by writes, though still in the table.
    await admin(`UPDATE "${schema}".kv SET expires_at = $1::bigint WHERE key = ANY ($2::text[])`, [START, s.kvExpired]);
    await admin(`UPDATE "${schema}".kv SET expires_at = $1::bigint WHERE key = ANY ($2::text[])`, [START + 1000, s.kvExpiring]);
    for (const key of s.dedupSeeds) await store.enqueue('q', bytes('seed'), { id: `pre-${key}`, dedupKey: key, priority: 99 });
    for (const id of s.jobIds) await store.enqueue('q', bytes(id), { id, priority: 0 });
    const claims = await store.claim('q', { limit: s.jobIds.length });
    const tokens = new Map(claims.map((c) => [c.jobId, c.token]));
    for (const id of s.cancelled) await store.cancel(id);
    // The batch settles in job-id order (stable): the sequential run uses the same order.
    const ordered = s.items
      .map((item, index) => ({ item, index }))
      .sort((a, b) => (a.item.jobId < b.item.jobId ? -1 : a.item.jobId > b.item.jobId ? 1 : a.index - b.index));
    const ref = (item: Scenario['items'][number]): ClaimRef => ({ jobId: item.jobId, token: item.stale ? 'stale' : (tokens.get(item.jobId) ?? 'none') });
    const outcome = (p: Promise<unknown>): Promise<unknown> =>
      p.then(
        (ok) => ({ ok }),
        (error: unknown) => ({ error: (error as { code?: string }).code ?? String(error) }),
      );
    const results: unknown[] = [];
    if (batched) {
      // Issued in one event-loop turn: one flush, settled as a set.
      const settled = await Promise.all(ordered.map(({ item }) => outcome(store.settle(ref(item), item.settlement))));
      results.push(...settled);
    } else {
      for (const { item } of ordered) results.push(await outcome(store.settle(ref(item), item.settlement)));
    }
    results.push((await store.claim('q', { limit: 3 })).map((c) => c.jobId));
    const jobs = await admin(
      `SELECT id, queue, encode(payload, 'escape') AS payload, status, attempts, priority, run_at, last_error, dedup_key, completed_at, failed_at, cancel_requested, lease_expires_at,
              reaper_dead_letter
       FROM "${schema}".jobs ORDER BY id`,
    );
    const kv = await admin(`SELECT key, encode(value, 'escape') AS value, expires_at FROM "${schema}".kv ORDER BY key`);
    const counters = await admin(
      `SELECT queue, sum(pending) p, sum(claimed) c, sum(scheduled) s, sum(dead) d, sum(done) dn FROM "${schema}".counters GROUP BY queue ORDER BY queue`,
    );
    return JSON.parse(
      JSON.stringify({ results, jobs, kv, counters }, (key, value: unknown) =>
        key === 'token' ? undefined : value instanceof Uint8Array ? Buffer.from(value).toString() : value,
      ),
    );
  } finally {
    await store.close();
  }
}

describe.skipIf(!available)('PostgresStore set-based settlement', () => {
  afterAll(async () => {
    for (const schema of schemas) await dropSchema(schema);
  });

  it(
    'settles a batch exactly as one settlement at a time in the batch order would',
    async () => {
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: 1, max: 2 ** 31 - 1 }), async (seed) => {
          const s = scenario(seed);
          const [batched, oneByOne] = [await play(s, true), await play(s, false)];
          expect(batched).toEqual(oneByOne);
        }),
        // The examples: a precondition reading a key an earlier item of the batch writes; one on a seeded record
        // that has expired.
        { numRuns: RUNS, examples: [[780185161], [53085734]] },
      );
    },
    RUNS * 5_000,
  );
});
