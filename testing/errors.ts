import { WorkflowError } from '../core/index.js';

/** A run still active when a guard stopped the clock. */
export interface ActiveRun {
  runId: string;
  /** The step its live job carries. */
  step: number;
  /**
   * `pending` (claimable), `scheduled` (waiting for its time or a retry),
   * `running` (claimed), `cancelling`, or `notifying` (ended; its durable
   * outcome notification has not been delivered yet).
   */
  state: 'pending' | 'scheduled' | 'running' | 'cancelling' | 'notifying';
  jobId: string;
  attempts: number;
}

/**
 * `runUntilIdle`/`advanceTime`/`simulate` hit a guard (too many steps, too
 * much virtual time, or nothing left that could make progress) while runs
 * were still active: a workflow that never ends fails fast instead of hanging.
 */
export class TestGuardError extends WorkflowError {
  readonly code = 'TEST_GUARD_EXCEEDED';
  readonly isPermanent = true;
  constructor(
    /** Which guard tripped. */
    readonly guard: 'maxSteps' | 'maxVirtualTime' | 'stalled',
    readonly activeRuns: ActiveRun[],
    message: string,
  ) {
    super(message);
  }
}

/** A simulation found invariant violations; the message names the seed that replays it. */
export class SimulationFailedError extends WorkflowError {
  readonly code = 'SIMULATION_FAILED';
  readonly isPermanent = true;
  constructor(
    readonly seed: number,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Lists active runs, one per line, for error messages. */
export function describeActiveRuns(runs: ActiveRun[], max = 20): string {
  if (runs.length === 0) return '  (no run is active: live jobs without run headers)';
  const lines = runs.slice(0, max).map((r) => `  - run ${r.runId}: step ${r.step}, ${r.state} (job ${r.jobId}, attempt ${r.attempts})`);
  if (runs.length > max) lines.push(`  … and ${runs.length - max} more`);
  return lines.join('\n');
}
