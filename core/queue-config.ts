import type { Clock } from './clock.js';
import { InvalidArgumentError } from './errors.js';

/** Claim-order constants: a lower number is claimed first. */
export const Priority = {
  HIGH: 100,
  NORMAL: 1000,
  LOW: 10000,
} as const;

/** Per-queue settings. Every store accepts a store-wide default plus per-queue overrides. */
export interface QueueConfig {
  /** Claims allowed before a failing job goes dead. Default 3. */
  maxAttempts: number;
  /** Lease given to a claim unless the claim asks for another. Default 30 000. */
  leaseDurationMs: number;
  /** Priority of jobs enqueued without one. Default 1000 (`Priority.NORMAL`). */
  defaultPriority: number;
  /** Retry delay after the n-th failure is `min(base * 2^(n-1), max)`. 0 = straight back to pending. Default 1000. */
  retryBackoffBaseMs: number;
  /** Cap of the retry delay. Default 300 000. */
  retryBackoffMaxMs: number;
  /** Keep acked jobs as `done` for this long. `undefined` = delete on ack (the done counter still counts). */
  keepDoneJobsMs: number | undefined;
  /** Delete dead jobs this long after `failedAt`. `null` = keep forever. Default 7 days. */
  deadRetentionMs: number | null;
}

/** The default queue settings. */
export const DEFAULT_QUEUE_CONFIG: Readonly<QueueConfig> = Object.freeze({
  maxAttempts: 3,
  leaseDurationMs: 30_000,
  defaultPriority: Priority.NORMAL,
  retryBackoffBaseMs: 1_000,
  retryBackoffMaxMs: 300_000,
  keepDoneJobsMs: undefined,
  deadRetentionMs: 7 * 24 * 60 * 60 * 1000,
});

/** Store-wide housekeeping intervals. */
export const DEFAULT_REAPER_INTERVAL_MS = 5_000;
export const DEFAULT_PROMOTE_INTERVAL_MS = 1_000;

/** Options every store constructor accepts (adapters add their own). */
export interface StoreOptions {
  /** Time source; `SystemClock` when omitted. */
  clock?: Clock;
  /** Overrides of `DEFAULT_QUEUE_CONFIG` for every queue. */
  defaultQueueConfig?: Partial<QueueConfig>;
  /** Per-queue overrides, applied on top of `defaultQueueConfig`. */
  queueConfigs?: Record<string, Partial<QueueConfig>>;
  /**
   * Run the reaper and promotion on timers from the clock (default true).
   * Turn off to drive `reap`/`promote` by hand, as the store-level
   * conformance suite does.
   */
  backgroundMaintenance?: boolean;
  /** Reaper period. Default 5 000. */
  reaperIntervalMs?: number;
  /** Promotion period (a store may also wake precisely at the next due job). Default 1 000. */
  promoteIntervalMs?: number;
}

function checkNonNegativeInteger(name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new InvalidArgumentError(name, `expected a non-negative integer, got ${String(value)}`);
  }
}

/** Validates and completes a partial config. Throws `InvalidArgumentError` on bad values. */
export function resolveQueueConfig(...layers: Array<Partial<QueueConfig> | undefined>): QueueConfig {
  const config: QueueConfig = { ...DEFAULT_QUEUE_CONFIG };
  for (const layer of layers) {
    if (!layer) continue;
    for (const key of Object.keys(layer) as Array<keyof QueueConfig>) {
      if (!(key in DEFAULT_QUEUE_CONFIG)) throw new InvalidArgumentError('queue config', `unknown setting "${String(key)}"`);
      (config as unknown as Record<string, unknown>)[key] = layer[key];
    }
  }
  checkNonNegativeInteger('maxAttempts', config.maxAttempts);
  if (config.maxAttempts < 1) throw new InvalidArgumentError('maxAttempts', 'must be at least 1');
  checkNonNegativeInteger('leaseDurationMs', config.leaseDurationMs);
  if (config.leaseDurationMs < 1) throw new InvalidArgumentError('leaseDurationMs', 'must be at least 1');
  checkNonNegativeInteger('defaultPriority', config.defaultPriority);
  checkNonNegativeInteger('retryBackoffBaseMs', config.retryBackoffBaseMs);
  checkNonNegativeInteger('retryBackoffMaxMs', config.retryBackoffMaxMs);
  if (config.keepDoneJobsMs !== undefined) checkNonNegativeInteger('keepDoneJobsMs', config.keepDoneJobsMs);
  if (config.deadRetentionMs !== null) checkNonNegativeInteger('deadRetentionMs', config.deadRetentionMs);
  return config;
}

/** Resolves the config of one queue from store options. */
export class QueueConfigs {
  private readonly cache = new Map<string, QueueConfig>();
  private readonly base: QueueConfig;
  /** True when some queue keeps done jobs (`keepDoneJobsMs` set); an ack then may not simply delete. */
  readonly anyKeepsDoneJobs: boolean;

  constructor(options: Pick<StoreOptions, 'defaultQueueConfig' | 'queueConfigs'>) {
    this.base = resolveQueueConfig(options.defaultQueueConfig);
    for (const [name, layer] of Object.entries(options.queueConfigs ?? {})) {
      this.cache.set(name, resolveQueueConfig(options.defaultQueueConfig, layer));
    }
    this.anyKeepsDoneJobs = [this.base, ...this.cache.values()].some((config) => config.keepDoneJobsMs !== undefined);
  }

  get(queue: string): QueueConfig {
    return this.cache.get(queue) ?? this.base;
  }
}

/** The delay of a nack's retry: its own `delayMs`, else the queue's backoff after the `attempts`-th failed attempt. */
export function nackDelayMs(action: { delayMs?: number }, config: Pick<QueueConfig, 'retryBackoffBaseMs' | 'retryBackoffMaxMs'>, attempts: number): number {
  return action.delayMs ?? retryDelayMs(config, attempts);
}

/** Retry delay after the `attempts`-th failed attempt (`min(base * 2^(attempts-1), max)`). */
export function retryDelayMs(config: Pick<QueueConfig, 'retryBackoffBaseMs' | 'retryBackoffMaxMs'>, attempts: number): number {
  if (config.retryBackoffBaseMs === 0) return 0;
  const exponent = Math.max(0, attempts - 1);
  // 2^exponent overflows to Infinity for large attempts; min() caps it.
  return Math.min(config.retryBackoffBaseMs * 2 ** exponent, config.retryBackoffMaxMs);
}

/**
 * When an enqueued job first becomes claimable, in store time: `runAt`, or
 * `now + delayMs`, or `undefined` for at once. `now` is the store's clock at
 * the commit (so `delayMs` is measured where the job is stored).
 */
export function enqueueDueAt(options: { runAt?: number; delayMs?: number } | undefined, now: number): number | undefined {
  if (options?.runAt !== undefined) return options.runAt;
  if (options?.delayMs !== undefined && options.delayMs > 0) return now + options.delayMs;
  return undefined;
}
