/**
 * Unit tests of every store operation, bad input, and edges
 * that bit other queues, shared by every adapter's own test file. (The
 * conformance suite checks the same contract generatively; these are the
 * readable, example-based cases.)
 */
import { describe, expect, it, vi } from 'vitest';
import { KV_VALUE_MAX_BYTES, ManualClock } from '../../core/index.js';
import type { JobRecord, QueueStore, StoreNotification, StoreOptions } from '../../core/index.js';
import { bytes } from './harness.js';

const T0 = Date.parse('2026-01-01T00:00:00Z');

/** Lets background work started by a clock advance finish (a few event-loop turns). */
async function settleMaintenance(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
}

async function snapshot(store: QueueStore, queue = 'q'): Promise<unknown> {
  return { stats: await store.stats(queue), queues: await store.listQueues(), dead: await store.deadJobs(queue) };
}

/** Bytes whose buffer was transferred away (as `postMessage` to a worker does): the view reads as empty. */
function detachedBytes(): Uint8Array {
  const buffer = new ArrayBuffer(4);
  const view = new Uint8Array(buffer);
  view.set(bytes('gone'));
  structuredClone(buffer, { transfer: [buffer] });
  return view;
}

/** Declares the store unit tests for stores made by `open` (a fresh, isolated store per call; the caller closes them). */
export function describeStoreUnitTests(name: string, open: (options: StoreOptions) => QueueStore): void {
  function setup(options: StoreOptions = {}): { store: QueueStore; clock: ManualClock } {
    const clock = new ManualClock(T0);
    return { store: open({ backgroundMaintenance: false, ...options, clock }), clock };
  }

  describe(`${name}: store operations`, () => {
    describe('enqueue', () => {
      it('writes a pending job with defaults and returns its id', async () => {
        const { store } = setup();
        const result = await store.enqueue('q', bytes('p'), { headers: { a: '1' } });
        expect(result.kind).toBe('new');
        const job = await store.getJob((result as { id: string }).id);
        expect(job).toEqual({
          id: (result as { id: string }).id,
          queue: 'q',
          payload: bytes('p'),
          headers: { a: '1' },
          status: 'pending',
          attempts: 0,
          maxAttempts: 3,
          priority: 1000,
          enqueuedAt: T0,
          cancelRequested: false,
        } satisfies JobRecord);
        expect(await store.stats('q')).toEqual({ pending: 1, claimed: 0, scheduled: 0, dead: 0, done: 0 });
      });

      it('runAt in the future schedules; at or before now is pending', async () => {
        const { store } = setup();
        await store.enqueue('q', bytes('a'), { runAt: T0 + 1 });
        await store.enqueue('q', bytes('b'), { runAt: T0 });
        await store.enqueue('q', bytes('c'), { runAt: T0 - 1000 });
        expect(await store.stats('q')).toMatchObject({ pending: 2, scheduled: 1 });
      });

      it('a dedup hit writes nothing, kv writes included', async () => {
        const { store } = setup();
        const first = await store.enqueue('q', bytes('a'), { dedupKey: 'k' }, [{ key: 'x', value: bytes('1') }]);
        const second = await store.enqueue('q', bytes('b'), { dedupKey: 'k' }, [
          { key: 'x', value: bytes('2') },
          { key: 'y', value: bytes('3') },
        ]);
        expect(second).toEqual({ kind: 'alreadyEnqueued', id: (first as { id: string }).id });
        expect(await store.kvGet('x')).toEqual(bytes('1'));
        expect(await store.kvGet('y')).toBeUndefined();
        expect((await store.stats('q')).pending).toBe(1);
      });

      it('the dedup key is per queue and released on claim', async () => {
        const { store } = setup();
        await store.enqueue('q', bytes('a'), { dedupKey: 'k' });
        expect((await store.enqueue('other', bytes('a'), { dedupKey: 'k' })).kind).toBe('new');
        const [claim] = await store.claim('q');
        expect(claim!.job.dedupKey).toBeUndefined();
        expect((await store.enqueue('q', bytes('b'), { dedupKey: 'k' })).kind).toBe('new');
      });

      it('an ifAbsent kv write on an existing key writes nothing', async () => {
        const { store } = setup();
        await store.enqueue('q', bytes('a'), {}, [{ key: 'x', value: bytes('1'), ifAbsent: true }]);
        const result = await store.enqueue('q', bytes('b'), {}, [
          { key: 'y', value: bytes('2') },
          { key: 'x', value: bytes('3'), ifAbsent: true },
        ]);
        expect(result).toEqual({ kind: 'kvConflict', key: 'x' });
        expect(await store.kvGet('x')).toEqual(bytes('1'));
        expect(await store.kvGet('y')).toBeUndefined();
        expect((await store.stats('q')).pending).toBe(1);
      });

      it('enqueueBatch is all-or-nothing with ids in input order', async () => {
        const { store } = setup();
        const results = await store.enqueueBatch('q', [
          { payload: bytes('1'), options: { id: 'b' } },
          { payload: bytes('2'), options: { id: 'a' } },
        ]);
        expect(results).toEqual([
          { kind: 'new', id: 'b' },
          { kind: 'new', id: 'a' },
        ]);
        await expect(
          store.enqueueBatch('q', [
            { payload: bytes('3'), options: { id: 'c' } },
            { payload: bytes('4'), options: { id: 'a' } },
          ]),
        ).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
        expect(await store.getJob('c')).toBeUndefined();
        expect((await store.stats('q')).pending).toBe(2);
      });
    });

    describe('claim', () => {
      it('takes the lowest priority number first, FIFO within a priority, and counts the attempt', async () => {
        const { store } = setup();
        await store.enqueue('q', bytes('low'), { id: '01', priority: 10000 });
        await store.enqueue('q', bytes('n1'), { id: '02' });
        await store.enqueue('q', bytes('high'), { id: '03', priority: 100 });
        await store.enqueue('q', bytes('n2'), { id: '04' });
        const claims = await store.claim('q', { limit: 10, leaseMs: 5_000 });
        expect(claims.map((c) => c.jobId)).toEqual(['03', '02', '04', '01']);
        for (const c of claims) {
          expect(c.job).toMatchObject({ status: 'claimed', attempts: 1, claimedAt: T0, leaseExpiresAt: T0 + 5_000 });
        }
        expect(new Set(claims.map((c) => c.token)).size).toBe(4);
        expect(await store.claim('q')).toEqual([]);
      });

      it('ids taken in sequence within one millisecond keep FIFO order', async () => {
        const { store } = setup();
        for (let i = 0; i < 50; i++) await store.enqueue('q', bytes(String(i)));
        const claims = await store.claim('q', { limit: 50 });
        expect(claims.map((c) => new TextDecoder().decode(c.job.payload))).toEqual(Array.from({ length: 50 }, (_, i) => String(i)));
      });

      it('never takes scheduled jobs before they are promoted', async () => {
        const { store, clock } = setup();
        await store.enqueue('q', bytes('later'), { runAt: T0 + 1_000 });
        expect(await store.claim('q')).toEqual([]);
        clock.advance(1_000);
        expect(await store.promote()).toBe(1);
        expect(await store.claim('q')).toHaveLength(1);
      });
    });

    describe('settle', () => {
      it('ack deletes the job and counts done', async () => {
        const { store } = setup();
        await store.enqueue('q', bytes('a'));
        const [c] = await store.claim('q');
        expect(await store.settle(c!, { action: { type: 'ack' } })).toEqual({ branch: 'primary', status: 'done', enqueued: [] });
        expect(await store.getJob(c!.jobId)).toBeUndefined();
        expect(await store.stats('q')).toEqual({ pending: 0, claimed: 0, scheduled: 0, dead: 0, done: 1 });
      });

      it('ack keeps a done record when the queue retains done jobs, until retention sweeps it', async () => {
        const { store, clock } = setup({ queueConfigs: { q: { keepDoneJobsMs: 60_000 } } });
        await store.enqueue('q', bytes('a'));
        const [c] = await store.claim('q');
        await store.settle(c!, { action: { type: 'ack' } });
        expect(await store.getJob(c!.jobId)).toMatchObject({ status: 'done', completedAt: T0 });
        clock.advance(59_999);
        expect((await store.reap()).doneSwept).toBe(0);
        clock.advance(1);
        expect((await store.reap()).doneSwept).toBe(1);
        expect(await store.getJob(c!.jobId)).toBeUndefined();
        expect((await store.stats('q')).done).toBe(1);
      });

      it('nack backs off min(base * 2^(n-1), max), then goes dead at max attempts', async () => {
        const { store, clock } = setup({ defaultQueueConfig: { retryBackoffBaseMs: 1_000, retryBackoffMaxMs: 1_500, maxAttempts: 3 } });
        await store.enqueue('q', bytes('a'), { id: 'j' });
        const delays: number[] = [];
        for (let attempt = 1; attempt <= 2; attempt++) {
          const [c] = await store.claim('q');
          const result = await store.settle(c!, { action: { type: 'nack', error: `e${attempt}` } });
          expect(result.status).toBe('scheduled');
          const job = await store.getJob('j');
          delays.push(job!.runAt! - clock.now());
          expect(job).toMatchObject({ status: 'scheduled', attempts: attempt, lastError: `e${attempt}` });
          clock.set(job!.runAt!);
          await store.promote();
        }
        expect(delays).toEqual([1_000, 1_500]);
        const [c] = await store.claim('q');
        expect((await store.settle(c!, { action: { type: 'nack', error: 'e3' } })).status).toBe('dead');
        expect(await store.getJob('j')).toMatchObject({ status: 'dead', attempts: 3, lastError: 'e3', failedAt: clock.now() });
      });

      it('a zero backoff base puts a nacked job straight back to pending', async () => {
        const { store } = setup({ defaultQueueConfig: { retryBackoffBaseMs: 0 } });
        await store.enqueue('q', bytes('a'));
        const [c] = await store.claim('q');
        expect((await store.settle(c!, { action: { type: 'nack', error: 'x' } })).status).toBe('pending');
        expect(await store.claim('q')).toHaveLength(1);
      });

      it('deadLetter goes dead whatever the attempts', async () => {
        const { store } = setup();
        await store.enqueue('q', bytes('a'), { maxAttempts: 10 });
        const [c] = await store.claim('q');
        expect((await store.settle(c!, { action: { type: 'deadLetter', reason: 'bad' } })).status).toBe('dead');
        expect((await store.deadJobs('q'))[0]).toMatchObject({ lastError: 'bad', attempts: 1 });
      });

      it('effects commit with the settlement', async () => {
        const { store } = setup();
        await store.enqueue('q', bytes('a'), {}, [{ key: 'old', value: bytes('o') }]);
        const [c] = await store.claim('q');
        const result = await store.settle(c!, {
          action: { type: 'ack' },
          effects: { enqueue: [{ queue: 'next', payload: bytes('n'), options: { id: 'N' } }], kvWrites: [{ key: 'k', value: bytes('v') }], kvDeletes: ['old'] },
        });
        expect(result.enqueued).toEqual([{ kind: 'new', id: 'N' }]);
        expect(await store.kvGet('k')).toEqual(bytes('v'));
        expect(await store.kvGet('old')).toBeUndefined();
        expect((await store.stats('next')).pending).toBe(1);
      });

      it('the cancel branch is chosen when the cancel flag is set at commit', async () => {
        const { store } = setup();
        await store.enqueue('q', bytes('a'));
        const [c] = await store.claim('q');
        expect(await store.cancel(c!.jobId)).toMatchObject({ outcome: 'requested', firstRequest: true });
        const result = await store.settle(c!, {
          action: { type: 'nack', error: 'retry me' },
          effects: { kvWrites: [{ key: 'primary', value: bytes('1') }] },
          ifCancelRequested: { action: { type: 'ack' }, effects: { kvWrites: [{ key: 'cancel', value: bytes('1') }] } },
        });
        expect(result).toEqual({ branch: 'cancel', status: 'done', enqueued: [] });
        expect(await store.kvGet('primary')).toBeUndefined();
        expect(await store.kvGet('cancel')).toEqual(bytes('1'));
      });

      it('a stale claim token changes nothing and reports LEASE_LOST', async () => {
        const { store, clock } = setup({ defaultQueueConfig: { leaseDurationMs: 1_000 } });
        await store.enqueue('q', bytes('a'));
        const [stale] = await store.claim('q');
        clock.advance(1_000);
        expect((await store.reap()).requeued).toEqual([stale!.jobId]);
        const [current] = await store.claim('q');
        const before = await store.getJob(stale!.jobId);
        for (const action of [{ type: 'ack' }, { type: 'nack', error: 'x' }, { type: 'deadLetter', reason: 'x' }] as const) {
          await expect(store.settle(stale!, { action, effects: { kvWrites: [{ key: 'k', value: bytes('v') }] } })).rejects.toMatchObject({
            code: 'LEASE_LOST',
          });
        }
        await expect(store.renewLease(stale!, 10_000)).rejects.toMatchObject({ code: 'LEASE_LOST' });
        expect(await store.getJob(stale!.jobId)).toEqual(before);
        expect(await store.kvGet('k')).toBeUndefined();
        expect((await store.settle(current!, { action: { type: 'ack' } })).status).toBe('done');
        await expect(store.settle(current!, { action: { type: 'ack' } })).rejects.toMatchObject({ code: 'LEASE_LOST' });
      });

      it('an expired lease the reaper has not moved yet is still owned', async () => {
        const { store, clock } = setup({ defaultQueueConfig: { leaseDurationMs: 1_000 } });
        await store.enqueue('q', bytes('a'));
        const [c] = await store.claim('q');
        clock.advance(5_000);
        expect((await store.settle(c!, { action: { type: 'ack' } })).status).toBe('done');
      });
    });

    describe('leases and the reaper', () => {
      it('renewLease extends the owner lease and reports the cancel flag', async () => {
        const { store, clock } = setup({ defaultQueueConfig: { leaseDurationMs: 1_000 } });
        await store.enqueue('q', bytes('a'));
        const [c] = await store.claim('q');
        clock.advance(900);
        expect(await store.renewLease(c!, 1_000)).toEqual({ leaseExpiresAt: T0 + 1_900, cancelRequested: false });
        clock.advance(500);
        expect((await store.reap()).requeued).toEqual([]);
        await store.cancel(c!.jobId);
        expect((await store.renewLease(c!, 1_000)).cancelRequested).toBe(true);
      });

      it('a lease longer than 2^31-1 ms is not reaped early', async () => {
        const clock = new ManualClock(T0);
        const store = open({ clock, reaperIntervalMs: 3_600_000, promoteIntervalMs: 3_600_000 });
        await store.enqueue('q', bytes('a'));
        const lease = 2 ** 31 + 1_000;
        const [c] = await store.claim('q', { leaseMs: lease });
        clock.advance(2 ** 31);
        await settleMaintenance();
        expect((await store.getJob(c!.jobId))?.status).toBe('claimed');
        clock.advance(3_600_000);
        // Background maintenance of a networked store finishes after advance() returns: wait for it.
        await vi.waitFor(async () => expect((await store.getJob(c!.jobId))?.status).toBe('pending'));
        await store.close();
      });

      it('reaps expired claims: back to pending, or dead with "lease expired" on the last attempt', async () => {
        const { store, clock } = setup({ defaultQueueConfig: { leaseDurationMs: 1_000, maxAttempts: 2 } });
        await store.enqueue('q', bytes('a'), { id: 'a' });
        await store.enqueue('q', bytes('b'), { id: 'b', maxAttempts: 1 });
        await store.claim('q', { limit: 2 });
        clock.advance(1_000);
        const report = await store.reap();
        expect(report.requeued).toEqual(['a']);
        expect(report.deadLettered.map((j) => [j.id, j.lastError, j.status])).toEqual([['b', 'lease expired', 'dead']]);
        expect(await store.getJob('a')).toMatchObject({ status: 'pending', attempts: 1 });
        expect((await store.getJob('a'))!.leaseExpiresAt).toBeUndefined();
      });

      it('dead jobs are swept after deadRetentionMs, or kept forever with null', async () => {
        const { store, clock } = setup({ queueConfigs: { q: { deadRetentionMs: 1_000 }, forever: { deadRetentionMs: null } } });
        for (const queue of ['q', 'forever']) {
          await store.enqueue(queue, bytes('a'));
          const [c] = await store.claim(queue);
          await store.settle(c!, { action: { type: 'deadLetter', reason: 'x' } });
        }
        clock.advance(10_000_000);
        expect((await store.reap()).deadSwept).toBe(1);
        expect((await store.stats('q')).dead).toBe(0);
        expect((await store.stats('forever')).dead).toBe(1);
      });

      it('background maintenance runs on the clock and stops on close', async () => {
        const clock = new ManualClock(T0);
        const store = open({ clock, defaultQueueConfig: { leaseDurationMs: 1_000 } });
        await store.enqueue('q', bytes('a'));
        await store.enqueue('q', bytes('later'), { runAt: T0 + 2_500 });
        await store.claim('q');
        clock.advance(5_000);
        await vi.waitFor(async () => expect(await store.stats('q')).toMatchObject({ pending: 2, claimed: 0, scheduled: 0 }));
        await store.close();
        expect(clock.pendingTimers()).toBe(0);
        await expect(store.stats('q')).rejects.toMatchObject({ code: 'STORE_CLOSED' });
      });
    });

    describe('cancel', () => {
      it('removes pending and scheduled jobs with their dedup key, committing effects with the removal', async () => {
        const { store } = setup();
        await store.enqueue('q', bytes('a'), { id: 'p', dedupKey: 'k1' }, [{ key: 'rec', value: bytes('r') }]);
        await store.enqueue('q', bytes('b'), { id: 's', runAt: T0 + 1_000, dedupKey: 'k2' });
        const removed = await store.cancel('p', { kvDeletes: ['rec'] });
        expect(removed).toMatchObject({ outcome: 'removed', job: { id: 'p', status: 'pending' } });
        expect(await store.kvGet('rec')).toBeUndefined();
        expect((await store.cancel('s')).outcome).toBe('removed');
        expect(await store.stats('q')).toMatchObject({ pending: 0, scheduled: 0 });
        expect((await store.enqueue('q', bytes('c'), { dedupKey: 'k1' })).kind).toBe('new');
      });

      it('flags claimed jobs (requested, again requested) and notifies the claiming process', async () => {
        const { store } = setup();
        const seen: StoreNotification[] = [];
        store.subscribe('q', (n) => seen.push(n));
        await store.enqueue('q', bytes('a'), { id: 'c' });
        await store.claim('q');
        expect(await store.cancel('c', { kvWrites: [{ key: 'x', value: bytes('1') }] })).toMatchObject({
          outcome: 'requested',
          firstRequest: true,
          job: { cancelRequested: true },
        });
        expect(await store.cancel('c')).toMatchObject({ outcome: 'requested', firstRequest: false });
        expect(await store.kvGet('x'), 'effects commit only with a removal').toBeUndefined();
        await Promise.resolve();
        expect(seen).toContainEqual({ type: 'cancelRequested', queue: 'q', jobId: 'c' });
        expect((await store.getJob('c'))?.status).toBe('claimed');
      });

      it('done, dead and unknown jobs are notFound', async () => {
        const { store } = setup({ queueConfigs: { q: { keepDoneJobsMs: 1_000 } } });
        await store.enqueue('q', bytes('a'), { id: 'd' });
        await store.enqueue('q', bytes('b'), { id: 'x' });
        const [c1, c2] = await store.claim('q', { limit: 2 });
        await store.settle(c1!, { action: { type: 'ack' } });
        await store.settle(c2!, { action: { type: 'deadLetter', reason: 'r' } });
        for (const id of ['d', 'x', 'nope']) expect(await store.cancel(id)).toEqual({ outcome: 'notFound' });
      });
    });

    describe('requeueDead, pages, kv, waits', () => {
      it('requeueDead resets attempts, error, failedAt and the cancel flag', async () => {
        const { store } = setup();
        await store.enqueue('q', bytes('a'), { id: 'j' });
        const [c] = await store.claim('q');
        await store.cancel('j');
        await store.settle(c!, { action: { type: 'deadLetter', reason: 'r' } });
        await store.requeueDead('j');
        const job = await store.getJob('j');
        expect(job).toMatchObject({ status: 'pending', attempts: 0, cancelRequested: false });
        expect(job!.lastError).toBeUndefined();
        expect(job!.failedAt).toBeUndefined();
        expect(await store.stats('q')).toMatchObject({ pending: 1, dead: 0 });
        await expect(store.requeueDead('j')).rejects.toMatchObject({ code: 'INVALID_STATE' });
        await expect(store.requeueDead('missing')).rejects.toMatchObject({ code: 'JOB_NOT_FOUND' });
      });

      it('deadJobs pages in id order with an exclusive cursor', async () => {
        const { store } = setup();
        for (const id of ['05', '01', '03', '02', '04']) {
          await store.enqueue('q', bytes(id), { id });
        }
        for (const c of await store.claim('q', { limit: 5 })) await store.settle(c, { action: { type: 'deadLetter', reason: 'r' } });
        expect((await store.deadJobs('q', { limit: 2 })).map((j) => j.id)).toEqual(['01', '02']);
        expect((await store.deadJobs('q', { after: '02', limit: 2 })).map((j) => j.id)).toEqual(['03', '04']);
        expect((await store.deadJobs('q', { after: '04', limit: 2 })).map((j) => j.id)).toEqual(['05']);
        expect(await store.deadJobs('q', { after: '05' })).toEqual([]);
      });

      it('kv values up to 256 KiB; larger ones throw KV_VALUE_TOO_LARGE and write nothing', async () => {
        const { store } = setup();
        await store.enqueue('q', bytes('a'), {}, [{ key: 'max', value: new Uint8Array(KV_VALUE_MAX_BYTES) }]);
        expect((await store.kvGet('max'))?.byteLength).toBe(KV_VALUE_MAX_BYTES);
        const before = await snapshot(store);
        await expect(store.enqueue('q', bytes('b'), {}, [{ key: 'big', value: new Uint8Array(KV_VALUE_MAX_BYTES + 1) }])).rejects.toMatchObject({
          code: 'KV_VALUE_TOO_LARGE',
        });
        const [c] = await store.claim('q');
        await expect(
          store.settle(c!, { action: { type: 'ack' }, effects: { kvWrites: [{ key: 'big', value: new Uint8Array(KV_VALUE_MAX_BYTES + 1) }] } }),
        ).rejects.toMatchObject({ code: 'KV_VALUE_TOO_LARGE' });
        expect((await store.getJob(c!.jobId))?.status).toBe('claimed');
        expect(await store.kvGet('big')).toBeUndefined();
        expect(before).toMatchObject({ stats: { pending: 1 } });
      });

      it('kvDelete with ifValue deletes only on a byte-equal value', async () => {
        const { store } = setup();
        await store.enqueue('q', bytes('a'), {}, [{ key: 'k', value: bytes('v1') }]);
        expect(await store.kvDelete('k', { ifValue: bytes('v2') })).toBe(false);
        expect(await store.kvDelete('k', { ifValue: bytes('v1') })).toBe(true);
        expect(await store.kvDelete('k')).toBe(false);
      });

      it('kv keys never collide with job data, and returned records are copies', async () => {
        const { store } = setup();
        const { id } = (await store.enqueue('q', bytes('a'), { id: 'same' }, [{ key: 'same', value: bytes('kv') }])) as { id: string };
        const job = await store.getJob(id);
        job!.payload[0] = 0;
        job!.headers.injected = 'x';
        expect(await store.getJob(id)).toMatchObject({ payload: bytes('a'), headers: {} });
        expect(await store.kvGet('same')).toEqual(bytes('kv'));
      });

      it('waitForCompletion: completed on ack or dead, timedOut on the clock, notFound for unknown ids', async () => {
        const { store, clock } = setup();
        await store.enqueue('q', bytes('a'), { id: 'a' });
        await store.enqueue('q', bytes('b'), { id: 'b' });
        const waitA = store.waitForCompletion('a', 10_000);
        const waitB = store.waitForCompletion('b', 10_000);
        const [ca] = await store.claim('q');
        await store.settle(ca!, { action: { type: 'ack' } });
        expect(await waitA).toEqual({ kind: 'completed' });
        clock.advance(10_000);
        expect(await waitB).toEqual({ kind: 'timedOut' });
        expect(await store.waitForCompletion('zzz', 1)).toEqual({ kind: 'notFound' });
      });

      it('listQueues names every queue that held a job, sorted', async () => {
        const { store } = setup();
        await store.enqueue('b', bytes('x'));
        await store.enqueue('a', bytes('x'));
        expect(await store.listQueues()).toEqual(['a', 'b']);
      });

      it('notifies waiting workers when jobs become claimable', async () => {
        const { store, clock } = setup({ backgroundMaintenance: true });
        const seen: string[] = [];
        store.subscribe('q', (n) => seen.push(n.type));
        await store.enqueue('q', bytes('a'), { runAt: T0 + 100 });
        await Promise.resolve();
        expect(seen).toEqual([]);
        clock.advance(100);
        await vi.waitFor(() => expect(seen).toEqual(['jobsAvailable']));
        await store.close();
      });
    });

    describe('bad input: a typed error and nothing changes', () => {
      const cases: Array<[string, (s: QueueStore) => Promise<unknown>, string]> = [
        ['empty queue name', (s) => s.enqueue('', bytes('a')), 'INVALID_ARGUMENT'],
        ['string payload', (s) => s.enqueue('q', 'a' as never), 'INVALID_ARGUMENT'],
        ['payload on a detached buffer', (s) => s.enqueue('q', detachedBytes()), 'INVALID_ARGUMENT'],
        ['batch payload on a detached buffer', (s) => s.enqueueBatch('q', [{ payload: bytes('ok') }, { payload: detachedBytes() }]), 'INVALID_ARGUMENT'],
        ['kv value on a detached buffer', (s) => s.enqueue('q', bytes('a'), {}, [{ key: 'k', value: detachedBytes() }]), 'INVALID_ARGUMENT'],
        ['effect payload on a detached buffer', (s) => s.cancel('existing', { enqueue: [{ queue: 'q', payload: detachedBytes() }] }), 'INVALID_ARGUMENT'],
        ['kvDelete ifValue on a detached buffer', (s) => s.kvDelete('k0', { ifValue: detachedBytes() }), 'INVALID_ARGUMENT'],
        ['negative priority', (s) => s.enqueue('q', bytes('a'), { priority: -1 }), 'INVALID_ARGUMENT'],
        ['NaN priority', (s) => s.enqueue('q', bytes('a'), { priority: Number.NaN }), 'INVALID_ARGUMENT'],
        ['infinite runAt', (s) => s.enqueue('q', bytes('a'), { runAt: Number.POSITIVE_INFINITY }), 'INVALID_ARGUMENT'],
        ['zero maxAttempts', (s) => s.enqueue('q', bytes('a'), { maxAttempts: 0 }), 'INVALID_ARGUMENT'],
        ['non-string header', (s) => s.enqueue('q', bytes('a'), { headers: { a: 1 as never } }), 'INVALID_ARGUMENT'],
        ['id in use', (s) => s.enqueue('q', bytes('a'), { id: 'existing' }), 'INVALID_ARGUMENT'],
        ['oversized kv value', (s) => s.enqueue('q', bytes('a'), {}, [{ key: 'k', value: new Uint8Array(KV_VALUE_MAX_BYTES + 1) }]), 'KV_VALUE_TOO_LARGE'],
        ['claim limit 0', (s) => s.claim('q', { limit: 0 }), 'INVALID_ARGUMENT'],
        ['negative lease', (s) => s.claim('q', { leaseMs: -5 }), 'INVALID_ARGUMENT'],
        ['settle unknown job', (s) => s.settle({ jobId: 'nope', token: 't' }, { action: { type: 'ack' } }), 'LEASE_LOST'],
        ['settle pending job', (s) => s.settle({ jobId: 'existing', token: 't' }, { action: { type: 'ack' } }), 'LEASE_LOST'],
        ['unknown action', (s) => s.settle({ jobId: 'existing', token: 't' }, { action: { type: 'explode' } as never }), 'INVALID_ARGUMENT'],
        ['requeue unknown job', (s) => s.requeueDead('nope'), 'JOB_NOT_FOUND'],
        ['requeue pending job', (s) => s.requeueDead('existing'), 'INVALID_STATE'],
        ['renew with NaN', (s) => s.renewLease({ jobId: 'existing', token: 't' }, Number.NaN), 'INVALID_ARGUMENT'],
      ];
      for (const [name, call, code] of cases) {
        it(name, async () => {
          const { store } = setup();
          await store.enqueue('q', bytes('a'), { id: 'existing' }, [{ key: 'k0', value: bytes('v') }]);
          const before = { ...((await snapshot(store)) as object), job: await store.getJob('existing'), kv: await store.kvGet('k0') };
          await expect(call(store)).rejects.toMatchObject({ code });
          expect({ ...((await snapshot(store)) as object), job: await store.getJob('existing'), kv: await store.kvGet('k0') }).toEqual(before);
        });
      }

      it('unknown queue config settings and bad values are rejected at construction', () => {
        expect(() => open({ defaultQueueConfig: { maxAttemps: 3 } as never })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
        expect(() => open({ queueConfigs: { q: { leaseDurationMs: -1 } } })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
      });
    });
  });
}
