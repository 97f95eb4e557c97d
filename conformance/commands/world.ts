/**
 * The world every store command runs in: the reference model and the store
 * under test side by side, the pairing of their job ids, the claims handed
 * out so far, and `both`, which runs one operation on each side and compares.
 *
 * Ids: jobs enqueued without an id get a store-generated ULID in the store
 * and a readable sequential id (`#000001`, ...) in the model. Both sort in
 * generation order, so the suite maps one to the other by position: the n-th
 * generated id of the store is the n-th of the model. Caller-supplied ids
 * (`x-a` ... `x-e`, lower-case so they sort after every ULID) are the same on
 * both sides, and may be reused, collide and be deleted, which exercises the
 * "id in use" rule and FIFO order independent of insertion order.
 */
import type fc from 'fast-check';
import type { ManualClock } from '../../core/clock.js';
import { compareIds } from '../../core/ids.js';
import type { StoreOptions } from '../../core/queue-config.js';
import type { Claim, ClaimRef, EnqueueResult, JobRecord, QueueStore, ReapReport } from '../../core/queue-store.js';
import { ConformanceError, expectSame, expectSameOutcome, outcome } from '../compare.js';
import type { Outcome } from '../compare.js';
import { QueueModel } from '../model/index.js';

/** Queues commands write to; `q3` is only ever read, so it stays unknown. */
export const QUEUES = ['q1', 'q2'] as const;
export const READ_QUEUES = ['q1', 'q2', 'q3'] as const;
export const SUPPLIED_IDS = ['x-a', 'x-b', 'x-c', 'x-d', 'x-e'] as const;
export const KV_KEYS = ['k1', 'k2', 'k3'] as const;

/** The state shared by the model side and the store side of one run. */
export class StoreWorld {
  readonly model: QueueModel;
  private readonly realToModel = new Map<string, string>();
  private readonly modelToReal = new Map<string, string>();
  /** Every model id that ever existed, in creation order. */
  readonly ids: string[] = [];
  /** Every claim handed out, live or stale: model and store views of the same delivery. */
  readonly claims: Array<{ model: ClaimRef; real: ClaimRef }> = [];
  private seq = 0;

  constructor(
    /** The instance commands go through; the cross-instance property switches it per command. */
    public store: QueueStore,
    readonly clock: ManualClock,
    config: Pick<StoreOptions, 'defaultQueueConfig' | 'queueConfigs'>,
  ) {
    this.model = new QueueModel(config, () => `#${String(++this.seq).padStart(6, '0')}`);
  }

  toModel(realId: string): string {
    return this.realToModel.get(realId) ?? realId;
  }

  toReal(modelId: string): string {
    return this.modelToReal.get(modelId) ?? modelId;
  }

  /** Records the pairing of a new job's ids; a disagreement is itself a failure. */
  pair(what: string, expected: EnqueueResult, actual: EnqueueResult): void {
    if (expected.kind === 'new' && actual.kind === 'new') {
      if (expected.id.startsWith('#')) {
        if (this.realToModel.has(actual.id)) throw new ConformanceError(`${what}: the store reused id ${actual.id} for a new job`);
        this.realToModel.set(actual.id, expected.id);
        this.modelToReal.set(expected.id, actual.id);
      }
      if (!this.ids.includes(expected.id)) this.ids.push(expected.id);
    }
  }

  pairAll(what: string, expected: EnqueueResult[], actual: EnqueueResult[]): void {
    expected.forEach((result, i) => {
      const other = actual[i];
      if (other) this.pair(what, result, other);
    });
  }

  enqueueResult = (result: EnqueueResult): EnqueueResult => (result.kind === 'kvConflict' ? result : { kind: result.kind, id: this.toModel(result.id) });

  record = (record: JobRecord): JobRecord => ({ ...record, id: this.toModel(record.id) });

  /** A store claim in model terms (tokens are opaque and compared by role, not text). */
  claim = (claim: Claim): unknown => ({ jobId: this.toModel(claim.jobId), job: this.record(claim.job) });

  reapReport = (report: ReapReport): unknown => ({
    requeued: report.requeued.map((id) => this.toModel(id)).sort(compareIds),
    deadLettered: report.deadLettered.map(this.record).sort((a, b) => compareIds(a.id, b.id)),
    effectsApplied: report.effectsApplied.map((id) => this.toModel(id)).sort(compareIds),
    doneSwept: report.doneSwept,
    deadSwept: report.deadSwept,
  });

  /** Jobs with supplied ids that effects without enqueue results (cancel, reaper) created: compared from now on. */
  trackSuppliedIds(): void {
    for (const id of SUPPLIED_IDS) if (this.model.getJob(id) && !this.ids.includes(id)) this.ids.push(id);
  }

  /** A job id a command refers to: an index into known ids, the n-th job in a status, or a fixed supplied/unknown id. */
  target(pick: JobPick): string {
    if (typeof pick === 'string') return pick;
    if (typeof pick === 'object') {
      const inStatus = this.ids.filter((id) => this.model.getJob(id)?.status === pick.status);
      if (inStatus.length > 0) return inStatus[pick.index % inStatus.length] as string;
      return this.ids.length === 0 ? 'x-unknown' : (this.ids[pick.index % this.ids.length] as string);
    }
    return this.ids.length === 0 ? 'x-unknown' : (this.ids[pick % this.ids.length] as string);
  }

  /** Compares every observable part of the state: job records, counters, dead pages, queues, kv. */
  async checkState(after: string): Promise<void> {
    for (const id of this.ids) {
      expectSame(`after ${after}: getJob(${id})`, this.model.getJob(id), normalizeOptional(await this.store.getJob(this.toReal(id)), this.record));
    }
    for (const queue of READ_QUEUES) {
      expectSame(`after ${after}: stats(${queue})`, this.model.stats(queue), await this.store.stats(queue));
      const dead = this.model.deadJobs(queue);
      expectSame(`after ${after}: deadJobs(${queue})`, dead, (await this.store.deadJobs(queue)).map(this.record));
      if (dead.length > 2) {
        // Walk the pages with a small limit: the cursor is exclusive and in id order.
        const pages: JobRecord[] = [];
        let cursor: string | undefined;
        for (let i = 0; i < 100; i++) {
          const page = await this.store.deadJobs(queue, cursor === undefined ? { limit: 2 } : { after: cursor, limit: 2 });
          pages.push(...page.map(this.record));
          if (page.length < 2) break;
          cursor = (page[page.length - 1] as JobRecord).id;
        }
        expectSame(`after ${after}: deadJobs(${queue}) walked in pages of 2`, dead, pages);
      }
    }
    expectSame(`after ${after}: listQueues()`, this.model.listQueues(), await this.store.listQueues());
    for (const key of KV_KEYS) expectSame(`after ${after}: kvGet(${key})`, this.model.kvGet(this.clock.now(), key), await this.store.kvGet(key));
  }
}

function normalizeOptional<T>(value: T | undefined, normalize: (value: T) => T): T | undefined {
  return value === undefined ? undefined : normalize(value);
}

/** A command's job reference: index into the ids created so far, the n-th job in a status, or a literal id. */
export type JobPick = number | string | { status: JobRecord['status']; index: number };

export function showJobPick(pick: JobPick | undefined): string {
  if (pick === undefined) return 'undefined';
  if (typeof pick === 'number') return `job#${pick}`;
  if (typeof pick === 'object') return `${pick.status}#${pick.index}`;
  return pick;
}

/** A command of the model-based property: `check` and `run` on the shared `StoreWorld`. */
export type StoreCommand = fc.AsyncCommand<StoreWorld, StoreWorld>;

/** Which claim a settle/renew uses: index into every claim so far (live or stale), or a forged token. */
export interface ClaimPick {
  index: number;
  forged: boolean;
}

export function pickClaim(world: StoreWorld, pick: ClaimPick): { model: ClaimRef; real: ClaimRef } | undefined {
  const chosen = world.claims[pick.index % Math.max(1, world.claims.length)];
  if (!chosen) return undefined;
  if (!pick.forged) return chosen;
  return { model: { jobId: chosen.model.jobId, token: 'forged' }, real: { jobId: chosen.real.jobId, token: 'forged' } };
}

export function showPick(pick: ClaimPick): string {
  return `claim#${pick.index}${pick.forged ? ' (forged token)' : ''}`;
}

/** Runs one operation on both sides and compares results; `pairIds` records new-job ids. */
export async function both<T>(
  world: StoreWorld,
  what: string,
  onModel: (now: number) => T,
  onStore: () => Promise<T>,
  normalize: (value: T) => unknown,
  pairIds?: (expected: T, actual: T) => void,
  normalizeModel?: (value: T) => unknown,
): Promise<{ expected: Outcome<T>; actual: Outcome<T> }> {
  const now = world.clock.now();
  const expected = await outcome(() => onModel(now));
  const actual = await outcome(onStore);
  if (pairIds && expected.ok && actual.ok) pairIds(expected.value, actual.value);
  const shownExpected: Outcome<unknown> = expected.ok && normalizeModel ? { ok: true, value: normalizeModel(expected.value) } : expected;
  expectSameOutcome(what, shownExpected, actual as Outcome<unknown>, normalize as (value: unknown) => unknown);
  return { expected, actual };
}
