-- Version 5: readable wire payloads, retry delays computed once, dead functions gone.
--
-- - claim() and settle_batch(), replaced in version 2 by claim_jobs() and settle_and_claim(),
--   are dropped.
-- - The NOTIFY payload is {"type": "jobsAvailable", "queue": q} or
--   {"type": "cancelRequested", "queue": q, "jobId": id}; settle_and_claim() takes claims as
--   {"queue", "limit", "leaseMs"} and returns {"settled": [...], "claimed": [[job rows], ...]};
--   bump() and wake() name their arguments.
-- - A nack's retry delay is looked up in the queue config's "retryDelays" (the delays after
--   attempts 1..k, computed by the store from the one formula in its code; the last entry holds
--   for every later attempt): no backoff formula here.
-- Processes of an older version must be stopped before a schema is migrated to this one: they call
-- these functions with the payloads above in their old form (settle_one() and settle_and_claim()
-- refuse those, see older_caller()).

DROP FUNCTION {{S}}.claim(bigint, text, integer, bigint);
DROP FUNCTION {{S}}.settle_batch(bigint, jsonb, jsonb);

-- Arguments by name (callers pass them by position, so they keep working).
DROP FUNCTION {{S}}.bump(text, bigint, bigint, bigint, bigint, bigint);
CREATE FUNCTION {{S}}.bump(p_queue text, d_pending bigint, d_claimed bigint, d_scheduled bigint, d_dead bigint, d_done bigint)
RETURNS void LANGUAGE sql AS $$
  INSERT INTO {{S}}.counters AS c (queue, stripe, pending, claimed, scheduled, dead, done)
  VALUES (p_queue, pg_backend_pid() % 64, d_pending, d_claimed, d_scheduled, d_dead, d_done)
  ON CONFLICT (queue, stripe) DO UPDATE SET
    pending = c.pending + excluded.pending, claimed = c.claimed + excluded.claimed,
    scheduled = c.scheduled + excluded.scheduled, dead = c.dead + excluded.dead, done = c.done + excluded.done
$$;

-- wake() of version 1, with the readable payload.
DROP FUNCTION {{S}}.wake(text);
CREATE FUNCTION {{S}}.wake(p_queue text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM {{S}}.wakeups WHERE queue = p_queue AND wanted) THEN
    UPDATE {{S}}.wakeups SET wanted = false WHERE queue = p_queue AND wanted;
    IF FOUND THEN
      PERFORM pg_notify({{CHANNEL}}, json_build_object('type', 'jobsAvailable', 'queue', p_queue)::text);
    END IF;
  END IF;
END $$;

-- What settle_one() and settle_and_claim() raise (before touching anything) when called with a payload
-- of an older version: no "retryDelays", or claims without "leaseMs". The error is transient to such a
-- caller, which retries until it is replaced.
CREATE FUNCTION {{S}}.older_caller() RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT 'called with the payload of a schema older than version 5: stop the processes of older taquba-workflow versions'
$$;

-- The retry delay after the p_attempts-th attempt failed: entry p_attempts of the config's
-- "retryDelays", the last entry beyond its end. Simple enough to be inlined where it is called.
CREATE FUNCTION {{S}}.retry_delay(p_cfg jsonb, p_attempts bigint) RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
  SELECT (p_cfg->'retryDelays'->>(least(greatest(p_attempts, 1), jsonb_array_length(p_cfg->'retryDelays')) - 1)::integer)::bigint
$$;

-- cancel() of version 3, with the readable payload.
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
    PERFORM pg_notify({{CHANNEL}}, json_build_object('type', 'cancelRequested', 'queue', j.queue, 'jobId', j.id)::text);
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

-- settle_one() of version 4, with the retry delay looked up.
CREATE OR REPLACE FUNCTION {{S}}.settle_one(v_now bigint, p_cfg jsonb, it jsonb, p_defer boolean DEFAULT false) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  j {{S}}.jobs;
  b jsonb := it->'settlement';
  a jsonb;
  c jsonb;
  v_branch text := 'primary';
  v_status text;
  v_delay bigint;
  v_run bigint;
  v_enq jsonb;
BEGIN
  IF NOT p_cfg->'default' ? 'retryDelays' THEN
    RAISE EXCEPTION '%', {{S}}.older_caller();
  END IF;
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
    v_delay := {{S}}.retry_delay(c, j.attempts);
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

-- settle_set() of version 4, with the retry delay looked up.
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
           ELSE {{S}}.retry_delay(r.c, r.attempts) END AS delay
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

-- settle_and_claim() of version 4, with the readable payloads.
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
  IF NOT p_cfg->'default' ? 'retryDelays' OR EXISTS (SELECT 1 FROM jsonb_array_elements(p_claims) c WHERE NOT c ? 'leaseMs') THEN
    RAISE EXCEPTION '%', {{S}}.older_caller();
  END IF;
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
      SET status = 'claimed', attempts = j.attempts + 1, claimed_at = v_now, lease_expires_at = v_now + (cl->>'leaseMs')::bigint,
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
        PERFORM pg_notify({{CHANNEL}}, json_build_object('type', 'jobsAvailable', 'queue', r.q)::text);
      END IF;
    END IF;
  END LOOP;
  RETURN jsonb_build_object('settled', to_jsonb(v_settled), 'claimed', to_jsonb(v_claimed));
END $$;
