/**
 * Store notifications: which operation must notify what. A worker loop
 * relies on them to react without waiting for its poll, and the runtime's
 * poll would hide their absence in the workflow suite, so they are checked
 * here, at store level, one operation at a time: in-process on every store,
 * and from one instance to a subscriber of another for stores that declare
 * `crossProcessNotifications` (and give `createStores`).
 *
 * Notifications are delivered asynchronously, never inside the store call,
 * so every check waits for the one it expects with a bounded wait (real
 * time, and clock time in small steps when a poll on the store's clock must
 * get its turns): a store that never notifies fails with a message naming
 * the operation, never hangs.
 */
import { ManualClock } from '../core/clock.js';
import type { ClaimRef, QueueStore, StoreNotification } from '../core/queue-store.js';
import { SUITE_START, assert, withGuardedStore } from './checks.js';
import type { ConformanceCheck, ConformanceGroup } from './checks.js';
import { ConformanceError, canonical } from './compare.js';
import { destroyAll } from './options.js';
import type { ConformanceOptions, StoreContext } from './options.js';

/** Leases long enough that the clock steps of a cross-instance wait never expire one. */
const LONG_LEASE_MS = 3_600_000;

/** The queue configuration of the notification checks: `retry` retries at once (so a nack goes back to pending). */
export const NOTIFICATION_CONTEXT: Omit<StoreContext, 'clock'> = {
  backgroundMaintenance: false,
  defaultQueueConfig: { leaseDurationMs: LONG_LEASE_MS, retryBackoffBaseMs: 100, retryBackoffMaxMs: 1000 },
  queueConfigs: { retry: { retryBackoffBaseMs: 0 } },
};

/** Bounds of one wait for a notification or a completion. */
export interface WaitBounds {
  /** Real time before giving up. */
  realMs: number;
  /** Clock advance per step (0: the clock stands still). */
  clockStepMs: number;
}

/** In-process delivery is a microtask or a timer away; a second of real time is ample. */
export const LOCAL_WAIT: WaitBounds = { realMs: 1_000, clockStepMs: 0 };
/** Another instance learns of a change through its own channel (LISTEN/NOTIFY, a change poll on the store's clock). */
export const REMOTE_WAIT: WaitBounds = { realMs: 5_000, clockStepMs: 20 };

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Waits, within `bounds`, until `ready()` returns a value; throws a
 * `ConformanceError` built by `failure` otherwise. Advances the clock by
 * `clockStepMs` per step (callers keep leases and timeouts far beyond the
 * total advance).
 */
export async function boundedWait<T>(clock: ManualClock, bounds: WaitBounds, ready: () => T | undefined, failure: (advancedMs: number) => string): Promise<T> {
  const deadline = Date.now() + bounds.realMs;
  let advanced = 0;
  for (;;) {
    const value = ready();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new ConformanceError(failure(advanced));
    if (bounds.clockStepMs > 0) {
      clock.advance(bounds.clockStepMs);
      advanced += bounds.clockStepMs;
    }
    await pause(2);
  }
}

/** Subscribes to some queues and records what arrives, and whether a listener ever ran inside a store call. */
class NotificationLog {
  received: StoreNotification[] = [];
  /** Store calls during which a listener ran synchronously. */
  readonly reentered: string[] = [];
  private inCall: string | undefined;
  private readonly unsubscribes: Array<() => void> = [];

  constructor(store: QueueStore, queues: string[]) {
    for (const queue of queues) {
      this.unsubscribes.push(
        store.subscribe(queue, (notification) => {
          if (this.inCall !== undefined) this.reentered.push(this.inCall);
          this.received.push(notification);
        }),
      );
    }
  }

  /** Runs a store call, noting any listener that runs before the call returns its promise. */
  async call<T>(what: string, call: () => Promise<T>): Promise<T> {
    this.inCall = what;
    let pending: Promise<T>;
    try {
      pending = call();
    } finally {
      this.inCall = undefined;
    }
    return pending;
  }

  clear(): void {
    this.received = [];
  }

  close(): void {
    for (const unsubscribe of this.unsubscribes) unsubscribe();
  }
}

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);

async function enqueueOne(store: QueueStore, queue: string, options: Parameters<QueueStore['enqueue']>[2] = {}): Promise<string> {
  const result = await store.enqueue(queue, bytes('n'), options);
  assert(`enqueue(${queue}) into an empty store returns new, got ${canonical(result)}`, result.kind === 'new');
  return result.id;
}

async function claimOnly(store: QueueStore, queue: string, id: string, leaseMs?: number): Promise<ClaimRef> {
  const claims = await store.claim(queue, leaseMs === undefined ? {} : { leaseMs });
  assert(`claim(${queue}) returns the only pending job ${id}, got ${canonical(claims.map((c) => c.jobId))}`, claims.length === 1 && claims[0]?.jobId === id);
  const claim = claims[0] as ClaimRef;
  return { jobId: claim.jobId, token: claim.token };
}

/** One rule: after `act` (through the producing instance), a subscriber of `listen` gets a notification matching `expect`. */
export interface NotificationRule {
  /** The operation, as the check names it. */
  operation: string;
  /** What must be delivered, as the check names it. */
  notification: string;
  /** Queue the subscriber listens on. */
  listen: string;
  /** Whether the rule holds across instances too (`deadLettered` is local to the reaping instance). */
  crossInstance: boolean;
  /** Uses `EnqueueOptions.reaperDeadLetter` (a store on an older contract may skip it). */
  usesReaperEffects?: boolean;
  /** Brings the store into the state before the operation; returns what `act`/`matches` need. */
  setup: (store: QueueStore, clock: ManualClock) => Promise<string>;
  /** The operation under test (checks its own result, so a notification for nothing does not pass). */
  act: (store: QueueStore, clock: ManualClock, id: string) => Promise<void>;
  matches: (notification: StoreNotification, id: string) => boolean;
}

const jobsAvailable =
  (queue: string) =>
  (n: StoreNotification): boolean =>
    n.type === 'jobsAvailable' && n.queue === queue;

export const NOTIFICATION_RULES: NotificationRule[] = [
  {
    operation: 'enqueue of a pending job',
    notification: 'jobsAvailable',
    listen: 'q',
    crossInstance: true,
    setup: async () => '',
    act: async (store) => {
      await enqueueOne(store, 'q');
    },
    matches: jobsAvailable('q'),
  },
  {
    operation: 'enqueueBatch of pending jobs',
    notification: 'jobsAvailable',
    listen: 'q',
    crossInstance: true,
    setup: async () => '',
    act: async (store) => {
      const results = await store.enqueueBatch('q', [{ payload: bytes('a') }, { payload: bytes('b') }]);
      assert(`enqueueBatch returns two new jobs, got ${canonical(results)}`, results.length === 2 && results.every((r) => r.kind === 'new'));
    },
    matches: jobsAvailable('q'),
  },
  {
    operation: 'promote of a scheduled job that fell due',
    notification: 'jobsAvailable',
    listen: 'q',
    crossInstance: true,
    setup: async (store, clock) => enqueueOne(store, 'q', { runAt: clock.now() + 1_000 }),
    act: async (store, clock, id) => {
      clock.advance(1_000);
      await store.promote();
      const job = await store.getJob(id);
      assert(`promote() after the job's runAt makes it pending, got ${canonical(job)}`, job?.status === 'pending');
    },
    matches: jobsAvailable('q'),
  },
  {
    operation: 'nack of a claim back to pending (queue without backoff)',
    notification: 'jobsAvailable',
    listen: 'retry',
    crossInstance: true,
    setup: async (store) => {
      const id = await enqueueOne(store, 'retry');
      const claim = await claimOnly(store, 'retry', id);
      return `${claim.jobId}\u0000${claim.token}`;
    },
    act: async (store, _clock, ref) => {
      const [jobId, token] = ref.split('\u0000') as [string, string];
      const result = await store.settle({ jobId, token }, { action: { type: 'nack', error: 'again' } });
      assert(`a nack with attempts left and no backoff leaves the job pending, got ${canonical(result)}`, result.status === 'pending');
    },
    matches: jobsAvailable('retry'),
  },
  {
    operation: 'reap putting an expired claim back to pending',
    notification: 'jobsAvailable',
    listen: 'q',
    crossInstance: true,
    setup: async (store, clock) => {
      const id = await enqueueOne(store, 'q');
      await claimOnly(store, 'q', id, 1_000);
      clock.advance(1_000);
      return id;
    },
    act: async (store, _clock, id) => {
      const report = await store.reap();
      assert(`reap() requeues the expired claim ${id}, got ${canonical(report)}`, report.requeued.includes(id));
    },
    matches: jobsAvailable('q'),
  },
  {
    operation: 'requeueDead',
    notification: 'jobsAvailable',
    listen: 'q',
    crossInstance: true,
    setup: async (store) => {
      const id = await enqueueOne(store, 'q');
      const claim = await claimOnly(store, 'q', id);
      await store.settle(claim, { action: { type: 'deadLetter', reason: 'bad' } });
      return id;
    },
    act: async (store, _clock, id) => {
      await store.requeueDead(id);
    },
    matches: jobsAvailable('q'),
  },
  {
    operation: "reap dead-lettering a job whose carried effects enqueue a job on another queue (that queue's subscriber)",
    notification: 'jobsAvailable',
    listen: 'out',
    crossInstance: true,
    usesReaperEffects: true,
    setup: async (store, clock) => {
      const id = await enqueueOne(store, 'q', {
        maxAttempts: 1,
        reaperDeadLetter: { effects: { enqueue: [{ queue: 'out', payload: bytes('o'), options: { id: 'n-out' } }] } },
      });
      await claimOnly(store, 'q', id, 1_000);
      clock.advance(1_000);
      return id;
    },
    act: async (store, _clock, id) => {
      const report = await store.reap();
      assert(`reap() dead-letters ${id} with its carried effects, got ${canonical(report)}`, report.effectsApplied.includes(id));
    },
    matches: jobsAvailable('out'),
  },
  {
    operation: 'cancel of a claimed job',
    notification: 'cancelRequested (with its queue and id)',
    listen: 'q',
    crossInstance: true,
    setup: async (store) => {
      const id = await enqueueOne(store, 'q');
      await claimOnly(store, 'q', id);
      return id;
    },
    act: async (store, _clock, id) => {
      const result = await store.cancel(id);
      assert(`cancel of a claimed job reports requested, got ${canonical(result)}`, result.outcome === 'requested');
    },
    matches: (n, id) => n.type === 'cancelRequested' && n.queue === 'q' && n.jobId === id,
  },
  {
    operation: 'reap dead-lettering an expired claim on its last attempt',
    notification: 'deadLettered (with the dead record)',
    listen: 'q',
    crossInstance: false,
    setup: async (store, clock) => {
      const id = await enqueueOne(store, 'q', { maxAttempts: 1 });
      await claimOnly(store, 'q', id, 1_000);
      clock.advance(1_000);
      return id;
    },
    act: async (store, _clock, id) => {
      const report = await store.reap();
      assert(
        `reap() dead-letters ${id}, got ${canonical(report)}`,
        report.deadLettered.some((r) => r.id === id),
      );
    },
    matches: (n, id) =>
      n.type === 'deadLettered' && n.queue === 'q' && n.jobs.some((job) => job.id === id && job.status === 'dead' && job.lastError === 'lease expired'),
  },
];

/** Claims everything claimable on `queue` (the probe jobs stay claimed: nothing reads them). */
async function drain(store: QueueStore, queue: string): Promise<void> {
  while ((await store.claim(queue, { limit: 10 })).length > 0);
}

/** Queue of the probe jobs that show another instance's channel is up. */
const PROBE_QUEUE = 'probe';

/**
 * A cross-process channel (a LISTEN connection, a change poll) may come up
 * only some time after `subscribe` returns, and a worker claims right after
 * subscribing, so a change made before that is not a missed notification.
 * Probe enqueues through the producer (after the listener drained the probe
 * queue, as a waiting worker has) until the listener hears one: from then on
 * the channel is up.
 */
async function awaitChannel(producer: QueueStore, listener: QueueStore, log: NotificationLog, clock: ManualClock, where: string): Promise<void> {
  const deadline = Date.now() + REMOTE_WAIT.realMs;
  const heard = (): boolean => log.received.some((n) => n.type === 'jobsAvailable' && n.queue === PROBE_QUEUE);
  while (!heard()) {
    if (Date.now() > deadline)
      throw new ConformanceError(
        `${where}: a subscriber of another instance never heard of enqueues through this one within ${REMOTE_WAIT.realMs} ms of real time (probe jobs on queue ${PROBE_QUEUE})`,
      );
    await drain(listener, PROBE_QUEUE);
    await producer.enqueue(PROBE_QUEUE, bytes('probe'));
    for (let i = 0; i < 10 && !heard(); i++) {
      clock.advance(REMOTE_WAIT.clockStepMs);
      await pause(5);
    }
  }
}

/** Runs one rule: `producer` makes the change, a subscriber of `listener` must hear of it. */
async function runRule(
  rule: NotificationRule,
  producer: QueueStore,
  listener: QueueStore,
  clock: ManualClock,
  bounds: WaitBounds,
  where: string,
): Promise<void> {
  const id = await rule.setup(producer, clock);
  const remote = producer !== listener;
  const log = new NotificationLog(listener, remote ? [rule.listen, PROBE_QUEUE] : [rule.listen]);
  try {
    if (remote) await awaitChannel(producer, listener, log, clock, where);
    // As a worker does after subscribing: claim until the queue is empty. A store may owe wakeups only to such a subscriber.
    const claimed = await listener.claim(rule.listen, { limit: 10 });
    assert(
      `${where}: the setup of "${rule.operation}" leaves nothing claimable on ${rule.listen}, got ${canonical(claimed.map((c) => c.jobId))}`,
      claimed.length === 0,
    );
    // Whatever the setup caused may arrive late: only what follows the operation counts.
    await pause(0);
    log.clear();
    await log.call(rule.operation, () => rule.act(producer, clock, id));
    await boundedWait(
      clock,
      bounds,
      () => (log.received.some((n) => n.queue === rule.listen && rule.matches(n, id)) ? true : undefined),
      (advanced) =>
        `${where}: after ${rule.operation}, a subscriber of queue ${rule.listen} got no ${rule.notification} notification within ${bounds.realMs} ms of real time` +
        `${advanced > 0 ? ` and ${advanced} ms of clock time` : ''}; it received: ${canonical(log.received)}`,
    );
    if (log.reentered.length > 0)
      throw new ConformanceError(`${where}: a listener ran inside the store call ${log.reentered.join(', ')} (notifications must be delivered asynchronously)`);
  } finally {
    log.close();
  }
}

function ruleName(rule: NotificationRule): string {
  return `${rule.operation} notifies ${rule.notification}`;
}

/** In-process notifications: required of every store. */
export function storeNotificationChecks(): ConformanceGroup {
  const checks: ConformanceCheck[] = NOTIFICATION_RULES.map((rule) => ({
    name: ruleName(rule),
    run: async (options: ConformanceOptions) => {
      const clock = new ManualClock(SUITE_START);
      await withGuardedStore(options, { ...NOTIFICATION_CONTEXT, backgroundMaintenance: false, clock }, (guard) =>
        runRule(rule, guard.store, guard.store, clock, LOCAL_WAIT, `${options.name} (one instance)`),
      );
    },
  }));
  return { name: 'store notifications', checks };
}

/** Why the cross-instance notification checks cannot run on this store, if they cannot. */
export function crossNotificationSkip(options: Pick<ConformanceOptions, 'createStores' | 'crossProcessNotifications'>): string | undefined {
  if (!options.crossProcessNotifications) return 'the store does not declare crossProcessNotifications: subscribers of other instances rely on their poll';
  if (!options.createStores) return 'crossProcessNotifications is declared but no createStores factory is given';
  return undefined;
}

/**
 * Notifications across instances: a change through one instance reaches a
 * subscriber of another. Built for `options`, so a store without the
 * capability shows each check as skipped with the reason.
 */
export function crossInstanceNotificationChecks(options: Pick<ConformanceOptions, 'createStores' | 'crossProcessNotifications'>): ConformanceGroup {
  const skip = crossNotificationSkip(options);
  const checks: ConformanceCheck[] = NOTIFICATION_RULES.filter((rule) => rule.crossInstance).map((rule) => {
    const check: ConformanceCheck = {
      name: `${ruleName(rule)} to a subscriber of another instance`,
      run: async (opts: ConformanceOptions) => {
        const reason = crossNotificationSkip(opts);
        if (reason !== undefined || !opts.createStores) throw new ConformanceError(`cannot run: ${reason}`);
        const clock = new ManualClock(SUITE_START);
        const stores = await opts.createStores(2, { ...NOTIFICATION_CONTEXT, backgroundMaintenance: false, clock });
        try {
          await runRule(
            rule,
            stores[0] as QueueStore,
            stores[1] as QueueStore,
            clock,
            REMOTE_WAIT,
            `${opts.name} (change through instance 0, subscriber on instance 1)`,
          );
        } finally {
          await destroyAll(opts, stores);
        }
      },
    };
    if (skip !== undefined) check.skip = skip;
    return check;
  });
  return { name: 'cross-instance notifications', checks };
}
