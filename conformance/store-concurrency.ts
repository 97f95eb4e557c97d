/**
 * Concurrency properties: calls issued at once through `fc.scheduler()`,
 * which decides when each call starts and when its result is delivered.
 * The store must behave as if the calls ran one at a time in *some* order
 * (linearizability, checked by replaying every order on the model), with
 * one allowance the contract makes: a claim may pass over jobs that a
 * concurrent claim is taking (`FOR UPDATE SKIP LOCKED`), so in the replay
 * each claim skips the jobs the store gave to the other claims. Jobs no
 * claim took are never skipped, so a short or out-of-order claim is still
 * caught. And the
 * named store invariants are asserted directly as well, so a
 * failure says which one broke: no job claimed twice, counters exact, one
 * live job per dedup key, settlements atomic.
 */
import fc from 'fast-check';
import { ManualClock } from '../core/clock.js';
import { compareIds } from '../core/ids.js';
import type { ClaimRef, JobRecord, QueueStore, Settlement } from '../core/queue-store.js';
import { assertProperty, withGuardedStore } from './checks.js';
import type { ConformanceCheck, ConformanceGroup } from './checks.js';
import { ConformanceError, canonical, outcome, show } from './compare.js';
import type { Outcome } from './compare.js';
import { QueueModel } from './model/index.js';
import { runParameters } from './options.js';
import type { ConformanceOptions } from './options.js';

const START = Date.parse('2026-01-01T00:00:00Z');
const CONFIG = { defaultQueueConfig: { leaseDurationMs: 1000, retryBackoffBaseMs: 0, maxAttempts: 2 }, queueConfigs: {} };
const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);

/** One concurrent call, as plain data (so the counterexample prints it). */
export type ConcurrentOp =
  | { op: 'claim'; limit: number }
  | { op: 'settle'; job: number; action: 'ack' | 'nack' | 'deadLetter'; stale: boolean; withCancelBranch: boolean }
  | { op: 'cancel'; job: number }
  | { op: 'reap' }
  | { op: 'renewLease'; job: number }
  | { op: 'enqueue'; n: number; dedupKey: string }
  | { op: 'requeueDead'; job: number };

interface Scenario {
  /** Jobs `j0..j(n-1)` enqueued first. */
  jobs: number;
  /** How many of them are claimed (in claim order) before the concurrent phase. */
  claimed: number;
  /** Clock advance after the setup: 0 keeps leases, 1000 expires them. */
  advance: number;
  ops: ConcurrentOp[];
}

const opArb: fc.Arbitrary<ConcurrentOp> = fc.oneof(
  fc.record({ op: fc.constant('claim' as const), limit: fc.integer({ min: 1, max: 3 }) }),
  fc.record({
    op: fc.constant('settle' as const),
    job: fc.nat(4),
    action: fc.constantFrom('ack' as const, 'nack' as const, 'deadLetter' as const),
    stale: fc.boolean(),
    withCancelBranch: fc.boolean(),
  }),
  fc.record({ op: fc.constant('cancel' as const), job: fc.nat(4) }),
  fc.constant({ op: 'reap' as const }),
  fc.record({ op: fc.constant('renewLease' as const), job: fc.nat(4) }),
  fc.record({ op: fc.constant('enqueue' as const), n: fc.nat(1000), dedupKey: fc.constantFrom('dk', 'dk2') }),
  fc.record({ op: fc.constant('requeueDead' as const), job: fc.nat(4) }),
);

const scenarioArb: fc.Arbitrary<Scenario> = fc
  .record({
    jobs: fc.integer({ min: 1, max: 5 }),
    claimed: fc.nat(5),
    advance: fc.constantFrom(0, 0, 1000),
    ops: fc.array(opArb, { minLength: 2, maxLength: 5 }),
  })
  .map((s) => ({ ...s, claimed: Math.min(s.claimed, s.jobs) }));

/** Either side of the test: the store (through the scheduler) or one model history. */
interface Side {
  call: <T>(label: string, run: (store: QueueStore) => Promise<T>, onModel: (model: QueueModel, now: number) => T) => Promise<Outcome<T>>;
}

/** Issues one op; results are normalised to comparable data (no tokens). */
async function issue(
  op: ConcurrentOp,
  index: number,
  side: Side,
  claims: Array<{ real: ClaimRef; model: ClaimRef } | undefined>,
  takenByOtherClaims: (index: number) => ReadonlySet<string> = () => new Set(),
): Promise<unknown> {
  const claimOf = (job: number): { real: ClaimRef; model: ClaimRef } => {
    const found = claims[job % claims.length];
    const fallback = { jobId: `j${job}`, token: 'never-issued' };
    return found ?? { real: fallback, model: fallback };
  };
  const record = (r: JobRecord): unknown => r;
  switch (op.op) {
    case 'claim': {
      const r = await side.call(
        `claim(limit ${op.limit})`,
        (s) => s.claim('q', { limit: op.limit }),
        (m, now) => m.claim(now, 'q', { limit: op.limit, skip: takenByOtherClaims(index) }),
      );
      return r.ok ? { ok: true, value: r.value.map((c) => ({ jobId: c.jobId, job: record(c.job) })) } : { ok: false, code: r.code };
    }
    case 'settle': {
      const c = claimOf(op.job);
      const token = (ref: ClaimRef): ClaimRef => (op.stale ? { jobId: ref.jobId, token: `${ref.token}-stale` } : ref);
      const action =
        op.action === 'ack'
          ? { type: 'ack' as const }
          : op.action === 'nack'
            ? { type: 'nack' as const, error: 'e' }
            : { type: 'deadLetter' as const, reason: 'r' };
      const settlement: Settlement = {
        action,
        effects: {
          kvWrites: [{ key: `settled-${index}`, value: bytes(c.real.jobId) }],
          enqueue: [{ queue: 'q2', payload: bytes('next'), options: { id: `next-${index}`, dedupKey: `next-${c.real.jobId}` } }],
        },
      };
      if (op.withCancelBranch)
        settlement.ifCancelRequested = { action: { type: 'ack' }, effects: { kvWrites: [{ key: `cancelled-${index}`, value: bytes(c.real.jobId) }] } };
      const r = await side.call(
        `settle`,
        (s) => s.settle(token(c.real), settlement),
        (m, now) => m.settle(now, token(c.model), settlement),
      );
      return r.ok ? { ok: true, value: r.value } : { ok: false, code: r.code };
    }
    case 'cancel': {
      const r = await side.call(
        `cancel`,
        (s) => s.cancel(`j${op.job}`),
        (m, now) => m.cancel(now, `j${op.job}`),
      );
      return r.ok ? { ok: true, value: r.value } : { ok: false, code: r.code };
    }
    case 'reap': {
      const r = await side.call(
        'reap',
        (s) => s.reap(),
        (m, now) => m.reap(now),
      );
      return r.ok
        ? {
            ok: true,
            value: {
              ...r.value,
              requeued: [...r.value.requeued].sort(compareIds),
              deadLettered: [...r.value.deadLettered].sort((a, b) => compareIds(a.id, b.id)),
            },
          }
        : { ok: false, code: r.code };
    }
    case 'renewLease': {
      const c = claimOf(op.job);
      const r = await side.call(
        'renewLease',
        (s) => s.renewLease(c.real, 500),
        (m, now) => m.renewLease(now, c.model, 500),
      );
      return r.ok ? { ok: true, value: r.value } : { ok: false, code: r.code };
    }
    case 'enqueue': {
      const id = `e-${index}`;
      const r = await side.call(
        'enqueue',
        (s) => s.enqueue('q', bytes('e'), { id, dedupKey: op.dedupKey }, [{ key: `enq-${index}`, value: bytes('w') }]),
        (m, now) => m.enqueue(now, 'q', bytes('e'), { id, dedupKey: op.dedupKey }, [{ key: `enq-${index}`, value: bytes('w') }]),
      );
      return r.ok ? { ok: true, value: r.value } : { ok: false, code: r.code };
    }
    case 'requeueDead': {
      const r = await side.call(
        'requeueDead',
        (s) => s.requeueDead(`j${op.job}`),
        (m) => m.requeueDead(`j${op.job}`),
      );
      return r.ok ? { ok: true, value: null } : { ok: false, code: r.code };
    }
  }
}

function knownIds(scenario: Scenario): string[] {
  const ids: string[] = [];
  for (let i = 0; i < scenario.jobs; i++) ids.push(`j${i}`);
  scenario.ops.forEach((_op, i) => ids.push(`e-${i}`, `next-${i}`));
  return ids;
}

function kvKeys(scenario: Scenario): string[] {
  return scenario.ops.flatMap((_op, i) => [`settled-${i}`, `cancelled-${i}`, `enq-${i}`]);
}

async function storeSnapshot(store: QueueStore, scenario: Scenario): Promise<unknown> {
  const jobs: Record<string, unknown> = {};
  for (const id of knownIds(scenario)) jobs[id] = await store.getJob(id);
  const kv: Record<string, unknown> = {};
  for (const key of kvKeys(scenario)) kv[key] = await store.kvGet(key);
  return { jobs, kv, q: await store.stats('q'), q2: await store.stats('q2') };
}

function modelSnapshot(model: QueueModel, scenario: Scenario, now: number): unknown {
  const jobs: Record<string, unknown> = {};
  for (const id of knownIds(scenario)) jobs[id] = model.getJob(id);
  const kv: Record<string, unknown> = {};
  for (const key of kvKeys(scenario)) kv[key] = model.kvGet(now, key);
  return { jobs, kv, q: model.stats('q'), q2: model.stats('q2') };
}

function* permutations(n: number): Generator<number[]> {
  const order = Array.from({ length: n }, (_, i) => i);
  function* go(k: number): Generator<number[]> {
    if (k === n) {
      yield [...order];
      return;
    }
    for (let i = k; i < n; i++) {
      [order[k], order[i]] = [order[i] as number, order[k] as number];
      yield* go(k + 1);
      [order[k], order[i]] = [order[i] as number, order[k]];
    }
  }
  yield* go(0);
}

/** The explicit invariants, on the store's final state. */
async function checkInvariants(store: QueueStore, scenario: Scenario, results: unknown[]): Promise<void> {
  const claimed = results.flatMap((r) =>
    (r as { ok: boolean; value?: unknown }).ok && Array.isArray((r as { value: unknown }).value)
      ? ((r as { value: Array<{ jobId?: string }> }).value.map((c) => c.jobId).filter(Boolean) as string[])
      : [],
  );
  if (new Set(claimed).size !== claimed.length) throw new ConformanceError(`a job was claimed twice by concurrent claims: ${show(claimed)}`);
  for (const queue of ['q', 'q2']) {
    const stats = await store.stats(queue);
    const records = (await Promise.all(knownIds(scenario).map((id) => store.getJob(id)))).filter((r): r is JobRecord => r?.queue === queue);
    const count = (status: JobRecord['status']): number => records.filter((r) => r.status === status).length;
    const expected = { pending: count('pending'), claimed: count('claimed'), scheduled: count('scheduled'), dead: count('dead') };
    const actual = { pending: stats.pending, claimed: stats.claimed, scheduled: stats.scheduled, dead: stats.dead };
    if (canonical(expected) !== canonical(actual))
      throw new ConformanceError(`counters of ${queue} drifted: records say ${canonical(expected)}, stats say ${canonical(actual)}`);
    const live = records.filter((r) => r.dedupKey !== undefined && (r.status === 'pending' || r.status === 'scheduled'));
    const keys = live.map((r) => r.dedupKey);
    if (new Set(keys).size !== keys.length)
      throw new ConformanceError(`two live jobs share a dedup key on ${queue}: ${show(live.map((r) => [r.id, r.dedupKey]))}`);
  }
  for (let i = 0; i < scenario.ops.length; i++) {
    const op = scenario.ops[i] as ConcurrentOp;
    if (op.op !== 'settle') continue;
    const result = results[i] as { ok: boolean; value?: { branch: string } };
    const primary = (await store.kvGet(`settled-${i}`)) !== undefined;
    const cancel = (await store.kvGet(`cancelled-${i}`)) !== undefined;
    const expectPrimary = result.ok && result.value?.branch === 'primary';
    const expectCancel = result.ok && result.value?.branch === 'cancel';
    if (primary !== expectPrimary || cancel !== expectCancel) {
      throw new ConformanceError(
        `settlement #${i} not atomic: result ${canonical(result)}, primary effect present: ${primary}, cancel effect present: ${cancel}`,
      );
    }
  }
}

/** Concurrent calls through the scheduler; linearizable against the model, with the invariants above. */
export async function checkStoreConcurrency(options: ConformanceOptions): Promise<void> {
  const params = runParameters(options, 1);
  const property = fc.asyncProperty(scenarioArb, fc.scheduler(), async (scenario, s) => {
    const clock = new ManualClock(START);
    await withGuardedStore(options, { clock, backgroundMaintenance: false, ...structuredClone(CONFIG) }, async (guard) => {
      const store = guard.store;
      const model = new QueueModel(CONFIG, () => 'unused');
      // Sequential setup on both sides, with supplied ids so nothing needs pairing.
      for (let i = 0; i < scenario.jobs; i++) {
        await store.enqueue('q', bytes(`j${i}`), { id: `j${i}` });
        model.enqueue(clock.now(), 'q', bytes(`j${i}`), { id: `j${i}` });
      }
      const claims: Array<{ real: ClaimRef; model: ClaimRef } | undefined> = [];
      if (scenario.claimed > 0) {
        const real = await store.claim('q', { limit: scenario.claimed });
        const modelled = model.claim(clock.now(), 'q', { limit: scenario.claimed });
        modelled.forEach((c, i) => {
          const r = real[i];
          if (r) claims.push({ real: { jobId: r.jobId, token: r.token }, model: { jobId: c.jobId, token: c.token } });
        });
      }
      clock.advance(scenario.advance);
      const now = clock.now();

      // Concurrent phase: every call waits for the scheduler to start it and to deliver its result.
      const storeSide: Side = {
        call: async (label, run) => {
          await s.schedule(Promise.resolve(), `start ${label}`);
          const result = await outcome(() => run(store));
          return s.schedule(Promise.resolve(result), `end ${label}`);
        },
      };
      const pending = scenario.ops.map((op, i) => issue(op, i, storeSide, claims));
      await s.waitFor(Promise.all(pending));
      const results = await Promise.all(pending);
      await checkInvariants(store, scenario, results);

      // Linearizability: some serial order of the ops gives the same results and final state on the model.
      const actual = canonical({ results, state: await storeSnapshot(store, scenario) });
      const claimedBy = results.map((r, i) =>
        scenario.ops[i]?.op === 'claim' && (r as { ok: boolean }).ok ? (r as { value: Array<{ jobId: string }> }).value.map((c) => c.jobId) : [],
      );
      const takenByOtherClaims = (index: number): ReadonlySet<string> => new Set(claimedBy.flatMap((ids, i) => (i === index ? [] : ids)));
      for (const order of permutations(scenario.ops.length)) {
        const history = model.fork();
        const modelSide: Side = { call: async (_label, _run, onModel) => outcome(() => onModel(history, now)) };
        const serial: unknown[] = new Array(scenario.ops.length);
        for (const i of order) serial[i] = await issue(scenario.ops[i] as ConcurrentOp, i, modelSide, claims, takenByOtherClaims);
        if (canonical({ results: serial, state: modelSnapshot(history, scenario, now) }) === actual) return;
      }
      throw new ConformanceError(
        `no serial order of the concurrent calls explains the store's results and final state:\n  ops: ${show(scenario.ops)}\n  store: ${actual}`,
      );
    });
  });
  await assertProperty(property, options, params);
}

/** Concurrency properties of the store. */
export function storeConcurrencyChecks(): ConformanceGroup {
  const checks: ConformanceCheck[] = [
    { name: 'concurrent claims, settlements, cancels, reaps and enqueues are linearizable', run: (options) => checkStoreConcurrency(options) },
  ];
  return { name: 'store concurrency', checks };
}
