-- Version 2: one round trip for a whole flush of a process's queued work:
-- settlements (in job-id order, as the caller sorted them) and then claims,
-- which therefore see the jobs those settlements made claimable.
--
-- - Settlements run set-based (`settle_set`: a handful of statements for the
--   whole batch instead of several per settlement), in one subtransaction.
--   When that path cannot promise exactly what `settle_one` applied to each
--   item in order would give, or raises (an id in use, a deadlock), the batch
--   is rolled back and rerun with `settle_one` in one subtransaction each, so
--   each settlement keeps its own all-or-nothing outcome.
-- - Claims are `claim`'s statement: `FOR UPDATE SKIP LOCKED` in (priority, id) order.
-- - Counters move once per queue for the whole flush (settlements and claims
--   netted), queues in name order. Per queue, in that order: a claim that came
--   back short sets the queue's wakeup flag (it took every claimable job, those
--   made claimable here included, so nobody else needs waking); otherwise, if
--   jobs became claimable, the flag is cleared with one NOTIFY.
--
-- Returns `{"s": [settle results or {"error": ...}], "c": [[job rows], ...]}`.

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
