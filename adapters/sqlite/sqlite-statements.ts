/**
 * Every SQL statement of the store, prepared once per connection. Status
 * values are literals (not parameters) so SQLite can match the partial
 * indexes of the schema.
 */
import type BetterSqlite3 from 'better-sqlite3';
import { CANCELLED_CLAIM_COLUMNS, CLAIM_COLUMNS, DELETED_COLUMNS, JOB_COLUMNS, OWNER_COLUMNS, REQUEUED_COLUMNS } from './sqlite-rows.js';

/** A prepared statement taking positional or named parameters. */
export type Stmt = BetterSqlite3.Statement;

/** The condition of a kv record that has not expired at the statement's last parameter, `now`. */
const LIVE_KV = '(expires_at IS NULL OR expires_at > ?)';

export function prepareStatements(db: BetterSqlite3.Database): Record<StatementName, Stmt> {
  const p = (sql: string): Stmt => db.prepare(sql);
  const statements = {
    insertJob: p(
      `INSERT INTO taquba_jobs (id, queue, status, payload, headers, attempts, max_attempts, priority, enqueued_at, run_at, dedup_key, reaper_dead_letter)
       VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?)`,
    ),
    findDedup: p('SELECT id FROM taquba_jobs WHERE queue = ? AND dedup_key = ?').pluck(),
    jobExists: p('SELECT 1 FROM taquba_jobs WHERE id = ?').pluck(),
    getJob: p(`SELECT ${JOB_COLUMNS} FROM taquba_jobs WHERE id = ?`),
    claim: p(
      `UPDATE taquba_jobs SET status = 'claimed', attempts = attempts + 1, claimed_at = @now, lease_expires_at = @leaseExpiresAt,
         dedup_key = NULL, claim_token = @token || '.' || id
       WHERE id IN (SELECT id FROM taquba_jobs WHERE queue = @queue AND status = 'pending' ORDER BY priority, id LIMIT @limit)
       RETURNING ${CLAIM_COLUMNS}`,
    ),
    hasPending: p("SELECT 1 FROM taquba_jobs WHERE queue = ? AND status = 'pending' LIMIT 1").pluck(),
    owner: p(`SELECT ${OWNER_COLUMNS} FROM taquba_jobs WHERE id = ?`),
    deleteJob: p('DELETE FROM taquba_jobs WHERE id = ?'),
    deleteOwned: p(`DELETE FROM taquba_jobs WHERE id = ? AND status = 'claimed' AND claim_token = ? RETURNING ${DELETED_COLUMNS}`),
    ackKeep: p(
      `UPDATE taquba_jobs SET status = 'done', completed_at = ?, lease_expires_at = NULL, claim_token = NULL WHERE id = ?
       RETURNING ${JOB_COLUMNS}`,
    ),
    ensureQueue: p('INSERT INTO taquba_queues (name) VALUES (?) ON CONFLICT (name) DO NOTHING'),
    addCounts: p(
      'UPDATE taquba_queues SET pending = pending + ?, claimed = claimed + ?, scheduled = scheduled + ?, dead = dead + ?, done = done + ? WHERE name = ?',
    ),
    toDead: p(
      `UPDATE taquba_jobs SET status = 'dead', last_error = ?, failed_at = ?, lease_expires_at = NULL, claim_token = NULL WHERE id = ?
       RETURNING ${JOB_COLUMNS}`,
    ),
    toRetry: p('UPDATE taquba_jobs SET status = ?, run_at = ?, last_error = ?, lease_expires_at = NULL, claim_token = NULL WHERE id = ?'),
    renew: p('UPDATE taquba_jobs SET lease_expires_at = ? WHERE id = ?'),
    flagCancel: p(`UPDATE taquba_jobs SET cancel_requested = 1 WHERE id = ? RETURNING ${JOB_COLUMNS}`),
    reapDead: p(
      `UPDATE taquba_jobs SET status = 'dead', last_error = 'lease expired', failed_at = @now, lease_expires_at = NULL, claim_token = NULL
       WHERE status = 'claimed' AND lease_expires_at <= @now AND attempts >= max_attempts
       RETURNING ${JOB_COLUMNS}, reaper_dead_letter`,
    ),
    reapRequeue: p(
      `UPDATE taquba_jobs SET status = 'pending', lease_expires_at = NULL, claim_token = NULL
       WHERE status = 'claimed' AND lease_expires_at <= @now
       RETURNING ${REQUEUED_COLUMNS}`,
    ),
    sweepDone: p("DELETE FROM taquba_jobs WHERE queue = ? AND status = 'done' AND completed_at <= ?"),
    sweepDead: p("DELETE FROM taquba_jobs WHERE queue = ? AND status = 'dead' AND failed_at <= ?"),
    promote: p("UPDATE taquba_jobs SET status = 'pending', run_at = NULL WHERE status = 'scheduled' AND run_at <= ? RETURNING queue").pluck(),
    nextDue: p("SELECT run_at FROM taquba_jobs WHERE status = 'scheduled' ORDER BY run_at LIMIT 1").pluck(),
    requeueDead: p("UPDATE taquba_jobs SET status = 'pending', attempts = 0, cancel_requested = 0, last_error = NULL, failed_at = NULL WHERE id = ?"),
    deadPage: p(`SELECT ${JOB_COLUMNS} FROM taquba_jobs WHERE queue = ? AND status = 'dead' AND id > ? ORDER BY id LIMIT ?`),
    stats: p('SELECT pending, claimed, scheduled, dead, done FROM taquba_queues WHERE name = ?'),
    queueNames: p('SELECT name FROM taquba_queues ORDER BY name').pluck(),
    cancelledClaims: p(`SELECT ${CANCELLED_CLAIM_COLUMNS} FROM taquba_jobs WHERE status = 'claimed' AND cancel_requested = 1`),
    // Kv reads take the transaction's `now`: a record with `expires_at <= now` is gone (see `KV_EXPIRY`).
    kvGet: p(`SELECT value FROM taquba_kv WHERE key = ? AND ${LIVE_KV}`).pluck(),
    kvExists: p(`SELECT 1 FROM taquba_kv WHERE key = ? AND ${LIVE_KV}`).pluck(),
    /** `expires_at` NULL makes the record permanent (also one that was expiring). */
    kvUpsert: p(
      'INSERT INTO taquba_kv (key, value, expires_at) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at',
    ),
    /** For effects, where nothing tells an expired record from none: it deletes either. */
    kvDelete: p('DELETE FROM taquba_kv WHERE key = ?'),
    /** `kvDelete` and its `ifValue`: only a live record is deleted and counts (an expired one is left to the sweep). */
    kvDeleteLive: p(`DELETE FROM taquba_kv WHERE key = ? AND ${LIVE_KV}`),
    kvDeleteIf: p(`DELETE FROM taquba_kv WHERE key = ? AND value = ? AND ${LIVE_KV}`),
    /** The reaper's sweep, through the partial index of expiring records (`taquba_kv_expiry`). */
    sweepKv: p('DELETE FROM taquba_kv WHERE expires_at <= ?'),
    dataVersion: p('PRAGMA data_version').pluck(),
    recordRemoved: p(
      `INSERT INTO taquba_removed (id, enqueued_at, removed_at) VALUES (?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET enqueued_at = excluded.enqueued_at, removed_at = excluded.removed_at`,
    ),
    removedEnqueuedAt: p('SELECT enqueued_at FROM taquba_removed WHERE id = ?').pluck(),
    sweepRemoved: p('DELETE FROM taquba_removed WHERE removed_at <= ?'),
    reaperTemplate: p('SELECT template FROM taquba_reaper_templates WHERE queue = ?').pluck(),
    putReaperTemplate: p('INSERT INTO taquba_reaper_templates (queue, template) VALUES (?, ?) ON CONFLICT (queue) DO UPDATE SET template = excluded.template'),
    deleteReaperTemplate: p('DELETE FROM taquba_reaper_templates WHERE queue = ?'),
  };
  return statements;
}

type StatementName =
  | 'insertJob'
  | 'findDedup'
  | 'jobExists'
  | 'hasPending'
  | 'getJob'
  | 'claim'
  | 'owner'
  | 'deleteJob'
  | 'deleteOwned'
  | 'ackKeep'
  | 'ensureQueue'
  | 'addCounts'
  | 'toDead'
  | 'toRetry'
  | 'renew'
  | 'flagCancel'
  | 'reapDead'
  | 'reapRequeue'
  | 'sweepDone'
  | 'sweepDead'
  | 'promote'
  | 'nextDue'
  | 'requeueDead'
  | 'deadPage'
  | 'stats'
  | 'queueNames'
  | 'cancelledClaims'
  | 'kvGet'
  | 'kvExists'
  | 'kvUpsert'
  | 'kvDelete'
  | 'kvDeleteLive'
  | 'kvDeleteIf'
  | 'sweepKv'
  | 'dataVersion'
  | 'recordRemoved'
  | 'removedEnqueuedAt'
  | 'sweepRemoved'
  | 'reaperTemplate'
  | 'putReaperTemplate'
  | 'deleteReaperTemplate';

export type Statements = Record<StatementName, Stmt>;
