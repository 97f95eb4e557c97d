/** The chaos test's history checker on hand-written histories: each check fires on the anomaly it names, and only then. */
import { describe, expect, it } from 'vitest';
import { checkHistory, parseLog } from './history.js';
import type { FinalState, HistoryEvent, ParsedLogs } from './history.js';
import type { RunScript } from './fixtures/chaos-script.js';

const EMPTY: FinalState = { kvKeys: [], activeJobs: [], deadOutcomeJobs: 0 };
const A = 101;
const B = 102;
const SUBMITTER = 100;
const CHAOS = 99;

const script = (over: Partial<RunScript> = {}): RunScript => ({ i: 0, steps: 2, ending: 'succeed', delays: [0], maxAttempts: 5, ...over });

function ev(t: number, pid: number, e: string, fields: Partial<HistoryEvent> = {}): HistoryEvent {
  return { t, pid, role: pid === SUBMITTER ? 'submitter' : pid === CHAOS ? 'chaos' : 'worker', e, ...fields };
}

function logs(events: HistoryEvent[]): ParsedLogs {
  return { events: [...events].sort((a, b) => a.t - b.t), partialLines: 0, corruptLines: 0 };
}

/** A run `chaos-0` of two steps run by `pid`, its end committed at t=40, its hook run and acked by `hookPid` from t=50. */
function cleanRun(pid = A, hookPid = A, s: RunScript = script()): HistoryEvent[] {
  return [...runSteps(pid, s), ...delivery(hookPid, 50, 1, true)];
}

/** The steps of `cleanRun`, with no hook delivery. */
function runSteps(pid = A, s: RunScript = script()): HistoryEvent[] {
  const run = 'chaos-0';
  return [
    ev(1, SUBMITTER, 'submit', { run, script: s }),
    ev(10, pid, 'claim', { q: 'steps', job: 'j0', attempts: 1, run, step: 0, leaseExpiresAt: 1_510 }),
    ev(11, pid, 'start', { run, step: 0, attempt: 1, job: 'j0' }),
    ev(12, pid, 'end', { run, step: 0, attempt: 1, job: 'j0' }),
    ev(15, pid, 'settle', { q: 'steps', job: 'j0', attempts: 1, run, step: 0, action: 'ack', ok: true, branch: 'primary', status: 'done' }),
    ev(20, pid, 'claim', { q: 'steps', job: 'j1', attempts: 1, run, step: 1, leaseExpiresAt: 1_520 }),
    ev(21, pid, 'start', { run, step: 1, attempt: 1, job: 'j1' }),
    ev(22, pid, 'end', { run, step: 1, attempt: 1, job: 'j1' }),
    ev(40, pid, 'settle', { q: 'steps', job: 'j1', attempts: 1, run, step: 1, action: 'ack', ok: true, branch: 'primary', status: 'done' }),
    ev(40, pid, 'runEnded', { run, status: 'succeeded', finalStep: 1 }),
  ];
}

/** One delivery of the outcome job `o0` of `chaos-0`: claim, hook and (when `acked` is given) its ack answer. */
function delivery(pid: number, t: number, attempts: number, acked?: boolean, code?: string): HistoryEvent[] {
  const run = 'chaos-0';
  const out = [
    ev(t, pid, 'claim', { q: 'outcomes', job: 'o0', attempts, run, leaseExpiresAt: t + 1_500 }),
    ev(t + 1, pid, 'hook', { run, status: 'succeeded', finalStep: 1 }),
  ];
  if (acked !== undefined) out.push(ev(t + 2, pid, 'settle', { q: 'outcomes', job: 'o0', attempts, run, action: 'ack', ok: acked, ...(code ? { code } : {}) }));
  return out;
}

describe('chaos history checker', () => {
  it('a clean history has no violations', () => {
    const { figures, examples } = checkHistory(logs(cleanRun()), EMPTY);
    expect(figures).toMatchObject({
      runsSubmitted: 1,
      runsEnded: 1,
      lostRuns: 0,
      endedTwice: 0,
      hooks: 1,
      missingHooks: 0,
      duplicateHooksUnexplained: 0,
      wrongOutcomes: 0,
      settledStepsRerun: 0,
      stepRedeliveries: 0,
      prematureRedeliveries: 0,
    });
    expect(examples).toEqual({});
  });

  it('a submitted run with no terminal commit and no hook is lost, and its records count as leftovers', () => {
    const events = [ev(1, SUBMITTER, 'submit', { run: 'chaos-0', script: script() })];
    const final: FinalState = {
      kvKeys: ['workflow/workflow-steps/cursor/chaos-0'],
      activeJobs: [{ queue: 'workflow-steps', id: 'j0', status: 'dead', run: 'chaos-0' }],
      deadOutcomeJobs: 0,
    };
    const { figures, examples } = checkHistory(logs(events), final);
    expect(figures).toMatchObject({ runsSubmitted: 1, runsEnded: 0, lostRuns: 1, leftoverKv: 1, leftoverStepJobs: 1 });
    expect(examples.lostRuns?.[0]).toContain('records are still in the store');
  });

  it('a run that ended but whose hook never ran has a missing hook', () => {
    const events = runSteps();
    expect(checkHistory(logs(events), EMPTY).figures).toMatchObject({ runsEnded: 1, missingHooks: 1 });
  });

  it('two terminal commits of one run count as ended twice', () => {
    const events = [...cleanRun(), ev(45, B, 'runEnded', { run: 'chaos-0', status: 'failed', error: 'lease expired', finalStep: 1 })];
    expect(checkHistory(logs(events), EMPTY).figures.endedTwice).toBe(1);
  });

  it('a second hook after a delivery whose process was killed before any ack is explained', () => {
    const events = [...runSteps(), ...delivery(A, 50, 1), ev(60, CHAOS, 'fault', { kind: 'kill', target: A }), ...delivery(B, 1_600, 2, true)];
    expect(checkHistory(logs(events), EMPTY).figures).toMatchObject({ hooks: 2, duplicateHooksExplainedByKill: 1, duplicateHooksUnexplained: 0 });
  });

  it('a second hook after a delivery whose ack failed is a duplicate, even if that process died later', () => {
    const events = [
      ...runSteps(),
      ...delivery(A, 50, 1, false, 'LEASE_LOST'),
      ...delivery(B, 60, 2, true),
      ev(5_000, CHAOS, 'fault', { kind: 'kill', target: A }),
    ];
    const { figures, examples } = checkHistory(logs(events), EMPTY);
    expect(figures).toMatchObject({ hooks: 2, duplicateHooksExplainedByKill: 0, duplicateHooksUnexplained: 1, prematureRedeliveries: 1 });
    expect(examples.duplicateHooksUnexplained?.[0]).toContain('ack failed (LEASE_LOST)');
  });

  it('two outcome notifications for one run are counted', () => {
    const second = delivery(B, 3_000, 1, true).map((x) => (x.job === 'o0' ? { ...x, job: 'o1' } : x));
    expect(checkHistory(logs([...cleanRun(), ...second]), EMPTY).figures).toMatchObject({ notificationsTwice: 1, duplicateHooksUnexplained: 1 });
  });

  it('two acknowledged deliveries of one outcome are a duplicate', () => {
    const events = [...cleanRun(), ...delivery(B, 3_000, 2, true)];
    expect(checkHistory(logs(events), EMPTY).figures).toMatchObject({ hooks: 2, duplicateHooksUnexplained: 1, hookRedeliveries: 1 });
  });

  it('a step starting after its successor started is a settled step run again; by a stopped process it is told apart', () => {
    const late = [
      ev(30, B, 'claim', { q: 'steps', job: 'j0', attempts: 2, run: 'chaos-0', step: 0, leaseExpiresAt: 1_530 }),
      ev(31, B, 'start', { run: 'chaos-0', step: 0, attempt: 2, job: 'j0' }),
    ];
    const plain = checkHistory(logs([...cleanRun(), ...late]), EMPTY).figures;
    expect(plain).toMatchObject({ settledStepsRerun: 1, settledStepsRerunByStoppedProcess: 0, stepRedeliveries: 1, prematureRedeliveries: 1 });
    // Its settlement's log line lost (killed right after the commit): the successor's start still shows it settled.
    const unlogged = cleanRun().filter((x) => !(x.e === 'settle' && x.job === 'j0'));
    expect(checkHistory(logs([...unlogged, ...late]), EMPTY).figures.settledStepsRerun).toBe(1);
    const stopped = checkHistory(logs([...cleanRun(), ...late, ev(30, CHAOS, 'fault', { kind: 'stop', target: B })]), EMPTY).figures;
    expect(stopped).toMatchObject({ settledStepsRerun: 1, settledStepsRerunByStoppedProcess: 1 });
    // The claim committed at 300 while B was stopped (290 to 305); its reply was read on resuming.
    const zombie = [
      ev(306, B, 'claim', { q: 'steps', job: 'j0', attempts: 2, run: 'chaos-0', step: 0, claimedAt: 300, leaseExpiresAt: 1_800 }),
      ev(307, B, 'start', { run: 'chaos-0', step: 0, attempt: 2, job: 'j0' }),
    ];
    const pause = [ev(290, CHAOS, 'fault', { kind: 'stop', target: B }), ev(305, CHAOS, 'fault', { kind: 'cont', target: B })];
    expect(checkHistory(logs([...cleanRun(), ...zombie, ...pause]), EMPTY).figures.settledStepsRerunByStoppedProcess).toBe(1);
    // A pause over well before the claim committed explains nothing.
    const earlier = [ev(2, CHAOS, 'fault', { kind: 'stop', target: B }), ev(5, CHAOS, 'fault', { kind: 'cont', target: B })];
    expect(checkHistory(logs([...cleanRun(), ...zombie, ...earlier]), EMPTY).figures).toMatchObject({
      settledStepsRerun: 1,
      settledStepsRerunByStoppedProcess: 0,
    });
  });

  it('a retry after a committed nack is neither a re-delivery nor a rerun', () => {
    const run = 'chaos-0';
    const events = [
      ev(1, SUBMITTER, 'submit', { run, script: script({ steps: 1, transientAt: 0 }) }),
      ev(10, A, 'claim', { q: 'steps', job: 'j0', attempts: 1, run, step: 0, leaseExpiresAt: 1_510 }),
      ev(11, A, 'start', { run, step: 0, attempt: 1, job: 'j0' }),
      ev(12, A, 'settle', { q: 'steps', job: 'j0', attempts: 1, run, step: 0, action: 'nack', ok: true, status: 'scheduled' }),
      ev(80, B, 'claim', { q: 'steps', job: 'j0', attempts: 2, run, step: 0, leaseExpiresAt: 1_580 }),
      ev(81, B, 'start', { run, step: 0, attempt: 2, job: 'j0' }),
      ev(82, B, 'settle', { q: 'steps', job: 'j0', attempts: 2, run, step: 0, action: 'ack', ok: true, status: 'done' }),
      ev(82, B, 'runEnded', { run, status: 'succeeded', finalStep: 0 }),
      ev(90, B, 'claim', { q: 'outcomes', job: 'o0', attempts: 1, run, leaseExpiresAt: 1_590 }),
      ev(91, B, 'hook', { run, status: 'succeeded', finalStep: 0 }),
    ];
    expect(checkHistory(logs(events), EMPTY).figures).toMatchObject({ stepRedeliveries: 0, prematureRedeliveries: 0, settledStepsRerun: 0, wrongOutcomes: 0 });
  });

  it('outcomes are checked against the script and the cancels', () => {
    const failed = cleanRun().map((x) => (x.e === 'hook' || x.e === 'runEnded' ? { ...x, status: 'failed', error: 'scripted failure' } : x));
    expect(checkHistory(logs(failed), EMPTY).figures).toMatchObject({ wrongOutcomes: 1, failedByFaults: 0 });
    const expired = cleanRun().map((x) => (x.e === 'hook' || x.e === 'runEnded' ? { ...x, status: 'failed', error: 'lease expired' } : x));
    expect(checkHistory(logs(expired), EMPTY).figures).toMatchObject({ wrongOutcomes: 0, failedByFaults: 1 });
    expect(checkHistory(logs([...expired, ev(5, SUBMITTER, 'cancel', { run: 'chaos-0', ok: true })]), EMPTY).figures).toMatchObject({
      wrongOutcomes: 1,
      failedByFaults: 0,
    });
    const cancelledTrue = [...cleanRun(), ev(5, SUBMITTER, 'cancel', { run: 'chaos-0', ok: true })];
    expect(checkHistory(logs(cancelledTrue), EMPTY).figures.wrongOutcomes).toBe(1);
    const cancelledOutcome = cleanRun().map((x) => (x.e === 'hook' || x.e === 'runEnded' ? { ...x, status: 'cancelled' } : x));
    expect(checkHistory(logs([...cancelledOutcome, ev(5, SUBMITTER, 'cancel', { run: 'chaos-0', ok: true })]), EMPTY).figures.wrongOutcomes).toBe(0);
    expect(checkHistory(logs([...cancelledOutcome, ev(5, SUBMITTER, 'cancel', { run: 'chaos-0', ok: false })]), EMPTY).figures.wrongOutcomes).toBe(1);
  });

  it("a lease taken before it ended is premature, in database time whatever the claiming host's clock says", () => {
    const run = 'chaos-0';
    const base = [
      // A's clock is 5 minutes ahead, but its store reads lease ends in the database's time.
      ev(0, A, 'ready', { skewMs: 300_000 }),
      ev(1, SUBMITTER, 'submit', { run, script: script({ steps: 1 }) }),
      ev(10, A, 'claim', { q: 'steps', job: 'j0', attempts: 1, run, step: 0, leaseExpiresAt: 1_510 }),
    ];
    const afterExpiry = [...base, ev(1_600, B, 'claim', { q: 'steps', job: 'j0', attempts: 2, run, step: 0, leaseExpiresAt: 3_100 })];
    expect(checkHistory(logs(afterExpiry), EMPTY).figures).toMatchObject({ stepRedeliveries: 1, prematureRedeliveries: 0 });
    const early = [...base, ev(200, B, 'claim', { q: 'steps', job: 'j0', attempts: 2, run, step: 0, leaseExpiresAt: 1_700 })];
    expect(checkHistory(logs(early), EMPTY).figures).toMatchObject({ stepRedeliveries: 1, prematureRedeliveries: 1 });
    // A killed in between may have committed a retry it never logged: the early claim is then legitimate.
    const afterKill = [
      ...base,
      ev(100, CHAOS, 'fault', { kind: 'kill', target: A }),
      ev(200, B, 'claim', { q: 'steps', job: 'j0', attempts: 2, run, step: 0, leaseExpiresAt: 1_700 }),
    ];
    expect(checkHistory(logs(afterKill), EMPTY).figures).toMatchObject({ stepRedeliveries: 1, prematureRedeliveries: 0 });
  });

  it('a torn last line is tolerated; a torn line elsewhere is corruption', () => {
    const parsed: ParsedLogs = { events: [], partialLines: 0, corruptLines: 0 };
    parseLog('{"t":1,"pid":1,"role":"w","e":"ready"}\n{"t":2,"pid":1,"role":"w","e":"sta', parsed);
    parseLog('{"t":1,"pid":2,"role":"w","e":"ready"}\n{"t":2,"pid":2,\n{"t":3,"pid":2,"role":"w","e":"exit"}\n', parsed);
    expect(parsed).toMatchObject({ partialLines: 1, corruptLines: 1 });
    expect(parsed.events).toHaveLength(3);
  });
});
