/**
 * Broken stores that only the deterministic examples of the store-level
 * suite catch in every run: each wraps a `MemoryStore` and adds one bug an
 * adapter author could plausibly write, which random command sequences
 * reach only by luck (or never). `example-mutants.test.ts` asserts that a
 * default run rejects each one, and which check does it.
 */
import { MemoryStore } from '../../adapters/memory/index.js';
import { canonical } from '../../conformance/compare.js';
import type { StoreContext } from '../../conformance/index.js';
import type { QueueConfig } from '../../core/queue-config.js';
import type {
  Claim,
  ClaimRef,
  CompletionResult,
  EnqueueOptions,
  EnqueueResult,
  Headers,
  JobRecord,
  KvWrite,
  QueueStore,
  RenewResult,
  SettleResult,
  Settlement,
} from '../../core/queue-store.js';
import { ForwardingStore } from './mutants.js';

export interface ExampleMutant {
  name: string;
  bug: string;
  /** The check (by a part of its name) that must catch it. */
  caughtBy: string;
  create: (ctx: StoreContext) => QueueStore;
}

const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && a.every((byte, i) => byte === b[i]);

/**
 * Keeps the caller's payload and headers objects of some enqueues and reads
 * the record's payload and headers from them (copied on the way out, as
 * records must be): a store that stores what it is given without copying.
 * A kept reference is used only while the stored job still is that job.
 */
class KeepsCallerObjects extends ForwardingStore {
  private readonly refs = new Map<string, { payload: Uint8Array; headers: Headers | undefined; payloadAt: Uint8Array; headersAt: string }>();

  protected keep(id: string, payload: Uint8Array, headers: Headers | undefined): void {
    this.refs.set(id, { payload, headers, payloadAt: payload.slice(), headersAt: canonical(headers ?? {}) });
  }

  protected forget(id: string): void {
    this.refs.delete(id);
  }

  private view = (record: JobRecord): JobRecord => {
    const ref = this.refs.get(record.id);
    if (!ref || !sameBytes(record.payload, ref.payloadAt) || canonical(record.headers) !== ref.headersAt) return record;
    return { ...record, payload: ref.payload.slice(), headers: { ...(ref.headers ?? {}) } };
  };

  override async enqueue(queue: string, payload: Uint8Array, options?: EnqueueOptions, kvWrites?: KvWrite[]): Promise<EnqueueResult> {
    const result = await super.enqueue(queue, payload, options, kvWrites);
    if (result.kind === 'new') this.forget(result.id);
    return result;
  }
  override async claim(queue: string, options?: { leaseMs?: number; limit?: number }): Promise<Claim[]> {
    return (await super.claim(queue, options)).map((c) => ({ ...c, job: this.view(c.job) }));
  }
  override async getJob(jobId: string): Promise<JobRecord | undefined> {
    const record = await super.getJob(jobId);
    return record && this.view(record);
  }
  override async deadJobs(queue: string, options?: { after?: string; limit?: number }): Promise<JobRecord[]> {
    return (await super.deadJobs(queue, options)).map(this.view);
  }
}

const memory = (ctx: StoreContext): MemoryStore => new MemoryStore(ctx);

export const EXAMPLE_MUTANTS: ExampleMutant[] = [
  {
    name: 'token-kept-across-reclaims',
    bug: 'a re-claim hands out the same claim token as the earlier delivery, so a zombie can settle or renew after another worker claimed the job',
    caughtBy: 'a re-claimed job',
    create: (ctx) => {
      const stable = new Map<string, string>();
      const current = new Map<string, string>();
      return new (class extends ForwardingStore {
        private translate(ref: ClaimRef): ClaimRef {
          return stable.get(ref.jobId) === ref.token ? { jobId: ref.jobId, token: current.get(ref.jobId) as string } : ref;
        }
        override async claim(queue: string, options?: { leaseMs?: number; limit?: number }): Promise<Claim[]> {
          return (await super.claim(queue, options)).map((c) => {
            const token = stable.get(c.jobId) ?? c.token;
            stable.set(c.jobId, token);
            current.set(c.jobId, c.token);
            return { ...c, token };
          });
        }
        override settle(claim: ClaimRef, settlement: Settlement): Promise<SettleResult> {
          return super.settle(this.translate(claim), settlement);
        }
        override renewLease(claim: ClaimRef, extendMs: number): Promise<RenewResult> {
          return super.renewLease(this.translate(claim), extendMs);
        }
      })(memory(ctx));
    },
  },
  {
    name: 'backoff-ignores-cap',
    bug: 'the retry delay grows as base * 2^(n-1) without ever being capped at retryBackoffMaxMs',
    caughtBy: 'nack backs off',
    create: (ctx) => {
      const uncapped = (config: Partial<QueueConfig> | undefined): Partial<QueueConfig> => ({ ...config, retryBackoffMaxMs: Number.MAX_SAFE_INTEGER });
      const queueConfigs = Object.fromEntries(Object.entries(ctx.queueConfigs ?? {}).map(([queue, config]) => [queue, uncapped(config)]));
      return new MemoryStore({ ...ctx, defaultQueueConfig: uncapped(ctx.defaultQueueConfig), queueConfigs });
    },
  },
  {
    name: 'dead-page-short-before-more',
    bug: 'a deadJobs page with more dead jobs after it returns limit - 1 jobs (an off-by-one in the "is there more" read-ahead)',
    caughtBy: 'deadJobs pages with limits 1, 2 and 3',
    create: (ctx) =>
      new (class extends ForwardingStore {
        override async deadJobs(queue: string, options?: { after?: string; limit?: number }): Promise<JobRecord[]> {
          const limit = options?.limit;
          // Bad limits keep their typed error.
          if (limit === undefined || !Number.isSafeInteger(limit) || limit < 1) return super.deadJobs(queue, options);
          const all = await super.deadJobs(queue, options?.after === undefined ? {} : { after: options.after });
          return all.length > limit ? all.slice(0, limit - 1) : all.slice(0, limit);
        }
      })(memory(ctx)),
  },
  {
    name: 'wait-resolves-on-retrying-nack',
    bug: 'waitForCompletion resolves on any settlement of the job, including a nack that schedules a retry',
    caughtBy: 'waitForCompletion is held across a nack',
    create: (ctx) => {
      const waiters = new Map<string, Array<(result: CompletionResult) => void>>();
      return new (class extends ForwardingStore {
        override waitForCompletion(jobId: string, timeoutMs: number): Promise<CompletionResult> {
          return new Promise((resolve, reject) => {
            waiters.set(jobId, [...(waiters.get(jobId) ?? []), resolve]);
            super.waitForCompletion(jobId, timeoutMs).then(resolve, reject);
          });
        }
        override async settle(claim: ClaimRef, settlement: Settlement): Promise<SettleResult> {
          const result = await super.settle(claim, settlement);
          const job = await this.inner.getJob(claim.jobId);
          for (const resolve of waiters.get(claim.jobId) ?? []) resolve(job ? { kind: 'completed', job } : { kind: 'completed' });
          waiters.delete(claim.jobId);
          return result;
        }
      })(memory(ctx));
    },
  },
  {
    name: 'wait-ignores-cancel',
    bug: 'waitForCompletion of a job removed by cancel keeps waiting and times out instead of reporting notFound',
    caughtBy: 'waitForCompletion of a job cancelled while waited on',
    create: (ctx) =>
      new (class extends ForwardingStore {
        override async waitForCompletion(jobId: string, timeoutMs: number): Promise<CompletionResult> {
          // Both calls start now (the wait's timeout counts from the call).
          const record = this.inner.getJob(jobId);
          const started = ctx.clock.now();
          const waiting = super.waitForCompletion(jobId, timeoutMs);
          const existed = (await record) !== undefined;
          const result = await waiting;
          if (result.kind !== 'notFound' || !existed) return result;
          const left = started + timeoutMs - ctx.clock.now();
          if (left <= 0) return { kind: 'timedOut' };
          return new Promise((resolve) => ctx.clock.setTimer(() => resolve({ kind: 'timedOut' }), left));
        }
      })(memory(ctx)),
  },
  {
    name: 'enqueue-keeps-caller-objects',
    bug: "enqueue and enqueueBatch store the caller's payload and headers objects instead of copies",
    caughtBy: 'caller-owned buffers and objects are copied',
    create: (ctx) =>
      new (class extends KeepsCallerObjects {
        override async enqueue(queue: string, payload: Uint8Array, options?: EnqueueOptions, kvWrites?: KvWrite[]): Promise<EnqueueResult> {
          const result = await super.enqueue(queue, payload, options, kvWrites);
          if (result.kind === 'new') this.keep(result.id, payload, options?.headers);
          return result;
        }
        override async enqueueBatch(queue: string, items: Array<{ payload: Uint8Array; options?: EnqueueOptions }>): Promise<EnqueueResult[]> {
          const results = await super.enqueueBatch(queue, items);
          results.forEach((result, i) => {
            const item = items[i];
            if (result.kind === 'new' && item) this.keep(result.id, item.payload, item.options?.headers);
          });
          return results;
        }
      })(memory(ctx)),
  },
  {
    name: 'settle-keeps-effect-objects',
    bug: "the jobs a settlement enqueues keep the caller's payload and headers objects instead of copies",
    caughtBy: 'caller-owned buffers and objects are copied',
    create: (ctx) =>
      new (class extends KeepsCallerObjects {
        override async settle(claim: ClaimRef, settlement: Settlement): Promise<SettleResult> {
          const result = await super.settle(claim, settlement);
          const applied = result.branch === 'cancel' ? settlement.ifCancelRequested : result.branch === 'primary' ? settlement : undefined;
          result.enqueued.forEach((enqueued, i) => {
            const request = applied?.effects?.enqueue?.[i];
            if (enqueued.kind === 'new' && request) this.keep(enqueued.id, request.payload, request.options?.headers);
          });
          return result;
        }
      })(memory(ctx)),
  },
  {
    name: 'claimed-record-shared',
    bug: "the record a claim returns is the store's own object: getJob returns it again, with whatever the caller changed in it",
    caughtBy: 'records handed out by claim, getJob and deadJobs are copies',
    create: (ctx) => {
      const shared = new Map<string, { record: JobRecord; storedAs: string }>();
      return new (class extends ForwardingStore {
        override async claim(queue: string, options?: { leaseMs?: number; limit?: number }): Promise<Claim[]> {
          const claims = await super.claim(queue, options);
          for (const c of claims) shared.set(c.jobId, { record: c.job, storedAs: canonical(c.job) });
          return claims;
        }
        override async getJob(jobId: string): Promise<JobRecord | undefined> {
          const record = await super.getJob(jobId);
          const entry = shared.get(jobId);
          return entry && record && canonical(record) === entry.storedAs ? entry.record : record;
        }
      })(memory(ctx));
    },
  },
];
