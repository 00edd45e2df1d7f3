-- 0010: system prompts, prompt metadata (category, tags), a version's system prompt
-- and output schema, and the executions log's index.
-- Runs inside one transaction (see spine/storage/migrate.py).

-- ---------------------------------------------------------------------------
-- System prompts (the capabilities' instructions) belong to nobody: tenant '' and
-- owner ''. Every caller can read and run them; only admins change them. A real
-- principal never has an empty subject, and the CHECK makes sure no caller's prompt
-- can pose as a system prompt (or the other way round).
-- Lookup of a capability's prompt: the caller's own of that slug, else the system
-- one -> prompts_scope_slug_key, twice.
-- ---------------------------------------------------------------------------
ALTER TABLE prompts
    ADD COLUMN is_system boolean NOT NULL DEFAULT false,
    ADD COLUMN category  text    NOT NULL DEFAULT '',
    ADD COLUMN tags      text[]  NOT NULL DEFAULT '{}',
    ADD CONSTRAINT prompts_system_owner_check
        CHECK (is_system = (owner = '' AND tenant = ''));

-- A version's instructions to the model, sent as a system message before the rendered
-- template, and the JSON Schema its answer must match (NULL: free text). Adding
-- nullable columns rewrites no row, so the immutability trigger is not involved, and
-- a version without them keeps its content hash (spine.schemas.prompt_content).
ALTER TABLE prompt_versions
    ADD COLUMN system_prompt text,
    ADD COLUMN output_schema jsonb;

-- ---------------------------------------------------------------------------
-- The executions log (GET /v1/executions) reads the usage ledger's rows of
-- capability calls and prompt executions, newest first, for one principal (or, for
-- an admin, one tenant). This partial index holds only those rows.
-- ---------------------------------------------------------------------------
CREATE INDEX usage_events_executions_idx
    ON usage_events (tenant, principal, created_at DESC, id DESC)
    WHERE endpoint LIKE 'capability.%' OR prompt_version_id IS NOT NULL;
