/**
 * What crosses the wire, both ways: table rows (or their `to_jsonb` form)
 * decoded into `JobRecord`s, the JSON the SQL functions take (jobs, effects,
 * settlements, the queue configs) and the JSON they return, and the NOTIFY
 * payload.
 */
import { copyHeaders, parseHeadersJson } from '../../core/headers.js';
import { jobRecord } from '../../core/job-record.js';
import { resolveQueueConfig, retryDelayMs } from '../../core/queue-config.js';
import type { QueueConfig, QueueConfigs, StoreOptions } from '../../core/queue-config.js';
import type {
  Effects,
  EnqueueRequest,
  JobRecord,
  JobStatus,
  KvPrecondition,
  KvWrite,
  ReaperDeadLetterBranch,
  SettleResult,
  Settlement,
  SettlementBranch,
  StoreNotification,
} from '../../core/queue-store.js';
import { checkStorableText, storableText } from './postgres-text.js';

// ---- rows -------------------------------------------------------------------------------------

/** A `jobs` row as the driver returns it (int8 as string, bytea as Buffer) or as `to_jsonb` renders it (numbers, `\x` hex). */
export interface JobRow {
  id: string;
  queue: string;
  payload: Uint8Array | string;
  headers: string;
  status: JobStatus;
  attempts: number | string;
  max_attempts: number | string;
  priority: number | string;
  enqueued_at: number | string;
  claimed_at: number | string | null;
  lease_expires_at: number | string | null;
  run_at: number | string | null;
  last_error: string | null;
  dedup_key: string | null;
  completed_at: number | string | null;
  failed_at: number | string | null;
  cancel_requested: boolean;
  token?: string | null;
}

function bytes(value: Uint8Array | string): Uint8Array {
  if (typeof value === 'string') return new Uint8Array(Buffer.from(value.startsWith('\\x') ? value.slice(2) : value, 'hex'));
  return new Uint8Array(value.buffer.slice(value.byteOffset, value.byteOffset + value.byteLength));
}

export function toRecord(row: JobRow): JobRecord {
  const time = (value: number | string | null): number | null => (value === null ? null : Number(value));
  return jobRecord({
    id: row.id,
    queue: row.queue,
    payload: bytes(row.payload),
    headers: parseHeadersJson(row.headers),
    status: row.status,
    attempts: Number(row.attempts),
    maxAttempts: Number(row.max_attempts),
    priority: Number(row.priority),
    enqueuedAt: Number(row.enqueued_at),
    cancelRequested: row.cancel_requested,
    claimedAt: time(row.claimed_at),
    leaseExpiresAt: time(row.lease_expires_at),
    runAt: time(row.run_at),
    lastError: row.last_error,
    dedupKey: row.dedup_key,
    completedAt: time(row.completed_at),
    failedAt: time(row.failed_at),
  });
}

export function base64(value: Uint8Array): string {
  return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64');
}

// ---- JSON the functions return --------------------------------------------------------------------

/** One job an enqueue inserted (or found by its dedup key). */
export interface InsertJson {
  kind: 'new' | 'alreadyEnqueued';
  id: string;
  queue?: string;
  status?: 'pending' | 'scheduled';
  runAt?: number | null;
}

/** An error a settlement of a batch raised, as its subtransaction caught it. */
export interface ServerErrorJson {
  code: string;
  message: string;
  detail: string | null;
  constraint: string | null;
}

export type SettleJson =
  | { branch: SettleResult['branch']; status: SettleResult['status']; queue: string; runAt: number | null; enqueued: InsertJson[] | null }
  | { error: ServerErrorJson };

/** `settle_and_claim`: one result per settlement, one list of claimed rows per claim. */
export interface FlushJson {
  settled: SettleJson[];
  claimed: JobRow[][];
}

export type CancelJson =
  { outcome: 'notFound' } | { outcome: 'requested'; job: JobRow; firstRequest: boolean } | { outcome: 'removed'; job: JobRow; enqueued: InsertJson[] | null };

export interface ReapJson {
  requeued: string[];
  deadLettered: JobRow[];
  effectsApplied: string[];
  enqueued: InsertJson[];
  doneSwept: number;
  deadSwept: number;
}

export interface PromoteJson {
  moved: number;
  queues: string[];
  /** When the earliest job still scheduled is due. */
  next: number | null;
}

// ---- JSON the functions take ---------------------------------------------------------------------

interface JobJson {
  /** Absent only in a carried branch's enqueue without a caller-chosen id: the database takes one when it applies. */
  id?: string;
  /** The caller chose the id (an id in use is then an error even on a dedup hit). */
  own: boolean;
  queue: string;
  payload: string;
  headers: string;
  priority: number;
  maxAttempts: number;
  runAt?: number;
  /** Resolved in SQL against the statement's `now` (the database's clock unless one is injected). */
  delayMs?: number;
  dedupKey?: string;
  reaperDeadLetter?: ReaperBranchJson;
}

interface PreconditionJson {
  key: string;
  equals: string;
}

/** `ReaperDeadLetterBranch` as the `reaper_dead_letter` column keeps it: effects in the form settlements send them. */
interface ReaperBranchJson {
  precondition?: PreconditionJson;
  effects?: EffectsJson;
  ifCancelRequested?: EffectsJson;
}

/** A kv write as the functions take it: `ttlMs` present only when given (resolved in SQL against the statement's `now`). */
export interface KvWriteJson {
  key: string;
  value: string;
  ttlMs?: number;
  /** Only in `enqueue`'s own writes (effects do not honour it). */
  ifAbsent?: boolean;
}

interface EffectsJson {
  enqueue?: JobJson[];
  kvWrites?: KvWriteJson[];
  kvDeletes?: string[];
}

interface BranchJson {
  action: { type: 'ack' } | { type: 'nack'; error: string; delayMs?: number } | { type: 'deadLetter'; reason: string };
  effects?: EffectsJson;
  /** An id repeated within the branch's enqueues: an error if (and only if) the branch is applied. */
  repeatedId?: string;
}

export interface SettlementJson extends BranchJson {
  ifCancelRequested?: BranchJson;
  precondition?: PreconditionJson;
}

/** One settlement as `settle_one` / `settle_and_claim` take it. */
export interface SettleItemJson {
  jobId: string;
  token: string;
  settlement: SettlementJson;
}

/** One claim as `settle_and_claim` takes it. */
export interface ClaimItemJson {
  queue: string;
  limit: number;
  leaseMs: number;
}

/** Most entries of a `retryDelays` table (the cap is reached long before with any base of at least 1 ms). */
const MAX_RETRY_DELAYS = 64;

/**
 * The retry delays after attempts 1, 2, ... as `retryDelayMs` gives them,
 * up to the first that the next attempt repeats (the cap): SQL looks a
 * delay up here and takes the last entry for every later attempt.
 */
export function retryDelays(config: QueueConfig): number[] {
  const delays = [retryDelayMs(config, 1)];
  for (let attempts = 2; attempts <= MAX_RETRY_DELAYS; attempts++) {
    const delay = retryDelayMs(config, attempts);
    if (delay === delays[delays.length - 1]) break;
    delays.push(delay);
  }
  return delays;
}

/** The queue configs the functions read (`default`, and `queues` by name), each with its `retryDelays`. */
export function queueConfigsJson(options: StoreOptions, configs: QueueConfigs): string {
  const withDelays = (config: QueueConfig): QueueConfig & { retryDelays: number[] } => ({ ...config, retryDelays: retryDelays(config) });
  const queues: Record<string, QueueConfig> = Object.create(null) as Record<string, QueueConfig>;
  for (const name of Object.keys(options.queueConfigs ?? {})) queues[name] = withDelays(configs.get(name));
  return JSON.stringify({ default: withDelays(resolveQueueConfig(options.defaultQueueConfig)), queues });
}

/** A kv key the shared checks passed, once PostgreSQL can store it. */
export function storedKvKey(key: string): string {
  checkStorableText('kv key', key);
  return key;
}

export function findRepeatedId(ids: Array<string | undefined>): string | undefined {
  const seen = new Set<string>();
  for (const id of ids) {
    if (id === undefined) continue;
    if (seen.has(id)) return id;
    seen.add(id);
  }
  return undefined;
}

/** A kv write in the functions' JSON (the key checked storable); `ifAbsent` is for `enqueue`'s own writes. */
export function kvWriteJson(write: KvWrite, ifAbsent = false): KvWriteJson {
  const out: KvWriteJson = { key: storedKvKey(write.key), value: base64(write.value) };
  if (write.ttlMs !== undefined) out.ttlMs = write.ttlMs;
  if (ifAbsent && write.ifAbsent === true) out.ifAbsent = true;
  return out;
}

function preconditionJson(precondition: KvPrecondition): PreconditionJson {
  return { key: storedKvKey(precondition.key), equals: base64(precondition.equals) };
}

/** Encodes requests into the functions' JSON, with the queue defaults filled in and every identity checked storable. */
export class WireEncoder {
  constructor(
    private readonly configs: QueueConfigs,
    private readonly newJobId: () => string,
  ) {}

  /**
   * `carried`: the job is enqueued by a reaper dead-letter, maybe long from now and more than once
   * (after `requeueDead`), so without a caller-chosen id it gets one from the database when it applies.
   */
  job(request: EnqueueRequest, carried = false): JobJson {
    const config = this.configs.get(request.queue);
    const options = request.options;
    checkStorableText('queue name', request.queue);
    if (options?.id !== undefined) checkStorableText('id', options.id);
    if (options?.dedupKey !== undefined) checkStorableText('dedupKey', options.dedupKey);
    const job: JobJson = {
      own: options?.id !== undefined,
      queue: request.queue,
      payload: base64(request.payload),
      headers: JSON.stringify(copyHeaders(options?.headers)),
      priority: options?.priority ?? config.defaultPriority,
      maxAttempts: options?.maxAttempts ?? config.maxAttempts,
    };
    if (options?.id !== undefined || !carried) job.id = options?.id ?? this.newJobId();
    if (options?.runAt !== undefined) job.runAt = options.runAt;
    if (options?.delayMs !== undefined) job.delayMs = options.delayMs;
    if (options?.dedupKey !== undefined) job.dedupKey = options.dedupKey;
    if (options?.reaperDeadLetter !== undefined) job.reaperDeadLetter = this.reaperBranch(options.reaperDeadLetter);
    return job;
  }

  effects(effects: Effects | undefined, carried = false): EffectsJson | undefined {
    if (!effects) return undefined;
    const out: EffectsJson = {};
    if (effects.enqueue?.length) out.enqueue = effects.enqueue.map((request) => this.job(request, carried));
    if (effects.kvWrites?.length) out.kvWrites = effects.kvWrites.map((w) => kvWriteJson(w));
    if (effects.kvDeletes?.length) out.kvDeletes = effects.kvDeletes.map(storedKvKey);
    return out;
  }

  settlement(settlement: Settlement): SettlementJson {
    const primary: SettlementJson = this.branch(settlement);
    if (settlement.ifCancelRequested) primary.ifCancelRequested = this.branch(settlement.ifCancelRequested);
    if (settlement.precondition) primary.precondition = preconditionJson(settlement.precondition);
    return primary;
  }

  private reaperBranch(branch: ReaperDeadLetterBranch): ReaperBranchJson {
    const out: ReaperBranchJson = {};
    if (branch.precondition !== undefined) out.precondition = preconditionJson(branch.precondition);
    const effects = this.effects(branch.effects, true);
    if (effects !== undefined) out.effects = effects;
    const ifCancelRequested = this.effects(branch.ifCancelRequested, true);
    if (ifCancelRequested !== undefined) out.ifCancelRequested = ifCancelRequested;
    return out;
  }

  private branch(branch: SettlementBranch): BranchJson {
    // Diagnostic text is made storable here (see postgres-text.ts), so one odd message cannot fail its flush.
    const action: BranchJson['action'] =
      branch.action.type === 'ack'
        ? { type: 'ack' }
        : branch.action.type === 'nack'
          ? branch.action.delayMs === undefined
            ? { type: 'nack', error: storableText(branch.action.error) }
            : { type: 'nack', error: storableText(branch.action.error), delayMs: branch.action.delayMs }
          : { type: 'deadLetter', reason: storableText(branch.action.reason) };
    const repeatedId = findRepeatedId((branch.effects?.enqueue ?? []).map((request) => request.options?.id));
    const out: BranchJson = { action };
    const effects = this.effects(branch.effects);
    if (effects !== undefined) out.effects = effects;
    if (repeatedId !== undefined) out.repeatedId = repeatedId;
    return out;
  }
}

// ---- NOTIFY ------------------------------------------------------------------------------------

/** The NOTIFY payload (`wake()` and `cancel()` send it); anything else on the channel is ignored. */
export function parseNotification(payload: string): StoreNotification | undefined {
  let message: { type?: unknown; queue?: unknown; jobId?: unknown };
  try {
    message = JSON.parse(payload) as typeof message;
  } catch {
    return undefined;
  }
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- a NOTIFY payload is parsed JSON from the wire
  if (message === null || typeof message !== 'object' || typeof message.queue !== 'string') return undefined;
  if (message.type === 'jobsAvailable') return { type: 'jobsAvailable', queue: message.queue };
  if (message.type === 'cancelRequested' && typeof message.jobId === 'string') return { type: 'cancelRequested', queue: message.queue, jobId: message.jobId };
  return undefined;
}
