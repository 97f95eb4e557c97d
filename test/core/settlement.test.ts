/** Table-driven tests of the pure settlement decision: every row and precedence rule of the settlement table. */
import { describe, expect, it } from 'vitest';
import { StepError, StepOutcome, decideSettlement, decodeNotification, decodeRecord, reaperTemplate, runKeys } from '../../core/index.js';
import type { RunCursor, RunnerResult, SettlementDecision, StepFacts } from '../../core/index.js';
import { bytes } from '../support/harness.js';
import { ENDS_AT_ONCE } from '../../core/settlement.js';
import { ENDED_RECEIPT_TTL_MS, encodeReceipt } from '../../core/run-records.js';
import type { EndedReceipt } from '../../core/run-records.js';
import { instantiateReaperTemplate } from '../../core/store-kit.js';

const keys = runKeys('q', 'run-1');
/** In-process delivery: a branch that ends the run deletes its records and writes the receipt of how it ended. */
const endRun = (how: EndedReceipt['how']) => ({
  kvDeletes: [keys.identity, keys.cursor],
  kvWrites: [{ key: keys.ended, value: encodeReceipt({ jobId: 'JOB', delivery: 'TOKEN', how }), ttlMs: ENDED_RECEIPT_TTL_MS }],
});
const externalCancel = { action: { type: 'ack' }, effects: endRun('cancel') };

function facts(overrides: Partial<StepFacts> = {}): StepFacts {
  return {
    queueName: 'q',
    runId: 'run-1',
    stepNumber: 4,
    attempts: 1,
    maxAttempts: 3,
    priority: 1000,
    userHeaders: { tenant: 'acme' },
    keys,
    nextJobId: 'NEXT',
    maxPayloadBytes: 1024,
    outcomeQueue: undefined,
    reapedOutcomeQueue: 'q.outcomes',
    jobId: 'JOB',
    claimToken: 'TOKEN',
    workflow: undefined,
    payload: new Uint8Array(0),
    retryDelayMs: undefined,
    stepName: undefined,
    cancel: ENDS_AT_ONCE,
    ...overrides,
  };
}

const cursorIs = (jobId: string, step: number): object => ({ key: keys.cursor, equals: new TextEncoder().encode(JSON.stringify({ jobId, step })) });

const ok = (outcome: StepOutcome): RunnerResult => ({ ok: true, outcome });
const thrown = (error: unknown): RunnerResult => ({ ok: false, error });
const ended = (status: string, extra: object = {}): object => ({ runId: 'run-1', status, ...extra, headers: { tenant: 'acme' }, finalStep: 4 });

interface Row {
  name: string;
  result: RunnerResult;
  attempts?: number;
  action: object;
  endsRun: object | undefined;
  cancelOutcome?: object;
}

const rows: Row[] = [
  { name: 'succeed', result: ok(StepOutcome.succeed(bytes('r'))), action: { type: 'ack' }, endsRun: ended('succeeded', { result: bytes('r') }) },
  { name: 'fail', result: ok(StepOutcome.fail('no')), action: { type: 'ack' }, endsRun: ended('failed', { error: 'no' }) },
  {
    name: 'runner cancel (its reason wins over an external cancel)',
    result: ok(StepOutcome.cancel('why')),
    action: { type: 'ack' },
    endsRun: ended('cancelled', { error: 'why' }),
    cancelOutcome: ended('cancelled', { error: 'why' }),
  },
  {
    name: 'permanent error',
    result: thrown(StepError.permanent('bad')),
    action: { type: 'deadLetter', reason: 'bad' },
    endsRun: ended('failed', { error: 'bad' }),
  },
  {
    name: 'transient error, attempts < max',
    result: thrown(StepError.transient('flaky')),
    attempts: 2,
    action: { type: 'nack', error: 'flaky' },
    endsRun: undefined,
  },
  {
    name: 'transient error, attempts = max',
    result: thrown(StepError.transient('flaky')),
    attempts: 3,
    action: { type: 'nack', error: 'flaky' },
    endsRun: ended('failed', { error: 'flaky' }),
  },
  { name: 'plain Error is transient', result: thrown(new Error('boom')), action: { type: 'nack', error: 'boom' }, endsRun: undefined },
  { name: 'thrown string is transient', result: thrown('text'), action: { type: 'nack', error: 'text' }, endsRun: undefined },
];

describe('decideSettlement', () => {
  for (const row of rows) {
    it(row.name, () => {
      const decision = decideSettlement(facts({ attempts: row.attempts ?? 1 }), row.result);
      expect(decision.settlement.action).toEqual(row.action);
      expect(decision.primaryOutcome).toEqual(row.endsRun);
      if (row.endsRun) expect(decision.settlement.effects).toEqual(endRun('primary'));
      else expect(decision.settlement.effects).toBeUndefined();
      // Whatever the runner did, an external cancel flagged at commit acks and ends the run cancelled, no error...
      if (row.cancelOutcome === undefined) expect(decision.settlement.ifCancelRequested).toEqual(externalCancel);
      // ...(a runner-issued cancel commits its own branch either way)...
      else expect(decision.settlement.ifCancelRequested).toEqual({ action: { type: 'ack' }, effects: endRun('primary') });
      // ...except a runner-issued cancel, whose reason is kept.
      expect(decision.cancelOutcome).toEqual(row.cancelOutcome ?? ended('cancelled'));
      // Every settlement applies only while the run's cursor still names the settled job.
      expect(decision.settlement.precondition).toEqual(cursorIs('JOB', 4));
    });
  }

  it('continue: ack, next step enqueued with inherited priority, attempts, headers and dedup key, cursor moved', () => {
    const decision = decideSettlement(facts({ priority: 7, maxAttempts: 9 }), ok(StepOutcome.continue(bytes('p'))));
    expect(decision.primaryOutcome).toBeUndefined();
    expect(decision.next).toEqual({ jobId: 'NEXT', stepNumber: 5 });
    expect(decision.settlement.action).toEqual({ type: 'ack' });
    const effects = decision.settlement.effects!;
    expect(effects.enqueue).toEqual([
      {
        queue: 'q',
        payload: bytes('p'),
        options: {
          id: 'NEXT',
          headers: { tenant: 'acme', 'workflow.run_id': 'run-1', 'workflow.step': '5' },
          priority: 7,
          maxAttempts: 9,
          dedupKey: 'run:run-1:5',
        },
      },
    ]);
    expect(decision.settlement.precondition).toEqual(cursorIs('JOB', 4));
    expect(effects.kvWrites).toHaveLength(1);
    expect(effects.kvWrites![0]!.key).toBe(keys.cursor);
    expect(decodeRecord<RunCursor>(effects.kvWrites![0]!.value)).toEqual({ jobId: 'NEXT', step: 5 });
    expect(decision.settlement.ifCancelRequested).toEqual(externalCancel);
    expect(decision.cancelOutcome).toEqual(ended('cancelled'));
  });

  it('continueAfter schedules the next step after the delay, measured by the store', () => {
    const decision: SettlementDecision = decideSettlement(facts(), ok(StepOutcome.continueAfter(bytes('p'), 3_600_000)));
    expect(decision.settlement.effects!.enqueue![0]!.options).toMatchObject({ delayMs: 3_600_000 });
    expect(decision.settlement.effects!.enqueue![0]!.options!.runAt).toBeUndefined();
  });

  it('continueAfter with zero delay is an immediate continue', () => {
    const decision = decideSettlement(facts(), ok(StepOutcome.continueAfter(bytes('p'), 0)));
    expect(decision.settlement.effects!.enqueue![0]!.options!.runAt).toBeUndefined();
    expect(decision.settlement.effects!.enqueue![0]!.options!.delayMs).toBeUndefined();
  });

  it('the next step carries nothing for its reaper: the queue template makes from it the end of its run, failed "lease expired" or cancelled, with the outcome enqueued', () => {
    const decision = decideSettlement(facts(), ok(StepOutcome.continue(bytes('p'))));
    const next = decision.settlement.effects!.enqueue![0]!.options!;
    expect(next.reaperDeadLetter).toBeUndefined();
    const carried = instantiateReaperTemplate(reaperTemplate('q', 'q.outcomes'), { id: next.id!, headers: next.headers! })!;
    expect(carried.precondition).toEqual(cursorIs('NEXT', 5));
    for (const [effects, outcome] of [
      [carried.effects!, { runId: 'run-1', status: 'failed', error: 'lease expired', headers: { tenant: 'acme' }, finalStep: 5 }],
      [carried.ifCancelRequested!, { runId: 'run-1', status: 'cancelled', headers: { tenant: 'acme' }, finalStep: 5 }],
    ] as const) {
      expect(effects.kvDeletes).toEqual([keys.identity, keys.cursor]);
      expect(effects.enqueue).toHaveLength(1);
      // A notice with an empty payload: its headers carry the outcome and the run's own headers.
      expect(effects.enqueue![0]).toMatchObject({
        queue: 'q.outcomes',
        options: { dedupKey: 'outcome:NEXT', headers: { tenant: 'acme', 'workflow.run_id': 'run-1', 'workflow.step': '5' } },
      });
      const { payload, options } = effects.enqueue![0]!;
      expect(payload).toHaveLength(0);
      expect(decodeNotification(payload, options!.headers)).toEqual({ outcome, endedByReaper: true });
    }
  });

  it('a continue payload over the limit fails the run permanently', () => {
    const decision = decideSettlement(facts({ maxPayloadBytes: 2 }), ok(StepOutcome.continue(bytes('too big'))));
    expect(decision.settlement.action.type).toBe('deadLetter');
    expect(decision.primaryOutcome?.status).toBe('failed');
    expect(decision.primaryOutcome?.error).toMatch(/limit/);
  });

  it('is pure: the same facts give the same decision', () => {
    const a = decideSettlement(facts(), ok(StepOutcome.continue(bytes('p'))));
    const b = decideSettlement(facts(), ok(StepOutcome.continue(bytes('p'))));
    expect(a).toEqual(b);
  });
});

describe('StepOutcome builders', () => {
  it.each([-1, Number.NaN, Number.POSITIVE_INFINITY, 1.5])('continueAfter rejects delay %s with INVALID_ARGUMENT', (delay) => {
    expect(() => StepOutcome.continueAfter(bytes('x'), delay)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });

  it('rejects non-bytes payloads', () => {
    expect(() => StepOutcome.continue('text' as unknown as Uint8Array)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });

  it('StepError carries its kind', () => {
    expect(StepError.permanent('x').isPermanent).toBe(true);
    expect(StepError.transient('x').isPermanent).toBe(false);
    expect(StepError.transient('x').code).toBe('STEP_FAILED');
  });
});
