/**
 * Example-based checks: each operation run against a job in every lifecycle
 * state, built by small "trait" helpers (as abstract-level does with its
 * open/closed traits), plus the bad-input checks: typed error, nothing changed.
 */
import type { ManualClock } from '../core/clock.js';
import { KV_VALUE_MAX_BYTES } from '../core/queue-store.js';
import type {
  ClaimRef,
  CompletionResult,
  EnqueueResult,
  JobRecord,
  JobText,
  QueueStore,
  ReaperDeadLetterBranch,
  ReaperTemplate,
  TemplateEnqueue,
} from '../core/queue-store.js';
import { assert, assertCode, assertEqual, withStore } from './checks.js';
import type { ConformanceCheck, ConformanceGroup } from './checks.js';
import { canonical, outcome } from './compare.js';
import type { StoreContext } from './options.js';

/** The queue configuration of the example checks. */
export const EXAMPLE_CONTEXT: Partial<Omit<StoreContext, 'clock'>> = {
  backgroundMaintenance: false,
  defaultQueueConfig: { leaseDurationMs: 1000, retryBackoffBaseMs: 100, retryBackoffMaxMs: 1000 },
  queueConfigs: { kept: { keepDoneJobsMs: 60_000 } },
};

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);

/** A job brought into one lifecycle state. `claim` is its latest delivery (possibly stale). */
export interface JobInState {
  id: string;
  queue: string;
  claim?: ClaimRef;
}

/** One lifecycle state and how to reach it from an empty store. */
export interface JobTrait {
  state: 'pending' | 'scheduled' | 'claimed' | 'lease-expired' | 'requeued' | 'dead' | 'done' | 'acked' | 'cancelled';
  make: (store: QueueStore, clock: ManualClock) => Promise<JobInState>;
}

async function newJob(store: QueueStore, queue: string, extra: { runAt?: number } = {}): Promise<string> {
  const result = await store.enqueue(queue, bytes('job'), { dedupKey: 'dk', ...extra });
  assert(`enqueue into an empty store returns new, got ${canonical(result)}`, result.kind === 'new');
  return result.id;
}

async function claimOne(store: QueueStore, queue: string, id: string): Promise<ClaimRef> {
  const claims = await store.claim(queue);
  assert(`claim(${queue}) returns the only pending job ${id}, got ${canonical(claims.map((c) => c.jobId))}`, claims.length === 1 && claims[0]?.jobId === id);
  const claim = claims[0] as ClaimRef;
  return { jobId: claim.jobId, token: claim.token };
}

/** Every lifecycle state a job record can be in, plus the two ways it disappears. */
export const JOB_TRAITS: JobTrait[] = [
  { state: 'pending', make: async (store) => ({ id: await newJob(store, 'q'), queue: 'q' }) },
  { state: 'scheduled', make: async (store, clock) => ({ id: await newJob(store, 'q', { runAt: clock.now() + 10_000 }), queue: 'q' }) },
  {
    state: 'claimed',
    make: async (store) => {
      const id = await newJob(store, 'q');
      return { id, queue: 'q', claim: await claimOne(store, 'q', id) };
    },
  },
  {
    state: 'lease-expired',
    make: async (store, clock) => {
      const id = await newJob(store, 'q');
      const claim = await claimOne(store, 'q', id);
      clock.advance(2000);
      return { id, queue: 'q', claim };
    },
  },
  {
    state: 'requeued',
    make: async (store, clock) => {
      const id = await newJob(store, 'q');
      const claim = await claimOne(store, 'q', id);
      clock.advance(2000);
      await store.reap();
      return { id, queue: 'q', claim };
    },
  },
  {
    state: 'dead',
    make: async (store) => {
      const id = await newJob(store, 'q');
      const claim = await claimOne(store, 'q', id);
      await store.settle(claim, { action: { type: 'deadLetter', reason: 'bad' } });
      return { id, queue: 'q', claim };
    },
  },
  {
    state: 'done',
    make: async (store) => {
      const id = await newJob(store, 'kept');
      const claim = await claimOne(store, 'kept', id);
      await store.settle(claim, { action: { type: 'ack' } });
      return { id, queue: 'kept', claim };
    },
  },
  {
    state: 'acked',
    make: async (store) => {
      const id = await newJob(store, 'q');
      const claim = await claimOne(store, 'q', id);
      await store.settle(claim, { action: { type: 'ack' } });
      return { id, queue: 'q', claim };
    },
  },
  {
    state: 'cancelled',
    make: async (store) => {
      const id = await newJob(store, 'q');
      await store.cancel(id);
      return { id, queue: 'q' };
    },
  },
];

type State = JobTrait['state'];

/** Everything observable about the example stores, to show an operation changed nothing. */
async function snapshot(store: QueueStore, ids: string[]): Promise<string> {
  const jobs = await Promise.all(ids.map((id) => store.getJob(id)));
  const queues = await store.listQueues();
  const stats = await Promise.all(['q', 'kept', 'other'].map((q) => store.stats(q)));
  const dead = await store.deadJobs('q');
  const kv = await Promise.all(['k', 'k2'].map((k) => store.kvGet(k)));
  return canonical({ jobs, queues, stats, dead, kv });
}

async function assertUnchanged(what: string, store: QueueStore, ids: string[], before: string): Promise<void> {
  assertEqual(`${what} must change nothing`, await snapshot(store, ids), before);
}

/** Counters must equal the number of records in each status. */
async function assertCountersMatch(what: string, store: QueueStore, ids: string[], queue: string): Promise<void> {
  const stats = await store.stats(queue);
  const records = (await Promise.all(ids.map((id) => store.getJob(id)))).filter((r): r is JobRecord => r?.queue === queue);
  const count = (status: JobRecord['status']): number => records.filter((r) => r.status === status).length;
  assertEqual(
    `${what}: counters of ${queue} equal the records in each status`,
    { pending: stats.pending, claimed: stats.claimed, scheduled: stats.scheduled, dead: stats.dead },
    {
      pending: count('pending'),
      claimed: count('claimed'),
      scheduled: count('scheduled'),
      dead: count('dead'),
    },
  );
}

/** Declares one check that runs `body` once per trait, on a fresh store each time. */
function acrossStates(
  name: string,
  // eslint-disable-next-line @typescript-eslint/no-invalid-void-type -- a check body may return nothing
  body: (store: QueueStore, clock: ManualClock, job: JobInState, state: State) => Promise<string[] | void>,
): ConformanceCheck {
  return {
    name: `${name} (in every job state)`,
    run: async (options) => {
      for (const trait of JOB_TRAITS) {
        await withStore(
          options,
          async (store, clock) => {
            const job = await trait.make(store, clock);
            try {
              const extra = (await body(store, clock, job, trait.state)) ?? [];
              await assertCountersMatch(`${name} on a ${trait.state} job`, store, [job.id, ...extra], job.queue);
            } catch (error) {
              if (error instanceof Error) error.message = `[job ${trait.state}] ${error.message}`;
              throw error;
            }
          },
          EXAMPLE_CONTEXT,
        );
      }
    },
  };
}

const HOLDS_RECORD: State[] = ['pending', 'scheduled', 'claimed', 'lease-expired', 'requeued', 'dead', 'done'];
const OWNED: State[] = ['claimed', 'lease-expired'];

const traitChecks: ConformanceCheck[] = [
  acrossStates('getJob reports the status', async (store, _clock, job, state) => {
    const expected: Record<State, JobRecord['status'] | undefined> = {
      pending: 'pending',
      scheduled: 'scheduled',
      claimed: 'claimed',
      'lease-expired': 'claimed',
      requeued: 'pending',
      dead: 'dead',
      done: 'done',
      acked: undefined,
      cancelled: undefined,
    };
    assertEqual('getJob(id)?.status', (await store.getJob(job.id))?.status, expected[state]);
  }),
  acrossStates('claim takes only a pending job', async (store, _clock, job, state) => {
    const claims = await store.claim(job.queue, { limit: 5 });
    assertEqual(
      'claimed ids',
      claims.map((c) => c.jobId),
      state === 'pending' || state === 'requeued' ? [job.id] : [],
    );
    if (state === 'requeued') assertEqual('attempts after the second claim', claims[0]?.job.attempts, 2);
  }),
  acrossStates('settle needs the current claim token', async (store, _clock, job, state) => {
    const claim = job.claim ?? { jobId: job.id, token: 'never-issued' };
    if (OWNED.includes(state)) {
      const result = await store.settle(claim, { action: { type: 'ack' } });
      assertEqual('settle result', result, { branch: 'primary', status: 'done', enqueued: [] });
      assertEqual('record after ack (not retained)', await store.getJob(job.id), undefined);
      assertEqual('done counter', (await store.stats(job.queue)).done, 1);
    } else {
      const before = await snapshot(store, [job.id]);
      await assertCode(
        'settle with a stale token',
        () => store.settle(claim, { action: { type: 'ack' }, effects: { kvWrites: [{ key: 'k', value: bytes('v') }] } }),
        'LEASE_LOST',
      );
      await assertUnchanged('a stale settle', store, [job.id], before);
    }
  }),
  acrossStates('renewLease needs the current claim token', async (store, clock, job, state) => {
    const claim = job.claim ?? { jobId: job.id, token: 'never-issued' };
    if (OWNED.includes(state)) {
      assertEqual('renew result', await store.renewLease(claim, 5000), { leaseExpiresAt: clock.now() + 5000, cancelRequested: false });
      assertEqual('leaseExpiresAt after renew', (await store.getJob(job.id))?.leaseExpiresAt, clock.now() + 5000);
    } else {
      const before = await snapshot(store, [job.id]);
      await assertCode('renewLease with a stale token', () => store.renewLease(claim, 5000), 'LEASE_LOST');
      await assertUnchanged('a stale renewLease', store, [job.id], before);
    }
  }),
  acrossStates('cancel removes, requests or reports notFound', async (store, _clock, job, state) => {
    const result = await store.cancel(job.id, { kvWrites: [{ key: 'k', value: bytes('cancel effect') }] });
    if (state === 'pending' || state === 'scheduled' || state === 'requeued') {
      assertEqual('outcome', result.outcome, 'removed');
      assertEqual('record after removal', await store.getJob(job.id), undefined);
      assertEqual('removal effects committed', await store.kvGet('k'), bytes('cancel effect'));
      if (state !== 'requeued') {
        const again = await store.enqueue(job.queue, bytes('again'), { dedupKey: 'dk' });
        assertEqual('the dedup key is free after removal', again.kind, 'new');
        return again.kind === 'new' ? [again.id] : [];
      }
    } else if (OWNED.includes(state)) {
      assertEqual('first cancel', result.outcome === 'requested' && result.firstRequest, true);
      assertEqual('no effects on a request', await store.kvGet('k'), undefined);
      const second = await store.cancel(job.id);
      assertEqual('second cancel', second.outcome === 'requested' && !second.firstRequest, true);
      assertEqual('cancel flag persisted', (await store.getJob(job.id))?.cancelRequested, true);
      assertEqual('renewLease reports it', (await store.renewLease(job.claim as ClaimRef, 1000)).cancelRequested, true);
    } else {
      assertEqual('outcome', result, { outcome: 'notFound' });
      assertEqual('no effects on notFound', await store.kvGet('k'), undefined);
    }
  }),
  acrossStates('requeueDead accepts only dead jobs', async (store, _clock, job, state) => {
    if (state === 'dead') {
      await store.requeueDead(job.id);
      const record = await store.getJob(job.id);
      assertEqual(
        'requeued record',
        {
          status: record?.status,
          attempts: record?.attempts,
          lastError: record?.lastError,
          failedAt: record?.failedAt,
          cancelRequested: record?.cancelRequested,
        },
        {
          status: 'pending',
          attempts: 0,
          lastError: undefined,
          failedAt: undefined,
          cancelRequested: false,
        },
      );
      assertEqual('stats after requeueDead', await store.stats(job.queue), { pending: 1, claimed: 0, scheduled: 0, dead: 0, done: 0 });
      assertEqual('dead page after requeueDead', await store.deadJobs(job.queue), []);
    } else {
      const before = await snapshot(store, [job.id]);
      await assertCode('requeueDead', () => store.requeueDead(job.id), HOLDS_RECORD.includes(state) ? 'INVALID_STATE' : 'JOB_NOT_FOUND');
      await assertUnchanged('a refused requeueDead', store, [job.id], before);
    }
  }),
  acrossStates('the dedup key is held only while pending or scheduled', async (store, _clock, job, state) => {
    const result: EnqueueResult = await store.enqueue(job.queue, bytes('dup'), { dedupKey: 'dk' }, [{ key: 'k', value: bytes('dup write') }]);
    if (state === 'pending' || state === 'scheduled') {
      assertEqual('enqueue with a held key', result, { kind: 'alreadyEnqueued', id: job.id });
      assertEqual('no kv write on a dedup hit', await store.kvGet('k'), undefined);
    } else {
      assertEqual('enqueue with a released key', result.kind, 'new');
      assertEqual('kv write with the new job', await store.kvGet('k'), bytes('dup write'));
      return result.kind === 'new' ? [result.id] : [];
    }
    return [];
  }),
  acrossStates('a job id stays in use while its record exists', async (store, _clock, job, state) => {
    if (HOLDS_RECORD.includes(state)) {
      const before = await snapshot(store, [job.id]);
      await assertCode('enqueue with an id in use', () => store.enqueue(job.queue, bytes('x'), { id: job.id }), 'INVALID_ARGUMENT');
      await assertUnchanged('a refused enqueue', store, [job.id], before);
    } else {
      assertEqual('enqueue reusing a deleted id', await store.enqueue(job.queue, bytes('x'), { id: job.id }), { kind: 'new', id: job.id });
    }
  }),
  acrossStates('waitForCompletion', async (store, clock, job, state) => {
    const pending = store.waitForCompletion(job.id, 100);
    clock.advance(100);
    const result = await pending;
    if (state === 'dead' || state === 'done') {
      assertEqual('completion', result.kind === 'completed' && result.job?.status, state);
    } else if (state === 'acked' || state === 'cancelled') {
      assertEqual('completion', result, { kind: 'notFound' });
    } else {
      assertEqual('completion', result, { kind: 'timedOut' });
    }
  }),
];

/**
 * Awaits `waits`, moving time in small steps (up to `limitMs`) only while
 * they are pending: a store that answers through asynchronous notifications
 * or clock-driven polls gets to answer before a timeout falls due, and one
 * that never answers times out instead of stalling the check.
 */
async function awaitMovingTime<T>(clock: ManualClock, waits: Array<Promise<T>>, limitMs: number): Promise<T[]> {
  let done = false;
  const all = Promise.all(waits);
  void all.then(
    () => (done = true),
    () => (done = true),
  );
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- changed by another task while this one awaits
  for (let moved = 0; !done && moved <= limitMs; moved += 50) {
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- changed by another task while this one awaits
    for (let turn = 0; turn < 5 && !done; turn++) await new Promise((resolve) => setImmediate(resolve));
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- changed by another task while this one awaits
    if (!done) clock.advance(50);
  }
  return all;
}

async function enqueueAll(store: QueueStore, specs: Array<{ id: string; priority?: number }>): Promise<void> {
  for (const spec of specs) {
    await store.enqueue('q', bytes(spec.id), spec.priority === undefined ? { id: spec.id } : { id: spec.id, priority: spec.priority });
  }
}

const exampleChecks: ConformanceCheck[] = [
  {
    name: 'claims follow priority, then id (not insertion order)',
    run: (options) =>
      withStore(
        options,
        async (store) => {
          await enqueueAll(store, [{ id: 'j-c' }, { id: 'j-a', priority: 5000 }, { id: 'j-b' }, { id: 'j-d', priority: 10 }, { id: 'j-e', priority: 10 }]);
          const order = (await store.claim('q', { limit: 10 })).map((c) => c.jobId);
          assertEqual('claim order', order, ['j-d', 'j-e', 'j-b', 'j-c', 'j-a']);
        },
        EXAMPLE_CONTEXT,
      ),
  },
  {
    name: "id order is the order of the ids' UTF-8 bytes (code points), not of UTF-16 units: claims and deadJobs pages",
    run: (options) =>
      withStore(
        options,
        async (store) => {
          // In UTF-8 byte order; UTF-16 code units would put the two astral ids before U+E000 and U+FFFF.
          const ordered = ['a', 'a~', 'a\u00e9', 'a\uE000', 'a\uFFFF', 'a\u{10000}', 'a\u{1F600}'];
          const scrambled = [3, 6, 0, 4, 2, 5, 1].map((i) => ordered[i] as string);
          for (const id of scrambled) await store.enqueue('q', bytes(id), { id, maxAttempts: 1 });
          assertEqual(
            'claim order, one call',
            (await store.claim('q', { limit: 10 })).map((c) => c.jobId),
            ordered,
          );
          for (const id of scrambled) await store.enqueue('r', bytes(id), { id: `r${id}`, maxAttempts: 1 });
          const oneByOne: string[] = [];
          for (let claims = await store.claim('r'); claims.length > 0; claims = await store.claim('r')) {
            oneByOne.push(...claims.map((c) => c.jobId));
            for (const claim of claims) await store.settle(claim, { action: { type: 'ack' } });
          }
          assertEqual(
            'claim order, one at a time',
            oneByOne,
            ordered.map((id) => `r${id}`),
          );
          for (const id of scrambled) await store.enqueue('d', bytes(id), { id: `d${id}`, maxAttempts: 1 });
          for (const claim of await store.claim('d', { limit: 10 })) await store.settle(claim, { action: { type: 'deadLetter', reason: 'x' } });
          const paged: string[] = [];
          let after: string | undefined;
          for (
            let page = await store.deadJobs('d', { limit: 2 });
            page.length > 0;
            page = await store.deadJobs('d', after === undefined ? { limit: 2 } : { after, limit: 2 })
          ) {
            paged.push(...page.map((job) => job.id));
            after = page[page.length - 1]?.id;
          }
          assertEqual(
            'deadJobs pages',
            paged,
            ordered.map((id) => `d${id}`),
          );
          assertEqual(
            'deadJobs after an id between the two orders',
            (await store.deadJobs('d', { after: 'da\uFFFF' })).map((job) => job.id),
            ['da\u{10000}', 'da\u{1F600}'],
          );
        },
        EXAMPLE_CONTEXT,
      ),
  },
  {
    name: 'generated ids sort in generation order (FIFO within a millisecond)',
    run: (options) =>
      withStore(
        options,
        async (store) => {
          const ids: string[] = [];
          for (let i = 0; i < 20; i++) ids.push(((await store.enqueue('q', bytes(String(i)))) as { id: string }).id);
          assertEqual('generated ids are sorted', [...ids].sort(), ids);
          assertEqual(
            'claim order',
            (await store.claim('q', { limit: 20 })).map((c) => c.jobId),
            ids,
          );
        },
        EXAMPLE_CONTEXT,
      ),
  },
  {
    name: 'nack backs off min(base * 2^(n-1), max), up to and past the cap (40 attempts), and dead-letters at maxAttempts',
    run: (options) =>
      withStore(
        options,
        async (store, clock) => {
          // 40 attempts: past the cap at attempt 5, and past 2^31 and 2^32 (an int32 shift overflows there).
          const maxAttempts = 40;
          await store.enqueue('q', bytes('x'), { id: 'j', maxAttempts });
          const delays: number[] = [];
          for (let attempt = 1; attempt <= maxAttempts; attempt++) {
            const [claim] = await store.claim('q');
            assert(`attempt ${attempt} is claimable`, claim !== undefined);
            assertEqual(`attempts at claim ${attempt}`, claim.job.attempts, attempt);
            const result = await store.settle(claim, { action: { type: 'nack', error: `e${attempt}` } });
            const record = await store.getJob('j');
            if (attempt < maxAttempts) {
              assertEqual(`status after nack ${attempt}`, result.status, 'scheduled');
              delays.push((record?.runAt ?? 0) - clock.now());
              clock.advance(record?.runAt === undefined ? 0 : record.runAt - clock.now());
              await store.promote();
            } else {
              assertEqual('status after the last nack', result.status, 'dead');
              assertEqual(
                'dead record',
                { lastError: record?.lastError, failedAt: record?.failedAt, attempts: record?.attempts },
                { lastError: `e${maxAttempts}`, failedAt: clock.now(), attempts: maxAttempts },
              );
            }
          }
          // Literal values, not the formula again: this example is the independent check of core's retryDelayMs.
          const expected = [100, 200, 400, 800, ...Array<number>(maxAttempts - 5).fill(1000)];
          assertEqual('retry delays (base 100, max 1000)', delays, expected);
        },
        EXAMPLE_CONTEXT,
      ),
  },
  {
    name: 'a re-claimed job: the token of the earlier delivery gets LEASE_LOST for settle and renewLease, and changes nothing',
    run: (options) =>
      withStore(
        options,
        async (store, clock) => {
          await store.enqueue('q', bytes('x'), { id: 'j', maxAttempts: 3 });
          const first = (await store.claim('q'))[0];
          assert('first claim', first?.jobId === 'j');
          clock.advance(1000);
          assertEqual('the expired claim is re-queued', (await store.reap()).requeued, ['j']);
          const second = (await store.claim('q'))[0];
          assert('second claim', second?.jobId === 'j');
          assert(`a re-claim hands out a fresh token, got ${canonical(second.token)} twice`, second.token !== first.token);
          const before = await snapshot(store, ['j']);
          const stale = { jobId: 'j', token: first.token };
          await assertCode(
            'settle with the earlier token',
            () => store.settle(stale, { action: { type: 'ack' }, effects: { kvWrites: [{ key: 'k', value: bytes('stale') }] } }),
            'LEASE_LOST',
          );
          await assertCode('nack with the earlier token', () => store.settle(stale, { action: { type: 'nack', error: 'stale' } }), 'LEASE_LOST');
          await assertCode('renewLease with the earlier token', () => store.renewLease(stale, 5000), 'LEASE_LOST');
          await assertUnchanged('calls with the earlier token', store, ['j'], before);
          assertEqual('the current token renews', (await store.renewLease(second, 5000)).leaseExpiresAt, clock.now() + 5000);
          assertEqual('the current token settles', (await store.settle(second, { action: { type: 'ack' } })).status, 'done');
          await assertCode('settle with the earlier token after the ack', () => store.settle(stale, { action: { type: 'ack' } }), 'LEASE_LOST');
        },
        EXAMPLE_CONTEXT,
      ),
  },
  {
    name: 'deadJobs pages with limits 1, 2 and 3: every dead job once, in id order, full pages, exact at page boundaries',
    run: (options) =>
      withStore(
        options,
        async (store) => {
          // Six dead jobs (a multiple of 1, 2 and 3: the last full page is followed by an empty one) among live and other-queue jobs.
          const dead = ['p-1', 'p-2', 'p-3', 'p-4', 'p-5', 'p-6'];
          for (const id of ['p-4', 'p-1', 'p-6', 'p-3', 'p-5', 'p-2']) await store.enqueue('q', bytes(id), { id, maxAttempts: 1 });
          await store.enqueue('other', bytes('o'), { id: 'p-35', maxAttempts: 1 });
          for (const claim of [...(await store.claim('q', { limit: 10 })), ...(await store.claim('other'))])
            await store.settle(claim, { action: { type: 'deadLetter', reason: 'x' } });
          await store.enqueue('q', bytes('live'), { id: 'p-25' });
          for (const limit of [1, 2, 3]) {
            const pages: string[][] = [];
            let after: string | undefined;
            for (let i = 0; i < 20; i++) {
              const page = (await store.deadJobs('q', after === undefined ? { limit } : { after, limit })).map((job) => job.id);
              pages.push(page);
              if (page.length < limit) break;
              after = page[page.length - 1];
            }
            const expected: string[][] = [];
            for (let i = 0; i < dead.length; i += limit) expected.push(dead.slice(i, i + limit));
            expected.push([]);
            assertEqual(`pages of ${limit}`, pages, expected);
          }
          assertEqual(
            "after a live job's id",
            (await store.deadJobs('q', { after: 'p-25', limit: 2 })).map((j) => j.id),
            ['p-3', 'p-4'],
          );
          assertEqual(
            'after an id that does not exist',
            (await store.deadJobs('q', { after: 'p-0', limit: 3 })).map((j) => j.id),
            ['p-1', 'p-2', 'p-3'],
          );
          assertEqual('after the last dead job', await store.deadJobs('q', { after: 'p-6', limit: 1 }), []);
          assertEqual(
            'a limit larger than what is left',
            (await store.deadJobs('q', { after: 'p-4', limit: 3 })).map((j) => j.id),
            ['p-5', 'p-6'],
          );
        },
        EXAMPLE_CONTEXT,
      ),
  },
  {
    name: 'waitForCompletion is held across a nack that retries, resolves on the ack; a retry that ends dead completes it dead',
    run: (options) =>
      withStore(
        options,
        async (store, clock) => {
          await store.enqueue('kept', bytes('x'), { id: 'j', maxAttempts: 3 });
          await store.enqueue('q', bytes('y'), { id: 'd', maxAttempts: 2 });
          let settledJ: unknown;
          let settledD: unknown;
          const waitJ = store.waitForCompletion('j', 60_000).then((r) => (settledJ = r));
          const waitD = store.waitForCompletion('d', 60_000).then((r) => (settledD = r));
          const nack = async (queue: string): Promise<void> => {
            const [claim] = await store.claim(queue);
            assert(`a ${queue} job is claimable`, claim !== undefined);
            assertEqual('a nack that retries', (await store.settle(claim, { action: { type: 'nack', error: 'again' } })).status, 'scheduled');
          };
          await nack('kept');
          await nack('q');
          // Let any wrongly resolved wait deliver its result before looking.
          await store.getJob('j');
          for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
          assertEqual('waits still pending after the nacks that retry', [settledJ, settledD], [undefined, undefined]);
          clock.advance(100);
          await store.promote();
          const [retryJ] = await store.claim('kept');
          const [retryD] = await store.claim('q');
          assert('both retries are claimable', retryJ !== undefined && retryD !== undefined);
          await store.settle(retryJ, { action: { type: 'ack' } });
          await store.settle(retryD, { action: { type: 'nack', error: 'last' } });
          const [resultJ, resultD] = (await awaitMovingTime(clock, [waitJ, waitD], 60_000)) as [CompletionResult, CompletionResult];
          assertEqual(
            'completion after the ack (done kept)',
            resultJ.kind === 'completed' && { status: resultJ.job?.status, attempts: resultJ.job?.attempts },
            { status: 'done', attempts: 2 },
          );
          assertEqual('completion after the last nack', resultD.kind === 'completed' && { status: resultD.job?.status, lastError: resultD.job?.lastError }, {
            status: 'dead',
            lastError: 'last',
          });
        },
        EXAMPLE_CONTEXT,
      ),
  },
  {
    name: 'waitForCompletion of a job cancelled while waited on is notFound: pending, scheduled, and scheduled for a retry',
    run: (options) =>
      withStore(
        options,
        async (store, clock) => {
          await store.enqueue('q', bytes('a'), { id: 'pending' });
          await store.enqueue('q', bytes('b'), { id: 'scheduled', runAt: clock.now() + 10_000 });
          await store.enqueue('q', bytes('c'), { id: 'retry', maxAttempts: 3, priority: 0 });
          const [claim] = await store.claim('q');
          assert('the retry job is claimed first', claim?.jobId === 'retry');
          await store.settle(claim, { action: { type: 'nack', error: 'again' } });
          const waits = ['pending', 'scheduled', 'retry'].map((id) => store.waitForCompletion(id, 60_000));
          for (const id of ['pending', 'scheduled', 'retry']) assertEqual(`cancel of ${id}`, (await store.cancel(id)).outcome, 'removed');
          assertEqual('every wait ends notFound', await awaitMovingTime(clock, waits, 60_000), [
            { kind: 'notFound' },
            { kind: 'notFound' },
            { kind: 'notFound' },
          ]);
        },
        EXAMPLE_CONTEXT,
      ),
  },
  {
    name: 'caller-owned buffers and objects are copied: changing them after enqueue, enqueueBatch or settle changes nothing',
    run: (options) =>
      withStore(
        options,
        async (store) => {
          const payload = bytes('p1');
          const headers: Record<string, string> = { h: '1' };
          const kvValue = bytes('v1');
          const enqueueOptions = { id: 'j', headers, priority: 5 };
          await store.enqueue('q', payload, enqueueOptions, [{ key: 'k', value: kvValue }]);
          const batchPayload = bytes('b1');
          const batchHeaders: Record<string, string> = { b: '1' };
          await store.enqueueBatch('q', [{ payload: batchPayload, options: { id: 'b', headers: batchHeaders, priority: 6 } }]);
          payload[1] = 0x39;
          headers.h = 'changed';
          headers.added = 'x';
          kvValue[1] = 0x39;
          enqueueOptions.priority = 9999;
          batchPayload[1] = 0x39;
          batchHeaders.b = 'changed';
          const seen = (record: JobRecord | undefined): unknown => record && { payload: record.payload, headers: record.headers, priority: record.priority };
          assertEqual('job after its caller changed the enqueued objects', seen(await store.getJob('j')), {
            payload: bytes('p1'),
            headers: { h: '1' },
            priority: 5,
          });
          assertEqual('batch job after its caller changed the enqueued objects', seen(await store.getJob('b')), {
            payload: bytes('b1'),
            headers: { b: '1' },
            priority: 6,
          });
          assertEqual('kv value after its caller changed it', await store.kvGet('k'), bytes('v1'));
          const [claim] = await store.claim('q');
          assertEqual('claimed payload and headers as enqueued', seen(claim?.job), { payload: bytes('p1'), headers: { h: '1' }, priority: 5 });
          const effectPayload = bytes('n1');
          const effectHeaders: Record<string, string> = { e: '1' };
          const effectValue = bytes('w1');
          const settlement = {
            action: { type: 'ack' as const },
            effects: {
              enqueue: [{ queue: 'q', payload: effectPayload, options: { id: 'n', headers: effectHeaders } }],
              kvWrites: [{ key: 'k2', value: effectValue }],
            },
          };
          await store.settle(claim as ClaimRef, settlement);
          effectPayload[1] = 0x39;
          effectHeaders.e = 'changed';
          effectValue[1] = 0x39;
          settlement.effects.enqueue.push({ queue: 'q', payload: bytes('late'), options: { id: 'late', headers: {} } });
          settlement.effects.kvWrites.push({ key: 'k', value: bytes('late') });
          assertEqual('effect job after its caller changed the settlement', seen(await store.getJob('n')), {
            payload: bytes('n1'),
            headers: { e: '1' },
            priority: 1000,
          });
          assertEqual('effect kv value after its caller changed it', await store.kvGet('k2'), bytes('w1'));
          assertEqual('nothing added by changing the settlement afterwards', [await store.getJob('late'), await store.kvGet('k')], [undefined, bytes('v1')]);
          const claims = await store.claim('q', { limit: 5 });
          assertEqual(
            'claimed effect job as settled',
            claims.map((c) => [c.jobId, seen(c.job)]),
            [
              ['b', { payload: bytes('b1'), headers: { b: '1' }, priority: 6 }],
              ['n', { payload: bytes('n1'), headers: { e: '1' }, priority: 1000 }],
            ],
          );
        },
        EXAMPLE_CONTEXT,
      ),
  },
  {
    name: 'records handed out by claim, getJob and deadJobs are copies: changing them changes nothing stored',
    run: (options) =>
      withStore(
        options,
        async (store) => {
          await store.enqueue('q', bytes('abc'), { id: 'j', headers: { h: '1' }, maxAttempts: 1 });
          const vandalize = (record: JobRecord | undefined): void => {
            if (!record) return;
            record.payload[0] = 0;
            record.headers.h = 'changed';
            record.headers.extra = 'x';
            record.attempts = 99;
            record.status = 'done';
          };
          const expectedRecord = async (what: string, status: JobRecord['status'], attempts: number): Promise<void> => {
            const record = await store.getJob('j');
            assertEqual(what, record && { payload: record.payload, headers: record.headers, attempts: record.attempts, status: record.status }, {
              payload: bytes('abc'),
              headers: { h: '1' },
              attempts,
              status,
            });
          };
          vandalize(await store.getJob('j'));
          await expectedRecord('after changing a getJob record', 'pending', 0);
          const [claim] = await store.claim('q');
          assert('claimable', claim !== undefined);
          vandalize(claim.job);
          await expectedRecord('after changing the claimed record', 'claimed', 1);
          await store.settle(claim, { action: { type: 'deadLetter', reason: 'x' } });
          vandalize((await store.deadJobs('q'))[0]);
          await expectedRecord('after changing a deadJobs record', 'dead', 1);
          assertEqual(
            'a dead page after changing one',
            (await store.deadJobs('q')).map((r) => [r.payload, r.headers]),
            [[bytes('abc'), { h: '1' }]],
          );
        },
        EXAMPLE_CONTEXT,
      ),
  },
  {
    name: 'the cancel branch is chosen at commit time, with its own effects only',
    run: (options) =>
      withStore(
        options,
        async (store) => {
          await store.enqueue('q', bytes('x'), { id: 'j' });
          const [claim] = await store.claim('q');
          assert('claimable', claim !== undefined);
          await store.cancel('j');
          const result = await store.settle(claim, {
            action: { type: 'nack', error: 'would retry' },
            effects: { kvWrites: [{ key: 'k', value: bytes('primary') }], enqueue: [{ queue: 'q', payload: bytes('next'), options: { id: 'next' } }] },
            ifCancelRequested: { action: { type: 'ack' }, effects: { kvWrites: [{ key: 'k2', value: bytes('cancel') }] } },
          });
          assertEqual('settle result', result, { branch: 'cancel', status: 'done', enqueued: [] });
          assertEqual('primary effects absent', [await store.kvGet('k'), await store.getJob('next')], [undefined, undefined]);
          assertEqual('cancel effects present', await store.kvGet('k2'), bytes('cancel'));
        },
        EXAMPLE_CONTEXT,
      ),
  },
  {
    name: 'an ifAbsent conflict writes nothing at all',
    run: (options) =>
      withStore(
        options,
        async (store) => {
          await store.enqueue('q', bytes('x'), { id: 'first' }, [{ key: 'k', value: bytes('1'), ifAbsent: true }]);
          const before = await snapshot(store, ['first', 'second']);
          const result = await store.enqueue('q', bytes('y'), { id: 'second' }, [
            { key: 'k2', value: bytes('2') },
            { key: 'k', value: bytes('3'), ifAbsent: true },
          ]);
          assertEqual('result', result, { kind: 'kvConflict', key: 'k' });
          await assertUnchanged('a kv conflict', store, ['first', 'second'], before);
        },
        EXAMPLE_CONTEXT,
      ),
  },
  {
    name: 'reap: expired leases requeue, or go dead on the last attempt; retention sweeps',
    run: (options) =>
      withStore(
        options,
        async (store, clock) => {
          await store.enqueue('q', bytes('a'), { id: 'again', maxAttempts: 2 });
          await store.enqueue('q', bytes('b'), { id: 'last', maxAttempts: 1 });
          await store.claim('q', { limit: 2 });
          clock.advance(999);
          assertEqual('nothing expired yet', await store.reap(), { requeued: [], deadLettered: [], effectsApplied: [], doneSwept: 0, deadSwept: 0 });
          clock.advance(1);
          const report = await store.reap();
          assertEqual('requeued', report.requeued, ['again']);
          assertEqual(
            'dead-lettered',
            report.deadLettered.map((r) => [r.id, r.status, r.lastError, r.failedAt]),
            [['last', 'dead', 'lease expired', clock.now()]],
          );
          assertEqual('requeued record keeps its attempts', (await store.getJob('again'))?.attempts, 1);
        },
        EXAMPLE_CONTEXT,
      ),
  },
  {
    name: 'delayMs counts from the store clock at commit; 0 is immediate; not with runAt',
    run: (options) =>
      withStore(
        options,
        async (store, clock) => {
          await store.enqueue('q', bytes('a'), { id: 'later', delayMs: 250 });
          await store.enqueue('q', bytes('b'), { id: 'now', delayMs: 0 });
          assertEqual('delayed job', [(await store.getJob('later'))?.status, (await store.getJob('later'))?.runAt], ['scheduled', clock.now() + 250]);
          assertEqual('zero delay is pending', (await store.getJob('now'))?.status, 'pending');
          const [claim] = await store.claim('q');
          assert('the immediate job is claimable', claim?.jobId === 'now');
          clock.advance(100);
          await store.settle(claim, {
            action: { type: 'ack' },
            effects: { enqueue: [{ queue: 'q', payload: bytes('c'), options: { id: 'next', delayMs: 50 } }] },
          });
          assertEqual('a delay in settlement effects counts from the settlement', (await store.getJob('next'))?.runAt, clock.now() + 50);
          await assertCode(
            'runAt and delayMs together',
            () => store.enqueue('q', bytes('x'), { id: 'both', runAt: clock.now(), delayMs: 5 }),
            'INVALID_ARGUMENT',
          );
          await assertCode('a negative delay', () => store.enqueue('q', bytes('x'), { id: 'neg', delayMs: -1 }), 'INVALID_ARGUMENT');
          assertEqual('nothing written by the bad calls', [await store.getJob('both'), await store.getJob('neg')], [undefined, undefined]);
        },
        EXAMPLE_CONTEXT,
      ),
  },
  {
    name: 'a settlement precondition that fails acks the job with no effects (stale)',
    run: (options) =>
      withStore(
        options,
        async (store) => {
          await store.enqueue('q', bytes('a'), { id: 'fresh' }, [{ key: 'cursor', value: bytes('fresh') }]);
          await store.enqueue('q', bytes('b'), { id: 'stale', maxAttempts: 1 });
          const claims = await store.claim('q', { limit: 2 });
          const fresh = claims.find((c) => c.jobId === 'fresh') as ClaimRef;
          const stale = claims.find((c) => c.jobId === 'stale') as ClaimRef;
          await store.cancel('stale');
          const staleResult = await store.settle(stale, {
            action: { type: 'nack', error: 'x' },
            effects: { kvWrites: [{ key: 'k', value: bytes('primary') }], enqueue: [{ queue: 'q', payload: bytes('n'), options: { id: 'n1' } }] },
            ifCancelRequested: { action: { type: 'deadLetter', reason: 'c' }, effects: { kvWrites: [{ key: 'k2', value: bytes('cancel') }] } },
            precondition: { key: 'cursor', equals: bytes('stale') },
          });
          assertEqual('stale result: acked, nothing enqueued', staleResult, { branch: 'stale', status: 'done', enqueued: [] });
          assertEqual(
            'no effect of either branch',
            [await store.kvGet('k'), await store.kvGet('k2'), await store.getJob('n1'), await store.getJob('stale')],
            [undefined, undefined, undefined, undefined],
          );
          const freshResult = await store.settle(fresh, {
            action: { type: 'ack' },
            effects: { kvWrites: [{ key: 'cursor', value: bytes('next') }] },
            precondition: { key: 'cursor', equals: bytes('fresh') },
          });
          assertEqual('a holding precondition settles normally', [freshResult.branch, await store.kvGet('cursor')], ['primary', bytes('next')]);
          assertEqual('acks counted', (await store.stats('q')).done, 2);
          await store.enqueue('q', bytes('c'), { id: 'gone' });
          const [gone] = await store.claim('q');
          const missing = await store.settle(gone as ClaimRef, {
            action: { type: 'ack' },
            effects: { kvWrites: [{ key: 'k', value: bytes('x') }] },
            precondition: { key: 'absent', equals: bytes('') },
          });
          assertEqual('a missing record never satisfies a precondition', [missing.branch, await store.kvGet('k')], ['stale', undefined]);
        },
        EXAMPLE_CONTEXT,
      ),
  },
  {
    name: 'a reaper dead-letter commits the effects the job carries: by cancel flag, only if the precondition holds, in id order',
    run: (options) =>
      withStore(
        options,
        async (store, clock) => {
          const carried = (name: string, precondition?: Uint8Array) => ({
            ...(precondition ? { precondition: { key: 'cursor', equals: precondition } } : {}),
            effects: {
              kvWrites: [{ key: `${name}.failed`, value: bytes('1') }],
              kvDeletes: ['cursor'],
              enqueue: [{ queue: 'outcomes', payload: bytes(`${name} failed`) }],
            },
            ifCancelRequested: { kvWrites: [{ key: `${name}.cancelled`, value: bytes('1') }], kvDeletes: ['cursor'] },
          });
          await store.enqueue('q', bytes('a'), { id: 'j-a', maxAttempts: 1, reaperDeadLetter: carried('a', bytes('c1')) }, [
            { key: 'cursor', value: bytes('c1') },
          ]);
          // Same precondition: j-a's effects delete the cursor first, so j-b's do not apply.
          await store.enqueue('q', bytes('b'), { id: 'j-b', maxAttempts: 1, reaperDeadLetter: carried('b', bytes('c1')) });
          await store.enqueue('q', bytes('c'), { id: 'j-c', maxAttempts: 1, reaperDeadLetter: carried('c') });
          await store.enqueue('q', bytes('d'), { id: 'j-d', maxAttempts: 2, reaperDeadLetter: carried('d') });
          await store.claim('q', { limit: 4 });
          await store.cancel('j-c');
          clock.advance(1000);
          const report = await store.reap();
          assertEqual('requeued (not its last attempt: nothing applied)', report.requeued, ['j-d']);
          assertEqual('dead-lettered', report.deadLettered.map((r) => r.id).sort(), ['j-a', 'j-b', 'j-c']);
          assertEqual('effects applied', [...report.effectsApplied].sort(), ['j-a', 'j-c']);
          assertEqual(
            'kv after the reap',
            await Promise.all(['a.failed', 'b.failed', 'c.cancelled', 'c.failed', 'd.failed', 'cursor'].map((k) => store.kvGet(k))),
            [bytes('1'), undefined, bytes('1'), undefined, undefined, undefined],
          );
          const outcomes = await store.claim('outcomes', { limit: 10 });
          assertEqual(
            'the carried enqueue committed once',
            outcomes.map((c) => new TextDecoder().decode(c.job.payload)),
            ['a failed'],
          );
          // A retried job keeps what it carries: reaped on its last attempt, it applies.
          const [again] = await store.claim('q');
          assert('the requeued job is claimable again', again?.jobId === 'j-d');
          clock.advance(1000);
          assertEqual('applied on the last attempt', (await store.reap()).effectsApplied, ['j-d']);
          assertEqual('its effects', await store.kvGet('d.failed'), bytes('1'));
        },
        EXAMPLE_CONTEXT,
      ),
  },
  {
    name: "carried reaper effects are copies: changing the caller's objects after enqueue changes nothing",
    run: (options) =>
      withStore(
        options,
        async (store, clock) => {
          const value = bytes('v1');
          const equals = bytes('c1');
          const headers: Record<string, string> = { h: '1' };
          const effects = { kvWrites: [{ key: 'k', value }], enqueue: [{ queue: 'outcomes', payload: bytes('p'), options: { headers } }] };
          await store.enqueue('q', bytes('a'), { id: 'j', maxAttempts: 1, reaperDeadLetter: { precondition: { key: 'cursor', equals }, effects } }, [
            { key: 'cursor', value: bytes('c1') },
          ]);
          value[1] = 0x39;
          equals[1] = 0x39;
          headers.h = 'changed';
          effects.kvWrites.push({ key: 'k2', value: bytes('added') });
          await store.claim('q');
          clock.advance(1000);
          assertEqual('applied as given at enqueue', (await store.reap()).effectsApplied, ['j']);
          assertEqual('kv as given', [await store.kvGet('k'), await store.kvGet('k2')], [bytes('v1'), undefined]);
          const [outcome] = await store.claim('outcomes');
          assertEqual('headers as given', outcome?.job.headers, { h: '1' });
        },
        EXAMPLE_CONTEXT,
      ),
  },
  {
    name: "a queue's reaper template makes the dead-letter branch of jobs that carry none: from the job's id and headers, by cancel flag, only if the precondition holds; a carried branch wins",
    run: (options) =>
      withStore(
        options,
        async (store, clock) => {
          const cursor: JobText = ['cursor/', { header: 'run' }];
          const notice = (how: string): TemplateEnqueue => ({
            queue: 'outcomes',
            payload: bytes('reaped'),
            copyJobHeaders: true,
            headers: { how },
            dedupKey: ['outcome:', { jobId: true }],
          });
          await store.setReaperTemplate('q', {
            precondition: { key: cursor, equals: ['at ', { jobId: true }] },
            effects: { kvDeletes: [cursor], enqueue: [notice('failed')] },
            ifCancelRequested: { kvDeletes: [cursor], enqueue: [notice('cancelled')] },
          });
          const job = async (id: string, headers: Record<string, string>, cursorValue?: string, queue = 'q', own?: ReaperDeadLetterBranch) => {
            const writes = cursorValue === undefined || headers.run === undefined ? [] : [{ key: `cursor/${headers.run}`, value: bytes(cursorValue) }];
            await store.enqueue(queue, bytes(id), { id, maxAttempts: 1, headers, ...(own ? { reaperDeadLetter: own } : {}) }, writes);
          };
          await job('j-a', { run: 'r1', user: 'x' }, 'at j-a');
          await job('j-b', { run: 'r2' }, 'at j-b');
          await job('j-c', { run: 'r3' }, 'at another job');
          await job('j-d', {}, undefined);
          await job('j-e', { run: 'r5' }, 'at j-e', 'q', { effects: { kvWrites: [{ key: 'e.own', value: bytes('1') }] } });
          await job('j-f', { run: 'r6' }, 'at j-f', 'other');
          await store.claim('q', { limit: 5 });
          await store.claim('other');
          await store.cancel('j-b');
          clock.advance(1000);
          const report = await store.reap();
          assertEqual('dead-lettered', report.deadLettered.map((r) => r.id).sort(), ['j-a', 'j-b', 'j-c', 'j-d', 'j-e', 'j-f']);
          // j-c: precondition fails; j-d: no `run` header, so the template makes nothing; j-f: its queue has no template.
          assertEqual('effects applied', [...report.effectsApplied].sort(), ['j-a', 'j-b', 'j-e']);
          assertEqual(
            'cursors after the reap (r5 kept: j-e carried its own branch)',
            await Promise.all(['cursor/r1', 'cursor/r2', 'cursor/r3', 'cursor/r5', 'cursor/r6', 'e.own'].map((k) => store.kvGet(k))),
            [undefined, undefined, bytes('at another job'), bytes('at j-e'), bytes('at j-f'), bytes('1')],
          );
          const notices = (await store.claim('outcomes', { limit: 10 }))
            .map((c) => c.job)
            .sort((a, b) => (a.headers.run ?? '').localeCompare(b.headers.run ?? ''));
          assertEqual(
            'the notices: the job headers copied, then the literal ones',
            notices.map((n) => [n.headers, new TextDecoder().decode(n.payload)]),
            [
              [{ run: 'r1', user: 'x', how: 'failed' }, 'reaped'],
              [{ run: 'r2', how: 'cancelled' }, 'reaped'],
            ],
          );
          assert(
            `the notice ids are the store's own, got ${canonical(notices.map((n) => n.id))}`,
            notices.every((n) => !n.id.startsWith('j-')),
          );
        },
        EXAMPLE_CONTEXT,
      ),
  },
  {
    name: 'reaper template dedup keys follow the enqueue rules: a pending job holding the made key keeps the notice out',
    run: (options) =>
      withStore(
        options,
        async (store, clock) => {
          await store.setReaperTemplate('q', { effects: { enqueue: [{ queue: 'outcomes', payload: bytes('n'), dedupKey: ['outcome:', { header: 'run' }] }] } });
          await store.enqueue('outcomes', bytes('first'), { id: 'held', dedupKey: 'outcome:r1' });
          await store.enqueue('q', bytes('a'), { id: 'j-a', maxAttempts: 1, headers: { run: 'r1' } });
          await store.enqueue('q', bytes('b'), { id: 'j-b', maxAttempts: 1, headers: { run: 'r2' } });
          await store.claim('q', { limit: 2 });
          clock.advance(1000);
          assertEqual('both applied', [...(await store.reap()).effectsApplied].sort(), ['j-a', 'j-b']);
          const pending = (await store.claim('outcomes', { limit: 10 })).map((c) => new TextDecoder().decode(c.job.payload)).sort();
          assertEqual('one new notice; the held key kept the other out', pending, ['first', 'n']);
        },
        EXAMPLE_CONTEXT,
      ),
  },
  {
    name: 'setReaperTemplate replaces and removes; the template as it stands at the reap applies, copied from the caller; one that makes a bad key makes nothing',
    run: (options) =>
      withStore(
        options,
        async (store, clock) => {
          const claimed = async (id: string, headers: Record<string, string>): Promise<void> => {
            await store.enqueue('q', bytes(id), { id, maxAttempts: 1, headers });
            await store.claim('q');
          };
          const reaped = async (id: string, headers: Record<string, string> = {}): Promise<string[]> => {
            await claimed(id, headers);
            clock.advance(1000);
            return (await store.reap()).effectsApplied;
          };
          for (const key of ['k1', 'k-j1', 'k-j2', 'k3']) await store.enqueue('kv', bytes('x'), {}, [{ key, value: bytes('1') }]);
          await store.setReaperTemplate('q', { effects: { kvDeletes: [['k1']] } });
          await claimed('j1', {});
          const deletes: JobText[] = [['k-', { jobId: true }]];
          const template: ReaperTemplate = { effects: { kvDeletes: deletes } };
          await store.setReaperTemplate('q', template);
          deletes.push(['k1']);
          clock.advance(1000);
          assertEqual('the template set last applies, not the one at enqueue', (await store.reap()).effectsApplied, ['j1']);
          assertEqual('as given, not as changed after', [await store.kvGet('k-j1'), await store.kvGet('k1')], [undefined, bytes('1')]);
          await store.setReaperTemplate('q', undefined);
          assertEqual('removed: nothing applies', await reaped('j2'), []);
          assertEqual('k-j2 kept', await store.kvGet('k-j2'), bytes('1'));
          await store.setReaperTemplate('q', { effects: { kvDeletes: [['k3'], [{ header: 'key' }]] } });
          assertEqual('a made key that is empty: nothing applies', await reaped('j3', { key: '' }), []);
          assertEqual('a made key over 1024 characters: nothing applies', await reaped('j4', { key: 'k'.repeat(1025) }), []);
          assertEqual('k3 kept by both', await store.kvGet('k3'), bytes('1'));
          await store.setReaperTemplate('q', { effects: { enqueue: [{ queue: 'outcomes', payload: bytes('n'), dedupKey: [{ header: 'key' }] }] } });
          assertEqual('a made dedup key that is empty: nothing applies', await reaped('j5', { key: '' }), []);
          assertEqual('no notice', (await store.stats('outcomes')).pending, 0);
        },
        EXAMPLE_CONTEXT,
      ),
  },
  {
    name: 'kv records with ttlMs expire on the store clock: from now + ttlMs on, kvGet, preconditions, ifValue and ifAbsent see no record; a write without it makes one permanent',
    run: (options) =>
      withStore(
        options,
        async (store, clock) => {
          await store.enqueue('q', bytes('a'), { id: 'a' }, [
            { key: 'short', value: bytes('s'), ttlMs: 100 },
            { key: 'kept', value: bytes('k'), ttlMs: 100 },
            { key: 'cas', value: bytes('c'), ttlMs: 100 },
          ]);
          const [claim] = await store.claim('q');
          // Made permanent again by a write without ttlMs (here inside settlement effects).
          await store.settle(claim as ClaimRef, {
            action: { type: 'ack' },
            effects: {
              kvWrites: [
                { key: 'kept', value: bytes('k2') },
                { key: 'later', value: bytes('l'), ttlMs: 500 },
              ],
            },
          });
          clock.advance(99);
          assertEqual('before the expiry', [await store.kvGet('short'), await store.kvGet('later')], [bytes('s'), bytes('l')]);
          clock.advance(1);
          assertEqual(
            'at now + ttlMs: gone; the rewritten one kept; the one written later still there',
            await Promise.all(['short', 'kept', 'cas', 'later'].map((k) => store.kvGet(k))),
            [undefined, bytes('k2'), undefined, bytes('l')],
          );
          assertEqual('compare-and-delete of an expired record deletes nothing', await store.kvDelete('cas', { ifValue: bytes('c') }), false);
          const created = await store.enqueue('q', bytes('b'), { id: 'b' }, [{ key: 'short', value: bytes('new'), ifAbsent: true }]);
          assertEqual('ifAbsent of an expired key writes', created, { kind: 'new', id: 'b' });
          assertEqual('the new value', await store.kvGet('short'), bytes('new'));
          await store.enqueue('q', bytes('c'), { id: 'c' }, [{ key: 'guard', value: bytes('g'), ttlMs: 50 }]);
          const claims = await store.claim('q', { limit: 2 });
          clock.advance(50);
          const settled = await store.settle(claims.find((c) => c.jobId === 'c') as ClaimRef, {
            action: { type: 'ack' },
            precondition: { key: 'guard', equals: bytes('g') },
            effects: { kvWrites: [{ key: 'applied', value: bytes('1') }] },
          });
          assertEqual('a precondition on an expired record does not hold', settled.branch, 'stale');
          assertEqual('no effects', await store.kvGet('applied'), undefined);
          clock.advance(1000);
          await store.reap();
          assertEqual('after a reap, as before it', [await store.kvGet('later'), await store.kvGet('kept')], [undefined, bytes('k2')]);
        },
        EXAMPLE_CONTEXT,
      ),
  },
  {
    name: "a nack's own delayMs replaces the queue's backoff for that retry (0: pending at once); the last attempt still goes dead",
    run: (options) =>
      withStore(
        options,
        async (store, clock) => {
          await store.enqueue('q', bytes('a'), { id: 'j', maxAttempts: 3 });
          let [claim] = await store.claim('q');
          assertEqual('retry after its own delay', await store.settle(claim as ClaimRef, { action: { type: 'nack', error: 'e', delayMs: 5_000 } }), {
            branch: 'primary',
            status: 'scheduled',
            enqueued: [],
          });
          assertEqual('runAt is now + delayMs, not the backoff', (await store.getJob('j'))?.runAt, clock.now() + 5_000);
          clock.advance(5_000);
          await store.promote();
          [claim] = await store.claim('q');
          assertEqual(
            'delayMs 0: pending at once',
            (await store.settle(claim as ClaimRef, { action: { type: 'nack', error: 'e', delayMs: 0 } })).status,
            'pending',
          );
          [claim] = await store.claim('q');
          assertEqual(
            'the last attempt goes dead whatever the delay',
            (await store.settle(claim as ClaimRef, { action: { type: 'nack', error: 'last', delayMs: 1 } })).status,
            'dead',
          );
        },
        EXAMPLE_CONTEXT,
      ),
  },
  {
    name: 'retention: done jobs kept for keepDoneJobsMs, dead jobs for deadRetentionMs',
    run: (options) =>
      withStore(
        options,
        async (store, clock) => {
          await store.enqueue('q', bytes('a'), { id: 'dead' });
          await store.enqueue('q', bytes('b'), { id: 'done' });
          const claims = await store.claim('q', { limit: 2 });
          await store.settle(claims[0] as ClaimRef, { action: { type: 'deadLetter', reason: 'x' } });
          await store.settle(claims[1] as ClaimRef, { action: { type: 'ack' } });
          assertEqual('done record kept', (await store.getJob('done'))?.completedAt, clock.now());
          clock.advance(999);
          assertEqual('not yet swept', await store.reap(), { requeued: [], deadLettered: [], effectsApplied: [], doneSwept: 0, deadSwept: 0 });
          clock.advance(1);
          assertEqual('swept', await store.reap(), { requeued: [], deadLettered: [], effectsApplied: [], doneSwept: 1, deadSwept: 1 });
          assertEqual('records gone', [await store.getJob('dead'), await store.getJob('done')], [undefined, undefined]);
          assertEqual('counters', await store.stats('q'), { pending: 0, claimed: 0, scheduled: 0, dead: 0, done: 1 });
        },
        { backgroundMaintenance: false, defaultQueueConfig: { keepDoneJobsMs: 1000, deadRetentionMs: 1000 } },
      ),
  },
  {
    name: 'records handed out are copies',
    run: (options) =>
      withStore(
        options,
        async (store) => {
          const headers = Object.create(null) as Record<string, string>;
          headers['__proto__'] = 'kept as data';
          await store.enqueue('q', bytes('abc'), { id: 'j', headers });
          const record = (await store.getJob('j')) as JobRecord;
          record.payload[0] = 0;
          record.headers.extra = 'x';
          const again = (await store.getJob('j')) as JobRecord;
          assertEqual('payload unchanged', again.payload, bytes('abc'));
          assertEqual('headers unchanged, __proto__ an own key', Object.keys(again.headers), ['__proto__']);
          assertEqual('__proto__ value', Object.getOwnPropertyDescriptor(again.headers, '__proto__')?.value, 'kept as data');
          const kvValue = bytes('v');
          await store.enqueue('q', bytes('x'), {}, [{ key: 'k', value: kvValue }]);
          kvValue[0] = 0;
          assertEqual('kv value copied on write', await store.kvGet('k'), bytes('v'));
        },
        EXAMPLE_CONTEXT,
      ),
  },
  {
    name: "bytes given as Node Buffers are copied too (a Buffer's slice() is a view, not a copy): changing them once the call resolved changes nothing stored",
    run: (options) =>
      withStore(
        options,
        async (store, clock) => {
          const payload = Buffer.from('payload');
          const value = Buffer.from('value');
          await store.enqueue('q', payload, { id: 'j', maxAttempts: 1 }, [{ key: 'k', value }]);
          const notice = Buffer.from('notice');
          await store.setReaperTemplate('q', { effects: { enqueue: [{ queue: 'outcomes', payload: notice }] } });
          const [claim] = await store.claim('q');
          payload.fill(0x78);
          value.fill(0x78);
          notice.fill(0x78);
          assertEqual('payload as given', claim?.job.payload, bytes('payload'));
          assertEqual('kv value as given', await store.kvGet('k'), bytes('value'));
          const effectPayload = Buffer.from('next');
          const effectValue = Buffer.from('second');
          await store.enqueue('q', bytes('n'), { id: 'n' });
          const [next] = await store.claim('q');
          await store.settle(next as ClaimRef, {
            action: { type: 'ack' },
            effects: { enqueue: [{ queue: 'q2', payload: effectPayload, options: { id: 'e' } }], kvWrites: [{ key: 'k2', value: effectValue }] },
          });
          effectPayload.fill(0x78);
          effectValue.fill(0x78);
          assertEqual('an effect payload as given', (await store.getJob('e'))?.payload, bytes('next'));
          assertEqual('an effect kv value as given', await store.kvGet('k2'), bytes('second'));
          clock.advance(60_000);
          await store.reap();
          const [reaped] = await store.claim('outcomes');
          assertEqual('a template payload as given', reaped?.job.payload, bytes('notice'));
        },
        EXAMPLE_CONTEXT,
      ),
  },
  {
    name: 'bytes given as a view of a larger buffer: exactly the viewed bytes are stored',
    run: (options) =>
      withStore(
        options,
        async (store) => {
          const view = (text: string): Uint8Array => bytes(`<<${text}>>`).subarray(2, 2 + text.length);
          await store.enqueue('q', view('payload'), { id: 'j' }, [{ key: 'k', value: view('value') }]);
          const [claim] = await store.claim('q');
          assertEqual('payload of the claim', claim?.job.payload, bytes('payload'));
          await store.settle(claim as ClaimRef, {
            action: { type: 'ack' },
            effects: { enqueue: [{ queue: 'q', payload: view('next'), options: { id: 'n' } }], kvWrites: [{ key: 'k2', value: view('second') }] },
          });
          assertEqual('payload of an effect enqueue', (await store.getJob('n'))?.payload, bytes('next'));
          assertEqual('kv value', await store.kvGet('k'), bytes('value'));
          assertEqual('kv value of an effect', await store.kvGet('k2'), bytes('second'));
          assertEqual('a conditional delete compares the viewed bytes', await store.kvDelete('k', { ifValue: view('value') }), true);
        },
        EXAMPLE_CONTEXT,
      ),
  },
];

// ---- bad input -------------------------------------------------------------

const tooBig = (): Uint8Array => new Uint8Array(KV_VALUE_MAX_BYTES + 1);

/** A store holding one claimed job (`c`), one pending (`p`), one dead (`d`) and a kv key. */
async function populated(store: QueueStore): Promise<{ claim: ClaimRef; ids: string[] }> {
  await store.enqueue('q', bytes('d'), { id: 'd' });
  const [dead] = await store.claim('q');
  await store.settle(dead as ClaimRef, { action: { type: 'deadLetter', reason: 'x' } });
  await store.enqueue('q', bytes('c'), { id: 'c' }, [{ key: 'k', value: bytes('v') }]);
  const [claim] = await store.claim('q');
  await store.enqueue('q', bytes('p'), { id: 'p', dedupKey: 'dk' });
  return { claim: claim as ClaimRef, ids: ['c', 'p', 'd', 'n1', 'n2'] };
}

interface BadCall {
  what: string;
  code: string;
  call: (store: QueueStore, claim: ClaimRef) => Promise<unknown>;
}

const BAD_CALLS: BadCall[] = [
  {
    what: 'enqueue with an oversized kv value',
    code: 'KV_VALUE_TOO_LARGE',
    call: (s) => s.enqueue('q', bytes('n'), { id: 'n1' }, [{ key: 'k2', value: tooBig() }]),
  },
  {
    what: 'settle with an oversized kv effect',
    code: 'KV_VALUE_TOO_LARGE',
    call: (s, c) => s.settle(c, { action: { type: 'ack' }, effects: { kvWrites: [{ key: 'k2', value: tooBig() }] } }),
  },
  {
    what: 'settle with an oversized kv effect in the cancel branch',
    code: 'KV_VALUE_TOO_LARGE',
    call: (s, c) =>
      s.settle(c, { action: { type: 'ack' }, ifCancelRequested: { action: { type: 'ack' }, effects: { kvWrites: [{ key: 'k2', value: tooBig() }] } } }),
  },
  { what: 'cancel with an oversized kv effect', code: 'KV_VALUE_TOO_LARGE', call: (s) => s.cancel('p', { kvWrites: [{ key: 'k2', value: tooBig() }] }) },
  {
    what: 'settle with a forged token',
    code: 'LEASE_LOST',
    call: (s, c) =>
      s.settle({ jobId: c.jobId, token: `${c.token}-forged` }, { action: { type: 'ack' }, effects: { kvWrites: [{ key: 'k2', value: bytes('x') }] } }),
  },
  { what: 'settle of an unknown job', code: 'LEASE_LOST', call: (s) => s.settle({ jobId: 'nope', token: 't' }, { action: { type: 'ack' } }) },
  { what: 'settle of a pending job', code: 'LEASE_LOST', call: (s, c) => s.settle({ jobId: 'p', token: c.token }, { action: { type: 'ack' } }) },
  { what: 'renewLease with a forged token', code: 'LEASE_LOST', call: (s, c) => s.renewLease({ jobId: c.jobId, token: `${c.token}-forged` }, 1000) },
  { what: 'requeueDead of an unknown job', code: 'JOB_NOT_FOUND', call: (s) => s.requeueDead('nope') },
  { what: 'requeueDead of a claimed job', code: 'INVALID_STATE', call: (s) => s.requeueDead('c') },
  { what: 'requeueDead of a pending job', code: 'INVALID_STATE', call: (s) => s.requeueDead('p') },
  { what: 'enqueue with priority -1', code: 'INVALID_ARGUMENT', call: (s) => s.enqueue('q', bytes('n'), { id: 'n1', priority: -1 }) },
  { what: 'enqueue with priority 1.5', code: 'INVALID_ARGUMENT', call: (s) => s.enqueue('q', bytes('n'), { id: 'n1', priority: 1.5 }) },
  { what: 'enqueue with priority NaN', code: 'INVALID_ARGUMENT', call: (s) => s.enqueue('q', bytes('n'), { id: 'n1', priority: Number.NaN }) },
  { what: 'enqueue with maxAttempts 0', code: 'INVALID_ARGUMENT', call: (s) => s.enqueue('q', bytes('n'), { id: 'n1', maxAttempts: 0 }) },
  { what: 'enqueue with runAt Infinity', code: 'INVALID_ARGUMENT', call: (s) => s.enqueue('q', bytes('n'), { id: 'n1', runAt: Number.POSITIVE_INFINITY }) },
  { what: 'enqueue with runAt -1', code: 'INVALID_ARGUMENT', call: (s) => s.enqueue('q', bytes('n'), { id: 'n1', runAt: -1 }) },
  { what: 'enqueue into an empty queue name', code: 'INVALID_ARGUMENT', call: (s) => s.enqueue('', bytes('n'), { id: 'n1' }) },
  { what: 'enqueue with a string payload', code: 'INVALID_ARGUMENT', call: (s) => s.enqueue('q', 'text' as unknown as Uint8Array, { id: 'n1' }) },
  { what: 'enqueue with an empty dedup key', code: 'INVALID_ARGUMENT', call: (s) => s.enqueue('q', bytes('n'), { id: 'n1', dedupKey: '' }) },
  {
    what: 'enqueue with a non-string header',
    code: 'INVALID_ARGUMENT',
    call: (s) => s.enqueue('q', bytes('n'), { id: 'n1', headers: { a: 1 as unknown as string } }),
  },
  { what: 'enqueue with an id in use', code: 'INVALID_ARGUMENT', call: (s) => s.enqueue('q', bytes('n'), { id: 'c' }, [{ key: 'k2', value: bytes('x') }]) },
  {
    what: 'enqueueBatch with one bad item (all-or-nothing)',
    code: 'INVALID_ARGUMENT',
    call: (s) =>
      s.enqueueBatch('q', [
        { payload: bytes('1'), options: { id: 'n1' } },
        { payload: bytes('2'), options: { id: 'n2', priority: -5 } },
      ]),
  },
  {
    what: 'enqueueBatch repeating an id (all-or-nothing)',
    code: 'INVALID_ARGUMENT',
    call: (s) =>
      s.enqueueBatch('q', [
        { payload: bytes('1'), options: { id: 'n1' } },
        { payload: bytes('2'), options: { id: 'n1' } },
      ]),
  },
  {
    what: 'settle whose effect reuses an id in use',
    code: 'INVALID_ARGUMENT',
    call: (s, c) =>
      s.settle(c, {
        action: { type: 'ack' },
        effects: { enqueue: [{ queue: 'q', payload: bytes('x'), options: { id: 'p' } }], kvWrites: [{ key: 'k2', value: bytes('x') }] },
      }),
  },
  { what: 'settle with an unknown action', code: 'INVALID_ARGUMENT', call: (s, c) => s.settle(c, { action: { type: 'retry' } as unknown as { type: 'ack' } }) },
  {
    what: 'settle with a precondition value that is not bytes',
    code: 'INVALID_ARGUMENT',
    call: (s, c) => s.settle(c, { action: { type: 'ack' }, precondition: { key: 'k', equals: 'v' as unknown as Uint8Array } }),
  },
  {
    what: 'enqueue carrying an oversized kv value for its reaper dead-letter',
    code: 'KV_VALUE_TOO_LARGE',
    call: (s) => s.enqueue('q', bytes('n'), { id: 'n1', reaperDeadLetter: { effects: { kvWrites: [{ key: 'k2', value: tooBig() }] } } }),
  },
  {
    what: 'settle whose next job carries a bad reaper enqueue',
    code: 'INVALID_ARGUMENT',
    call: (s, c) =>
      s.settle(c, {
        action: { type: 'ack' },
        effects: {
          enqueue: [
            {
              queue: 'q',
              payload: bytes('x'),
              options: { id: 'n1', reaperDeadLetter: { ifCancelRequested: { enqueue: [{ queue: '', payload: bytes('y') }] } } },
            },
          ],
        },
      }),
  },
  { what: 'setReaperTemplate of an empty queue name', code: 'INVALID_ARGUMENT', call: (s) => s.setReaperTemplate('', {}) },
  {
    what: 'setReaperTemplate with a template that is not an object',
    code: 'INVALID_ARGUMENT',
    call: (s) => s.setReaperTemplate('q', 'x' as unknown as ReaperTemplate),
  },
  {
    what: 'setReaperTemplate with a text part that is neither a string, a job id nor a header',
    code: 'INVALID_ARGUMENT',
    call: (s) => s.setReaperTemplate('q', { effects: { kvDeletes: [[{ field: 'id' } as unknown as { jobId: true }]] } }),
  },
  {
    what: 'setReaperTemplate with an enqueue payload that is not bytes',
    code: 'INVALID_ARGUMENT',
    call: (s) => s.setReaperTemplate('q', { ifCancelRequested: { enqueue: [{ queue: 'o', payload: 'x' as unknown as Uint8Array }] } }),
  },
  {
    what: 'setReaperTemplate with a header value that is not a string',
    code: 'INVALID_ARGUMENT',
    call: (s) => s.setReaperTemplate('q', { effects: { enqueue: [{ queue: 'o', payload: bytes('x'), headers: { h: 1 as unknown as string } }] } }),
  },
  {
    what: 'enqueue with a kv write whose ttlMs is 0',
    code: 'INVALID_ARGUMENT',
    call: (s) => s.enqueue('q', bytes('n'), { id: 'n1' }, [{ key: 'k2', value: bytes('v'), ttlMs: 0 }]),
  },
  {
    what: 'settle with a kv write whose ttlMs is not an integer',
    code: 'INVALID_ARGUMENT',
    call: (s, c) => s.settle(c, { action: { type: 'ack' }, effects: { kvWrites: [{ key: 'k2', value: bytes('v'), ttlMs: 1.5 }] } }),
  },
  { what: 'settle with a nack delayMs of -1', code: 'INVALID_ARGUMENT', call: (s, c) => s.settle(c, { action: { type: 'nack', error: 'e', delayMs: -1 } }) },
  { what: 'claim with limit 0', code: 'INVALID_ARGUMENT', call: (s) => s.claim('q', { limit: 0 }) },
  { what: 'claim with leaseMs 0', code: 'INVALID_ARGUMENT', call: (s) => s.claim('q', { leaseMs: 0 }) },
  { what: 'claim with leaseMs NaN', code: 'INVALID_ARGUMENT', call: (s) => s.claim('q', { leaseMs: Number.NaN }) },
  { what: 'renewLease by 0 ms', code: 'INVALID_ARGUMENT', call: (s, c) => s.renewLease(c, 0) },
  { what: 'deadJobs with limit 0', code: 'INVALID_ARGUMENT', call: (s) => s.deadJobs('q', { limit: 0 }) },
  { what: 'waitForCompletion with timeout -1', code: 'INVALID_ARGUMENT', call: (s) => s.waitForCompletion('p', -1) },
  { what: 'kvGet of an empty key', code: 'INVALID_ARGUMENT', call: (s) => s.kvGet('') },
  { what: 'kvDelete of an empty key', code: 'INVALID_ARGUMENT', call: (s) => s.kvDelete('') },
  { what: 'stats of an empty queue name', code: 'INVALID_ARGUMENT', call: (s) => s.stats('') },
];

const badInputChecks: ConformanceCheck[] = [
  ...BAD_CALLS.map((bad): ConformanceCheck => ({
    name: `${bad.what} → ${bad.code}, nothing changed`,
    run: (options) =>
      withStore(
        options,
        async (store) => {
          const { claim, ids } = await populated(store);
          const before = await snapshot(store, ids);
          await assertCode(bad.what, () => bad.call(store, claim), bad.code);
          await assertUnchanged(bad.what, store, ids, before);
        },
        EXAMPLE_CONTEXT,
      ),
  })),
  {
    name: 'unknown ids: getJob undefined, cancel notFound, waitForCompletion notFound, kvDelete false',
    run: (options) =>
      withStore(
        options,
        async (store) => {
          const { ids } = await populated(store);
          const before = await snapshot(store, ids);
          assertEqual('getJob', await store.getJob('nope'), undefined);
          assertEqual('cancel', await store.cancel('nope', { kvWrites: [{ key: 'k2', value: bytes('x') }] }), { outcome: 'notFound' });
          assertEqual('waitForCompletion', await store.waitForCompletion('nope', 10), { kind: 'notFound' });
          assertEqual('kvDelete unknown', await store.kvDelete('nope'), false);
          assertEqual('kvDelete with a different ifValue', await store.kvDelete('k', { ifValue: bytes('other') }), false);
          assertEqual('stats of an unknown queue', await store.stats('unknown'), { pending: 0, claimed: 0, scheduled: 0, dead: 0, done: 0 });
          assertEqual('deadJobs of an unknown queue', await store.deadJobs('unknown'), []);
          await assertUnchanged('reads of unknown ids', store, ids, before);
          assertEqual('kvDelete with the stored ifValue', await store.kvDelete('k', { ifValue: bytes('v') }), true);
          assertEqual('kv after compare-and-delete', await store.kvGet('k'), undefined);
        },
        EXAMPLE_CONTEXT,
      ),
  },
  {
    name: 'a kv value of exactly the limit is accepted',
    run: (options) =>
      withStore(
        options,
        async (store) => {
          const value = new Uint8Array(KV_VALUE_MAX_BYTES).fill(7);
          const result = await outcome(() => store.enqueue('q', bytes('x'), {}, [{ key: 'big', value }]));
          assert(`enqueue with a ${KV_VALUE_MAX_BYTES}-byte value must succeed${result.ok ? '' : `, threw ${result.code}`}`, result.ok);
          assertEqual('stored size', (await store.kvGet('big'))?.byteLength, KV_VALUE_MAX_BYTES);
        },
        EXAMPLE_CONTEXT,
      ),
  },
];

/** Example-based checks of every operation across job states. */
export function storeOperationChecks(): ConformanceGroup {
  return { name: 'store operations', checks: [...traitChecks, ...exampleChecks] };
}

/** Bad input: each call gets its typed error and changes nothing. */
export function storeBadInputChecks(): ConformanceGroup {
  return { name: 'store bad input', checks: badInputChecks };
}
