-- 0004: cooldowns of failing model deployments, shared by every function instance.
-- Runs inside one transaction (see spine/storage/migrate.py).
--
-- One row per (model, deployment) that has failed recently. A failure inside the
-- current window bumps `failures`; a failure after the window starts a new one. When
-- `failures` reaches the model's threshold, `cooled_until` is set and requests skip
-- the deployment until then. Successes write nothing (the hot path stays read-only).
-- Queries:
--   hot path: WHERE model_id = ANY($1) AND cooled_until > now()  -> pkey (model_id, ...)
--   failure:  INSERT ... ON CONFLICT (model_id, deployment) DO UPDATE -> pkey
-- The table stays tiny (one row per deployment that ever failed), so no retention.
CREATE TABLE deployment_cooldowns (
    model_id        text        NOT NULL,
    deployment      text        NOT NULL,
    failures        integer     NOT NULL DEFAULT 0 CHECK (failures >= 0),
    window_started  timestamptz NOT NULL DEFAULT now(),
    cooled_until    timestamptz,
    last_error      text,
    PRIMARY KEY (model_id, deployment)
);
