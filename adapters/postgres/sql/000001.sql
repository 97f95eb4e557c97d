-- Version 1: the tables, the counters, the wakeup flags and the functions of every operation.
-- Times are epoch ms: the injected clock's value when given, the database's clock otherwise.
-- The runner splices in the quoted schema name and the NOTIFY channel literal where the placeholders stand.

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
