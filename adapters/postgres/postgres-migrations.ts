/**
 * Numbered schema migrations, applied on open under a transaction-scoped
 * advisory lock so that any number of processes may open the same schema at
 * once. A database whose schema is newer than the newest migration known
 * here is refused with `IncompatibleSchemaError` rather than used.
 *
 * Each operation with more than one statement is a PL/pgSQL function, so it
 * commits in a single round trip and its decisions (which settlement branch,
 * dedup hits, lease ownership) are taken inside the transaction from locked
 * rows. `{{S}}` is the quoted schema, `{{CHANNEL}}` the NOTIFY channel literal.
 */
import { IncompatibleSchemaError, StoreOpenError } from '../../core/errors.js';
import type { PgPoolLike } from './postgres-pool.js';
import { quoteIdent } from './postgres-pool.js';

/** Times are epoch ms: the injected clock's value when given, the database's clock otherwise. */
const MIGRATION_1 = String.raw`
CREATE TABLE {{S}}.jobs (
  id text COLLATE "C" PRIMARY KEY,
  queue text COLLATE "C" NOT NULL,
  payload bytea NOT NULL,
  headers text NOT NULL,
  status text NOT NULL CHECK (status IN ('pending', 'scheduled', 'claimed', 'done', 'dead')),
  attempts bigint NOT NULL DEFAULT 0,
  max_attempts bigint NOT NULL,
  priority bigint NOT NULL,
  enqueued_at bigint NOT NULL,
  claimed_at bigint,
  lease_expires_at bigint,
  run_at bigint,
  last_error text,
  dedup_key text COLLATE "C",
  completed_at bigint,
  failed_at bigint,
  cancel_requested boolean NOT NULL DEFAULT false,
  token text
);
-- The claim order, for pending jobs only: claims walk this index with SKIP LOCKED.
CREATE INDEX jobs_pending ON {{S}}.jobs (queue, priority, id) WHERE status = 'pending';
CREATE INDEX jobs_scheduled ON {{S}}.jobs (run_at) WHERE status = 'scheduled';
CREATE INDEX jobs_leases ON {{S}}.jobs (lease_expires_at) WHERE status = 'claimed';
-- A dedup key is held only while pending or scheduled (a claim clears it), so this enforces one live job per dedup key.
CREATE UNIQUE INDEX jobs_dedup ON {{S}}.jobs (queue, dedup_key) WHERE dedup_key IS NOT NULL;
CREATE INDEX jobs_dead ON {{S}}.jobs (queue, id) WHERE status = 'dead';
CREATE INDEX jobs_dead_age ON {{S}}.jobs (failed_at) WHERE status = 'dead';
CREATE INDEX jobs_done_age ON {{S}}.jobs (completed_at) WHERE status = 'done';

CREATE TABLE {{S}}.kv (key text COLLATE "C" PRIMARY KEY, value bytea NOT NULL);

-- Counters striped by backend: concurrent transactions on different connections
-- update different rows; stats() sums the stripes. done is cumulative.
CREATE TABLE {{S}}.counters (
  queue text COLLATE "C" NOT NULL,
  stripe integer NOT NULL,
  pending bigint NOT NULL DEFAULT 0,
  claimed bigint NOT NULL DEFAULT 0,
  scheduled bigint NOT NULL DEFAULT 0,
  dead bigint NOT NULL DEFAULT 0,
  done bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (queue, stripe)
);

-- Set by a claim that came back short (a worker is about to wait); cleared by the
-- first transaction that makes a job claimable, which alone sends the NOTIFY.
CREATE TABLE {{S}}.wakeups (queue text COLLATE "C" PRIMARY KEY, wanted boolean NOT NULL);

CREATE FUNCTION {{S}}.now_ms(p_now bigint) RETURNS bigint LANGUAGE sql STABLE AS $$
  SELECT coalesce(p_now, floor(extract(epoch FROM now()) * 1000)::bigint)
$$;

CREATE FUNCTION {{S}}.bump(q text, dp bigint, dc bigint, ds bigint, dd bigint, ddone bigint) RETURNS void LANGUAGE sql AS $$
  INSERT INTO {{S}}.counters AS c (queue, stripe, pending, claimed, scheduled, dead, done)
  VALUES (q, pg_backend_pid() % 64, dp, dc, ds, dd, ddone)
  ON CONFLICT (queue, stripe) DO UPDATE SET
    pending = c.pending + excluded.pending, claimed = c.claimed + excluded.claimed,
    scheduled = c.scheduled + excluded.scheduled, dead = c.dead + excluded.dead, done = c.done + excluded.done
$$;

CREATE FUNCTION {{S}}.wake(q text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM {{S}}.wakeups WHERE queue = q AND wanted) THEN
    UPDATE {{S}}.wakeups SET wanted = false WHERE queue = q AND wanted;
    IF FOUND THEN
      PERFORM pg_notify({{CHANNEL}}, json_build_object('t', 'j', 'q', q)::text);
    END IF;
  END IF;
END $$;

-- p_defer: the caller moves the counters and sends the wakeups itself (settle_batch does, once per queue).
CREATE FUNCTION {{S}}.insert_job(v_now bigint, r jsonb, p_defer boolean DEFAULT false) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_q text := r->>'queue';
  v_dedup text := r->>'dedupKey';
  v_run bigint := (r->>'runAt')::bigint;
  v_status text;
  v_id text;
  v_existing text;
BEGIN
  v_status := CASE WHEN v_run IS NOT NULL AND v_run > v_now THEN 'scheduled' ELSE 'pending' END;
  -- A caller-chosen id in use is an error even when the dedup key would have matched
  -- (without a dedup key the primary key itself reports it).
  IF v_dedup IS NOT NULL AND (r->>'own')::boolean AND EXISTS (SELECT 1 FROM {{S}}.jobs WHERE id = r->>'id') THEN
    RAISE EXCEPTION USING ERRCODE = 'unique_violation', CONSTRAINT = 'jobs_pkey', MESSAGE = 'job id in use',
      DETAIL = 'Key (id)=(' || (r->>'id') || ') already exists.';
  END IF;
  LOOP
    INSERT INTO {{S}}.jobs (id, queue, payload, headers, status, max_attempts, priority, enqueued_at, run_at, dedup_key)
    VALUES (r->>'id', v_q, decode(r->>'payload', 'base64'), r->>'headers', v_status, (r->>'maxAttempts')::bigint,
            (r->>'priority')::bigint, v_now, CASE WHEN v_status = 'scheduled' THEN v_run END, v_dedup)
    ON CONFLICT (queue, dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING
    RETURNING id INTO v_id;
    IF v_id IS NOT NULL THEN
      IF v_status = 'pending' THEN
        IF NOT p_defer THEN
          PERFORM {{S}}.bump(v_q, 1, 0, 0, 0, 0);
          PERFORM {{S}}.wake(v_q);
        END IF;
        RETURN jsonb_build_object('kind', 'new', 'id', v_id, 'queue', v_q, 'status', v_status);
      END IF;
      IF NOT p_defer THEN
        PERFORM {{S}}.bump(v_q, 0, 0, 1, 0, 0);
      END IF;
      RETURN jsonb_build_object('kind', 'new', 'id', v_id, 'queue', v_q, 'status', v_status, 'runAt', v_run);
    END IF;
    SELECT id INTO v_existing FROM {{S}}.jobs WHERE queue = v_q AND dedup_key = v_dedup;
    IF v_existing IS NOT NULL THEN
      RETURN jsonb_build_object('kind', 'alreadyEnqueued', 'id', v_existing);
    END IF;
    -- The holder was claimed or cancelled between our insert and our look-up: try again.
  END LOOP;
END $$;

-- Caller-chosen ids of effect jobs must be free before the transition itself (which may delete a job) runs.
CREATE FUNCTION {{S}}.check_own_ids(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  v_id text;
BEGIN
  IF e IS NULL THEN RETURN; END IF;
  SELECT r->>'id' INTO v_id FROM jsonb_array_elements(coalesce(e->'enqueue', '[]')) r
  WHERE (r->>'own')::boolean AND EXISTS (SELECT 1 FROM {{S}}.jobs WHERE id = r->>'id') LIMIT 1;
  IF v_id IS NULL THEN
    -- The same id twice in one request.
    SELECT r->>'id' INTO v_id FROM jsonb_array_elements(coalesce(e->'enqueue', '[]')) r
    WHERE (r->>'own')::boolean GROUP BY r->>'id' HAVING count(*) > 1 LIMIT 1;
  END IF;
  IF v_id IS NOT NULL THEN
    RAISE EXCEPTION USING ERRCODE = 'unique_violation', CONSTRAINT = 'jobs_pkey', MESSAGE = 'job id in use',
      DETAIL = 'Key (id)=(' || v_id || ') already exists.';
  END IF;
END $$;

CREATE FUNCTION {{S}}.apply_effects(v_now bigint, e jsonb, p_defer boolean DEFAULT false) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_out jsonb := '[]';
  r jsonb;
  k text;
BEGIN
  IF e IS NULL THEN RETURN v_out; END IF;
  FOR r IN SELECT * FROM jsonb_array_elements(coalesce(e->'enqueue', '[]')) LOOP
    v_out := v_out || jsonb_build_array({{S}}.insert_job(v_now, r, p_defer));
  END LOOP;
  FOR r IN SELECT * FROM jsonb_array_elements(coalesce(e->'kvWrites', '[]')) LOOP
    INSERT INTO {{S}}.kv (key, value) VALUES (r->>'key', decode(r->>'value', 'base64'))
    ON CONFLICT (key) DO UPDATE SET value = excluded.value;
  END LOOP;
  FOR k IN SELECT * FROM jsonb_array_elements_text(coalesce(e->'kvDeletes', '[]')) LOOP
    DELETE FROM {{S}}.kv WHERE key = k;
  END LOOP;
  RETURN v_out;
END $$;

-- p_single: a lone enqueue, checked in the order dedup hit, ifAbsent conflict, id in use;
-- a batch checks ids first (as settlement effects do).
CREATE FUNCTION {{S}}.enqueue(p_now bigint, p_jobs jsonb, p_kv jsonb, p_single boolean) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_now bigint := {{S}}.now_ms(p_now);
  v_out jsonb := '[]';
  v_claimed text[] := '{}';
  v_existing text;
  v_key text;
  r jsonb;
BEGIN
  IF p_single THEN
    r := p_jobs->0;
    IF r->>'dedupKey' IS NOT NULL THEN
      SELECT id INTO v_existing FROM {{S}}.jobs WHERE queue = r->>'queue' AND dedup_key = r->>'dedupKey';
      IF v_existing IS NOT NULL THEN
        RETURN jsonb_build_array(jsonb_build_object('kind', 'alreadyEnqueued', 'id', v_existing));
      END IF;
    END IF;
    IF p_kv IS NOT NULL THEN
      SELECT w->>'key' INTO v_key FROM jsonb_array_elements(p_kv) w
      WHERE coalesce((w->>'ifAbsent')::boolean, false) AND EXISTS (SELECT 1 FROM {{S}}.kv WHERE key = w->>'key') LIMIT 1;
      IF v_key IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'TQ003', MESSAGE = v_key;
      END IF;
    END IF;
  END IF;
  FOR r IN SELECT * FROM jsonb_array_elements(p_jobs) LOOP
    v_out := v_out || jsonb_build_array({{S}}.insert_job(v_now, r));
  END LOOP;
  IF p_kv IS NULL OR v_out->0->>'kind' = 'alreadyEnqueued' THEN
    RETURN v_out;
  END IF;
  -- ifAbsent is judged against the state before this call (a key written twice by it does not conflict with
  -- itself); the insert also catches a key committed concurrently since the check above.
  FOR r IN SELECT * FROM jsonb_array_elements(p_kv) LOOP
    IF coalesce((r->>'ifAbsent')::boolean, false) AND NOT ((r->>'key') = ANY (v_claimed)) THEN
      INSERT INTO {{S}}.kv (key, value) VALUES (r->>'key', decode(r->>'value', 'base64')) ON CONFLICT (key) DO NOTHING;
      IF NOT FOUND THEN
        -- Aborts the whole statement: the job and every other write roll back.
        RAISE EXCEPTION USING ERRCODE = 'TQ003', MESSAGE = r->>'key';
      END IF;
      v_claimed := v_claimed || (r->>'key');
    END IF;
  END LOOP;
  FOR r IN SELECT * FROM jsonb_array_elements(p_kv) LOOP
    INSERT INTO {{S}}.kv (key, value) VALUES (r->>'key', decode(r->>'value', 'base64'))
    ON CONFLICT (key) DO UPDATE SET value = excluded.value;
  END LOOP;
  RETURN v_out;
END $$;

CREATE FUNCTION {{S}}.claim(p_now bigint, p_queue text, p_limit integer, p_lease bigint) RETURNS SETOF {{S}}.jobs LANGUAGE plpgsql AS $$
DECLARE
  v_now bigint := {{S}}.now_ms(p_now);
  v_n bigint;
BEGIN
  RETURN QUERY
    UPDATE {{S}}.jobs j
    SET status = 'claimed', attempts = j.attempts + 1, claimed_at = v_now, lease_expires_at = v_now + p_lease,
        dedup_key = NULL, token = gen_random_uuid()::text
    FROM (
      SELECT id FROM {{S}}.jobs
      WHERE queue = p_queue AND status = 'pending'
      ORDER BY priority, id
      LIMIT p_limit
      FOR UPDATE SKIP LOCKED
    ) c
    WHERE j.id = c.id
    RETURNING j.*;
  GET DIAGNOSTICS v_n = ROW_COUNT;
  IF v_n > 0 THEN
    PERFORM {{S}}.bump(p_queue, -v_n, v_n, 0, 0, 0);
  END IF;
  IF v_n < p_limit AND NOT EXISTS (SELECT 1 FROM {{S}}.wakeups WHERE queue = p_queue AND wanted) THEN
    INSERT INTO {{S}}.wakeups (queue, wanted) VALUES (p_queue, true)
    ON CONFLICT (queue) DO UPDATE SET wanted = true;
  END IF;
END $$;

CREATE FUNCTION {{S}}.settle_one(v_now bigint, p_cfg jsonb, it jsonb, p_defer boolean DEFAULT false) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  j {{S}}.jobs;
  b jsonb := it->'settlement';
  a jsonb;
  c jsonb;
  v_branch text := 'primary';
  v_status text;
  v_delay bigint;
  v_base numeric;
  v_run bigint;
  v_enq jsonb;
BEGIN
  -- Lock only a claimed row: locking a pending one (stale token) would make a concurrent
  -- SKIP LOCKED claim miss a claimable job.
  SELECT * INTO j FROM {{S}}.jobs WHERE id = it->>'jobId' AND status = 'claimed' FOR UPDATE;
  IF NOT FOUND OR j.token IS DISTINCT FROM it->>'token' THEN
    RAISE EXCEPTION USING ERRCODE = 'TQ001', MESSAGE = it->>'jobId';
  END IF;
  -- The cancel branch is chosen here, from the locked row: no window for a concurrent cancel.
  IF j.cancel_requested AND b ? 'ifCancelRequested' THEN
    b := b->'ifCancelRequested';
    v_branch := 'cancel';
  END IF;
  IF b ? 'repeatedId' THEN
    RAISE EXCEPTION USING ERRCODE = 'unique_violation', CONSTRAINT = 'jobs_pkey', MESSAGE = 'job id in use',
      DETAIL = 'Key (id)=(' || (b->>'repeatedId') || ') already exists.';
  END IF;
  -- Effects first, while the settled job still exists: an effect reusing any id in use (the settled
  -- job's included) then fails on the primary key, with no separate look-up.
  v_enq := {{S}}.apply_effects(v_now, b->'effects', p_defer);
  a := b->'action';
  c := coalesce(p_cfg->'queues'->j.queue, p_cfg->'default');
  IF a->>'type' = 'ack' THEN
    v_status := 'done';
    IF jsonb_typeof(c->'keepDoneJobsMs') = 'number' THEN
      UPDATE {{S}}.jobs SET status = 'done', completed_at = v_now, lease_expires_at = NULL, token = NULL WHERE id = j.id;
    ELSE
      DELETE FROM {{S}}.jobs WHERE id = j.id;
    END IF;
    IF NOT p_defer THEN PERFORM {{S}}.bump(j.queue, 0, -1, 0, 0, 1); END IF;
  ELSIF a->>'type' = 'deadLetter' OR j.attempts >= j.max_attempts THEN
    v_status := 'dead';
    UPDATE {{S}}.jobs SET status = 'dead', failed_at = v_now, last_error = coalesce(a->>'reason', a->>'error'),
      lease_expires_at = NULL, token = NULL WHERE id = j.id;
    IF NOT p_defer THEN PERFORM {{S}}.bump(j.queue, 0, -1, 0, 1, 0); END IF;
  ELSE
    v_base := (c->>'retryBackoffBaseMs')::numeric;
    v_delay := CASE WHEN v_base = 0 THEN 0
      ELSE least(v_base * power(2::numeric, least(greatest(j.attempts - 1, 0), 80)), (c->>'retryBackoffMaxMs')::numeric)::bigint END;
    IF v_delay = 0 THEN
      v_status := 'pending';
      UPDATE {{S}}.jobs SET status = 'pending', last_error = a->>'error', lease_expires_at = NULL, token = NULL, run_at = NULL WHERE id = j.id;
      IF NOT p_defer THEN
        PERFORM {{S}}.bump(j.queue, 1, -1, 0, 0, 0);
        PERFORM {{S}}.wake(j.queue);
      END IF;
    ELSE
      v_status := 'scheduled';
      v_run := v_now + v_delay;
      UPDATE {{S}}.jobs SET status = 'scheduled', last_error = a->>'error', lease_expires_at = NULL, token = NULL, run_at = v_run WHERE id = j.id;
      IF NOT p_defer THEN PERFORM {{S}}.bump(j.queue, 0, -1, 1, 0, 0); END IF;
    END IF;
  END IF;
  RETURN jsonb_build_object('branch', v_branch, 'status', v_status, 'queue', j.queue, 'runAt', v_run, 'enqueued', v_enq);
END $$;

-- Group commit: many settlements in one transaction, each in its own
-- subtransaction so that each keeps its all-or-nothing outcome.
CREATE FUNCTION {{S}}.settle_batch(p_now bigint, p_cfg jsonb, p_items jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_now bigint := {{S}}.now_ms(p_now);
  v_out jsonb := '[]';
  it jsonb;
  v_r jsonb;
  v_state text;
  v_msg text;
  v_detail text;
  v_con text;
  r record;
BEGIN
  FOR it IN SELECT * FROM jsonb_array_elements(p_items) LOOP
    BEGIN
      v_r := {{S}}.settle_one(v_now, p_cfg, it, true);
    EXCEPTION WHEN OTHERS THEN
      GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT, v_detail = PG_EXCEPTION_DETAIL, v_con = CONSTRAINT_NAME;
      v_r := jsonb_build_object('error', jsonb_build_object('code', v_state, 'message', v_msg, 'detail', v_detail, 'constraint', nullif(v_con, '')));
    END;
    v_out := v_out || jsonb_build_array(v_r);
  END LOOP;
  -- Counters move once per queue for the whole batch: repeated updates of one row inside a
  -- transaction each walk the row's growing version chain.
  FOR r IN
    SELECT q, sum(dp) AS dp, sum(dc) AS dc, sum(ds) AS ds, sum(dd) AS dd, sum(ddone) AS ddone FROM (
      SELECT x->>'queue' AS q, (x->>'status' = 'pending')::int AS dp, -1 AS dc, (x->>'status' = 'scheduled')::int AS ds,
             (x->>'status' = 'dead')::int AS dd, (x->>'status' = 'done')::int AS ddone
      FROM jsonb_array_elements(v_out) x WHERE NOT x ? 'error'
      UNION ALL
      SELECT e->>'queue', (e->>'status' = 'pending')::int, 0, (e->>'status' = 'scheduled')::int, 0, 0
      FROM jsonb_array_elements(v_out) x, jsonb_array_elements(x->'enqueued') e WHERE NOT x ? 'error' AND e->>'kind' = 'new'
    ) d GROUP BY q ORDER BY q
  LOOP
    PERFORM {{S}}.bump(r.q, r.dp, r.dc, r.ds, r.dd, r.ddone);
    IF r.dp > 0 THEN
      PERFORM {{S}}.wake(r.q);
    END IF;
  END LOOP;
  RETURN v_out;
END $$;

CREATE FUNCTION {{S}}.cancel(p_now bigint, p_id text, p_effects jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_now bigint := {{S}}.now_ms(p_now);
  j {{S}}.jobs;
  v_enq jsonb;
BEGIN
  SELECT * INTO j FROM {{S}}.jobs WHERE id = p_id FOR UPDATE;
  IF NOT FOUND OR j.status IN ('done', 'dead') THEN
    RETURN jsonb_build_object('outcome', 'notFound');
  END IF;
  IF j.status = 'claimed' THEN
    IF NOT j.cancel_requested THEN
      UPDATE {{S}}.jobs SET cancel_requested = true WHERE id = p_id;
    END IF;
    PERFORM pg_notify({{CHANNEL}}, json_build_object('t', 'c', 'q', j.queue, 'id', j.id)::text);
    RETURN jsonb_build_object('outcome', 'requested', 'firstRequest', NOT j.cancel_requested, 'job', to_jsonb(j) || '{"cancel_requested": true}');
  END IF;
  PERFORM {{S}}.check_own_ids(p_effects);
  DELETE FROM {{S}}.jobs WHERE id = p_id;
  IF j.status = 'pending' THEN
    PERFORM {{S}}.bump(j.queue, -1, 0, 0, 0, 0);
  ELSE
    PERFORM {{S}}.bump(j.queue, 0, 0, -1, 0, 0);
  END IF;
  v_enq := {{S}}.apply_effects(v_now, p_effects);
  RETURN jsonb_build_object('outcome', 'removed', 'job', to_jsonb(j), 'enqueued', v_enq);
END $$;

CREATE FUNCTION {{S}}.reap(p_now bigint, p_cfg jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_now bigint := {{S}}.now_ms(p_now);
  j {{S}}.jobs;
  v_requeued jsonb := '[]';
  v_dead jsonb := '[]';
  v_done_swept bigint := 0;
  v_dead_swept bigint := 0;
  v_counts jsonb;
  r record;
BEGIN
  -- No SKIP LOCKED here: a row locked by a concurrent settle or cancel is waited for and
  -- re-checked, so a reap is linearizable with them (skipping would miss an expired claim).
  -- Id order, like settle batches, so the two never lock the same rows in opposite orders.
  FOR j IN SELECT * FROM {{S}}.jobs WHERE status = 'claimed' AND lease_expires_at <= v_now
           ORDER BY id FOR UPDATE LOOP
    IF j.attempts >= j.max_attempts THEN
      UPDATE {{S}}.jobs SET status = 'dead', last_error = 'lease expired', failed_at = v_now, lease_expires_at = NULL, token = NULL
      WHERE id = j.id RETURNING * INTO j;
      PERFORM {{S}}.bump(j.queue, 0, -1, 0, 1, 0);
      v_dead := v_dead || jsonb_build_array(to_jsonb(j));
    ELSE
      UPDATE {{S}}.jobs SET status = 'pending', lease_expires_at = NULL, token = NULL WHERE id = j.id;
      PERFORM {{S}}.bump(j.queue, 1, -1, 0, 0, 0);
      PERFORM {{S}}.wake(j.queue);
      v_requeued := v_requeued || to_jsonb(j.id);
    END IF;
  END LOOP;
  WITH d AS (
    DELETE FROM {{S}}.jobs WHERE id IN (
      SELECT id FROM {{S}}.jobs x
      WHERE status = 'done'
        AND completed_at + (coalesce(p_cfg->'queues'->x.queue, p_cfg->'default')->>'keepDoneJobsMs')::bigint <= v_now
      ORDER BY id FOR UPDATE)
    RETURNING 1)
  SELECT count(*) INTO v_done_swept FROM d;
  WITH d AS (
    DELETE FROM {{S}}.jobs WHERE id IN (
      SELECT id FROM {{S}}.jobs x
      WHERE status = 'dead'
        AND failed_at + (coalesce(p_cfg->'queues'->x.queue, p_cfg->'default')->>'deadRetentionMs')::bigint <= v_now
      ORDER BY id FOR UPDATE)
    RETURNING queue)
  SELECT coalesce(jsonb_object_agg(queue, n), '{}') INTO v_counts FROM (SELECT queue, count(*) AS n FROM d GROUP BY queue) g;
  FOR r IN SELECT key, value::bigint AS n FROM jsonb_each_text(v_counts) ORDER BY key LOOP
    PERFORM {{S}}.bump(r.key, 0, 0, 0, -r.n, 0);
    v_dead_swept := v_dead_swept + r.n;
  END LOOP;
  RETURN jsonb_build_object('requeued', v_requeued, 'deadLettered', v_dead, 'doneSwept', v_done_swept, 'deadSwept', v_dead_swept);
END $$;

CREATE FUNCTION {{S}}.promote(p_now bigint) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_now bigint := {{S}}.now_ms(p_now);
  v_counts jsonb;
  v_moved bigint := 0;
  v_next bigint;
  r record;
BEGIN
  WITH u AS (
    UPDATE {{S}}.jobs j SET status = 'pending', run_at = NULL
    FROM (SELECT id FROM {{S}}.jobs WHERE status = 'scheduled' AND run_at <= v_now ORDER BY id FOR UPDATE) s
    WHERE j.id = s.id
    RETURNING j.queue)
  SELECT coalesce(jsonb_object_agg(queue, n), '{}') INTO v_counts FROM (SELECT queue, count(*) AS n FROM u GROUP BY queue) g;
  FOR r IN SELECT key, value::bigint AS n FROM jsonb_each_text(v_counts) ORDER BY key LOOP
    PERFORM {{S}}.bump(r.key, r.n, 0, -r.n, 0, 0);
    PERFORM {{S}}.wake(r.key);
    v_moved := v_moved + r.n;
  END LOOP;
  SELECT run_at INTO v_next FROM {{S}}.jobs WHERE status = 'scheduled' ORDER BY run_at LIMIT 1;
  RETURN jsonb_build_object('moved', v_moved, 'queues', (SELECT coalesce(jsonb_agg(k), '[]') FROM jsonb_object_keys(v_counts) k), 'next', v_next);
END $$;

CREATE FUNCTION {{S}}.requeue_dead(p_id text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  j {{S}}.jobs;
BEGIN
  -- Lock only a dead row: locking a pending one would make a concurrent SKIP LOCKED claim miss it.
  SELECT * INTO j FROM {{S}}.jobs WHERE id = p_id AND status = 'dead' FOR UPDATE;
  IF NOT FOUND THEN
    SELECT * INTO j FROM {{S}}.jobs WHERE id = p_id;
    IF NOT FOUND THEN
      RAISE EXCEPTION USING ERRCODE = 'TQ004', MESSAGE = p_id;
    END IF;
    RAISE EXCEPTION USING ERRCODE = 'TQ005', MESSAGE = json_build_object('id', p_id, 'status', j.status)::text;
  END IF;
  UPDATE {{S}}.jobs SET status = 'pending', attempts = 0, last_error = NULL, failed_at = NULL, cancel_requested = false
  WHERE id = p_id;
  PERFORM {{S}}.bump(j.queue, 1, 0, 0, -1, 0);
  PERFORM {{S}}.wake(j.queue);
  RETURN j.queue;
END $$;
`;

/**
 * Version 2: one round trip for a whole flush of a process's queued work:
 * settlements (in job-id order, as the caller sorted them) and then claims,
 * which therefore see the jobs those settlements made claimable.
 *
 * - Settlements run set-based (`settle_set`: a handful of statements for the
 *   whole batch instead of several per settlement), in one subtransaction.
 *   When that path cannot promise exactly what `settle_one` applied to each
 *   item in order would give, or raises (an id in use, a deadlock), the batch
 *   is rolled back and rerun with `settle_one` in one subtransaction each, so
 *   each settlement keeps its own all-or-nothing outcome.
 * - Claims are `claim`'s statement: `FOR UPDATE SKIP LOCKED` in (priority, id) order.
 * - Counters move once per queue for the whole flush (settlements and claims
 *   netted), queues in name order. Per queue, in that order: a claim that came
 *   back short sets the queue's wakeup flag (it took every claimable job, those
 *   made claimable here included, so nobody else needs waking); otherwise, if
 *   jobs became claimable, the flag is cleared with one NOTIFY.
 *
 * Returns `{"s": [settle results or {"error": ...}], "c": [[job rows], ...]}`.
 */
const MIGRATION_2 = String.raw`
-- One settlement of a batch as settle_set plans it, from its locked row.
CREATE TYPE {{S}}.settle_plan AS (
  ord integer, id text, ok boolean, queue text, branch text, b jsonb, status text, keep boolean, delay bigint
);

-- The fast path of settle_and_claim: every item of p_items (in job-id order) settled with a few
-- set-based statements. Returns what settle_one(.., true) applied to each item in turn would
-- (LEASE_LOST items as {"error": ...} records, nothing changed for them), or NULL, having written
-- nothing, when the items interact in ways only that sequence decides (a run-record key or a dedup
-- key used by two items, a job id twice, an id repeated within a branch). Raises when an insert
-- fails (id in use) or a dedup hit needs a closer look; the caller then reruns per item.
-- Generic plans, written to probe indexes per item (LATERAL ... LIMIT 1, = ANY), and no sequential
-- scans (every row is reached by key): a custom plan per call costs more than the statement, and a
-- plan made while a table looked small would scan it whole however big it grows.
CREATE FUNCTION {{S}}.settle_set(v_now bigint, p_cfg jsonb, p_items jsonb) RETURNS jsonb[] LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off AS $$
DECLARE
  v_plan {{S}}.settle_plan[];
  v_bail boolean;
  v_entries integer;
  v_new text[] := '{}';
  v_out jsonb[];
BEGIN
  -- The plan, from the locked rows: token check, branch (the cancel flag is read under the lock), new
  -- status. Only claimed rows are locked (locking a pending one would make a SKIP LOCKED claim miss
  -- it), one at a time in item order, which is id order: one global order with other batches and
  -- the reaper.
  SELECT array_agg(ROW(s.ord, s.id, s.ok, s.queue, s.branch, s.b,
      CASE WHEN NOT s.ok THEN NULL
           WHEN s.b->'action'->>'type' = 'ack' THEN 'done'
           WHEN s.b->'action'->>'type' = 'deadLetter' OR s.attempts >= s.max_attempts THEN 'dead'
           WHEN s.delay = 0 THEN 'pending' ELSE 'scheduled' END,
      s.keep, s.delay)::{{S}}.settle_plan ORDER BY s.ord) INTO v_plan
  FROM (
    SELECT r.ord, r.id, r.ok, r.queue, r.attempts, r.max_attempts, r.branch, r.b,
      coalesce(jsonb_typeof(r.c->'keepDoneJobsMs') = 'number', false) AS keep,
      CASE WHEN NOT r.ok OR r.b->'action'->>'type' <> 'nack' THEN NULL
           WHEN (r.c->>'retryBackoffBaseMs')::numeric = 0 THEN 0
           ELSE least((r.c->>'retryBackoffBaseMs')::numeric * power(2::numeric, least(greatest(r.attempts - 1, 0), 80)),
                      (r.c->>'retryBackoffMaxMs')::numeric)::bigint END AS delay
    FROM (
      SELECT i.ord::integer AS ord, i.it->>'jobId' AS id, coalesce(j.token = i.it->>'token', false) AS ok, j.queue, j.attempts, j.max_attempts,
        CASE WHEN j.cancel_requested AND i.it->'settlement' ? 'ifCancelRequested' THEN 'cancel' ELSE 'primary' END AS branch,
        CASE WHEN j.cancel_requested AND i.it->'settlement' ? 'ifCancelRequested' THEN i.it->'settlement'->'ifCancelRequested'
             ELSE i.it->'settlement' END AS b,
        coalesce(p_cfg->'queues'->j.queue, p_cfg->'default') AS c
      FROM jsonb_array_elements(p_items) WITH ORDINALITY i(it, ord)
      LEFT JOIN LATERAL (SELECT * FROM {{S}}.jobs j WHERE j.id = i.it->>'jobId' AND j.status = 'claimed' FOR UPDATE) j ON true
    ) r
  ) s;
  SELECT count(DISTINCT p.id) <> count(*) OR coalesce(bool_or(p.ok AND p.b ? 'repeatedId'), false)
           OR EXISTS (SELECT 1 FROM unnest(v_plan) q,
                        LATERAL (SELECT w->>'key' AS k FROM jsonb_array_elements(q.b->'effects'->'kvWrites') w
                                 UNION SELECT d FROM jsonb_array_elements_text(q.b->'effects'->'kvDeletes') d) k
                      WHERE q.ok GROUP BY k.k HAVING count(*) > 1)
           OR EXISTS (SELECT 1 FROM unnest(v_plan) q, jsonb_array_elements(q.b->'effects'->'enqueue') e
                      WHERE q.ok AND e ? 'dedupKey' GROUP BY e->>'queue', e->>'dedupKey' HAVING count(*) > 1),
         coalesce(sum(jsonb_array_length(p.b->'effects'->'enqueue')) FILTER (WHERE p.ok), 0)
  INTO v_bail, v_entries FROM unnest(v_plan) p;
  IF v_bail THEN
    RETURN NULL;
  END IF;
  -- Effects first, while the settled jobs still exist: an effect reusing any id in use (a settled
  -- job's included) fails on the primary key.
  IF v_entries > 0 THEN
    WITH ins AS (
      INSERT INTO {{S}}.jobs (id, queue, payload, headers, status, max_attempts, priority, enqueued_at, run_at, dedup_key)
      SELECT e->>'id', e->>'queue', decode(e->>'payload', 'base64'), e->>'headers',
             CASE WHEN (e->>'runAt')::bigint > v_now THEN 'scheduled' ELSE 'pending' END, (e->>'maxAttempts')::bigint,
             (e->>'priority')::bigint, v_now, CASE WHEN (e->>'runAt')::bigint > v_now THEN (e->>'runAt')::bigint END, e->>'dedupKey'
      FROM unnest(v_plan) p, jsonb_array_elements(p.b->'effects'->'enqueue') WITH ORDINALITY x(e, n)
      WHERE p.ok ORDER BY p.ord, x.n
      ON CONFLICT (queue, dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING
      RETURNING id)
    SELECT coalesce(array_agg(id), '{}') INTO v_new FROM ins;
    -- Dedup hits: one whose holder is gone by now, or whose caller-chosen id is in use (an error), is left to settle_one.
    IF cardinality(v_new) < v_entries AND EXISTS (
        SELECT 1 FROM unnest(v_plan) p, jsonb_array_elements(p.b->'effects'->'enqueue') x(e)
        WHERE p.ok AND NOT (x.e->>'id' = ANY (v_new))
          AND (NOT EXISTS (SELECT 1 FROM {{S}}.jobs h WHERE h.queue = x.e->>'queue' AND h.dedup_key = x.e->>'dedupKey')
               OR ((x.e->>'own')::boolean AND EXISTS (SELECT 1 FROM {{S}}.jobs o WHERE o.id = x.e->>'id')))) THEN
      RAISE EXCEPTION 'a dedup hit needs settle_one';
    END IF;
  END IF;
  -- The rest in one statement: its parts touch disjoint rows (no key is used by two items; a key
  -- written and deleted by one item ends deleted, written twice the last value wins).
  WITH kv_writes AS (
    INSERT INTO {{S}}.kv (key, value)
    SELECT DISTINCT ON (w->>'key') w->>'key', decode(w->>'value', 'base64')
    FROM unnest(v_plan) p, jsonb_array_elements(p.b->'effects'->'kvWrites') WITH ORDINALITY x(w, n)
    WHERE p.ok AND NOT coalesce(p.b->'effects'->'kvDeletes' ? (w->>'key'), false)
    ORDER BY w->>'key', x.n DESC
    ON CONFLICT (key) DO UPDATE SET value = excluded.value
  ), kv_deletes AS (
    DELETE FROM {{S}}.kv WHERE key = ANY (ARRAY(
      SELECT d FROM unnest(v_plan) p, jsonb_array_elements_text(p.b->'effects'->'kvDeletes') d WHERE p.ok))
  ), acked AS (
    DELETE FROM {{S}}.jobs WHERE id = ANY (ARRAY(
      SELECT p.id FROM unnest(v_plan) p WHERE p.ok AND p.status = 'done' AND NOT p.keep))
  ), moved AS (
    UPDATE {{S}}.jobs j SET status = p.status,
      completed_at = CASE WHEN p.status = 'done' THEN v_now ELSE j.completed_at END,
      failed_at = CASE WHEN p.status = 'dead' THEN v_now ELSE j.failed_at END,
      last_error = CASE WHEN p.status = 'done' THEN j.last_error
                        WHEN p.status = 'dead' THEN coalesce(p.b->'action'->>'reason', p.b->'action'->>'error')
                        ELSE p.b->'action'->>'error' END,
      run_at = CASE WHEN p.status = 'pending' THEN NULL WHEN p.status = 'scheduled' THEN v_now + p.delay ELSE j.run_at END,
      lease_expires_at = NULL, token = NULL
    FROM unnest(v_plan) p
    WHERE j.id = ANY (ARRAY(SELECT q.id FROM unnest(v_plan) q WHERE q.ok AND (q.status <> 'done' OR q.keep)))
      AND j.id = p.id AND p.ok AND (p.status <> 'done' OR p.keep)
  )
  SELECT array_agg(CASE WHEN p.ok THEN
      jsonb_build_object('branch', p.branch, 'status', p.status, 'queue', p.queue,
        'runAt', CASE WHEN p.status = 'scheduled' THEN v_now + p.delay END,
        'enqueued', coalesce((
          SELECT jsonb_agg(CASE
              WHEN NOT (x.e->>'id' = ANY (v_new)) THEN jsonb_build_object('kind', 'alreadyEnqueued', 'id', h.id)
              WHEN (x.e->>'runAt')::bigint > v_now
                THEN jsonb_build_object('kind', 'new', 'id', x.e->>'id', 'queue', x.e->>'queue', 'status', 'scheduled', 'runAt', (x.e->>'runAt')::bigint)
              ELSE jsonb_build_object('kind', 'new', 'id', x.e->>'id', 'queue', x.e->>'queue', 'status', 'pending') END ORDER BY x.n)
          FROM jsonb_array_elements(p.b->'effects'->'enqueue') WITH ORDINALITY x(e, n)
          LEFT JOIN LATERAL (SELECT h.id FROM {{S}}.jobs h
                             WHERE NOT (x.e->>'id' = ANY (v_new)) AND h.queue = x.e->>'queue' AND h.dedup_key = x.e->>'dedupKey' LIMIT 1) h ON true),
          '[]'))
    ELSE jsonb_build_object('error', jsonb_build_object('code', 'TQ001', 'message', p.id, 'detail', NULL, 'constraint', NULL)) END
    ORDER BY p.ord) INTO v_out
  FROM unnest(v_plan) p;
  RETURN v_out;
END $$;

-- claim() with the counter update inline (bump() is a SQL function: planned again in every transaction).
CREATE FUNCTION {{S}}.claim_jobs(p_now bigint, p_queue text, p_limit integer, p_lease bigint) RETURNS SETOF {{S}}.jobs LANGUAGE plpgsql AS $$
DECLARE
  v_now bigint := {{S}}.now_ms(p_now);
  v_n bigint;
BEGIN
  RETURN QUERY
    UPDATE {{S}}.jobs j
    SET status = 'claimed', attempts = j.attempts + 1, claimed_at = v_now, lease_expires_at = v_now + p_lease,
        dedup_key = NULL, token = gen_random_uuid()::text
    FROM (
      SELECT id FROM {{S}}.jobs
      WHERE queue = p_queue AND status = 'pending'
      ORDER BY priority, id
      LIMIT p_limit
      FOR UPDATE SKIP LOCKED
    ) c
    WHERE j.id = c.id
    RETURNING j.*;
  GET DIAGNOSTICS v_n = ROW_COUNT;
  IF v_n > 0 THEN
    INSERT INTO {{S}}.counters AS c (queue, stripe, pending, claimed)
    VALUES (p_queue, pg_backend_pid() % 64, -v_n, v_n)
    ON CONFLICT (queue, stripe) DO UPDATE SET pending = c.pending + excluded.pending, claimed = c.claimed + excluded.claimed;
  END IF;
  IF v_n < p_limit AND NOT EXISTS (SELECT 1 FROM {{S}}.wakeups WHERE queue = p_queue AND wanted) THEN
    INSERT INTO {{S}}.wakeups (queue, wanted) VALUES (p_queue, true)
    ON CONFLICT (queue) DO UPDATE SET wanted = true;
  END IF;
END $$;

CREATE FUNCTION {{S}}.settle_and_claim(p_now bigint, p_cfg jsonb, p_items jsonb, p_claims jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_now bigint := {{S}}.now_ms(p_now);
  v_settled jsonb[];
  v_claimed jsonb[] := '{}';
  v_deltas jsonb[] := '{}';
  v_rows jsonb;
  v_n bigint;
  v_limit integer;
  it jsonb;
  cl jsonb;
  v_r jsonb;
  v_state text;
  v_msg text;
  v_detail text;
  v_con text;
  r record;
BEGIN
  IF jsonb_array_length(p_items) > 0 THEN
    BEGIN
      v_settled := {{S}}.settle_set(v_now, p_cfg, p_items);
    EXCEPTION WHEN OTHERS THEN
      v_settled := NULL;
    END;
    IF v_settled IS NULL THEN
      v_settled := '{}';
      FOR it IN SELECT * FROM jsonb_array_elements(p_items) LOOP
        BEGIN
          v_r := {{S}}.settle_one(v_now, p_cfg, it, true);
        EXCEPTION WHEN OTHERS THEN
          GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT, v_detail = PG_EXCEPTION_DETAIL, v_con = CONSTRAINT_NAME;
          v_r := jsonb_build_object('error', jsonb_build_object('code', v_state, 'message', v_msg, 'detail', v_detail, 'constraint', nullif(v_con, '')));
        END;
        v_settled := array_append(v_settled, v_r);
      END LOOP;
    END IF;
  ELSE
    v_settled := '{}';
  END IF;
  FOR cl IN SELECT * FROM jsonb_array_elements(p_claims) LOOP
    v_limit := (cl->>'limit')::integer;
    WITH c AS (
      UPDATE {{S}}.jobs j
      SET status = 'claimed', attempts = j.attempts + 1, claimed_at = v_now, lease_expires_at = v_now + (cl->>'lease')::bigint,
          dedup_key = NULL, token = gen_random_uuid()::text
      FROM (
        SELECT id FROM {{S}}.jobs
        WHERE queue = cl->>'queue' AND status = 'pending'
        ORDER BY priority, id
        LIMIT v_limit
        FOR UPDATE SKIP LOCKED
      ) s
      WHERE j.id = s.id
      RETURNING j.*)
    SELECT coalesce(jsonb_agg(to_jsonb(c)), '[]'), count(*) INTO v_rows, v_n FROM c;
    v_claimed := array_append(v_claimed, v_rows);
    v_deltas := array_append(v_deltas, jsonb_build_object('queue', cl->>'queue', 'n', v_n, 'short', v_n < v_limit));
  END LOOP;
  FOR r IN
    SELECT q, sum(dp) AS dp, sum(dc) AS dc, sum(ds) AS ds, sum(dd) AS dd, sum(ddone) AS ddone, sum(mk) AS mk, bool_or(short) AS short FROM (
      SELECT x->>'queue' AS q, (x->>'status' = 'pending')::int AS dp, -1 AS dc, (x->>'status' = 'scheduled')::int AS ds,
             (x->>'status' = 'dead')::int AS dd, (x->>'status' = 'done')::int AS ddone, (x->>'status' = 'pending')::int AS mk, false AS short
      FROM unnest(v_settled) x WHERE NOT x ? 'error'
      UNION ALL
      SELECT e->>'queue', (e->>'status' = 'pending')::int, 0, (e->>'status' = 'scheduled')::int, 0, 0, (e->>'status' = 'pending')::int, false
      FROM unnest(v_settled) x, jsonb_array_elements(x->'enqueued') e WHERE NOT x ? 'error' AND e->>'kind' = 'new'
      UNION ALL
      SELECT d->>'queue', -(d->>'n')::int, (d->>'n')::int, 0, 0, 0, 0, (d->>'short')::boolean
      FROM unnest(v_deltas) d
    ) d GROUP BY q ORDER BY q
  LOOP
    IF r.dp <> 0 OR r.dc <> 0 OR r.ds <> 0 OR r.dd <> 0 OR r.ddone <> 0 THEN
      -- bump(), inline (a SQL function is planned again at every call).
      INSERT INTO {{S}}.counters AS c (queue, stripe, pending, claimed, scheduled, dead, done)
      VALUES (r.q, pg_backend_pid() % 64, r.dp, r.dc, r.ds, r.dd, r.ddone)
      ON CONFLICT (queue, stripe) DO UPDATE SET
        pending = c.pending + excluded.pending, claimed = c.claimed + excluded.claimed,
        scheduled = c.scheduled + excluded.scheduled, dead = c.dead + excluded.dead, done = c.done + excluded.done;
    END IF;
    IF r.short THEN
      IF NOT EXISTS (SELECT 1 FROM {{S}}.wakeups WHERE queue = r.q AND wanted) THEN
        INSERT INTO {{S}}.wakeups (queue, wanted) VALUES (r.q, true)
        ON CONFLICT (queue) DO UPDATE SET wanted = true;
      END IF;
    ELSIF r.mk > 0 THEN
      -- wake(), inline: rows whose visible version is not flagged are neither locked nor waited for.
      UPDATE {{S}}.wakeups SET wanted = false WHERE queue = r.q AND wanted;
      IF FOUND THEN
        PERFORM pg_notify({{CHANNEL}}, json_build_object('t', 'j', 'q', r.q)::text);
      END IF;
    END IF;
  END LOOP;
  RETURN jsonb_build_object('s', to_jsonb(v_settled), 'c', to_jsonb(v_claimed));
END $$;
`;

/**
 * Version 3: jobs removed by `cancel` (pending or scheduled) leave a
 * tombstone, so a `waitForCompletion` in another process, which sees only
 * that the row is gone, tells a removal (`notFound`) from an ack (which
 * deletes the row too: `completed`). A tombstone names the job by id and
 * enqueue time (an id may be reused later) and is kept for an hour of store
 * time (`REMOVED_RETENTION_MS`), swept by the next cancels.
 */
const MIGRATION_3 = String.raw`
CREATE TABLE {{S}}.removed_jobs (
  id text COLLATE "C" NOT NULL,
  enqueued_at bigint NOT NULL,
  removed_at bigint NOT NULL,
  PRIMARY KEY (id, enqueued_at)
);
CREATE INDEX removed_jobs_age ON {{S}}.removed_jobs (removed_at);

-- cancel() of version 1, plus the tombstone of a removed job.
CREATE OR REPLACE FUNCTION {{S}}.cancel(p_now bigint, p_id text, p_effects jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_now bigint := {{S}}.now_ms(p_now);
  j {{S}}.jobs;
  v_enq jsonb;
BEGIN
  SELECT * INTO j FROM {{S}}.jobs WHERE id = p_id FOR UPDATE;
  IF NOT FOUND OR j.status IN ('done', 'dead') THEN
    RETURN jsonb_build_object('outcome', 'notFound');
  END IF;
  IF j.status = 'claimed' THEN
    IF NOT j.cancel_requested THEN
      UPDATE {{S}}.jobs SET cancel_requested = true WHERE id = p_id;
    END IF;
    PERFORM pg_notify({{CHANNEL}}, json_build_object('t', 'c', 'q', j.queue, 'id', j.id)::text);
    RETURN jsonb_build_object('outcome', 'requested', 'firstRequest', NOT j.cancel_requested, 'job', to_jsonb(j) || '{"cancel_requested": true}');
  END IF;
  PERFORM {{S}}.check_own_ids(p_effects);
  DELETE FROM {{S}}.jobs WHERE id = p_id;
  DELETE FROM {{S}}.removed_jobs WHERE removed_at < v_now - {{REMOVED_RETENTION_MS}};
  INSERT INTO {{S}}.removed_jobs (id, enqueued_at, removed_at) VALUES (j.id, j.enqueued_at, v_now)
  ON CONFLICT (id, enqueued_at) DO UPDATE SET removed_at = excluded.removed_at;
  IF j.status = 'pending' THEN
    PERFORM {{S}}.bump(j.queue, -1, 0, 0, 0, 0);
  ELSE
    PERFORM {{S}}.bump(j.queue, 0, 0, -1, 0, 0);
  END IF;
  v_enq := {{S}}.apply_effects(v_now, p_effects);
  RETURN jsonb_build_object('outcome', 'removed', 'job', to_jsonb(j), 'enqueued', v_enq);
END $$;
`;

/**
 * Version 4: delays in store time, settlement preconditions, and the effects
 * a job carries for its reaper dead-letter.
 *
 * - `delayMs` (an enqueue's due time as `now + delayMs`) is resolved where
 *   the job is inserted, from the statement's `now`: the database's clock
 *   unless one is injected, never the host's (`due_at`).
 * - A settlement's `precondition` is checked on the locked job before the
 *   branch is chosen; when the kv record is missing or differs, the job is
 *   acked with no effects (`branch: 'stale'`), on every settle path.
 * - `jobs.reaper_dead_letter` keeps a job's `reaperDeadLetter` branch (in
 *   the JSON form of settlement effects, so `apply_effects` applies it) for
 *   the job's whole life; `reap` commits it with the dead-letter. Its
 *   enqueues get their ids when they apply (`new_id`), so a job dead-lettered
 *   again after `requeueDead` enqueues new jobs. Rows handed to JavaScript
 *   leave the column out: nothing there reads it back.
 */
const MIGRATION_4 = String.raw`
ALTER TABLE {{S}}.jobs ADD COLUMN reaper_dead_letter jsonb;
-- The precondition key of a planned settlement (settle_set's interaction check).
ALTER TYPE {{S}}.settle_plan ADD ATTRIBUTE pre_key text;

-- When an inserted job is first due: runAt, or now + delayMs in store time; NULL for at once.
CREATE FUNCTION {{S}}.due_at(v_now bigint, r jsonb) RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
  SELECT coalesce((r->>'runAt')::bigint, CASE WHEN (r->>'delayMs')::bigint > 0 THEN v_now + (r->>'delayMs')::bigint END)
$$;

-- Whether a kv precondition holds: the record exists and is byte-equal. VOLATILE, so it reads with a
-- snapshot of its call, taken after the caller locked the job whose commit it guards; PL/pgSQL, so
-- its plan is kept for the session (every settlement of the runtime has a precondition).
CREATE FUNCTION {{S}}.holds(p jsonb) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  RETURN EXISTS (SELECT 1 FROM {{S}}.kv WHERE key = p->>'key' AND value = decode(p->>'equals', 'base64'));
END $$;

-- The first caller-chosen id of these effects' enqueues that is in use, else the first repeated; NULL if none.
CREATE FUNCTION {{S}}.taken_id(e jsonb) RETURNS text LANGUAGE sql STABLE AS $$
  SELECT coalesce(
    (SELECT r->>'id' FROM jsonb_array_elements(coalesce(e->'enqueue', '[]')) r
     WHERE (r->>'own')::boolean AND EXISTS (SELECT 1 FROM {{S}}.jobs WHERE id = r->>'id') LIMIT 1),
    (SELECT r->>'id' FROM jsonb_array_elements(coalesce(e->'enqueue', '[]')) r
     WHERE (r->>'own')::boolean GROUP BY r->>'id' HAVING count(*) > 1 LIMIT 1))
$$;

CREATE OR REPLACE FUNCTION {{S}}.check_own_ids(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  v_id text := {{S}}.taken_id(e);
BEGIN
  IF v_id IS NOT NULL THEN
    RAISE EXCEPTION USING ERRCODE = 'unique_violation', CONSTRAINT = 'jobs_pkey', MESSAGE = 'job id in use',
      DETAIL = 'Key (id)=(' || v_id || ') already exists.';
  END IF;
END $$;

-- A ULID (Crockford base32: 48-bit time, 80 random bits) for a job inserted without an id.
CREATE FUNCTION {{S}}.new_id(v_now bigint) RETURNS text LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  v_digits constant text := '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
  v_random bytea := sha256(uuid_send(gen_random_uuid()));
  v_time bigint := greatest(v_now, 0);
  v_id text := '';
BEGIN
  FOR i IN 1..10 LOOP
    v_id := substr(v_digits, (v_time % 32)::integer + 1, 1) || v_id;
    v_time := v_time / 32;
  END LOOP;
  FOR i IN 0..15 LOOP
    v_id := v_id || substr(v_digits, get_byte(v_random, i) % 32 + 1, 1);
  END LOOP;
  RETURN v_id;
END $$;

-- insert_job() of version 1, plus delayMs, the carried branch and ids taken here.
CREATE OR REPLACE FUNCTION {{S}}.insert_job(v_now bigint, r jsonb, p_defer boolean DEFAULT false) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_q text := r->>'queue';
  v_dedup text := r->>'dedupKey';
  v_run bigint := {{S}}.due_at(v_now, r);
  v_status text;
  v_id text;
  v_existing text;
BEGIN
  v_status := CASE WHEN v_run IS NOT NULL AND v_run > v_now THEN 'scheduled' ELSE 'pending' END;
  -- A caller-chosen id in use is an error even when the dedup key would have matched
  -- (without a dedup key the primary key itself reports it).
  IF v_dedup IS NOT NULL AND (r->>'own')::boolean AND EXISTS (SELECT 1 FROM {{S}}.jobs WHERE id = r->>'id') THEN
    RAISE EXCEPTION USING ERRCODE = 'unique_violation', CONSTRAINT = 'jobs_pkey', MESSAGE = 'job id in use',
      DETAIL = 'Key (id)=(' || (r->>'id') || ') already exists.';
  END IF;
  LOOP
    INSERT INTO {{S}}.jobs (id, queue, payload, headers, status, max_attempts, priority, enqueued_at, run_at, dedup_key, reaper_dead_letter)
    VALUES (coalesce(r->>'id', {{S}}.new_id(v_now)), v_q, decode(r->>'payload', 'base64'), r->>'headers', v_status, (r->>'maxAttempts')::bigint,
            (r->>'priority')::bigint, v_now, CASE WHEN v_status = 'scheduled' THEN v_run END, v_dedup, r->'reaperDeadLetter')
    ON CONFLICT (queue, dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING
    RETURNING id INTO v_id;
    IF v_id IS NOT NULL THEN
      IF v_status = 'pending' THEN
        IF NOT p_defer THEN
          PERFORM {{S}}.bump(v_q, 1, 0, 0, 0, 0);
          PERFORM {{S}}.wake(v_q);
        END IF;
        RETURN jsonb_build_object('kind', 'new', 'id', v_id, 'queue', v_q, 'status', v_status);
      END IF;
      IF NOT p_defer THEN
        PERFORM {{S}}.bump(v_q, 0, 0, 1, 0, 0);
      END IF;
      RETURN jsonb_build_object('kind', 'new', 'id', v_id, 'queue', v_q, 'status', v_status, 'runAt', v_run);
    END IF;
    SELECT id INTO v_existing FROM {{S}}.jobs WHERE queue = v_q AND dedup_key = v_dedup;
    IF v_existing IS NOT NULL THEN
      RETURN jsonb_build_object('kind', 'alreadyEnqueued', 'id', v_existing);
    END IF;
    -- The holder was claimed or cancelled between our insert and our look-up: try again.
  END LOOP;
END $$;

-- settle_one() of version 1, plus the precondition.
CREATE OR REPLACE FUNCTION {{S}}.settle_one(v_now bigint, p_cfg jsonb, it jsonb, p_defer boolean DEFAULT false) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  j {{S}}.jobs;
  b jsonb := it->'settlement';
  a jsonb;
  c jsonb;
  v_branch text := 'primary';
  v_status text;
  v_delay bigint;
  v_base numeric;
  v_run bigint;
  v_enq jsonb;
BEGIN
  -- Lock only a claimed row: locking a pending one (stale token) would make a concurrent
  -- SKIP LOCKED claim miss a claimable job.
  SELECT * INTO j FROM {{S}}.jobs WHERE id = it->>'jobId' AND status = 'claimed' FOR UPDATE;
  IF NOT FOUND OR j.token IS DISTINCT FROM it->>'token' THEN
    RAISE EXCEPTION USING ERRCODE = 'TQ001', MESSAGE = it->>'jobId';
  END IF;
  -- The precondition, then the cancel branch, are decided here, from the locked row: no window for a
  -- concurrent cancel. A stale settlement acks the job and applies no effects.
  IF b ? 'precondition' AND NOT {{S}}.holds(b->'precondition') THEN
    b := '{"action": {"type": "ack"}}';
    v_branch := 'stale';
  ELSIF j.cancel_requested AND b ? 'ifCancelRequested' THEN
    b := b->'ifCancelRequested';
    v_branch := 'cancel';
  END IF;
  IF b ? 'repeatedId' THEN
    RAISE EXCEPTION USING ERRCODE = 'unique_violation', CONSTRAINT = 'jobs_pkey', MESSAGE = 'job id in use',
      DETAIL = 'Key (id)=(' || (b->>'repeatedId') || ') already exists.';
  END IF;
  -- Effects first, while the settled job still exists: an effect reusing any id in use (the settled
  -- job's included) then fails on the primary key, with no separate look-up.
  v_enq := {{S}}.apply_effects(v_now, b->'effects', p_defer);
  a := b->'action';
  c := coalesce(p_cfg->'queues'->j.queue, p_cfg->'default');
  IF a->>'type' = 'ack' THEN
    v_status := 'done';
    IF jsonb_typeof(c->'keepDoneJobsMs') = 'number' THEN
      UPDATE {{S}}.jobs SET status = 'done', completed_at = v_now, lease_expires_at = NULL, token = NULL WHERE id = j.id;
    ELSE
      DELETE FROM {{S}}.jobs WHERE id = j.id;
    END IF;
    IF NOT p_defer THEN PERFORM {{S}}.bump(j.queue, 0, -1, 0, 0, 1); END IF;
  ELSIF a->>'type' = 'deadLetter' OR j.attempts >= j.max_attempts THEN
    v_status := 'dead';
    UPDATE {{S}}.jobs SET status = 'dead', failed_at = v_now, last_error = coalesce(a->>'reason', a->>'error'),
      lease_expires_at = NULL, token = NULL WHERE id = j.id;
    IF NOT p_defer THEN PERFORM {{S}}.bump(j.queue, 0, -1, 0, 1, 0); END IF;
  ELSE
    v_base := (c->>'retryBackoffBaseMs')::numeric;
    v_delay := CASE WHEN v_base = 0 THEN 0
      ELSE least(v_base * power(2::numeric, least(greatest(j.attempts - 1, 0), 80)), (c->>'retryBackoffMaxMs')::numeric)::bigint END;
    IF v_delay = 0 THEN
      v_status := 'pending';
      UPDATE {{S}}.jobs SET status = 'pending', last_error = a->>'error', lease_expires_at = NULL, token = NULL, run_at = NULL WHERE id = j.id;
      IF NOT p_defer THEN
        PERFORM {{S}}.bump(j.queue, 1, -1, 0, 0, 0);
        PERFORM {{S}}.wake(j.queue);
      END IF;
    ELSE
      v_status := 'scheduled';
      v_run := v_now + v_delay;
      UPDATE {{S}}.jobs SET status = 'scheduled', last_error = a->>'error', lease_expires_at = NULL, token = NULL, run_at = v_run WHERE id = j.id;
      IF NOT p_defer THEN PERFORM {{S}}.bump(j.queue, 0, -1, 1, 0, 0); END IF;
    END IF;
  END IF;
  RETURN jsonb_build_object('branch', v_branch, 'status', v_status, 'queue', j.queue, 'runAt', v_run, 'enqueued', v_enq);
END $$;

-- settle_set() of version 2, plus the precondition (an item's precondition key used by another item
-- is an interaction only the sequence decides), delayMs and the carried branch of effect jobs.
CREATE OR REPLACE FUNCTION {{S}}.settle_set(v_now bigint, p_cfg jsonb, p_items jsonb) RETURNS jsonb[] LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off AS $$
DECLARE
  v_plan {{S}}.settle_plan[];
  v_bail boolean;
  v_entries integer;
  v_new text[] := '{}';
  v_out jsonb[];
BEGIN
  -- The plan, from the locked rows: token check, branch (the cancel flag is read under the lock), new
  -- status. Only claimed rows are locked (locking a pending one would make a SKIP LOCKED claim miss
  -- it), one at a time in item order, which is id order: one global order with other batches and
  -- the reaper.
  SELECT array_agg(ROW(s.ord, s.id, s.ok, s.queue, s.branch, s.b,
      CASE WHEN NOT s.ok THEN NULL
           WHEN s.b->'action'->>'type' = 'ack' THEN 'done'
           WHEN s.b->'action'->>'type' = 'deadLetter' OR s.attempts >= s.max_attempts THEN 'dead'
           WHEN s.delay = 0 THEN 'pending' ELSE 'scheduled' END,
      s.keep, s.delay, s.pre_key)::{{S}}.settle_plan ORDER BY s.ord) INTO v_plan
  FROM (
    SELECT r.ord, r.id, r.ok, r.queue, r.attempts, r.max_attempts, r.branch, r.b, r.pre_key,
      coalesce(jsonb_typeof(r.c->'keepDoneJobsMs') = 'number', false) AS keep,
      CASE WHEN NOT r.ok OR r.b->'action'->>'type' <> 'nack' THEN NULL
           WHEN (r.c->>'retryBackoffBaseMs')::numeric = 0 THEN 0
           ELSE least((r.c->>'retryBackoffBaseMs')::numeric * power(2::numeric, least(greatest(r.attempts - 1, 0), 80)),
                      (r.c->>'retryBackoffMaxMs')::numeric)::bigint END AS delay
    FROM (
      SELECT i.ord::integer AS ord, i.it->>'jobId' AS id, coalesce(j.token = i.it->>'token', false) AS ok, j.queue, j.attempts, j.max_attempts,
        CASE WHEN j.cancel_requested AND i.it->'settlement' ? 'ifCancelRequested' THEN 'cancel' ELSE 'primary' END AS branch,
        CASE WHEN j.cancel_requested AND i.it->'settlement' ? 'ifCancelRequested' THEN i.it->'settlement'->'ifCancelRequested'
             ELSE i.it->'settlement' END AS b,
        i.it->'settlement'->'precondition'->>'key' AS pre_key,
        coalesce(p_cfg->'queues'->j.queue, p_cfg->'default') AS c
      FROM jsonb_array_elements(p_items) WITH ORDINALITY i(it, ord)
      LEFT JOIN LATERAL (SELECT j.token, j.queue, j.attempts, j.max_attempts, j.cancel_requested FROM {{S}}.jobs j
                         WHERE j.id = i.it->>'jobId' AND j.status = 'claimed' FOR UPDATE) j ON true
    ) r
  ) s;
  -- Preconditions, in a statement of their own so they read after every lock above: a stale item acks
  -- with no effects.
  IF EXISTS (SELECT 1 FROM unnest(v_plan) p WHERE p.ok AND p.pre_key IS NOT NULL) THEN
    SELECT array_agg(CASE
        WHEN p.ok AND p.pre_key IS NOT NULL AND NOT EXISTS (
          SELECT 1 FROM {{S}}.kv WHERE key = p.pre_key
            AND value = decode(p_items->(p.ord - 1)->'settlement'->'precondition'->>'equals', 'base64'))
        THEN ROW(p.ord, p.id, p.ok, p.queue, 'stale', '{"action": {"type": "ack"}}'::jsonb, 'done', p.keep, NULL::bigint, p.pre_key)::{{S}}.settle_plan
        ELSE p END ORDER BY p.ord) INTO v_plan
    FROM unnest(v_plan) p;
  END IF;
  SELECT count(DISTINCT p.id) <> count(*) OR coalesce(bool_or(p.ok AND p.b ? 'repeatedId'), false)
           OR EXISTS (SELECT 1 FROM unnest(v_plan) q,
                        LATERAL (SELECT w->>'key' AS k FROM jsonb_array_elements(q.b->'effects'->'kvWrites') w
                                 UNION SELECT d FROM jsonb_array_elements_text(q.b->'effects'->'kvDeletes') d
                                 UNION SELECT q.pre_key WHERE q.pre_key IS NOT NULL) k
                      WHERE q.ok GROUP BY k.k HAVING count(*) > 1)
           OR EXISTS (SELECT 1 FROM unnest(v_plan) q, jsonb_array_elements(q.b->'effects'->'enqueue') e
                      WHERE q.ok AND e ? 'dedupKey' GROUP BY e->>'queue', e->>'dedupKey' HAVING count(*) > 1),
         coalesce(sum(jsonb_array_length(p.b->'effects'->'enqueue')) FILTER (WHERE p.ok), 0)
  INTO v_bail, v_entries FROM unnest(v_plan) p;
  IF v_bail THEN
    RETURN NULL;
  END IF;
  -- Effects first, while the settled jobs still exist: an effect reusing any id in use (a settled
  -- job's included) fails on the primary key.
  IF v_entries > 0 THEN
    WITH ins AS (
      INSERT INTO {{S}}.jobs (id, queue, payload, headers, status, max_attempts, priority, enqueued_at, run_at, dedup_key, reaper_dead_letter)
      SELECT e->>'id', e->>'queue', decode(e->>'payload', 'base64'), e->>'headers',
             CASE WHEN {{S}}.due_at(v_now, e) > v_now THEN 'scheduled' ELSE 'pending' END, (e->>'maxAttempts')::bigint,
             (e->>'priority')::bigint, v_now, CASE WHEN {{S}}.due_at(v_now, e) > v_now THEN {{S}}.due_at(v_now, e) END, e->>'dedupKey',
             e->'reaperDeadLetter'
      FROM unnest(v_plan) p, jsonb_array_elements(p.b->'effects'->'enqueue') WITH ORDINALITY x(e, n)
      WHERE p.ok ORDER BY p.ord, x.n
      ON CONFLICT (queue, dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING
      RETURNING id)
    SELECT coalesce(array_agg(id), '{}') INTO v_new FROM ins;
    -- Dedup hits: one whose holder is gone by now, or whose caller-chosen id is in use (an error), is left to settle_one.
    IF cardinality(v_new) < v_entries AND EXISTS (
        SELECT 1 FROM unnest(v_plan) p, jsonb_array_elements(p.b->'effects'->'enqueue') x(e)
        WHERE p.ok AND NOT (x.e->>'id' = ANY (v_new))
          AND (NOT EXISTS (SELECT 1 FROM {{S}}.jobs h WHERE h.queue = x.e->>'queue' AND h.dedup_key = x.e->>'dedupKey')
               OR ((x.e->>'own')::boolean AND EXISTS (SELECT 1 FROM {{S}}.jobs o WHERE o.id = x.e->>'id')))) THEN
      RAISE EXCEPTION 'a dedup hit needs settle_one';
    END IF;
  END IF;
  -- The rest in one statement: its parts touch disjoint rows (no key is used by two items; a key
  -- written and deleted by one item ends deleted, written twice the last value wins).
  WITH kv_writes AS (
    INSERT INTO {{S}}.kv (key, value)
    SELECT DISTINCT ON (w->>'key') w->>'key', decode(w->>'value', 'base64')
    FROM unnest(v_plan) p, jsonb_array_elements(p.b->'effects'->'kvWrites') WITH ORDINALITY x(w, n)
    WHERE p.ok AND NOT coalesce(p.b->'effects'->'kvDeletes' ? (w->>'key'), false)
    ORDER BY w->>'key', x.n DESC
    ON CONFLICT (key) DO UPDATE SET value = excluded.value
  ), kv_deletes AS (
    DELETE FROM {{S}}.kv WHERE key = ANY (ARRAY(
      SELECT d FROM unnest(v_plan) p, jsonb_array_elements_text(p.b->'effects'->'kvDeletes') d WHERE p.ok))
  ), acked AS (
    DELETE FROM {{S}}.jobs WHERE id = ANY (ARRAY(
      SELECT p.id FROM unnest(v_plan) p WHERE p.ok AND p.status = 'done' AND NOT p.keep))
  ), moved AS (
    UPDATE {{S}}.jobs j SET status = p.status,
      completed_at = CASE WHEN p.status = 'done' THEN v_now ELSE j.completed_at END,
      failed_at = CASE WHEN p.status = 'dead' THEN v_now ELSE j.failed_at END,
      last_error = CASE WHEN p.status = 'done' THEN j.last_error
                        WHEN p.status = 'dead' THEN coalesce(p.b->'action'->>'reason', p.b->'action'->>'error')
                        ELSE p.b->'action'->>'error' END,
      run_at = CASE WHEN p.status = 'pending' THEN NULL WHEN p.status = 'scheduled' THEN v_now + p.delay ELSE j.run_at END,
      lease_expires_at = NULL, token = NULL
    FROM unnest(v_plan) p
    WHERE j.id = ANY (ARRAY(SELECT q.id FROM unnest(v_plan) q WHERE q.ok AND (q.status <> 'done' OR q.keep)))
      AND j.id = p.id AND p.ok AND (p.status <> 'done' OR p.keep)
  )
  SELECT array_agg(CASE WHEN p.ok THEN
      jsonb_build_object('branch', p.branch, 'status', p.status, 'queue', p.queue,
        'runAt', CASE WHEN p.status = 'scheduled' THEN v_now + p.delay END,
        'enqueued', coalesce((
          SELECT jsonb_agg(CASE
              WHEN NOT (x.e->>'id' = ANY (v_new)) THEN jsonb_build_object('kind', 'alreadyEnqueued', 'id', h.id)
              WHEN {{S}}.due_at(v_now, x.e) > v_now
                THEN jsonb_build_object('kind', 'new', 'id', x.e->>'id', 'queue', x.e->>'queue', 'status', 'scheduled', 'runAt', {{S}}.due_at(v_now, x.e))
              ELSE jsonb_build_object('kind', 'new', 'id', x.e->>'id', 'queue', x.e->>'queue', 'status', 'pending') END ORDER BY x.n)
          FROM jsonb_array_elements(p.b->'effects'->'enqueue') WITH ORDINALITY x(e, n)
          LEFT JOIN LATERAL (SELECT h.id FROM {{S}}.jobs h
                             WHERE NOT (x.e->>'id' = ANY (v_new)) AND h.queue = x.e->>'queue' AND h.dedup_key = x.e->>'dedupKey' LIMIT 1) h ON true),
          '[]'))
    ELSE jsonb_build_object('error', jsonb_build_object('code', 'TQ001', 'message', p.id, 'detail', NULL, 'constraint', NULL)) END
    ORDER BY p.ord) INTO v_out
  FROM unnest(v_plan) p;
  RETURN v_out;
END $$;

-- claim_jobs() of version 2, without the carried branch in the rows it returns.
CREATE OR REPLACE FUNCTION {{S}}.claim_jobs(p_now bigint, p_queue text, p_limit integer, p_lease bigint) RETURNS SETOF {{S}}.jobs LANGUAGE plpgsql AS $$
DECLARE
  v_now bigint := {{S}}.now_ms(p_now);
  v_n bigint;
BEGIN
  RETURN QUERY
    UPDATE {{S}}.jobs j
    SET status = 'claimed', attempts = j.attempts + 1, claimed_at = v_now, lease_expires_at = v_now + p_lease,
        dedup_key = NULL, token = gen_random_uuid()::text
    FROM (
      SELECT id FROM {{S}}.jobs
      WHERE queue = p_queue AND status = 'pending'
      ORDER BY priority, id
      LIMIT p_limit
      FOR UPDATE SKIP LOCKED
    ) c
    WHERE j.id = c.id
    RETURNING j.id, j.queue, j.payload,
      j.headers, j.status, j.attempts, j.max_attempts, j.priority, j.enqueued_at, j.claimed_at, j.lease_expires_at, j.run_at,
      j.last_error, j.dedup_key, j.completed_at, j.failed_at, j.cancel_requested, j.token, NULL::jsonb;
  GET DIAGNOSTICS v_n = ROW_COUNT;
  IF v_n > 0 THEN
    INSERT INTO {{S}}.counters AS c (queue, stripe, pending, claimed)
    VALUES (p_queue, pg_backend_pid() % 64, -v_n, v_n)
    ON CONFLICT (queue, stripe) DO UPDATE SET pending = c.pending + excluded.pending, claimed = c.claimed + excluded.claimed;
  END IF;
  IF v_n < p_limit AND NOT EXISTS (SELECT 1 FROM {{S}}.wakeups WHERE queue = p_queue AND wanted) THEN
    INSERT INTO {{S}}.wakeups (queue, wanted) VALUES (p_queue, true)
    ON CONFLICT (queue) DO UPDATE SET wanted = true;
  END IF;
END $$;

-- settle_and_claim() of version 2, without the carried branch in the claimed rows.
CREATE OR REPLACE FUNCTION {{S}}.settle_and_claim(p_now bigint, p_cfg jsonb, p_items jsonb, p_claims jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_now bigint := {{S}}.now_ms(p_now);
  v_settled jsonb[];
  v_claimed jsonb[] := '{}';
  v_deltas jsonb[] := '{}';
  v_rows jsonb;
  v_n bigint;
  v_limit integer;
  it jsonb;
  cl jsonb;
  v_r jsonb;
  v_state text;
  v_msg text;
  v_detail text;
  v_con text;
  r record;
BEGIN
  IF jsonb_array_length(p_items) > 0 THEN
    BEGIN
      v_settled := {{S}}.settle_set(v_now, p_cfg, p_items);
    EXCEPTION WHEN OTHERS THEN
      v_settled := NULL;
    END;
    IF v_settled IS NULL THEN
      v_settled := '{}';
      FOR it IN SELECT * FROM jsonb_array_elements(p_items) LOOP
        BEGIN
          v_r := {{S}}.settle_one(v_now, p_cfg, it, true);
        EXCEPTION WHEN OTHERS THEN
          GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT, v_detail = PG_EXCEPTION_DETAIL, v_con = CONSTRAINT_NAME;
          v_r := jsonb_build_object('error', jsonb_build_object('code', v_state, 'message', v_msg, 'detail', v_detail, 'constraint', nullif(v_con, '')));
        END;
        v_settled := array_append(v_settled, v_r);
      END LOOP;
    END IF;
  ELSE
    v_settled := '{}';
  END IF;
  FOR cl IN SELECT * FROM jsonb_array_elements(p_claims) LOOP
    v_limit := (cl->>'limit')::integer;
    WITH c AS (
      UPDATE {{S}}.jobs j
      SET status = 'claimed', attempts = j.attempts + 1, claimed_at = v_now, lease_expires_at = v_now + (cl->>'lease')::bigint,
          dedup_key = NULL, token = gen_random_uuid()::text
      FROM (
        SELECT id FROM {{S}}.jobs
        WHERE queue = cl->>'queue' AND status = 'pending'
        ORDER BY priority, id
        LIMIT v_limit
        FOR UPDATE SKIP LOCKED
      ) s
      WHERE j.id = s.id
      RETURNING j.id, j.queue, j.payload,
        j.headers, j.status, j.attempts, j.max_attempts, j.priority, j.enqueued_at, j.claimed_at, j.lease_expires_at, j.run_at,
        j.last_error, j.dedup_key, j.completed_at, j.failed_at, j.cancel_requested, j.token)
    SELECT coalesce(jsonb_agg(to_jsonb(c)), '[]'), count(*) INTO v_rows, v_n FROM c;
    v_claimed := array_append(v_claimed, v_rows);
    v_deltas := array_append(v_deltas, jsonb_build_object('queue', cl->>'queue', 'n', v_n, 'short', v_n < v_limit));
  END LOOP;
  FOR r IN
    SELECT q, sum(dp) AS dp, sum(dc) AS dc, sum(ds) AS ds, sum(dd) AS dd, sum(ddone) AS ddone, sum(mk) AS mk, bool_or(short) AS short FROM (
      SELECT x->>'queue' AS q, (x->>'status' = 'pending')::int AS dp, -1 AS dc, (x->>'status' = 'scheduled')::int AS ds,
             (x->>'status' = 'dead')::int AS dd, (x->>'status' = 'done')::int AS ddone, (x->>'status' = 'pending')::int AS mk, false AS short
      FROM unnest(v_settled) x WHERE NOT x ? 'error'
      UNION ALL
      SELECT e->>'queue', (e->>'status' = 'pending')::int, 0, (e->>'status' = 'scheduled')::int, 0, 0, (e->>'status' = 'pending')::int, false
      FROM unnest(v_settled) x, jsonb_array_elements(x->'enqueued') e WHERE NOT x ? 'error' AND e->>'kind' = 'new'
      UNION ALL
      SELECT d->>'queue', -(d->>'n')::int, (d->>'n')::int, 0, 0, 0, 0, (d->>'short')::boolean
      FROM unnest(v_deltas) d
    ) d GROUP BY q ORDER BY q
  LOOP
    IF r.dp <> 0 OR r.dc <> 0 OR r.ds <> 0 OR r.dd <> 0 OR r.ddone <> 0 THEN
      -- bump(), inline (a SQL function is planned again at every call).
      INSERT INTO {{S}}.counters AS c (queue, stripe, pending, claimed, scheduled, dead, done)
      VALUES (r.q, pg_backend_pid() % 64, r.dp, r.dc, r.ds, r.dd, r.ddone)
      ON CONFLICT (queue, stripe) DO UPDATE SET
        pending = c.pending + excluded.pending, claimed = c.claimed + excluded.claimed,
        scheduled = c.scheduled + excluded.scheduled, dead = c.dead + excluded.dead, done = c.done + excluded.done;
    END IF;
    IF r.short THEN
      IF NOT EXISTS (SELECT 1 FROM {{S}}.wakeups WHERE queue = r.q AND wanted) THEN
        INSERT INTO {{S}}.wakeups (queue, wanted) VALUES (r.q, true)
        ON CONFLICT (queue) DO UPDATE SET wanted = true;
      END IF;
    ELSIF r.mk > 0 THEN
      -- wake(), inline: rows whose visible version is not flagged are neither locked nor waited for.
      UPDATE {{S}}.wakeups SET wanted = false WHERE queue = r.q AND wanted;
      IF FOUND THEN
        PERFORM pg_notify({{CHANNEL}}, json_build_object('t', 'j', 'q', r.q)::text);
      END IF;
    END IF;
  END LOOP;
  RETURN jsonb_build_object('s', to_jsonb(v_settled), 'c', to_jsonb(v_claimed));
END $$;

-- reap() of version 1, plus the effects a job dead-lettered here carries: applied in this commit, in
-- job-id order (the loop's), each seeing those before it; none when the precondition fails or an id
-- their enqueues choose is in use or repeated. Returns their ids and enqueue results too.
CREATE OR REPLACE FUNCTION {{S}}.reap(p_now bigint, p_cfg jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_now bigint := {{S}}.now_ms(p_now);
  j {{S}}.jobs;
  v_requeued jsonb := '[]';
  v_dead jsonb := '[]';
  v_applied jsonb := '[]';
  v_enq jsonb := '[]';
  v_effects jsonb;
  v_done_swept bigint := 0;
  v_dead_swept bigint := 0;
  v_counts jsonb;
  r record;
BEGIN
  -- No SKIP LOCKED here: a row locked by a concurrent settle or cancel is waited for and
  -- re-checked, so a reap is linearizable with them (skipping would miss an expired claim).
  -- Id order, like settle batches, so the two never lock the same rows in opposite orders.
  FOR j IN SELECT * FROM {{S}}.jobs WHERE status = 'claimed' AND lease_expires_at <= v_now
           ORDER BY id FOR UPDATE LOOP
    IF j.attempts >= j.max_attempts THEN
      UPDATE {{S}}.jobs SET status = 'dead', last_error = 'lease expired', failed_at = v_now, lease_expires_at = NULL, token = NULL
      WHERE id = j.id RETURNING * INTO j;
      PERFORM {{S}}.bump(j.queue, 0, -1, 0, 1, 0);
      v_dead := v_dead || jsonb_build_array(to_jsonb(j) - 'reaper_dead_letter');
      IF j.reaper_dead_letter IS NOT NULL
         AND (NOT j.reaper_dead_letter ? 'precondition' OR {{S}}.holds(j.reaper_dead_letter->'precondition')) THEN
        v_effects := j.reaper_dead_letter->(CASE WHEN j.cancel_requested THEN 'ifCancelRequested' ELSE 'effects' END);
        IF v_effects IS NOT NULL AND {{S}}.taken_id(v_effects) IS NULL THEN
          v_enq := v_enq || {{S}}.apply_effects(v_now, v_effects);
          v_applied := v_applied || to_jsonb(j.id);
        END IF;
      END IF;
    ELSE
      UPDATE {{S}}.jobs SET status = 'pending', lease_expires_at = NULL, token = NULL WHERE id = j.id;
      PERFORM {{S}}.bump(j.queue, 1, -1, 0, 0, 0);
      PERFORM {{S}}.wake(j.queue);
      v_requeued := v_requeued || to_jsonb(j.id);
    END IF;
  END LOOP;
  WITH d AS (
    DELETE FROM {{S}}.jobs WHERE id IN (
      SELECT id FROM {{S}}.jobs x
      WHERE status = 'done'
        AND completed_at + (coalesce(p_cfg->'queues'->x.queue, p_cfg->'default')->>'keepDoneJobsMs')::bigint <= v_now
      ORDER BY id FOR UPDATE)
    RETURNING 1)
  SELECT count(*) INTO v_done_swept FROM d;
  WITH d AS (
    DELETE FROM {{S}}.jobs WHERE id IN (
      SELECT id FROM {{S}}.jobs x
      WHERE status = 'dead'
        AND failed_at + (coalesce(p_cfg->'queues'->x.queue, p_cfg->'default')->>'deadRetentionMs')::bigint <= v_now
      ORDER BY id FOR UPDATE)
    RETURNING queue)
  SELECT coalesce(jsonb_object_agg(queue, n), '{}') INTO v_counts FROM (SELECT queue, count(*) AS n FROM d GROUP BY queue) g;
  FOR r IN SELECT key, value::bigint AS n FROM jsonb_each_text(v_counts) ORDER BY key LOOP
    PERFORM {{S}}.bump(r.key, 0, 0, 0, -r.n, 0);
    v_dead_swept := v_dead_swept + r.n;
  END LOOP;
  RETURN jsonb_build_object('requeued', v_requeued, 'deadLettered', v_dead, 'effectsApplied', v_applied, 'enqueued', v_enq,
    'doneSwept', v_done_swept, 'deadSwept', v_dead_swept);
END $$;
`;

/** How long a removed job's tombstone is kept: a cross-process waiter polling less often than this sees `completed`. */
export const REMOVED_RETENTION_MS = 3_600_000;

/** Migrations in order; index + 1 is the version. Never edit a released one: append. */
export const MIGRATIONS: readonly string[] = [MIGRATION_1, MIGRATION_2, MIGRATION_3, MIGRATION_4];

/** The schema version this code writes and understands. */
export const SCHEMA_VERSION = MIGRATIONS.length;

export function render(sql: string, schema: string, channel: string): string {
  return sql
    .replaceAll('{{S}}', quoteIdent(schema))
    .replaceAll('{{CHANNEL}}', `'${channel.replace(/'/g, "''")}'`)
    .replaceAll('{{REMOVED_RETENTION_MS}}', String(REMOVED_RETENTION_MS));
}

/** Advisory lock key of one schema's migrations (any 64-bit value; derived from the name). */
function lockKey(schema: string): string {
  let hash = 0n;
  for (const char of `taquba-workflow:${schema}`) hash = (hash * 131n + BigInt(char.codePointAt(0) as number)) & 0x7fffffffffffffffn;
  return hash.toString();
}

/** The tables migration 1 creates: a schema holding one of them but no `schema_migrations` is not ours. */
const OWN_TABLES = ['jobs', 'kv', 'counters', 'wakeups', 'removed_jobs'];

function checkVersion(schema: string, current: number): void {
  if (current > SCHEMA_VERSION) {
    throw new IncompatibleSchemaError(
      `schema "${schema}" is at version ${current}, newer than this taquba-workflow (knows up to ${SCHEMA_VERSION}); upgrade the package or use another schema`,
    );
  }
}

/**
 * Brings `schema` to `SCHEMA_VERSION`. A schema already there is only read
 * (no DDL, no lock), so a role with no CREATE privilege opens a schema its
 * owner migrated. Otherwise concurrent callers serialise on an advisory lock;
 * the first applies the migrations, the others find them done.
 */
export async function migrate(pool: PgPoolLike, schema: string, channel: string): Promise<void> {
  // PostgreSQL reserves these names for its own schemas (pg_catalog, pg_toast, ...).
  if (schema.startsWith('pg_')) throw new StoreOpenError(`schema "${schema}" is reserved by PostgreSQL (names starting with pg_); choose another schema`);
  const S = quoteIdent(schema);
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    const present = await client.query({ text: `SELECT to_regclass($1) IS NOT NULL AS present`, values: [`${S}.schema_migrations`] });
    if ((present.rows[0] as { present: boolean }).present) {
      const result = await client.query(`SELECT coalesce(max(version), 0) AS version FROM ${S}.schema_migrations`);
      const current = Number((result.rows[0] as { version: number | string }).version);
      checkVersion(schema, current);
      if (current === SCHEMA_VERSION) return;
    }
    await client.query('BEGIN');
    try {
      await client.query({ text: 'SELECT pg_advisory_xact_lock($1::bigint)', values: [lockKey(schema)] });
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${S}`);
      await client.query(`CREATE TABLE IF NOT EXISTS ${S}.schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`);
      const result = await client.query(`SELECT coalesce(max(version), 0) AS version FROM ${S}.schema_migrations`);
      const current = Number((result.rows[0] as { version: number | string }).version);
      checkVersion(schema, current);
      if (current === 0) {
        const taken = await client.query({
          text: `SELECT t FROM unnest($1::text[]) t WHERE to_regclass(format('%I.%I', $2::text, t)) IS NOT NULL`,
          values: [OWN_TABLES, schema],
        });
        if (taken.rows.length > 0) {
          const names = (taken.rows as Array<{ t: string }>).map((row) => row.t).join(', ');
          throw new StoreOpenError(`schema "${schema}" already holds tables taquba-workflow did not create (${names}); use a schema of its own`);
        }
      }
      for (let version = current + 1; version <= SCHEMA_VERSION; version++) {
        await client.query(render(MIGRATIONS[version - 1] as string, schema, channel));
        await client.query({ text: `INSERT INTO ${S}.schema_migrations (version) VALUES ($1)`, values: [version] });
      }
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK').catch((rollbackError: unknown) => {
        broken = rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError));
      });
      throw error;
    }
  } finally {
    client.release(broken ?? false);
  }
}
