/**
 * Time source for stores and runtimes. Everything that reads "now" or waits
 * goes through a `Clock`, so tests can control time without global fake timers.
 */
import { TimerStormError } from './errors.js';

export interface Clock {
  /** Current time in integer milliseconds since the Unix epoch. */
  now(): number;
  /**
   * Calls `callback` once, `delayMs` from now. Returns a function that cancels
   * the timer (a no-op once it fired). Delays beyond Node's 2^31-1 ms timer
   * limit must not fire early. `keepAlive: false` lets the process exit while
   * the timer is pending (for housekeeping); the default keeps it alive, as
   * `setTimeout` does, so a waiting worker loop keeps its process running.
   */
  setTimer(callback: () => void, delayMs: number, options?: TimerOptions): () => void;
}

export interface TimerOptions {
  /** Default true. */
  keepAlive?: boolean;
}

/** Node's timers clamp delays above this to 1 ms; longer waits are chained. */
const MAX_TIMER_DELAY_MS = 2_147_483_647;

/** Wall-clock time and real timers. The default everywhere. */
export class SystemClock implements Clock {
  now(): number {
    return Date.now();
  }

  setTimer(callback: () => void, delayMs: number, options?: TimerOptions): () => void {
    const keepAlive = options?.keepAlive !== false;
    const dueAt = Date.now() + Math.max(0, delayMs);
    let handle: NodeJS.Timeout | undefined;
    const arm = (): void => {
      const remaining = dueAt - Date.now();
      if (remaining <= 0 && handle !== undefined) {
        handle = undefined;
        callback();
        return;
      }
      handle = setTimeout(arm, Math.min(Math.max(remaining, 0), MAX_TIMER_DELAY_MS));
      if (!keepAlive) handle.unref();
    };
    handle = setTimeout(arm, Math.min(Math.max(delayMs, 0), MAX_TIMER_DELAY_MS));
    if (!keepAlive) handle.unref();
    return () => {
      if (handle !== undefined) clearTimeout(handle);
      handle = undefined;
    };
  }
}

interface ManualTimer {
  readonly dueAt: number;
  readonly seq: number;
  readonly callback: () => void;
  cancelled: boolean;
  /** Where it was armed; captured only while a storm is suspected (stacks are costly). */
  armedBy?: string;
}

export interface ManualClockOptions {
  /**
   * Most timers one `advance`/`set` fires at a single instant before it
   * throws `TimerStormError`. Default `DEFAULT_MAX_TIMERS_PER_INSTANT`.
   */
  maxTimersPerInstant?: number;
}

/** Generous: far more timers than any test arms for one instant, yet a storm fails in milliseconds. */
export const DEFAULT_MAX_TIMERS_PER_INSTANT = 10_000;

/** This close to the limit, new timers record where they were armed (for the storm report). */
const TRACE_BEFORE_LIMIT = 3;

/** The first stack frames outside this file: who armed a timer. */
function armingSite(): string {
  const frames = (new Error().stack ?? '').split('\n').slice(1);
  const outside = frames.filter((frame) => !/[/\\]core[/\\]clock\.[cm]?[jt]s:/.test(frame));
  return outside.length === 0 ? '(unknown)' : `at:\n${outside.slice(0, 6).join('\n')}`;
}

/**
 * A clock that moves only when told to. Timers fire, in due order, while
 * `advance`/`set` moves time past them; nothing happens on its own. A timer
 * storm (timers re-armed at the same instant without end) throws
 * `TimerStormError` instead of looping forever.
 */
export class ManualClock implements Clock {
  private current: number;
  private readonly timers = new Set<ManualTimer>();
  private seq = 0;
  private readonly maxTimersPerInstant: number;
  private tracing = false;

  constructor(startMs: number = Date.parse('2026-01-01T00:00:00Z'), options: ManualClockOptions = {}) {
    if (!Number.isFinite(startMs)) throw new TypeError(`ManualClock start must be a finite number, got ${startMs}`);
    const limit = options.maxTimersPerInstant ?? DEFAULT_MAX_TIMERS_PER_INSTANT;
    if (!Number.isSafeInteger(limit) || limit < 1) throw new TypeError(`ManualClock maxTimersPerInstant must be a positive integer, got ${limit}`);
    this.current = Math.trunc(startMs);
    this.maxTimersPerInstant = limit;
  }

  now(): number {
    return this.current;
  }

  setTimer(callback: () => void, delayMs: number): () => void {
    const timer: ManualTimer = {
      dueAt: this.current + Math.max(0, Number.isFinite(delayMs) ? Math.trunc(delayMs) : 0),
      seq: this.seq++,
      callback,
      cancelled: false,
    };
    if (this.tracing) timer.armedBy = armingSite();
    this.timers.add(timer);
    return () => {
      timer.cancelled = true;
      this.timers.delete(timer);
    };
  }

  /** Moves time forward by `ms`, firing every timer that falls due, in order. */
  advance(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) throw new TypeError(`ManualClock.advance needs a finite, non-negative ms, got ${ms}`);
    this.set(this.current + Math.trunc(ms));
  }

  /**
   * Moves time to `ms` (never backwards), firing due timers in order. Throws
   * `TimerStormError` when more than `maxTimersPerInstant` fire at one
   * instant; time then stays at that instant and the storming timer stays armed.
   */
  set(ms: number): void {
    if (!Number.isFinite(ms)) throw new TypeError(`ManualClock.set needs a finite ms, got ${ms}`);
    const target = Math.trunc(ms);
    if (target < this.current) throw new RangeError(`ManualClock cannot go backwards (${target} < ${this.current})`);
    let instant = Number.NaN;
    let firedAtInstant = 0;
    try {
      for (;;) {
        const next = this.nextDueTimer(target);
        if (next === undefined) break;
        if (next.dueAt !== instant) {
          instant = next.dueAt;
          firedAtInstant = 0;
          this.tracing = false;
        }
        if (firedAtInstant >= this.maxTimersPerInstant) {
          this.current = Math.max(this.current, instant);
          throw new TimerStormError(instant, firedAtInstant, next.armedBy ?? '(not traced)');
        }
        firedAtInstant++;
        if (firedAtInstant >= this.maxTimersPerInstant - TRACE_BEFORE_LIMIT) this.tracing = true;
        this.current = Math.max(this.current, next.dueAt);
        next.cancelled = true;
        this.timers.delete(next);
        next.callback();
      }
    } finally {
      this.tracing = false;
    }
    this.current = target;
  }

  /** Due time of the earliest live timer, if any (used to skip idle time). */
  nextTimerAt(): number | undefined {
    let best: number | undefined;
    for (const t of this.timers) if (best === undefined || t.dueAt < best) best = t.dueAt;
    return best;
  }

  /** Number of live timers. */
  pendingTimers(): number {
    return this.timers.size;
  }

  private nextDueTimer(limit: number): ManualTimer | undefined {
    let best: ManualTimer | undefined;
    for (const t of this.timers) {
      if (t.dueAt > limit) continue;
      if (best === undefined || t.dueAt < best.dueAt || (t.dueAt === best.dueAt && t.seq < best.seq)) best = t;
    }
    return best;
  }
}

/** Resolves after `ms` on `clock`, or rejects with the signal's reason when aborted. */
export function sleep(clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      cancel();
      reject(signal?.reason);
    };
    const cancel = clock.setTimer(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Timer options for store housekeeping (reaper, promotion, wakeups): never keeps a process alive on its own. */
export const HOUSEKEEPING: TimerOptions = Object.freeze({ keepAlive: false });
