/**
 * Deliberately broken stores: each wraps a `MemoryStore` and adds one
 * realistic bug. `mutants.test.ts` asserts the conformance suite rejects
 * every one of them, so the suite is known to be able to fail.
 *
 * Bugs that live between instances come with `createStores`: several
 * instances over one MemoryStore (`sharedMemory`), each with the bug.
 *
 * Most bugs are pure wrappers (shadow state plus the public API). Two need
 * to reach inside the memory store (`attemptsNotCounted`, `killedKv` helpers)
 * through `memoryInternals`, which fails loudly if the fields move.
 */
import { MemoryStore } from '../../adapters/memory/index.js';
import { MemoryKv } from '../../adapters/memory/memory-kv.js';
import { copyBytes } from '../../core/bytes.js';
import { LeaseLostError } from '../../core/errors.js';
import type { QueueConfig } from '../../core/queue-config.js';
import type {
  CancelResult,
  Claim,
  ClaimRef,
  CompletionResult,
  Effects,
  EnqueueOptions,
  EnqueueResult,
  JobRecord,
  KvWrite,
  QueueStats,
  QueueStore,
  ReapReport,
  ReaperTemplate,
  RenewResult,
  SettleAction,
  SettleResult,
  Settlement,
  StoreNotification,
} from '../../core/queue-store.js';
import type { ConformanceOptions, StoreContext } from '../../conformance/index.js';

/** Forwards everything to `inner`; mutants override the one operation they break. */
export class ForwardingStore implements QueueStore {
  constructor(readonly inner: QueueStore) {}
  enqueue(queue: string, payload: Uint8Array, options?: EnqueueOptions, kvWrites?: KvWrite[]): Promise<EnqueueResult> {
    return this.inner.enqueue(queue, payload, options, kvWrites);
  }
  enqueueBatch(queue: string, items: Array<{ payload: Uint8Array; options?: EnqueueOptions }>): Promise<EnqueueResult[]> {
    return this.inner.enqueueBatch(queue, items);
  }
  claim(queue: string, options?: { leaseMs?: number; limit?: number }): Promise<Claim[]> {
    return this.inner.claim(queue, options);
  }
  settle(claim: ClaimRef, settlement: Settlement): Promise<SettleResult> {
    return this.inner.settle(claim, settlement);
  }
  renewLease(claim: ClaimRef, extendMs: number): Promise<RenewResult> {
    return this.inner.renewLease(claim, extendMs);
  }
  cancel(jobId: string, effects?: Effects): Promise<CancelResult> {
    return this.inner.cancel(jobId, effects);
  }
  reap(): Promise<ReapReport> {
    return this.inner.reap();
  }
  promote(): Promise<number> {
    return this.inner.promote();
  }
  setReaperTemplate(queue: string, template: ReaperTemplate | undefined): Promise<void> {
    return this.inner.setReaperTemplate(queue, template);
  }
  requeueDead(jobId: string): Promise<void> {
    return this.inner.requeueDead(jobId);
  }
  getJob(jobId: string): Promise<JobRecord | undefined> {
    return this.inner.getJob(jobId);
  }
  deadJobs(queue: string, options?: { after?: string; limit?: number }): Promise<JobRecord[]> {
    return this.inner.deadJobs(queue, options);
  }
  stats(queue: string): Promise<QueueStats> {
    return this.inner.stats(queue);
  }
  listQueues(): Promise<string[]> {
    return this.inner.listQueues();
  }
  waitForCompletion(jobId: string, timeoutMs: number): Promise<CompletionResult> {
    return this.inner.waitForCompletion(jobId, timeoutMs);
  }
  kvGet(key: string): Promise<Uint8Array | undefined> {
    return this.inner.kvGet(key);
  }
  kvDelete(key: string, options?: { ifValue?: Uint8Array }): Promise<boolean> {
    return this.inner.kvDelete(key, options);
  }
  subscribe(queue: string, listener: (notification: StoreNotification) => void): () => void {
    return this.inner.subscribe(queue, listener);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

/** The few MemoryStore fields two mutants reach into (test-only; checked at construction). */
interface MemoryInternals {
  jobs: Map<string, { attempts: number }>;
  kv: MemoryKv;
}

function memoryInternals(store: MemoryStore): MemoryInternals {
  const internals = store as unknown as Partial<MemoryInternals>;
  if (!(internals.jobs instanceof Map) || !(internals.kv instanceof MemoryKv)) {
    throw new Error('MemoryStore internals changed: update test/conformance/mutants.ts (fields "jobs" and "kv")');
  }
  return internals as MemoryInternals;
}

/** Writes kv values the way a buggy adapter would: outside any transaction. */
function forceKvWrites(store: MemoryStore, writes: KvWrite[] | undefined): void {
  const kv = memoryInternals(store).kv;
  for (const write of writes ?? []) kv.set(write.key, copyBytes(write.value), undefined);
}

/** Rewrites the `priority` reported in records (for mutants that store a different sort key). */
class PriorityRewritingStore extends ForwardingStore {
  protected readonly requested = new Map<string, number>();

  protected fix = (record: JobRecord): JobRecord => {
    const priority = this.requested.get(record.id);
    return priority === undefined ? record : { ...record, priority };
  };

  /** The priority the inner store should sort by. */
  protected sortKey(priority: number, _seq: number): number {
    return priority;
  }

  private seq = 0;
  constructor(
    inner: MemoryStore,
    private readonly defaults: (queue: string) => QueueConfig,
  ) {
    super(inner);
  }

  private rewrite(queue: string, options: EnqueueOptions | undefined): EnqueueOptions {
    const priority = options?.priority ?? this.defaults(queue).defaultPriority;
    return { ...options, priority: this.sortKey(priority, ++this.seq) };
  }

  // `options` as the caller passed it: absent or `undefined` alike.
  private remember(results: EnqueueResult[], requests: Array<{ queue: string; options?: EnqueueOptions | undefined }>): void {
    results.forEach((result, i) => {
      const request = requests[i];
      if (result.kind === 'new' && request) this.requested.set(result.id, request.options?.priority ?? this.defaults(request.queue).defaultPriority);
    });
  }

  override async enqueue(queue: string, payload: Uint8Array, options?: EnqueueOptions, kvWrites?: KvWrite[]): Promise<EnqueueResult> {
    const result = await super.enqueue(queue, payload, this.rewrite(queue, options), kvWrites);
    this.remember([result], [{ queue, options }]);
    return result;
  }
  override async enqueueBatch(queue: string, items: Array<{ payload: Uint8Array; options?: EnqueueOptions }>): Promise<EnqueueResult[]> {
    const results = await super.enqueueBatch(
      queue,
      items.map((item) => ({ payload: item.payload, options: this.rewrite(queue, item.options) })),
    );
    this.remember(
      results,
      items.map((item) => ({ queue, options: item.options })),
    );
    return results;
  }
  override async settle(claim: ClaimRef, settlement: Settlement): Promise<SettleResult> {
    const mapBranch = <B extends { effects?: Effects }>(branch: B): B =>
      branch.effects?.enqueue
        ? { ...branch, effects: { ...branch.effects, enqueue: branch.effects.enqueue.map((r) => ({ ...r, options: this.rewrite(r.queue, r.options) })) } }
        : branch;
    const rewritten: Settlement = mapBranch(settlement);
    if (settlement.ifCancelRequested) rewritten.ifCancelRequested = mapBranch(settlement.ifCancelRequested);
    const result = await super.settle(claim, rewritten);
    const used = result.branch === 'cancel' ? settlement.ifCancelRequested : settlement;
    this.remember(result.enqueued, used?.effects?.enqueue ?? []);
    return result;
  }
  override async claim(queue: string, options?: { leaseMs?: number; limit?: number }): Promise<Claim[]> {
    return (await super.claim(queue, options)).map((c) => ({ ...c, job: this.fix(c.job) }));
  }
  override async getJob(jobId: string): Promise<JobRecord | undefined> {
    const record = await super.getJob(jobId);
    return record && this.fix(record);
  }
  override async deadJobs(queue: string, options?: { after?: string; limit?: number }): Promise<JobRecord[]> {
    return (await super.deadJobs(queue, options)).map(this.fix);
  }
  override async cancel(jobId: string, effects?: Effects): Promise<CancelResult> {
    const result = await super.cancel(jobId, effects);
    return result.outcome === 'notFound' ? result : { ...result, job: this.fix(result.job) };
  }
  override async reap(): Promise<ReapReport> {
    const report = await super.reap();
    return { ...report, deadLettered: report.deadLettered.map(this.fix) };
  }
}

/** Tracks the live claim of every job, for mutants that act on claims from outside. */
class ClaimTrackingStore extends ForwardingStore {
  protected readonly live = new Map<string, { token: string; queue: string }>();
  override async claim(queue: string, options?: { leaseMs?: number; limit?: number }): Promise<Claim[]> {
    const claims = await super.claim(queue, options);
    for (const c of claims) this.live.set(c.jobId, { token: c.token, queue });
    return claims;
  }
}

export interface Mutant {
  name: string;
  /** The bug, as a reviewer would describe it. */
  bug: string;
  create: (ctx: StoreContext) => QueueStore;
  /** Several instances over one backing store, for bugs that live between instances (see `sharedMemory`). */
  createStores?: (n: number, ctx: StoreContext) => QueueStore[];
  destroyStores?: (stores: QueueStore[]) => Promise<void>;
  /** The broken store claims the capability (its bug is that it does not deliver). */
  crossProcessNotifications?: boolean;
}

/** One instance over a shared `MemoryStore`: what several processes on one database look like, in-process. */
export class MemoryInstance extends ForwardingStore {
  private readonly subscriptions = new Set<() => void>();
  constructor(
    inner: QueueStore,
    readonly index: number,
  ) {
    super(inner);
  }
  override subscribe(queue: string, listener: (notification: StoreNotification) => void): () => void {
    const unsubscribe = super.subscribe(queue, listener);
    this.subscriptions.add(unsubscribe);
    return () => {
      unsubscribe();
      this.subscriptions.delete(unsubscribe);
    };
  }
  /** Closing one instance leaves the shared store open (`destroyShared` closes it). */
  override async close(): Promise<void> {
    for (const unsubscribe of this.subscriptions) unsubscribe();
    this.subscriptions.clear();
  }
}

/**
 * `n` instances over one MemoryStore. A correct shared store in every
 * respect (the notifications of the shared store reach every instance), so
 * a mutant built on it breaks only what it overrides.
 */
export function sharedMemory(
  n: number,
  ctx: StoreContext,
  wrap: (inner: MemoryStore, index: number) => ForwardingStore = (inner, i) => new MemoryInstance(inner, i),
): QueueStore[] {
  const inner = memory(ctx);
  return Array.from({ length: n }, (_, i) => wrap(inner, i));
}

/** Closes the instances made by `sharedMemory`, then the shared store. */
export async function destroyShared(stores: QueueStore[]): Promise<void> {
  for (const store of stores) await store.close();
  const first = stores[0] as ForwardingStore | undefined;
  if (first) await first.inner.close();
}

/** Notes the name of every store call made through this instance (`lastCall`) and how many are in flight. */
class CallTrackingStore extends MemoryInstance {
  lastCall = '';
  inFlight = 0;
  constructor(inner: QueueStore, index: number) {
    super(inner, index);
    return new Proxy(this, {
      get: (target, prop, receiver) => {
        const value = Reflect.get(target, prop, receiver) as unknown;
        if (typeof value !== 'function' || typeof prop !== 'string' || prop === 'subscribe' || !STORE_METHODS.has(prop)) return value;
        return (...args: unknown[]) => {
          target.lastCall = prop;
          target.inFlight++;
          const done = (): void => void setImmediate(() => target.inFlight--);
          try {
            const result = (value as (...a: unknown[]) => Promise<unknown>).apply(receiver, args);
            void result.then(done, done);
            return result;
          } catch (error) {
            done();
            throw error;
          }
        };
      },
    });
  }
}

const STORE_METHODS = new Set([
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
  'getJob',
  'deadJobs',
  'stats',
  'listQueues',
  'waitForCompletion',
  'kvGet',
  'kvDelete',
]);

/** Drops the notifications `keep` refuses, on one instance. */
function filterNotifications<T extends CallTrackingStore>(store: T, keep: (n: StoreNotification, store: T) => boolean): T {
  const subscribe = store.subscribe.bind(store);
  store.subscribe = (queue, listener) =>
    subscribe(queue, (n) => {
      if (keep(n, store)) listener(n);
    });
  return store;
}

/** `waitForCompletion` waiters that a mutant can resolve early, shared by the instances of one backing store. */
class EarlyCompletions {
  private readonly waiters = new Map<string, Set<(result: CompletionResult) => void>>();
  wrap(jobId: string, waiting: Promise<CompletionResult>): Promise<CompletionResult> {
    return new Promise((resolve, reject) => {
      let set = this.waiters.get(jobId);
      if (!set) this.waiters.set(jobId, (set = new Set()));
      const finish = (result: CompletionResult): void => {
        set.delete(finish);
        resolve(result);
      };
      set.add(finish);
      waiting.then(finish, (error: unknown) => {
        set.delete(finish);
        reject(error);
      });
    });
  }
  resolve(jobId: string, result: CompletionResult): void {
    for (const finish of [...(this.waiters.get(jobId) ?? [])]) finish(result);
  }
}

/** Reports a nack that retries as a completion to every waiter of the job. */
class CompletesOnRetry extends MemoryInstance {
  constructor(
    inner: QueueStore,
    index: number,
    private readonly early: EarlyCompletions,
  ) {
    super(inner, index);
  }
  override waitForCompletion(jobId: string, timeoutMs: number): Promise<CompletionResult> {
    return this.early.wrap(jobId, super.waitForCompletion(jobId, timeoutMs));
  }
  override async settle(claim: ClaimRef, settlement: Settlement): Promise<SettleResult> {
    const result = await super.settle(claim, settlement);
    const action = result.branch === 'cancel' ? settlement.ifCancelRequested?.action : settlement.action;
    if (action?.type === 'nack' && (result.status === 'pending' || result.status === 'scheduled')) this.early.resolve(claim.jobId, { kind: 'completed' });
    return result;
  }
}

/** Drops `reaperDeadLetter` from every job it enqueues, directly or through effects. */
/** Drops `delayMs` from nack actions (valid ones: a bad one keeps its typed error). */
class DropsNackDelay extends MemoryInstance {
  private strip(action: SettleAction): SettleAction {
    return action.type === 'nack' && action.delayMs !== undefined && Number.isSafeInteger(action.delayMs) && action.delayMs >= 0
      ? { type: 'nack', error: action.error }
      : action;
  }
  override settle(claim: ClaimRef, settlement: Settlement): Promise<SettleResult> {
    const rewritten: Settlement = { ...settlement, action: this.strip(settlement.action) };
    if (settlement.ifCancelRequested)
      rewritten.ifCancelRequested = { ...settlement.ifCancelRequested, action: this.strip(settlement.ifCancelRequested.action) };
    return super.settle(claim, rewritten);
  }
}

/** Drops `ttlMs` from the kv writes of enqueues and settlements (after the argument checks would have seen it). */
class DropsKvTtl extends MemoryInstance {
  private strip(writes: KvWrite[] | undefined): KvWrite[] | undefined {
    return writes?.map((w) =>
      w.ttlMs !== undefined && Number.isSafeInteger(w.ttlMs) && w.ttlMs > 0 ? { key: w.key, value: w.value, ...(w.ifAbsent ? { ifAbsent: true } : {}) } : w,
    );
  }
  override enqueue(queue: string, payload: Uint8Array, options?: EnqueueOptions, kvWrites?: KvWrite[]): Promise<EnqueueResult> {
    return super.enqueue(queue, payload, options, this.strip(kvWrites));
  }
  override settle(claim: ClaimRef, settlement: Settlement): Promise<SettleResult> {
    const kvWrites = this.strip(settlement.effects?.kvWrites);
    return super.settle(claim, kvWrites === undefined ? settlement : { ...settlement, effects: { ...settlement.effects, kvWrites } });
  }
}

class IgnoresReaperTemplates extends MemoryInstance {
  override async setReaperTemplate(queue: string, template: ReaperTemplate | undefined): Promise<void> {
    // Checked like the real call, then dropped.
    await super.setReaperTemplate(queue, template);
    await super.setReaperTemplate(queue, undefined);
  }
}

/** Strips what a job carries on queues that have a template: the template then applies instead. */
class TemplateOverCarried extends MemoryInstance {
  private readonly withTemplate = new Set<string>();
  override async setReaperTemplate(queue: string, template: ReaperTemplate | undefined): Promise<void> {
    await super.setReaperTemplate(queue, template);
    if (template === undefined) this.withTemplate.delete(queue);
    else this.withTemplate.add(queue);
  }
  override enqueue(queue: string, payload: Uint8Array, options?: EnqueueOptions, kvWrites?: KvWrite[]): Promise<EnqueueResult> {
    if (!this.withTemplate.has(queue) || options?.reaperDeadLetter === undefined) return super.enqueue(queue, payload, options, kvWrites);
    const { reaperDeadLetter: _carried, ...rest } = options;
    return super.enqueue(queue, payload, rest, kvWrites);
  }
}

class DropsReaperEffects extends MemoryInstance {
  private strip(options: EnqueueOptions | undefined): EnqueueOptions | undefined {
    if (options?.reaperDeadLetter === undefined) return options;
    const { reaperDeadLetter: _reaperDeadLetter, ...rest } = options;
    return rest;
  }
  private stripEffects(effects: Effects | undefined): Effects | undefined {
    if (!effects?.enqueue) return effects;
    return { ...effects, enqueue: effects.enqueue.map((r) => ({ ...r, options: this.strip(r.options) ?? {} })) };
  }
  private stripBranch<B extends { effects?: Effects }>(branch: B): B {
    return branch.effects ? { ...branch, effects: this.stripEffects(branch.effects) as Effects } : branch;
  }
  override enqueue(queue: string, payload: Uint8Array, options?: EnqueueOptions, kvWrites?: KvWrite[]): Promise<EnqueueResult> {
    return super.enqueue(queue, payload, this.strip(options), kvWrites);
  }
  override enqueueBatch(queue: string, items: Array<{ payload: Uint8Array; options?: EnqueueOptions }>): Promise<EnqueueResult[]> {
    return super.enqueueBatch(
      queue,
      items.map((item) => ({ payload: item.payload, options: this.strip(item.options) ?? {} })),
    );
  }
  override settle(claim: ClaimRef, settlement: Settlement): Promise<SettleResult> {
    const rewritten: Settlement = this.stripBranch(settlement);
    if (settlement.ifCancelRequested) rewritten.ifCancelRequested = this.stripBranch(settlement.ifCancelRequested);
    return super.settle(claim, rewritten);
  }
  override cancel(jobId: string, effects?: Effects): Promise<CancelResult> {
    return super.cancel(jobId, this.stripEffects(effects));
  }
}

/** Notes which instance removed a job by cancel; a waiter on another instance then reports it completed. */
class CompletedWhenCancelledElsewhere extends MemoryInstance {
  constructor(
    inner: QueueStore,
    index: number,
    private readonly removedBy: Map<string, number>,
  ) {
    super(inner, index);
  }
  override async cancel(jobId: string, effects?: Effects): Promise<CancelResult> {
    const result = await super.cancel(jobId, effects);
    if (result.outcome === 'removed') this.removedBy.set(jobId, this.index);
    return result;
  }
  override async waitForCompletion(jobId: string, timeoutMs: number): Promise<CompletionResult> {
    const result = await super.waitForCompletion(jobId, timeoutMs);
    const by = this.removedBy.get(jobId);
    return result.kind === 'notFound' && by !== undefined && by !== this.index ? { kind: 'completed' } : result;
  }
}

/** Shared-memory factory options of a cross-instance mutant; `wrapper` runs once per backing store (for state its instances share). */
function shared(
  wrapper: () => (inner: MemoryStore, index: number) => ForwardingStore,
): Pick<Mutant, 'createStores' | 'destroyStores' | 'crossProcessNotifications'> {
  return { createStores: (n, ctx) => sharedMemory(n, ctx, wrapper()), destroyStores: destroyShared, crossProcessNotifications: true };
}

const memory = (ctx: StoreContext, overrides: Partial<QueueConfig> = {}): MemoryStore =>
  new MemoryStore({ ...ctx, defaultQueueConfig: { ...ctx.defaultQueueConfig, ...overrides } });

function configOf(ctx: StoreContext): (queue: string) => QueueConfig {
  const defaults: QueueConfig = {
    maxAttempts: 3,
    leaseDurationMs: 30_000,
    defaultPriority: 1000,
    retryBackoffBaseMs: 1000,
    retryBackoffMaxMs: 300_000,
    keepDoneJobsMs: undefined,
    deadRetentionMs: 7 * 86_400_000,
  };
  return (queue) => ({ ...defaults, ...ctx.defaultQueueConfig, ...ctx.queueConfigs?.[queue] });
}

export const MUTANTS: Mutant[] = [
  {
    name: 'dedup-not-released-on-claim',
    bug: 'claiming a job keeps its dedup key reserved, so a new job with that key is reported as already enqueued',
    create: (ctx) => {
      const inner = memory(ctx);
      const holders = new Map<string, string>();
      return new (class extends ForwardingStore {
        override async enqueue(queue: string, payload: Uint8Array, options?: EnqueueOptions, kvWrites?: KvWrite[]): Promise<EnqueueResult> {
          const key = options?.dedupKey === undefined ? undefined : `${queue}\u0000${options.dedupKey}`;
          const holder = key === undefined ? undefined : holders.get(key);
          if (holder !== undefined && (await inner.getJob(holder))?.status === 'claimed') return { kind: 'alreadyEnqueued', id: holder };
          const result = await super.enqueue(queue, payload, options, kvWrites);
          if (key !== undefined && result.kind === 'new') holders.set(key, result.id);
          return result;
        }
      })(inner);
    },
  },
  {
    name: 'kv-written-on-dedup-hit',
    bug: 'an enqueue that hits an existing dedup key still applies its kv writes',
    create: (ctx) => {
      const inner = memory(ctx);
      return new (class extends ForwardingStore {
        override async enqueue(queue: string, payload: Uint8Array, options?: EnqueueOptions, kvWrites?: KvWrite[]): Promise<EnqueueResult> {
          const result = await super.enqueue(queue, payload, options, kvWrites);
          if (result.kind === 'alreadyEnqueued') forceKvWrites(inner, kvWrites);
          return result;
        }
      })(inner);
    },
  },
  {
    name: 'attempts-not-counted-on-claim',
    bug: 'claim does not increment attempts, so failing jobs retry forever',
    create: (ctx) => {
      const inner = memory(ctx);
      const internals = memoryInternals(inner);
      return new (class extends ForwardingStore {
        override async claim(queue: string, options?: { leaseMs?: number; limit?: number }): Promise<Claim[]> {
          const claims = await super.claim(queue, options);
          return claims.map((c) => {
            const stored = internals.jobs.get(c.jobId);
            if (stored) stored.attempts -= 1;
            return { ...c, job: { ...c.job, attempts: c.job.attempts - 1 } };
          });
        }
      })(inner);
    },
  },
  {
    name: 'priority-ignored',
    bug: 'claim order ignores priority (plain FIFO by id)',
    create: (ctx) =>
      new (class extends PriorityRewritingStore {
        protected override sortKey(): number {
          return 0;
        }
      })(memory(ctx), configOf(ctx)),
  },
  {
    name: 'fifo-broken-within-priority',
    bug: 'among equal priorities the newest job is claimed first (LIFO)',
    create: (ctx) =>
      new (class extends PriorityRewritingStore {
        protected override sortKey(priority: number, seq: number): number {
          return priority * 1_000_000 + (1_000_000 - seq);
        }
      })(memory(ctx), configOf(ctx)),
  },
  {
    name: 'stale-token-accepted',
    bug: 'settle and renewLease check only the job id, not the claim token',
    create: (ctx) => {
      const inner = memory(ctx);
      return new (class extends ClaimTrackingStore {
        private current(claim: ClaimRef): ClaimRef {
          const live = this.live.get(claim.jobId);
          return live ? { jobId: claim.jobId, token: live.token } : claim;
        }
        override settle(claim: ClaimRef, settlement: Settlement): Promise<SettleResult> {
          return super.settle(this.current(claim), settlement);
        }
        override renewLease(claim: ClaimRef, extendMs: number): Promise<RenewResult> {
          return super.renewLease(this.current(claim), extendMs);
        }
      })(inner);
    },
  },
  {
    name: 'backoff-off-by-one',
    bug: 'the retry delay uses 2^n instead of 2^(n-1) (one attempt too far along the backoff curve)',
    create: (ctx) => {
      const base = ctx.defaultQueueConfig?.retryBackoffBaseMs ?? 1000;
      const queueConfigs: Record<string, Partial<QueueConfig>> = {};
      for (const [queue, config] of Object.entries(ctx.queueConfigs ?? {})) {
        queueConfigs[queue] = config.retryBackoffBaseMs === undefined ? config : { ...config, retryBackoffBaseMs: config.retryBackoffBaseMs * 2 };
      }
      // min(2b * 2^(n-1), max) = min(b * 2^n, max): exactly the off-by-one curve.
      return new MemoryStore({ ...ctx, defaultQueueConfig: { ...ctx.defaultQueueConfig, retryBackoffBaseMs: base * 2 }, queueConfigs });
    },
  },
  {
    name: 'cancel-deletes-claimed-job',
    bug: 'cancel of a claimed job deletes it instead of flagging it',
    create: (ctx) =>
      new (class extends ClaimTrackingStore {
        override async cancel(jobId: string, effects?: Effects): Promise<CancelResult> {
          const live = this.live.get(jobId);
          const job = await this.inner.getJob(jobId);
          if (live && job?.status === 'claimed') {
            try {
              await this.inner.settle({ jobId, token: live.token }, { action: { type: 'ack' } });
              this.live.delete(jobId);
              return { outcome: 'removed', job };
            } catch (error) {
              if (!(error instanceof LeaseLostError)) throw error;
            }
          }
          return super.cancel(jobId, effects);
        }
      })(memory(ctx)),
  },
  {
    name: 'reaper-dead-letters-early',
    bug: 'the reaper dead-letters an expired claim one attempt before maxAttempts',
    create: (ctx) => {
      const inner = memory(ctx);
      return new (class extends ClaimTrackingStore {
        override async reap(): Promise<ReapReport> {
          const early: JobRecord[] = [];
          for (const [jobId, live] of this.live) {
            const job = await inner.getJob(jobId);
            if (!job || job.status !== 'claimed' || job.leaseExpiresAt === undefined || job.leaseExpiresAt > ctx.clock.now()) continue;
            if (job.attempts !== job.maxAttempts - 1) continue;
            try {
              await inner.settle({ jobId, token: live.token }, { action: { type: 'deadLetter', reason: 'lease expired' } });
              const after = await inner.getJob(jobId);
              if (after) early.push(after);
            } catch (error) {
              if (!(error instanceof LeaseLostError)) throw error;
            }
          }
          const report = await super.reap();
          return { ...report, deadLettered: [...early, ...report.deadLettered] };
        }
      })(inner);
    },
  },
  {
    name: 'counter-drifts-on-requeue',
    bug: 'requeueDead moves the job but forgets to decrement the dead counter',
    create: (ctx) => {
      const drift = new Map<string, number>();
      return new (class extends ForwardingStore {
        override async requeueDead(jobId: string): Promise<void> {
          const job = await this.inner.getJob(jobId);
          await super.requeueDead(jobId);
          if (job) drift.set(job.queue, (drift.get(job.queue) ?? 0) + 1);
        }
        override async stats(queue: string): Promise<QueueStats> {
          const stats = await super.stats(queue);
          return { ...stats, dead: stats.dead + (drift.get(queue) ?? 0) };
        }
      })(memory(ctx));
    },
  },
  {
    name: 'effects-applied-when-settle-fails',
    bug: 'a settlement that loses its lease still applies its effects (writes outside the transaction)',
    create: (ctx) => {
      const inner = memory(ctx);
      return new (class extends ForwardingStore {
        override async settle(claim: ClaimRef, settlement: Settlement): Promise<SettleResult> {
          try {
            return await super.settle(claim, settlement);
          } catch (error) {
            if (error instanceof LeaseLostError) {
              forceKvWrites(inner, settlement.effects?.kvWrites);
              for (const key of settlement.effects?.kvDeletes ?? []) await inner.kvDelete(key);
            }
            throw error;
          }
        }
      })(inner);
    },
  },
  {
    name: 'cancel-branch-ignored',
    bug: 'settle always applies the primary branch, even when the job was cancelled',
    create: (ctx) =>
      new (class extends ForwardingStore {
        override settle(claim: ClaimRef, settlement: Settlement): Promise<SettleResult> {
          return super.settle(claim, { action: settlement.action, ...(settlement.effects ? { effects: settlement.effects } : {}) });
        }
      })(memory(ctx)),
  },
  {
    name: 'claim-token-reused',
    bug: 'the claim token is derived from the job id, so it stays the same across re-claims and a zombie settles the new claim',
    create: (ctx) =>
      new (class extends ForwardingStore {
        private readonly latest = new Map<string, string>();
        private real(claim: ClaimRef): ClaimRef {
          const token = claim.token === `t-${claim.jobId}` ? this.latest.get(claim.jobId) : undefined;
          return token === undefined ? claim : { jobId: claim.jobId, token };
        }
        override async claim(queue: string, options?: { leaseMs?: number; limit?: number }): Promise<Claim[]> {
          return (await super.claim(queue, options)).map((c) => {
            this.latest.set(c.jobId, c.token);
            return { ...c, token: `t-${c.jobId}` };
          });
        }
        override settle(claim: ClaimRef, settlement: Settlement): Promise<SettleResult> {
          return super.settle(this.real(claim), settlement);
        }
        override renewLease(claim: ClaimRef, extendMs: number): Promise<RenewResult> {
          return super.renewLease(this.real(claim), extendMs);
        }
      })(memory(ctx)),
  },
  {
    name: 'dead-page-short-after-cursor',
    bug: 'a dead-jobs page after a cursor holds one record fewer than its limit (an off-by-one at the page boundary), so a walk that stops at a short page misses records',
    create: (ctx) =>
      new (class extends ForwardingStore {
        override async deadJobs(queue: string, options?: { after?: string; limit?: number }): Promise<JobRecord[]> {
          if (options?.after === undefined) return super.deadJobs(queue, options);
          const page = await super.deadJobs(queue, options);
          return page.slice(0, (options.limit ?? 100) - 1);
        }
      })(memory(ctx)),
  },
  {
    name: 'backoff-ignores-cap',
    bug: 'the retry delay grows as base * 2^(n-1) without the retryBackoffMaxMs cap',
    create: (ctx) => {
      const uncapped = 2 ** 45;
      const queueConfigs: Record<string, Partial<QueueConfig>> = {};
      for (const [queue, config] of Object.entries(ctx.queueConfigs ?? {})) queueConfigs[queue] = { ...config, retryBackoffMaxMs: uncapped };
      return new MemoryStore({ ...ctx, defaultQueueConfig: { ...ctx.defaultQueueConfig, retryBackoffMaxMs: uncapped }, queueConfigs });
    },
  },
  {
    name: 'wait-completes-on-retrying-nack',
    bug: 'waitForCompletion resolves as completed when the job is nacked, even though the nack retries it',
    create: (ctx) => new CompletesOnRetry(memory(ctx), 0, new EarlyCompletions()),
    ...shared(() => {
      const early = new EarlyCompletions();
      return (inner, i) => new CompletesOnRetry(inner, i, early);
    }),
  },
  {
    name: 'caller-objects-kept-by-reference',
    bug: "the store keeps the caller's payload and headers objects by reference, so mutating them after enqueue changes the stored job",
    create: (ctx) =>
      new (class extends ForwardingStore {
        private readonly given = new Map<string, { payload: Uint8Array; headers?: Record<string, string> }>();
        private remember(results: EnqueueResult[], items: Array<{ payload: Uint8Array; options?: EnqueueOptions }>): void {
          results.forEach((result, i) => {
            const item = items[i];
            if (result.kind !== 'new' || !item) return;
            this.given.set(result.id, item.options?.headers ? { payload: item.payload, headers: item.options.headers } : { payload: item.payload });
          });
        }
        private fix = (record: JobRecord): JobRecord => {
          const given = this.given.get(record.id);
          return given ? { ...record, payload: given.payload, ...(given.headers ? { headers: given.headers } : {}) } : record;
        };
        override async enqueue(queue: string, payload: Uint8Array, options?: EnqueueOptions, kvWrites?: KvWrite[]): Promise<EnqueueResult> {
          const result = await super.enqueue(queue, payload, options, kvWrites);
          this.remember([result], [options ? { payload, options } : { payload }]);
          return result;
        }
        override async enqueueBatch(queue: string, items: Array<{ payload: Uint8Array; options?: EnqueueOptions }>): Promise<EnqueueResult[]> {
          const results = await super.enqueueBatch(queue, items);
          this.remember(results, items);
          return results;
        }
        override async claim(queue: string, options?: { leaseMs?: number; limit?: number }): Promise<Claim[]> {
          return (await super.claim(queue, options)).map((c) => ({ ...c, job: this.fix(c.job) }));
        }
        override async getJob(jobId: string): Promise<JobRecord | undefined> {
          const record = await super.getJob(jobId);
          return record && this.fix(record);
        }
      })(memory(ctx)),
  },
  {
    name: 'wakeups-only-on-enqueue',
    bug: 'jobsAvailable is sent for enqueues only: promote, a nack back to pending, a reap requeue and requeueDead wake nobody',
    create: (ctx) =>
      filterNotifications(
        new CallTrackingStore(memory(ctx), 0),
        (n, store) => n.type !== 'jobsAvailable' || store.lastCall === 'enqueue' || store.lastCall === 'enqueueBatch',
      ),
  },
  {
    name: 'cancel-not-notified',
    bug: 'cancel of a claimed job sets the flag but sends no cancelRequested notification',
    create: (ctx) => filterNotifications(new CallTrackingStore(memory(ctx), 0), (n) => n.type !== 'cancelRequested'),
  },
  {
    name: 'dead-letter-not-notified',
    bug: 'the reaper dead-letters expired claims without a deadLettered notification',
    create: (ctx) => filterNotifications(new CallTrackingStore(memory(ctx), 0), (n) => n.type !== 'deadLettered'),
  },
  {
    name: 'notifications-only-local',
    bug: 'notifications reach only subscribers of the instance that made the change, though the store declares cross-process notifications',
    create: (ctx) => memory(ctx),
    ...shared(() => (inner, i) => filterNotifications(new CallTrackingStore(inner, i), (_n, store) => store.inFlight > 0)),
  },
  {
    name: 'wait-cancelled-elsewhere-completed',
    bug: 'waitForCompletion reports a job that another instance removed by cancel as completed (it only sees the row disappear)',
    create: (ctx) => memory(ctx),
    ...shared(() => {
      const removedBy = new Map<string, number>();
      return (inner, i) => new CompletedWhenCancelledElsewhere(inner, i, removedBy);
    }),
  },
  {
    name: 'reaper-effects-dropped',
    bug: 'the effects a job carries for the reaper are not kept, so a reaper dead-letter applies none of them',
    create: (ctx) => new DropsReaperEffects(memory(ctx), 0),
    ...shared(() => (inner, i) => new DropsReaperEffects(inner, i)),
  },
  {
    name: 'nack-delay-ignored',
    bug: "a nack's own delayMs is dropped: the retry follows the queue's backoff",
    create: (ctx) => new DropsNackDelay(memory(ctx), 0),
    ...shared(() => (inner, i) => new DropsNackDelay(inner, i)),
  },
  {
    name: 'kv-ttl-ignored',
    bug: 'kv writes keep their records forever: ttlMs is accepted and dropped',
    create: (ctx) => new DropsKvTtl(memory(ctx), 0),
    ...shared(() => (inner, i) => new DropsKvTtl(inner, i)),
  },
  {
    name: 'reaper-template-ignored',
    bug: 'setReaperTemplate is accepted and forgotten, so a job that carries no branch of its own is dead-lettered with no effects',
    create: (ctx) => new IgnoresReaperTemplates(memory(ctx), 0),
    ...shared(() => (inner, i) => new IgnoresReaperTemplates(inner, i)),
  },
  {
    name: 'reaper-template-over-carried',
    bug: "a queue's reaper template is applied instead of the branch a job carries",
    create: (ctx) => new TemplateOverCarried(memory(ctx), 0),
    ...shared(() => (inner, i) => new TemplateOverCarried(inner, i)),
  },
];

/** The suite options of a mutant: its factories and the capability it claims. */
export function mutantOptions(mutant: Mutant, extra: Partial<ConformanceOptions> = {}): ConformanceOptions {
  const options: ConformanceOptions = { name: mutant.name, createStore: mutant.create, ...extra };
  if (mutant.createStores) options.createStores = mutant.createStores;
  if (mutant.destroyStores) options.destroyStores = mutant.destroyStores;
  if (mutant.crossProcessNotifications) options.crossProcessNotifications = true;
  return options;
}
