/**
 * A `QueueStore` that forwards every call to another store and lets the
 * testing kit look at (and tamper with) each call: observe results, fail a
 * call before or after it lands, or never answer (a crashed process).
 */
import type { QueueStore, StoreNotification } from '../core/index.js';

/** Names of the `QueueStore` methods that return promises. */
export type StoreOp = Exclude<keyof QueueStore, 'subscribe'>;

/** Operations that change the store (the ones a crash or an error can split). */
export const WRITE_OPS: ReadonlySet<StoreOp> = new Set<StoreOp>([
  'enqueue',
  'enqueueBatch',
  'claim',
  'settle',
  'renewLease',
  'cancel',
  'reap',
  'promote',
  'setReaperTemplate',
  'requeueDead',
  'kvDelete',
]);

/** What `before` decides for a call. */
export type BeforeDecision =
  | undefined
  /** Never answer: the caller waits forever (its process is gone). */
  | { kind: 'hang' }
  /** Answer with this value without calling the store. */
  | { kind: 'return'; value: unknown }
  /** Call the store, then let `after` see it with `afterFault` set. */
  | { kind: 'mark'; mark: string };

/** Hooks of an `InterceptingStore`. `before` is synchronous so a call reaches the store at the same instant as without it. */
export interface StoreInterceptor {
  /** Throw to fail the call without it landing. */
  before?(op: StoreOp, args: unknown[]): BeforeDecision;
  /** After the call landed: throw to hide a committed result, or return `'hang'`. */
  // eslint-disable-next-line @typescript-eslint/no-invalid-void-type -- a hook may return nothing
  after?(op: StoreOp, args: unknown[], result: unknown, mark: string | undefined): void | 'hang' | Promise<void | 'hang'>;
  /** The call landed but its caller will never see the answer (the view was detached meanwhile). */
  unanswered?(op: StoreOp, args: unknown[], result: unknown): void;
  /** The call failed in the store itself. */
  failed?(op: StoreOp, args: unknown[], error: unknown, mark: string | undefined): void | Promise<void>;
}

const hang = (): Promise<never> => new Promise<never>(() => undefined);

/** Forwards to `inner`, consulting `interceptor` around every call. */
export class InterceptingStore implements QueueStore {
  private readonly listeners = new Map<string, Set<(n: StoreNotification) => void>>();
  private readonly unsubscribers = new Set<() => void>();
  private detached = false;

  constructor(
    readonly inner: QueueStore,
    private readonly interceptor: StoreInterceptor,
  ) {}

  /** Stops delivering notifications and answering calls: the process holding this view is gone. */
  detach(): void {
    this.detached = true;
    for (const unsubscribe of this.unsubscribers) unsubscribe();
    this.unsubscribers.clear();
    this.listeners.clear();
  }

  get isDetached(): boolean {
    return this.detached;
  }

  /** Delivers a notification to the listeners subscribed through this view (to wake a worker). */
  notifyListeners(queue: string, notification: StoreNotification): void {
    for (const listener of [...(this.listeners.get(queue) ?? [])]) listener(notification);
  }

  private async call<T>(op: StoreOp, args: unknown[], invoke: () => Promise<T>): Promise<T> {
    if (this.detached) return hang();
    const decision = this.interceptor.before?.(op, args);
    if (decision?.kind === 'hang') return hang();
    if (decision?.kind === 'return') return decision.value as T;
    const mark = decision?.kind === 'mark' ? decision.mark : undefined;
    let result: T;
    try {
      result = await invoke();
    } catch (error) {
      await this.interceptor.failed?.(op, args, error, mark);
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- changed by another task while this one awaits
      if (this.detached) return hang();
      throw error;
    }
    const after = await this.interceptor.after?.(op, args, result, mark);
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- changed by another task while this one awaits
    if (after === 'hang' || this.detached) {
      this.interceptor.unanswered?.(op, args, result);
      return hang();
    }
    return result;
  }

  enqueue(...args: Parameters<QueueStore['enqueue']>): ReturnType<QueueStore['enqueue']> {
    return this.call('enqueue', args, () => this.inner.enqueue(...args));
  }
  enqueueBatch(...args: Parameters<QueueStore['enqueueBatch']>): ReturnType<QueueStore['enqueueBatch']> {
    return this.call('enqueueBatch', args, () => this.inner.enqueueBatch(...args));
  }
  claim(...args: Parameters<QueueStore['claim']>): ReturnType<QueueStore['claim']> {
    return this.call('claim', args, () => this.inner.claim(...args));
  }
  settle(...args: Parameters<QueueStore['settle']>): ReturnType<QueueStore['settle']> {
    return this.call('settle', args, () => this.inner.settle(...args));
  }
  renewLease(...args: Parameters<QueueStore['renewLease']>): ReturnType<QueueStore['renewLease']> {
    return this.call('renewLease', args, () => this.inner.renewLease(...args));
  }
  cancel(...args: Parameters<QueueStore['cancel']>): ReturnType<QueueStore['cancel']> {
    return this.call('cancel', args, () => this.inner.cancel(...args));
  }
  reap(): ReturnType<QueueStore['reap']> {
    return this.call('reap', [], () => this.inner.reap());
  }
  promote(): ReturnType<QueueStore['promote']> {
    return this.call('promote', [], () => this.inner.promote());
  }
  setReaperTemplate(...args: Parameters<QueueStore['setReaperTemplate']>): ReturnType<QueueStore['setReaperTemplate']> {
    return this.call('setReaperTemplate', args, () => this.inner.setReaperTemplate(...args));
  }
  requeueDead(...args: Parameters<QueueStore['requeueDead']>): ReturnType<QueueStore['requeueDead']> {
    return this.call('requeueDead', args, () => this.inner.requeueDead(...args));
  }
  getJob(...args: Parameters<QueueStore['getJob']>): ReturnType<QueueStore['getJob']> {
    return this.call('getJob', args, () => this.inner.getJob(...args));
  }
  deadJobs(...args: Parameters<QueueStore['deadJobs']>): ReturnType<QueueStore['deadJobs']> {
    return this.call('deadJobs', args, () => this.inner.deadJobs(...args));
  }
  stats(...args: Parameters<QueueStore['stats']>): ReturnType<QueueStore['stats']> {
    return this.call('stats', args, () => this.inner.stats(...args));
  }
  listQueues(): ReturnType<QueueStore['listQueues']> {
    return this.call('listQueues', [], () => this.inner.listQueues());
  }
  waitForCompletion(...args: Parameters<QueueStore['waitForCompletion']>): ReturnType<QueueStore['waitForCompletion']> {
    return this.call('waitForCompletion', args, () => this.inner.waitForCompletion(...args));
  }
  kvGet(...args: Parameters<QueueStore['kvGet']>): ReturnType<QueueStore['kvGet']> {
    return this.call('kvGet', args, () => this.inner.kvGet(...args));
  }
  kvDelete(...args: Parameters<QueueStore['kvDelete']>): ReturnType<QueueStore['kvDelete']> {
    return this.call('kvDelete', args, () => this.inner.kvDelete(...args));
  }
  /** Closing a view never closes the shared store. */
  async close(): Promise<void> {
    this.detach();
  }

  subscribe(queue: string, listener: (notification: StoreNotification) => void): () => void {
    if (this.detached) return () => undefined;
    let set = this.listeners.get(queue);
    if (!set) this.listeners.set(queue, (set = new Set()));
    const own = set;
    own.add(listener);
    const forward = (n: StoreNotification): void => {
      if (!this.detached) listener(n);
    };
    const unsubscribeInner = this.inner.subscribe(queue, forward);
    const unsubscribe = (): void => {
      own.delete(listener);
      unsubscribeInner();
      this.unsubscribers.delete(unsubscribe);
    };
    this.unsubscribers.add(unsubscribe);
    return unsubscribe;
  }
}
