/**
 * One statement per store operation, with named parameters and a typed
 * result row. Multi-statement operations call the PL/pgSQL functions of the
 * migrations (sql/*.sql), so each is one round trip and one transaction.
 * Every value is a parameter (`:name` in the text, sent as `$n`); only the
 * validated, quoted schema name is spliced in. Statements are named, so
 * each connection prepares them once.
 */
import type { QueueStats } from '../../core/queue-store.js';
import { quoteIdent } from './postgres-pool.js';
import type { CancelJson, FlushJson, InsertJson, JobRow, PromoteJson, ReapJson, SettleJson } from './postgres-rows.js';

/** The `now` parameter: the injected clock's time, or null for "the database's clock". */
type Now = number | null;

/** Each statement's parameters, by name, and the row it returns. */
export interface Statements {
  enqueue: { params: { now: Now; jobs: string; kvWrites: string | null; single: boolean }; row: { result: InsertJson[] } };
  claim: { params: { now: Now; queue: string; limit: number; leaseMs: number }; row: JobRow };
  settleOne: { params: { now: Now; config: string; item: string }; row: { result: SettleJson } };
  settleAndClaim: { params: { now: Now; config: string; items: string; claims: string }; row: { result: FlushJson } };
  renew: { params: { now: Now; jobId: string; token: string; extendMs: number }; row: { lease_expires_at: string; cancel_requested: boolean } };
  cancel: { params: { now: Now; jobId: string; effects: string | null }; row: { result: CancelJson } };
  reap: { params: { now: Now; config: string }; row: { result: ReapJson } };
  promote: { params: { now: Now }; row: { result: PromoteJson } };
  setReaperTemplate: { params: { queue: string; template: string }; row: never };
  deleteReaperTemplate: { params: { queue: string }; row: never };
  requeueDead: { params: { jobId: string }; row: { queue: string } };
  getJob: { params: { jobId: string }; row: JobRow };
  completion: { params: { jobId: string; enqueuedAt: number }; row: { job: JobRow | null; removed: boolean } };
  deadJobs: { params: { queue: string; limit: number }; row: JobRow };
  deadJobsAfter: { params: { queue: string; limit: number; after: string }; row: JobRow };
  stats: { params: { queue: string }; row: Record<keyof QueueStats, string> };
  listQueues: { params: Record<string, never>; row: { queue: string } };
  kvGet: { params: { now: Now; key: string }; row: { value: Buffer } };
  kvDelete: { params: { now: Now; key: string }; row: never };
  kvDeleteIf: { params: { now: Now; key: string; value: Buffer }; row: never };
}

export type StatementName = keyof Statements;

/** A statement ready to send: its text with `$n` placeholders and the parameter names in that order. */
export interface PreparedText {
  text: string;
  params: readonly string[];
}

/** The `jobs` columns a `JobRecord` is made of (the carried reaper branch stays in the database). */
const JOB_COLUMNS =
  'id, queue, payload, headers, status, attempts, max_attempts, priority, enqueued_at, claimed_at, lease_expires_at, run_at, last_error, dedup_key, completed_at, failed_at, cancel_requested, token';

function texts(S: string): Record<StatementName, string> {
  return {
    enqueue: `SELECT ${S}.enqueue(:now::bigint, :jobs::jsonb, :kvWrites::jsonb, :single::boolean) AS result`,
    claim: `SELECT * FROM ${S}.claim_jobs(:now::bigint, :queue::text, :limit::integer, :leaseMs::bigint)`,
    settleOne: `SELECT ${S}.settle_one(${S}.now_ms(:now::bigint), :config::jsonb, :item::jsonb) AS result`,
    settleAndClaim: `SELECT ${S}.settle_and_claim(:now::bigint, :config::jsonb, :items::jsonb, :claims::jsonb) AS result`,
    renew: `UPDATE ${S}.jobs SET lease_expires_at = ${S}.now_ms(:now::bigint) + :extendMs::bigint
            WHERE id = :jobId AND status = 'claimed' AND token = :token
            RETURNING lease_expires_at, cancel_requested`,
    cancel: `SELECT ${S}.cancel(:now::bigint, :jobId::text, :effects::jsonb) AS result`,
    reap: `SELECT ${S}.reap(:now::bigint, :config::jsonb) AS result`,
    promote: `SELECT ${S}.promote(:now::bigint) AS result`,
    setReaperTemplate: `INSERT INTO ${S}.reaper_templates (queue, template) VALUES (:queue, :template::jsonb)
                        ON CONFLICT (queue) DO UPDATE SET template = excluded.template`,
    deleteReaperTemplate: `DELETE FROM ${S}.reaper_templates WHERE queue = :queue`,
    requeueDead: `SELECT ${S}.requeue_dead(:jobId::text) AS queue`,
    getJob: `SELECT ${JOB_COLUMNS} FROM ${S}.jobs WHERE id = :jobId`,
    // One snapshot: the job row (if any) and whether the job enqueued at that time was removed by a cancel.
    completion: `SELECT (SELECT to_jsonb(j) - 'reaper_dead_letter' FROM ${S}.jobs j WHERE j.id = :jobId) AS job,
                 EXISTS (SELECT 1 FROM ${S}.removed_jobs r WHERE r.id = :jobId AND r.enqueued_at = :enqueuedAt::bigint) AS removed`,
    deadJobs: `SELECT ${JOB_COLUMNS} FROM ${S}.jobs WHERE queue = :queue AND status = 'dead' ORDER BY id LIMIT :limit`,
    deadJobsAfter: `SELECT ${JOB_COLUMNS} FROM ${S}.jobs WHERE queue = :queue AND status = 'dead' AND id > :after ORDER BY id LIMIT :limit`,
    stats: `SELECT coalesce(sum(pending), 0) AS pending, coalesce(sum(claimed), 0) AS claimed, coalesce(sum(scheduled), 0) AS scheduled,
            coalesce(sum(dead), 0) AS dead, coalesce(sum(done), 0) AS done FROM ${S}.counters WHERE queue = :queue`,
    listQueues: `SELECT DISTINCT queue FROM ${S}.counters`,
    // A record past its expires_at is gone for every read (it stays until a reap deletes it, or a write replaces it).
    kvGet: `SELECT value FROM ${S}.kv WHERE key = :key AND (expires_at IS NULL OR expires_at > ${S}.now_ms(:now::bigint))`,
    kvDelete: `DELETE FROM ${S}.kv WHERE key = :key AND (expires_at IS NULL OR expires_at > ${S}.now_ms(:now::bigint))`,
    kvDeleteIf: `DELETE FROM ${S}.kv WHERE key = :key AND value = :value AND (expires_at IS NULL OR expires_at > ${S}.now_ms(:now::bigint))`,
  };
}

/** `:name` placeholders (not the `::type` of a cast) become `$1`, `$2`, ... in order of first use. */
export function numberParams(named: string): PreparedText {
  const params: string[] = [];
  const text = named.replace(/(?<![:\w]):([A-Za-z]\w*)/g, (_match, name: string) => {
    let index = params.indexOf(name);
    if (index < 0) index = params.push(name) - 1;
    return `$${index + 1}`;
  });
  return { text, params };
}

export function statements(schema: string): Record<StatementName, PreparedText> {
  const named = texts(quoteIdent(schema));
  return Object.fromEntries(Object.entries(named).map(([name, text]) => [name, numberParams(text)])) as Record<StatementName, PreparedText>;
}

/** The positional values of a statement's named parameters; a parameter left out is a bug, caught here. */
export function paramValues(statement: PreparedText, params: Record<string, unknown>): unknown[] {
  return statement.params.map((name) => {
    if (!(name in params)) throw new Error(`statement parameter "${name}" missing`);
    return params[name];
  });
}
