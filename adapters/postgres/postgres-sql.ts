/**
 * One statement per store operation. Multi-statement operations call the
 * PL/pgSQL functions of postgres-migrations.ts, so each is one round trip and
 * one transaction. Every value is a parameter; only the validated, quoted
 * schema name is spliced in. Statements are named, so each connection
 * prepares them once.
 */
import { quoteIdent } from './postgres-pool.js';

export type StatementName =
  | 'enqueue'
  | 'claim'
  | 'settleOne'
  | 'settleAndClaim'
  | 'renew'
  | 'cancel'
  | 'reap'
  | 'promote'
  | 'requeueDead'
  | 'getJob'
  | 'completion'
  | 'deadJobs'
  | 'deadJobsAfter'
  | 'stats'
  | 'listQueues'
  | 'kvGet'
  | 'kvDelete'
  | 'kvDeleteIf';

/** The `jobs` columns a `JobRecord` is made of (the carried reaper branch stays in the database). */
const JOB_COLUMNS =
  'id, queue, payload, headers, status, attempts, max_attempts, priority, enqueued_at, claimed_at, lease_expires_at, run_at, last_error, dedup_key, completed_at, failed_at, cancel_requested, token';

export function statements(schema: string): Record<StatementName, string> {
  const S = quoteIdent(schema);
  return {
    enqueue: `SELECT ${S}.enqueue($1::bigint, $2::jsonb, $3::jsonb, $4::boolean) AS r`,
    claim: `SELECT * FROM ${S}.claim_jobs($1::bigint, $2::text, $3::integer, $4::bigint)`,
    settleOne: `SELECT ${S}.settle_one(${S}.now_ms($1::bigint), $2::jsonb, $3::jsonb) AS r`,
    settleAndClaim: `SELECT ${S}.settle_and_claim($1::bigint, $2::jsonb, $3::jsonb, $4::jsonb) AS r`,
    renew: `UPDATE ${S}.jobs SET lease_expires_at = ${S}.now_ms($1::bigint) + $4::bigint
            WHERE id = $2 AND status = 'claimed' AND token = $3
            RETURNING lease_expires_at, cancel_requested`,
    cancel: `SELECT ${S}.cancel($1::bigint, $2::text, $3::jsonb) AS r`,
    reap: `SELECT ${S}.reap($1::bigint, $2::jsonb) AS r`,
    promote: `SELECT ${S}.promote($1::bigint) AS r`,
    requeueDead: `SELECT ${S}.requeue_dead($1::text) AS r`,
    getJob: `SELECT ${JOB_COLUMNS} FROM ${S}.jobs WHERE id = $1`,
    // One snapshot: the job row (if any) and whether the job enqueued at $2 was removed by a cancel.
    completion: `SELECT (SELECT to_jsonb(j) - 'reaper_dead_letter' FROM ${S}.jobs j WHERE j.id = $1) AS job,
                 EXISTS (SELECT 1 FROM ${S}.removed_jobs r WHERE r.id = $1 AND r.enqueued_at = $2::bigint) AS removed`,
    deadJobs: `SELECT ${JOB_COLUMNS} FROM ${S}.jobs WHERE queue = $1 AND status = 'dead' ORDER BY id LIMIT $2`,
    deadJobsAfter: `SELECT ${JOB_COLUMNS} FROM ${S}.jobs WHERE queue = $1 AND status = 'dead' AND id > $3 ORDER BY id LIMIT $2`,
    stats: `SELECT coalesce(sum(pending), 0) AS pending, coalesce(sum(claimed), 0) AS claimed, coalesce(sum(scheduled), 0) AS scheduled,
            coalesce(sum(dead), 0) AS dead, coalesce(sum(done), 0) AS done FROM ${S}.counters WHERE queue = $1`,
    listQueues: `SELECT DISTINCT queue FROM ${S}.counters`,
    kvGet: `SELECT value FROM ${S}.kv WHERE key = $1`,
    kvDelete: `DELETE FROM ${S}.kv WHERE key = $1`,
    kvDeleteIf: `DELETE FROM ${S}.kv WHERE key = $1 AND value = $2`,
  };
}
