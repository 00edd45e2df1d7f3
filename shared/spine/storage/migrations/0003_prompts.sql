-- 0003: prompts with immutable versions and labels.
-- Runs inside one transaction (see spine/storage/migrate.py).

-- ---------------------------------------------------------------------------
-- prompts: one row per prompt, owned by one principal within one tenant.
-- Queries (every one is scoped by tenant and owner: another principal's prompt is
-- simply not found):
--   get by id:    WHERE id = $1 AND tenant = $2 AND owner = $3   -> pkey
--   get by slug:  WHERE tenant = $1 AND owner = $2 AND slug = $3 -> prompts_scope_slug_key
--   list:         WHERE tenant, owner ORDER BY created_at DESC, id DESC, keyset
--                                                               -> prompts_scope_created_idx
-- Delete is a hard delete (versions and labels cascade): a deleted prompt's text is
-- gone, and its slug is free again. The usage ledger keeps prompt_version_id as
-- plain history (it has no foreign key, by design of usage_events).
-- ---------------------------------------------------------------------------
CREATE TABLE prompts (
    id             uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    -- '' when the principal has no tenant: NULL would let the unique key below
    -- admit duplicates and would need IS NOT DISTINCT FROM (not indexable).
    tenant         text        NOT NULL DEFAULT '',
    owner          text        NOT NULL,
    slug           text        NOT NULL,
    name           text        NOT NULL,
    description    text        NOT NULL DEFAULT '',
    -- The newest version number; bumped in the same transaction that inserts it,
    -- under this row's lock, so concurrent updates get consecutive numbers.
    latest_version integer     NOT NULL DEFAULT 0 CHECK (latest_version >= 0),
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE UNIQUE INDEX prompts_scope_slug_key ON prompts (tenant, owner, slug);
CREATE INDEX prompts_scope_created_idx ON prompts (tenant, owner, created_at DESC, id DESC);

-- ---------------------------------------------------------------------------
-- prompt_versions: append-only history. A row is never updated (the trigger below
-- refuses it); it disappears only with its prompt.
--   get version:   WHERE prompt_id = $1 AND version = $2 -> prompt_versions_prompt_version_key
--   list versions: WHERE prompt_id = $1 ORDER BY version DESC -> same index
--   usage lookup:  usage_events.prompt_version_id = id  -> pkey
-- ---------------------------------------------------------------------------
CREATE TABLE prompt_versions (
    id                 uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    prompt_id          uuid        NOT NULL REFERENCES prompts (id) ON DELETE CASCADE,
    version            integer     NOT NULL CHECK (version >= 1),
    template           text        NOT NULL,
    -- [{"name", "required", "default", "description"}, ...] in declaration order:
    -- always read and written whole with the version, so jsonb, not a table.
    variables          jsonb       NOT NULL DEFAULT '[]',
    model              text,
    parameters         jsonb       NOT NULL DEFAULT '{}',
    -- SHA-256 of the canonical JSON of (template, variables, model, parameters):
    -- an update whose content hashes the same creates no version.
    content_hash       text        NOT NULL CHECK (content_hash ~ '^[0-9a-f]{64}$'),
    -- Set when the version was made by a rollback: the version whose content it copies.
    rolled_back_from   integer,
    created_by         text        NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT prompt_versions_prompt_version_key UNIQUE (prompt_id, version)
);

CREATE FUNCTION prompt_versions_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'prompt versions are immutable: create a new version instead'
        USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE TRIGGER prompt_versions_no_update
    BEFORE UPDATE ON prompt_versions
    FOR EACH ROW EXECUTE FUNCTION prompt_versions_immutable();

-- ---------------------------------------------------------------------------
-- prompt_labels: named pointers ('production', 'staging') at a version.
--   resolve / set / delete: WHERE prompt_id = $1 AND label = $2 -> pkey
--   labels of a prompt:     WHERE prompt_id = $1                -> pkey prefix
-- The foreign key to (prompt_id, version) makes a label at a missing version
-- impossible.
-- ---------------------------------------------------------------------------
CREATE TABLE prompt_labels (
    prompt_id  uuid        NOT NULL,
    label      text        NOT NULL,
    version    integer     NOT NULL,
    updated_by text        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (prompt_id, label),
    FOREIGN KEY (prompt_id, version)
        REFERENCES prompt_versions (prompt_id, version) ON DELETE CASCADE
);
