-- Version 6: reaper templates (QueueStore.setReaperTemplate) and kv records that expire (KvWrite.ttlMs).
--
-- - `reaper_templates` keeps one template per queue, as encodeReaperTemplate (core/reaper-template.ts)
--   writes it: payloads in base64, each JobText an array of JSON strings, {"jobId": true} and
--   {"header": name}.
-- - reap() dead-letters a job that carries no reaper_dead_letter with the branch its queue's template
--   makes from the job (template_branch), in the form reaper_dead_letter keeps, so the one applier
--   serves both. The rules are instantiateReaperTemplate's, rendered here.
-- - `kv.expires_at` (epoch ms, NULL: permanent, which every record written before is): a kv write with
--   "ttlMs" in its JSON keeps the record until the statement's now + ttlMs (the store's clock, as for
--   delayMs), one without makes it permanent. From then on the record is gone for every read: the
--   functions that read or write kv (enqueue's ifAbsent, preconditions in holds() and settle_set(),
--   apply_effects(), settle_one(), reap()) are replaced here to follow that, and reap() deletes the
--   expired rows. An expired row that is still there is replaced by an ifAbsent write.
-- - A nack action may carry its own "delayMs" (a step's retry policy): settle_one() and settle_set() use it
--   instead of the queue's backoff.
-- Processes of version 5 go on working against it: they cannot set a template, and their reaps call this
-- reap(), so the templates processes of version 6 set apply whichever process reaps. Their kv writes are
-- permanent (they send no ttlMs), and their function calls honour expiry; only their own kvGet and kvDelete
-- statements do not know of it: they see an expired record until a reap deletes it.

ALTER TABLE {{S}}.kv ADD COLUMN expires_at bigint;
-- reap()'s sweep; permanent records (the runtime's cursors, most of the table) are not in it, and an
-- update that keeps a record permanent changes no indexed column (it stays a HOT update).
CREATE INDEX kv_expiry ON {{S}}.kv (expires_at) WHERE expires_at IS NOT NULL;

-- When a kv write in the functions' JSON expires: now + ttlMs in store time; NULL (permanent) without ttlMs.
CREATE FUNCTION {{S}}.kv_expires_at(v_now bigint, w jsonb) RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
  SELECT v_now + (w->>'ttlMs')::bigint
$$;

-- Whether a kv precondition holds at v_now: the record exists, has not expired and is byte-equal. VOLATILE,
-- so it reads with a snapshot of its call, taken after the caller locked the job whose commit it guards;
-- PL/pgSQL, so its plan is kept for the session (every settlement of the runtime has a precondition).
-- Replaces holds(jsonb) of version 4, whose callers (settle_one, reap) are replaced below.
DROP FUNCTION {{S}}.holds(jsonb);
CREATE FUNCTION {{S}}.holds(p jsonb, v_now bigint) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  RETURN EXISTS (SELECT 1 FROM {{S}}.kv WHERE key = p->>'key' AND value = decode(p->>'equals', 'base64')
                   AND (expires_at IS NULL OR expires_at > v_now));
END $$;

CREATE TABLE {{S}}.reaper_templates (queue text COLLATE "C" PRIMARY KEY, template jsonb NOT NULL);

-- isValidKvKey (core/store-validation.ts): non-empty, at most 1024 characters as JavaScript counts them
-- (UTF-16 code units: a character past U+FFFF counts twice, so a key of at most 512 is always short enough).
CREATE FUNCTION {{S}}.is_kv_key(p_key text) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
  SELECT coalesce(p_key <> '' AND (length(p_key) <= 512
    OR length(p_key) + length(regexp_replace(p_key, '[^\U00010000-\U0010FFFF]', '', 'g')) <= 1024), false)
$$;

-- A job's headers (JSON text, as the store writes them) as jsonb, to read values by name. The column holds any
-- string, but jsonb cannot hold a NUL or a lone surrogate: an entry with one is left out, read as missing (it could
-- not be rendered into a key the store can keep). Such a character is a \u escape there, not itself escaped
-- (JSON.stringify writes a surrogate pair as the character, so an escaped surrogate is a lone one). Read twice,
-- with those escapes made two different characters: the entries both readings agree on are exact.
CREATE FUNCTION {{S}}.readable_headers(p_headers text) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  v_unreadable constant text := '(?<!\\)((?:\\\\)*)\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})';
BEGIN
  IF p_headers !~ v_unreadable THEN
    RETURN p_headers::jsonb;
  END IF;
  RETURN (SELECT coalesce(jsonb_object_agg(a.key, a.value), '{}')
          FROM jsonb_each(regexp_replace(p_headers, v_unreadable, '\1\\u0001', 'g')::jsonb) a
          JOIN jsonb_each(regexp_replace(p_headers, v_unreadable, '\1\\u0002', 'g')::jsonb) b ON b.key = a.key AND b.value = a.value);
END $$;

-- renderJobText: the parts joined, NULL when one names a header the job lacks (p_headers from readable_headers).
CREATE FUNCTION {{S}}.render_job_text(p_text jsonb, p_id text, p_headers jsonb) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN coalesce(bool_and(jsonb_typeof(part) = 'string' OR part ? 'jobId' OR coalesce(p_headers ? (part->>'header'), false)), true)
    THEN coalesce(string_agg(CASE WHEN jsonb_typeof(part) = 'string' THEN part #>> '{}'
                                  WHEN part ? 'jobId' THEN p_id
                                  ELSE p_headers->>(part->>'header') END, '' ORDER BY n), '') END
  FROM jsonb_array_elements(p_text) WITH ORDINALITY x(part, n)
$$;

-- The headers of a template's enqueue: the reaped job's (its text as stored, whatever it holds) with
-- copyJobHeaders, then the template's own set over them. Those are appended as later members: JSON.parse
-- keeps a repeated key's last value at its first place, which is what copying then setting gives.
CREATE FUNCTION {{S}}.template_headers(p_enqueue jsonb, p_job_headers text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE
    WHEN NOT coalesce((p_enqueue->>'copyJobHeaders')::boolean, false) THEN coalesce(p_enqueue->'headers', '{}')::text
    WHEN coalesce(p_enqueue->'headers', '{}') = '{}' THEN p_job_headers
    WHEN p_job_headers = '{}' THEN (p_enqueue->'headers')::text
    ELSE left(p_job_headers, -1) || ', ' || substr((p_enqueue->'headers')::text, 2)
  END
$$;

-- instantiateEffects: a template's effects made from the job, as settlement effects are sent (enqueues without
-- an id, which they get when they apply; priority and attempts from the target queue's config); NULL when a
-- dedup key renders empty or a kv key invalid, or either names a header the job lacks.
CREATE FUNCTION {{S}}.template_effects(p_cfg jsonb, p_effects jsonb, p_id text, p_headers text, p_readable jsonb)
RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  v_out jsonb := '{}';
  v_list jsonb := '[]';
  v_job jsonb;
  v_cfg jsonb;
  v_text text;
  r jsonb;
BEGIN
  IF p_effects ? 'enqueue' THEN
    FOR r IN SELECT * FROM jsonb_array_elements(p_effects->'enqueue') LOOP
      v_cfg := coalesce(p_cfg->'queues'->(r->>'queue'), p_cfg->'default');
      v_job := jsonb_build_object('own', false, 'queue', r->'queue', 'payload', r->'payload', 'headers', {{S}}.template_headers(r, p_headers),
        'priority', v_cfg->'defaultPriority', 'maxAttempts', v_cfg->'maxAttempts');
      IF r ? 'dedupKey' THEN
        v_text := {{S}}.render_job_text(r->'dedupKey', p_id, p_readable);
        IF coalesce(v_text, '') = '' THEN RETURN NULL; END IF;
        v_job := v_job || jsonb_build_object('dedupKey', v_text);
      END IF;
      v_list := v_list || jsonb_build_array(v_job);
    END LOOP;
    v_out := jsonb_build_object('enqueue', v_list);
    v_list := '[]';
  END IF;
  IF p_effects ? 'kvDeletes' THEN
    FOR r IN SELECT * FROM jsonb_array_elements(p_effects->'kvDeletes') LOOP
      v_text := {{S}}.render_job_text(r, p_id, p_readable);
      IF NOT {{S}}.is_kv_key(v_text) THEN RETURN NULL; END IF;
      v_list := v_list || to_jsonb(v_text);
    END LOOP;
    v_out := v_out || jsonb_build_object('kvDeletes', v_list);
  END IF;
  RETURN v_out;
END $$;

-- instantiateReaperTemplate: the branch p_template makes from the job, in the form of reaper_dead_letter;
-- NULL when it makes nothing (also when p_template is NULL).
CREATE FUNCTION {{S}}.template_branch(p_cfg jsonb, p_template jsonb, p_id text, p_headers text) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  v_readable jsonb;
  v_branch jsonb := '{}';
  v_key text;
  v_equals text;
  v_effects jsonb;
  v_which text;
BEGIN
  IF p_template IS NULL THEN RETURN NULL; END IF;
  v_readable := {{S}}.readable_headers(p_headers);
  IF p_template ? 'precondition' THEN
    v_key := {{S}}.render_job_text(p_template->'precondition'->'key', p_id, v_readable);
    v_equals := {{S}}.render_job_text(p_template->'precondition'->'equals', p_id, v_readable);
    IF v_equals IS NULL OR NOT {{S}}.is_kv_key(v_key) THEN RETURN NULL; END IF;
    v_branch := jsonb_build_object('precondition', jsonb_build_object('key', v_key, 'equals', encode(convert_to(v_equals, 'UTF8'), 'base64')));
  END IF;
  FOREACH v_which IN ARRAY ARRAY['effects', 'ifCancelRequested'] LOOP
    CONTINUE WHEN NOT p_template ? v_which;
    v_effects := {{S}}.template_effects(p_cfg, p_template->v_which, p_id, p_headers, v_readable);
    IF v_effects IS NULL THEN RETURN NULL; END IF;
    v_branch := v_branch || jsonb_build_object(v_which, v_effects);
  END LOOP;
  RETURN v_branch;
END $$;

-- reap() of version 4, with the branch of a job that carries none made from its queue's template. Each queue's
-- template is read once per pass, at its first dead-letter that needs it (none is read when no job dead-letters):
-- every such job of the queue in one pass is made from the same template, whatever is set meanwhile. Branch
-- preconditions read at the reap's now, and kv records expired by then are deleted (in key order, locked first,
-- as the job sweeps do: a record rewritten meanwhile by a settlement is re-checked and kept).
CREATE OR REPLACE FUNCTION {{S}}.reap(p_now bigint, p_cfg jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_now bigint := {{S}}.now_ms(p_now);
  j {{S}}.jobs;
  v_requeued jsonb := '[]';
  v_dead jsonb := '[]';
  v_applied jsonb := '[]';
  v_enq jsonb := '[]';
  v_templates jsonb := '{}';
  v_branch jsonb;
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
      v_branch := j.reaper_dead_letter;
      IF v_branch IS NULL THEN
        IF NOT v_templates ? j.queue THEN
          v_templates := v_templates || jsonb_build_object(j.queue, (SELECT t.template FROM {{S}}.reaper_templates t WHERE t.queue = j.queue));
        END IF;
        v_branch := {{S}}.template_branch(p_cfg, nullif(v_templates->j.queue, 'null'), j.id, j.headers);
      END IF;
      IF v_branch IS NOT NULL AND (NOT v_branch ? 'precondition' OR {{S}}.holds(v_branch->'precondition', v_now)) THEN
        v_effects := v_branch->(CASE WHEN j.cancel_requested THEN 'ifCancelRequested' ELSE 'effects' END);
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
  -- By key (= ANY of an array, not IN: a generic plan that guesses many expired rows would scan the whole table).
  DELETE FROM {{S}}.kv WHERE key = ANY (ARRAY(
    SELECT key FROM {{S}}.kv WHERE expires_at <= v_now ORDER BY key FOR UPDATE));
  RETURN jsonb_build_object('requeued', v_requeued, 'deadLettered', v_dead, 'effectsApplied', v_applied, 'enqueued', v_enq,
    'doneSwept', v_done_swept, 'deadSwept', v_dead_swept);
END $$;

-- apply_effects() of version 1, with the expiry of its kv writes (and a write without one made permanent).
CREATE OR REPLACE FUNCTION {{S}}.apply_effects(v_now bigint, e jsonb, p_defer boolean DEFAULT false) RETURNS jsonb LANGUAGE plpgsql AS $$
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
    INSERT INTO {{S}}.kv (key, value, expires_at) VALUES (r->>'key', decode(r->>'value', 'base64'), {{S}}.kv_expires_at(v_now, r))
    ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at;
  END LOOP;
  FOR k IN SELECT * FROM jsonb_array_elements_text(coalesce(e->'kvDeletes', '[]')) LOOP
    DELETE FROM {{S}}.kv WHERE key = k;
  END LOOP;
  RETURN v_out;
END $$;

-- enqueue() of version 1, with expiry: an expired record is absent to ifAbsent (its write replaces it), and
-- every write keeps its record until now + ttlMs, or for good.
CREATE OR REPLACE FUNCTION {{S}}.enqueue(p_now bigint, p_jobs jsonb, p_kv jsonb, p_single boolean) RETURNS jsonb LANGUAGE plpgsql AS $$
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
      WHERE coalesce((w->>'ifAbsent')::boolean, false)
        AND EXISTS (SELECT 1 FROM {{S}}.kv WHERE key = w->>'key' AND (expires_at IS NULL OR expires_at > v_now)) LIMIT 1;
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
  -- itself); the insert also catches a key committed concurrently since the check above. A record expired at
  -- v_now is absent: the write takes its place.
  FOR r IN SELECT * FROM jsonb_array_elements(p_kv) LOOP
    IF coalesce((r->>'ifAbsent')::boolean, false) AND NOT ((r->>'key') = ANY (v_claimed)) THEN
      INSERT INTO {{S}}.kv AS k (key, value, expires_at) VALUES (r->>'key', decode(r->>'value', 'base64'), {{S}}.kv_expires_at(v_now, r))
      ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at WHERE k.expires_at <= v_now;
      IF NOT FOUND THEN
        -- Aborts the whole statement: the job and every other write roll back.
        RAISE EXCEPTION USING ERRCODE = 'TQ003', MESSAGE = r->>'key';
      END IF;
      v_claimed := v_claimed || (r->>'key');
    END IF;
  END LOOP;
  FOR r IN SELECT * FROM jsonb_array_elements(p_kv) LOOP
    INSERT INTO {{S}}.kv (key, value, expires_at) VALUES (r->>'key', decode(r->>'value', 'base64'), {{S}}.kv_expires_at(v_now, r))
    ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at;
  END LOOP;
  RETURN v_out;
END $$;

-- settle_one() of version 5, with the precondition read at v_now (an expired record does not hold).
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
  IF b ? 'precondition' AND NOT {{S}}.holds(b->'precondition', v_now) THEN
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
    -- A nack's own delay (a step's retry policy), else the queue's backoff.
    v_delay := coalesce((a->>'delayMs')::bigint, {{S}}.retry_delay(c, j.attempts));
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

-- settle_set() of version 5, with expiry: a precondition on a record expired at v_now does not hold, and the kv
-- writes keep their records until v_now + ttlMs, or for good.
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
           ELSE coalesce((r.b->'action'->>'delayMs')::bigint, {{S}}.retry_delay(r.c, r.attempts)) END AS delay
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
            AND value = decode(p_items->(p.ord - 1)->'settlement'->'precondition'->>'equals', 'base64')
            AND (expires_at IS NULL OR expires_at > v_now))
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
    INSERT INTO {{S}}.kv (key, value, expires_at)
    SELECT DISTINCT ON (w->>'key') w->>'key', decode(w->>'value', 'base64'), {{S}}.kv_expires_at(v_now, w)
    FROM unnest(v_plan) p, jsonb_array_elements(p.b->'effects'->'kvWrites') WITH ORDINALITY x(w, n)
    WHERE p.ok AND NOT coalesce(p.b->'effects'->'kvDeletes' ? (w->>'key'), false)
    ORDER BY w->>'key', x.n DESC
    ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at
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

-- Vacuum `jobs` every 2,000 dead rows whatever its size (the default waits for 20% of the table): every claim
-- and ack leaves a dead entry at the head of the pending index that claims walk until vacuum removes it, so
-- with a large backlog the default let tens of thousands pile up. Needs autovacuum on (the server default).
ALTER TABLE {{S}}.jobs SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 2000);
