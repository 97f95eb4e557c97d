/**
 * The history checker of the chaos test, in the spirit of Jepsen's
 * total-queue checker: it reads every process's side-effect log plus the
 * store's final state and counts what the promise "every run ends exactly
 * once, with one hook, leaving nothing behind" allows and what it does not.
 * Pure: it gets the events and the final state, and returns figures plus
 * examples of each violation, so it is tested on hand-written histories.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { SCRIPTED, endingStep, scriptedOutcome } from './fixtures/chaos-script.js';
import type { RunScript } from './fixtures/chaos-script.js';

/** One line of a log (see fixtures/chaos-log.ts). */
export interface HistoryEvent {
  t: number;
  pid: number;
  role: string;
  e: string;
  run?: string;
  step?: number;
  attempt?: number;
  attempts?: number;
  job?: string;
  q?: 'steps' | 'outcomes';
  action?: string;
  ok?: boolean;
  status?: string;
  error?: string;
  finalStep?: number;
  code?: string;
  kind?: string;
  target?: number;
  script?: RunScript;
  ambiguous?: boolean;
  [key: string]: unknown;
}

/** What the store holds after the test stopped every process. */
export interface FinalState {
  /** Keys of the runtime's run records still present (`workflow/...`). */
  kvKeys: string[];
  /** Jobs not finished: queue, id, status (pending, scheduled, claimed) and, for step jobs, the run. */
  activeJobs: Array<{ queue: string; id: string; status: string; run?: string }>;
  /** Dead jobs of the outcome queue: notifications given up on, so hooks never delivered. */
  deadOutcomeJobs: number;
}

export interface Figures {
  runsSubmitted: number;
  runsEnded: number;
  lostRuns: number;
  endedTwice: number;
  hooks: number;
  missingHooks: number;
  /** Runs with more than one outcome notification job: one terminal commit must enqueue exactly one. */
  notificationsTwice: number;
  duplicateHooksExplainedByKill: number;
  duplicateHooksUnexplained: number;
  wrongOutcomes: number;
  /** Runs that failed with an error no script produces (lease expiry after repeated faults): allowed, counted. */
  failedByFaults: number;
  /**
   * Runs failed by lease expiry whose end came more than `REAPED_HANG_MS` after the last lease of their
   * final step ran out: the step was dead-lettered and nothing finished the run until later.
   */
  reapedRunsHung: number;
  /** Longest such wait, ms. */
  longestReapedHangMs: number;
  settledStepsRerun: number;
  /** Of those, executions by a process that was stopped between claiming and starting (a zombie delivery). */
  settledStepsRerunByStoppedProcess: number;
  stepRedeliveries: number;
  hookRedeliveries: number;
  /** Re-deliveries that came while the previous delivery's lease still ran (on the host's clock). */
  prematureRedeliveries: number;
  leftoverKv: number;
  leftoverStepJobs: number;
  leftoverOutcomeJobs: number;
  deadOutcomeJobs: number;
  kills: number;
  stops: number;
  backendTerminations: number;
  serverRestarts: number;
  processCrashes: number;
  partialLines: number;
  corruptLines: number;
}

export interface Verdict {
  figures: Figures;
  /** Up to a few examples per violated check, each a sentence naming runs, pids and times. */
  examples: Record<string, string[]>;
}

export interface ParsedLogs {
  events: HistoryEvent[];
  partialLines: number;
  corruptLines: number;
}

/** Parses log text: a torn last line (a process killed mid-write) is skipped and counted; a torn line elsewhere is corruption. */
export function parseLog(text: string, into: ParsedLogs): void {
  const lines = text.split('\n');
  const last = lines.length - 1;
  lines.forEach((line, index) => {
    if (line === '') return;
    try {
      into.events.push(JSON.parse(line) as HistoryEvent);
    } catch {
      if (index === last) into.partialLines++;
      else into.corruptLines++;
    }
  });
}

/** Reads every `*.jsonl` file of the log directory. */
export function readLogs(dir: string): ParsedLogs {
  const parsed: ParsedLogs = { events: [], partialLines: 0, corruptLines: 0 };
  for (const file of readdirSync(dir).sort()) if (file.endsWith('.jsonl')) parseLog(readFileSync(join(dir, file), 'utf8'), parsed);
  parsed.events.sort((a, b) => a.t - b.t);
  return parsed;
}

const MAX_EXAMPLES = 5;
const PREMATURE_TOLERANCE_MS = 100;
/** Several reaper periods (250 ms in the test) plus a settlement: a reaped run should have ended by then. */
const REAPED_HANG_MS = 5_000;
const RETRY_STATUSES = new Set(['pending', 'scheduled']);

function group<K, V>(items: V[], key: (v: V) => K | undefined): Map<K, V[]> {
  const out = new Map<K, V[]>();
  for (const item of items) {
    const k = key(item);
    if (k === undefined) continue;
    let list = out.get(k);
    if (!list) out.set(k, (list = []));
    list.push(item);
  }
  return out;
}

/** Checks a history. `events` must be sorted by time (as `readLogs` returns them). */
export function checkHistory(logs: ParsedLogs, final: FinalState): Verdict {
  const events = logs.events;
  const examples: Record<string, string[]> = {};
  const example = (check: string, text: string): void => {
    const list = (examples[check] ??= []);
    if (list.length < MAX_EXAMPLES) list.push(text);
  };
  const of = (name: string): HistoryEvent[] => events.filter((x) => x.e === name);

  const faults = of('fault');
  const faultsOf = (kind: string): HistoryEvent[] => faults.filter((f) => f.kind === kind);
  const killsByPid = group(faultsOf('kill'), (f) => f.target);
  const stopsByPid = group(faultsOf('stop'), (f) => f.target);

  const submits = new Map<string, HistoryEvent>();
  for (const s of of('submit')) if (s.run && !submits.has(s.run)) submits.set(s.run, s);
  const ends = group(of('runEnded'), (x) => x.run);
  const hooks = group(of('hook'), (x) => x.run);
  const cancels = group(of('cancel'), (x) => x.run);
  const cancelErrors = group(of('cancelError'), (x) => x.run);
  const settles = of('settle');

  // ---- every submitted run ends, once, as its script and the cancels say ----
  let runsEnded = 0;
  let endedTwice = 0;
  let wrongOutcomes = 0;
  let failedByFaults = 0;
  for (const [run, submit] of submits) {
    const runEnds = ends.get(run) ?? [];
    const runHooks = hooks.get(run) ?? [];
    if (runEnds.length === 0 && runHooks.length === 0) {
      const left = final.kvKeys.some((k) => k.endsWith(`/${run}`)) ? 'its records are still in the store' : 'no records left either';
      example('lostRuns', `${run} (submitted at ${submit.t}) never ended: no terminal commit, no hook; ${left}`);
      continue;
    }
    runsEnded++;
    const outcomes = [...runEnds, ...runHooks];
    const distinct = new Set(outcomes.map((o) => JSON.stringify([o.status, o.error ?? null, o.finalStep])));
    if (runEnds.length > 1 || distinct.size > 1) {
      endedTwice++;
      example('endedTwice', `${run} ended ${runEnds.length} times (pids ${runEnds.map((x) => x.pid).join(', ')}), outcomes ${[...distinct].join(' / ')}`);
    }
    const script = submit.script;
    if (!script) continue;
    const cancelAnswers = cancels.get(run) ?? [];
    // A cancel that answered true took effect; one that failed first may have taken effect before its retry answered.
    const cancelled = cancelAnswers.some((c) => c.ok === true);
    const maybeCancelled = (cancelErrors.get(run)?.length ?? 0) > 0;
    const scripted = scriptedOutcome(script);
    for (const o of distinct) {
      const [status, error, finalStep] = JSON.parse(o) as [string, string | null, number];
      const isScripted = status === scripted.status && (error ?? undefined) === scripted.error && finalStep === endingStep(script);
      const isCancel = status === 'cancelled' && (error === null || error === SCRIPTED.runnerCancel);
      const knownError = error !== null && (Object.values(SCRIPTED) as string[]).includes(error);
      // After a cancel that took effect, even a reaped step ends the run cancelled (the flag lives on the job).
      if (cancelled ? isCancel : isScripted || (maybeCancelled && isCancel)) continue;
      if (!cancelled && status === 'failed' && !knownError) {
        failedByFaults++;
        continue;
      }
      wrongOutcomes++;
      example(
        'wrongOutcomes',
        `${run} ended ${status}${error === null ? '' : ` "${error}"`} on step ${finalStep}; script: ${scripted.status}${scripted.error ? ` "${scripted.error}"` : ''} on step ${scripted.finalStep}${cancelled ? ', but a cancel of it returned true' : ''}`,
      );
    }
  }

  // ---- hooks: exactly one per run; a repeat only after its deliverer was killed before the ack ----
  // Each hook is paired with the outcome claim it ran for (same process, same run, the earliest one
  // not yet paired), and so with that delivery's ack.
  const claims = of('claim');
  /** A claim's lease end: the store computes it in the database's time, whatever the claiming host's clock says. */
  const leaseEnd = (c: HistoryEvent): number => Number(c.leaseExpiresAt ?? Infinity);
  const claimByAttempt = new Map<string, HistoryEvent>();
  for (const c of claims) if (!claimByAttempt.has(`${c.job}/${c.attempts}`)) claimByAttempt.set(`${c.job}/${c.attempts}`, c);
  const outcomeClaims = group(
    claims.filter((c) => c.q === 'outcomes'),
    (c) => `${c.pid}/${c.run}`,
  );
  const ackOf = new Map<string, HistoryEvent>();
  for (const s of settles) if (s.q === 'outcomes' && s.action === 'ack') ackOf.set(`${s.pid}/${s.job}/${s.attempts}`, s);
  const paired = new Set<HistoryEvent>();
  const describeDelivery = (d: { hook: HistoryEvent; claim: HistoryEvent | undefined; ack: HistoryEvent | undefined }): string => {
    const where = `pid ${d.hook.pid} at ${d.hook.t}`;
    if (!d.claim) return `${where} (no claim logged)`;
    const next = claimByAttempt.get(`${d.claim.job}/${Number(d.claim.attempts) + 1}`);
    const left = Math.round(next ? leaseEnd(d.claim) - next.t : 0);
    const taken = next ? `; re-claimed by pid ${next.pid} at ${next.t}, ${left >= 0 ? `${left} ms before` : `${-left} ms after`} its lease ended` : '';
    const ack = d.ack ? (d.ack.ok ? 'acked' : `ack failed (${d.ack.code ?? 'error'})`) : 'no ack logged';
    return `${where} (job ${d.claim.job} attempt ${d.claim.attempts}, ${ack}${taken})`;
  };
  let notificationsTwice = 0;
  for (const [key, list] of group(
    claims.filter((c) => c.q === 'outcomes'),
    (c) => c.run,
  )) {
    const jobs = new Set(list.map((c) => c.job));
    if (jobs.size < 2) continue;
    notificationsTwice++;
    example('notificationsTwice', `${key}: ${jobs.size} outcome notifications (${[...jobs].join(', ')})`);
  }
  let hookCount = 0;
  let missingHooks = 0;
  let explainedByKill = 0;
  let unexplained = 0;
  for (const run of submits.keys()) {
    const runHooks = hooks.get(run) ?? [];
    hookCount += runHooks.length;
    if (runHooks.length === 0) {
      if (ends.has(run)) {
        missingHooks++;
        example('missingHooks', `${run} ended (pid ${ends.get(run)?.[0]?.pid} at ${ends.get(run)?.[0]?.t}) but its hook never ran`);
      }
      continue;
    }
    if (runHooks.length === 1) continue;
    const deliveries = runHooks.map((hook) => {
      const claim = (outcomeClaims.get(`${hook.pid}/${run}`) ?? []).find((c) => c.t <= hook.t && !paired.has(c));
      if (claim) paired.add(claim);
      const ack = claim ? ackOf.get(`${claim.pid}/${claim.job}/${claim.attempts}`) : undefined;
      // A logged ack answer (even a failed one) means the process outlived the delivery: a later kill explains nothing.
      const killed = ack === undefined && (killsByPid.get(hook.pid) ?? []).some((f) => f.t >= hook.t);
      return { hook, claim, ack, killed };
    });
    // At least once allows every delivery but one to be lost to a kill before its ack; any other repeat is a duplicate.
    const byKill = Math.min(runHooks.length - 1, deliveries.filter((d) => d.killed).length);
    explainedByKill += byKill;
    const extra = runHooks.length - 1 - byKill;
    unexplained += extra;
    if (extra > 0)
      example(
        'duplicateHooksUnexplained',
        `${run}: ${runHooks.length} hooks, ${byKill} explained by a kill; deliveries: ${deliveries.map(describeDelivery).join('; ')}`,
      );
  }

  // ---- settled steps run again ----
  const starts = of('start');
  const startsByStep = group(starts, (x) => (x.run === undefined ? undefined : `${x.run}/${x.step}`));
  const settledAt = new Map<string, number>();
  const mark = (key: string, t: number): void => {
    if (t < (settledAt.get(key) ?? Infinity)) settledAt.set(key, t);
  };
  for (const s of settles) if (s.q === 'steps' && s.ok === true && !RETRY_STATUSES.has(s.status ?? '')) mark(`${s.run}/${s.step}`, s.t);
  for (const [key, list] of startsByStep) {
    const [run, step] = [key.slice(0, key.lastIndexOf('/')), Number(key.slice(key.lastIndexOf('/') + 1))];
    if (step > 0) mark(`${run}/${step - 1}`, (list[0] as HistoryEvent).t);
  }
  const claimOf = new Map<string, HistoryEvent>();
  for (const c of claims) claimOf.set(`${c.pid}/${c.job}/${c.attempts}`, c);
  const conts = group(faultsOf('cont'), (f) => f.target);
  /** Whether `pid` was stopped at some moment between `from` and `to` (a stop that began before and lasted into the window counts). */
  const stoppedWithin = (pid: number, from: number, to: number): boolean =>
    (stopsByPid.get(pid) ?? []).some((stop) => {
      if (stop.t > to) return false;
      const resumed = (conts.get(pid) ?? []).find((c) => c.t >= stop.t)?.t ?? Infinity;
      return resumed >= from;
    });
  let rerun = 0;
  let rerunByStopped = 0;
  for (const s of starts) {
    const key = `${s.run}/${s.step}`;
    const at = settledAt.get(key);
    if (at === undefined || s.t <= at) continue;
    rerun++;
    const claim = claimOf.get(`${s.pid}/${s.job}/${s.attempt}`);
    // The claim commits in the database (claimedAt) and may sit unread while the process is stopped.
    const committedAt = claim?.claimedAt !== undefined ? Number(claim.claimedAt) : (claim?.t ?? s.t);
    const stopped = stoppedWithin(s.pid, committedAt - PREMATURE_TOLERANCE_MS, s.t);
    if (stopped) rerunByStopped++;
    const lease = claim ? ` its lease had ended ${Math.round(s.t - leaseEnd(claim))} ms before;` : '';
    example(
      'settledStepsRerun',
      `${key} (job ${s.job}, attempt ${s.attempt}) started in pid ${s.pid} at ${s.t}, ${s.t - at} ms after the step had settled;${lease}${stopped ? ' that process was stopped between its claim and this start' : ' no stop of that process explains it'}`,
    );
  }

  // ---- re-deliveries: a claim after an attempt that did not commit a retry ----
  const retried = new Set<string>();
  for (const s of settles) if (s.ok === true && RETRY_STATUSES.has(s.status ?? '')) retried.add(`${s.job}/${s.attempts}`);
  let stepRedeliveries = 0;
  let hookRedeliveries = 0;
  let premature = 0;
  for (const c of claims) {
    if ((c.attempts ?? 1) <= 1 || retried.has(`${c.job}/${(c.attempts ?? 1) - 1}`)) continue;
    if (c.q === 'outcomes') hookRedeliveries++;
    else stepRedeliveries++;
    const previous = claimByAttempt.get(`${c.job}/${(c.attempts ?? 1) - 1}`);
    // Allow for rounding between the database's and the host's millisecond. A holder killed in between may
    // have committed a retry it never logged, which makes the early claim legitimate.
    const killedBetween = previous !== undefined && (killsByPid.get(previous.pid) ?? []).some((k) => k.t >= previous.t && k.t <= c.t);
    if (previous && !killedBetween && c.t < leaseEnd(previous) - PREMATURE_TOLERANCE_MS) {
      premature++;
      example(
        'prematureRedeliveries',
        `${c.q} job ${c.job} (run ${c.run}) re-claimed as attempt ${c.attempts} by pid ${c.pid} at ${c.t}, ${Math.round(leaseEnd(previous) - c.t)} ms before the lease of attempt ${previous.attempts} (pid ${previous.pid}) ended`,
      );
    }
  }

  // ---- runs whose step was dead-lettered by the reaper: how long until they ended ----
  let reapedRunsHung = 0;
  let longestReapedHangMs = 0;
  for (const run of submits.keys()) {
    const end = [...(ends.get(run) ?? []), ...(hooks.get(run) ?? [])].sort((a, b) => a.t - b.t)[0];
    if (!end || end.status !== 'failed' || end.error !== 'lease expired') continue;
    const finalClaims = claims.filter((c) => c.q === 'steps' && c.run === run && c.step === end.finalStep);
    if (finalClaims.length === 0) continue;
    const expired = Math.max(...finalClaims.map(leaseEnd));
    const hang = end.t - expired;
    if (hang <= REAPED_HANG_MS) continue;
    reapedRunsHung++;
    longestReapedHangMs = Math.max(longestReapedHangMs, hang);
    example(
      'reapedRunsHung',
      `${run}: step ${end.finalStep}'s last lease ran out at ${Math.round(expired)}, the run ended ${Math.round(hang)} ms later (pid ${end.pid})`,
    );
  }

  // ---- nothing left behind ----
  const leftoverStepJobs = final.activeJobs.filter((j) => !j.queue.endsWith('.outcomes'));
  const leftoverOutcomeJobs = final.activeJobs.filter((j) => j.queue.endsWith('.outcomes'));
  for (const key of final.kvKeys) example('leftovers', `kv record ${key}`);
  for (const job of final.activeJobs) example('leftovers', `${job.status} job ${job.id} on ${job.queue}${job.run ? ` (run ${job.run})` : ''}`);

  const figures: Figures = {
    runsSubmitted: submits.size,
    runsEnded,
    lostRuns: submits.size - runsEnded,
    endedTwice,
    hooks: hookCount,
    missingHooks,
    notificationsTwice,
    duplicateHooksExplainedByKill: explainedByKill,
    duplicateHooksUnexplained: unexplained,
    wrongOutcomes,
    failedByFaults,
    reapedRunsHung,
    longestReapedHangMs: Math.round(longestReapedHangMs),
    settledStepsRerun: rerun,
    settledStepsRerunByStoppedProcess: rerunByStopped,
    stepRedeliveries,
    hookRedeliveries,
    prematureRedeliveries: premature,
    leftoverKv: final.kvKeys.length,
    leftoverStepJobs: leftoverStepJobs.length,
    leftoverOutcomeJobs: leftoverOutcomeJobs.length,
    deadOutcomeJobs: final.deadOutcomeJobs,
    kills: faultsOf('kill').length,
    stops: faultsOf('stop').length,
    backendTerminations: faultsOf('terminate').reduce((n, f) => n + Number(f.count ?? 0), 0),
    serverRestarts: faultsOf('restart').length,
    processCrashes: of('crash').length,
    partialLines: logs.partialLines,
    corruptLines: logs.corruptLines,
  };
  return { figures, examples };
}

/** The summary table printed after a chaos run. */
export function formatSummary(verdict: Verdict, header: string): string {
  const f = verdict.figures;
  const rows: Array<[string, number | string]> = [
    ['runs submitted', f.runsSubmitted],
    ['runs ended', f.runsEnded],
    ['kills (SIGKILL)', f.kills],
    ['stops (SIGSTOP past lease)', f.stops],
    ['backend terminations', f.backendTerminations],
    ['server restarts (immediate)', f.serverRestarts],
    ['step re-deliveries', f.stepRedeliveries],
    ['hook re-deliveries', f.hookRedeliveries],
    ['re-deliveries before the lease ended', f.prematureRedeliveries],
    ['lost (never ended)', f.lostRuns],
    ['ended twice', f.endedTwice],
    ['hooks run', f.hooks],
    ['hooks missing', f.missingHooks],
    ['runs with two outcome notifications', f.notificationsTwice],
    ['duplicated hooks, explained by a kill', f.duplicateHooksExplainedByKill],
    ['duplicated hooks, unexplained', f.duplicateHooksUnexplained],
    ['wrong outcomes', f.wrongOutcomes],
    ['failed by faults (lease expired)', f.failedByFaults],
    ['reaped runs left running > 5 s (longest)', `${f.reapedRunsHung} (${f.longestReapedHangMs} ms)`],
    ['settled steps run again', f.settledStepsRerun],
    ['  of which by a stopped process', f.settledStepsRerunByStoppedProcess],
    ['leftover kv records', f.leftoverKv],
    ['leftover step jobs', f.leftoverStepJobs],
    ['leftover outcome jobs', f.leftoverOutcomeJobs],
    ['dead outcome jobs', f.deadOutcomeJobs],
    ['process crashes', f.processCrashes],
    ['torn last lines / corrupt lines', `${f.partialLines} / ${f.corruptLines}`],
  ];
  const width = Math.max(...rows.map(([name]) => name.length));
  const lines = [header, ...rows.map(([name, value]) => `  ${name.padEnd(width)}  ${value}`)];
  for (const [check, list] of Object.entries(verdict.examples)) {
    lines.push(`  ${check}:`);
    for (const text of list) lines.push(`    - ${text}`);
  }
  return lines.join('\n');
}
