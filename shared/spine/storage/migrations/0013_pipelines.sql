-- 0013: pipeline definitions with immutable versions (runs come with the queue
-- machinery that executes them).
-- Runs inside one transaction (see spine/storage/migrate.py).

-- ---------------------------------------------------------------------------
-- pipelines: one row per pipeline, owned by one principal within one tenant (as
-- prompts). Every query is scoped by tenant and owner: another principal's pipeline
-- is simply not found.
--   get by id:   WHERE id AND tenant AND owner              -> pkey
--   by slug:     WHERE tenant AND owner AND slug            -> pipelines_scope_slug_key
--   list:        WHERE tenant, owner ORDER BY created_at DESC, id DESC, keyset
--                                                           -> pipelines_scope_created_idx
-- ---------------------------------------------------------------------------
CREATE TABLE pipelines (
    id             uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant         text        NOT NULL DEFAULT '',
    owner          text        NOT NULL CHECK (owner <> ''),
    slug           text        NOT NULL,
    name           text        NOT NULL,
    description    text        NOT NULL DEFAULT '',
    -- Bumped under this row's lock in the transaction that inserts the version.
    latest_version integer     NOT NULL DEFAULT 0 CHECK (latest_version >= 0),
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE UNIQUE INDEX pipelines_scope_slug_key ON pipelines (tenant, owner, slug);
CREATE INDEX pipelines_scope_created_idx ON pipelines (tenant, owner, created_at DESC, id DESC);

-- ---------------------------------------------------------------------------
-- pipeline_versions: append-only; a run names the version it ran, so a version is
-- never changed (the trigger refuses an UPDATE).
--   get version: WHERE pipeline_id AND version -> pkey
-- ---------------------------------------------------------------------------
CREATE TABLE pipeline_versions (
    pipeline_id  uuid        NOT NULL REFERENCES pipelines (id) ON DELETE CASCADE,
    version      integer     NOT NULL CHECK (version >= 1),
    -- The definition as checked (spine.workflows.definition), and the step order.
    definition   jsonb       NOT NULL,
    step_order   text[]      NOT NULL,
    description  text        NOT NULL DEFAULT '',
    created_by   text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (pipeline_id, version)
);

CREATE FUNCTION pipeline_versions_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'pipeline versions are immutable: create a new version instead'
        USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE TRIGGER pipeline_versions_no_update
    BEFORE UPDATE ON pipeline_versions
    FOR EACH ROW EXECUTE FUNCTION pipeline_versions_immutable();
