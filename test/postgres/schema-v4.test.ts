/**
 * Schema version 4 against the real server: a schema made by version 3
 * migrates in place (jobs enqueued and claimed before the migration are
 * reaped after it; a job carrying reaper effects works on the migrated
 * schema), carried enqueues get fresh ids each time they apply, and delays count in the database's time: a runtime whose own
 * clock is 10 minutes off still gets a `continueAfter(…, 2000)` step about
 * 2 s after the settlement, in database time. Fresh random schemas, dropped
 * afterwards.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { ManualClock, SystemClock } from '../../core/clock.js';
import type { Clock, TimerOptions } from '../../core/clock.js';
import { StepOutcome, WorkflowRuntime } from '../../core/index.js';
import type { JobRecord } from '../../core/queue-store.js';
import { PostgresStore } from '../../adapters/postgres/index.js';
import { MIGRATIONS } from '../../adapters/postgres/postgres-migrations.js';
import { PG_URL, admin, dropSchema, freshSchemaName, postgresAvailable, schemaAtVersion } from './helpers.js';

const available = await postgresAvailable();
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const base64 = (s: string): string => Buffer.from(s).toString('base64');
const T0 = Date.parse('2026-01-01');
const schemas = new Set<string>();

/** The database's clock, in epoch ms. */
async function databaseNow(): Promise<number> {
  const rows = await admin<{ now: string }>(`SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint AS now`);
  return Number((rows[0] as { now: string }).now);
}

/** The host's real time shifted by `skewMs`, with real timers: a host whose clock is wrong. */
class SkewedClock implements Clock {
  private readonly real = new SystemClock();
  private readonly skewMs: number;

  constructor(skewMs: number) {
    this.skewMs = skewMs;
  }

  now(): number {
    return Date.now() + this.skewMs;
  }

  setTimer(callback: () => void, delayMs: number, options?: TimerOptions): () => void {
    return this.real.setTimer(callback, delayMs, options);
  }
}

describe.skipIf(!available)('PostgresStore schema version 4', () => {
  afterAll(async () => {
    for (const schema of schemas) await dropSchema(schema);
  });

  it('a version-3 schema migrates in place: jobs from before are reaped after, carried effects apply on it', async () => {
    const schema = freshSchemaName('tq_v3');
    await schemaAtVersion(schema, schemas, 3);
    // Version 3's own functions: two jobs on their last attempt, one of them claimed with a 1 s lease.
    const job = (id: string): unknown => ({ id, own: true, queue: 'q', payload: base64(id), headers: '{}', priority: 0, maxAttempts: 1 });
    await admin(`SELECT "${schema}".enqueue($1::bigint, $2::jsonb, NULL, false)`, [T0, JSON.stringify([job('before-claimed'), job('before-pending')])]);
    await admin(`SELECT * FROM "${schema}".claim_jobs($1::bigint, 'q', 1, 1000)`, [T0]);

    const clock = new ManualClock(T0 + 10);
    const store = await PostgresStore.open({ connectionString: PG_URL, schema, clock, backgroundMaintenance: false, listen: false });
    try {
      expect(await admin(`SELECT max(version) AS v FROM "${schema}".schema_migrations`)).toEqual([{ v: MIGRATIONS.length }]);
      expect(await store.getJob('before-claimed')).toMatchObject({ status: 'claimed', leaseExpiresAt: T0 + 1000 });
      const [pendingClaim] = await store.claim('q', { leaseMs: 100 });
      expect(pendingClaim?.jobId).toBe('before-pending');
      await store.enqueue('q', bytes('after'), {
        id: 'after',
        maxAttempts: 1,
        reaperDeadLetter: { effects: { kvWrites: [{ key: 'reaped', value: bytes('yes') }], enqueue: [{ queue: 'r', payload: bytes('outcome') }] } },
      });
      expect((await store.claim('q', { leaseMs: 100 })).map((c) => c.jobId)).toEqual(['after']);

      clock.advance(2000);
      const report = await store.reap();
      expect(report.deadLettered.map((j) => [j.id, j.status, j.lastError])).toEqual([
        ['after', 'dead', 'lease expired'],
        ['before-claimed', 'dead', 'lease expired'],
        ['before-pending', 'dead', 'lease expired'],
      ]);
      expect(report.effectsApplied).toEqual(['after']);
      expect(await store.kvGet('reaped')).toEqual(bytes('yes'));
      expect(await store.stats('q')).toMatchObject({ pending: 0, claimed: 0, dead: 3 });
      expect(await store.stats('r')).toMatchObject({ pending: 1 });
      const [outcome] = await store.claim('r');
      // Its id was taken by the database when the effects applied: a ULID.
      expect(outcome?.job).toMatchObject({ queue: 'r', payload: bytes('outcome'), enqueuedAt: T0 + 2010 });
      expect(outcome?.jobId).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/);
      // Version 3 is older than this one (version 4 came after it, version 5 after that).
      expect(MIGRATIONS.length).toBeGreaterThan(3);
    } finally {
      await store.close();
    }
  });

  it('a job dead-lettered again after requeueDead enqueues its carried jobs afresh (ids taken when they apply)', async () => {
    const schema = freshSchemaName('tq_again');
    schemas.add(schema);
    const clock = new ManualClock(T0);
    const store = await PostgresStore.open({ connectionString: PG_URL, schema, clock, backgroundMaintenance: false, listen: false });
    try {
      await store.enqueue('q', bytes('step'), {
        id: 'step',
        maxAttempts: 1,
        reaperDeadLetter: { effects: { enqueue: [{ queue: 'r', payload: bytes('outcome') }] } },
      });
      const applied: string[][] = [];
      for (let round = 0; round < 2; round++) {
        if (round > 0) await store.requeueDead('step');
        await store.claim('q', { leaseMs: 100 });
        clock.advance(100);
        applied.push((await store.reap()).effectsApplied);
      }
      expect(applied).toEqual([['step'], ['step']]);
      const outcomes = await store.claim('r', { limit: 10 });
      expect(outcomes).toHaveLength(2);
      expect(new Set(outcomes.map((c) => c.jobId)).size).toBe(2);
    } finally {
      await store.close();
    }
  });

  for (const skewMs of [-600_000, 600_000]) {
    it(`continueAfter(…, 2000) is due 2 s after the settlement in database time, with the runtime's clock ${skewMs < 0 ? 'behind' : 'ahead'} by 10 minutes`, async () => {
      const schema = freshSchemaName('tq_time');
      schemas.add(schema);
      // No clock for the store: its times are the database's. Only the runtime's clock is skewed.
      const store = await PostgresStore.open({ connectionString: PG_URL, schema, maxConnections: 4 });
      let stepOne: (job: JobRecord | undefined) => void = () => undefined;
      const ranStepOne = new Promise<JobRecord | undefined>((resolve) => {
        stepOne = resolve;
      });
      const runtime = new WorkflowRuntime({
        store,
        clock: new SkewedClock(skewMs),
        pollIntervalMs: 50,
        runner: async (step) => {
          if (step.stepNumber === 0) return StepOutcome.continueAfter(bytes('next'), 2000);
          stepOne(await store.getJob(step.jobId));
          return StepOutcome.succeed(new Uint8Array());
        },
      });
      const stop = new AbortController();
      const running = runtime.run(stop.signal);
      try {
        await runtime.submit({ input: bytes('start') });
        // A due time off by the skew would not come within this wait (or would come at once).
        let cancelWait: () => void = () => undefined;
        const gaveUp = new Promise<'gave up'>((resolve) => {
          cancelWait = new SystemClock().setTimer(() => resolve('gave up'), 30_000);
        });
        const job = await Promise.race([ranStepOne, gaveUp]);
        cancelWait();
        expect(job, 'step 1 never ran').not.toBe('gave up');
        const record = job as JobRecord;
        // enqueuedAt is the settlement's commit, claimedAt the claim: both in database time.
        expect(Math.abs(record.enqueuedAt - (await databaseNow()))).toBeLessThan(60_000);
        expect(record.claimedAt! - record.enqueuedAt).toBeGreaterThanOrEqual(2000);
        expect(record.claimedAt! - record.enqueuedAt).toBeLessThan(60_000);
      } finally {
        stop.abort();
        await running;
        await store.close();
      }
    }, 60_000);
  }
});
