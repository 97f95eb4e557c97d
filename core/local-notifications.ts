/**
 * In-process plumbing every store needs: notification delivery to
 * subscribers, and `waitForCompletion` waiters. Adapters add cross-process
 * sources (LISTEN/NOTIFY, polling) on top and feed them in here.
 */
import type { Clock } from './clock.js';
import type { CompletionResult, StoreNotification } from './queue-store.js';

type Listener = (notification: StoreNotification) => void;

/** Subscribers per queue. Delivery is on a microtask, so listeners never run inside a store operation. */
export class LocalNotifications {
  private readonly listeners = new Map<string, Set<Listener>>();
  private readonly queuedWakeups = new Set<string>();

  subscribe(queue: string, listener: Listener): () => void {
    let set = this.listeners.get(queue);
    if (!set) this.listeners.set(queue, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0 && this.listeners.get(queue) === set) this.listeners.delete(queue);
    };
  }

  /** Queues with at least one subscriber. */
  queues(): IterableIterator<string> {
    return this.listeners.keys();
  }

  get size(): number {
    return this.listeners.size;
  }

  notify(queue: string, notification: StoreNotification): void {
    const listeners = this.listeners.get(queue);
    if (!listeners || listeners.size === 0) return;
    if (notification.type === 'jobsAvailable') {
      // Coalesce: one wakeup per queue per microtask is enough.
      if (this.queuedWakeups.has(queue)) return;
      this.queuedWakeups.add(queue);
    }
    queueMicrotask(() => {
      if (notification.type === 'jobsAvailable') this.queuedWakeups.delete(queue);
      for (const listener of [...listeners]) listener(notification);
    });
  }

  clear(): void {
    this.listeners.clear();
  }
}

/** Callers of `waitForCompletion`, per job, each with a timeout on the store's clock. */
export class CompletionWaiters {
  private readonly waiters = new Map<string, Set<(result: CompletionResult) => void>>();

  constructor(private readonly clock: Clock) {}

  /** Resolves with the first result given for `jobId`, or `timedOut` after `timeoutMs`. */
  wait(jobId: string, timeoutMs: number): Promise<CompletionResult> {
    const waiter = this.waiter(jobId);
    waiter.expireIn(timeoutMs);
    return waiter.result;
  }

  /**
   * One wait, registered at once and given its timeout later (`expireIn`),
   * that its caller may also end by itself (`end`): a store registers before
   * it reads the job, so a completion committed while the read is in flight
   * is not missed, and a final state read wins over a timeout that passed
   * during the read.
   */
  waiter(jobId: string): { result: Promise<CompletionResult>; end: (result: CompletionResult) => void; expireIn: (ms: number) => void } {
    let set = this.waiters.get(jobId);
    if (!set) this.waiters.set(jobId, (set = new Set()));
    const waiters = set;
    let resolve: (result: CompletionResult) => void = () => undefined;
    const result = new Promise<CompletionResult>((r) => (resolve = r));
    let cancelTimer: () => void = () => undefined;
    const finish = (outcome: CompletionResult): void => {
      if (!waiters.delete(finish)) return;
      cancelTimer();
      if (waiters.size === 0 && this.waiters.get(jobId) === waiters) this.waiters.delete(jobId);
      resolve(outcome);
    };
    waiters.add(finish);
    const expireIn = (ms: number): void => {
      if (!waiters.has(finish)) return;
      if (ms <= 0) finish({ kind: 'timedOut' });
      else cancelTimer = this.clock.setTimer(() => finish({ kind: 'timedOut' }), ms);
    };
    return { result, end: finish, expireIn };
  }

  /** Job ids someone is waiting for. */
  jobIds(): IterableIterator<string> {
    return this.waiters.keys();
  }

  get size(): number {
    return this.waiters.size;
  }

  /** Someone is waiting for `jobId`. */
  has(jobId: string): boolean {
    return this.waiters.has(jobId);
  }

  resolve(jobId: string, result: CompletionResult): void {
    const waiters = this.waiters.get(jobId);
    if (!waiters) return;
    for (const finish of [...waiters]) finish(result);
  }

  /** Ends every wait (as `timedOut`), e.g. on close. */
  resolveAll(): void {
    for (const jobId of [...this.waiters.keys()]) this.resolve(jobId, { kind: 'timedOut' });
  }
}
