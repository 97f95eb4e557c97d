-- Version 6: reaper templates (QueueStore.setReaperTemplate).
--
-- - `reaper_templates` keeps one template per queue, as encodeReaperTemplate (core/reaper-template.ts)
--   writes it: payloads in base64, each JobText an array of JSON strings, {"jobId": true} and
--   {"header": name}.
-- - reap() dead-letters a job that carries no reaper_dead_letter with the branch its queue's template
--   makes from the job (template_branch), in the form reaper_dead_letter keeps, so the one applier
--   serves both. The rules are instantiateReaperTemplate's, rendered here.
-- Processes of version 5 go on working against it: they cannot set a template, and their reaps call this
-- reap(), so the templates processes of version 6 set apply whichever process reaps.

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
-- every such job of the queue in one pass is made from the same template, whatever is set meanwhile.
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
      IF v_branch IS NOT NULL AND (NOT v_branch ? 'precondition' OR {{S}}.holds(v_branch->'precondition')) THEN
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
  RETURN jsonb_build_object('requeued', v_requeued, 'deadLettered', v_dead, 'effectsApplied', v_applied, 'enqueued', v_enq,
    'doneSwept', v_done_swept, 'deadSwept', v_dead_swept);
END $$;
