/**
 * Model-based properties of the store contract (core/queue-store.ts): random command
 * sequences run on the store under test and on the reference model, with
 * every return value and all observable state compared after each command.
 *
 * Ids: jobs enqueued without an id get a store-generated ULID in the store
 * and a readable sequential id (`#000001`, ...) in the model. Both sort in
 * generation order, so the suite maps one to the other by position: the n-th
 * generated id of the store is the n-th of the model. Caller-supplied ids
 * (`x-a` ... `x-e`, lower-case so they sort after every ULID) are the same on
 * both sides, and may be reused, collide and be deleted, which exercises the
 * "id in use" rule and FIFO order independent of insertion order.
 */
import fc from 'fast-check';
import { ManualClock } from '../core/clock.js';
import { createHeaders } from '../core/headers.js';
import { compareIds } from '../core/ids.js';
import type { QueueConfig } from '../core/queue-config.js';
import type {
  Claim,
  ClaimRef,
  Effects,
  EnqueueOptions,
  EnqueueRequest,
  EnqueueResult,
  Headers,
  JobRecord,
  KvWrite,
  QueueStore,
  ReaperDeadLetterBranch,
  ReapReport,
  SettleAction,
  Settlement,
  SettlementBranch,
} from '../core/queue-store.js';
import { ConformanceError, expectSame, expectSameOutcome, outcome, show } from './compare.js';
import type { Outcome } from './compare.js';
import { QueueModel } from './model.js';
import { assertProperty, withGuardedStore } from './checks.js';
import { replayPath, runParameters } from './options.js';
import type { ConformanceOptions, StoreContext } from './options.js';

/** Queues commands write to; `q3` is only ever read, so it stays unknown. */
export const QUEUES = ['q1', 'q2'] as const;
const READ_QUEUES = ['q1', 'q2', 'q3'] as const;
const SUPPLIED_IDS = ['x-a', 'x-b', 'x-c', 'x-d', 'x-e'] as const;
const KV_KEYS = ['k1', 'k2', 'k3'] as const;
const START = Date.parse('2026-01-01T00:00:00Z');

/** A queue configuration the suite runs a property under. */
export interface ConfigProfile {
  label: string;
  defaultQueueConfig: Partial<QueueConfig>;
  queueConfigs: Record<string, Partial<QueueConfig>>;
}

/**
 * Profiles chosen per run: short leases and backoff so clock advances matter;
 * done retention off/on/zero; dead retention finite/forever/zero; a queue with
 * one attempt and another default priority.
 */
export const CONFIG_PROFILES: readonly ConfigProfile[] = [
  {
    label: 'backoff 100..400, no done retention, dead kept 20s; q2: 1 attempt, priority 500, done kept 0ms',
    defaultQueueConfig: { leaseDurationMs: 1000, retryBackoffBaseMs: 100, retryBackoffMaxMs: 400, deadRetentionMs: 20_000 },
    queueConfigs: { q2: { maxAttempts: 1, defaultPriority: 500, keepDoneJobsMs: 0 } },
  },
  {
    label: '2 attempts, zero backoff, done kept 2s, dead kept forever; q2: backoff 300 capped, dead kept 0ms',
    defaultQueueConfig: { maxAttempts: 2, leaseDurationMs: 500, retryBackoffBaseMs: 0, keepDoneJobsMs: 2000, deadRetentionMs: null },
    queueConfigs: { q2: { retryBackoffBaseMs: 300, retryBackoffMaxMs: 300, deadRetentionMs: 0 } },
  },
  {
    label: 'spec defaults (lease 30s, backoff 1s..300s), done kept 5s',
    defaultQueueConfig: { keepDoneJobsMs: 5000 },
    queueConfigs: {},
  },
];

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
    profile: ConfigProfile,
  ) {
    this.model = new QueueModel(profile, () => `#${String(++this.seq).padStart(6, '0')}`);
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
    for (const key of KV_KEYS) expectSame(`after ${after}: kvGet(${key})`, this.model.kvGet(key), await this.store.kvGet(key));
  }
}

function normalizeOptional<T>(value: T | undefined, normalize: (value: T) => T): T | undefined {
  return value === undefined ? undefined : normalize(value);
}

/** A command's job reference: index into the ids created so far, the n-th job in a status, or a literal id. */
export type JobPick = number | string | { status: JobRecord['status']; index: number };

function showJobPick(pick: JobPick | undefined): string {
  if (pick === undefined) return 'undefined';
  if (typeof pick === 'number') return `job#${pick}`;
  if (typeof pick === 'object') return `${pick.status}#${pick.index}`;
  return pick;
}

type StoreCommand = fc.AsyncCommand<StoreWorld, StoreWorld>;

// ---- argument specs (plain data, so commands print readably) -------------

interface OptionSpec {
  id?: string;
  dedupKey?: string;
  priority?: number;
  /** Relative to the clock at run time. */
  runAtOffset?: number;
  maxAttempts?: number;
  headers?: 'plain' | 'proto';
  /** Measured by the store at commit (never with `runAtOffset`). */
  delayMs?: number;
  reaper?: ReaperSpec;
}

interface PreconditionSpec {
  key: string;
  equals: Uint8Array;
}

/** Effects a job carries for the reaper's dead-letter of it. */
interface ReaperSpec {
  precondition?: PreconditionSpec;
  effects?: EffectsSpec;
  ifCancelRequested?: EffectsSpec;
}

function buildReaper(spec: ReaperSpec, now: number): ReaperDeadLetterBranch {
  const branch: ReaperDeadLetterBranch = {};
  if (spec.precondition) branch.precondition = { key: spec.precondition.key, equals: spec.precondition.equals };
  const effects = buildEffects(spec.effects, now);
  if (effects) branch.effects = effects;
  const ifCancelRequested = buildEffects(spec.ifCancelRequested, now);
  if (ifCancelRequested) branch.ifCancelRequested = ifCancelRequested;
  return branch;
}

function showPrecondition(spec: PreconditionSpec): string {
  return `${spec.key}==${show(spec.equals)}`;
}

function showReaper(spec: ReaperSpec): string {
  const parts: string[] = [];
  if (spec.precondition) parts.push(`if ${showPrecondition(spec.precondition)}`);
  if (spec.effects) parts.push(`effects ${showEffects(spec.effects)}`);
  if (spec.ifCancelRequested) parts.push(`ifCancelRequested ${showEffects(spec.ifCancelRequested)}`);
  return `{${parts.join(', ')}}`;
}

function buildHeaders(kind: OptionSpec['headers']): Headers | undefined {
  if (kind === undefined) return undefined;
  const headers = createHeaders();
  if (kind === 'plain') headers.a = '1';
  else headers['__proto__'] = 'p';
  return headers;
}

function buildOptions(spec: OptionSpec, now: number): EnqueueOptions | undefined {
  const options: EnqueueOptions = {};
  if (spec.id !== undefined) options.id = spec.id;
  if (spec.dedupKey !== undefined) options.dedupKey = spec.dedupKey;
  if (spec.priority !== undefined) options.priority = spec.priority;
  if (spec.runAtOffset !== undefined) options.runAt = now + spec.runAtOffset;
  if (spec.maxAttempts !== undefined) options.maxAttempts = spec.maxAttempts;
  if (spec.delayMs !== undefined) options.delayMs = spec.delayMs;
  if (spec.reaper !== undefined) options.reaperDeadLetter = buildReaper(spec.reaper, now);
  const headers = buildHeaders(spec.headers);
  if (headers) options.headers = headers;
  return Object.keys(options).length === 0 ? undefined : options;
}

function showOptions(spec: OptionSpec): string {
  const { runAtOffset, reaper, ...rest } = spec;
  const text = reaper === undefined ? show(rest) : `${show(rest).slice(0, -1)}${Object.keys(rest).length > 0 ? ', ' : ''}reaperDeadLetter: ${showReaper(reaper)}}`;
  if (runAtOffset === undefined) return text;
  const offset = `runAt: now${runAtOffset >= 0 ? '+' : ''}${runAtOffset}`;
  return text === '{}' ? `{${offset}}` : `${text.slice(0, -1)}, ${offset}}`;
}

interface EnqueueSpec {
  queue: string;
  payload: Uint8Array;
  options: OptionSpec;
}

function buildRequest(spec: EnqueueSpec, now: number): EnqueueRequest {
  const options = buildOptions(spec.options, now);
  return options ? { queue: spec.queue, payload: spec.payload, options } : { queue: spec.queue, payload: spec.payload };
}

interface EffectsSpec {
  enqueue: EnqueueSpec[];
  kvWrites: KvWrite[];
  kvDeletes: string[];
}

function buildEffects(spec: EffectsSpec | undefined, now: number): Effects | undefined {
  if (!spec) return undefined;
  return { enqueue: spec.enqueue.map((e) => buildRequest(e, now)), kvWrites: spec.kvWrites, kvDeletes: spec.kvDeletes };
}

function showEffects(spec: EffectsSpec | undefined): string {
  if (!spec) return 'none';
  const parts: string[] = [];
  for (const e of spec.enqueue) parts.push(`enqueue(${e.queue}, ${show(e.payload)}, ${showOptions(e.options)})`);
  for (const w of spec.kvWrites) parts.push(`set ${w.key}=${show(w.value)}`);
  for (const k of spec.kvDeletes) parts.push(`delete ${k}`);
  return `[${parts.join('; ')}]`;
}

interface BranchSpec {
  action: SettleAction;
  effects?: EffectsSpec;
}

function showAction(action: SettleAction): string {
  return action.type === 'ack' ? 'ack' : action.type === 'nack' ? `nack(${JSON.stringify(action.error)})` : `deadLetter(${JSON.stringify(action.reason)})`;
}

function showKvWrites(writes: KvWrite[]): string {
  return `[${writes.map((w) => `${w.key}=${show(w.value)}${w.ifAbsent ? ' ifAbsent' : ''}`).join(', ')}]`;
}

// ---- commands --------------------------------------------------------------

/** Runs one operation on both sides and compares results; `pairIds` records new-job ids. */
async function both<T>(
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

export class EnqueueCommand implements StoreCommand {
  constructor(
    readonly spec: EnqueueSpec,
    readonly kvWrites: KvWrite[] | undefined,
  ) {}
  check = (): boolean => true;
  async run(world: StoreWorld): Promise<void> {
    const options = buildOptions(this.spec.options, world.clock.now());
    await both(
      world,
      this.toString(),
      (now) => world.model.enqueue(now, this.spec.queue, this.spec.payload, options, this.kvWrites),
      () => world.store.enqueue(this.spec.queue, this.spec.payload, options, this.kvWrites),
      world.enqueueResult,
      (e, a) => world.pair(this.toString(), e, a),
    );
    await world.checkState(this.toString());
  }
  toString(): string {
    return `enqueue(${this.spec.queue}, ${show(this.spec.payload)}, ${showOptions(this.spec.options)}${this.kvWrites ? `, kv=${showKvWrites(this.kvWrites)}` : ''})`;
  }
}

/** Enqueues again under the dedup key (and queue) of a job that holds one, with kv writes: the dedup-hit path. */
export class EnqueueDuplicateCommand implements StoreCommand {
  constructor(
    readonly pick: JobPick,
    readonly payload: Uint8Array,
    readonly kvWrites: KvWrite[],
  ) {}
  check = (): boolean => true;
  async run(world: StoreWorld): Promise<void> {
    const holder = world.model.getJob(world.target(this.pick));
    const queue = holder?.queue ?? 'q1';
    const options = { dedupKey: holder?.dedupKey ?? 'd1' };
    await both(
      world,
      `${this.toString()} [queue ${queue}, dedupKey ${options.dedupKey}]`,
      (now) => world.model.enqueue(now, queue, this.payload, options, this.kvWrites),
      () => world.store.enqueue(queue, this.payload, options, this.kvWrites),
      world.enqueueResult,
      (e, a) => world.pair(this.toString(), e, a),
    );
    await world.checkState(this.toString());
  }
  toString(): string {
    return `enqueueWithDedupKeyOf(${showJobPick(this.pick)}, ${show(this.payload)}, kv=${showKvWrites(this.kvWrites)})`;
  }
}

export class EnqueueBatchCommand implements StoreCommand {
  constructor(
    readonly queue: string,
    readonly items: Array<{ payload: Uint8Array; options: OptionSpec }>,
  ) {}
  check = (): boolean => true;
  async run(world: StoreWorld): Promise<void> {
    const now = world.clock.now();
    const items = this.items.map((item) => {
      const options = buildOptions(item.options, now);
      return options ? { payload: item.payload, options } : { payload: item.payload };
    });
    await both(
      world,
      this.toString(),
      (t) => world.model.enqueueBatch(t, this.queue, items),
      () => world.store.enqueueBatch(this.queue, items),
      (results) => results.map(world.enqueueResult),
      (e, a) => world.pairAll(this.toString(), e, a),
    );
    await world.checkState(this.toString());
  }
  toString(): string {
    return `enqueueBatch(${this.queue}, [${this.items.map((i) => `${show(i.payload)} ${showOptions(i.options)}`).join(', ')}])`;
  }
}

export class ClaimCommand implements StoreCommand {
  constructor(
    readonly queue: string,
    readonly leaseMs: number | undefined,
    readonly limit: number | undefined,
  ) {}
  check = (): boolean => true;
  async run(world: StoreWorld): Promise<void> {
    const options: { leaseMs?: number; limit?: number } = {};
    if (this.leaseMs !== undefined) options.leaseMs = this.leaseMs;
    if (this.limit !== undefined) options.limit = this.limit;
    const { expected, actual } = await both(
      world,
      this.toString(),
      (now) => world.model.claim(now, this.queue, options),
      () => world.store.claim(this.queue, options),
      (claims) => claims.map(world.claim),
      undefined,
      (claims) => claims.map(world.claim),
    );
    if (expected.ok && actual.ok) {
      expected.value.forEach((claim, i) => {
        const real = actual.value[i] as Claim;
        world.claims.push({ model: { jobId: claim.jobId, token: claim.token }, real: { jobId: real.jobId, token: real.token } });
      });
      const tokens = actual.value.map((c) => c.token);
      if (new Set(tokens).size !== tokens.length || tokens.some((t) => typeof t !== 'string' || t.length === 0)) {
        throw new ConformanceError(`${this.toString()}: claim tokens must be distinct non-empty strings, got ${show(tokens)}`);
      }
    }
    await world.checkState(this.toString());
  }
  toString(): string {
    return `claim(${this.queue}, ${show({ leaseMs: this.leaseMs, limit: this.limit })})`;
  }
}

/** Which claim a settle/renew uses: index into every claim so far (live or stale), or a forged token. */
export interface ClaimPick {
  index: number;
  forged: boolean;
}

function pickClaim(world: StoreWorld, pick: ClaimPick): { model: ClaimRef; real: ClaimRef } | undefined {
  const chosen = world.claims[pick.index % Math.max(1, world.claims.length)];
  if (!chosen) return undefined;
  if (!pick.forged) return chosen;
  return { model: { jobId: chosen.model.jobId, token: 'forged' }, real: { jobId: chosen.real.jobId, token: 'forged' } };
}

function showPick(pick: ClaimPick): string {
  return `claim#${pick.index}${pick.forged ? ' (forged token)' : ''}`;
}

export class SettleCommand implements StoreCommand {
  constructor(
    readonly pick: ClaimPick,
    readonly primary: BranchSpec,
    readonly ifCancelRequested: BranchSpec | undefined,
    readonly precondition: PreconditionSpec | undefined = undefined,
  ) {}
  check = (world: Readonly<StoreWorld>): boolean => world.claims.length > 0;
  async run(world: StoreWorld): Promise<void> {
    const chosen = pickClaim(world, this.pick);
    if (!chosen) return;
    const now = world.clock.now();
    const branch = (spec: BranchSpec): SettlementBranch => {
      const effects = buildEffects(spec.effects, now);
      return effects ? { action: spec.action, effects } : { action: spec.action };
    };
    const settlement: Settlement = branch(this.primary);
    if (this.ifCancelRequested) settlement.ifCancelRequested = branch(this.ifCancelRequested);
    if (this.precondition) settlement.precondition = { key: this.precondition.key, equals: this.precondition.equals };
    await both(
      world,
      this.toString(),
      (t) => world.model.settle(t, chosen.model, settlement),
      () => world.store.settle(chosen.real, settlement),
      (result) => ({ ...result, enqueued: result.enqueued.map(world.enqueueResult) }),
      (e, a) => world.pairAll(this.toString(), e.enqueued, a.enqueued),
    );
    await world.checkState(this.toString());
  }
  toString(): string {
    const cancel = this.ifCancelRequested ? `, ifCancelRequested: ${showAction(this.ifCancelRequested.action)} effects ${showEffects(this.ifCancelRequested.effects)}` : '';
    const precondition = this.precondition ? `, if ${showPrecondition(this.precondition)}` : '';
    return `settle(${showPick(this.pick)}, ${showAction(this.primary.action)} effects ${showEffects(this.primary.effects)}${cancel}${precondition})`;
  }
}

export class RenewLeaseCommand implements StoreCommand {
  constructor(
    readonly pick: ClaimPick,
    readonly extendMs: number,
  ) {}
  check = (world: Readonly<StoreWorld>): boolean => world.claims.length > 0;
  async run(world: StoreWorld): Promise<void> {
    const chosen = pickClaim(world, this.pick);
    if (!chosen) return;
    await both(
      world,
      this.toString(),
      (now) => world.model.renewLease(now, chosen.model, this.extendMs),
      () => world.store.renewLease(chosen.real, this.extendMs),
      (r) => r,
    );
    await world.checkState(this.toString());
  }
  toString(): string {
    return `renewLease(${showPick(this.pick)}, ${this.extendMs})`;
  }
}

export class CancelCommand implements StoreCommand {
  constructor(
    readonly pick: JobPick,
    readonly effects: EffectsSpec | undefined,
  ) {}
  check = (): boolean => true;
  async run(world: StoreWorld): Promise<void> {
    const id = world.target(this.pick);
    const effects = buildEffects(this.effects, world.clock.now());
    const { expected, actual } = await both(
      world,
      `${this.toString()} [job ${id}]`,
      (now) => world.model.cancel(now, id, effects),
      () => world.store.cancel(world.toReal(id), effects),
      (result) => (result.outcome === 'notFound' ? result : { ...result, job: world.record(result.job) }),
    );
    // A removal's effects may enqueue jobs: they have supplied ids only (generated ids would need the results).
    void expected;
    void actual;
    world.trackSuppliedIds();
    await world.checkState(this.toString());
  }
  toString(): string {
    return `cancel(${showJobPick(this.pick)}, effects ${showEffects(this.effects)})`;
  }
}

export class RequeueDeadCommand implements StoreCommand {
  constructor(readonly pick: JobPick) {}
  check = (): boolean => true;
  async run(world: StoreWorld): Promise<void> {
    const id = world.target(this.pick);
    await both(
      world,
      `${this.toString()} [job ${id}]`,
      () => world.model.requeueDead(id),
      () => world.store.requeueDead(world.toReal(id)),
      (v) => v,
    );
    await world.checkState(this.toString());
  }
  toString(): string {
    return `requeueDead(${showJobPick(this.pick)})`;
  }
}

export class KvDeleteCommand implements StoreCommand {
  constructor(
    readonly key: string,
    readonly ifValue: Uint8Array | undefined,
  ) {}
  check = (): boolean => true;
  async run(world: StoreWorld): Promise<void> {
    const options = this.ifValue ? { ifValue: this.ifValue } : undefined;
    await both(
      world,
      this.toString(),
      () => world.model.kvDelete(this.key, options),
      () => world.store.kvDelete(this.key, options),
      (v) => v,
    );
    await world.checkState(this.toString());
  }
  toString(): string {
    return `kvDelete(${this.key}${this.ifValue ? `, ifValue ${show(this.ifValue)}` : ''})`;
  }
}

/** Advances the clock, then promotes (so eager and lazy promotion agree). */
export class AdvanceClockCommand implements StoreCommand {
  constructor(readonly ms: number) {}
  check = (): boolean => true;
  async run(world: StoreWorld): Promise<void> {
    world.clock.advance(this.ms);
    await both(
      world,
      this.toString(),
      (now) => world.model.promote(now),
      () => world.store.promote(),
      (v) => v,
    );
    await world.checkState(this.toString());
  }
  toString(): string {
    return `advance(${this.ms}ms) + promote()`;
  }
}

export class ReapCommand implements StoreCommand {
  check = (): boolean => true;
  async run(world: StoreWorld): Promise<void> {
    await both(
      world,
      this.toString(),
      (now) => world.model.reap(now),
      () => world.store.reap(),
      world.reapReport,
      undefined,
      world.reapReport,
    );
    // Reaper effects may enqueue jobs: supplied ids only, as for cancel effects.
    world.trackSuppliedIds();
    await world.checkState(this.toString());
  }
  toString(): string {
    return 'reap()';
  }
}

export class DeadJobsPageCommand implements StoreCommand {
  constructor(
    readonly queue: string,
    readonly after: JobPick | undefined,
    readonly limit: number | undefined,
  ) {}
  check = (): boolean => true;
  async run(world: StoreWorld): Promise<void> {
    const after = this.after === undefined ? undefined : world.target(this.after);
    const options: { after?: string; limit?: number } = {};
    if (this.limit !== undefined) options.limit = this.limit;
    await both(
      world,
      `${this.toString()} [after ${after}]`,
      () => world.model.deadJobs(this.queue, after === undefined ? options : { ...options, after }),
      () => world.store.deadJobs(this.queue, after === undefined ? options : { ...options, after: world.toReal(after) }),
      (records) => records.map(world.record),
    );
  }
  toString(): string {
    return `deadJobs(${this.queue}, ${show({ after: this.after === undefined ? undefined : showJobPick(this.after), limit: this.limit })})`;
  }
}

// ---- arbitraries -----------------------------------------------------------

const maybe = <T>(arb: fc.Arbitrary<T>, weightOfNone = 2): fc.Arbitrary<T | undefined> =>
  fc.oneof({ weight: weightOfNone, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: arb });

const queueArb = fc.constantFrom(...QUEUES);
const payloadArb = fc.uint8Array({ maxLength: 3, max: 9 });

/** Kv values: a few short ones recur often, so preconditions on them both hold and fail. */
const kvValueArb = fc.oneof(fc.constantFrom(new Uint8Array([1]), new Uint8Array([2])), fc.uint8Array({ maxLength: 2, max: 9 }));
const preconditionArb: fc.Arbitrary<PreconditionSpec> = fc.record({ key: fc.constantFrom(...KV_KEYS), equals: fc.constantFrom(new Uint8Array([1]), new Uint8Array([2])) });

const baseOptionFields = {
  id: maybe(fc.constantFrom(...SUPPLIED_IDS), 4),
  dedupKey: maybe(fc.constantFrom('d1', 'd2')),
  priority: maybe(fc.constantFrom(0, 100, 1000)),
  runAtOffset: maybe(fc.constantFrom(-10, 0, 1, 300, 3000), 3),
  delayMs: maybe(fc.constantFrom(0, 1, 300, 3000), 4),
  maxAttempts: maybe(fc.constantFrom(1, 2, 3), 3),
  headers: maybe(fc.constantFrom('plain' as const, 'proto' as const), 3),
};
/** `runAt` and `delayMs` exclude each other. */
const oneTiming = (spec: OptionSpec): OptionSpec => {
  if (spec.runAtOffset === undefined || spec.delayMs === undefined) return spec;
  const { delayMs, ...rest } = spec;
  void delayMs;
  return rest;
};
const baseOptionSpecArb: fc.Arbitrary<OptionSpec> = fc.record(baseOptionFields, { requiredKeys: [] }).map(oneTiming);

const kvWriteArb: fc.Arbitrary<KvWrite> = fc
  .record({ key: fc.constantFrom(...KV_KEYS), value: kvValueArb, ifAbsent: fc.boolean() })
  .map((w) => (w.ifAbsent ? w : { key: w.key, value: w.value }));
const plainKvWriteArb: fc.Arbitrary<KvWrite> = fc.record({ key: fc.constantFrom(...KV_KEYS), value: kvValueArb });

/** Reaper effects report no enqueue results, so their jobs carry supplied ids (as cancel effects do). */
const reaperEffectsArb: fc.Arbitrary<EffectsSpec> = fc.record({
  enqueue: fc.array(
    fc.record({ queue: queueArb, payload: payloadArb, options: baseOptionSpecArb }).chain((e) => fc.constantFrom(...SUPPLIED_IDS).map((id) => ({ ...e, options: { ...e.options, id } }))),
    { maxLength: 1 },
  ),
  kvWrites: fc.array(plainKvWriteArb, { maxLength: 2 }),
  kvDeletes: fc.array(fc.constantFrom(...KV_KEYS), { maxLength: 2 }),
});
const reaperSpecArb: fc.Arbitrary<ReaperSpec> = fc.record(
  { precondition: maybe(preconditionArb, 1), effects: maybe(reaperEffectsArb, 1), ifCancelRequested: maybe(reaperEffectsArb, 1) },
  { requiredKeys: [] },
);
const optionSpecArb: fc.Arbitrary<OptionSpec> = fc.record({ ...baseOptionFields, reaper: maybe(reaperSpecArb, 3) }, { requiredKeys: [] }).map(oneTiming);

const enqueueSpecArb: fc.Arbitrary<EnqueueSpec> = fc.record({ queue: queueArb, payload: payloadArb, options: optionSpecArb });

const effectsArb: fc.Arbitrary<EffectsSpec> = fc.record({
  enqueue: fc.array(enqueueSpecArb, { maxLength: 2 }),
  kvWrites: fc.array(plainKvWriteArb, { maxLength: 2 }),
  kvDeletes: fc.array(fc.constantFrom(...KV_KEYS), { maxLength: 1 }),
});

const actionArb: fc.Arbitrary<SettleAction> = fc.oneof(
  { weight: 3, arbitrary: fc.constant({ type: 'ack' } as SettleAction) },
  { weight: 3, arbitrary: fc.constantFrom<SettleAction>({ type: 'nack', error: 'e1' }, { type: 'nack', error: 'e2' }) },
  { weight: 1, arbitrary: fc.constant<SettleAction>({ type: 'deadLetter', reason: 'r1' }) },
);
const branchArb: fc.Arbitrary<BranchSpec> = fc
  .record({ action: actionArb, effects: maybe(effectsArb, 1) })
  .map((b) => (b.effects ? b : { action: b.action }));

const statusPickArb = (...statuses: Array<JobRecord['status']>): fc.Arbitrary<JobPick> =>
  fc.record({ status: fc.constantFrom(...statuses), index: fc.nat(10) });
const jobPickArb: fc.Arbitrary<JobPick> = fc.oneof(
  { weight: 3, arbitrary: fc.nat(40) },
  { weight: 3, arbitrary: statusPickArb('pending', 'scheduled', 'claimed', 'dead', 'done') },
  { weight: 1, arbitrary: fc.constantFrom('x-a', 'x-unknown') },
);
const claimPickArb: fc.Arbitrary<ClaimPick> = fc.record({
  index: fc.nat(30),
  forged: fc.oneof({ weight: 6, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
});

/** Cancel effects report no enqueue results, so their jobs always carry supplied ids (generated ones could not be paired). */
const cancelEffectsArb: fc.Arbitrary<EffectsSpec> = effectsArb.chain((effects) =>
  fc.constantFrom(...SUPPLIED_IDS).map((id) => ({ ...effects, enqueue: effects.enqueue.slice(0, 1).map((e) => ({ ...e, options: { ...e.options, id } })) })),
);

/** Every store command, with weights that keep sequences busy (claims and settlements often). */
export function storeCommandArbitraries(): Array<fc.Arbitrary<StoreCommand>> {
  const weighted = <T extends StoreCommand>(weight: number, arb: fc.Arbitrary<T>): Array<fc.Arbitrary<StoreCommand>> => Array.from({ length: weight }, () => arb);
  return [
    ...weighted(4, fc.tuple(enqueueSpecArb, maybe(fc.array(kvWriteArb, { minLength: 1, maxLength: 2 }))).map(([spec, kv]) => new EnqueueCommand(spec, kv))),
    ...weighted(1, fc.tuple(queueArb, fc.array(fc.record({ payload: payloadArb, options: optionSpecArb }), { maxLength: 3 })).map(([q, items]) => new EnqueueBatchCommand(q, items))),
    ...weighted(4, fc.tuple(fc.constantFrom('q1', 'q1', 'q2', 'q3'), maybe(fc.constantFrom(50, 1000, 5000)), maybe(fc.constantFrom(1, 2, 3))).map(([q, lease, limit]) => new ClaimCommand(q, lease, limit))),
    ...weighted(4, fc.tuple(claimPickArb, branchArb, maybe(branchArb, 1), maybe(preconditionArb, 3)).map(([pick, primary, alt, pre]) => new SettleCommand(pick, primary, alt, pre))),
    ...weighted(1, fc.tuple(claimPickArb, fc.constantFrom(1, 500, 2000)).map(([pick, ms]) => new RenewLeaseCommand(pick, ms))),
    ...weighted(2, fc.tuple(fc.oneof(statusPickArb('claimed'), jobPickArb), maybe(cancelEffectsArb, 3)).map(([pick, effects]) => new CancelCommand(pick, effects))),
    ...weighted(2, fc.oneof(statusPickArb('dead'), jobPickArb).map((pick) => new RequeueDeadCommand(pick))),
    ...weighted(1, fc.tuple(statusPickArb('pending', 'scheduled'), payloadArb, fc.array(kvWriteArb, { minLength: 1, maxLength: 2 })).map(([pick, payload, kv]) => new EnqueueDuplicateCommand(pick, payload, kv))),
    ...weighted(1, fc.tuple(fc.constantFrom(...KV_KEYS), maybe(kvValueArb, 1)).map(([key, v]) => new KvDeleteCommand(key, v))),
    ...weighted(3, fc.constantFrom(1, 50, 300, 1000, 3000, 30_000).map((ms) => new AdvanceClockCommand(ms))),
    ...weighted(2, fc.constant(new ReapCommand())),
    ...weighted(1, fc.tuple(fc.constantFrom(...READ_QUEUES), maybe(jobPickArb, 1), maybe(fc.constantFrom(1, 2, 100), 1)).map(([q, after, limit]) => new DeadJobsPageCommand(q, after, limit))),
  ];
}

// ---- the property ----------------------------------------------------------

/** Builds the store context of one run under `profile`. */
export function storeContext(profile: ConfigProfile, clock: ManualClock, backgroundMaintenance = false): StoreContext {
  return { clock, defaultQueueConfig: { ...profile.defaultQueueConfig }, queueConfigs: structuredClone(profile.queueConfigs), backgroundMaintenance };
}

/**
 * Runs the model-based property and rejects with fast-check's report (seed,
 * path and the shrunk command list) when the store diverges from the model.
 * Not tied to vitest: the describe functions and the mutant tests call it.
 */
export async function checkStoreModel(options: ConformanceOptions, overrides: { maxCommands?: number; scale?: number } = {}): Promise<void> {
  const params = runParameters(options, overrides.scale ?? 1);
  const commandsOptions: { maxCommands: number; size: fc.SizeForArbitrary; replayPath?: string } = { maxCommands: overrides.maxCommands ?? 40, size: 'max' };
  const replay = replayPath(options);
  if (replay !== undefined) commandsOptions.replayPath = replay;
  const property = fc.asyncProperty(fc.nat(CONFIG_PROFILES.length - 1), fc.commands(storeCommandArbitraries(), commandsOptions), async (profileIndex, commands) => {
    const profile = CONFIG_PROFILES[profileIndex] as ConfigProfile;
    const clock = new ManualClock(START);
    try {
      await withGuardedStore(options, storeContext(profile, clock), async (guard) => {
        const world = new StoreWorld(guard.store, clock, profile);
        await fc.asyncModelRun(() => ({ model: world, real: world }), commands);
      });
    } catch (error) {
      if (error instanceof ConformanceError) error.message = `${error.message}\n  (store ${options.name}, queue profile ${profileIndex}: ${profile.label})`;
      throw error;
    }
  });
  await assertProperty(property, options, params);
}
