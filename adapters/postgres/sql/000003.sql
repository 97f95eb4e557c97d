-- Version 3: jobs removed by `cancel` (pending or scheduled) leave a
-- tombstone, so a `waitForCompletion` in another process, which sees only
-- that the row is gone, tells a removal (`notFound`) from an ack (which
-- deletes the row too: `completed`). A tombstone names the job by id and
-- enqueue time (an id may be reused later) and is kept for an hour of store
-- time (`REMOVED_RETENTION_MS`), swept by the next cancels.

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
