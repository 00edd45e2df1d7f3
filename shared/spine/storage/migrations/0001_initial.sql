-- 0001: API keys and the usage/cost ledger.
-- Runs inside one transaction (see spine/storage/migrate.py).

-- ---------------------------------------------------------------------------
-- api_keys
-- Queries:
--   authenticate: WHERE key_hash = $1 (every request)  -> api_keys_key_hash_key
--   list:         ORDER BY created_at (operators)       -> small table, no index
--   revoke:       WHERE id = $1 | prefix = $1           -> pkey | small table
-- key_hash is the SHA-256 hex digest of the whole key. The keys are 256-bit random
-- strings, so a fast unsalted hash is safe: a stolen table cannot be brute-forced,
-- and the digest can be looked up through a unique index. bcrypt/argon2 exist to
-- slow down guessing of LOW-entropy passwords; here they would only add 50-300 ms of
-- CPU to every request and, being salted, make an indexed lookup impossible.
-- ---------------------------------------------------------------------------
CREATE TABLE api_keys (
    id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    name         text        NOT NULL,
    -- The first characters of the key (e.g. 'sk-spine-Ab12Cd'), shown in listings
    -- so an operator can tell keys apart; never enough to use the key.
    prefix       text        NOT NULL,
    key_hash     text        NOT NULL CHECK (key_hash ~ '^[0-9a-f]{64}$'),
    -- Identity the key authenticates as (NULL: the principal is 'key:<id>').
    principal    text,
    tenant       text,
    scopes       text[]      NOT NULL DEFAULT '{}',
    tier         text        NOT NULL DEFAULT 'standard',
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    revoked_at   timestamptz,
    -- Updated by authenticate at most once per few minutes per key (same round
    -- trip), so the hot path rarely writes; accurate to that window.
    last_used_at timestamptz,
    CONSTRAINT api_keys_key_hash_key UNIQUE (key_hash)
);

-- ---------------------------------------------------------------------------
-- usage_events: the usage/cost ledger, one row per provider call (ok or error).
-- Append-only. Not partitioned: a partitioned table cannot hold a UNIQUE on
-- request_id alone (the partition key must be part of it), and the unique
-- request_id is what makes a retried write idempotent. Retention is therefore done
-- with batched deletes by created_at (spine.storage.usage.delete_usage_before), which
-- the BRIN index below serves; switch to monthly partitions (DETACH/DROP) only if
-- the ledger outgrows that, with request_id uniqueness enforced per month.
-- Every read below has an index; spend queries must never scan the whole ledger
-- (LiteLLM's unindexed spend table pinned its users' databases).
-- ---------------------------------------------------------------------------
CREATE TABLE usage_events (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id        text          NOT NULL,
    created_at        timestamptz   NOT NULL DEFAULT now(),
    -- No foreign key to api_keys: the ledger is history, a write must never fail
    -- on a referential check, and deleting a key must not rewrite past rows.
    api_key_id        uuid,
    principal         text,
    tenant            text,
    model             text          NOT NULL,  -- the model id the client asked for
    resolved_model    text,                    -- the registry model actually served
    provider          text,
    deployment        text,
    endpoint          text          NOT NULL,  -- 'chat.completions' | 'completions' | ...
    status            text          NOT NULL CHECK (status IN ('ok', 'error')),
    http_status       smallint,
    error_code        text,
    prompt_tokens     integer       NOT NULL DEFAULT 0,  -- includes cached_tokens
    completion_tokens integer       NOT NULL DEFAULT 0,  -- includes reasoning_tokens
    cached_tokens     integer       NOT NULL DEFAULT 0,
    reasoning_tokens  integer       NOT NULL DEFAULT 0,
    cost_usd          numeric(18,9) NOT NULL DEFAULT 0,
    latency_ms        double precision,
    cache_hit         boolean       NOT NULL DEFAULT false,
    prompt_version_id uuid,
    metadata          jsonb         NOT NULL DEFAULT '{}'
);

-- Idempotent writes: INSERT ... ON CONFLICT (request_id) DO NOTHING.
CREATE UNIQUE INDEX usage_events_request_id_key ON usage_events (request_id);

-- Time-range scans over everyone ("spend in the last 24 h", dashboards) and the
-- retention delete (created_at < cutoff). Rows arrive in created_at order, so a
-- BRIN index is a few pages instead of a btree the size of the table.
CREATE INDEX usage_events_created_at_brin ON usage_events USING brin (created_at);

-- "Usage/spend of API key K between t1 and t2" (key dashboards, budgets).
-- INCLUDE cost_usd: SUM(cost_usd) for a key and period is an index-only scan.
CREATE INDEX usage_events_api_key_created_at_idx
    ON usage_events (api_key_id, created_at) INCLUDE (cost_usd)
    WHERE api_key_id IS NOT NULL;

-- "Usage of model M between t1 and t2" (per-model cost and error reports).
CREATE INDEX usage_events_model_created_at_idx ON usage_events (model, created_at);

-- "Usage/spend of principal P (user or service, any credential) between t1 and t2"
-- (per-user budgets and reports, JWT callers included).
CREATE INDEX usage_events_principal_created_at_idx
    ON usage_events (principal, created_at) INCLUDE (cost_usd)
    WHERE principal IS NOT NULL;
