/**
 * The worker loop's small parts: its counters (`WorkerLoop`), the `Step`
 * handed to a runner (`RunnerStep`), and the abort controller made only
 * when a runner reads its signal (`LazyAbort`).
 */
import type { Step } from './outcomes.js';
import type { Headers, JobRecord } from './queue-store.js';

/** Creates the step's AbortController only when the runner reads `signal` (most never do). */
export class LazyAbort {
  private controller: AbortController | undefined;
  private reason: unknown;
  private aborted = false;

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.aborted) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    this.controller?.abort(reason);
  }
}

/** The `Step` handed to a runner; `signal` comes from the lazily created controller. */
export class RunnerStep implements Step {
  readonly payload: Uint8Array;
  readonly jobId: string;
  readonly attempts: number;
  readonly #abort: LazyAbort;

  constructor(
    readonly runId: string,
    readonly stepNumber: number,
    job: JobRecord,
    readonly headers: Headers,
    abort: LazyAbort,
    readonly stepName: string | undefined,
    readonly onCancel: boolean,
  ) {
    this.payload = job.payload;
    this.jobId = job.id;
    this.attempts = job.attempts;
    this.#abort = abort;
  }

  get signal(): AbortSignal {
    return this.#abort.signal;
  }
}

export function isThenable<T>(value: T | PromiseLike<T>): value is PromiseLike<T> {
  return typeof (value as { then?: unknown } | null)?.then === 'function';
}

/**
 * Counters of one `run()` call. Steps count against their own loop's, so a
 * step left behind when a loop gave up at its grace deadline never disturbs
 * a later loop.
 */
export class WorkerLoop {
  /** Steps whose runner (or hook) has not returned: each holds a concurrency slot. */
  slotsHeld = 0;
  /** Of those, durable hook notifications. */
  hookSlotsHeld = 0;
  /** Steps not yet finished, settlement included. */
  unfinishedSteps = 0;
  /** Set when `run()` returned at its grace deadline with steps still out: they no longer settle. */
  abandoned = false;
  drained: (() => void) | undefined;

  constructor(private readonly wake: () => void) {}

  /** A step is completely done, its settlement included. */
  readonly finished = (): void => {
    this.unfinishedSteps--;
    this.wake();
    if (this.unfinishedSteps === 0 && this.drained) {
      const drained = this.drained;
      this.drained = undefined;
      drained();
    }
  };
}
