/**
 * Retry policy of durable hook delivery. A failed hook is retried on a
 * schedule of its own, not the step queue's (three attempts a second apart
 * would give up on a webhook that is down for a minute): the settlement acks
 * the notification job and enqueues its successor, with the same payload, a
 * delay of the backoff (measured by the store) and the attempt count in a header, all in one
 * commit. The store's own `maxAttempts` of the notification job then counts
 * only deliveries that never settled (a crash while the hook ran).
 */
import { copyHeaders } from './headers.js';
import { retryDelayMs } from './queue-config.js';
import type { Headers, Settlement } from './queue-store.js';
import { checkNonNegativeInt, checkPositiveInt } from './store-validation.js';
import { InvalidArgumentError } from './errors.js';

/** How often and how far apart a failing hook is retried (durable delivery). */
export interface HookRetryPolicy {
  /** Hook attempts before the notification is dead-lettered. Default 300. */
  maxAttempts: number;
  /** Delay after the first failure; doubled after each further one. Default 1 000. */
  initialDelayMs: number;
  /** Cap of the delay. Default 300 000 (5 minutes). */
  maxDelayMs: number;
}

/** About 24 h 18 min of retrying: 1 s doubling to the 5 min cap, 300 attempts in all. */
export const DEFAULT_HOOK_RETRY: Readonly<HookRetryPolicy> = Object.freeze({ maxAttempts: 300, initialDelayMs: 1_000, maxDelayMs: 300_000 });

/** Reserved header of a notification job: the hook attempt it carries (1 when absent). */
export const HEADER_HOOK_ATTEMPT = 'workflow.hook_attempt';

/** The policy with defaults filled in; bad values throw `InvalidArgumentError`. */
export function resolveHookRetry(partial: Partial<HookRetryPolicy> | undefined): HookRetryPolicy {
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- untyped callers reach this through the public API
  if (partial !== undefined && (partial === null || typeof partial !== 'object')) throw new InvalidArgumentError('hookRetry', 'expected an object');
  const policy = { ...DEFAULT_HOOK_RETRY, ...partial };
  checkPositiveInt('hookRetry.maxAttempts', policy.maxAttempts);
  checkNonNegativeInt('hookRetry.initialDelayMs', policy.initialDelayMs);
  checkNonNegativeInt('hookRetry.maxDelayMs', policy.maxDelayMs);
  return policy;
}

/** Delay before the attempt after the `failedAttempt`-th failure. */
export function hookRetryDelayMs(policy: HookRetryPolicy, failedAttempt: number): number {
  return retryDelayMs({ retryBackoffBaseMs: policy.initialDelayMs, retryBackoffMaxMs: policy.maxDelayMs }, failedAttempt);
}

/** The hook attempt a notification job carries. */
export function hookAttempt(headers: Headers): number {
  const raw = Object.hasOwn(headers, HEADER_HOOK_ATTEMPT) ? headers[HEADER_HOOK_ATTEMPT] : undefined;
  const attempt = raw !== undefined && /^\d{1,9}$/.test(raw) ? Number(raw) : 1;
  return Math.max(1, attempt);
}

/**
 * Settlement of a notification whose hook failed: dead-letter after the last
 * attempt, otherwise ack it and enqueue the next attempt in the same commit.
 */
export function hookFailureSettlement(
  policy: HookRetryPolicy,
  notification: { queue: string; payload: Uint8Array; headers: Headers },
  error: string,
): Settlement {
  const attempt = hookAttempt(notification.headers);
  if (attempt >= policy.maxAttempts) {
    return { action: { type: 'deadLetter', reason: `hook failed ${attempt} times; last error: ${error}` } };
  }
  // The notification's headers stay with it (a reaper's notice keeps its outcome there); only the attempt moves on.
  const headers = copyHeaders(notification.headers);
  headers[HEADER_HOOK_ATTEMPT] = String(attempt + 1);
  const delayMs = hookRetryDelayMs(policy, attempt);
  return {
    action: { type: 'ack' },
    effects: {
      enqueue: [{ queue: notification.queue, payload: notification.payload, options: { headers, ...(delayMs > 0 ? { delayMs } : {}) } }],
    },
  };
}
