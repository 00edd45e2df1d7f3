-- 0014: pipeline runs and their steps. Each ready step is a message on a queue; the
-- rows are the truth about what ran (spine.workflows.runs).
-- Runs inside one transaction (see spine/storage/migrate.py).

-- ---------------------------------------------------------------------------
-- pipeline_runs: one row per run, owned like its pipeline (tenant and owner).
--   get:  WHERE id AND tenant AND owner -> pkey
--   list: WHERE tenant, owner ORDER BY created_at DESC -> pipeline_runs_scope_created_idx
-- `principal`: who started it, the identity its model calls run as (their limits,
-- budgets and usage rows are that caller's).
-- ---------------------------------------------------------------------------
CREATE TABLE pipeline_runs (
    id               uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    pipeline_id      uuid        NOT NULL REFERENCES pipelines (id) ON DELETE CASCADE,
    version          integer     NOT NULL,
    tenant           text        NOT NULL DEFAULT '',
    owner            text        NOT NULL CHECK (owner <> ''),
    principal        jsonb       NOT NULL,
    status           text        NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    inputs           jsonb       NOT NULL,
    output           jsonb,
    error            jsonb,
    cancel_requested boolean     NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at       timestamptz,
    finished_at      timestamptz,
    FOREIGN KEY (pipeline_id, version) REFERENCES pipeline_versions (pipeline_id, version)
);

CREATE INDEX pipeline_runs_scope_created_idx
    ON pipeline_runs (tenant, owner, created_at DESC, id DESC);

-- ---------------------------------------------------------------------------
-- pipeline_run_steps: one row per step of a run. A step is claimed before it runs
-- (status running, attempts + 1, a lease); a message for a step that is done is
-- acknowledged without running it, and one for a step whose lease is live waits.
-- An instance that dies mid-step leaves its lease to expire: the redelivered message
-- claims the step again. Writes of a step's outcome name the attempt they claimed,
-- so a late instance cannot overwrite a newer one.
-- ---------------------------------------------------------------------------
CREATE TABLE pipeline_run_steps (
    run_id      uuid        NOT NULL REFERENCES pipeline_runs (id) ON DELETE CASCADE,
    step_id     text        NOT NULL,
    status      text        NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'skipped', 'cancelled')),
    needs       text[]      NOT NULL DEFAULT '{}',
    position    integer     NOT NULL,
    attempts    integer     NOT NULL DEFAULT 0,
    lease_until timestamptz,
    input       jsonb,
    output      jsonb,
    usage       jsonb,
    error       jsonb,
    started_at  timestamptz,
    finished_at timestamptz,
    PRIMARY KEY (run_id, step_id)
);
